//! Every limit and default of the engine, in one place.

use crate::error::{Error, ErrorKind, Result};

/// Which characters a user id may contain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum UserIdPolicy {
    /// Any Unicode except control characters, whitespace and the path-breaking `/ ? # %`,
    /// so an id can always be put in a URL path segment without surprises.
    #[default]
    Default,
    /// Only `A-Z a-z 0-9 _ -` (what CometChat allows).
    Strict,
}

/// Whether user ids are case-sensitive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum UserIdCase {
    /// Ids are compared exactly as given.
    #[default]
    Preserve,
    /// Ids are lowercased on create *and* on every lookup, so `Alice` and `alice` are the same
    /// user; the stored and returned id is the lowercased one.
    Lowercase,
}

/// Engine configuration. `Config::default()` gives the documented defaults; change fields and
/// pass it to [`crate::EngineBuilder::config`], which checks it with [`Config::validate`].
/// Build it with `Config { field: value, ..Config::default() }`, which keeps compiling when
/// later releases add fields.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Longest user id, in characters (Unicode scalar values). Default 80 (Sendbird); at most
    /// [`USER_ID_MAX_CHARS_LIMIT`] (191, MirrorFly).
    pub user_id_max_chars: usize,
    /// Characters allowed in user ids. Default [`UserIdPolicy::Default`].
    pub user_id_policy: UserIdPolicy,
    /// Case handling of user ids. Default [`UserIdCase::Preserve`].
    pub user_id_case: UserIdCase,
    /// Longest nickname, in characters. Default 80.
    pub nickname_max_chars: usize,
    /// Longest profile URL, in characters. Default 2048.
    pub profile_url_max_chars: usize,
    /// Largest metadata object, in bytes of compact JSON. Default 5120 (5 KB).
    pub metadata_max_bytes: usize,
    /// Most tags per user. Default 25.
    pub tags_max: usize,
    /// Longest tag, in characters. Default 100.
    pub tag_max_chars: usize,
    /// Longest role, in characters. Default 100.
    pub role_max_chars: usize,
    /// Longest status message, in characters. Default 255.
    pub status_message_max_chars: usize,
    /// Longest link (profile page URL), in characters. Default 3000.
    pub link_max_chars: usize,
    /// Longest e-mail address, in characters. Default 254 (RFC 5321 path limit).
    pub email_max_chars: usize,
    /// Most digits in a mobile number (a leading `+` is extra). Default 15 (E.164).
    pub mobile_max_digits: usize,
    /// Most discovery keys per user. Default 10.
    pub discovery_keys_max: usize,
    /// Longest discovery key, in characters. Default 100.
    pub discovery_key_max_chars: usize,
    /// Most devices of one type per user; adding one more evicts the oldest. Default 20.
    pub devices_per_type_max: usize,
    /// Longest push token (and VoIP push token), in characters. Default 1024.
    pub push_token_max_chars: usize,
    /// Longest device OS version, in characters. Default 64.
    pub os_version_max_chars: usize,
    /// Largest uploaded profile image, in bytes. Default 5 MiB.
    pub profile_image_max_bytes: usize,
    /// Prefix of the profile URL given to uploaded images; the SHA-256 hex and extension follow.
    /// Default `tessera://images/`.
    pub image_url_base: String,
    /// Most valid access tokens per user. Issuing one more revokes the oldest, so that the user
    /// holds exactly this many afterwards; after the limit was lowered (an engine reopened with
    /// a smaller value) that is every token beyond it. Default
    /// [`ACCESS_TOKENS_PER_USER_DEFAULT`] (10, Sendbird); 1..=[`ACCESS_TOKENS_PER_USER_LIMIT`]
    /// (100, CometChat).
    pub access_tokens_per_user: usize,
    /// Longest access-token label, in characters. Default 100.
    pub access_token_label_max_chars: usize,
    /// Session lifetime when the caller gives no expiry, in milliseconds. Default 7 days.
    pub session_ttl_ms: i64,
    /// Latest expiry a caller may ask for, as milliseconds from now. Default 365 days.
    pub session_max_ttl_ms: i64,
    /// Clock-skew leeway applied when checking expiry, in milliseconds. Default 5 000.
    pub clock_skew_ms: i64,
    /// Whether a user who was never issued a token may authenticate with the id alone
    /// (Sendbird's rule). Default `false`: every login needs a token, which is the safe choice
    /// for an embedded engine; set it to `true` to get Sendbird's behaviour.
    pub allow_id_only_login: bool,
    /// Most undrained revocation events kept; older ones are dropped (and counted). Default 65 536.
    pub event_queue_capacity: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            user_id_max_chars: 80,
            user_id_policy: UserIdPolicy::Default,
            user_id_case: UserIdCase::Preserve,
            nickname_max_chars: 80,
            profile_url_max_chars: 2048,
            metadata_max_bytes: 5 * 1024,
            tags_max: 25,
            tag_max_chars: 100,
            role_max_chars: 100,
            status_message_max_chars: 255,
            link_max_chars: 3000,
            email_max_chars: 254,
            mobile_max_digits: 15,
            discovery_keys_max: 10,
            discovery_key_max_chars: 100,
            devices_per_type_max: 20,
            push_token_max_chars: 1024,
            os_version_max_chars: 64,
            profile_image_max_bytes: 5 * 1024 * 1024,
            image_url_base: "tessera://images/".to_owned(),
            access_tokens_per_user: ACCESS_TOKENS_PER_USER_DEFAULT,
            access_token_label_max_chars: 100,
            session_ttl_ms: 7 * DAY_MS,
            session_max_ttl_ms: 365 * DAY_MS,
            clock_skew_ms: 5_000,
            allow_id_only_login: false,
            event_queue_capacity: 65_536,
        }
    }
}

/// One day in milliseconds.
pub const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// Largest `user_id_max_chars` accepted (MirrorFly's 191).
pub const USER_ID_MAX_CHARS_LIMIT: usize = 191;

/// Default `access_tokens_per_user` (Sendbird's 10).
pub const ACCESS_TOKENS_PER_USER_DEFAULT: usize = 10;

/// Largest `access_tokens_per_user` accepted (CometChat's 100).
pub const ACCESS_TOKENS_PER_USER_LIMIT: usize = 100;

impl Config {
    /// Checks that every value is in its allowed range.
    pub fn validate(&self) -> Result<()> {
        fn bad(msg: String) -> Result<()> {
            Err(Error::new(ErrorKind::InvalidArgument, msg))
        }
        if !(1..=USER_ID_MAX_CHARS_LIMIT).contains(&self.user_id_max_chars) {
            return bad(format!(
                "user_id_max_chars must be 1..={USER_ID_MAX_CHARS_LIMIT}, got {}",
                self.user_id_max_chars
            ));
        }
        if !(1..=ACCESS_TOKENS_PER_USER_LIMIT).contains(&self.access_tokens_per_user) {
            return bad(format!(
                "access_tokens_per_user must be 1..={ACCESS_TOKENS_PER_USER_LIMIT}, got {}",
                self.access_tokens_per_user
            ));
        }
        if self.session_ttl_ms <= 0 || self.session_ttl_ms > self.session_max_ttl_ms {
            return bad("session_ttl_ms must be positive and at most session_max_ttl_ms".into());
        }
        // Session tokens carry expiry in 10 decimal digits of seconds; keep max far inside it.
        if self.session_max_ttl_ms > 100 * 365 * DAY_MS {
            return bad("session_max_ttl_ms must be at most 100 years".into());
        }
        if !(0..=3_600_000).contains(&self.clock_skew_ms) {
            return bad("clock_skew_ms must be 0..=3600000".into());
        }
        if self.devices_per_type_max == 0 || self.event_queue_capacity == 0 {
            return bad("devices_per_type_max and event_queue_capacity must be positive".into());
        }
        if self.image_url_base.is_empty() || self.image_url_base.len() > 1024 {
            return bad("image_url_base must be 1..=1024 bytes".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_as_documented() {
        let c = Config::default();
        c.validate().unwrap();
        assert_eq!(c.user_id_max_chars, 80);
        assert_eq!(c.access_tokens_per_user, 10);
        assert_eq!(c.session_ttl_ms, 7 * DAY_MS);
        assert_eq!(c.clock_skew_ms, 5_000);
        assert_eq!(c.profile_image_max_bytes, 5 * 1024 * 1024);
    }

    #[test]
    fn ranges_are_checked_at_their_edges() {
        let mut c = Config {
            user_id_max_chars: 191,
            ..Config::default()
        };
        c.validate().unwrap();
        c.user_id_max_chars = 192;
        assert_eq!(c.validate().unwrap_err().kind(), ErrorKind::InvalidArgument);
        c.user_id_max_chars = 0;
        assert!(c.validate().is_err());
        let mut c = Config {
            access_tokens_per_user: 100,
            ..Config::default()
        };
        c.validate().unwrap();
        c.access_tokens_per_user = 101;
        assert!(c.validate().is_err());
        c.access_tokens_per_user = 0;
        assert!(c.validate().is_err());
    }
}
