//! The limits a C caller sizes buffers and checks inputs by, as `TESSERA_*` constants.
//!
//! Each is the crate's own constant, not a copy of its number, so the header follows when a
//! limit changes. cbindgen cannot evaluate a path to another constant (it would write
//! `#define TESSERA_X SESSION_TOKEN_MAX_LEN`), so these constants are declared through
//! `limits!`, which cbindgen does not expand, and `tests/c_header.rs` writes their `#define`s
//! from [`LIMITS`] instead: the header's staleness test then fails whenever a value changes
//! without the header being regenerated.

use crate::config::{
    ACCESS_TOKENS_PER_USER_DEFAULT, ACCESS_TOKENS_PER_USER_LIMIT, USER_ID_MAX_CHARS_LIMIT,
};
use crate::session_token::{MAX_EPOCH, SESSION_TOKEN_MAX_LEN, SESSION_TOKEN_MIN_LEN};

/// Declares each limit as a Rust constant and lists them all in `LIMITS` with their docs.
macro_rules! limits {
    ($($(#[doc = $doc:literal])+ pub const $name:ident: $ty:ty = $value:expr;)+) => {
        $($(#[doc = $doc])+ pub const $name: $ty = $value;)+

        /// Every `TESSERA_*` limit as `(name, value, doc lines)`, for the header generator
        /// (`tests/c_header.rs`) and the tests that compare the bindings with the header.
        #[doc(hidden)]
        pub const LIMITS: &[(&str, u64, &[&str])] = &[$((
            stringify!($name),
            // Every limit is non-negative and far below 2^64; `as` cannot lose anything.
            $value as u64,
            &[$($doc),+],
        )),+];
    };
}

limits! {
    /// Longest user id any configuration allows, in characters (Unicode scalar values): the
    /// largest accepted `user_id_max_chars`.
    pub const TESSERA_USER_ID_MAX_CHARS: usize = USER_ID_MAX_CHARS_LIMIT;
    /// Default of `access_tokens_per_user`, the most valid access tokens per user.
    pub const TESSERA_ACCESS_TOKENS_PER_USER_DEFAULT: usize = ACCESS_TOKENS_PER_USER_DEFAULT;
    /// Largest accepted `access_tokens_per_user`, hence the most access tokens one issue can
    /// evict: the capacity `tessera_access_token_issue` requires of `evicted_buf`.
    pub const TESSERA_ACCESS_TOKENS_PER_USER_MAX: usize = ACCESS_TOKENS_PER_USER_LIMIT;
    /// Largest session epoch: a user's sessions can be revoked this many times and new
    /// session tokens still be issued; the revocation after that seals the user (every
    /// session token fails and issuing one is `TESSERA_EXHAUSTED`).
    pub const TESSERA_SESSION_EPOCH_MAX: u32 = MAX_EPOCH;
    /// Shortest possible session token, in bytes.
    pub const TESSERA_SESSION_TOKEN_MIN_LEN: usize = SESSION_TOKEN_MIN_LEN;
    /// Longest possible session token, in bytes. A buffer for any session token needs
    /// `TESSERA_SESSION_TOKEN_MAX_LEN + 1` bytes.
    pub const TESSERA_SESSION_TOKEN_MAX_LEN: usize = SESSION_TOKEN_MAX_LEN;
}
