//! Why a token is accepted or refused, told to an operator (`tessera tokens verify`).
//!
//! Verification itself says as little as it can: every failure before a signature or checksum
//! is checked is the one [`ErrorKind::InvalidToken`], so a client probing a server learns
//! nothing about which byte was wrong. Someone holding the data directory holds the signing
//! keys too, and needs the opposite: *which* step failed, and for a genuine token, the expiry
//! or revocation behind the verdict. [`Engine::diagnose_token`] gives that account. It never
//! contains a secret (no token text, key, MAC or digest), but it must never be returned to the
//! client that presented the token: that would give back the oracle verification withholds.

use std::fmt;

use super::{Durability, Engine, UserSlot};
use crate::access_token::{self, AccessFlaw, ACCESS_TOKEN_LEN, ACCESS_TOKEN_PREFIX};
use crate::error::ErrorKind;
use crate::session_token::{self, SessionFlaw, SESSION_TOKEN_MAX_LEN, SESSION_TOKEN_MIN_LEN};

/// Which of Tessera's two token formats a text looks like.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TokenFormat {
    /// Starts with `tsat_`: a permanent access token.
    Access,
    /// Anything else: judged as a session token (a JWT).
    Session,
}

impl TokenFormat {
    /// `"access"` or `"session"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            TokenFormat::Access => "access",
            TokenFormat::Session => "session",
        }
    }
}

/// The step that decided a token's verdict ([`Engine::diagnose_token`]).
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenFinding {
    /// The token verifies.
    Valid,
    /// Not the length of its format (access: 65; session: 119..=168 characters).
    Length {
        /// Its length, in characters.
        chars: usize,
    },
    /// A session token whose parts are not where Tessera puts them (not a three-part JWT).
    Structure,
    /// A session token whose header is not Tessera's `{"alg":"HS256","kid":"<kid>"}`.
    Header,
    /// An access token whose checksum does not match: a typo, or a cut or altered copy.
    Checksum,
    /// An access token whose checksum matches but whose body does not decode.
    Body,
    /// A session token naming a key id this engine never issued (another engine's token, or
    /// one retired by a release that did not keep retired keys).
    UnknownKey {
        /// The key id in the header.
        key_id: String,
    },
    /// A session token whose signature does not verify with the key it names: altered, or
    /// forged.
    Signature {
        /// The key id in the header.
        key_id: String,
    },
    /// Validly signed, but the claims are not Tessera's (only a bug could sign that).
    Claims,
    /// An access token naming a handle no user has: the user was deleted (handles are never
    /// reused), or it never existed.
    NoSuchUser {
        /// The handle the token names.
        handle: u64,
    },
    /// An access token whose user holds no live token with this text: it was revoked, evicted
    /// by a newer one, or never issued. Only digests of live tokens are kept, so these cannot
    /// be told apart.
    NotLive,
    /// A genuine session token past its expiry (plus the clock-skew leeway).
    Expired {
        /// Its `exp`, milliseconds since the Unix epoch.
        expired_at_ms: i64,
        /// The leeway in force, milliseconds.
        leeway_ms: i64,
    },
    /// A genuine session token whose signing key was retired (one key, or every key by
    /// `revoke_all_sessions`).
    KeyRetired {
        /// The retired key's id.
        key_id: String,
    },
    /// A genuine session token issued before its user's sessions were last revoked.
    SessionsRevoked {
        /// The revocation epoch the token carries.
        token_epoch: u32,
        /// The user's epoch now.
        current_epoch: u32,
    },
    /// A genuine session token of a deleted user (even if the id now names a new user).
    UserDeleted {
        /// The handle of the deleted user.
        handle: u64,
    },
    /// A genuine, live token of a deactivated user.
    Deactivated,
    /// A cluster node that cannot vouch for its state refused to verify anything.
    Unavailable,
}

impl fmt::Display for TokenFinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenFinding::Valid => f.write_str("valid"),
            TokenFinding::Length { chars } => write!(
                f,
                "wrong length: {chars} characters (an access token has {ACCESS_TOKEN_LEN}, \
                 a session token {SESSION_TOKEN_MIN_LEN}..={SESSION_TOKEN_MAX_LEN})"
            ),
            TokenFinding::Structure => {
                f.write_str("malformed: not three base64url parts where a session token has them")
            }
            TokenFinding::Header => f.write_str("malformed: the header is not Tessera's"),
            TokenFinding::Checksum => f.write_str(
                "bad checksum: the text was mistyped, cut or altered (it is not a token we issued)",
            ),
            TokenFinding::Body => {
                f.write_str("malformed: the checksum matches but the body does not decode")
            }
            TokenFinding::UnknownKey { key_id } => write!(
                f,
                "unknown key: signed with key id {key_id:?}, which this engine never issued"
            ),
            TokenFinding::Signature { key_id } => write!(
                f,
                "bad signature: key {key_id:?} did not sign this text (altered or forged)"
            ),
            TokenFinding::Claims => f.write_str("validly signed, but the claims are not Tessera's"),
            TokenFinding::NoSuchUser { handle } => {
                write!(f, "no user has handle {handle} (deleted, or never existed)")
            }
            TokenFinding::NotLive => f.write_str(
                "not a live token of its user: revoked, evicted by a newer token, or never issued",
            ),
            TokenFinding::Expired {
                expired_at_ms,
                leeway_ms,
            } => write!(
                f,
                "expired at {} (Unix ms {expired_at_ms}; leeway {leeway_ms} ms)",
                utc_rfc3339(*expired_at_ms)
            ),
            TokenFinding::KeyRetired { key_id } => {
                write!(f, "revoked: its signing key {key_id:?} was retired")
            }
            TokenFinding::SessionsRevoked {
                token_epoch,
                current_epoch,
            } => write!(
                f,
                "revoked: it carries epoch {token_epoch}; the user's sessions were revoked at \
                 epoch {current_epoch}"
            ),
            TokenFinding::UserDeleted { handle } => {
                write!(f, "revoked: its user (handle {handle}) was deleted")
            }
            TokenFinding::Deactivated => f.write_str("genuine, but its user is deactivated"),
            TokenFinding::Unavailable => {
                f.write_str("this cluster node cannot vouch for its state; nothing verifies")
            }
        }
    }
}

/// An operator's account of a token ([`Engine::diagnose_token`]). Holds no secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenDiagnosis {
    /// The format the text was judged as.
    pub format: TokenFormat,
    /// What verification returns for it: `None` when it verifies, else the error kind
    /// (`verify_access_token` or `verify_session_token`, by format).
    pub error: Option<ErrorKind>,
    /// The step that decided it.
    pub finding: TokenFinding,
    /// The user it belongs to, when that could be established.
    pub user_id: Option<String>,
    /// The user handle it names, when it could be read.
    pub handle: Option<u64>,
    /// Access tokens: the token's id, when it is live.
    pub token_id: Option<u64>,
    /// Session tokens: the signing key's id, when the header could be read.
    pub key_id: Option<String>,
    /// Session tokens: `iat`, once the signature verified.
    pub issued_at_ms: Option<i64>,
    /// Session tokens: `exp`, once the signature verified.
    pub expires_at_ms: Option<i64>,
}

impl TokenDiagnosis {
    fn new(format: TokenFormat) -> TokenDiagnosis {
        TokenDiagnosis {
            format,
            error: None,
            finding: TokenFinding::Valid,
            user_id: None,
            handle: None,
            token_id: None,
            key_id: None,
            issued_at_ms: None,
            expires_at_ms: None,
        }
    }
}

/// The error kind each finding stands for, as docs/ERRORS.md orders them.
#[cfg(test)]
fn kind_of(finding: &TokenFinding) -> Option<ErrorKind> {
    Some(match finding {
        TokenFinding::Valid => return None,
        TokenFinding::Expired { .. } => ErrorKind::TokenExpired,
        TokenFinding::KeyRetired { .. }
        | TokenFinding::SessionsRevoked { .. }
        | TokenFinding::UserDeleted { .. } => ErrorKind::TokenRevoked,
        TokenFinding::Deactivated => ErrorKind::UserDeactivated,
        TokenFinding::Unavailable => ErrorKind::Unavailable,
        _ => ErrorKind::InvalidToken,
    })
}

/// `ms` since the Unix epoch as an RFC 3339 UTC time (`1970-01-01T00:00:00.000Z`), for any
/// i64 (a date crate would refuse the extremes a stored record can hold). Diagnoses and the
/// `tessera` command print times with it.
pub fn utc_rfc3339(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let rest = ms.rem_euclid(86_400_000);
    // Howard Hinnant's civil_from_days, in i128 so that no i64 overflows.
    let z = i128::from(days) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i128::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3_600_000,
        rest / 60_000 % 60,
        rest / 1000 % 60,
        rest % 1000
    )
}

impl Engine {
    /// Explains why `token` verifies or not, for an operator: which step failed (length,
    /// structure, header, checksum, unknown key, signature), or for a genuine token its expiry,
    /// its revocation (retired key, the epoch it carries against its user's, deleted user) or
    /// its user's state. `error` is exactly what [`Engine::verify_access_token`] (for text
    /// starting with `tsat_`) or [`Engine::verify_session_token`] returns.
    ///
    /// The account holds no secret, but it tells apart what verification deliberately does
    /// not (see the module documentation): show it to whoever holds the data directory, never
    /// to the client that presented the token.
    ///
    /// ```
    /// use tessera::{Engine, ErrorKind, NewUser, TokenFinding};
    /// let engine = Engine::in_memory()?;
    /// engine.create_user(NewUser::new("alice", "Alice"))?;
    /// let token = engine.issue_session_token("alice", None)?;
    /// engine.revoke_sessions("alice")?;
    /// let d = engine.diagnose_token(token.as_str());
    /// assert_eq!(d.error, Some(ErrorKind::TokenRevoked));
    /// assert_eq!(d.finding, TokenFinding::SessionsRevoked { token_epoch: 0, current_epoch: 1 });
    /// # Ok::<(), tessera::Error>(())
    /// ```
    pub fn diagnose_token(&self, token: &str) -> TokenDiagnosis {
        let (format, verdict) = if token.starts_with(ACCESS_TOKEN_PREFIX) {
            let v = self.verify_access_token(token).map(|_| ());
            (TokenFormat::Access, v)
        } else {
            let v = self.verify_session_token(token).map(|_| ());
            (TokenFormat::Session, v)
        };
        let mut d = TokenDiagnosis::new(format);
        if matches!(&verdict, Err(e) if e.kind() == ErrorKind::Unavailable) {
            d.finding = TokenFinding::Unavailable;
        } else {
            match format {
                TokenFormat::Access => self.explain_access(token, &mut d),
                TokenFormat::Session => self.explain_session(token, &mut d),
            }
        }
        // The verdict is verification's own; the finding is re-derived and agrees with it
        // unless the state changed in between (tests hold them together).
        d.error = verdict.err().map(|e| e.kind());
        d
    }

    fn explain_access(&self, token: &str, d: &mut TokenDiagnosis) {
        let (handle, digest) = match access_token::diagnose(token) {
            Ok(parsed) => parsed,
            Err(flaw) => {
                d.finding = match flaw {
                    AccessFlaw::Length(chars) => TokenFinding::Length { chars },
                    AccessFlaw::Checksum => TokenFinding::Checksum,
                    AccessFlaw::Body => TokenFinding::Body,
                };
                return;
            }
        };
        d.handle = Some(handle);
        let found = self.with_slot(handle, Durability::Credential, |s: &UserSlot| {
            let live = s.tokens.iter().find(|t| t.digest == digest).map(|t| t.id);
            (String::from(&*s.record.id), live, s.record.active)
        });
        d.finding = match found {
            Ok(Some((user_id, live, active))) => {
                d.user_id = Some(user_id);
                d.token_id = live;
                match (live, active) {
                    (None, _) => TokenFinding::NotLive,
                    (Some(_), false) => TokenFinding::Deactivated,
                    (Some(_), true) => TokenFinding::Valid,
                }
            }
            Ok(None) => TokenFinding::NoSuchUser { handle },
            Err(_) => TokenFinding::Unavailable,
        };
    }

    fn explain_session(&self, token: &str, d: &mut TokenDiagnosis) {
        let keys = self.inner.keys.load();
        let genuine = session_token::diagnose(&keys, token);
        drop(keys);
        let genuine = match genuine {
            Ok(g) => g,
            Err(flaw) => {
                d.finding = match flaw {
                    SessionFlaw::Length(chars) => TokenFinding::Length { chars },
                    SessionFlaw::Structure => TokenFinding::Structure,
                    SessionFlaw::Header => TokenFinding::Header,
                    SessionFlaw::UnknownKey(key_id) => {
                        d.key_id = Some(key_id.clone());
                        TokenFinding::UnknownKey { key_id }
                    }
                    SessionFlaw::Signature(key_id) => {
                        d.key_id = Some(key_id.to_string());
                        TokenFinding::Signature {
                            key_id: key_id.to_string(),
                        }
                    }
                    SessionFlaw::Claims => TokenFinding::Claims,
                };
                return;
            }
        };
        let claims = genuine.claims;
        let key_id = genuine.key_id.to_string();
        d.key_id = Some(key_id.clone());
        d.handle = Some(claims.handle);
        d.issued_at_ms = Some(claims.iat_ms());
        d.expires_at_ms = Some(claims.exp_ms());
        let found = self.with_slot(claims.handle, Durability::Credential, |s: &UserSlot| {
            (String::from(&*s.record.id), s.epoch, s.record.active)
        });
        let (user, epoch, active) = match found {
            Ok(Some((user_id, epoch, active))) => (Some(user_id), Some(epoch), active),
            Ok(None) => (None, None, false),
            Err(_) => {
                d.finding = TokenFinding::Unavailable;
                return;
            }
        };
        d.user_id = user;
        let leeway_ms = self.inner.config.clock_skew_ms;
        d.finding = if !session_token::accepted_at(claims.exp_s, leeway_ms, self.now()) {
            TokenFinding::Expired {
                expired_at_ms: claims.exp_ms(),
                leeway_ms,
            }
        } else if genuine.key_retired {
            TokenFinding::KeyRetired { key_id }
        } else {
            match epoch {
                None => TokenFinding::UserDeleted {
                    handle: claims.handle,
                },
                Some(current) if current != claims.epoch => TokenFinding::SessionsRevoked {
                    token_epoch: claims.epoch,
                    current_epoch: current,
                },
                Some(_) if !active => TokenFinding::Deactivated,
                Some(_) => TokenFinding::Valid,
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ManualClock, NewUser};

    /// Every finding stands for the kind verification returns (ERRORS.md's table, case by
    /// case), and none of the account's text contains the token.
    fn check(engine: &Engine, token: &str, want: TokenFinding) -> TokenDiagnosis {
        let d = engine.diagnose_token(token);
        assert_eq!(d.finding, want, "{token:.12}…");
        assert_eq!(d.error, kind_of(&d.finding), "{:?}", d.finding);
        let shown = format!("{d:?} {}", d.finding);
        if token.len() > 20 {
            assert!(!shown.contains(&token[token.len() - 20..]), "{shown}");
        }
        d
    }

    #[test]
    fn every_step_is_named_and_agrees_with_verification() {
        let clock = ManualClock::new(1_700_000_000_000);
        let engine = Engine::builder().clock(clock.clone()).in_memory().unwrap();
        engine.create_user(NewUser::new("alice", "Alice")).unwrap();
        engine.create_user(NewUser::new("bob", "Bob")).unwrap();

        // Session tokens.
        let s = engine.issue_session_token("alice", None).unwrap();
        let s = s.as_str().to_owned();
        let d = check(&engine, &s, TokenFinding::Valid);
        assert_eq!(d.user_id.as_deref(), Some("alice"));
        assert_eq!(d.key_id.as_deref(), Some("1"));
        check(&engine, &s[..s.len() - 1], TokenFinding::Structure);
        check(&engine, "x", TokenFinding::Length { chars: 1 });
        check(
            &engine,
            &"é".repeat(200),
            TokenFinding::Length { chars: 200 },
        );
        let mut sig = s.clone().into_bytes();
        let last = sig.len() - 2;
        sig[last] = if sig[last] == b'A' { b'B' } else { b'A' };
        check(
            &engine,
            std::str::from_utf8(&sig).unwrap(),
            TokenFinding::Signature { key_id: "1".into() },
        );
        let mut header = s.clone().into_bytes();
        header[3] = b'X';
        check(
            &engine,
            std::str::from_utf8(&header).unwrap(),
            TokenFinding::Header,
        );
        // Key "2" is well-formed but was never issued: "IjEifQ" is `"1"}`, "IjIifQ" `"2"}`.
        let foreign = s.replacen("IjEifQ", "IjIifQ", 1);
        assert_ne!(foreign, s);
        check(
            &engine,
            &foreign,
            TokenFinding::UnknownKey { key_id: "2".into() },
        );

        engine.revoke_sessions("alice").unwrap();
        check(
            &engine,
            &s,
            TokenFinding::SessionsRevoked {
                token_epoch: 0,
                current_epoch: 1,
            },
        );
        let s2 = engine.issue_session_token("alice", None).unwrap();
        engine.deactivate_user("alice").unwrap();
        check(&engine, s2.as_str(), TokenFinding::Deactivated);
        engine.reactivate_user("alice").unwrap();
        let old_key = engine.keys()[0].key_id.to_string();
        engine.rotate_key().unwrap();
        engine.retire_key(&old_key).unwrap();
        check(
            &engine,
            s2.as_str(),
            TokenFinding::KeyRetired {
                key_id: old_key.clone(),
            },
        );
        let s3 = engine.issue_session_token("bob", None).unwrap();
        let handle = engine.get_user("bob").unwrap().handle;
        engine.delete_user("bob").unwrap();
        engine
            .create_user(NewUser::new("bob", "Bob again"))
            .unwrap();
        check(&engine, s3.as_str(), TokenFinding::UserDeleted { handle });
        let s4 = engine.issue_session_token("alice", None).unwrap();
        clock.advance(8 * crate::DAY_MS);
        let d = check(
            &engine,
            s4.as_str(),
            TokenFinding::Expired {
                expired_at_ms: s4.expires_at_ms(),
                leeway_ms: 5_000,
            },
        );
        assert!(d
            .finding
            .to_string()
            .contains("expired at 2023-11-21T22:13:20.000Z"));

        // Access tokens.
        let a = engine.issue_access_token("alice", None).unwrap();
        let a = a.token.as_str().to_owned();
        let d = check(&engine, &a, TokenFinding::Valid);
        assert!(d.token_id.is_some());
        check(&engine, &a[..64], TokenFinding::Length { chars: 64 });
        let mut typo = a.clone().into_bytes();
        typo[20] = if typo[20] == b'a' { b'b' } else { b'a' };
        check(
            &engine,
            std::str::from_utf8(&typo).unwrap(),
            TokenFinding::Checksum,
        );
        engine.deactivate_user("alice").unwrap();
        check(&engine, &a, TokenFinding::Deactivated);
        engine.reactivate_user("alice").unwrap();
        engine.revoke_all_access_tokens("alice").unwrap();
        check(&engine, &a, TokenFinding::NotLive);
        let b = engine.issue_access_token("bob", None).unwrap();
        let handle = engine.get_user("bob").unwrap().handle;
        engine.delete_user("bob").unwrap();
        check(
            &engine,
            b.token.as_str(),
            TokenFinding::NoSuchUser { handle },
        );
    }

    #[test]
    fn utc_formats_the_edges() {
        assert_eq!(utc_rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(utc_rfc3339(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(utc_rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(utc_rfc3339(9_999_999_999_000), "2286-11-20T17:46:39.000Z");
        // Any i64 a stored record can hold formats without overflowing.
        assert!(utc_rfc3339(i64::MIN).starts_with("-292275055-"));
        assert!(utc_rfc3339(i64::MAX).starts_with("292278994-"));
    }

    proptest::proptest! {
        /// The step-by-step account accepts exactly what verification accepts.
        #[test]
        fn diagnosis_accepts_what_verify_accepts(pos in 0usize..168, c in proptest::char::range('-', 'z')) {
            let engine = Engine::in_memory().unwrap();
            engine.create_user(NewUser::new("u", "U")).unwrap();
            let s = engine.issue_session_token("u", None).unwrap().as_str().to_owned();
            let a = engine.issue_access_token("u", None).unwrap().token.as_str().to_owned();
            for t in [s, a] {
                let mut b = t.clone().into_bytes();
                let p = pos % b.len();
                b[p] = c as u8;
                let m = String::from_utf8(b).unwrap();
                let d = engine.diagnose_token(&m);
                let verify = if m.starts_with("tsat_") {
                    engine.verify_access_token(&m).err().map(|e| e.kind())
                } else {
                    engine.verify_session_token(&m).err().map(|e| e.kind())
                };
                proptest::prop_assert_eq!(d.error, verify);
                proptest::prop_assert_eq!(kind_of(&d.finding), verify, "{:?}", d.finding);
            }
        }
    }
}
