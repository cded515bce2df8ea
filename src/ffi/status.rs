//! `tessera_status`: the one status enum of the C ABI, and `tessera_status_str`.

use std::ffi::c_char;

use crate::error::ErrorKind;

/// The result of every fallible Tessera function.
///
/// `TESSERA_OK` (0) is success; every other value is a failure. Values 1..=99 are exactly the
/// numeric codes of the Rust `tessera::ErrorKind`; values 100..=199 belong to the C ABI itself.
/// Numbers are never reused, and **new codes may appear in later releases**: treat any value you
/// do not know as a generic failure and print it with `tessera_status_str`.
///
/// In C the type is a `uint32_t`, so an unknown value is never undefined behaviour.
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum tessera_status {
    /// Success.
    TESSERA_OK = 0,
    /// An argument is malformed in a way no more specific code covers (a bad cursor, a list
    /// limit outside 1..=100, a configuration value out of range, an unknown enum value).
    TESSERA_INVALID_ARGUMENT = 1,
    /// The user id breaks the id policy (length, forbidden characters).
    TESSERA_INVALID_USER_ID = 2,
    /// A user with this id already exists.
    TESSERA_USER_ALREADY_EXISTS = 3,
    /// No user has this id or handle. Never returned by a token check (see docs/ERRORS.md).
    TESSERA_USER_NOT_FOUND = 4,
    /// The user exists but is deactivated.
    TESSERA_USER_DEACTIVATED = 5,
    /// A text field is longer than its limit.
    TESSERA_FIELD_TOO_LONG = 6,
    /// A field has the wrong format (URL scheme, e-mail syntax, phone number, JSON shape).
    TESSERA_INVALID_FIELD = 7,
    /// A list field holds more items than its limit (tags, discovery keys).
    TESSERA_TOO_MANY_ITEMS = 8,
    /// A discovery key is already held by another user.
    TESSERA_DISCOVERY_KEY_TAKEN = 9,
    /// No device of this user has that push token.
    TESSERA_DEVICE_NOT_FOUND = 10,
    /// Uploaded profile image bytes are not a PNG or JPEG file.
    TESSERA_INVALID_IMAGE = 11,
    /// Uploaded profile image is larger than the configured limit.
    TESSERA_IMAGE_TOO_LARGE = 12,
    /// No stored profile image has this content address.
    TESSERA_IMAGE_NOT_FOUND = 13,
    /// The token is not one of ours: malformed, forged, signed by a key id never issued, an
    /// unknown or revoked access token, or another user's valid token given to authenticate.
    TESSERA_INVALID_TOKEN = 20,
    /// The session token was genuine but its expiry has passed.
    TESSERA_TOKEN_EXPIRED = 21,
    /// The session token was genuine but is revoked: its user's sessions revoked, its key
    /// retired (or all keys, by `tessera_session_token_revoke_everyone`), or its user deleted.
    TESSERA_TOKEN_REVOKED = 22,
    /// A requested session expiry is in the past or beyond the configured maximum.
    TESSERA_INVALID_EXPIRY = 23,
    /// The user must present a token to log in (one has been issued to them).
    TESSERA_TOKEN_REQUIRED = 24,
    /// The user has no access token with this id.
    TESSERA_TOKEN_NOT_FOUND = 25,
    /// No signing key has this id.
    TESSERA_KEY_NOT_FOUND = 30,
    /// The active signing key cannot be retired; rotate first.
    TESSERA_KEY_ACTIVE = 31,
    /// A counter ran out (key ids, user handles, session revocations of one user).
    TESSERA_EXHAUSTED = 40,
    /// An operating-system I/O call failed.
    TESSERA_IO = 50,
    /// Stored data failed its checksum or does not parse.
    TESSERA_CORRUPT = 51,
    /// Another process holds the data directory.
    TESSERA_LOCKED = 52,
    /// The data directory was written by an unknown format version.
    TESSERA_UNSUPPORTED_FORMAT = 53,
    /// The engine was opened read-only (salvage) and cannot accept writes.
    TESSERA_READ_ONLY = 54,
    /// A cluster node cannot vouch for its state (not caught up with the shared database for
    /// longer than its `max_staleness`, or the database unreachable for a write). Retry later
    /// or on another node.
    TESSERA_UNAVAILABLE = 55,
    /// An internal invariant failed; this is a bug in Tessera.
    TESSERA_INTERNAL = 99,
    /// A pointer argument that must not be NULL was NULL (or a NULL data pointer came with a
    /// nonzero length). Nothing was changed.
    TESSERA_NULL_POINTER = 100,
    /// A text argument is not valid UTF-8. Nothing was changed.
    TESSERA_INVALID_UTF8 = 101,
    /// The caller's output buffer is too small; `*out_len` holds the length needed (see the
    /// header's "Output buffers" section). Nothing was changed.
    TESSERA_BUFFER_TOO_SMALL = 102,
    /// Tessera panicked inside the call; the panic was caught at the boundary. This is a bug in
    /// Tessera; the engine stays usable.
    TESSERA_PANIC = 103,
    /// An input is longer than the C ABI accepts (`TESSERA_MAX_INPUT_LEN`). Nothing was changed.
    TESSERA_INPUT_TOO_LARGE = 104,
    /// A JSON argument does not parse, or does not have the documented shape (not an object, an
    /// unknown or missing field, a value of the wrong JSON type). A well-formed record with a
    /// value that is not allowed (an unknown enum value) is `TESSERA_INVALID_ARGUMENT`.
    /// Nothing was changed.
    TESSERA_INVALID_JSON = 105,
}

use tessera_status::*;

impl tessera_status {
    /// Every status, in code order.
    pub const ALL: &'static [tessera_status] = &[
        TESSERA_OK,
        TESSERA_INVALID_ARGUMENT,
        TESSERA_INVALID_USER_ID,
        TESSERA_USER_ALREADY_EXISTS,
        TESSERA_USER_NOT_FOUND,
        TESSERA_USER_DEACTIVATED,
        TESSERA_FIELD_TOO_LONG,
        TESSERA_INVALID_FIELD,
        TESSERA_TOO_MANY_ITEMS,
        TESSERA_DISCOVERY_KEY_TAKEN,
        TESSERA_DEVICE_NOT_FOUND,
        TESSERA_INVALID_IMAGE,
        TESSERA_IMAGE_TOO_LARGE,
        TESSERA_IMAGE_NOT_FOUND,
        TESSERA_INVALID_TOKEN,
        TESSERA_TOKEN_EXPIRED,
        TESSERA_TOKEN_REVOKED,
        TESSERA_INVALID_EXPIRY,
        TESSERA_TOKEN_REQUIRED,
        TESSERA_TOKEN_NOT_FOUND,
        TESSERA_KEY_NOT_FOUND,
        TESSERA_KEY_ACTIVE,
        TESSERA_EXHAUSTED,
        TESSERA_IO,
        TESSERA_CORRUPT,
        TESSERA_LOCKED,
        TESSERA_UNSUPPORTED_FORMAT,
        TESSERA_READ_ONLY,
        TESSERA_UNAVAILABLE,
        TESSERA_INTERNAL,
        TESSERA_NULL_POINTER,
        TESSERA_INVALID_UTF8,
        TESSERA_BUFFER_TOO_SMALL,
        TESSERA_PANIC,
        TESSERA_INPUT_TOO_LARGE,
        TESSERA_INVALID_JSON,
    ];

    /// The status a Rust error kind crosses the ABI as. The one place kinds become C codes.
    pub const fn from_kind(kind: ErrorKind) -> tessera_status {
        match kind {
            ErrorKind::InvalidArgument => TESSERA_INVALID_ARGUMENT,
            ErrorKind::InvalidUserId => TESSERA_INVALID_USER_ID,
            ErrorKind::UserAlreadyExists => TESSERA_USER_ALREADY_EXISTS,
            ErrorKind::UserNotFound => TESSERA_USER_NOT_FOUND,
            ErrorKind::UserDeactivated => TESSERA_USER_DEACTIVATED,
            ErrorKind::FieldTooLong => TESSERA_FIELD_TOO_LONG,
            ErrorKind::InvalidField => TESSERA_INVALID_FIELD,
            ErrorKind::TooManyItems => TESSERA_TOO_MANY_ITEMS,
            ErrorKind::DiscoveryKeyTaken => TESSERA_DISCOVERY_KEY_TAKEN,
            ErrorKind::DeviceNotFound => TESSERA_DEVICE_NOT_FOUND,
            ErrorKind::InvalidImage => TESSERA_INVALID_IMAGE,
            ErrorKind::ImageTooLarge => TESSERA_IMAGE_TOO_LARGE,
            ErrorKind::ImageNotFound => TESSERA_IMAGE_NOT_FOUND,
            ErrorKind::InvalidToken => TESSERA_INVALID_TOKEN,
            ErrorKind::TokenExpired => TESSERA_TOKEN_EXPIRED,
            ErrorKind::TokenRevoked => TESSERA_TOKEN_REVOKED,
            ErrorKind::InvalidExpiry => TESSERA_INVALID_EXPIRY,
            ErrorKind::TokenRequired => TESSERA_TOKEN_REQUIRED,
            ErrorKind::TokenNotFound => TESSERA_TOKEN_NOT_FOUND,
            ErrorKind::KeyNotFound => TESSERA_KEY_NOT_FOUND,
            ErrorKind::KeyActive => TESSERA_KEY_ACTIVE,
            ErrorKind::Exhausted => TESSERA_EXHAUSTED,
            ErrorKind::Io => TESSERA_IO,
            ErrorKind::Corrupt => TESSERA_CORRUPT,
            ErrorKind::Locked => TESSERA_LOCKED,
            ErrorKind::UnsupportedFormat => TESSERA_UNSUPPORTED_FORMAT,
            ErrorKind::ReadOnly => TESSERA_READ_ONLY,
            ErrorKind::Unavailable => TESSERA_UNAVAILABLE,
            ErrorKind::Internal => TESSERA_INTERNAL,
        }
    }

    /// The status with this numeric value, if it is one this version knows.
    pub fn from_code(code: u32) -> Option<tessera_status> {
        tessera_status::ALL
            .iter()
            .copied()
            .find(|s| *s as u32 == code)
    }

    /// A short, static, NUL-terminated description.
    const fn as_cstr(self) -> &'static str {
        match self {
            TESSERA_OK => "ok\0",
            TESSERA_INVALID_ARGUMENT => "invalid argument\0",
            TESSERA_INVALID_USER_ID => "invalid user id\0",
            TESSERA_USER_ALREADY_EXISTS => "user already exists\0",
            TESSERA_USER_NOT_FOUND => "user not found\0",
            TESSERA_USER_DEACTIVATED => "user is deactivated\0",
            TESSERA_FIELD_TOO_LONG => "field too long\0",
            TESSERA_INVALID_FIELD => "invalid field\0",
            TESSERA_TOO_MANY_ITEMS => "too many items\0",
            TESSERA_DISCOVERY_KEY_TAKEN => "discovery key taken\0",
            TESSERA_DEVICE_NOT_FOUND => "device not found\0",
            TESSERA_INVALID_IMAGE => "image is not PNG or JPEG\0",
            TESSERA_IMAGE_TOO_LARGE => "image too large\0",
            TESSERA_IMAGE_NOT_FOUND => "image not found\0",
            TESSERA_INVALID_TOKEN => "invalid token\0",
            TESSERA_TOKEN_EXPIRED => "token expired\0",
            TESSERA_TOKEN_REVOKED => "token revoked\0",
            TESSERA_INVALID_EXPIRY => "invalid expiry\0",
            TESSERA_TOKEN_REQUIRED => "token required\0",
            TESSERA_TOKEN_NOT_FOUND => "token not found\0",
            TESSERA_KEY_NOT_FOUND => "signing key not found\0",
            TESSERA_KEY_ACTIVE => "signing key is active\0",
            TESSERA_EXHAUSTED => "counter exhausted\0",
            TESSERA_IO => "I/O error\0",
            TESSERA_CORRUPT => "stored data is corrupt\0",
            TESSERA_LOCKED => "data directory is locked by another process\0",
            TESSERA_UNSUPPORTED_FORMAT => "unsupported data format version\0",
            TESSERA_READ_ONLY => "engine is read-only\0",
            TESSERA_UNAVAILABLE => "cluster state unavailable\0",
            TESSERA_INTERNAL => "internal error\0",
            TESSERA_NULL_POINTER => "NULL pointer argument\0",
            TESSERA_INVALID_UTF8 => "text argument is not valid UTF-8\0",
            TESSERA_BUFFER_TOO_SMALL => "output buffer too small\0",
            TESSERA_PANIC => "panic inside Tessera (a bug)\0",
            TESSERA_INPUT_TOO_LARGE => "input too large\0",
            TESSERA_INVALID_JSON => "invalid JSON argument\0",
        }
    }

    /// The description without its NUL terminator.
    pub fn as_str(self) -> &'static str {
        let s = self.as_cstr();
        &s[..s.len() - 1]
    }
}

impl From<ErrorKind> for tessera_status {
    fn from(kind: ErrorKind) -> tessera_status {
        tessera_status::from_kind(kind)
    }
}

/// A short static description of a status code, as a NUL-terminated ASCII string.
///
/// Takes any value, including codes this version does not know (it returns
/// `"unknown status"` for those). Never returns NULL; the string lives for the whole program
/// and must not be freed. Does not touch the last error message. Safe to call from any thread.
#[no_mangle]
pub extern "C" fn tessera_status_str(code: u32) -> *const c_char {
    // Nothing in here can panic, but the boundary is kept so the rule has no exception.
    ffi_boundary!(value, c"panic".as_ptr(), {
        match tessera_status::from_code(code) {
            Some(s) => s.as_cstr().as_ptr().cast(),
            None => c"unknown status".as_ptr(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_kind_maps_to_the_equal_status_value() {
        for &kind in ErrorKind::ALL {
            let status = tessera_status::from_kind(kind);
            assert_eq!(status as u32, kind.code(), "{kind:?}");
            assert_eq!(tessera_status::from_code(kind.code()), Some(status));
        }
    }

    #[test]
    fn all_is_complete_unique_and_in_order() {
        let codes: Vec<u32> = tessera_status::ALL.iter().map(|s| *s as u32).collect();
        let mut sorted = codes.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(codes, sorted, "ALL must be strictly increasing");
        // ErrorKind codes plus OK plus the ABI's own.
        let abi_own = codes.iter().filter(|c| (100..=199).contains(*c)).count();
        assert_eq!(codes.len(), ErrorKind::ALL.len() + 1 + abi_own);
        for s in tessera_status::ALL {
            let c = *s as u32;
            assert!(c == 0 || c < 100 || (100..=199).contains(&c));
            if (1..100).contains(&c) {
                assert!(ErrorKind::from_code(c).is_some(), "{s:?} has no ErrorKind");
            }
        }
    }

    #[test]
    fn status_str_is_static_and_matches_kind_text() {
        for &kind in ErrorKind::ALL {
            assert_eq!(tessera_status::from_kind(kind).as_str(), kind.as_str());
        }
        for s in tessera_status::ALL {
            let p = tessera_status_str(*s as u32);
            // SAFETY: tessera_status_str returns a static NUL-terminated string.
            let text = unsafe { std::ffi::CStr::from_ptr(p) }.to_str().unwrap();
            assert_eq!(text, s.as_str());
            assert!(!text.is_empty());
        }
        // SAFETY: as above.
        let unknown = unsafe { std::ffi::CStr::from_ptr(tessera_status_str(77_777)) };
        assert_eq!(unknown.to_str().unwrap(), "unknown status");
    }
}
