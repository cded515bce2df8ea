//! Signing keys for session tokens: ids, rotation, retirement.
//!
//! Key ids are short (1..=3 lowercase base-36 characters, from `1` to `zzz`) because they sit
//! in every session token's header and the token must stay within 168 characters. The newest
//! key signs; older keys keep verifying until retired. A retired key never signs again,
//! accepts nothing and cannot be exported, but its secret is kept (in [`RetiredKeys`]) so a
//! token it signed can still have its MAC checked: genuine ones are then reported as revoked,
//! forgeries as invalid. Without the secret the two could not be told apart, and calling a
//! forgery "revoked" would let anyone learn which key ids were once in use. (Keys retired
//! before secrets were kept are gone: their tokens are invalid, as any unverifiable token.)

use hmac::{Hmac, Mac};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::fmt;
use std::sync::Arc;
use zeroize::Zeroizing;

use crate::error::{Error, ErrorKind, Result};
use crate::session_token::EncodedHeader;

/// The largest key number: `zzz` in base 36.
pub const MAX_KEY_NUMBER: u32 = 36 * 36 * 36 - 1;

/// A signing key's id: 1..=3 lowercase base-36 characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId {
    len: u8,
    bytes: [u8; 3],
}

impl KeyId {
    /// The id of key number `n` (1..=[`MAX_KEY_NUMBER`]).
    pub(crate) fn from_number(mut n: u32) -> KeyId {
        debug_assert!((1..=MAX_KEY_NUMBER).contains(&n));
        let mut digits = [0u8; 3];
        let mut len = 0;
        while n > 0 && len < 3 {
            let d = (n % 36) as u8;
            digits[len] = if d < 10 { b'0' + d } else { b'a' + d - 10 };
            n /= 36;
            len += 1;
        }
        let mut bytes = [0u8; 3];
        for i in 0..len {
            bytes[i] = digits[len - 1 - i];
        }
        KeyId {
            len: len as u8,
            bytes,
        }
    }

    /// Parses a key id in canonical form (no leading zero), returning its number.
    pub(crate) fn parse_number(s: &[u8]) -> Option<u32> {
        if s.is_empty() || s.len() > 3 || s[0] == b'0' {
            return None;
        }
        let mut n = 0u32;
        for &c in s {
            let d = match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'z' => c - b'a' + 10,
                _ => return None,
            };
            n = n * 36 + u32::from(d);
        }
        Some(n)
    }

    /// Parses a key id given as text.
    pub fn parse(s: &str) -> Option<KeyId> {
        KeyId::parse_number(s.as_bytes()).map(KeyId::from_number)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        // Only ASCII base-36 digits are ever stored.
        std::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or("?")
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.as_str())
    }
}

/// The secret bytes of a signing key, for handing to another service that verifies Tessera's
/// session tokens with a standard JWT library (HS256). Redacted in `Debug`, wiped on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct KeySecret(Zeroizing<[u8; 32]>);

impl KeySecret {
    /// The 32 key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for KeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeySecret(<redacted>)")
    }
}

/// Public facts about a signing key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyInfo {
    /// The key id carried in token headers.
    pub key_id: KeyId,
    /// When the key was created, milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    /// Whether this key signs new tokens (only the newest does).
    pub active: bool,
}

/// One HMAC key with its precomputed inner/outer state, so each MAC costs only the message's
/// compressions.
pub(crate) struct SigningKey {
    pub id: KeyId,
    pub number: u32,
    pub created_at_ms: i64,
    secret: Zeroizing<[u8; 32]>,
    pub mac: Hmac<Sha256>,
    /// The header of every token this key signs, already encoded.
    pub header: EncodedHeader,
}

impl SigningKey {
    fn new(number: u32, created_at_ms: i64, secret: [u8; 32]) -> SigningKey {
        let secret = Zeroizing::new(secret);
        // HMAC accepts keys of any length, so this cannot fail.
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(&secret[..])
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        let id = KeyId::from_number(number);
        SigningKey {
            id,
            number,
            created_at_ms,
            secret,
            mac,
            header: EncodedHeader::new(id),
        }
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("id", &self.id)
            .field("created_at_ms", &self.created_at_ms)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// A stored key: what the key file holds. Wiped on drop, redacted in `Debug`.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct StoredKey {
    pub number: u32,
    pub created_at_ms: i64,
    pub secret: [u8; 32],
}

impl Drop for StoredKey {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.secret);
    }
}

impl fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoredKey({}, <redacted>)", self.number)
    }
}

/// The key ring as persisted: every live key, the next key number (numbers are never reused,
/// so a retired key's id never comes back) and the retired keys' secrets.
///
/// Serialised field by field, so the bytes are those of the earlier two-field ring followed
/// by `retired`: an older release reads the live keys and ignores the rest, and this one
/// reads an older file as having no retired keys (see the store's key-ring decoding).
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub(crate) struct StoredKeyRing {
    pub keys: Vec<StoredKey>,
    pub next_number: u32,
    pub retired: RetiredKeys,
}

/// How many key numbers share one copy-on-write chunk of [`RetiredKeys`].
const CHUNK: usize = 64;

/// One chunk of retired secrets: slot `i` holds key number `chunk_index * CHUNK + i`.
#[derive(Clone)]
struct RetiredChunk([Option<Zeroizing<[u8; 32]>>; CHUNK]);

/// The secrets of retired keys, by key number. Copy-on-write in chunks of 64 numbers, so a
/// ring built by a rotation or a retirement shares every untouched chunk with the one before
/// it: with all 46 655 key ids used up, a change copies about 8 KiB, not the whole set.
/// Secrets are wiped when the last ring holding their chunk is dropped; `Debug` shows only
/// how many there are.
#[derive(Clone, Default)]
pub(crate) struct RetiredKeys {
    chunks: Vec<Option<Arc<RetiredChunk>>>,
    len: usize,
}

impl RetiredKeys {
    /// The secret of retired key `number`, if it is kept.
    pub fn get(&self, number: u32) -> Option<&[u8; 32]> {
        let n = number as usize;
        self.chunks.get(n / CHUNK)?.as_ref()?.0[n % CHUNK].as_deref()
    }

    /// Keeps the secret of key `number` (at most [`MAX_KEY_NUMBER`]).
    fn insert(&mut self, number: u32, secret: &[u8; 32]) {
        let n = number as usize;
        if self.chunks.len() <= n / CHUNK {
            self.chunks.resize(n / CHUNK + 1, None);
        }
        let chunk = self.chunks[n / CHUNK]
            .get_or_insert_with(|| Arc::new(RetiredChunk(std::array::from_fn(|_| None))));
        let slot = &mut Arc::make_mut(chunk).0[n % CHUNK];
        if slot.is_none() {
            self.len += 1;
        }
        *slot = Some(Zeroizing::new(*secret));
    }

    /// Every kept secret, by ascending key number.
    fn iter(&self) -> impl Iterator<Item = (u32, &[u8; 32])> {
        self.chunks.iter().enumerate().flat_map(|(c, chunk)| {
            chunk.iter().flat_map(move |chunk| {
                chunk
                    .0
                    .iter()
                    .enumerate()
                    .filter_map(move |(i, s)| s.as_deref().map(|s| ((c * CHUNK + i) as u32, s)))
            })
        })
    }

    /// How many secrets are kept.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }
}

impl PartialEq for RetiredKeys {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl Eq for RetiredKeys {}

impl fmt::Debug for RetiredKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RetiredKeys({} kept, <redacted>)", self.len)
    }
}

/// Serialised as a sequence of `(number, secret)` by ascending number.
impl Serialize for RetiredKeys {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        // The length first (postcard writes it ahead of the items).
        let mut seq = s.serialize_seq(Some(self.len))?;
        for entry in self.iter() {
            seq.serialize_element(&entry)?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for RetiredKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RetiredKeys;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("retired keys by ascending number")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<RetiredKeys, A::Error> {
                let mut keys = RetiredKeys::default();
                let mut last = 0;
                while let Some(entry) = seq.next_element::<(u32, [u8; 32])>()? {
                    let (number, secret) = (entry.0, Zeroizing::new(entry.1));
                    // Checked before `insert` sizes anything by it.
                    if number <= last || number > MAX_KEY_NUMBER {
                        return Err(serde::de::Error::custom(
                            "retired key numbers out of order or out of range",
                        ));
                    }
                    last = number;
                    keys.insert(number, &secret);
                }
                Ok(keys)
            }
        }
        d.deserialize_seq(Visitor)
    }
}

/// What signed a token, as found by key number.
pub(crate) enum KeyRef<'a> {
    /// A live key: its token may be valid.
    Live(&'a SigningKey),
    /// A retired key's secret: a token whose MAC it verifies is genuine but revoked.
    Retired(&'a [u8; 32]),
}

/// The live keys (the last one is active) and the retired keys' secrets. Immutable once
/// built: changes make a new ring that the engine swaps in, so verifiers never wait on a lock.
#[derive(Debug)]
pub(crate) struct KeyRing {
    keys: Vec<Arc<SigningKey>>,
    retired: RetiredKeys,
    next_number: u32,
}

fn random_secret(rng: &SystemRandom) -> Result<[u8; 32]> {
    let mut s = [0u8; 32];
    rng.fill(&mut s)
        .map_err(|_| Error::new(ErrorKind::Internal, "system random source failed"))?;
    Ok(s)
}

impl KeyRing {
    /// A ring with one fresh key.
    pub fn generate(rng: &SystemRandom, now_ms: i64) -> Result<KeyRing> {
        Ok(KeyRing {
            keys: vec![Arc::new(SigningKey::new(1, now_ms, random_secret(rng)?))],
            retired: RetiredKeys::default(),
            next_number: 2,
        })
    }

    /// Rebuilds a ring from storage.
    pub fn from_stored(stored: &StoredKeyRing) -> Result<KeyRing> {
        let corrupt = |m: &str| Error::new(ErrorKind::Corrupt, format!("key ring: {m}"));
        if stored.keys.is_empty() {
            return Err(corrupt("no keys"));
        }
        let mut last = 0;
        let mut keys = Vec::with_capacity(stored.keys.len());
        for k in &stored.keys {
            if k.number <= last || k.number >= stored.next_number || k.number > MAX_KEY_NUMBER {
                return Err(corrupt("key numbers out of order"));
            }
            last = k.number;
            keys.push(Arc::new(SigningKey::new(
                k.number,
                k.created_at_ms,
                k.secret,
            )));
        }
        for (number, _) in stored.retired.iter() {
            if number >= stored.next_number || keys.iter().any(|k| k.number == number) {
                return Err(corrupt("a retired key number is live or was never issued"));
            }
        }
        Ok(KeyRing {
            keys,
            retired: stored.retired.clone(),
            next_number: stored.next_number,
        })
    }

    /// The persistable form.
    pub fn to_stored(&self) -> StoredKeyRing {
        StoredKeyRing {
            keys: self
                .keys
                .iter()
                .map(|k| StoredKey {
                    number: k.number,
                    created_at_ms: k.created_at_ms,
                    secret: *k.secret,
                })
                .collect(),
            next_number: self.next_number,
            retired: self.retired.clone(),
        }
    }

    /// The key that signs new tokens.
    pub fn active(&self) -> &Arc<SigningKey> {
        // A ring is never empty: construction and `retire` both keep the active key.
        &self.keys[self.keys.len() - 1]
    }

    /// The secret of a live key.
    pub fn secret(&self, id: KeyId) -> Option<KeySecret> {
        self.keys
            .iter()
            .find(|k| k.id == id)
            .map(|k| KeySecret(k.secret.clone()))
    }

    /// The live key whose encoded header (with its '.') begins `token`, newest first: how
    /// nearly every genuine token finds its key, with no decoding.
    #[inline]
    pub fn live_by_header(&self, token: &[u8]) -> Option<&SigningKey> {
        self.keys
            .iter()
            .rev()
            .map(|k| &**k)
            .find(|k| token.starts_with(k.header.as_bytes()))
    }

    /// The key with this number, live or retired; `None` for a number never issued (or
    /// retired before retired secrets were kept).
    #[inline]
    pub fn lookup(&self, number: u32) -> Option<KeyRef<'_>> {
        // Live keys first: they are few and sign almost every token presented.
        match self.keys.iter().rev().find(|k| k.number == number) {
            Some(k) => Some(KeyRef::Live(k)),
            None => self.retired.get(number).map(KeyRef::Retired),
        }
    }

    /// A new ring with a fresh active key added.
    pub fn rotated(&self, rng: &SystemRandom, now_ms: i64) -> Result<KeyRing> {
        if self.next_number > MAX_KEY_NUMBER {
            return Err(Error::new(
                ErrorKind::Exhausted,
                format!("all {MAX_KEY_NUMBER} key ids have been used"),
            ));
        }
        let mut keys = self.keys.clone();
        keys.push(Arc::new(SigningKey::new(
            self.next_number,
            now_ms,
            random_secret(rng)?,
        )));
        Ok(KeyRing {
            keys,
            retired: self.retired.clone(),
            next_number: self.next_number + 1,
        })
    }

    /// A new ring without key `id`. The active key cannot be retired.
    pub fn retired(&self, id: KeyId) -> Result<KeyRing> {
        let pos = self
            .keys
            .iter()
            .position(|k| k.id == id)
            .ok_or_else(|| Error::new(ErrorKind::KeyNotFound, format!("no live key {id}")))?;
        if pos == self.keys.len() - 1 {
            return Err(Error::new(
                ErrorKind::KeyActive,
                format!("key {id} is active; rotate before retiring it"),
            ));
        }
        let mut keys = self.keys.clone();
        let gone = keys.remove(pos);
        let mut retired = self.retired.clone();
        retired.insert(gone.number, &gone.secret);
        Ok(KeyRing {
            keys,
            retired,
            next_number: self.next_number,
        })
    }

    /// A new ring holding only a fresh key: every older key is retired at once.
    pub fn replaced(&self, rng: &SystemRandom, now_ms: i64) -> Result<(KeyRing, Vec<KeyId>)> {
        let rotated = self.rotated(rng, now_ms)?;
        let ids = self.keys.iter().map(|k| k.id).collect();
        let mut retired = self.retired.clone();
        for k in &self.keys {
            retired.insert(k.number, &k.secret);
        }
        let keys = vec![rotated.active().clone()];
        Ok((
            KeyRing {
                keys,
                retired,
                next_number: rotated.next_number,
            },
            ids,
        ))
    }

    /// Public facts about every live key, oldest first.
    pub fn infos(&self) -> Vec<KeyInfo> {
        let active = self.active().number;
        self.keys
            .iter()
            .map(|k| KeyInfo {
                key_id: k.id,
                created_at_ms: k.created_at_ms,
                active: k.number == active,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ids_are_canonical_base36() {
        for (n, s) in [
            (1, "1"),
            (9, "9"),
            (10, "a"),
            (35, "z"),
            (36, "10"),
            (46_655, "zzz"),
        ] {
            let id = KeyId::from_number(n);
            assert_eq!(id.as_str(), s);
            assert_eq!(KeyId::parse_number(s.as_bytes()), Some(n));
        }
        for bad in ["", "0", "01", "zzzz", "A", "-1", "a b"] {
            assert_eq!(KeyId::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn rotate_retire_rules() {
        let rng = SystemRandom::new();
        let r1 = KeyRing::generate(&rng, 1).unwrap();
        assert_eq!(r1.active().id.as_str(), "1");
        let r2 = r1.rotated(&rng, 2).unwrap();
        assert_eq!(r2.active().id.as_str(), "2");
        assert!(matches!(r2.lookup(1), Some(KeyRef::Live(_))));
        assert_eq!(
            r2.retired(KeyId::from_number(2)).unwrap_err().kind(),
            ErrorKind::KeyActive
        );
        let r3 = r2.retired(KeyId::from_number(1)).unwrap();
        let secret1 = r2.secret(KeyId::from_number(1)).unwrap();
        assert!(matches!(r3.lookup(1), Some(KeyRef::Retired(s)) if s == secret1.as_bytes()));
        assert!(
            r3.secret(KeyId::from_number(1)).is_none(),
            "retired keys are not exported"
        );
        assert_eq!(
            r3.retired(KeyId::from_number(1)).unwrap_err().kind(),
            ErrorKind::KeyNotFound
        );
        let (r4, retired) = r3.rotated(&rng, 3).unwrap().replaced(&rng, 4).unwrap();
        assert_eq!(retired.len(), 2);
        assert_eq!(r4.infos().len(), 1);
        assert_eq!(r4.active().id.as_str(), "4");
        // Every key ever retired keeps its secret; a number never issued finds nothing.
        for n in 1..=3 {
            assert!(matches!(r4.lookup(n), Some(KeyRef::Retired(_))), "{n}");
        }
        assert!(matches!(r4.lookup(4), Some(KeyRef::Live(_))));
        for n in [0, 5, MAX_KEY_NUMBER, MAX_KEY_NUMBER + 1, u32::MAX] {
            assert!(r4.lookup(n).is_none(), "{n}");
        }
        assert_eq!(r4.to_stored().retired.len(), 3);
    }

    #[test]
    fn every_retired_key_of_a_full_ring_is_kept() {
        // All 46 655 key ids, each retired in turn: copy-on-write chunks keep this linear.
        let rng = SystemRandom::new();
        let mut r = KeyRing::generate(&rng, 0).unwrap();
        let mut secrets = vec![[0u8; 32]];
        while r.next_number <= MAX_KEY_NUMBER {
            secrets.push(*r.active().secret);
            r = r.replaced(&rng, 0).unwrap().0;
        }
        assert_eq!(r.active().number, MAX_KEY_NUMBER);
        assert_eq!(r.retired.len(), MAX_KEY_NUMBER as usize - 1);
        for n in [1, 2, 63, 64, 65, 4_096, MAX_KEY_NUMBER - 1] {
            assert!(
                matches!(r.lookup(n), Some(KeyRef::Retired(s)) if *s == secrets[n as usize]),
                "{n}"
            );
        }
        let back = KeyRing::from_stored(&r.to_stored()).unwrap();
        assert_eq!(back.to_stored(), r.to_stored());
    }

    #[test]
    fn retired_keys_that_contradict_the_ring_are_corrupt() {
        let stored = |retired: &[u32]| {
            let mut keys = RetiredKeys::default();
            for &n in retired {
                keys.insert(n, &[n as u8; 32]);
            }
            StoredKeyRing {
                keys: vec![StoredKey {
                    number: 3,
                    created_at_ms: 0,
                    secret: [3; 32],
                }],
                next_number: 4,
                retired: keys,
            }
        };
        assert!(KeyRing::from_stored(&stored(&[1, 2])).is_ok());
        for bad in [&[3][..], &[4], &[1, 5]] {
            assert_eq!(
                KeyRing::from_stored(&stored(bad)).unwrap_err().kind(),
                ErrorKind::Corrupt,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn exhaustion_is_an_error_not_a_wrap() {
        let rng = SystemRandom::new();
        let stored = StoredKeyRing {
            keys: vec![StoredKey {
                number: MAX_KEY_NUMBER,
                created_at_ms: 0,
                secret: [7; 32],
            }],
            next_number: MAX_KEY_NUMBER + 1,
            ..Default::default()
        };
        let r = KeyRing::from_stored(&stored).unwrap();
        assert_eq!(r.rotated(&rng, 0).unwrap_err().kind(), ErrorKind::Exhausted);
    }

    #[test]
    fn stored_round_trip_and_redaction() {
        let rng = SystemRandom::new();
        let r = KeyRing::generate(&rng, 5)
            .unwrap()
            .rotated(&rng, 6)
            .unwrap();
        let s = r.to_stored();
        let back = KeyRing::from_stored(&s).unwrap();
        assert_eq!(back.to_stored(), s);
        let secret_hex: String = s.keys[0]
            .secret
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let retired = r.retired(KeyId::from_number(1)).unwrap();
        let shown = format!("{r:?} {s:?} {retired:?} {:?}", retired.to_stored());
        assert!(!shown.contains(&secret_hex));
        assert!(!shown.contains(&format!("{:?}", s.keys[0].secret)));
        assert!(!shown.contains(&format!("{:?}", &s.keys[0].secret[..8])));
    }
}
