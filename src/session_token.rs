//! Stateless session tokens: HS256 JWTs (RFC 7515 compact serialisation, RFC 7519 claims)
//! that any JWT library holding the key can verify.
//!
//! Header `{"alg":"HS256","kid":"<kid>"}`; payload
//! `{"sub":"<handle>","rv":<epoch>,"iat":<s>,"exp":<s>}`. The subject is the user's internal
//! numeric handle as a decimal string (`sub` is a StringOrURI, RFC 7519 §4.1.2), never its
//! id, so the length does not depend on the id, and a verifier holding an exported key can
//! resolve it with `Engine::get_user_by_handle`. With kid ≤ 3 characters, handle ≤ 10
//! digits, epoch ≤ 5 digits and times ≤ 10 digits every token is 125..=168 characters,
//! within the 119..=168 Sendbird documents.
//!
//! Format 1, written before `sub`, had `{"u":<handle>,...}` with handle ≤ 12 digits and
//! epoch ≤ 7 digits (119..=168 characters). Tokens in it keep verifying until they expire:
//! both shapes are signed by the same keys, neither is a prefix of the other, and each is
//! parsed exactly, so a format-1 token means what it meant when it was issued.
//!
//! Verification accepts only the exact bytes Tessera writes: that header, that claim order,
//! canonical numbers, strict unpadded base64url with no stray bits. Everything that fails
//! before the MAC is checked is the same [`ErrorKind::InvalidToken`](crate::ErrorKind).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

use crate::constant_time;
use crate::error::{Error, ErrorKind, Result};
use crate::key_ring::{KeyId, KeyRef, KeyRing, SigningKey};

/// Shortest possible session token, in characters. Tokens issued now are at least 125; 119
/// is the shortest of the previous format, which still verifies.
pub const SESSION_TOKEN_MIN_LEN: usize = 119;
/// Longest possible session token, in characters.
pub const SESSION_TOKEN_MAX_LEN: usize = 168;
/// Shortest token the current format writes (1-character kid, 1-digit handle, epoch and times).
#[cfg(test)]
const ISSUED_MIN_LEN: usize = 125;
/// Largest user handle a token can carry (10 digits).
pub(crate) const MAX_HANDLE: u64 = 9_999_999_999;
/// Largest session epoch a token can carry (5 digits): a user's sessions can be revoked this
/// many times and new session tokens still be issued; the revocation after that seals the user.
pub const MAX_EPOCH: u32 = 99_999;
/// An epoch no token of any format carries (format 1 allowed 7 digits): a user whose epoch
/// reaches it has every session revoked and can be issued no more.
pub(crate) const SEALED_EPOCH: u32 = 10_000_000;
/// Largest timestamp, in seconds (10 digits: year 2286).
pub(crate) const MAX_SECONDS: i64 = 9_999_999_999;

const HEADER_PREFIX: &[u8] = br#"{"alg":"HS256","kid":""#;
/// base64url of `{"alg":"HS256","kid":` (21 bytes: the header up to the key id's quote).
const HEADER_PREFIX_B64: &[u8] = b"eyJhbGciOiJIUzI1NiIsImtpZCI6";
const HEADER_SUFFIX: &[u8] = br#""}"#;
const SIG_B64_LEN: usize = 43;
/// The payload's start up to the subject's digits, and what follows them.
const SUB: &[u8] = br#"{"sub":""#;
const RV_AFTER_SUB: &[u8] = br#"","rv":"#;
/// The same two pieces in format 1.
const V1_U: &[u8] = br#"{"u":"#;
const V1_RV: &[u8] = br#","rv":"#;

/// A freshly issued session token. `Debug` is redacted; the text is wiped on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionToken {
    // A boxed `str`, not a `String`: zeroize wipes a `str` as one bulk fill behind an
    // optimisation barrier, a `String` one volatile byte at a time (~30 ns per token here).
    token: Zeroizing<Box<str>>,
    expires_at_ms: i64,
}

impl SessionToken {
    /// The token text, to hand to the client.
    pub fn as_str(&self) -> &str {
        &self.token
    }

    /// Expiry, milliseconds since the Unix epoch (whole seconds, as JWT `exp` is).
    pub fn expires_at_ms(&self) -> i64 {
        self.expires_at_ms
    }
}

impl std::fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionToken")
            .field("token", &"<redacted>")
            .field("expires_at_ms", &self.expires_at_ms)
            .finish()
    }
}

/// What a verified session token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedSession {
    /// The user it was issued to.
    pub user_id: String,
    /// Issue time, milliseconds since the Unix epoch (whole seconds).
    pub issued_at_ms: i64,
    /// Expiry, milliseconds since the Unix epoch (whole seconds).
    pub expires_at_ms: i64,
    /// The key that signed it.
    pub key_id: KeyId,
}

/// The claims Tessera puts in a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Claims {
    pub handle: u64,
    pub epoch: u32,
    pub iat_s: i64,
    pub exp_s: i64,
}

impl Claims {
    /// `iat` in milliseconds.
    pub fn iat_ms(&self) -> i64 {
        seconds_to_ms(self.iat_s)
    }

    /// `exp` in milliseconds.
    pub fn exp_ms(&self) -> i64 {
        seconds_to_ms(self.exp_s)
    }
}

/// Seconds to milliseconds. Token times are 0..=[`MAX_SECONDS`] (parsing and [`expiry_seconds`]
/// guarantee it), where this is exact; anything else saturates instead of wrapping.
fn seconds_to_ms(s: i64) -> i64 {
    s.saturating_mul(1000)
}

/// The `exp` claim, in seconds, of a token issued at `now_ms` (which is not negative):
/// `requested_ms` rounded down to whole seconds, or `now_ms + ttl_ms` when none is requested.
/// Fails with [`ErrorKind::InvalidExpiry`] unless the expiry is after `now_ms`, at most
/// `max_ttl_ms` after it, and no later than [`MAX_SECONDS`]. Every step is checked: no input,
/// `i64::MIN` and `i64::MAX` included, can wrap into a valid-looking expiry.
pub(crate) fn expiry_seconds(
    now_ms: i64,
    requested_ms: Option<i64>,
    ttl_ms: i64,
    max_ttl_ms: i64,
) -> Result<i64> {
    let past = || {
        Error::new(
            ErrorKind::InvalidExpiry,
            "expiry is not in the future (it is rounded down to whole seconds)",
        )
    };
    let too_far = || {
        Error::new(
            ErrorKind::InvalidExpiry,
            format!("expiry is more than {max_ttl_ms} ms from now, or after the year 2286"),
        )
    };
    let exp_ms = match requested_ms {
        Some(ms) => ms,
        None => now_ms.checked_add(ttl_ms).ok_or_else(too_far)?,
    };
    let exp_s = exp_ms.div_euclid(1000);
    // The range check comes first, so the multiplication after it cannot overflow.
    if exp_s < 0 {
        return Err(past());
    }
    if exp_s > MAX_SECONDS {
        return Err(too_far());
    }
    let whole_ms = exp_s.checked_mul(1000).ok_or_else(too_far)?;
    if whole_ms <= now_ms {
        return Err(past());
    }
    // A limit beyond i64::MAX cannot be exceeded.
    if now_ms
        .checked_add(max_ttl_ms)
        .is_some_and(|limit| exp_ms > limit)
    {
        return Err(too_far());
    }
    Ok(exp_s)
}

/// Whether a token expiring at `exp_s` is still accepted at `now_ms` with `leeway_ms` of clock
/// skew. RFC 7519 §4.1.4: it MUST NOT be accepted on or after `exp`, so the bound is
/// exclusive — accepted up to `exp + leeway - 1 ms`. A bound that would overflow accepts
/// nothing.
#[inline]
pub(crate) fn accepted_at(exp_s: i64, leeway_ms: i64, now_ms: i64) -> bool {
    exp_s
        .checked_mul(1000)
        .and_then(|ms| ms.checked_add(leeway_ms))
        .is_some_and(|limit| now_ms < limit)
}

/// A key's token header, `{"alg":"HS256","kid":"<kid>"}`, base64url-encoded and followed by
/// the '.' that ends it: the same for every token the key signs, so it is encoded once, when
/// the key is loaded. Issuing copies it; verifying compares a token's first bytes with it.
#[derive(Clone, Copy)]
pub(crate) struct EncodedHeader {
    bytes: [u8; HEADER_B64_MAX + 1],
    len: u8,
}

/// Longest encoded header: a 3-character key id makes the JSON 27 bytes, 36 characters.
const HEADER_B64_MAX: usize = 36;

impl EncodedHeader {
    pub(crate) fn new(kid: KeyId) -> EncodedHeader {
        let mut json = [0u8; 27];
        let kid = kid.as_str().as_bytes();
        let mut n = 0;
        for part in [HEADER_PREFIX, kid, HEADER_SUFFIX] {
            json[n..n + part.len()].copy_from_slice(part);
            n += part.len();
        }
        let mut bytes = [0u8; HEADER_B64_MAX + 1];
        // 25..=27 bytes of JSON are 34..=36 characters, which always fit.
        let len = URL_SAFE_NO_PAD
            .encode_slice(&json[..n], &mut bytes)
            .unwrap_or_else(|_| unreachable!("a key id has 1..=3 characters"));
        bytes[len] = b'.';
        EncodedHeader {
            bytes,
            len: (len + 1) as u8,
        }
    }

    /// The encoded header and its trailing '.'.
    #[inline]
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// The eight decimal digits of `v` (below 10^8, leading zeros included) as ASCII, the first
/// in the lowest byte. All digits are computed at once: the number is split into two 4-digit
/// lanes, each into two 2-digit lanes, each into two digits, dividing every lane by a
/// multiplication and a shift that are exact in the lane's range (x / 100 = x·10486 >> 20
/// for x < 10^4; x / 10 = x·103 >> 10 for x < 100), so no lane spills into its neighbour.
#[inline(always)]
fn ascii8(v: u64) -> u64 {
    debug_assert!(v < 100_000_000);
    let x = (v / 10_000) | ((v % 10_000) << 32);
    let hundreds = ((x * 10_486) >> 20) & 0x0000_007F_0000_007F;
    let x = hundreds | ((x - hundreds * 100) << 16);
    let tens = ((x * 103) >> 10) & 0x000F_000F_000F_000F;
    let x = tens | ((x - tens * 10) << 8);
    x + 0x3030_3030_3030_3030
}

/// Writes `v` (below 10^16) in decimal at `out[at..]` and returns the index after its last
/// digit. Writes 16 bytes: `out` needs room for them; bytes after the number are scratch.
#[inline(always)]
fn put_u64(out: &mut [u8], at: usize, v: u64) -> usize {
    debug_assert!(v < 10_000_000_000_000_000);
    let n = v.checked_ilog10().unwrap_or(0) as usize + 1;
    let text = u128::from(ascii8(v / 100_000_000)) | (u128::from(ascii8(v % 100_000_000)) << 64);
    // The leading zeros are the low bytes: shift them out.
    out[at..at + 16].copy_from_slice(&(text >> (8 * (16 - n))).to_le_bytes());
    at + n
}

#[inline]
fn put(out: &mut [u8], at: usize, s: &[u8]) -> usize {
    out[at..at + s.len()].copy_from_slice(s);
    at + s.len()
}

/// Longest payload: 10-digit handle, 5-digit epoch, 10-digit times.
const PAYLOAD_MAX: usize = 65;

/// Signs `claims` with `key`. The claims must be within the documented ranges.
pub(crate) fn encode(key: &SigningKey, claims: &Claims) -> Result<SessionToken> {
    // The engine checks each of these first; a value outside them would break the length
    // bounds (or, negative, could not be written), so it is refused rather than clamped.
    if !((1..=MAX_HANDLE).contains(&claims.handle)
        && claims.epoch <= MAX_EPOCH
        && (0..=MAX_SECONDS).contains(&claims.iat_s)
        && (0..=MAX_SECONDS).contains(&claims.exp_s))
    {
        return Err(Error::new(
            ErrorKind::Internal,
            "session token claims out of range",
        ));
    }
    // 16 bytes of scratch after the payload for `put_u64`.
    let mut payload = [0u8; PAYLOAD_MAX + 16];
    let mut p = put(&mut payload, 0, SUB);
    p = put_u64(&mut payload, p, claims.handle);
    p = put(&mut payload, p, RV_AFTER_SUB);
    p = put_u64(&mut payload, p, u64::from(claims.epoch));
    p = put(&mut payload, p, br#","iat":"#);
    p = put_u64(&mut payload, p, claims.iat_s.unsigned_abs());
    p = put(&mut payload, p, br#","exp":"#);
    p = put_u64(&mut payload, p, claims.exp_s.unsigned_abs());
    p = put(&mut payload, p, b"}");
    let payload = &payload[..p];

    // Written straight into the returned allocation, sized exactly (unpadded base64 of n
    // bytes is ⌈4n / 3⌉ characters), so the token text exists in one place only.
    let header = key.header.as_bytes();
    let signing_len = header.len() + (4 * payload.len()).div_ceil(3);
    let mut text = Zeroizing::new(Vec::with_capacity(signing_len + 1 + SIG_B64_LEN));
    text.extend_from_slice(header);
    text.resize(signing_len + 1 + SIG_B64_LEN, 0);
    let internal = || Error::new(ErrorKind::Internal, "session token buffer overflow");
    let written = URL_SAFE_NO_PAD
        .encode_slice(payload, &mut text[header.len()..signing_len])
        .map_err(|_| internal())?;
    let mut mac = key.mac.clone();
    mac.update(&text[..signing_len]);
    let sig = mac.finalize().into_bytes();
    text[signing_len] = b'.';
    let sig_written = URL_SAFE_NO_PAD
        .encode_slice(sig, &mut text[signing_len + 1..])
        .map_err(|_| internal())?;
    if header.len() + written != signing_len || sig_written != SIG_B64_LEN {
        return Err(internal());
    }
    // Base64url and the header are ASCII, so this never fails; the bytes move, not copy.
    let text = String::from_utf8(std::mem::take(&mut *text)).map_err(|e| {
        e.into_bytes().zeroize();
        internal()
    })?;
    Ok(SessionToken {
        token: Zeroizing::new(text.into_boxed_str()),
        expires_at_ms: claims.exp_ms(),
    })
}

/// Decodes strict base64url into `out`, returning the decoded length.
fn decode<'a>(input: &[u8], out: &'a mut [u8]) -> Result<&'a [u8]> {
    // The crate's URL_SAFE_NO_PAD engine rejects padding and non-zero trailing bits, so each
    // byte string has exactly one accepted encoding.
    if input.len() * 3 / 4 > out.len() {
        return Err(Error::invalid_token());
    }
    match URL_SAFE_NO_PAD.decode_slice(input, out) {
        Ok(n) => Ok(&out[..n]),
        Err(_) => Err(Error::invalid_token()),
    }
}

/// A token whose MAC one of our keys verified.
#[derive(Debug)]
pub(crate) struct Genuine {
    pub claims: Claims,
    pub key_id: KeyId,
    /// Signed by a retired key: genuine, but revoked.
    pub key_retired: bool,
}

/// The header of a token that no live key's header begins: decoded, to find a retired key
/// (whose genuine tokens are revoked, not invalid) or to refuse it. Returns where the header
/// ends, the key's HMAC state and id, and whether the key is retired.
#[cold]
fn header_by_decoding(ring: &KeyRing, bytes: &[u8]) -> Result<(usize, Hmac<Sha256>, KeyId, bool)> {
    // The header is 34..=36 characters (its key id has 1..=3).
    let d1 = (34..=36)
        .find(|&i| bytes[i] == b'.')
        .ok_or_else(Error::invalid_token)?;
    // `{"alg":"HS256","kid":` (exactly 21 bytes, so exactly 28 base64 characters that never
    // change) followed by `"<kid>"}`: compare the constant part and decode only the few
    // characters that carry the key id.
    let tail_b64 = bytes[..d1]
        .strip_prefix(HEADER_PREFIX_B64)
        .ok_or_else(Error::invalid_token)?;
    let mut tail_buf = [0u8; 8];
    let tail = decode(tail_b64, &mut tail_buf)?;
    let kid = tail
        .strip_prefix(b"\"")
        .and_then(|t| t.strip_suffix(HEADER_SUFFIX))
        .ok_or_else(Error::invalid_token)?;
    let number = KeyId::parse_number(kid).ok_or_else(Error::invalid_token)?;
    Ok(
        match ring.lookup(number).ok_or_else(Error::invalid_token)? {
            // Not reached for canonical headers (the text compare found those), kept so the
            // two paths cannot disagree.
            KeyRef::Live(key) => (d1, key.mac.clone(), key.id, false),
            // Only revoked tokens come here: derive the HMAC state from the kept secret.
            KeyRef::Retired(secret) => (
                d1,
                <Hmac<Sha256> as Mac>::new_from_slice(secret)
                    .map_err(|_| Error::new(ErrorKind::Internal, "HMAC takes any key length"))?,
                KeyId::from_number(number),
                true,
            ),
        },
    )
}

/// Checks a token's format and MAC and returns its claims and key. Expiry, revocation and the
/// user's state are the engine's to check. A token signed by a retired key is returned too
/// (marked), since only after its MAC is checked may it be called revoked rather than invalid.
pub(crate) fn verify(ring: &KeyRing, token: &str) -> Result<Genuine> {
    let bytes = token.as_bytes();
    if !(SESSION_TOKEN_MIN_LEN..=SESSION_TOKEN_MAX_LEN).contains(&bytes.len()) {
        return Err(Error::invalid_token());
    }
    // No scanning for the dots: the signature is always the last 43 characters, and the
    // header ends where the key's encoded header does. Any other '.' is rejected by the
    // base64 decoder and the signature compare that follow.
    let d2 = bytes.len() - SIG_B64_LEN - 1;
    if bytes[d2] != b'.' {
        return Err(Error::invalid_token());
    }
    // Nearly every token names a live key, and then its header is that key's encoded header,
    // byte for byte (only one encoding of it is accepted), so comparing text finds the key
    // without decoding anything. Anything else takes the decoding path.
    let (d1, mut mac, key_id, key_retired) = match ring.live_by_header(bytes) {
        Some(key) => (
            key.header.as_bytes().len() - 1,
            key.mac.clone(),
            key.id,
            false,
        ),
        None => header_by_decoding(ring, bytes)?,
    };
    let (payload_b64, sig_b64) = (&bytes[d1 + 1..d2], &bytes[d2 + 1..]);

    // Encode the expected MAC and compare text in constant time: cheaper than decoding the
    // presented one, and equally strict, since only the canonical encoding can be equal.
    mac.update(&bytes[..d2]);
    let expected = mac.finalize().into_bytes();
    let mut expected_b64 = [0u8; SIG_B64_LEN];
    if URL_SAFE_NO_PAD.encode_slice(expected, &mut expected_b64) != Ok(SIG_B64_LEN)
        || !constant_time::eq(&expected_b64, sig_b64)
    {
        return Err(Error::invalid_token());
    }

    // The MAC is genuine, so these bytes are ours; still parse strictly rather than trust.
    let mut payload_buf = [0u8; PAYLOAD_BUF];
    let len = decode(payload_b64, &mut payload_buf[..72])?.len();
    let claims = parse_payload(&payload_buf, len).ok_or_else(Error::invalid_token)?;
    Ok(Genuine {
        claims,
        key_id,
        key_retired,
    })
}

/// Where a payload is decoded and parsed: room for the longest payload (66 bytes, format
/// 1) and, after it, zeros — never digits — so 16 bytes can be read from any position in it.
const PAYLOAD_BUF: usize = 96;
/// The longest payload either format allows.
const PAYLOAD_MAX_ANY: usize = 66;

/// Eight ASCII bytes (little-endian) checked and converted at once: the bytes' values
/// (meaningful only for digits) and a mask whose byte is non-zero wherever the byte is not
/// an ASCII digit.
#[inline(always)]
fn swar_digits(chunk: u64) -> (u64, u64) {
    const LOW: u64 = 0x0F0F_0F0F_0F0F_0F0F;
    let t = chunk ^ 0x3030_3030_3030_3030; // '0'..='9' become 0..=9, high nibble 0
                                           // High nibble set: not 0x30..=0x3F; low nibble + 6 carries: 0x3A..=0x3F. The addition
                                           // is done on low nibbles only, so no byte carries into its neighbour.
    let not_digit = (t & !LOW) | (((t & LOW) + 0x0606_0606_0606_0606) & !LOW);
    (t, not_digit)
}

/// The number written by eight digit values (each 0..=9), the first in the lowest byte.
/// Each step merges neighbouring lanes; the products' overflow past bit 63 lands only in
/// lanes that the next mask drops, hence the wrapping multiplications.
#[inline(always)]
fn swar_value(d: u64) -> u64 {
    let d = d * 10 + (d >> 8); // even bytes: pairs of digits (at most 99, no carry)
    let d = (d & 0x00FF_00FF_00FF_00FF).wrapping_mul((100 << 16) + 1) >> 16; // 4 digits
    (d & 0x0000_FFFF_0000_FFFF).wrapping_mul((10_000 << 32) + 1) >> 32
}

/// Reads the canonical decimal number (1..=`max_digits` digits, no leading zero) at `at`
/// and returns it with the index after it. Every byte is checked in two 8-byte words,
/// without a branch per digit.
#[inline(always)]
fn number(buf: &[u8; PAYLOAD_BUF], at: usize, max_digits: usize) -> Option<(u64, usize)> {
    debug_assert!(max_digits <= 16 && at + 16 <= PAYLOAD_BUF);
    let word =
        |i: usize| -> Option<u64> { Some(u64::from_le_bytes(buf.get(i..i + 8)?.try_into().ok()?)) };
    let (lo, lo_bad) = swar_digits(word(at)?);
    let (hi, hi_bad) = swar_digits(word(at + 8)?);
    let n = if lo_bad != 0 {
        (lo_bad.trailing_zeros() / 8) as usize
    } else {
        8 + (hi_bad.trailing_zeros() / 8) as usize // 16 when all 16 are digits
    };
    if n == 0 || n > max_digits || (n > 1 && buf[at] == b'0') {
        return None;
    }
    // Shifting left drops the bytes after the number and puts zeros (leading zero digits)
    // in front of it.
    let v = if n <= 8 {
        swar_value(lo << (64 - 8 * n))
    } else {
        swar_value(lo) * 10u64.pow((n - 8) as u32) + swar_value(hi << (64 - 8 * (n - 8)))
    };
    Some((v, at + n))
}

/// Parses `{"sub":"N","rv":N,"iat":N,"exp":N}` (or format 1's `{"u":N,"rv":N,...}`) with
/// canonical decimal numbers, from the first `len` bytes of `buf` (the rest are zeros).
fn parse_payload(buf: &[u8; PAYLOAD_BUF], len: usize) -> Option<Claims> {
    let p = buf.get(..len)?;
    if len > PAYLOAD_MAX_ANY {
        return None;
    }
    #[inline(always)]
    fn field(
        buf: &[u8; PAYLOAD_BUF],
        p: &[u8],
        at: &mut usize,
        name: &[u8],
        max_digits: usize,
    ) -> Option<u64> {
        if p.get(*at..*at + name.len())? != name {
            return None;
        }
        // Zeros follow the payload, so a number never runs past its end.
        let (v, end) = number(buf, *at + name.len(), max_digits)?;
        *at = end;
        Some(v)
    }
    let mut at = 0;
    let (handle, epoch) = if p.starts_with(SUB) {
        let handle = field(buf, p, &mut at, SUB, 10)?;
        (handle, field(buf, p, &mut at, RV_AFTER_SUB, 5)?)
    } else {
        let handle = field(buf, p, &mut at, V1_U, 12)?;
        (handle, field(buf, p, &mut at, V1_RV, 7)?)
    };
    let iat = field(buf, p, &mut at, br#","iat":"#, 10)?;
    let exp = field(buf, p, &mut at, br#","exp":"#, 10)?;
    if &p[at..] != b"}" || handle == 0 {
        return None;
    }
    // At most 12, 7 and 10 digits: every value fits its type.
    Some(Claims {
        handle,
        epoch: u32::try_from(epoch).ok()?,
        iat_s: i64::try_from(iat).ok()?,
        exp_s: i64::try_from(exp).ok()?,
    })
}

/// Why a session token fails [`verify`] before its claims can be trusted: the step-by-step
/// account that `verify` deliberately never gives (every one of these is the same
/// [`ErrorKind::InvalidToken`] there). For operators only, through
/// [`crate::Engine::diagnose_token`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SessionFlaw {
    /// Not 119..=168 characters.
    Length(usize),
    /// Not three base64url parts where Tessera puts them.
    Structure,
    /// A header other than `{"alg":"HS256","kid":"<kid>"}`.
    Header,
    /// A well-formed key id this engine never issued.
    UnknownKey(String),
    /// The signature does not verify with the key the header names.
    Signature(KeyId),
    /// Validly signed, but the payload is not Tessera's claims (only a bug could sign one).
    Claims,
}

/// [`verify`], one step at a time, saying which step failed. It accepts exactly what `verify`
/// accepts (a test holds the two together), and like it never exposes the key or the MAC.
pub(crate) fn diagnose(ring: &KeyRing, token: &str) -> std::result::Result<Genuine, SessionFlaw> {
    let bytes = token.as_bytes();
    if !(SESSION_TOKEN_MIN_LEN..=SESSION_TOKEN_MAX_LEN).contains(&bytes.len()) {
        return Err(SessionFlaw::Length(token.chars().count()));
    }
    let d2 = bytes.len() - SIG_B64_LEN - 1;
    let d1 = (34..=36)
        .find(|&i| bytes[i] == b'.')
        .ok_or(SessionFlaw::Structure)?;
    if bytes[d2] != b'.' {
        return Err(SessionFlaw::Structure);
    }
    let tail_b64 = bytes[..d1]
        .strip_prefix(HEADER_PREFIX_B64)
        .ok_or(SessionFlaw::Header)?;
    let mut tail_buf = [0u8; 8];
    let tail = decode(tail_b64, &mut tail_buf).map_err(|_| SessionFlaw::Header)?;
    let kid = tail
        .strip_prefix(b"\"")
        .and_then(|t| t.strip_suffix(HEADER_SUFFIX))
        .ok_or(SessionFlaw::Header)?;
    let number = KeyId::parse_number(kid).ok_or(SessionFlaw::Header)?;
    let key_id = KeyId::from_number(number);
    let (mut mac, key_retired) = match ring.lookup(number) {
        Some(KeyRef::Live(key)) => (key.mac.clone(), false),
        Some(KeyRef::Retired(secret)) => (
            <Hmac<Sha256> as Mac>::new_from_slice(secret)
                .map_err(|_| SessionFlaw::Signature(key_id))?,
            true,
        ),
        None => return Err(SessionFlaw::UnknownKey(key_id.to_string())),
    };
    mac.update(&bytes[..d2]);
    let expected = mac.finalize().into_bytes();
    let mut expected_b64 = [0u8; SIG_B64_LEN];
    if URL_SAFE_NO_PAD.encode_slice(expected, &mut expected_b64) != Ok(SIG_B64_LEN)
        || !constant_time::eq(&expected_b64, &bytes[d2 + 1..])
    {
        return Err(SessionFlaw::Signature(key_id));
    }
    let mut payload_buf = [0u8; PAYLOAD_BUF];
    let len = decode(&bytes[d1 + 1..d2], &mut payload_buf[..72])
        .map_err(|_| SessionFlaw::Claims)?
        .len();
    let claims = parse_payload(&payload_buf, len).ok_or(SessionFlaw::Claims)?;
    Ok(Genuine {
        claims,
        key_id,
        key_retired,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use ring::rand::SystemRandom;

    /// The byte-at-a-time parser the word-at-a-time one replaced, kept as its model.
    /// Parses `{"sub":"N","rv":N,"iat":N,"exp":N}` (or format 1's `{"u":N,"rv":N,...}`) with
    /// canonical decimal numbers.
    fn parse_payload_reference(p: &[u8]) -> Option<Claims> {
        /// Reads `name` then a canonical number of at most `max_digits` digits.
        #[inline(always)]
        fn field(p: &[u8], at: &mut usize, name: &[u8], max_digits: usize) -> Option<u64> {
            if p.get(*at..*at + name.len())? != name {
                return None;
            }
            let start = *at + name.len();
            let mut i = start;
            let mut v = 0u64;
            while let Some(&d) = p.get(i) {
                if !d.is_ascii_digit() || i - start == max_digits {
                    break;
                }
                v = v * 10 + u64::from(d - b'0');
                i += 1;
            }
            let n = i - start;
            if n == 0 || (n > 1 && p[start] == b'0') || p.get(i).is_some_and(u8::is_ascii_digit) {
                return None;
            }
            *at = i;
            Some(v)
        }
        let mut at = 0;
        let (handle, epoch) = if p.starts_with(SUB) {
            let handle = field(p, &mut at, SUB, 10)?;
            (handle, field(p, &mut at, RV_AFTER_SUB, 5)?)
        } else {
            let handle = field(p, &mut at, V1_U, 12)?;
            (handle, field(p, &mut at, V1_RV, 7)?)
        };
        let iat = field(p, &mut at, br#","iat":"#, 10)?;
        let exp = field(p, &mut at, br#","exp":"#, 10)?;
        if &p[at..] != b"}" || handle == 0 {
            return None;
        }
        // At most 12, 7 and 10 digits: every value fits its type.
        Some(Claims {
            handle,
            epoch: u32::try_from(epoch).ok()?,
            iat_s: i64::try_from(iat).ok()?,
            exp_s: i64::try_from(exp).ok()?,
        })
    }

    fn ring_with_keys(n: u32) -> KeyRing {
        let rng = SystemRandom::new();
        let mut r = KeyRing::generate(&rng, 0).unwrap();
        for _ in 1..n {
            r = r.rotated(&rng, 0).unwrap();
        }
        r
    }

    fn claims(handle: u64, epoch: u32, iat_s: i64, exp_s: i64) -> Claims {
        Claims {
            handle,
            epoch,
            iat_s,
            exp_s,
        }
    }

    /// Signs any header and payload with `r`'s active key, as a JWT library would.
    fn sign(r: &KeyRing, header: &str, payload: &str) -> String {
        let mut s = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload)
        );
        let mut m = r.active().mac.clone();
        m.update(s.as_bytes());
        s.push('.');
        s.push_str(&URL_SAFE_NO_PAD.encode(m.finalize().into_bytes()));
        s
    }

    /// A ring whose only key is the last possible one (`zzz`, the longest key id).
    fn longest_kid_ring() -> KeyRing {
        let stored = crate::key_ring::StoredKeyRing {
            keys: vec![crate::key_ring::StoredKey {
                number: crate::key_ring::MAX_KEY_NUMBER,
                created_at_ms: 0,
                secret: [1; 32],
            }],
            next_number: crate::key_ring::MAX_KEY_NUMBER + 1,
            ..Default::default()
        };
        KeyRing::from_stored(&stored).unwrap()
    }

    #[test]
    fn shortest_and_longest_tokens_hit_the_documented_bounds() {
        let short_ring = ring_with_keys(1);
        let t = encode(short_ring.active(), &claims(1, 0, 0, 0)).unwrap();
        assert_eq!(t.as_str().len(), ISSUED_MIN_LEN);
        const { assert!(ISSUED_MIN_LEN >= SESSION_TOKEN_MIN_LEN) };
        assert_eq!(
            verify(&short_ring, t.as_str()).unwrap().claims,
            claims(1, 0, 0, 0)
        );

        let long_ring = longest_kid_ring();
        let c = claims(MAX_HANDLE, MAX_EPOCH, MAX_SECONDS, MAX_SECONDS);
        let t = encode(long_ring.active(), &c).unwrap();
        assert_eq!(t.as_str().len(), SESSION_TOKEN_MAX_LEN);
        assert_eq!(verify(&long_ring, t.as_str()).unwrap().claims, c);

        // One past each field's budget cannot be written.
        for over in [
            claims(MAX_HANDLE + 1, 0, 0, 0),
            claims(1, MAX_EPOCH + 1, 0, 0),
            claims(1, 0, MAX_SECONDS + 1, 0),
            claims(1, 0, 0, MAX_SECONDS + 1),
            claims(1, 0, -1, 0),
            claims(1, 0, 0, i64::MIN),
            claims(0, 0, 0, 0),
        ] {
            assert_eq!(
                encode(long_ring.active(), &over).unwrap_err().kind(),
                ErrorKind::Internal,
                "{over:?}"
            );
        }
    }

    #[test]
    fn format_1_tokens_keep_verifying_at_both_length_bounds() {
        let short_ring = ring_with_keys(1);
        let t = sign(
            &short_ring,
            r#"{"alg":"HS256","kid":"1"}"#,
            r#"{"u":1,"rv":0,"iat":0,"exp":0}"#,
        );
        assert_eq!(t.len(), SESSION_TOKEN_MIN_LEN);
        assert_eq!(verify(&short_ring, &t).unwrap().claims, claims(1, 0, 0, 0));

        let long_ring = longest_kid_ring();
        let t = sign(
            &long_ring,
            r#"{"alg":"HS256","kid":"zzz"}"#,
            r#"{"u":999999999999,"rv":9999999,"iat":9999999999,"exp":9999999999}"#,
        );
        assert_eq!(t.len(), SESSION_TOKEN_MAX_LEN);
        let c = claims(999_999_999_999, 9_999_999, MAX_SECONDS, MAX_SECONDS);
        assert_eq!(verify(&long_ring, &t).unwrap().claims, c);
        const { assert!(SEALED_EPOCH > 9_999_999 && SEALED_EPOCH > MAX_EPOCH) };
    }

    fn golden_ring() -> KeyRing {
        let stored = crate::key_ring::StoredKeyRing {
            keys: vec![crate::key_ring::StoredKey {
                number: 1,
                created_at_ms: 0,
                secret: *b"tessera-golden-vector-secret-32b",
            }],
            next_number: 2,
            ..Default::default()
        };
        KeyRing::from_stored(&stored).unwrap()
    }

    #[test]
    fn golden_token_stays_byte_identical() {
        // Pins the wire format: a token issued by this release must verify in the next one.
        // If this fails, the format changed; keep verifying the old one (GOLDEN_V1 below).
        let r = golden_ring();
        let c = claims(42, 3, 1_763_000_000, 1_763_604_800);
        let t = encode(r.active(), &c).unwrap();
        assert_eq!(t.as_str(), GOLDEN);
        assert_eq!(verify(&r, GOLDEN).unwrap().claims, c);
    }

    #[test]
    fn golden_format_1_token_still_verifies() {
        // Issued by the release before `sub`: the same claims, read the same way.
        let c = claims(42, 3, 1_763_000_000, 1_763_604_800);
        assert_eq!(verify(&golden_ring(), GOLDEN_V1).unwrap().claims, c);
    }

    /// Computed independently with Python's hmac module (HS256 over the signing input).
    const GOLDEN: &str = "eyJhbGciOiJIUzI1NiIsImtpZCI6IjEifQ.eyJzdWIiOiI0MiIsInJ2IjozLCJpYXQiOjE3NjMwMDAwMDAsImV4cCI6MTc2MzYwNDgwMH0.73e7pI-TOup0s6puZLR586IfirjAwGUYwAMHfgKxvak";
    /// The same claims in format 1 (`"u":42`), as the previous release issued them.
    const GOLDEN_V1: &str = "eyJhbGciOiJIUzI1NiIsImtpZCI6IjEifQ.eyJ1Ijo0MiwicnYiOjMsImlhdCI6MTc2MzAwMDAwMCwiZXhwIjoxNzYzNjA0ODAwfQ.dCd7pqjXAY4dOB2Lz8-Lwq7QMm4lKJhsed7PE_HuBZ0";

    #[test]
    fn header_prefix_constant_is_the_encoding_of_the_fixed_part() {
        assert_eq!(
            URL_SAFE_NO_PAD.encode(&HEADER_PREFIX[..21]).as_bytes(),
            HEADER_PREFIX_B64
        );
    }

    #[test]
    fn header_and_payload_are_the_documented_json() {
        let r = ring_with_keys(1);
        let t = encode(r.active(), &claims(42, 3, 1_700_000_000, 1_700_604_800)).unwrap();
        let parts: Vec<&str> = t.as_str().split('.').collect();
        assert_eq!(parts.len(), 3);
        let h = URL_SAFE_NO_PAD.decode(parts[0]).unwrap();
        let p = URL_SAFE_NO_PAD.decode(parts[1]).unwrap();
        assert_eq!(h, br#"{"alg":"HS256","kid":"1"}"#);
        assert_eq!(
            p,
            br#"{"sub":"42","rv":3,"iat":1700000000,"exp":1700604800}"#
        );
    }

    #[test]
    fn interop_with_jsonwebtoken() {
        let r = ring_with_keys(1);
        let secret = r.to_stored().keys[0].secret;
        let t = encode(r.active(), &claims(7, 0, 1_700_000_000, 4_000_000_000)).unwrap();
        #[derive(serde::Deserialize)]
        struct C {
            sub: String,
            rv: u32,
            exp: u64,
        }
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        v.required_spec_claims = ["exp", "sub"].iter().map(|s| s.to_string()).collect();
        v.sub = Some("7".into());
        let d = jsonwebtoken::decode::<C>(
            t.as_str(),
            &jsonwebtoken::DecodingKey::from_secret(&secret),
            &v,
        )
        .unwrap();
        assert_eq!(
            (d.claims.sub.as_str(), d.claims.rv, d.claims.exp),
            ("7", 0, 4_000_000_000)
        );
        assert_eq!(d.header.kid.as_deref(), Some("1"));
    }

    #[test]
    fn foreign_but_validly_signed_shapes_are_rejected() {
        // Tokens a JWT library would accept with the same key, but Tessera never writes.
        let r = ring_with_keys(1);
        const H: &str = r#"{"alg":"HS256","kid":"1"}"#;
        for good in [
            r#"{"sub":"1","rv":0,"iat":1700000000,"exp":1700000001}"#,
            r#"{"sub":"9999999999","rv":99999,"iat":1700000000,"exp":1700000001}"#,
            r#"{"u":1,"rv":0,"iat":1700000000,"exp":1700000001}"#,
            r#"{"u":999999999999,"rv":9999999,"iat":1700000000,"exp":1700000001}"#,
        ] {
            assert!(verify(&r, &sign(&r, H, good)).is_ok(), "{good}");
        }
        for (h, p) in [
            (
                r#"{"alg":"none","kid":"1"}"#,
                r#"{"sub":"1","rv":0,"iat":1700000000,"exp":1700000001}"#,
            ),
            (
                r#"{"kid":"1","alg":"HS256"}"#,
                r#"{"sub":"1","rv":0,"iat":1700000000,"exp":1700000001}"#,
            ),
            (
                r#"{"alg":"HS256","kid":"1","typ":"JWT"}"#,
                r#"{"sub":"1","rv":0,"iat":1700000000,"exp":1700000001}"#,
            ),
            (
                r#"{"alg":"HS256","kid":"01"}"#,
                r#"{"sub":"1","rv":0,"iat":1700000000,"exp":1700000001}"#,
            ),
            (
                H,
                r#"{"sub":"01","rv":0,"iat":1700000000,"exp":1700000001}"#,
            ),
            (H, r#"{"sub":"0","rv":0,"iat":1700000000,"exp":1700000001}"#),
            (H, r#"{"sub":"","rv":0,"iat":1700000000,"exp":1700000001}"#),
            (H, r#"{"sub":1,"rv":0,"iat":1700000000,"exp":1700000001}"#),
            (
                H,
                r#"{"sub":"1 ","rv":0,"iat":1700000000,"exp":1700000001}"#,
            ),
            (
                H,
                r#"{"sub":"\u0031","rv":0,"iat":1700000000,"exp":1700000001}"#,
            ),
            // One digit past the format's budget: handle, epoch.
            (
                H,
                r#"{"sub":"10000000000","rv":0,"iat":1700000000,"exp":1700000001}"#,
            ),
            (
                H,
                r#"{"sub":"1","rv":100000,"iat":1700000000,"exp":1700000001}"#,
            ),
            (
                H,
                r#"{"u":1000000000000,"rv":0,"iat":1700000000,"exp":1700000001}"#,
            ),
            (
                H,
                r#"{"u":1,"rv":10000000,"iat":1700000000,"exp":1700000001}"#,
            ),
            (
                H,
                r#"{"sub":"1","rv":0,"iat":17000000000,"exp":1700000001}"#,
            ),
            // The two formats do not mix.
            (H, r#"{"u":"1","rv":0,"iat":1700000000,"exp":1700000001}"#),
            (
                H,
                r#"{"sub":"1","u":1,"rv":0,"iat":1700000000,"exp":1700000001}"#,
            ),
            (H, r#"{"u":01,"rv":0,"iat":1700000000,"exp":1700000001}"#),
            (H, r#"{"u":0,"rv":0,"iat":1700000000,"exp":1700000001}"#),
            (H, r#"{"rv":0,"sub":"1","iat":1700000000,"exp":1700000001}"#),
            (
                H,
                r#"{"sub":"1","rv":0,"iat":1700000000,"exp":1700000001,"x":1}"#,
            ),
            (
                H,
                r#"{"sub":"1", "rv":0,"iat":1700000000,"exp":1700000001}"#,
            ),
        ] {
            let t = sign(&r, h, p);
            assert!(verify(&r, &t).is_err(), "{h} {p}");
        }
    }

    #[test]
    fn padding_and_stray_bits_are_rejected() {
        let r = ring_with_keys(1);
        let t = encode(r.active(), &claims(1, 0, 1_700_000_000, 1_700_000_001)).unwrap();
        let s = t.as_str();
        let (rest, sig) = s.rsplit_once('.').unwrap();
        assert!(verify(&r, &format!("{rest}.{sig}=")).is_err());
        // The last signature character carries 2 spare bits; setting them must fail.
        let last = sig.as_bytes()[42];
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let idx = alphabet.iter().position(|&c| c == last).unwrap();
        let tweaked = alphabet[idx | 1] as char;
        if tweaked as u8 != last {
            let bad = format!("{rest}.{}{tweaked}", &sig[..42]);
            assert!(verify(&r, &bad).is_err());
        }
    }

    #[test]
    fn retired_keys_are_recognised_only_through_the_mac() {
        let rng = SystemRandom::new();
        let r1 = KeyRing::generate(&rng, 0).unwrap();
        let c = claims(1, 0, 1_700_000_000, 1_700_000_001);
        let t = encode(r1.active(), &c).unwrap();
        let r2 = r1.rotated(&rng, 0).unwrap();
        let live = verify(&r2, t.as_str()).unwrap();
        assert!(!live.key_retired, "old keys keep verifying");
        // Retired: still genuine (MAC checked with the kept secret), marked retired.
        let r3 = r2.retired(r1.active().id).unwrap();
        let g = verify(&r3, t.as_str()).unwrap();
        assert_eq!((g.claims, g.key_id.as_str(), g.key_retired), (c, "1", true));
        let (r4, _) = r3.replaced(&rng, 0).unwrap();
        assert!(verify(&r4, t.as_str()).unwrap().key_retired);
        // A forgery naming the retired key, or any tampering, is invalid, not revoked.
        let forged = sign(
            &ring_with_keys(1),
            r#"{"alg":"HS256","kid":"1"}"#,
            r#"{"sub":"1","rv":0,"iat":1700000000,"exp":1700000001}"#,
        );
        assert_eq!(
            verify(&r4, &forged).unwrap_err().kind(),
            ErrorKind::InvalidToken
        );
        let mut tampered = t.as_str().to_owned();
        tampered.pop();
        tampered.push(if t.as_str().ends_with('A') { 'B' } else { 'A' });
        assert_eq!(
            verify(&r4, &tampered).unwrap_err().kind(),
            ErrorKind::InvalidToken
        );
        // A key id never issued, or the same id with another secret: invalid.
        let other = KeyRing::generate(&rng, 0).unwrap();
        assert!(
            verify(&other, t.as_str()).is_err(),
            "same kid, different secret"
        );
        let unissued = encode(ring_with_keys(9).active(), &c).unwrap();
        assert_eq!(
            verify(&r4, unissued.as_str()).unwrap_err().kind(),
            ErrorKind::InvalidToken
        );
    }

    #[test]
    fn debug_is_redacted() {
        let r = ring_with_keys(1);
        let t = encode(r.active(), &claims(1, 0, 1_700_000_000, 1_700_000_001)).unwrap();
        let shown = format!("{t:?}");
        assert!(!shown.contains(&t.as_str()[..20]));
    }

    #[test]
    fn numbers_are_written_in_decimal_at_every_digit_count() {
        let mut values = vec![0u64, 9_999_999_999_999_999, 1_234_567_890_123_456];
        for k in 1..=15 {
            let p = 10u64.pow(k);
            values.extend([p - 1, p, p + 1, 5 * p + 5]);
        }
        for v in values {
            let mut out = [b'x'; 24];
            let end = put_u64(&mut out, 2, v);
            assert_eq!(&out[2..end], v.to_string().as_bytes());
            assert_eq!(&out[..2], b"xx", "{v}");
        }
    }

    #[test]
    fn encoded_headers_are_the_headers_of_each_key_id_length() {
        for number in [1, 35, 36, 1295, 1296, crate::key_ring::MAX_KEY_NUMBER] {
            let kid = KeyId::from_number(number);
            let json = format!(r#"{{"alg":"HS256","kid":"{kid}"}}"#);
            let expected = format!("{}.", URL_SAFE_NO_PAD.encode(json));
            assert_eq!(
                EncodedHeader::new(kid).as_bytes(),
                expected.as_bytes(),
                "{kid}"
            );
        }
    }

    /// Runs the word-at-a-time parser the way `verify` does (zeros after the payload).
    fn parse(p: &[u8]) -> Option<Claims> {
        let mut buf = [0u8; PAYLOAD_BUF];
        let n = p.len().min(72);
        buf[..n].copy_from_slice(&p[..n]);
        parse_payload(&buf, n)
    }

    #[test]
    fn payload_parser_edges() {
        let ok = |p: &str, c: Claims| assert_eq!(parse(p.as_bytes()), Some(c), "{p}");
        let bad = |p: &str| assert_eq!(parse(p.as_bytes()), None, "{p}");
        ok(r#"{"sub":"1","rv":0,"iat":0,"exp":0}"#, claims(1, 0, 0, 0));
        ok(
            r#"{"sub":"9999999999","rv":99999,"iat":9999999999,"exp":9999999999}"#,
            claims(MAX_HANDLE, MAX_EPOCH, MAX_SECONDS, MAX_SECONDS),
        );
        ok(
            r#"{"u":999999999999,"rv":9999999,"iat":12345678,"exp":123456789}"#,
            claims(999_999_999_999, 9_999_999, 12_345_678, 123_456_789),
        );
        // Every digit count of a time, each digit position mattering.
        for n in 1..=10u32 {
            let v = (1..=n).fold(0u64, |v, d| v * 10 + u64::from(d % 10));
            ok(
                &format!(r#"{{"sub":"7","rv":3,"iat":{v},"exp":1}}"#),
                claims(7, 3, v as i64, 1),
            );
        }
        bad(r#"{"sub":"1","rv":0,"iat":0,"exp":0"#); // no closing brace
        bad(r#"{"sub":"1","rv":0,"iat":0,"exp":}"#); // no digits
        bad(r#"{"sub":"1","rv":0,"iat":0,"exp":00}"#); // leading zero
        bad(r#"{"sub":"1","rv":0,"iat":12345678901,"exp":0}"#); // 11 digits
        bad(r#"{"sub":"1","rv":0,"iat":0,"exp":0}0"#); // trailing byte
        bad(r#"{"sub":"1","rv":0,"iat":0,"exp":9:}"#); // ':' is 0x3A, just past '9'
        bad(r#"{"sub":"1","rv":0,"iat":0,"exp":9/}"#); // '/' is 0x2F, just before '0'
        bad(r#"{"u":1234567890123,"rv":0,"iat":0,"exp":0}"#); // 13 digits
    }

    proptest! {
        #[test]
        fn payload_parser_agrees_with_the_byte_at_a_time_model(
            (shape, n1, n2, n3, n4, junk) in (
                0u8..3,
                "[0-9]{0,14}",
                "[0-9]{0,9}",
                "[0-9]{0,12}",
                "[0-9:/a]{0,12}",
                proptest::collection::vec(any::<u8>(), 0..72),
            )
        ) {
            let p = match shape {
                0 => format!(r#"{{"sub":"{n1}","rv":{n2},"iat":{n3},"exp":{n4}}}"#).into_bytes(),
                1 => format!(r#"{{"u":{n1},"rv":{n2},"iat":{n3},"exp":{n4}}}"#).into_bytes(),
                _ => junk,
            };
            prop_assume!(p.len() <= 72);
            prop_assert_eq!(parse(&p), parse_payload_reference(&p));
        }

        #[test]
        fn numbers_are_written_in_decimal(v in 0u64..10_000_000_000_000_000) {
            let mut out = [0u8; 20];
            let end = put_u64(&mut out, 1, v);
            let text = v.to_string();
            prop_assert_eq!(&out[1..end], text.as_bytes());
        }

        #[test]
        fn length_is_always_within_bounds(
            handle in 1..=MAX_HANDLE,
            epoch in 0..=MAX_EPOCH,
            iat in 0..=MAX_SECONDS,
            ttl in 0..=MAX_SECONDS,
            keys in 1u32..40,
        ) {
            let r = ring_with_keys(keys);
            let exp = (iat + ttl).min(MAX_SECONDS);
            let c = claims(handle, epoch, iat, exp);
            let t = encode(r.active(), &c).unwrap();
            prop_assert!((SESSION_TOKEN_MIN_LEN..=SESSION_TOKEN_MAX_LEN).contains(&t.as_str().len()));
            prop_assert_eq!(verify(&r, t.as_str()).unwrap().claims, c);
        }

        #[test]
        fn flipping_any_character_fails(pos in 0usize..168, replacement in proptest::char::range('!', '~')) {
            let r = ring_with_keys(1);
            let t = encode(r.active(), &claims(123_456, 7, 1_763_000_000, 1_763_604_800)).unwrap();
            let s = t.as_str();
            let pos = pos % s.len();
            prop_assume!(s.as_bytes()[pos] != replacement as u8);
            let mut b = s.as_bytes().to_vec();
            b[pos] = replacement as u8;
            let m = String::from_utf8(b).unwrap();
            prop_assert!(verify(&r, &m).is_err());
        }
    }
}
