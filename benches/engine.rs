//! Tessera's own operations at scale, next to the floor built from the *same* tokens the
//! engine issues (so "Tessera / floor" compares equal lengths). The peers live in
//! `floor.rs`; `cargo bench` runs both in one invocation and `scripts/bench-report.py` prints
//! the ratios.
//!
//! The engine holds 1,000,000 users with 3 access tokens each (`cargo bench`); under
//! `cargo test --benches` it holds 2,000 so the check stays fast.
//!
//! `hot` benchmarks repeat one token/user (its data stays in cache: comparable to the peers'
//! single-token loops); `cold` ones walk 64 Ki random tokens/users, so each call misses the
//! cache as on a server with many clients.

mod common;

use std::hint::black_box;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::*;
use criterion::{criterion_group, Criterion};
use subtle::ConstantTimeEq;
use tessera::{Engine, NewUser};

const USERS: usize = 1_000_000;
const TOKENS_PER_USER: usize = 3;
const SAMPLE: usize = 65_536;

struct World {
    engine: Engine,
    users: usize,
    session_tokens: Vec<String>,
    session_users: Vec<String>,
    access_tokens: Vec<String>,
    access_users: Vec<String>,
    /// Users the issue benchmark gives tokens to: disjoint from `access_users`, whose sampled
    /// tokens would otherwise be evicted (at 10 per user) and stop verifying.
    issue_users: Vec<String>,
}

fn user_id(i: usize) -> String {
    format!("user{i:07}")
}

fn build_world() -> World {
    let (users, sample) = if full_scale() {
        (USERS, SAMPLE)
    } else {
        (2_000, 256)
    };
    let started = Instant::now();
    let engine = Engine::in_memory().expect("engine");
    let mut rng = SplitMix64(7);
    let mut access_tokens = Vec::with_capacity(sample);
    let mut access_users = Vec::with_capacity(sample);
    let mut issue_users = Vec::with_capacity(sample);
    // Which users' tokens we keep: every (users / sample)-th, then shuffled below.
    let keep_every = users / sample;
    for i in 0..users {
        let id = user_id(i);
        if i % keep_every == 1 && issue_users.len() < sample {
            issue_users.push(id.clone());
        }
        engine
            .create_user(NewUser::new(id.clone(), "n"))
            .expect("create");
        for t in 0..TOKENS_PER_USER {
            let issued = engine.issue_access_token(&id, None).expect("issue");
            if t == 0 && i % keep_every == 0 && access_tokens.len() < sample {
                access_tokens.push(issued.token.as_str().to_owned());
                access_users.push(id.clone());
            }
        }
    }
    // Shuffle (Fisher-Yates) so consecutive queries land on unrelated slots.
    for i in (1..access_tokens.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        access_tokens.swap(i, j);
        access_users.swap(i, j);
    }
    let mut session_tokens = Vec::with_capacity(sample);
    let mut session_users = Vec::with_capacity(sample);
    for _ in 0..sample {
        let id = user_id((rng.next_u64() % users as u64) as usize);
        let t = engine.issue_session_token(&id, None).expect("session");
        session_tokens.push(t.as_str().to_owned());
        session_users.push(id);
    }
    eprintln!(
        "engine bench: {users} users x {TOKENS_PER_USER} access tokens built in {:.1?}",
        started.elapsed()
    );
    World {
        engine,
        users,
        session_tokens,
        session_users,
        access_tokens,
        access_users,
        issue_users,
    }
}

static WORLD: OnceLock<World> = OnceLock::new();

fn world() -> &'static World {
    WORLD.get_or_init(build_world)
}

fn engine_benches(c: &mut Criterion) {
    let w = world();
    let e = &w.engine;
    let n = w.session_tokens.len();
    let hot_session = w.session_tokens[0].clone();
    let hot_session_user = w.session_users[0].clone();
    let hot_access = w.access_tokens[0].clone();
    let hot_access_user = w.access_users[0].clone();
    assert!(e.verify_session_token(&hot_session).is_ok());
    assert!(e.verify_access_token(&hot_access).is_ok());

    let mut g = c.benchmark_group("tessera");
    g.bench_function("session_issue", |b| {
        b.iter(|| {
            e.issue_session_token(black_box(&hot_session_user), None)
                .expect("issue")
        })
    });
    g.bench_function("session_verify", |b| {
        b.iter(|| e.verify_session_token(black_box(&hot_session)).expect("ok"))
    });
    g.bench_function("session_verify/cold", |b| {
        let mut i = 0usize;
        b.iter(|| {
            let t = &w.session_tokens[i % n];
            i = i.wrapping_add(1);
            e.verify_session_token(black_box(t)).expect("ok")
        })
    });
    g.bench_function("access_token_verify_1M/hot", |b| {
        b.iter(|| e.verify_access_token(black_box(&hot_access)).expect("ok"))
    });
    g.bench_function("access_token_verify_1M/cold", |b| {
        let mut i = 0usize;
        b.iter(|| {
            let t = &w.access_tokens[i % n];
            i = i.wrapping_add(1);
            e.verify_access_token(black_box(t)).expect("ok")
        })
    });
    g.bench_function("authenticate/session", |b| {
        b.iter(|| {
            e.authenticate(black_box(&hot_session_user), Some(&hot_session))
                .expect("ok")
        })
    });
    g.bench_function("authenticate/access", |b| {
        b.iter(|| {
            e.authenticate(black_box(&hot_access_user), Some(&hot_access))
                .expect("ok")
        })
    });
    g.bench_function("get_user/hot", |b| {
        b.iter(|| e.get_user(black_box(&hot_session_user)).expect("ok"))
    });
    g.bench_function("get_user/cold", |b| {
        let mut i = 0usize;
        b.iter(|| {
            let u = &w.session_users[i % n];
            i = i.wrapping_add(1);
            e.get_user(black_box(u)).expect("ok")
        })
    });
    // Issuing rotates over 64 Ki users; once one holds 10 tokens each issue also
    // evicts its oldest (the steady state of a busy server).
    g.bench_function("access_token_issue", |b| {
        let mut i = 0usize;
        b.iter(|| {
            let u = &w.issue_users[i % w.issue_users.len()];
            i = i.wrapping_add(1);
            e.issue_access_token(black_box(u), None).expect("issue")
        })
    });
    // Each iteration adds a new minimal user to the already-populated engine; building the
    // NewUser (two small strings) is inside the timing, as it is for any caller.
    // Criterion calls the closure once per warm-up and per sample: the counter lives outside.
    let next = std::cell::Cell::new(w.users);
    g.bench_function("create_user_in_memory", |b| {
        b.iter(|| {
            next.set(next.get() + 1);
            e.create_user(NewUser::new(user_id(next.get()), "n"))
                .expect("create")
        })
    });
    g.finish();

    floor_for_engine_tokens(c, w);
}

/// The floors, built from the engine's own tokens: HMAC (RustCrypto, the faster on this
/// machine — see HMAC_CHOICE.txt) over the same signing input plus base64url decode of the
/// same payload and signature lengths; and SHA-256 of a 65-character access token plus one
/// hashbrown lookup in a table of as many entries as the engine has users.
fn floor_for_engine_tokens(c: &mut Criterion, w: &World) {
    let rc_key = rustcrypto_key();
    let parts = split_jwt(&w.session_tokens[0]);
    let mut g = c.benchmark_group("tessera_floor");
    let issue = issue_floor_inputs(w);
    g.bench_function("session_issue", |b| {
        let mut out = [0u8; 168];
        b.iter(|| {
            let n = session_issue_floor(
                &issue.key,
                &issue.header_b64_dot,
                black_box(&issue.claims),
                &mut out,
            );
            black_box(&out);
            n
        })
    });
    g.bench_function("session_verify", |b| {
        let mut buf = [0u8; 96];
        b.iter(|| {
            let r =
                session_verify_floor(|m| hmac_rustcrypto(&rc_key, m), black_box(&parts), &mut buf);
            black_box(&buf);
            r
        })
    });

    let index = access_floor_index(w);
    let lookup = |d: [u8; 32]| floor_lookup(&index, d);
    let hot = w.access_tokens[0].as_bytes();
    let n = w.access_tokens.len();
    g.bench_function("access_token_sha256_lookup_1M/hot", |b| {
        b.iter(|| lookup(sha256_rustcrypto(black_box(hot))))
    });
    g.bench_function("access_token_sha256_lookup_1M/cold", |b| {
        let mut i = 0usize;
        b.iter(|| {
            let t = w.access_tokens[i % n].as_bytes();
            i = i.wrapping_add(1);
            lookup(sha256_rustcrypto(black_box(t)))
        })
    });
    g.finish();
}

/// What the issue floor needs, taken from the engine itself: its active key (exported, as
/// another service would hold it), the encoded header naming it, and the claims of a token it
/// issued to the benchmark's hot user.
struct IssueFloor {
    key: hmac::Hmac<sha2::Sha256>,
    header_b64_dot: Vec<u8>,
    claims: IssueClaims,
}

fn issue_floor_inputs(w: &World) -> IssueFloor {
    use hmac::Mac;
    let token = w
        .engine
        .issue_session_token(&w.session_users[0], None)
        .expect("issue");
    let token = token.as_str();
    let kid = w
        .engine
        .keys()
        .into_iter()
        .find(|k| k.active)
        .expect("an active key")
        .key_id;
    let secret = w.engine.export_key(kid.as_str()).expect("export");
    let key = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("key");
    let dot = token.find('.').expect("header.payload") + 1;
    let floor = IssueFloor {
        key,
        header_b64_dot: token.as_bytes()[..dot].to_vec(),
        claims: IssueClaims::of_token(token),
    };
    // The floor must do the engine's work, not less: the same bytes out.
    let mut out = [0u8; 168];
    let n = session_issue_floor(&floor.key, &floor.header_b64_dot, &floor.claims, &mut out);
    assert_eq!(
        &out[..n],
        token.as_bytes(),
        "issue floor writes the engine's token"
    );
    floor
}

type FloorIndex = hashbrown::HashMap<u64, ([u8; 32], u64)>;

/// The access-token floor's table: as many entries as the engine has users (random digests),
/// plus the digests of the sampled tokens, keyed by a 64-bit fingerprint.
fn access_floor_index(w: &World) -> FloorIndex {
    let mut rng = SplitMix64(99);
    let mut index = FloorIndex::with_capacity(w.users + w.access_tokens.len());
    for i in 0..w.users as u64 {
        let mut d = [0u8; 32];
        rng.fill(&mut d);
        index.insert(u64::from_le_bytes(d[..8].try_into().expect("8")), (d, i));
    }
    for (i, t) in w.access_tokens.iter().enumerate() {
        let d = sha256_rustcrypto(t.as_bytes());
        index.insert(
            u64::from_le_bytes(d[..8].try_into().expect("8")),
            (d, i as u64),
        );
    }
    index
}

fn floor_lookup(index: &FloorIndex, d: [u8; 32]) -> u64 {
    let fp = u64::from_le_bytes(d[..8].try_into().expect("8"));
    let (stored, v) = index.get(&fp).expect("present");
    assert!(bool::from(stored.ct_eq(&d)));
    *v
}

/// The target ratios, measured interleaved (see `common::paired`) so that load from other
/// processes hits both sides of each ratio alike.
fn paired_ratios() {
    let w = world();
    let e = &w.engine;
    let rc_key = rustcrypto_key();
    let session = w.session_tokens[0].as_str();
    let user = w.session_users[0].as_str();
    let parts = split_jwt(session);
    let mut buf = [0u8; 96];
    let (batch, rounds) = paired_params(1000.0);

    let p = paired(
        batch,
        rounds,
        || {
            black_box(e.verify_session_token(black_box(session)).expect("ok"));
        },
        || {
            black_box(session_verify_floor(
                |m| hmac_rustcrypto(&rc_key, m),
                black_box(&parts),
                &mut buf,
            ));
            black_box(&buf);
        },
    );
    report_paired(
        "session_verify_vs_floor",
        "tessera/session_verify",
        "tessera_floor/session_verify",
        &p,
    );

    let issue = issue_floor_inputs(w);
    let mut out = [0u8; 168];
    let p = paired(
        batch,
        rounds,
        || {
            black_box(e.issue_session_token(black_box(user), None).expect("issue"));
        },
        || {
            black_box(session_issue_floor(
                &issue.key,
                &issue.header_b64_dot,
                black_box(&issue.claims),
                &mut out,
            ));
            black_box(&out);
        },
    );
    report_paired(
        "session_issue_vs_floor",
        "tessera/session_issue",
        "tessera_floor/session_issue",
        &p,
    );

    let jwt = jwt_peer::peer();
    let p = paired(
        batch,
        rounds,
        || {
            black_box(black_box(&jwt).decode());
        },
        || {
            black_box(e.verify_session_token(black_box(session)).expect("ok"));
        },
    );
    report_paired(
        "jsonwebtoken_decode_vs_session_verify",
        "peer_jsonwebtoken/hs256_decode_validate",
        "tessera/session_verify",
        &p,
    );
    let p = paired(
        batch,
        rounds,
        || {
            black_box(black_box(&jwt).encode());
        },
        || {
            black_box(e.issue_session_token(black_box(user), None).expect("issue"));
        },
    );
    report_paired(
        "jsonwebtoken_encode_vs_session_issue",
        "peer_jsonwebtoken/hs256_encode",
        "tessera/session_issue",
        &p,
    );

    let index = access_floor_index(w);
    let hot = w.access_tokens[0].as_str();
    let p = paired(
        batch,
        rounds,
        || {
            black_box(e.verify_access_token(black_box(hot)).expect("ok"));
        },
        || {
            black_box(floor_lookup(
                &index,
                sha256_rustcrypto(black_box(hot.as_bytes())),
            ));
        },
    );
    report_paired(
        "access_verify_vs_floor_hot",
        "tessera/access_token_verify_1M/hot",
        "tessera_floor/access_token_sha256_lookup_1M/hot",
        &p,
    );
    // Cold: both sides walk the same shuffled tokens, each with its own cursor.
    let n = w.access_tokens.len();
    let (mut i, mut j) = (0usize, 0usize);
    let p = paired(
        batch,
        rounds,
        || {
            let t = &w.access_tokens[i % n];
            i = i.wrapping_add(1);
            black_box(e.verify_access_token(black_box(t)).expect("ok"));
        },
        || {
            let t = &w.access_tokens[j % n];
            j = j.wrapping_add(1);
            black_box(floor_lookup(
                &index,
                sha256_rustcrypto(black_box(t.as_bytes())),
            ));
        },
    );
    report_paired(
        "access_verify_vs_floor_cold",
        "tessera/access_token_verify_1M/cold",
        "tessera_floor/access_token_sha256_lookup_1M/cold",
        &p,
    );
}

/// What the C ABI adds per verify, measured interleaved: the same kind of one-user engine
/// opened through the C ABI and through Rust (as in `benches/ffi.rs`, whose sequential
/// criterion numbers swing by more than the 20 ns being judged on this shared machine).
#[allow(unsafe_code)]
fn paired_c_abi() {
    use std::mem::MaybeUninit;
    use tessera::ffi::{
        tessera_access_token_issue, tessera_access_token_verify, tessera_engine_free,
        tessera_engine_open_in_memory, tessera_session_token_issue_default,
        tessera_session_token_verify, tessera_status, tessera_user_create,
        tessera_verified_access_token, tessera_verified_session,
    };
    let ok = tessera_status::TESSERA_OK;
    let mut c = std::ptr::null_mut();
    let mut session = vec![0u8; 256];
    let mut access = vec![0u8; 128];
    let (mut slen, mut alen) = (0usize, 0usize);
    let json = br#"{"user_id": "alice", "nickname": "Alice"}"#;
    // SAFETY: every pointer is valid for the length given with it; the engine is freed once
    // at the end.
    unsafe {
        assert_eq!(tessera_engine_open_in_memory(&mut c), ok);
        let id = b"alice".as_ptr().cast();
        assert_eq!(
            tessera_user_create(c, json.as_ptr().cast(), json.len(), std::ptr::null_mut()),
            ok
        );
        assert_eq!(
            tessera_session_token_issue_default(
                c,
                id,
                5,
                session.as_mut_ptr().cast(),
                session.len(),
                &mut slen,
                std::ptr::null_mut()
            ),
            ok
        );
        assert_eq!(
            tessera_access_token_issue(
                c,
                id,
                5,
                std::ptr::null(),
                0,
                access.as_mut_ptr().cast(),
                access.len(),
                &mut alen,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                0,
                std::ptr::null_mut()
            ),
            ok
        );
    }
    session.truncate(slen);
    access.truncate(alen);
    let rust = Engine::in_memory().expect("engine");
    rust.create_user(NewUser::new("alice", "Alice"))
        .expect("create");
    let rs = rust.issue_session_token("alice", None).expect("issue");
    let ra = rust.issue_access_token("alice", None).expect("issue");
    let (rs, ra) = (rs.as_str().to_owned(), ra.token.as_str().to_owned());
    let (batch, rounds) = paired_params(1000.0);

    let mut out = MaybeUninit::<tessera_verified_session>::uninit();
    let p = paired(
        batch,
        rounds,
        || {
            // SAFETY: live engine, valid token slice and out-pointer.
            let st = unsafe {
                tessera_session_token_verify(
                    c,
                    black_box(session.as_ptr().cast()),
                    session.len(),
                    out.as_mut_ptr(),
                )
            };
            assert_eq!(st, ok);
        },
        || {
            black_box(rust.verify_session_token(black_box(&rs)).expect("ok"));
        },
    );
    report_paired_diff("c_abi_session_verify", &p);
    let mut out = MaybeUninit::<tessera_verified_access_token>::uninit();
    let p = paired(
        batch,
        rounds,
        || {
            // SAFETY: live engine, valid token slice and out-pointer.
            let st = unsafe {
                tessera_access_token_verify(
                    c,
                    black_box(access.as_ptr().cast()),
                    access.len(),
                    out.as_mut_ptr(),
                )
            };
            assert_eq!(st, ok);
        },
        || {
            black_box(rust.verify_access_token(black_box(&ra)).expect("ok"));
        },
    );
    report_paired_diff("c_abi_access_verify", &p);
    // SAFETY: opened above, freed once.
    unsafe { tessera_engine_free(c) };
}

/// The C ABI target is a difference in nanoseconds; the ratio's median times the Rust
/// median gives it without mixing two separately-noisy medians.
fn report_paired_diff(name: &str, p: &Paired) {
    println!(
        "paired {name}: C ABI - Rust = {:+.0} ns (ratio {:.3}, IQR {:.3}..{:.3}; Rust median {:.1} ns)",
        (p.ratio_median - 1.0) * p.b_ns,
        p.ratio_median,
        p.ratio_p25,
        p.ratio_p75,
        p.b_ns
    );
    report_paired(name, "c_abi", "rust_api", p);
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50)
        .noise_threshold(0.05)
}

criterion_group! {
    name = benches;
    config = config();
    targets = engine_benches
}

// `criterion_main!` plus the paired ratios after the criterion benchmarks.
fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    if paired_selected() {
        paired_ratios();
        paired_c_abi();
    }
}
