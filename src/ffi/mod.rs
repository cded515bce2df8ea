//! The C ABI: every `extern "C"` function of `include/tessera.h`.
//!
//! This is one of the two modules allowed `unsafe` (the other is the store). The rules, from
//! `STYLE.md`, are enforced here in one place each:
//! - every body runs in `ffi_boundary!` ([`boundary`]): panics become `TESSERA_PANIC`, the
//!   thread-local last error is cleared first and set on failure;
//! - inputs are checked by the helpers in [`io`] before the engine is touched, so NULL, bad
//!   UTF-8 and oversized inputs change nothing;
//! - outputs go to caller buffers, out-pointers, fixed-size result structs (the hot paths) or
//!   library-owned objects with their own `_free` ([`tessera_string`], [`tessera_bytes`]).
//!
//! Names are C names (`tessera_status`, `tessera_engine`), so the Rust source and the header
//! read the same. One module per object, as in the crate: `user`, `device`, `profile_image`,
//! `access_token`, `session_token`, `key`, `event`.
#![allow(unsafe_code)]
#![allow(non_camel_case_types)]

// `io` first: its argument macros are used from `boundary` on.
#[macro_use]
pub(crate) mod io;
#[macro_use]
pub(crate) mod boundary;
mod json;

mod access_token;
mod device;
mod engine;
mod event;
mod key;
mod limits;
mod owned;
mod profile_image;
mod session_token;
mod status;
mod user;
mod version;

pub use access_token::*;
pub use boundary::tessera_last_error_message;
pub use device::*;
pub use engine::{parse_config_document, ConfigDocument};
pub use engine::{
    tessera_engine, tessera_engine_backup_to, tessera_engine_compact, tessera_engine_free,
    tessera_engine_open, tessera_engine_open_in_memory, tessera_engine_open_in_memory_with_config,
    tessera_engine_open_salvage, tessera_engine_store_stats, tessera_engine_user_count,
};
pub use event::*;
pub use io::TESSERA_MAX_INPUT_LEN;
pub use key::*;
pub use limits::*;
pub use owned::*;
pub use profile_image::*;
pub use session_token::*;
pub use status::{tessera_status, tessera_status_str};
pub use user::*;
pub use version::{
    tessera_abi_version, tessera_version, tessera_version_number, TESSERA_ABI_VERSION,
    VERSION_MAJOR, VERSION_MINOR, VERSION_NUMBER, VERSION_PATCH,
};
