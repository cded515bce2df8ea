//! The C ABI: every `extern "C"` function of `include/tessera.h`.
//!
//! This is one of the two modules allowed `unsafe` (the other is the store). The rules, from
//! `STYLE.md`, are enforced here in one place each:
//! - every body runs in [`ffi_boundary!`](boundary) (panics become `TESSERA_PANIC`, the
//!   thread-local last error is cleared first and set on failure);
//! - inputs are checked by the helpers in [`io`] before the engine is touched, so NULL, bad
//!   UTF-8 and oversized inputs change nothing;
//! - outputs go to caller buffers ([`io::text_out`]), out-pointers ([`io::write_out`]) or
//!   library-owned objects with their own `_free` ([`tessera_string`]).
//!
//! Names are C names (`tessera_status`, `tessera_string`), so the Rust source and the header
//! read the same.
#![allow(unsafe_code)]
#![allow(non_camel_case_types)]

#[macro_use]
pub(crate) mod boundary;
pub(crate) mod io;
mod status;
mod string;
mod version;

pub use boundary::tessera_last_error_message;
pub use io::TESSERA_MAX_INPUT_LEN;
pub use status::{tessera_status, tessera_status_str};
pub use string::{tessera_string, tessera_string_free, tessera_string_len, tessera_string_ptr};
pub use version::{
    tessera_abi_version, tessera_version, tessera_version_number, TESSERA_ABI_VERSION,
    VERSION_MAJOR, VERSION_MINOR, VERSION_NUMBER, VERSION_PATCH,
};
