//! Library and ABI versions.
//!
//! The `TESSERA_VERSION_*` macros in `tessera.h` are written from `CARGO_PKG_VERSION` when the
//! header is generated (see `tests/c_header.rs`); the functions here give the version of the
//! library actually loaded, so a program can compare the two.

use std::ffi::c_char;

/// The C ABI version. It changes only when a change would break a program compiled against an
/// earlier header (a function removed or its signature changed, a struct layout changed);
/// adding functions or status codes does not change it. 2: `tessera_access_token_issue` reports
/// every evicted token id (a caller buffer instead of one optional id);
/// `tessera_session_token_issue` takes every expiry literally (0 no longer means the default;
/// see `tessera_session_token_issue_default`) and `TESSERA_SESSION_DEFAULT_EXPIRY` is gone.
pub const TESSERA_ABI_VERSION: u32 = 2;

const fn parse_u32(s: &str) -> u32 {
    let b = s.as_bytes();
    let mut i = 0;
    let mut n = 0u32;
    while i < b.len() {
        n = n * 10 + (b[i] - b'0') as u32;
        i += 1;
    }
    n
}

/// Major version of the crate (`X` in `X.Y.Z`).
/// cbindgen:ignore
pub const VERSION_MAJOR: u32 = parse_u32(env!("CARGO_PKG_VERSION_MAJOR"));
/// Minor version of the crate.
/// cbindgen:ignore
pub const VERSION_MINOR: u32 = parse_u32(env!("CARGO_PKG_VERSION_MINOR"));
/// Patch version of the crate.
/// cbindgen:ignore
pub const VERSION_PATCH: u32 = parse_u32(env!("CARGO_PKG_VERSION_PATCH"));
/// `MAJOR * 1000000 + MINOR * 1000 + PATCH`, as `TESSERA_VERSION_NUMBER`.
/// cbindgen:ignore
pub const VERSION_NUMBER: u32 = VERSION_MAJOR * 1_000_000 + VERSION_MINOR * 1_000 + VERSION_PATCH;

const VERSION_CSTR: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");

/// The version of the loaded library as a static NUL-terminated string, e.g. `"0.1.0"`
/// (equal to `TESSERA_VERSION_STRING` of the header it was built with). Never NULL; do not free.
/// Safe to call from any thread.
#[no_mangle]
pub extern "C" fn tessera_version() -> *const c_char {
    ffi_boundary!(value, VERSION_CSTR.as_ptr().cast(), {
        VERSION_CSTR.as_ptr().cast()
    })
}

/// The version of the loaded library as `MAJOR * 1000000 + MINOR * 1000 + PATCH` (compare with
/// `TESSERA_VERSION_NUMBER`). Safe to call from any thread.
#[no_mangle]
pub extern "C" fn tessera_version_number() -> u32 {
    ffi_boundary!(value, VERSION_NUMBER, { VERSION_NUMBER })
}

/// The C ABI version of the loaded library (compare with `TESSERA_ABI_VERSION`: a program
/// should refuse to run when they differ). Safe to call from any thread.
#[no_mangle]
pub extern "C" fn tessera_abi_version() -> u32 {
    ffi_boundary!(value, TESSERA_ABI_VERSION, { TESSERA_ABI_VERSION })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_matches_cargo() {
        let text = format!("{VERSION_MAJOR}.{VERSION_MINOR}.{VERSION_PATCH}");
        assert!(env!("CARGO_PKG_VERSION").starts_with(&text));
        // SAFETY: static NUL-terminated string.
        let c = unsafe { std::ffi::CStr::from_ptr(tessera_version()) };
        assert_eq!(c.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
        assert_eq!(tessera_version_number(), VERSION_NUMBER);
        assert_eq!(tessera_abi_version(), TESSERA_ABI_VERSION);
    }
}
