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

/// Whether this is a real benchmark run (`cargo bench`) rather than `cargo test --benches`,
/// which runs each benchmark once to check it works. Test mode builds small data sets so the
/// test suite stays fast in the debug profile; the numbers it prints mean nothing.
pub fn full_scale() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test")
}
