//! Pieces shared by the benchmark binaries: the "floor" primitives (the least work any HS256
//! session verify must do) and deterministic test data. Kept here so `floor.rs` and
//! `engine.rs` measure the floor with exactly the same code.
#![allow(dead_code)] // each bench binary uses a different subset

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// A fixed 32-byte key: benchmarks must be reproducible, not secret.
pub const KEY: [u8; 32] = *b"tessera-bench-key-0123456789abcd";

/// SplitMix64: a tiny deterministic generator, so every run builds the same data set.
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// An access-token-shaped string: `tsat_` + base64url(32 bytes) + 6 more base64url
/// characters standing in for the CRC, 54 characters as in DESIGN.md.
pub fn access_token_like(rng: &mut SplitMix64) -> [u8; 54] {
    let mut raw = [0u8; 32];
    rng.fill(&mut raw);
    let mut out = [0u8; 54];
    out[..5].copy_from_slice(b"tsat_");
    URL_SAFE_NO_PAD
        .encode_slice(raw, &mut out[5..48])
        .expect("43 characters");
    let crc = crc32fast::hash(&out[..48]).to_be_bytes();
    URL_SAFE_NO_PAD
        .encode_slice(crc, &mut out[48..54])
        .expect("6 characters");
    out
}

/// A session token shaped exactly as DESIGN.md says, signed with [`KEY`], for when the
/// engine is not there to issue one.
pub fn session_token_like(kid: &str, handle: u64, epoch: u64, iat: u64, exp: u64) -> String {
    let header = format!(r#"{{"alg":"HS256","kid":"{kid}"}}"#);
    let payload = format!(r#"{{"u":{handle},"r":{epoch},"iat":{iat},"exp":{exp}}}"#);
    let mut token = URL_SAFE_NO_PAD.encode(header);
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(payload));
    let mac = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &KEY),
        token.as_bytes(),
    );
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(mac.as_ref()));
    token
}

/// The parts of an HS256 JWT the floor touches: the signing input, the payload and the
/// signature, as slices of the token.
pub struct JwtParts<'a> {
    pub signing_input: &'a [u8],
    pub payload_b64: &'a [u8],
    pub signature_b64: &'a [u8],
}

pub fn split_jwt(token: &str) -> JwtParts<'_> {
    let b = token.as_bytes();
    let first = token.find('.').expect("header.payload");
    let last = token.rfind('.').expect("payload.signature");
    JwtParts {
        signing_input: &b[..last],
        payload_b64: &b[first + 1..last],
        signature_b64: &b[last + 1..],
    }
}

/// HMAC-SHA256 with ring: the key schedule (ipad/opad blocks) is precomputed in `Key`.
pub fn hmac_ring(key: &ring::hmac::Key, msg: &[u8]) -> [u8; 32] {
    let tag = ring::hmac::sign(key, msg);
    tag.as_ref().try_into().expect("32 bytes")
}

/// HMAC-SHA256 with RustCrypto: clone a pre-keyed state (ipad/opad already absorbed).
pub fn hmac_rustcrypto(keyed: &Hmac<Sha256>, msg: &[u8]) -> [u8; 32] {
    let mut mac = keyed.clone();
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

pub fn rustcrypto_key() -> Hmac<Sha256> {
    <Hmac<Sha256> as Mac>::new_from_slice(&KEY).expect("any key length")
}

pub fn ring_key() -> ring::hmac::Key {
    ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &KEY)
}

pub fn sha256_ring(data: &[u8]) -> [u8; 32] {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .try_into()
        .expect("32 bytes")
}

pub fn sha256_rustcrypto(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// base64url decode into a stack buffer (no allocation): what a careful verifier does.
/// Returns the decoded length.
pub fn b64_decode_into(input: &[u8], out: &mut [u8; 96]) -> usize {
    URL_SAFE_NO_PAD
        .decode_slice(input, out)
        .expect("valid base64url")
}

/// The floor of a session verify: the MAC over the signing input, plus decoding the payload
/// and the signature — and nothing else (no parsing, no comparison, no clock).
/// `mac` is the faster HMAC implementation, chosen by `floor.rs`.
#[inline(always)]
pub fn session_verify_floor(
    mac: impl Fn(&[u8]) -> [u8; 32],
    parts: &JwtParts<'_>,
    buf: &mut [u8; 96],
) -> (usize, usize, [u8; 32]) {
    let tag = mac(parts.signing_input);
    let p = b64_decode_into(parts.payload_b64, buf);
    let s = b64_decode_into(parts.signature_b64, buf);
    (p, s, tag)
}

/// The four integer claims of a session token (current format), for the issue floor.
#[derive(Clone, Copy, Debug)]
pub struct IssueClaims {
    pub handle: u64,
    pub epoch: u64,
    pub iat: u64,
    pub exp: u64,
}

impl IssueClaims {
    /// The claims of a token in the current format (`{"sub":"N","rv":N,"iat":N,"exp":N}`),
    /// read back from its payload, so a floor can re-issue exactly what the engine issued.
    pub fn of_token(token: &str) -> IssueClaims {
        let payload = URL_SAFE_NO_PAD
            .decode(split_jwt(token).payload_b64)
            .expect("base64url payload");
        let v: serde_json::Value = serde_json::from_slice(&payload).expect("JSON payload");
        let n = |k: &str| v[k].as_u64().expect("integer claim");
        IssueClaims {
            handle: v["sub"]
                .as_str()
                .expect("sub")
                .parse()
                .expect("decimal sub"),
            epoch: n("rv"),
            iat: n("iat"),
            exp: n("exp"),
        }
    }
}

/// Appends the decimal digits of `v` at `out[at..]`, returning the new end.
#[inline(always)]
fn put_u64(out: &mut [u8], at: usize, mut v: u64) -> usize {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let n = tmp.len() - i;
    out[at..at + n].copy_from_slice(&tmp[i..]);
    at + n
}

#[inline(always)]
fn put(out: &mut [u8], at: usize, s: &[u8]) -> usize {
    out[at..at + s.len()].copy_from_slice(s);
    at + s.len()
}

/// The floor of a session *issue*: the least work any HS256 issuer of Tessera's token shape
/// must do. The header is a constant, already base64url-encoded (`header_b64_dot`, with its
/// trailing '.'); the four integer claims are written into a stack buffer; one HMAC-SHA256 is
/// computed from a pre-keyed state (RustCrypto, the faster here); the payload and the
/// signature are base64url-encoded into `out`. No allocation, no clock, no user lookup, no
/// range checks. Returns the token's length; `out[..len]` is byte-for-byte the token the
/// engine issues for the same key and claims (engine.rs checks that).
#[inline(always)]
pub fn session_issue_floor(
    keyed: &Hmac<Sha256>,
    header_b64_dot: &[u8],
    c: &IssueClaims,
    out: &mut [u8; 168],
) -> usize {
    let mut payload = [0u8; 72];
    let mut p = put(&mut payload, 0, br#"{"sub":""#);
    p = put_u64(&mut payload, p, c.handle);
    p = put(&mut payload, p, br#"","rv":"#);
    p = put_u64(&mut payload, p, c.epoch);
    p = put(&mut payload, p, br#","iat":"#);
    p = put_u64(&mut payload, p, c.iat);
    p = put(&mut payload, p, br#","exp":"#);
    p = put_u64(&mut payload, p, c.exp);
    p = put(&mut payload, p, b"}");
    let mut n = put(out, 0, header_b64_dot);
    n += URL_SAFE_NO_PAD
        .encode_slice(&payload[..p], &mut out[n..])
        .expect("fits");
    let tag = hmac_rustcrypto(keyed, &out[..n]);
    out[n] = b'.';
    n += 1;
    n + URL_SAFE_NO_PAD
        .encode_slice(tag, &mut out[n..])
        .expect("fits")
}

/// Whether this is a real benchmark run (`cargo bench`) rather than `cargo test --benches`,
/// which runs each benchmark once to check it works. Test mode builds small data sets so the
/// test suite stays fast in the debug profile; the numbers it prints mean nothing.
pub fn full_scale() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test")
}

/// The result of [`paired`]: how many times slower `a` is than `b`, measured interleaved.
pub struct Paired {
    pub ratio_median: f64,
    pub ratio_p25: f64,
    pub ratio_p75: f64,
    pub a_ns: f64,
    pub b_ns: f64,
}

/// Measures `a` and `b` *interleaved*: `rounds` times, a batch of `a` then a batch of `b`
/// (order swapped every round), each batch timed as a whole. The ratio of each round's pair
/// is taken and the median over rounds reported. On a machine shared with other work, load
/// changes over seconds; criterion measures one benchmark after another, so its ratios
/// inherit that drift, while a paired round sees the same load on both sides.
pub fn paired(batch: usize, rounds: usize, mut a: impl FnMut(), mut b: impl FnMut()) -> Paired {
    let time = |f: &mut dyn FnMut()| {
        let t = std::time::Instant::now();
        for _ in 0..batch {
            f();
        }
        t.elapsed().as_nanos() as f64 / batch as f64
    };
    // Warm-up: one round each, not recorded.
    time(&mut a);
    time(&mut b);
    let mut ratios = Vec::with_capacity(rounds);
    let (mut sa, mut sb) = (Vec::with_capacity(rounds), Vec::with_capacity(rounds));
    for r in 0..rounds {
        let (ta, tb) = if r % 2 == 0 {
            let ta = time(&mut a);
            (ta, time(&mut b))
        } else {
            let tb = time(&mut b);
            (time(&mut a), tb)
        };
        ratios.push(ta / tb);
        sa.push(ta);
        sb.push(tb);
    }
    let q = |v: &mut Vec<f64>, p: f64| {
        v.sort_by(|x, y| x.total_cmp(y));
        v[((v.len() - 1) as f64 * p).round() as usize]
    };
    Paired {
        ratio_median: q(&mut ratios, 0.5),
        ratio_p25: q(&mut ratios, 0.25),
        ratio_p75: q(&mut ratios, 0.75),
        a_ns: q(&mut sa, 0.5),
        b_ns: q(&mut sb, 0.5),
    }
}

/// Prints a paired result and stores it as `target/bench-paired/<name>.json` for
/// `scripts/bench-report.py`.
pub fn report_paired(name: &str, a: &str, b: &str, p: &Paired) {
    println!(
        "paired {name}: {a} / {b} = {:.2}x (IQR {:.2}..{:.2}; medians {:.1} ns / {:.1} ns)",
        p.ratio_median, p.ratio_p25, p.ratio_p75, p.a_ns, p.b_ns
    );
    if !full_scale() {
        return;
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-paired");
    let json = format!(
        "{{\"name\":\"{name}\",\"a\":\"{a}\",\"b\":\"{b}\",\"ratio_median\":{},\"ratio_p25\":{},\"ratio_p75\":{},\"a_ns\":{},\"b_ns\":{}}}\n",
        p.ratio_median, p.ratio_p25, p.ratio_p75, p.a_ns, p.b_ns
    );
    let written = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(dir.join(format!("{name}.json")), json));
    if let Err(e) = written {
        eprintln!("could not store paired result {name}: {e}");
    }
}

/// Whether the paired measurements should run: always, unless a criterion filter was given
/// that does not mention "paired".
pub fn paired_selected() -> bool {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    filters.is_empty() || filters.iter().any(|f| f.contains("paired"))
}

/// Batch size and rounds for [`paired`]: ~0.5 s per pair at full scale, a token run in test
/// mode.
pub fn paired_params(op_ns_guess: f64) -> (usize, usize) {
    if full_scale() {
        (((500_000.0 / op_ns_guess) as usize).max(10), 400)
    } else {
        (2, 3)
    }
}

/// The jsonwebtoken peer's inputs, shared by floor.rs (criterion) and engine.rs (paired).
pub mod jwt_peer {
    use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};

    #[derive(serde::Serialize, serde::Deserialize)]
    pub struct Claims {
        pub u: u64,
        pub r: u64,
        pub iat: u64,
        pub exp: u64,
    }

    pub struct Peer {
        pub header: Header,
        pub claims: Claims,
        pub ek: EncodingKey,
        pub dk: DecodingKey,
        pub validation: Validation,
        pub token: String,
    }

    /// Claims {u, r, iat, exp} as in DESIGN.md, a header with a kid, HS256, a 7-day expiry.
    pub fn peer() -> Peer {
        let header = Header {
            kid: Some("1".to_owned()),
            ..Header::new(Algorithm::HS256)
        };
        let iat = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs();
        let claims = Claims {
            u: 1_000_000,
            r: 0,
            iat,
            exp: iat + 7 * 86_400,
        };
        let ek = EncodingKey::from_secret(&super::KEY);
        let dk = DecodingKey::from_secret(&super::KEY);
        let validation = Validation::new(Algorithm::HS256);
        let token = jsonwebtoken::encode(&header, &claims, &ek).expect("encode");
        Peer {
            header,
            claims,
            ek,
            dk,
            validation,
            token,
        }
    }

    impl Peer {
        pub fn encode(&self) -> String {
            jsonwebtoken::encode(&self.header, &self.claims, &self.ek).expect("encode")
        }
        pub fn decode(&self) -> u64 {
            jsonwebtoken::decode::<Claims>(&self.token, &self.dk, &self.validation)
                .expect("valid")
                .claims
                .u
        }
    }
}
