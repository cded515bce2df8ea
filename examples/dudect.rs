//! dudect-style timing check (Reparaz, Balasch, Verbauwhede, "dude, is my code constant
//! time?", 2017): does rejecting a forged MAC or digest take a time that depends on *where* it
//! differs from the genuine one?
//!
//! For each test, two classes of inputs that differ from the genuine value in the first or in
//! the last position are prepared up front (a pool of variants per class, so no single value
//! is measured); then a schedule is drawn with a fresh random class (and variant) per sample,
//! and each call is timed alone with the cycle counter (`lfence; rdtsc; lfence` on x86_64,
//! `Instant` elsewhere). Welch's t-test compares the two classes on the raw samples, on the
//! samples cropped at dudect's 100 percentiles (pooled over both classes: samples above the
//! p-th percentile are dropped, which removes interrupts and preemption), and on the centred
//! squares (dudect's second-order test). The verdict is the largest |t| of those 102 tests
//! against 4.5, as in dudect.
//!
//! Tests:
//! * `session-verify`: `Engine::verify_session_token` on a genuine token whose signature
//!   (the base64url text it is compared as) is changed in its first or its last character.
//! * `access-verify`: `Engine::verify_access_token` on a genuine token changed in the first or
//!   the last character of its random part, checksum recomputed so the token gets past the
//!   CRC to the digest comparison. What the attacker controls; the digest then differs from
//!   the stored ones wherever SHA-256 puts it.
//! * `ct-eq-digest`, `ct-eq-mac-text`: the internal `constant_time::eq` itself on 32-byte
//!   digests (and the 43-character MAC text) differing in the first or the last byte: the
//!   property the comparison promises.
//! * Negative controls, which must FAIL or the harness is not sensitive enough: an early-exit
//!   byte loop on the same 32-byte digests, and the session verify followed by an early-exit
//!   comparison of the presented and genuine signature text (a leak the size of the one a
//!   naive comparison inside verify would have, in the same noise). Slice `==` (libc `bcmp`)
//!   is measured for information only: it compares 32 bytes per vector step, so it may or
//!   may not show a difference.
//!
//! `cargo run --release --example dudect -- [--samples N] [--only NAME] [--no-verdict]
//! [--verbose]` (`--verbose` prints every crop);
//! N is per class (default 1,000,000). Exit status 1 if a real test fails or a negative
//! control passes (unless `--no-verdict`). scripts/ct-check.sh runs it pinned to one core.

use std::hint::black_box;
use std::time::Instant;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use tessera::{Engine, ErrorKind, NewUser};

const THRESHOLD: f64 = 4.5;
const PERCENTILES: usize = 100;
const VARIANTS: usize = 32;
const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// splitmix64: schedule and variant choice only, not a secret.
struct Rng(u64);

impl Rng {
    fn seeded() -> Rng {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Rng(t ^ u64::from(std::process::id()).rotate_left(32))
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn cycles() -> u64 {
    use std::arch::x86_64::{_mm_lfence, _rdtsc};
    // SAFETY: lfence (SSE2) and rdtsc are available on every x86_64 CPU.
    #[allow(unused_unsafe)]
    unsafe {
        _mm_lfence();
        let t = _rdtsc();
        _mm_lfence();
        t
    }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn cycles() -> u64 {
    use std::sync::OnceLock;
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

const UNIT: &str = if cfg!(target_arch = "x86_64") {
    "TSC cycles"
} else {
    "ns"
};

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// Must pass (|t| < 4.5).
    Real,
    /// Must fail: proves the harness can see a leak of this size.
    Control,
    /// Reported, no verdict.
    Info,
}

/// The operation measured; its result goes through `black_box`.
type Op = Box<dyn Fn(&[u8]) -> bool>;

struct Test {
    name: &'static str,
    kind: Kind,
    what: &'static str,
    /// `inputs[class][variant]`
    inputs: [Vec<Vec<u8>>; 2],
    run: Op,
}

/// Welford accumulator.
#[derive(Default, Clone, Copy)]
struct Moments {
    n: f64,
    mean: f64,
    m2: f64,
}

impl Moments {
    fn push(&mut self, x: f64) {
        self.n += 1.0;
        let d = x - self.mean;
        self.mean += d / self.n;
        self.m2 += d * (x - self.mean);
    }
    fn var(&self) -> f64 {
        if self.n < 2.0 {
            0.0
        } else {
            self.m2 / (self.n - 1.0)
        }
    }
}

fn welch(a: &Moments, b: &Moments) -> f64 {
    let se = (a.var() / a.n + b.var() / b.n).sqrt();
    if se == 0.0 {
        0.0
    } else {
        (a.mean - b.mean) / se
    }
}

/// dudect's crop thresholds: 1 - 0.5^(10 (i+1) / 100), from 6.7 % to 99.9 %.
fn crop_fraction(i: usize) -> f64 {
    1.0 - 0.5f64.powf(10.0 * (i as f64 + 1.0) / PERCENTILES as f64)
}

struct Outcome {
    n: [usize; 2],
    median: [u64; 2],
    raw: f64,
    cropped: Vec<(f64, u64, f64)>,
    second_order: f64,
    max: f64,
}

fn analyse(times: &[u64], classes: &[u8]) -> Outcome {
    let mut sorted = times.to_vec();
    sorted.sort_unstable();
    let cuts: Vec<u64> = (0..PERCENTILES)
        .map(|i| sorted[((crop_fraction(i) * sorted.len() as f64) as usize).min(sorted.len() - 1)])
        .collect();
    let mut raw = [Moments::default(); 2];
    let mut crop = vec![[Moments::default(); 2]; PERCENTILES];
    for (&t, &c) in times.iter().zip(classes) {
        let c = c as usize;
        raw[c].push(t as f64);
        for (m, &cut) in crop.iter_mut().zip(&cuts) {
            if t <= cut {
                m[c].push(t as f64);
            }
        }
    }
    let mut second = [Moments::default(); 2];
    for (&t, &c) in times.iter().zip(classes) {
        let c = c as usize;
        let d = t as f64 - raw[c].mean;
        second[c].push(d * d);
    }
    let mut per_class: [Vec<u64>; 2] = [Vec::new(), Vec::new()];
    for (&t, &c) in times.iter().zip(classes) {
        per_class[c as usize].push(t);
    }
    let median = per_class.map(|mut v| {
        v.sort_unstable();
        v[v.len() / 2]
    });
    let raw_t = welch(&raw[0], &raw[1]);
    let cropped: Vec<(f64, u64, f64)> = crop
        .iter()
        .zip(&cuts)
        .enumerate()
        .map(|(i, (m, &cut))| (crop_fraction(i), cut, welch(&m[0], &m[1])))
        .collect();
    let second_order = welch(&second[0], &second[1]);
    let max = cropped
        .iter()
        .map(|c| c.2.abs())
        .chain([raw_t.abs(), second_order.abs()])
        .fold(0.0, f64::max);
    Outcome {
        n: [raw[0].n as usize, raw[1].n as usize],
        median,
        raw: raw_t,
        cropped,
        second_order,
        max,
    }
}

/// Interleaved measurement: the schedule (class and variant per sample) is drawn before any
/// timing, with a fresh random class per sample, until each class has `per_class` samples.
fn measure(test: &Test, per_class: usize, rng: &mut Rng) -> (Vec<u64>, Vec<u8>) {
    let mut classes = Vec::with_capacity(2 * per_class + 4096);
    let mut variants = Vec::with_capacity(2 * per_class + 4096);
    let mut count = [0usize; 2];
    while count[0] < per_class || count[1] < per_class {
        let c = (rng.next() & 1) as usize;
        count[c] += 1;
        classes.push(c as u8);
        variants.push(rng.below(test.inputs[c].len()) as u16);
    }
    // Warm-up: caches, branch predictors, lazily initialised state.
    for i in 0..classes.len().min(20_000) {
        let input = &test.inputs[classes[i] as usize][variants[i] as usize];
        black_box((test.run)(black_box(input)));
    }
    // Every input is copied into the same buffer before it is timed, so both classes are read
    // from the same address: where a buffer happens to sit (cache-line splits, 4K aliasing
    // with the stack) cannot masquerade as a data-dependent difference.
    let len = test.inputs[0][0].len();
    assert!(test.inputs.iter().flatten().all(|v| v.len() == len));
    let mut buf = vec![0u8; len];
    let mut times = vec![0u64; classes.len()];
    for (i, t) in times.iter_mut().enumerate() {
        buf.copy_from_slice(&test.inputs[classes[i] as usize][variants[i] as usize]);
        let input = black_box(buf.as_slice());
        let start = cycles();
        let r = (test.run)(input);
        let end = cycles();
        black_box(r);
        *t = end.wrapping_sub(start);
    }
    (times, classes)
}

/// Early-exit comparison, the leak the controls must detect. `black_box` per byte keeps the
/// compiler from turning it into a vector compare.
fn leaky_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    for i in 0..a.len() {
        if black_box(a[i]) != black_box(b[i]) {
            return false;
        }
    }
    true
}

/// `text` with the character at `pos` replaced by `VARIANTS` different base64url characters.
fn char_variants(text: &[u8], pos: usize) -> Vec<Vec<u8>> {
    ALPHABET
        .iter()
        .filter(|&&c| c != text[pos])
        .take(VARIANTS)
        .map(|&c| {
            let mut v = text.to_vec();
            v[pos] = c;
            v
        })
        .collect()
}

/// `bytes` with `bytes[pos]` XORed with each of 1..=VARIANTS.
fn byte_variants(bytes: &[u8], pos: usize) -> Vec<Vec<u8>> {
    (1..=VARIANTS as u8)
        .map(|x| {
            let mut v = bytes.to_vec();
            v[pos] ^= x;
            v
        })
        .collect()
}

fn random_bytes(rng: &mut Rng, n: usize) -> Vec<u8> {
    (0..n).map(|_| rng.next() as u8).collect()
}

fn tests(rng: &mut Rng) -> tessera::Result<Vec<Test>> {
    let mut out = Vec::new();

    // ---- session tokens -----------------------------------------------------------------
    let engine = Engine::in_memory()?;
    engine.create_user(NewUser::new("ct-session", "CT"))?;
    let token = engine.issue_session_token("ct-session", None)?;
    let good = token.as_str().as_bytes().to_vec();
    engine.verify_session_token(token.as_str())?;
    let sig_at = good.len() - 43;
    let inputs = [
        char_variants(&good, sig_at),
        char_variants(&good, good.len() - 1),
    ];
    for v in inputs.iter().flatten() {
        let e = engine
            .verify_session_token(std::str::from_utf8(v).unwrap())
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidToken);
    }
    let e1 = engine.clone();
    out.push(Test {
        name: "session-verify",
        kind: Kind::Real,
        what: "verify_session_token, signature changed in its first vs last character",
        inputs: inputs.clone(),
        run: Box::new(move |t| {
            // SAFETY of the unwrap: every variant is ASCII.
            e1.verify_session_token(std::str::from_utf8(t).unwrap())
                .is_ok()
        }),
    });
    let e2 = engine.clone();
    let genuine_sig = good[sig_at..].to_vec();
    out.push(Test {
        name: "control-session-leaky",
        kind: Kind::Control,
        what: "the same verify, then an early-exit compare of presented vs genuine signature",
        inputs,
        run: Box::new(move |t| {
            let ok = e2
                .verify_session_token(std::str::from_utf8(t).unwrap())
                .is_ok();
            ok | leaky_eq(&t[sig_at..], &genuine_sig)
        }),
    });

    // ---- access tokens ------------------------------------------------------------------
    let engine = Engine::in_memory()?;
    engine.create_user(NewUser::new("ct-access", "CT"))?;
    // A few stored digests, as a user with several devices has; the forged token is
    // compared with each of them.
    for _ in 0..2 {
        engine.issue_access_token("ct-access", None)?;
    }
    let issued = engine.issue_access_token("ct-access", None)?;
    let good = issued.token.as_str().as_bytes().to_vec();
    engine.verify_access_token(issued.token.as_str())?;
    // tsat_ (5) + 54 body characters + 6 checksum characters. Body characters 0..=10 carry
    // the 8-byte user handle (character 10 shares 2 bits with the random part); 11..=53 are
    // the random part only.
    let with_crc = |mut t: Vec<u8>| {
        let crc = crc32fast::hash(&t[..59]).to_be_bytes();
        let enc = URL_SAFE_NO_PAD.encode(crc);
        t[59..].copy_from_slice(enc.as_bytes());
        t
    };
    assert_eq!(with_crc(good.clone()), good, "checksum recomputation");
    let inputs = [
        char_variants(&good, 5 + 11)
            .into_iter()
            .map(with_crc)
            .collect::<Vec<_>>(),
        char_variants(&good, 5 + 53)
            .into_iter()
            .map(with_crc)
            .collect::<Vec<_>>(),
    ];
    for v in inputs.iter().flatten() {
        let e = engine
            .verify_access_token(std::str::from_utf8(v).unwrap())
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidToken);
    }
    out.push(Test {
        name: "access-verify",
        kind: Kind::Real,
        what: "verify_access_token, random part changed in its first vs last character (CRC fixed)",
        inputs,
        run: Box::new(move |t| {
            engine
                .verify_access_token(std::str::from_utf8(t).unwrap())
                .is_ok()
        }),
    });

    // ---- the comparison itself ----------------------------------------------------------
    let digest = random_bytes(rng, 32);
    let inputs = [byte_variants(&digest, 0), byte_variants(&digest, 31)];
    let d = digest.clone();
    out.push(Test {
        name: "ct-eq-digest",
        kind: Kind::Real,
        what: "constant_time::eq, 32-byte digests differing in byte 0 vs byte 31",
        inputs: inputs.clone(),
        run: Box::new(move |x| tessera::__constant_time_eq(x, &d)),
    });
    let mac_text: Vec<u8> = (0..43).map(|_| ALPHABET[rng.below(64)]).collect();
    let m = mac_text.clone();
    out.push(Test {
        name: "ct-eq-mac-text",
        kind: Kind::Real,
        what: "constant_time::eq, 43-character MAC text differing in character 0 vs 42",
        inputs: [char_variants(&mac_text, 0), char_variants(&mac_text, 42)],
        run: Box::new(move |x| tessera::__constant_time_eq(x, &m)),
    });
    let d = digest.clone();
    out.push(Test {
        name: "control-leaky-eq",
        kind: Kind::Control,
        what: "early-exit byte loop, 32-byte digests differing in byte 0 vs byte 31",
        inputs: inputs.clone(),
        run: Box::new(move |x| leaky_eq(x, &d)),
    });
    out.push(Test {
        name: "info-slice-eq",
        kind: Kind::Info,
        what: "slice == (libc bcmp), 32-byte digests differing in byte 0 vs byte 31",
        inputs,
        run: Box::new(move |x| x == digest.as_slice()),
    });
    Ok(out)
}

fn main() -> tessera::Result<()> {
    let mut per_class = 1_000_000usize;
    let mut only: Option<String> = None;
    let mut verdict = true;
    let mut verbose = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--samples" => {
                per_class = args
                    .next()
                    .and_then(|s| s.replace('_', "").parse().ok())
                    .expect("--samples N")
            }
            "--only" => only = args.next(),
            "--no-verdict" => verdict = false,
            "--verbose" => verbose = true,
            _ => {
                eprintln!("usage: dudect [--samples N] [--only NAME] [--no-verdict] [--verbose]");
                std::process::exit(2);
            }
        }
    }
    let mut rng = Rng::seeded();
    let all = tests(&mut rng)?;
    println!(
        "dudect: {per_class} samples per class, interleaved; times in {UNIT}; \
         pass line |t| < {THRESHOLD}; verdict = max |t| over raw, 100 crops, 2nd order"
    );
    println!(
        "{:<22} {:>9} {:>9} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7}  verdict",
        "test", "med A", "med B", "raw", "p50", "p75", "p93.8", "p99", "p99.9", "2nd", "max"
    );
    let mut failed = false;
    let started = Instant::now();
    for test in all
        .iter()
        .filter(|t| only.as_deref().is_none_or(|o| o == t.name))
    {
        let (times, classes) = measure(test, per_class, &mut rng);
        let o = analyse(&times, &classes);
        // Indices of dudect's crop list: 9 → 50 %, 19 → 75 %, 39 → 93.75 %, 65 → 99 %
        // (≈ 99.03 %), 99 → 99.9 %.
        let at = |i: usize| o.cropped[i].2.abs();
        let pass = o.max < THRESHOLD;
        let label = match (test.kind, pass) {
            (Kind::Real, true) => "PASS",
            (Kind::Real, false) => "FAIL",
            (Kind::Control, false) => "FAIL (expected: leak detected)",
            (Kind::Control, true) => "PASS (control NOT detected: harness too weak)",
            (Kind::Info, true) => "pass (info)",
            (Kind::Info, false) => "fail (info)",
        };
        if (test.kind == Kind::Real && !pass) || (test.kind == Kind::Control && pass) {
            failed = true;
        }
        println!(
            "{:<22} {:>9} {:>9} {:>7.2} {:>7.2} {:>7.2} {:>7.2} {:>7.2} {:>7.2} {:>7.2} {:>7.2}  {}",
            test.name,
            o.median[0],
            o.median[1],
            o.raw.abs(),
            at(9),
            at(19),
            at(39),
            at(65),
            at(99),
            o.second_order.abs(),
            o.max,
            label
        );
        println!(
            "  {} (n = {} / {}; crop cut at p50 = {} p99.9 = {} {UNIT})",
            test.what, o.n[0], o.n[1], o.cropped[9].1, o.cropped[99].1
        );
        if verbose {
            for (p, cut, t) in &o.cropped {
                println!(
                    "    crop p{:.2} (<= {cut}): |t| = {:.2}",
                    p * 100.0,
                    t.abs()
                );
            }
        }
    }
    println!("elapsed {:.1} s", started.elapsed().as_secs_f64());
    if failed && verdict {
        println!("RESULT: FAIL");
        std::process::exit(1);
    }
    println!(
        "RESULT: {}",
        if verdict {
            "PASS"
        } else {
            "not judged (--no-verdict)"
        }
    );
    Ok(())
}
