//! Crossing the boundary: borrowed `(pointer, length)` inputs and caller-buffer outputs.
//!
//! Every check happens before any engine call, so a NULL pointer, bad UTF-8 or an oversized
//! input changes nothing.

use std::ffi::c_char;
use std::ptr::NonNull;

use serde::de::DeserializeOwned;

use super::boundary::Failure;
use super::status::tessera_status::{self, *};

/// Largest input, in bytes, that any `(pointer, length)` argument may have, except the bytes
/// of a profile image upload (those are bounded by the engine's configured image limit).
/// Longer inputs fail with `TESSERA_INPUT_TOO_LARGE` before anything else is looked at.
pub const TESSERA_MAX_INPUT_LEN: usize = 16 * 1024 * 1024;

/// The bytes of a `(ptr, len)` input of at most `max` bytes.
///
/// NULL with `len == 0` is the empty input; NULL with `len > 0` is `TESSERA_NULL_POINTER`.
///
/// # Safety
/// Unless NULL, `ptr` must be valid for reads of `len` bytes for `'a`.
pub(crate) unsafe fn bytes_in_max<'a>(
    ptr: *const u8,
    len: usize,
    what: &str,
    max: usize,
) -> Result<&'a [u8], Failure> {
    // `slice::from_raw_parts` needs len <= isize::MAX, whatever `max` says.
    if len > max || len > isize::MAX as usize {
        return Err(Failure::new(
            TESSERA_INPUT_TOO_LARGE,
            format!("{what} is {len} bytes; the limit is {max}"),
        ));
    }
    if ptr.is_null() {
        if len == 0 {
            return Ok(&[]);
        }
        return Err(Failure::new(
            TESSERA_NULL_POINTER,
            format!("{what} is NULL with length {len}"),
        ));
    }
    // SAFETY: non-NULL, the caller's contract gives `len` readable bytes, and len <= isize::MAX.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// The bytes of a `(ptr, len)` input of at most [`TESSERA_MAX_INPUT_LEN`] bytes.
///
/// # Safety
/// As [`bytes_in_max`].
pub(crate) unsafe fn bytes_in<'a>(
    ptr: *const u8,
    len: usize,
    what: &str,
) -> Result<&'a [u8], Failure> {
    // SAFETY: forwarded contract.
    unsafe { bytes_in_max(ptr, len, what, TESSERA_MAX_INPUT_LEN) }
}

/// A UTF-8 text input given as `(const char *ptr, size_t len)`; not NUL-terminated.
///
/// # Safety
/// As [`bytes_in_max`].
pub(crate) unsafe fn str_in<'a>(
    ptr: *const c_char,
    len: usize,
    what: &str,
) -> Result<&'a str, Failure> {
    // SAFETY: forwarded contract.
    let bytes = unsafe { bytes_in(ptr.cast(), len, what) }?;
    // Tokens and most ids are ASCII; checking that is a few word-wide compares, while full
    // UTF-8 validation was the largest cost the ABI added to a session verify.
    if bytes.is_ascii() {
        // SAFETY: ASCII bytes are valid UTF-8.
        return Ok(unsafe { std::str::from_utf8_unchecked(bytes) });
    }
    std::str::from_utf8(bytes).map_err(|e| {
        Failure::new(
            TESSERA_INVALID_UTF8,
            format!("{what} is not valid UTF-8 (at byte {})", e.valid_up_to()),
        )
    })
}

/// An optional UTF-8 text input: NULL (with length 0) means "absent", anything else is
/// checked like [`str_in`].
///
/// # Safety
/// As [`bytes_in_max`].
pub(crate) unsafe fn opt_str_in<'a>(
    ptr: *const c_char,
    len: usize,
    what: &str,
) -> Result<Option<&'a str>, Failure> {
    if ptr.is_null() && len == 0 {
        return Ok(None);
    }
    // SAFETY: forwarded contract.
    unsafe { str_in(ptr, len, what) }.map(Some)
}

/// A JSON input given as UTF-8 `(ptr, len)`, parsed into `T`: `TESSERA_INVALID_JSON` when
/// malformed, `TESSERA_INVALID_ARGUMENT` when well-formed with a value not allowed
/// ([`super::json`]).
///
/// # Safety
/// As [`bytes_in_max`].
pub(crate) unsafe fn json_in<T: DeserializeOwned>(
    ptr: *const c_char,
    len: usize,
    what: &str,
) -> Result<T, Failure> {
    // SAFETY: forwarded contract.
    let text = unsafe { str_in(ptr, len, what) }?;
    super::json::from_str(text, what)
}

/// A required pointer argument (a handle or an out-parameter).
pub(crate) fn non_null<T>(ptr: *const T, what: &str) -> Result<NonNull<T>, Failure> {
    NonNull::new(ptr.cast_mut()).ok_or_else(|| null(what))
}

/// The failure for a NULL `what`.
pub(crate) fn null(what: &str) -> Failure {
    Failure::new(TESSERA_NULL_POINTER, format!("{what} is NULL"))
}

/// Checks a text output buffer before any work is done: `out_len` must not be NULL, `buf` may
/// be NULL only with `cap == 0`, and `cap` must hold `need_len` bytes plus the NUL. On
/// `TESSERA_BUFFER_TOO_SMALL`, `*out_len` is set to `need_len`.
///
/// Used before operations that change state (issuing a token), so a small buffer cannot lose
/// an issued secret.
///
/// # Safety
/// `out_len`, unless NULL, must be valid for one write.
pub(crate) unsafe fn text_capacity(
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
    need_len: usize,
) -> Result<(), Failure> {
    if out_len.is_null() {
        return Err(null("out_len"));
    }
    if buf.is_null() && cap > 0 {
        return Err(Failure::new(
            TESSERA_NULL_POINTER,
            format!("buf is NULL with capacity {cap}"),
        ));
    }
    if cap <= need_len {
        // SAFETY: checked non-NULL; the caller's contract makes it writable.
        unsafe { out_len.write(need_len) };
        return Err(Failure::new(
            TESSERA_BUFFER_TOO_SMALL,
            format!(
                "output needs {} bytes (text plus NUL); the buffer has {cap}",
                need_len + 1
            ),
        ));
    }
    Ok(())
}

/// Writes `text` into the caller's buffer, NUL-terminated, and its length (without the NUL)
/// into `*out_len`. See the header's "Output buffers" section for the contract.
///
/// # Safety
/// `buf`, unless NULL, must be valid for writes of `cap` bytes; `out_len`, unless NULL, for one
/// write.
pub(crate) unsafe fn text_out(
    text: &str,
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
) -> Result<(), Failure> {
    // SAFETY: forwarded contract.
    unsafe { text_capacity(buf, cap, out_len, text.len()) }?;
    // SAFETY: buf is non-NULL (cap > len >= 0) and valid for cap >= len + 1 bytes; the source
    // is a distinct Rust allocation, so they do not overlap.
    unsafe {
        std::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), text.len());
        buf.add(text.len()).write(0);
        out_len.write(text.len());
    }
    Ok(())
}

/// Writes `value` through a required out-pointer.
///
/// # Safety
/// `out`, unless NULL, must be valid for one write of `T`.
pub(crate) unsafe fn write_out<T>(out: *mut T, value: T, what: &str) -> Result<(), Failure> {
    let out = non_null(out, what)?;
    // SAFETY: non-NULL and writable by the caller's contract.
    unsafe { out.as_ptr().write(value) };
    Ok(())
}

/// Writes `text` NUL-terminated into the fixed array at `dst` (of `N` bytes) without creating a
/// reference to it, and returns its length. Used for the `user_id` fields of the typed result
/// structs, whose size holds the longest user id any configuration allows.
///
/// # Safety
/// `dst` must be valid for writes of `N` bytes.
pub(crate) unsafe fn fill_array<const N: usize>(
    dst: *mut [c_char; N],
    text: &str,
) -> Result<usize, Failure> {
    // Ids are bounded by the configuration's limit, which the array size covers.
    let len = text.len();
    if len >= N {
        return fail(
            TESSERA_INTERNAL,
            format!("text of {len} bytes exceeds a {N}-byte field"),
        );
    }
    // SAFETY: `len + 1 <= N` bytes into a writable array; distinct allocations.
    unsafe {
        let dst = dst.cast::<u8>();
        std::ptr::copy_nonoverlapping(text.as_ptr(), dst, len);
        dst.add(len).write(0);
    }
    Ok(len)
}

/// A `tessera_status` failure with a message, for use with `?`.
pub(crate) fn fail<T>(status: tessera_status, message: impl Into<String>) -> Result<T, Failure> {
    Err(Failure::new(status, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_with_zero_length_is_empty_and_with_length_is_an_error() {
        // SAFETY: NULL pointers are allowed by the helpers' contract.
        unsafe {
            assert_eq!(bytes_in(std::ptr::null(), 0, "x").unwrap(), b"");
            assert_eq!(str_in(std::ptr::null(), 0, "x").unwrap(), "");
            assert_eq!(opt_str_in(std::ptr::null(), 0, "x").unwrap(), None);
            let f = bytes_in(std::ptr::null(), 3, "user_id").unwrap_err();
            assert_eq!(f.status, TESSERA_NULL_POINTER);
            assert!(f.message.contains("user_id"));
        }
    }

    #[test]
    fn invalid_utf8_and_oversize_are_rejected() {
        let bad = [b'a', 0xff, b'b'];
        // SAFETY: `bad` is valid for 3 bytes.
        let f = unsafe { str_in(bad.as_ptr().cast(), 3, "nickname") }.unwrap_err();
        assert_eq!(f.status, TESSERA_INVALID_UTF8);
        assert!(f.message.contains("byte 1"), "{}", f.message);
        // The size check comes first and never reads the memory.
        let dangling = NonNull::<u8>::dangling().as_ptr();
        // SAFETY: rejected on length before any read.
        let f = unsafe { bytes_in(dangling, TESSERA_MAX_INPUT_LEN + 1, "json") }.unwrap_err();
        assert_eq!(f.status, TESSERA_INPUT_TOO_LARGE);
        // SAFETY: as above.
        let f = unsafe { bytes_in_max(dangling, usize::MAX, "image", usize::MAX) }.unwrap_err();
        assert_eq!(f.status, TESSERA_INPUT_TOO_LARGE);
        // The limit itself passes.
        let big = vec![b'a'; TESSERA_MAX_INPUT_LEN];
        // SAFETY: `big` is valid for its length.
        assert!(unsafe { str_in(big.as_ptr().cast(), big.len(), "x") }.is_ok());
    }

    #[test]
    fn json_errors_are_invalid_json() {
        let text = b"{\"a\":";
        // SAFETY: valid for its length.
        let f =
            unsafe { json_in::<serde_json::Value>(text.as_ptr().cast(), 5, "user") }.unwrap_err();
        assert_eq!(f.status, TESSERA_INVALID_JSON);
    }

    #[test]
    fn text_out_needs_room_for_the_nul() {
        let mut len = 99usize;
        let mut buf = [1 as c_char; 4];
        // SAFETY: buffers valid for their sizes.
        unsafe {
            let f = text_out("abcd", buf.as_mut_ptr(), 4, &mut len).unwrap_err();
            assert_eq!(f.status, TESSERA_BUFFER_TOO_SMALL);
            assert_eq!(len, 4);
            assert_eq!(buf, [1; 4]);
            text_out("abc", buf.as_mut_ptr(), 4, &mut len).unwrap();
            assert_eq!(len, 3);
            assert_eq!(buf, [b'a' as c_char, b'b' as c_char, b'c' as c_char, 0]);
            let f = text_out("abc", std::ptr::null_mut(), 4, &mut len).unwrap_err();
            assert_eq!(f.status, TESSERA_NULL_POINTER);
            let f = text_out("abc", buf.as_mut_ptr(), 4, std::ptr::null_mut()).unwrap_err();
            assert_eq!(f.status, TESSERA_NULL_POINTER);
        }
    }
}
