//! Crossing the boundary: borrowed `(pointer, length)` inputs and caller-buffer outputs.
//!
//! Every check happens before any engine call, so a NULL pointer, bad UTF-8 or an oversized
//! input changes nothing.
//!
//! Failure messages name the argument by its name in `tessera.h`. The `extern "C"` functions
//! never spell those names: they call the macros below with their own parameters, and the
//! macros take the name from the parameter (`str_in!(token, token_len)` reports `token`), which
//! cbindgen copies into the header. `tests/ffi_messages.rs` checks every such name against the
//! header.

/// `str_in!(ptr, len)`: [`str_in`] naming the input after the parameter `ptr`.
macro_rules! str_in {
    ($ptr:ident, $len:ident) => {
        $crate::ffi::io::str_in($ptr, $len, stringify!($ptr))
    };
}

/// `opt_str_in!(ptr, len)`: [`opt_str_in`] naming the input after the parameter `ptr`.
macro_rules! opt_str_in {
    ($ptr:ident, $len:ident) => {
        $crate::ffi::io::opt_str_in($ptr, $len, stringify!($ptr))
    };
}

/// `json_in!(ptr, len)`: [`json_in`] naming the input after the parameter `ptr`.
macro_rules! json_in {
    ($ptr:ident, $len:ident) => {
        $crate::ffi::io::json_in($ptr, $len, stringify!($ptr))
    };
}

/// `bytes_in_max!(ptr, len, max)`: [`bytes_in_max`] naming the input after the parameter `ptr`.
macro_rules! bytes_in_max {
    ($ptr:ident, $len:ident, $max:expr) => {
        $crate::ffi::io::bytes_in_max($ptr, $len, stringify!($ptr), $max)
    };
}

/// `non_null!(ptr)`: [`non_null`] naming the pointer after the parameter `ptr`.
macro_rules! non_null {
    ($ptr:ident) => {
        $crate::ffi::io::non_null($ptr, stringify!($ptr))
    };
}

/// `text_out!(buf, cap, out_len)`: the [`TextOut`] of an output triple, its pointers named after
/// the parameters `buf` and `out_len`.
macro_rules! text_out {
    ($buf:ident, $cap:ident, $out_len:ident) => {
        $crate::ffi::io::TextOut {
            buf: $buf,
            cap: $cap,
            out_len: $out_len,
            buf_name: stringify!($buf),
            out_len_name: stringify!($out_len),
        }
    };
}

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

/// A required pointer argument (a handle or an out-parameter), checked non-NULL. The typed
/// result lets helpers that write through an out-pointer demand the check in their signature.
pub(crate) fn non_null<T>(ptr: *const T, what: &str) -> Result<NonNull<T>, Failure> {
    NonNull::new(ptr.cast_mut()).ok_or_else(|| null(what))
}

/// The failure for a NULL `what`.
pub(crate) fn null(what: &str) -> Failure {
    Failure::new(TESSERA_NULL_POINTER, format!("{what} is NULL"))
}

/// The failure for a buffer `what` that is NULL although its capacity `cap` is not 0.
pub(crate) fn null_buffer(what: &str, cap: usize) -> Failure {
    Failure::new(
        TESSERA_NULL_POINTER,
        format!("{what} is NULL with capacity {cap}"),
    )
}

/// A text output triple `(char *buf, size_t cap, size_t *out_len)` and the header's names of
/// its two pointers, for failure messages. Made with `text_out!(buf, cap, out_len)`. See the
/// header's "Output buffers" section for the contract.
pub(crate) struct TextOut {
    pub(crate) buf: *mut c_char,
    pub(crate) cap: usize,
    pub(crate) out_len: *mut usize,
    pub(crate) buf_name: &'static str,
    pub(crate) out_len_name: &'static str,
}

impl TextOut {
    /// Checks the buffer before any work is done: `out_len` must not be NULL, `buf` may be NULL
    /// only with `cap == 0`, and `cap` must hold `need_len` bytes plus the NUL. On
    /// `TESSERA_BUFFER_TOO_SMALL`, `*out_len` is set to `need_len`.
    ///
    /// Used before operations that change state (issuing a token), so a small buffer cannot
    /// lose an issued secret.
    ///
    /// # Safety
    /// `out_len`, unless NULL, must be valid for one write.
    pub(crate) unsafe fn reserve(&self, need_len: usize) -> Result<(), Failure> {
        let TextOut { buf, cap, .. } = *self;
        if self.out_len.is_null() {
            return Err(null(self.out_len_name));
        }
        if buf.is_null() && cap > 0 {
            return Err(null_buffer(self.buf_name, cap));
        }
        if cap <= need_len {
            // SAFETY: checked non-NULL; the caller's contract makes it writable.
            unsafe { self.out_len.write(need_len) };
            return Err(Failure::new(
                TESSERA_BUFFER_TOO_SMALL,
                format!(
                    "{} needs {} bytes (text plus NUL); it has {cap}",
                    self.buf_name,
                    need_len + 1
                ),
            ));
        }
        Ok(())
    }

    /// Writes `text` into the buffer, NUL-terminated, and its length (without the NUL) into
    /// `*out_len`.
    ///
    /// # Safety
    /// `buf`, unless NULL, must be valid for writes of `cap` bytes; `out_len`, unless NULL, for
    /// one write.
    pub(crate) unsafe fn write(&self, text: &str) -> Result<(), Failure> {
        // SAFETY: forwarded contract.
        unsafe { self.reserve(text.len()) }?;
        // SAFETY: buf is non-NULL (cap > len >= 0) and valid for cap >= len + 1 bytes; the
        // source is a distinct Rust allocation, so they do not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(text.as_ptr(), self.buf.cast::<u8>(), text.len());
            self.buf.add(text.len()).write(0);
            self.out_len.write(text.len());
        }
        Ok(())
    }
}

/// Writes `value` through an out-pointer checked by [`non_null`].
///
/// # Safety
/// `out` must be valid for one write of `T`.
pub(crate) unsafe fn write_out<T>(out: NonNull<T>, value: T) {
    // SAFETY: the caller's contract.
    unsafe { out.as_ptr().write(value) };
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
    fn text_out_needs_room_for_the_nul_and_names_its_parameters() {
        let mut len = 99usize;
        let mut buf = [1 as c_char; 4];
        let (token_buf, token_cap, out_token_len) = (buf.as_mut_ptr(), 4, &mut len as *mut usize);
        let out = text_out!(token_buf, token_cap, out_token_len);
        // SAFETY: buffers valid for their sizes.
        unsafe {
            let f = out.write("abcd").unwrap_err();
            assert_eq!(f.status, TESSERA_BUFFER_TOO_SMALL);
            assert!(
                f.message.starts_with("token_buf needs 5 bytes"),
                "{}",
                f.message
            );
            assert_eq!(*out_token_len, 4);
            out.write("abc").unwrap();
            assert_eq!(*out_token_len, 3);
            assert_eq!(buf, [b'a' as c_char, b'b' as c_char, b'c' as c_char, 0]);
            let token_buf = std::ptr::null_mut::<c_char>();
            let f = text_out!(token_buf, token_cap, out_token_len)
                .write("abc")
                .unwrap_err();
            assert_eq!(f.status, TESSERA_NULL_POINTER);
            assert_eq!(f.message, "token_buf is NULL with capacity 4");
            let (token_buf, out_token_len) = (buf.as_mut_ptr(), std::ptr::null_mut::<usize>());
            let f = text_out!(token_buf, token_cap, out_token_len)
                .write("abc")
                .unwrap_err();
            assert_eq!(f.status, TESSERA_NULL_POINTER);
            assert_eq!(f.message, "out_token_len is NULL");
        }
    }
}
