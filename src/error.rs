//! The one error type of the crate, and the stable numeric codes that C and Python see.

use std::fmt;

/// What went wrong, as a stable category.
///
/// Every kind has a numeric [`code`](ErrorKind::code) that never changes and is never reused;
/// the C ABI returns the same numbers as `tessera_status` values and the Python binding raises
/// one exception class per code. New kinds may be added in later releases, so callers matching
/// on it need a wildcard arm.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// An argument is malformed in a way no more specific kind covers (a bad cursor, a list
    /// limit outside 1..=100, a configuration value out of range, an unknown enum value in a
    /// record).
    InvalidArgument,
    /// The user id breaks the id policy (length, forbidden characters).
    InvalidUserId,
    /// A user with this id already exists.
    UserAlreadyExists,
    /// No user has this id or handle. Never the answer to a token check (a deleted user's
    /// session token is [`ErrorKind::TokenRevoked`]), so tokens reveal nothing about ids.
    UserNotFound,
    /// The user exists but is deactivated.
    UserDeactivated,
    /// A text field is longer than its limit.
    FieldTooLong,
    /// A field has the wrong format (URL scheme, e-mail syntax, phone number, JSON shape).
    InvalidField,
    /// A list field holds more items than its limit (tags, discovery keys).
    TooManyItems,
    /// A discovery key is already held by another user.
    DiscoveryKeyTaken,
    /// No device of this user has that push token.
    DeviceNotFound,
    /// Uploaded profile image bytes are not a PNG or JPEG file.
    InvalidImage,
    /// Uploaded profile image is larger than the configured limit.
    ImageTooLarge,
    /// No stored profile image has this content address.
    ImageNotFound,
    /// The token is not one of ours: malformed, forged, signed by a key id never issued (or
    /// one retired before retired keys were kept), an unknown or revoked access token, or a
    /// valid token of another user presented to `authenticate`. Every failure found before a
    /// signature is verified is reported as this one kind.
    InvalidToken,
    /// The session token was genuine but its expiry has passed (checked before revocation).
    TokenExpired,
    /// The session token was genuine (its signature verified) but is revoked: its user's
    /// sessions were revoked, its signing key was retired (one key, or all of them by
    /// `revoke_all_sessions`), or its user was deleted.
    TokenRevoked,
    /// A requested session expiry is in the past or beyond the configured maximum.
    InvalidExpiry,
    /// The user must present a token to log in (one has been issued to them).
    TokenRequired,
    /// The user has no access token with this id.
    TokenNotFound,
    /// No signing key has this id.
    KeyNotFound,
    /// The active signing key cannot be retired; rotate first.
    KeyActive,
    /// A counter ran out (key ids, user handles, session revocations of one user).
    Exhausted,
    /// An operating-system I/O call failed.
    Io,
    /// Stored data failed its checksum or does not parse (a damaged or cut file header
    /// included).
    Corrupt,
    /// Another process holds the data directory.
    Locked,
    /// The data directory was written by an unknown (newer) format version: a file's header
    /// is intact but names a version this build does not read.
    UnsupportedFormat,
    /// The engine was opened read-only (salvage) and cannot accept writes.
    ReadOnly,
    /// A cluster node cannot vouch for its state: it has not caught up with the shared
    /// database for longer than its `max_staleness`, or the database cannot be reached for a
    /// write. Retry later or on another node.
    Unavailable,
    /// An internal invariant failed; this is a bug in Tessera.
    Internal,
}

impl ErrorKind {
    /// Every kind, in code order. Used to generate tables and to test that codes are unique.
    pub const ALL: &'static [ErrorKind] = &[
        ErrorKind::InvalidArgument,
        ErrorKind::InvalidUserId,
        ErrorKind::UserAlreadyExists,
        ErrorKind::UserNotFound,
        ErrorKind::UserDeactivated,
        ErrorKind::FieldTooLong,
        ErrorKind::InvalidField,
        ErrorKind::TooManyItems,
        ErrorKind::DiscoveryKeyTaken,
        ErrorKind::DeviceNotFound,
        ErrorKind::InvalidImage,
        ErrorKind::ImageTooLarge,
        ErrorKind::ImageNotFound,
        ErrorKind::InvalidToken,
        ErrorKind::TokenExpired,
        ErrorKind::TokenRevoked,
        ErrorKind::InvalidExpiry,
        ErrorKind::TokenRequired,
        ErrorKind::TokenNotFound,
        ErrorKind::KeyNotFound,
        ErrorKind::KeyActive,
        ErrorKind::Exhausted,
        ErrorKind::Io,
        ErrorKind::Corrupt,
        ErrorKind::Locked,
        ErrorKind::UnsupportedFormat,
        ErrorKind::ReadOnly,
        ErrorKind::Unavailable,
        ErrorKind::Internal,
    ];

    /// The stable numeric code. 0 is reserved for success; 100..=199 for the C ABI's own
    /// statuses (null pointer, invalid UTF-8, buffer too small, panic).
    pub const fn code(self) -> u32 {
        match self {
            ErrorKind::InvalidArgument => 1,
            ErrorKind::InvalidUserId => 2,
            ErrorKind::UserAlreadyExists => 3,
            ErrorKind::UserNotFound => 4,
            ErrorKind::UserDeactivated => 5,
            ErrorKind::FieldTooLong => 6,
            ErrorKind::InvalidField => 7,
            ErrorKind::TooManyItems => 8,
            ErrorKind::DiscoveryKeyTaken => 9,
            ErrorKind::DeviceNotFound => 10,
            ErrorKind::InvalidImage => 11,
            ErrorKind::ImageTooLarge => 12,
            ErrorKind::ImageNotFound => 13,
            ErrorKind::InvalidToken => 20,
            ErrorKind::TokenExpired => 21,
            ErrorKind::TokenRevoked => 22,
            ErrorKind::InvalidExpiry => 23,
            ErrorKind::TokenRequired => 24,
            ErrorKind::TokenNotFound => 25,
            ErrorKind::KeyNotFound => 30,
            ErrorKind::KeyActive => 31,
            ErrorKind::Exhausted => 40,
            ErrorKind::Io => 50,
            ErrorKind::Corrupt => 51,
            ErrorKind::Locked => 52,
            ErrorKind::UnsupportedFormat => 53,
            ErrorKind::ReadOnly => 54,
            ErrorKind::Unavailable => 55,
            ErrorKind::Internal => 99,
        }
    }

    /// The kind with this code, if any.
    pub fn from_code(code: u32) -> Option<ErrorKind> {
        ErrorKind::ALL.iter().copied().find(|k| k.code() == code)
    }

    /// A short, static description of the kind.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidArgument => "invalid argument",
            ErrorKind::InvalidUserId => "invalid user id",
            ErrorKind::UserAlreadyExists => "user already exists",
            ErrorKind::UserNotFound => "user not found",
            ErrorKind::UserDeactivated => "user is deactivated",
            ErrorKind::FieldTooLong => "field too long",
            ErrorKind::InvalidField => "invalid field",
            ErrorKind::TooManyItems => "too many items",
            ErrorKind::DiscoveryKeyTaken => "discovery key taken",
            ErrorKind::DeviceNotFound => "device not found",
            ErrorKind::InvalidImage => "image is not PNG or JPEG",
            ErrorKind::ImageTooLarge => "image too large",
            ErrorKind::ImageNotFound => "image not found",
            ErrorKind::InvalidToken => "invalid token",
            ErrorKind::TokenExpired => "token expired",
            ErrorKind::TokenRevoked => "token revoked",
            ErrorKind::InvalidExpiry => "invalid expiry",
            ErrorKind::TokenRequired => "token required",
            ErrorKind::TokenNotFound => "token not found",
            ErrorKind::KeyNotFound => "signing key not found",
            ErrorKind::KeyActive => "signing key is active",
            ErrorKind::Exhausted => "counter exhausted",
            ErrorKind::Io => "I/O error",
            ErrorKind::Corrupt => "stored data is corrupt",
            ErrorKind::Locked => "data directory is locked by another process",
            ErrorKind::UnsupportedFormat => "unsupported data format version",
            ErrorKind::ReadOnly => "engine is read-only",
            ErrorKind::Unavailable => "cluster state unavailable",
            ErrorKind::Internal => "internal error",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error from Tessera: a stable [`ErrorKind`] plus a human message.
///
/// Messages name the field and the limit ("nickname is 81 characters; the limit is 80") but
/// never contain a secret: no token, key or digest is ever formatted into one.
#[derive(Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: Box<str>,
}

impl Error {
    /// An error of `kind` with a message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into().into_boxed_str(),
        }
    }

    /// The stable category.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The stable numeric code of the kind.
    pub fn code(&self) -> u32 {
        self.kind.code()
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The single "invalid token" error given for every failure before a MAC is verified.
    pub(crate) fn invalid_token() -> Error {
        Error::new(ErrorKind::InvalidToken, "invalid token")
    }

    pub(crate) fn io(context: &str, err: std::io::Error) -> Error {
        Error::new(ErrorKind::Io, format!("{context}: {err}"))
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Error({:?}, {:?})", self.kind, self.message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (code {}): {}",
            self.kind,
            self.kind.code(),
            self.message
        )
    }
}

impl std::error::Error for Error {}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for &k in ErrorKind::ALL {
            assert!(seen.insert(k.code()), "duplicate code {}", k.code());
            assert_ne!(k.code(), 0, "0 is success");
            assert!(k.code() < 100, "100..=199 belong to the C ABI");
            assert_eq!(ErrorKind::from_code(k.code()), Some(k));
        }
        assert_eq!(ErrorKind::from_code(0), None);
    }

    #[test]
    fn display_carries_code_and_message() {
        let e = Error::new(
            ErrorKind::FieldTooLong,
            "nickname is 81 characters; the limit is 80",
        );
        assert_eq!(
            e.to_string(),
            "field too long (code 6): nickname is 81 characters; the limit is 80"
        );
        assert_eq!(e.code(), 6);
    }
}
