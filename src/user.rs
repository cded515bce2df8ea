//! User records: the public shapes (`User`, `NewUser`, `UserPatch`), the compact stored
//! record, and every field rule with its limit.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use std::borrow::Cow;

use crate::config::{Config, UserIdCase, UserIdPolicy};
use crate::error::{Error, ErrorKind, Result};

/// The metadata key whose value is private: returned by `get_user`, never matched by list
/// filters (CometChat's `@private` convention).
pub const PRIVATE_METADATA_KEY: &str = "@private";

/// A user as the engine returns it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct User {
    /// The unique, immutable user id.
    pub user_id: String,
    /// Display name; may be empty.
    pub nickname: String,
    /// Profile image URL (http/https, or the engine URL of an uploaded image).
    pub profile_url: Option<String>,
    /// Free-form JSON object; the `@private` key is never matched by list filters.
    pub metadata: Map<String, Value>,
    /// Tags for filtering.
    pub tags: Vec<String>,
    /// Role for role-based access control.
    pub role: Option<String>,
    /// Status message.
    pub status_message: Option<String>,
    /// Profile page URL.
    pub link: Option<String>,
    /// E-mail address.
    pub email: Option<String>,
    /// Mobile number: digits with an optional leading `+`.
    pub mobile_number: Option<String>,
    /// Keys unique across all users, used to find friends.
    pub discovery_keys: Vec<String>,
    /// False while the user is deactivated: its tokens do not verify.
    pub is_active: bool,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    /// The internal handle (1.., never reused, not secret): the subject (`sub`, as a decimal
    /// string) of the user's session tokens. [`Engine::get_user_by_handle`] finds the user
    /// from it.
    ///
    /// [`Engine::get_user_by_handle`]: crate::Engine::get_user_by_handle
    pub handle: u64,
}

/// The fields of a user to create. Only `user_id` is required.
///
/// ```
/// let new = tessera::NewUser::new("alice", "Alice");
/// assert_eq!(new.user_id, "alice");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NewUser {
    /// Unique id; checked against the configured id policy.
    pub user_id: String,
    /// Display name.
    pub nickname: String,
    /// Profile image URL.
    pub profile_url: Option<String>,
    /// JSON object metadata.
    pub metadata: Map<String, Value>,
    /// Tags.
    pub tags: Vec<String>,
    /// Role.
    pub role: Option<String>,
    /// Status message.
    pub status_message: Option<String>,
    /// Profile page URL.
    pub link: Option<String>,
    /// E-mail address.
    pub email: Option<String>,
    /// Mobile number.
    pub mobile_number: Option<String>,
    /// Discovery keys.
    pub discovery_keys: Vec<String>,
}

impl NewUser {
    /// A new user with an id and a nickname and every other field empty.
    pub fn new(user_id: impl Into<String>, nickname: impl Into<String>) -> NewUser {
        NewUser {
            user_id: user_id.into(),
            nickname: nickname.into(),
            ..NewUser::default()
        }
    }
}

/// A partial update: `None` leaves a field alone. For clearable fields, `Some(None)` clears
/// it (in JSON: the key present with `null`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UserPatch {
    /// New nickname.
    pub nickname: Option<String>,
    /// New profile URL, or clear it.
    #[serde(deserialize_with = "double_option")]
    pub profile_url: Option<Option<String>>,
    /// Replaces the whole metadata object.
    pub metadata: Option<Map<String, Value>>,
    /// Replaces the tags.
    pub tags: Option<Vec<String>>,
    /// New role, or clear it.
    #[serde(deserialize_with = "double_option")]
    pub role: Option<Option<String>>,
    /// New status message, or clear it.
    #[serde(deserialize_with = "double_option")]
    pub status_message: Option<Option<String>>,
    /// New link, or clear it.
    #[serde(deserialize_with = "double_option")]
    pub link: Option<Option<String>>,
    /// New e-mail, or clear it.
    #[serde(deserialize_with = "double_option")]
    pub email: Option<Option<String>>,
    /// New mobile number, or clear it.
    #[serde(deserialize_with = "double_option")]
    pub mobile_number: Option<Option<String>>,
    /// Replaces the discovery keys.
    pub discovery_keys: Option<Vec<String>>,
}

/// Distinguishes a missing key (outer `None`, by `#[serde(default)]`) from an explicit `null`.
fn double_option<'de, D, T>(de: D) -> std::result::Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(de).map(Some)
}

/// The stored form of a user: boxed strings, and the rarely-set fields behind one pointer so
/// a minimal user stays small (the memory target is ≤ 300 bytes per minimal user).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct UserRecord {
    pub id: Box<str>,
    pub nickname: Box<str>,
    pub profile_url: Option<Box<str>>,
    pub created_at_ms: i64,
    pub active: bool,
    pub extra: Option<Box<UserExtra>>,
}

/// Optional fields of a [`UserRecord`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct UserExtra {
    /// Compact JSON text of the metadata object; `None` when empty.
    pub metadata: Option<Box<str>>,
    pub tags: Vec<Box<str>>,
    pub role: Option<Box<str>>,
    pub status_message: Option<Box<str>>,
    pub link: Option<Box<str>>,
    pub email: Option<Box<str>>,
    pub mobile_number: Option<Box<str>>,
    pub discovery_keys: Vec<Box<str>>,
}

impl UserExtra {
    fn is_empty(&self) -> bool {
        *self == UserExtra::default()
    }
}

fn boxed(s: &Option<String>) -> Option<Box<str>> {
    s.as_deref().map(Box::from)
}

fn unboxed(s: &Option<Box<str>>) -> Option<String> {
    s.as_deref().map(String::from)
}

fn boxed_list(v: &[String]) -> Vec<Box<str>> {
    v.iter().map(|s| Box::from(s.as_str())).collect()
}

impl UserRecord {
    /// The public view of the record.
    pub fn to_user(&self, handle: u64) -> User {
        let extra = self.extra.as_deref();
        let metadata = extra
            .and_then(|e| e.metadata.as_deref())
            .and_then(|m| serde_json::from_str(m).ok())
            .unwrap_or_default();
        let list = |f: fn(&UserExtra) -> &Vec<Box<str>>| -> Vec<String> {
            extra
                .map(|e| f(e).iter().map(|s| s.to_string()).collect())
                .unwrap_or_default()
        };
        let opt = |f: fn(&UserExtra) -> &Option<Box<str>>| extra.and_then(|e| unboxed(f(e)));
        User {
            user_id: self.id.to_string(),
            nickname: self.nickname.to_string(),
            profile_url: unboxed(&self.profile_url),
            metadata,
            tags: list(|e| &e.tags),
            role: opt(|e| &e.role),
            status_message: opt(|e| &e.status_message),
            link: opt(|e| &e.link),
            email: opt(|e| &e.email),
            mobile_number: opt(|e| &e.mobile_number),
            discovery_keys: list(|e| &e.discovery_keys),
            is_active: self.active,
            created_at_ms: self.created_at_ms,
            handle,
        }
    }

    /// Builds a record from a new user, checking every field. `id` must already be normalised.
    pub fn from_new(config: &Config, id: &str, new: &NewUser, now_ms: i64) -> Result<UserRecord> {
        let mut record = UserRecord {
            id: Box::from(id),
            nickname: Box::from(""),
            profile_url: None,
            created_at_ms: now_ms,
            active: true,
            extra: None,
        };
        let patch = UserPatch {
            nickname: Some(new.nickname.clone()),
            profile_url: Some(new.profile_url.clone()),
            metadata: Some(new.metadata.clone()),
            tags: Some(new.tags.clone()),
            role: Some(new.role.clone()),
            status_message: Some(new.status_message.clone()),
            link: Some(new.link.clone()),
            email: Some(new.email.clone()),
            mobile_number: Some(new.mobile_number.clone()),
            discovery_keys: Some(new.discovery_keys.clone()),
        };
        record.apply_patch(config, &patch)?;
        Ok(record)
    }

    /// Applies a patch after checking every field it sets; on error `self` is unchanged.
    pub fn apply_patch(&mut self, config: &Config, patch: &UserPatch) -> Result<()> {
        validate_patch(config, patch)?;
        let mut extra = self.extra.as_deref().cloned().unwrap_or_default();
        if let Some(n) = &patch.nickname {
            self.nickname = Box::from(n.as_str());
        }
        if let Some(u) = &patch.profile_url {
            self.profile_url = boxed(u);
        }
        if let Some(m) = &patch.metadata {
            extra.metadata = if m.is_empty() {
                None
            } else {
                Some(metadata_json(m).into_boxed_str())
            };
        }
        if let Some(t) = &patch.tags {
            extra.tags = boxed_list(t);
        }
        if let Some(v) = &patch.role {
            extra.role = boxed(v);
        }
        if let Some(v) = &patch.status_message {
            extra.status_message = boxed(v);
        }
        if let Some(v) = &patch.link {
            extra.link = boxed(v);
        }
        if let Some(v) = &patch.email {
            extra.email = boxed(v);
        }
        if let Some(v) = &patch.mobile_number {
            extra.mobile_number = boxed(v);
        }
        if let Some(k) = &patch.discovery_keys {
            extra.discovery_keys = boxed_list(k);
        }
        self.extra = (!extra.is_empty()).then(|| Box::new(extra));
        Ok(())
    }

    /// The discovery keys, empty when none.
    pub fn discovery_keys(&self) -> &[Box<str>] {
        self.extra.as_deref().map_or(&[], |e| &e.discovery_keys)
    }

    /// The tags, empty when none.
    pub fn tags(&self) -> &[Box<str>] {
        self.extra.as_deref().map_or(&[], |e| &e.tags)
    }

    /// Whether the public (non-`@private`) metadata has `key` equal to the string `value`.
    pub fn metadata_matches(&self, key: &str, value: &str) -> bool {
        if key == PRIVATE_METADATA_KEY {
            return false;
        }
        let Some(text) = self.extra.as_deref().and_then(|e| e.metadata.as_deref()) else {
            return false;
        };
        match serde_json::from_str::<Map<String, Value>>(text) {
            Ok(map) => matches!(map.get(key), Some(Value::String(s)) if s == value),
            Err(_) => false,
        }
    }
}

fn metadata_json(m: &Map<String, Value>) -> String {
    // A Map of Values always serialises; an error here would be a serde_json bug.
    serde_json::to_string(m).unwrap_or_else(|_| "{}".to_owned())
}

/// Checks a user id against the policy and returns it normalised (lowercased when the
/// configuration says so). Used on create and on every lookup.
pub(crate) fn normalize_user_id<'a>(config: &Config, id: &'a str) -> Result<Cow<'a, str>> {
    // This runs on every lookup, including every token issue. For an all-ASCII id (the common
    // case) the length is the byte count and lowercasing cannot change it.
    let ascii = id.is_ascii();
    let chars = if ascii { id.len() } else { id.chars().count() };
    if chars == 0 {
        return Err(Error::new(ErrorKind::InvalidUserId, "user id is empty"));
    }
    if chars > config.user_id_max_chars {
        return Err(Error::new(
            ErrorKind::InvalidUserId,
            format!(
                "user id is {chars} characters; the limit is {}",
                config.user_id_max_chars
            ),
        ));
    }
    let forbidden = |c: &char| match config.user_id_policy {
        UserIdPolicy::Strict => !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'),
        _ => c.is_control() || c.is_whitespace() || matches!(c, '/' | '?' | '#' | '%'),
    };
    // The same rule on bytes, for ASCII ids: below 0x20 and 0x7F are the ASCII control
    // characters, and every ASCII whitespace character is one of them or the space.
    let forbidden_byte = |b: u8| match config.user_id_policy {
        UserIdPolicy::Strict => !(b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
        _ => b <= b' ' || b == 0x7F || matches!(b, b'/' | b'?' | b'#' | b'%'),
    };
    let bad = if ascii {
        id.bytes().find(|&b| forbidden_byte(b)).map(char::from)
    } else {
        id.chars().find(forbidden)
    };
    if let Some(c) = bad {
        return Err(Error::new(
            ErrorKind::InvalidUserId,
            format!("user id contains the forbidden character {c:?}"),
        ));
    }
    Ok(match config.user_id_case {
        UserIdCase::Lowercase if ascii && id.bytes().any(|b| b.is_ascii_uppercase()) => {
            Cow::Owned(id.to_ascii_lowercase())
        }
        UserIdCase::Lowercase if !ascii && id.chars().any(char::is_uppercase) => {
            let lower = id.to_lowercase();
            // Lowercasing can lengthen a string (e.g. 'İ'); re-check the limit honestly.
            if lower.chars().count() > config.user_id_max_chars {
                return Err(Error::new(
                    ErrorKind::InvalidUserId,
                    "user id is too long once lowercased",
                ));
            }
            Cow::Owned(lower)
        }
        _ => Cow::Borrowed(id),
    })
}

/// Checks a text field's length in characters and rejects control characters, which would
/// break logs, C strings and terminals.
pub(crate) fn check_text(field: &str, value: &str, max_chars: usize) -> Result<()> {
    let chars = value.chars().count();
    if chars > max_chars {
        return Err(Error::new(
            ErrorKind::FieldTooLong,
            format!("{field} is {chars} characters; the limit is {max_chars}"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::new(
            ErrorKind::InvalidField,
            format!("{field} contains a control character"),
        ));
    }
    Ok(())
}

/// Checks an http(s) URL: scheme, a non-empty host, no whitespace.
pub(crate) fn check_url(field: &str, value: &str, max_chars: usize) -> Result<()> {
    check_text(field, value, max_chars)?;
    let lower = value.get(..8).unwrap_or(value).to_ascii_lowercase();
    let rest = if lower.starts_with("https://") {
        &value[8..]
    } else if lower.starts_with("http://") {
        &value[7..]
    } else {
        return Err(Error::new(
            ErrorKind::InvalidField,
            format!("{field} must be an http:// or https:// URL"),
        ));
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() || value.chars().any(char::is_whitespace) {
        return Err(Error::new(
            ErrorKind::InvalidField,
            format!("{field} must have a host and no whitespace"),
        ));
    }
    Ok(())
}

/// A pragmatic e-mail syntax check: `local@domain`, a local part of 1..=64 visible characters,
/// a domain of dot-separated LDH labels with at least one dot. Internationalised domains must
/// be given in their ASCII (punycode) form.
pub(crate) fn check_email(value: &str, max_chars: usize) -> Result<()> {
    check_text("email", value, max_chars)?;
    let invalid = || Error::new(ErrorKind::InvalidField, "email is not a valid address");
    let (local, domain) = value.rsplit_once('@').ok_or_else(invalid)?;
    if local.is_empty()
        || local.chars().count() > 64
        || local.contains('@')
        || local.chars().any(|c| {
            c.is_whitespace()
                || matches!(
                    c,
                    '<' | '>' | '(' | ')' | ',' | ';' | ':' | '\\' | '"' | '[' | ']'
                )
        })
        || local.starts_with('.')
        || local.ends_with('.')
        || local.contains("..")
    {
        return Err(invalid());
    }
    let labels: Vec<&str> = domain.split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if labels.len() < 2 || !labels.iter().all(label_ok) {
        return Err(invalid());
    }
    Ok(())
}

/// A mobile number: an optional leading `+` and 1..=`max_digits` ASCII digits.
pub(crate) fn check_mobile(value: &str, max_digits: usize) -> Result<()> {
    let digits = value.strip_prefix('+').unwrap_or(value);
    if digits.len() > max_digits && digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::new(
            ErrorKind::FieldTooLong,
            format!(
                "mobile_number has {} digits; the limit is {max_digits}",
                digits.len()
            ),
        ));
    }
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::new(
            ErrorKind::InvalidField,
            "mobile_number must be digits with an optional leading +",
        ));
    }
    Ok(())
}

fn check_list(field: &str, items: &[String], max_items: usize, max_chars: usize) -> Result<()> {
    if items.len() > max_items {
        return Err(Error::new(
            ErrorKind::TooManyItems,
            format!("{} {field}; the limit is {max_items}", items.len()),
        ));
    }
    let mut seen = std::collections::HashSet::with_capacity(items.len());
    for item in items {
        if item.is_empty() {
            return Err(Error::new(
                ErrorKind::InvalidField,
                format!("{field} may not contain an empty string"),
            ));
        }
        check_text(field, item, max_chars)?;
        if !seen.insert(item.as_str()) {
            return Err(Error::new(
                ErrorKind::InvalidField,
                format!("{field} contains a duplicate"),
            ));
        }
    }
    Ok(())
}

/// Checks every field a patch sets.
pub(crate) fn validate_patch(c: &Config, p: &UserPatch) -> Result<()> {
    if let Some(n) = &p.nickname {
        check_text("nickname", n, c.nickname_max_chars)?;
    }
    if let Some(Some(u)) = &p.profile_url {
        check_url("profile_url", u, c.profile_url_max_chars)?;
    }
    if let Some(m) = &p.metadata {
        let len = metadata_json(m).len();
        if len > c.metadata_max_bytes {
            return Err(Error::new(
                ErrorKind::FieldTooLong,
                format!(
                    "metadata is {len} bytes of JSON; the limit is {}",
                    c.metadata_max_bytes
                ),
            ));
        }
    }
    if let Some(t) = &p.tags {
        check_list("tags", t, c.tags_max, c.tag_max_chars)?;
    }
    if let Some(Some(v)) = &p.role {
        check_text("role", v, c.role_max_chars)?;
    }
    if let Some(Some(v)) = &p.status_message {
        check_text("status_message", v, c.status_message_max_chars)?;
    }
    if let Some(Some(v)) = &p.link {
        check_url("link", v, c.link_max_chars)?;
    }
    if let Some(Some(v)) = &p.email {
        check_email(v, c.email_max_chars)?;
    }
    if let Some(Some(v)) = &p.mobile_number {
        check_mobile(v, c.mobile_max_digits)?;
    }
    if let Some(k) = &p.discovery_keys {
        check_list(
            "discovery_keys",
            k,
            c.discovery_keys_max,
            c.discovery_key_max_chars,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        Config::default()
    }

    fn kind<T: std::fmt::Debug>(r: Result<T>) -> ErrorKind {
        r.unwrap_err().kind()
    }

    #[test]
    fn user_id_length_edges_ascii_and_multibyte() {
        let c = cfg();
        assert!(normalize_user_id(&c, &"a".repeat(80)).is_ok());
        assert_eq!(
            kind(normalize_user_id(&c, &"a".repeat(81))),
            ErrorKind::InvalidUserId
        );
        // 80 four-byte characters (320 bytes) are 80 characters.
        assert!(normalize_user_id(&c, &"😀".repeat(80)).is_ok());
        assert_eq!(
            kind(normalize_user_id(&c, &"😀".repeat(81))),
            ErrorKind::InvalidUserId
        );
        assert_eq!(kind(normalize_user_id(&c, "")), ErrorKind::InvalidUserId);
        let c = Config {
            user_id_max_chars: 191,
            ..cfg()
        };
        assert!(normalize_user_id(&c, &"x".repeat(191)).is_ok());
        assert!(normalize_user_id(&c, &"x".repeat(192)).is_err());
    }

    #[test]
    fn user_id_default_policy_forbids_path_breakers_whitespace_controls() {
        let c = cfg();
        for bad in [
            "a/b", "a?b", "a#b", "a%b", "a b", "a\tb", "a\u{0}b", "a\u{a0}b", "a\nb",
        ] {
            assert_eq!(
                kind(normalize_user_id(&c, bad)),
                ErrorKind::InvalidUserId,
                "{bad:?}"
            );
        }
        for good in ["alice", "Ünïcødé", "user.name+tag@x", "😀", "a-b_c"] {
            assert!(normalize_user_id(&c, good).is_ok(), "{good:?}");
        }
    }

    fn allowed_strict(b: u8) -> bool {
        b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
    }

    #[test]
    fn ascii_fast_path_agrees_with_the_general_rules() {
        for policy in [UserIdPolicy::Default, UserIdPolicy::Strict] {
            for case in [UserIdCase::Preserve, UserIdCase::Lowercase] {
                let c = Config {
                    user_id_policy: policy,
                    user_id_case: case,
                    ..cfg()
                };
                for b in 0u8..128 {
                    let id = format!("a{}Z", b as char);
                    // "é" forces the general path; compare its verdict on the same ASCII part.
                    let general = normalize_user_id(&c, &format!("{id}é"))
                        .map(|s| s.trim_end_matches('é').to_owned());
                    let fast = normalize_user_id(&c, &id).map(|s| s.into_owned());
                    match policy {
                        UserIdPolicy::Strict => {
                            assert!(general.is_err());
                            assert_eq!(fast.is_ok(), allowed_strict(b), "byte {b}");
                        }
                        _ => assert_eq!(fast.is_ok(), general.is_ok(), "byte {b}"),
                    }
                    // The byte rule names the same character the char rule names.
                    if let (Err(f), Err(g)) = (&fast, &general) {
                        if policy == UserIdPolicy::Default || !allowed_strict(b) {
                            assert_eq!(f.to_string(), g.to_string(), "byte {b}");
                        }
                    }
                    if let (Ok(f), Ok(g)) = (&fast, &general) {
                        assert_eq!(f, g, "byte {b}");
                    }
                }
            }
        }
    }

    #[test]
    fn user_id_strict_policy_and_lowercasing() {
        let c = Config {
            user_id_policy: UserIdPolicy::Strict,
            ..cfg()
        };
        assert!(normalize_user_id(&c, "Abc_9-z").is_ok());
        assert!(normalize_user_id(&c, "a.b").is_err());
        assert!(normalize_user_id(&c, "é").is_err());
        let c = Config {
            user_id_case: UserIdCase::Lowercase,
            ..cfg()
        };
        assert_eq!(normalize_user_id(&c, "AlIcE").unwrap(), "alice");
        assert!(matches!(
            normalize_user_id(&c, "bob").unwrap(),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn text_limits_at_edges() {
        let c = cfg();
        let rec = |p: UserPatch| validate_patch(&c, &p);
        assert!(rec(UserPatch {
            nickname: Some("é".repeat(80)),
            ..Default::default()
        })
        .is_ok());
        assert_eq!(
            kind(rec(UserPatch {
                nickname: Some("é".repeat(81)),
                ..Default::default()
            })),
            ErrorKind::FieldTooLong
        );
        assert!(rec(UserPatch {
            role: Some(Some("r".repeat(100))),
            ..Default::default()
        })
        .is_ok());
        assert!(rec(UserPatch {
            role: Some(Some("r".repeat(101))),
            ..Default::default()
        })
        .is_err());
        let sm = |n| UserPatch {
            status_message: Some(Some("s".repeat(n))),
            ..Default::default()
        };
        assert!(rec(sm(255)).is_ok());
        assert_eq!(kind(rec(sm(256))), ErrorKind::FieldTooLong);
        assert_eq!(
            kind(rec(UserPatch {
                nickname: Some("a\u{7}".into()),
                ..Default::default()
            })),
            ErrorKind::InvalidField
        );
    }

    #[test]
    fn urls_at_edges_and_schemes() {
        let url = |n: usize| format!("https://e.io/{}", "p".repeat(n - 13));
        assert!(check_url("profile_url", &url(2048), 2048).is_ok());
        assert_eq!(
            kind(check_url("profile_url", &url(2049), 2048)),
            ErrorKind::FieldTooLong
        );
        let link = |n: usize| format!("http://e.io/{}", "p".repeat(n - 12));
        assert!(check_url("link", &link(3000), 3000).is_ok());
        assert!(check_url("link", &link(3001), 3000).is_err());
        for bad in [
            "ftp://x",
            "javascript:alert(1)",
            "https://",
            "http:///p",
            "https://a b",
            "x",
        ] {
            assert_eq!(
                kind(check_url("u", bad, 100)),
                ErrorKind::InvalidField,
                "{bad}"
            );
        }
        assert!(check_url("u", "HTTPS://Example.COM", 100).is_ok());
    }

    #[test]
    fn email_syntax() {
        for good in ["a@b.co", "first.last+tag@sub.example.org", "x_y@a-b.io"] {
            assert!(check_email(good, 254).is_ok(), "{good}");
        }
        for bad in [
            "", "a", "a@", "@b.co", "a@b", "a@@b.co", "a b@c.io", "a@-b.io", "a@b..io", ".a@b.io",
            "a@b_c.io",
        ] {
            assert_eq!(
                kind(check_email(bad, 254)),
                ErrorKind::InvalidField,
                "{bad}"
            );
        }
        let email = |x: usize| {
            format!(
                "{}@{}.{}.{}.io",
                "l".repeat(64),
                "d".repeat(63),
                "e".repeat(63),
                "f".repeat(x)
            )
        };
        assert_eq!(email(58).chars().count(), 254);
        assert!(check_email(&email(58), 254).is_ok());
        assert_eq!(kind(check_email(&email(59), 254)), ErrorKind::FieldTooLong);
        let long_local = format!("{}@b.io", "l".repeat(65));
        assert_eq!(kind(check_email(&long_local, 254)), ErrorKind::InvalidField);
    }

    #[test]
    fn mobile_edges() {
        assert!(check_mobile("+123456789012345", 15).is_ok());
        assert!(check_mobile("123456789012345", 15).is_ok());
        assert_eq!(
            kind(check_mobile("+1234567890123456", 15)),
            ErrorKind::FieldTooLong
        );
        for bad in ["", "+", "12a", "++1", "1 2", "-1"] {
            assert_eq!(
                kind(check_mobile(bad, 15)),
                ErrorKind::InvalidField,
                "{bad}"
            );
        }
    }

    #[test]
    fn tags_and_discovery_keys_counts_and_lengths() {
        let c = cfg();
        let tags = |n: usize, len: usize| UserPatch {
            tags: Some(
                (0..n)
                    .map(|i| format!("{i:0>width$}", width = len))
                    .collect(),
            ),
            ..Default::default()
        };
        assert!(validate_patch(&c, &tags(25, 100)).is_ok());
        assert_eq!(
            kind(validate_patch(&c, &tags(26, 3))),
            ErrorKind::TooManyItems
        );
        assert_eq!(
            kind(validate_patch(&c, &tags(1, 101))),
            ErrorKind::FieldTooLong
        );
        let dup = UserPatch {
            tags: Some(vec!["a".into(), "a".into()]),
            ..Default::default()
        };
        assert_eq!(kind(validate_patch(&c, &dup)), ErrorKind::InvalidField);
        let keys = |n: usize| UserPatch {
            discovery_keys: Some((0..n).map(|i| format!("k{i}")).collect()),
            ..Default::default()
        };
        assert!(validate_patch(&c, &keys(10)).is_ok());
        assert_eq!(kind(validate_patch(&c, &keys(11))), ErrorKind::TooManyItems);
    }

    #[test]
    fn metadata_size_edge_and_private_matching() {
        let c = cfg();
        // {"k":"vvv…"} is 8 bytes of framing plus the value.
        let meta = |n: usize| {
            let mut m = Map::new();
            m.insert("k".into(), Value::String("v".repeat(n - 8)));
            m
        };
        let p = |n| UserPatch {
            metadata: Some(meta(n)),
            ..Default::default()
        };
        assert!(validate_patch(&c, &p(5120)).is_ok());
        assert_eq!(kind(validate_patch(&c, &p(5121))), ErrorKind::FieldTooLong);

        let mut new = NewUser::new("u", "U");
        new.metadata.insert("team".into(), "red".into());
        new.metadata.insert(
            PRIVATE_METADATA_KEY.into(),
            serde_json::json!({"email": "x@y.io"}),
        );
        let r = UserRecord::from_new(&c, "u", &new, 1).unwrap();
        assert!(r.metadata_matches("team", "red"));
        assert!(!r.metadata_matches("team", "blue"));
        assert!(!r.metadata_matches(PRIVATE_METADATA_KEY, "x"));
        assert!(!r.metadata_matches("email", "x@y.io"));
        assert_eq!(r.to_user(1).metadata, new.metadata);
    }

    #[test]
    fn patch_is_all_or_nothing_and_round_trips() {
        let c = cfg();
        let mut r = UserRecord::from_new(&c, "u", &NewUser::new("u", "Old"), 5).unwrap();
        assert!(r.extra.is_none(), "a minimal user has no extra allocation");
        let before = r.clone();
        let bad = UserPatch {
            nickname: Some("New".into()),
            email: Some(Some("nope".into())),
            ..Default::default()
        };
        assert!(r.apply_patch(&c, &bad).is_err());
        assert_eq!(r, before);
        let good = UserPatch {
            nickname: Some("New".into()),
            email: Some(Some("a@b.io".into())),
            ..Default::default()
        };
        r.apply_patch(&c, &good).unwrap();
        let u = r.to_user(1);
        assert_eq!(
            (u.nickname.as_str(), u.email.as_deref()),
            ("New", Some("a@b.io"))
        );
        let clear = UserPatch {
            email: Some(None),
            ..Default::default()
        };
        r.apply_patch(&c, &clear).unwrap();
        assert!(r.extra.is_none());
    }

    #[test]
    fn patch_json_distinguishes_absent_from_null() {
        let p: UserPatch = serde_json::from_str(r#"{"role":null,"nickname":"n"}"#).unwrap();
        assert_eq!(p.role, Some(None));
        assert_eq!(p.email, None);
        assert!(serde_json::from_str::<UserPatch>(r#"{"nick":"n"}"#).is_err());
    }
}
