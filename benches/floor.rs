//! The floor and the peers: what any HS256 session verify must cost at least, what the
//! alternatives users would pick cost, and which HMAC/SHA-256 implementation is faster on this
//! machine. Everything here runs in one `cargo bench --bench floor` so the ratios compare
//! numbers taken under the same load.
//!
//! Bench ids (read by `scripts/bench-report.py`): `<group>/<function>`.

mod common;

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Duration;

use common::*;
use criterion::{criterion_group, Criterion, Throughput};
use subtle::ConstantTimeEq;

/// A representative session token for an engine with ~1 M users: 1-char kid, 7-digit handle,
/// epoch 0, 10-digit times. 34-char header, 71-char payload, 106-byte signing input.
fn representative_token() -> String {
    session_token_like("1", 1_000_000, 0, 1_763_900_000, 1_764_504_800)
}

/// The longest session token DESIGN.md allows: 3-char kid, 12-digit handle, 7-digit epoch.
/// 36-char header, 86-char payload, 123-byte signing input (one SHA-256 block more).
fn longest_token() -> String {
    session_token_like(
        "zzz",
        999_999_999_999,
        9_999_999,
        9_999_999_999,
        9_999_999_999,
    )
}

fn primitives(c: &mut Criterion) {
    let ring_key = ring_key();
    let rc_key = rustcrypto_key();
    let msg100 = [0x5au8; 100];
    let token = representative_token();
    let parts = split_jwt(&token);
    let sha_input = access_token_like(&mut SplitMix64(1));

    // Both implementations must agree before we time them.
    assert_eq!(
        hmac_ring(&ring_key, &msg100),
        hmac_rustcrypto(&rc_key, &msg100)
    );
    assert_eq!(sha256_ring(&sha_input), sha256_rustcrypto(&sha_input));

    let mut g = c.benchmark_group("hmac_sha256");
    g.bench_function("100B/ring", |b| {
        b.iter(|| hmac_ring(&ring_key, black_box(&msg100)))
    });
    g.bench_function("100B/rustcrypto", |b| {
        b.iter(|| hmac_rustcrypto(&rc_key, black_box(&msg100)))
    });
    let n = parts.signing_input.len();
    g.bench_function(format!("jwt_input_{n}B/ring"), |b| {
        b.iter(|| hmac_ring(&ring_key, black_box(parts.signing_input)))
    });
    g.bench_function(format!("jwt_input_{n}B/rustcrypto"), |b| {
        b.iter(|| hmac_rustcrypto(&rc_key, black_box(parts.signing_input)))
    });
    g.finish();

    let mut g = c.benchmark_group("sha256");
    g.bench_function("54B/ring", |b| {
        b.iter(|| sha256_ring(black_box(&sha_input)))
    });
    g.bench_function("54B/rustcrypto", |b| {
        b.iter(|| sha256_rustcrypto(black_box(&sha_input)))
    });
    g.finish();

    let mut g = c.benchmark_group("base64url_decode");
    let sig = parts.signature_b64;
    let payload = parts.payload_b64;
    let long = longest_token();
    let long_payload = split_jwt(&long).payload_b64;
    for (name, input) in [
        (format!("{}ch_signature", sig.len()), sig),
        (format!("{}ch_payload", payload.len()), payload),
        (
            format!("{}ch_payload_max", long_payload.len()),
            long_payload,
        ),
    ] {
        g.throughput(Throughput::Bytes(input.len() as u64));
        g.bench_function(name, |b| {
            let mut buf = [0u8; 96];
            b.iter(|| {
                let n = b64_decode_into(black_box(input), &mut buf);
                black_box(&buf);
                n
            })
        });
    }
    g.finish();
}

/// Which HMAC the floor uses: the faster one. `floor.rs` measured RustCrypto faster on the
/// reference machine (see HMAC_CHOICE.txt); both are measured here anyway so a reader can
/// check that the floor used the faster one in *this* run.
fn floor(c: &mut Criterion) {
    let ring_key = ring_key();
    let rc_key = rustcrypto_key();
    let mut g = c.benchmark_group("floor");
    for (name, token) in [
        ("session_verify", representative_token()),
        ("session_verify_longest", longest_token()),
    ] {
        let parts = split_jwt(&token);
        g.bench_function(format!("{name}/rustcrypto"), |b| {
            let mut buf = [0u8; 96];
            b.iter(|| {
                let r = session_verify_floor(
                    |m| hmac_rustcrypto(&rc_key, m),
                    black_box(&parts),
                    &mut buf,
                );
                black_box(&buf);
                r
            })
        });
        g.bench_function(format!("{name}/ring"), |b| {
            let mut buf = [0u8; 96];
            b.iter(|| {
                let r =
                    session_verify_floor(|m| hmac_ring(&ring_key, m), black_box(&parts), &mut buf);
                black_box(&buf);
                r
            })
        });
    }
    g.finish();
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

fn peer_jsonwebtoken(c: &mut Criterion) {
    let p = jwt_peer::peer();
    let mut g = c.benchmark_group("peer_jsonwebtoken");
    g.bench_function("hs256_encode", |b| b.iter(|| black_box(&p).encode()));
    g.bench_function("hs256_decode_validate", |b| {
        b.iter(|| black_box(&p).decode())
    });
    g.finish();
}

/// pasetors through its low-level `version4` API on the same JSON payload bytes: the crypto and
/// the token encoding, without pasetors' claim parsing/validation — a lower bound for pasetors,
/// so peer/Tessera ratios built on it are conservative.
fn peer_pasetors(c: &mut Criterion) {
    use pasetors::keys::{AsymmetricKeyPair, Generate, SymmetricKey};
    use pasetors::token::UntrustedToken;
    use pasetors::version4::{LocalToken, PublicToken, V4};
    use pasetors::{Local, Public};

    let iat = now_s();
    let payload = format!(
        r#"{{"u":1000000,"r":0,"iat":{iat},"exp":{}}}"#,
        iat + 7 * 86_400
    );
    let payload = payload.as_bytes();
    let sk = SymmetricKey::<V4>::generate().expect("key");
    let kp = AsymmetricKeyPair::<V4>::generate().expect("key pair");
    let local = LocalToken::encrypt(&sk, payload, None, None).expect("encrypt");
    let public = PublicToken::sign(&kp.secret, payload, None, None).expect("sign");

    let mut g = c.benchmark_group("peer_pasetors");
    g.bench_function("v4_local_encrypt", |b| {
        b.iter(|| LocalToken::encrypt(&sk, black_box(payload), None, None).expect("encrypt"))
    });
    g.bench_function("v4_local_decrypt", |b| {
        b.iter(|| {
            let t =
                UntrustedToken::<Local, V4>::try_from(black_box(local.as_str())).expect("parse");
            LocalToken::decrypt(&sk, &t, None, None).expect("decrypt")
        })
    });
    g.bench_function("v4_public_sign", |b| {
        b.iter(|| PublicToken::sign(&kp.secret, black_box(payload), None, None).expect("sign"))
    });
    g.bench_function("v4_public_verify", |b| {
        b.iter(|| {
            let t =
                UntrustedToken::<Public, V4>::try_from(black_box(public.as_str())).expect("parse");
            PublicToken::verify(&kp.public, &t, None, None).expect("verify")
        })
    });
    g.finish();
}

const LOOKUP_ENTRIES: usize = 1_000_000;
/// `cold`: queries are walked in order from a 64 Ki-entry list (3.5 MB, larger than L2), so
/// each lookup lands on a cold part of the 1 M-entry table, as on a server with many clients;
/// on this VM that is dominated by cache and TLB misses. `hot`: one token looked up again and
/// again, so its buckets stay in L1 — the best case, and what a single-key loop measures.
const QUERIES: usize = 65_536;

fn peer_lookup(c: &mut Criterion) {
    let entries = if full_scale() { LOOKUP_ENTRIES } else { 10_000 };
    let mut rng = SplitMix64(42);
    let tokens: Vec<[u8; 54]> = (0..entries).map(|_| access_token_like(&mut rng)).collect();
    let queries: Vec<[u8; 54]> = (0..QUERIES)
        .map(|_| tokens[(rng.next_u64() % entries as u64) as usize])
        .collect();

    let mut g = c.benchmark_group("peer_lookup_1M");

    {
        let plain: HashMap<String, u64> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (String::from_utf8(t.to_vec()).expect("ascii"), i as u64))
            .collect();
        let hot = std::str::from_utf8(&queries[0]).expect("ascii");
        g.bench_function("std_hashmap_plaintext/hot", |b| {
            b.iter(|| *plain.get(black_box(hot)).expect("present"))
        });
        g.bench_function("std_hashmap_plaintext/cold", |b| {
            let mut i = 0usize;
            b.iter(|| {
                let q = &queries[i % QUERIES];
                i = i.wrapping_add(1);
                let s = std::str::from_utf8(q).expect("ascii");
                *plain.get(black_box(s)).expect("present")
            })
        });
    }

    // The design's index: 64-bit fingerprint (first 8 digest bytes) → full digest, compared in
    // constant time. One table per implementation would double memory; the digests are equal,
    // so one table serves both and only the hashing of the query differs.
    let index: hashbrown::HashMap<u64, ([u8; 32], u64)> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let d = sha256_rustcrypto(t);
            (
                u64::from_le_bytes(d[..8].try_into().expect("8")),
                (d, i as u64),
            )
        })
        .collect();
    drop(tokens);
    let lookup = |d: [u8; 32]| -> u64 {
        let fp = u64::from_le_bytes(d[..8].try_into().expect("8"));
        let (stored, v) = index.get(&fp).expect("present");
        assert!(bool::from(stored.ct_eq(&d)));
        *v
    };
    let hot = queries[0];
    g.bench_function("sha256_hashbrown/ring/hot", |b| {
        b.iter(|| lookup(sha256_ring(black_box(&hot))))
    });
    g.bench_function("sha256_hashbrown/rustcrypto/hot", |b| {
        b.iter(|| lookup(sha256_rustcrypto(black_box(&hot))))
    });
    g.bench_function("sha256_hashbrown/ring/cold", |b| {
        let mut i = 0usize;
        b.iter(|| {
            let q = &queries[i % QUERIES];
            i = i.wrapping_add(1);
            lookup(sha256_ring(black_box(q)))
        })
    });
    g.bench_function("sha256_hashbrown/rustcrypto/cold", |b| {
        let mut i = 0usize;
        b.iter(|| {
            let q = &queries[i % QUERIES];
            i = i.wrapping_add(1);
            lookup(sha256_rustcrypto(black_box(q)))
        })
    });
    g.finish();
}

fn config() -> Criterion {
    // Modest times: the reference machine has 2 cores shared with other work, and
    // `cargo bench` as a whole must stay under 10 minutes.
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50)
        .noise_threshold(0.05)
}

/// The implementation choice, measured interleaved (see `common::paired`) as a check on the
/// criterion numbers, which are taken one after the other.
fn paired_choice() {
    let ring_key = ring_key();
    let rc_key = rustcrypto_key();
    let token = representative_token();
    let input = split_jwt(&token).signing_input;
    let sha_input = access_token_like(&mut SplitMix64(1));
    let (batch, rounds) = paired_params(300.0);
    let p = paired(
        batch,
        rounds,
        || {
            black_box(hmac_ring(&ring_key, black_box(input)));
        },
        || {
            black_box(hmac_rustcrypto(&rc_key, black_box(input)));
        },
    );
    report_paired(
        "hmac_ring_vs_rustcrypto",
        "hmac_sha256/jwt_input/ring",
        "hmac_sha256/jwt_input/rustcrypto",
        &p,
    );
    let p = paired(
        batch,
        rounds,
        || {
            black_box(sha256_ring(black_box(&sha_input)));
        },
        || {
            black_box(sha256_rustcrypto(black_box(&sha_input)));
        },
    );
    report_paired(
        "sha256_ring_vs_rustcrypto",
        "sha256/54B/ring",
        "sha256/54B/rustcrypto",
        &p,
    );
}

criterion_group! {
    name = benches;
    config = config();
    targets = primitives, floor, peer_jsonwebtoken, peer_pasetors, peer_lookup
}

// `criterion_main!` plus the paired ratios after the criterion benchmarks.
fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    if paired_selected() {
        paired_choice();
    }
}
