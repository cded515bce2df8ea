//! Permanent opaque access tokens: format, checksum, and the digest that is all we store.
//!
//! Format: `tsat_` + base64url(user handle as 8 big-endian bytes ‖ 32 random bytes) +
//! base64url(CRC-32 of everything before it): 65 characters. The fixed prefix lets secret
//! scanners find leaked tokens; the checksum rejects typos and random garbage before any
//! lookup touches shared state. The handle (not secret: it only names the user's slot) takes
//! verification straight to the one user whose digests can match, so no global token index
//! is needed — which is what keeps a token at ≤ 80 bytes of memory.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::constant_time;
use crate::error::{Error, ErrorKind, Result};

/// The prefix every access token starts with.
pub const ACCESS_TOKEN_PREFIX: &str = "tsat_";
/// The length of every access token, in characters.
pub const ACCESS_TOKEN_LEN: usize = 65;
const BODY_LEN: usize = 54;

/// A plaintext access token: the secret handed to the user once, at issue.
///
/// Its `Debug` output is redacted and its memory is wiped on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(Zeroizing<String>);

impl AccessToken {
    /// The token text, to hand to the client.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessToken(<redacted>)")
    }
}

/// What is known about an access token besides its secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessTokenInfo {
    /// The token id, unique across the engine and never reused.
    pub id: u64,
    /// Issue time, milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    /// The caller's label (device, app), if any.
    pub label: Option<String>,
}

/// A freshly issued access token.
#[derive(Clone, Debug)]
pub struct IssuedAccessToken {
    /// The secret, shown only now.
    pub token: AccessToken,
    /// Its id, time and label.
    pub info: AccessTokenInfo,
    /// The ids of the user's tokens revoked to keep at most
    /// [`Config::access_tokens_per_user`](crate::Config::access_tokens_per_user) valid, oldest
    /// first: empty below the limit, one at it, more when the limit was lowered since the user's
    /// tokens were issued.
    pub evicted: Vec<u64>,
}

/// The result of verifying an access token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedAccessToken {
    /// The user the token belongs to.
    pub user_id: String,
    /// The token's id.
    pub token_id: u64,
}

/// SHA-256 of a token's text. Equality is constant-time.
#[derive(Clone, Copy, Serialize, Deserialize)]
pub(crate) struct TokenDigest(pub [u8; 32]);

impl PartialEq for TokenDigest {
    fn eq(&self, other: &TokenDigest) -> bool {
        constant_time::eq(&self.0, &other.0)
    }
}

impl Eq for TokenDigest {}

impl std::fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenDigest(..)")
    }
}

/// A stored access token: digest, never the text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AccessTokenEntry {
    pub id: u64,
    pub created_at_ms: i64,
    pub digest: TokenDigest,
    pub label: Option<Box<str>>,
}

impl AccessTokenEntry {
    pub fn info(&self) -> AccessTokenInfo {
        AccessTokenInfo {
            id: self.id,
            created_at_ms: self.created_at_ms,
            label: self.label.as_deref().map(String::from),
        }
    }
}

fn checksum(text: &[u8]) -> [u8; 4] {
    crc32fast::hash(text).to_be_bytes()
}

/// Draws a new token for the user with `handle` from the system CSPRNG.
pub(crate) fn generate(rng: &SystemRandom, handle: u64) -> Result<(AccessToken, TokenDigest)> {
    let mut secret = Zeroizing::new([0u8; 40]);
    secret[..8].copy_from_slice(&handle.to_be_bytes());
    rng.fill(&mut secret[8..])
        .map_err(|_| Error::new(ErrorKind::Internal, "system random source failed"))?;
    let mut text = Zeroizing::new(String::with_capacity(ACCESS_TOKEN_LEN));
    text.push_str(ACCESS_TOKEN_PREFIX);
    URL_SAFE_NO_PAD.encode_string(&secret[..], &mut text);
    let crc = checksum(text.as_bytes());
    URL_SAFE_NO_PAD.encode_string(crc, &mut text);
    debug_assert_eq!(text.len(), ACCESS_TOKEN_LEN);
    let digest = digest_of(&text);
    Ok((AccessToken(text), digest))
}

fn digest_of(text: &str) -> TokenDigest {
    TokenDigest(Sha256::digest(text.as_bytes()).into())
}

/// Checks a presented token's shape and checksum and returns the handle it names and its
/// digest. Every failure is the same [`ErrorKind::InvalidToken`].
pub(crate) fn parse(text: &str) -> Result<(u64, TokenDigest)> {
    let bytes = text.as_bytes();
    if bytes.len() != ACCESS_TOKEN_LEN || !text.starts_with(ACCESS_TOKEN_PREFIX) {
        return Err(Error::invalid_token());
    }
    let (head, tail) = bytes.split_at(ACCESS_TOKEN_PREFIX.len() + BODY_LEN);
    // The checksum is compared in its encoded form: only the canonical encoding of the CRC
    // can be equal, so this is as strict as decoding it, and cheaper.
    let mut crc_b64 = [0u8; 6];
    match URL_SAFE_NO_PAD.encode_slice(checksum(head), &mut crc_b64) {
        Ok(6) if crc_b64 == tail => {}
        _ => return Err(Error::invalid_token()),
    }
    // Only the handle is decoded (its 8 bytes are the first 12 characters, 9 bytes). The rest
    // of the body is never needed as bytes and is not checked character by character: the
    // stored digest covers the whole text, so a token changed anywhere, checksum and all,
    // cannot match one.
    let body = &head[ACCESS_TOKEN_PREFIX.len()..];
    let mut lead = [0u8; 9];
    match URL_SAFE_NO_PAD.decode_slice(&body[..12], &mut lead) {
        Ok(9) => {
            let mut h = [0u8; 8];
            h.copy_from_slice(&lead[..8]);
            Ok((u64::from_be_bytes(h), digest_of(text)))
        }
        _ => Err(Error::invalid_token()),
    }
}

/// Why an access token fails [`parse`]: the account `parse` deliberately never gives (each is
/// the same [`ErrorKind::InvalidToken`] there). For operators only, through
/// [`crate::Engine::diagnose_token`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AccessFlaw {
    /// Not 65 characters.
    Length(usize),
    /// The CRC-32 at the end does not match the rest: a typo, a truncated or altered copy.
    Checksum,
    /// The checksum matches but the body does not decode (only a forgery can do that).
    Body,
}

/// [`parse`], saying which step failed. Accepts exactly what `parse` accepts (a test holds the
/// two together). `text` must start with [`ACCESS_TOKEN_PREFIX`].
pub(crate) fn diagnose(text: &str) -> std::result::Result<(u64, TokenDigest), AccessFlaw> {
    if text.len() != ACCESS_TOKEN_LEN {
        return Err(AccessFlaw::Length(text.chars().count()));
    }
    let (head, tail) = text
        .as_bytes()
        .split_at(ACCESS_TOKEN_PREFIX.len() + BODY_LEN);
    let mut crc_b64 = [0u8; 6];
    match URL_SAFE_NO_PAD.encode_slice(checksum(head), &mut crc_b64) {
        Ok(6) if crc_b64 == tail => {}
        _ => return Err(AccessFlaw::Checksum),
    }
    parse(text).map_err(|_| AccessFlaw::Body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_parse_and_digest_matches() {
        let rng = SystemRandom::new();
        let (t, d) = generate(&rng, 77).unwrap();
        assert_eq!(t.as_str().len(), ACCESS_TOKEN_LEN);
        assert!(t.as_str().starts_with("tsat_"));
        assert_eq!(parse(t.as_str()).unwrap(), (77, d));
        let (t2, d2) = generate(&rng, 77).unwrap();
        assert_ne!(t, t2);
        assert_ne!(d, d2);
    }

    #[test]
    fn any_single_character_change_is_rejected_before_lookup() {
        let (t, _) = generate(&SystemRandom::new(), 1).unwrap();
        let s = t.as_str();
        for i in 0..s.len() {
            for c in ['A', 'z', '0', '-', '_'] {
                let mut b = s.as_bytes().to_vec();
                if b[i] == c as u8 {
                    continue;
                }
                b[i] = c as u8;
                let m = String::from_utf8(b).unwrap();
                assert_eq!(
                    parse(&m).unwrap_err().kind(),
                    ErrorKind::InvalidToken,
                    "pos {i}"
                );
            }
        }
    }

    #[test]
    fn wrong_shapes_are_invalid() {
        let (t, _) = generate(&SystemRandom::new(), 1).unwrap();
        let s = t.as_str();
        for bad in [
            "",
            "tsat_",
            &s[..64],
            &format!("{s}A"),
            &s.replacen("tsat_", "tsak_", 1),
            &"tsat_".repeat(13),
        ] {
            assert_eq!(parse(bad).unwrap_err().kind(), ErrorKind::InvalidToken);
        }
    }

    #[test]
    fn debug_is_redacted() {
        let (t, d) = generate(&SystemRandom::new(), 1).unwrap();
        let shown = format!("{t:?} {d:?}");
        assert!(!shown.contains(&t.as_str()[5..15]));
        assert_eq!(shown, "AccessToken(<redacted>) TokenDigest(..)");
    }
}
