//! Tessera: an embedded identity and token engine for chat servers.
//!
//! It keeps user records and runs the whole credential lifecycle in-process: permanent opaque
//! access tokens (stored only as SHA-256 digests, at most N per user, oldest evicted) and
//! stateless HS256 session tokens of 119..=168 characters (never stored; verified by
//! signature, expiry and a per-user revocation epoch). Start with [`Engine`].
//!
//! ```
//! use tessera::{Engine, ErrorKind, NewUser};
//! let engine = Engine::in_memory()?;
//! engine.create_user(NewUser::new("bob", "Bob"))?;
//! let token = engine.issue_session_token("bob", None)?;
//! engine.revoke_sessions("bob")?;
//! let err = engine.verify_session_token(token.as_str()).unwrap_err();
//! assert_eq!(err.kind(), ErrorKind::TokenRevoked);
//! # Ok::<(), tessera::Error>(())
//! ```
#![deny(missing_docs)]
#![deny(unsafe_code)]

mod access_token;
mod clock;
mod config;
mod constant_time;
mod device;
mod engine;
mod error;
mod event;
#[cfg(feature = "fault-injection")]
#[doc(hidden)]
pub mod fault;
mod key_ring;
mod mutation;
mod persistence;
mod profile_image;
mod session_token;
mod store;
mod user;
mod user_table;

pub mod ffi;

/// The internal constant-time comparison, for the timing harness (examples/dudect.rs) only:
/// it measures this very function, not a copy. Not part of the API.
#[cfg(feature = "timing-harness")]
#[doc(hidden)]
pub fn __constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    constant_time::eq(a, b)
}

pub use access_token::{
    AccessToken, AccessTokenInfo, IssuedAccessToken, VerifiedAccessToken, ACCESS_TOKEN_LEN,
    ACCESS_TOKEN_PREFIX,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{
    Config, UserIdCase, UserIdPolicy, ACCESS_TOKENS_PER_USER_DEFAULT, ACCESS_TOKENS_PER_USER_LIMIT,
    DAY_MS, USER_ID_MAX_CHARS_LIMIT,
};
pub use device::{Device, DeviceAdded, DeviceType, NewDevice, PushMode};
pub use engine::{
    utc_rfc3339, AuthMethod, Authenticated, Engine, EngineBuilder, TokenDiagnosis, TokenFinding,
    TokenFormat, Upserted, UserPage, UserQuery,
};
pub use error::{Error, ErrorKind, Result};
pub use event::{Event, EventKind};
pub use ffi::{parse_config_document, ConfigDocument};
pub use key_ring::{KeyId, KeyInfo, KeySecret};
#[cfg(feature = "postgres")]
pub use persistence::postgres::ClusterOptions;
pub use persistence::{BackupProgress, BackupStats};
pub use profile_image::{ImageFormat, ProfileImage};
pub use session_token::{
    SessionToken, VerifiedSession, MAX_EPOCH as SESSION_EPOCH_MAX, SESSION_TOKEN_MAX_LEN,
    SESSION_TOKEN_MIN_LEN,
};
pub use store::{StoreStats, SyncMode};
pub use user::{NewUser, User, UserPatch, PRIVATE_METADATA_KEY};

/// The README's Rust examples run as doc tests, so the front page cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
