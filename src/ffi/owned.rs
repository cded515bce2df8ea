//! Memory Tessera allocates for the caller: `tessera_string` (UTF-8 text, mostly JSON) and
//! `tessera_bytes` (binary data), each with its own `_free`, which zeroes the bytes first.

use std::ffi::c_char;
use std::ptr::NonNull;

use serde::Serialize;
use zeroize::Zeroizing;

use super::boundary::Failure;
use super::io::write_out;
use super::status::tessera_status::TESSERA_INTERNAL;

/// A UTF-8 string owned by Tessera (a JSON record, a list page, a batch of events).
///
/// Read it with `tessera_string_ptr` and `tessera_string_len`; free it with
/// `tessera_string_free`, never with libc `free`. Freeing overwrites the bytes with zeros first.
/// A `const tessera_string *` may be read from several threads at once.
pub struct tessera_string {
    /// The text followed by one NUL byte.
    bytes: Zeroizing<Vec<u8>>,
}

/// Binary data owned by Tessera (an uploaded profile image).
///
/// Read it with `tessera_bytes_ptr` and `tessera_bytes_len`; free it with `tessera_bytes_free`,
/// never with libc `free`. Freeing overwrites the bytes with zeros first. A
/// `const tessera_bytes *` may be read from several threads at once.
pub struct tessera_bytes {
    bytes: Zeroizing<Vec<u8>>,
}

/// Boxes `value` and writes the pointer to `*out`. The out-pointer was checked by the caller
/// (`non_null!`), whose failure names it as the header does.
///
/// # Safety
/// `out` must be valid for one pointer write.
unsafe fn give<T>(value: T, out: NonNull<*mut T>) {
    // SAFETY: the caller's contract.
    unsafe { write_out(out, Box::into_raw(Box::new(value))) }
}

impl tessera_string {
    /// Gives `text` (NUL-terminated) to the caller through `*out`.
    ///
    /// # Safety
    /// `out` must be valid for one pointer write.
    pub(crate) unsafe fn give(text: String, out: NonNull<*mut tessera_string>) {
        let mut bytes = Zeroizing::new(text.into_bytes());
        bytes.push(0);
        // SAFETY: forwarded contract.
        unsafe { give(tessera_string { bytes }, out) }
    }

    /// Gives `value` serialised as compact JSON to the caller through `*out`.
    ///
    /// # Safety
    /// `out` must be valid for one pointer write.
    pub(crate) unsafe fn give_json<T: Serialize + ?Sized>(
        value: &T,
        out: NonNull<*mut tessera_string>,
    ) -> Result<(), Failure> {
        let text = serde_json::to_string(value)
            .map_err(|e| Failure::new(TESSERA_INTERNAL, format!("serialising JSON: {e}")))?;
        // SAFETY: forwarded contract.
        unsafe { tessera_string::give(text, out) };
        Ok(())
    }

    /// Like [`give_json`](Self::give_json), but a NULL `out` means the caller does not want the
    /// value, and nothing is serialised.
    ///
    /// # Safety
    /// `out`, unless NULL, must be valid for one pointer write.
    pub(crate) unsafe fn give_json_opt<T: Serialize + ?Sized>(
        value: &T,
        out: *mut *mut tessera_string,
    ) -> Result<(), Failure> {
        match NonNull::new(out) {
            // SAFETY: forwarded contract.
            Some(out) => unsafe { tessera_string::give_json(value, out) },
            None => Ok(()),
        }
    }
}

impl tessera_bytes {
    /// Gives `bytes` to the caller through `*out`.
    ///
    /// # Safety
    /// `out` must be valid for one pointer write.
    pub(crate) unsafe fn give(bytes: Vec<u8>, out: NonNull<*mut tessera_bytes>) {
        let bytes = Zeroizing::new(bytes);
        // SAFETY: forwarded contract.
        unsafe { give(tessera_bytes { bytes }, out) }
    }
}

/// The text of `s`, NUL-terminated UTF-8. Valid until `tessera_string_free(s)`.
///
/// Returns NULL when `s` is NULL. The length is `tessera_string_len(s)`; JSON text never holds
/// a NUL byte before its end (NUL inside strings is escaped), so it can be used as a C string.
///
/// # Safety
/// `s` must be NULL or a live `tessera_string` from Tessera.
#[no_mangle]
pub unsafe extern "C" fn tessera_string_ptr(s: *const tessera_string) -> *const c_char {
    ffi_boundary!(value, std::ptr::null(), {
        // SAFETY: the caller's contract.
        match unsafe { s.as_ref() } {
            Some(s) => s.bytes.as_ptr().cast(),
            None => std::ptr::null(),
        }
    })
}

/// The length of `s` in bytes, not counting the terminating NUL. 0 when `s` is NULL.
///
/// # Safety
/// `s` must be NULL or a live `tessera_string` from Tessera.
#[no_mangle]
pub unsafe extern "C" fn tessera_string_len(s: *const tessera_string) -> usize {
    ffi_boundary!(value, 0, {
        // SAFETY: the caller's contract.
        unsafe { s.as_ref() }.map_or(0, |s| s.bytes.len() - 1)
    })
}

/// Overwrites the bytes of `s` with zeros and frees it. `tessera_string_free(NULL)` does
/// nothing. `s` must not be used afterwards.
///
/// # Safety
/// `s` must be NULL or a `tessera_string` from Tessera not yet freed, and no other thread may
/// be using it.
#[no_mangle]
pub unsafe extern "C" fn tessera_string_free(s: *mut tessera_string) {
    ffi_boundary!(value, (), {
        if !s.is_null() {
            // SAFETY: made by Box::into_raw in `give`; the caller gives up ownership.
            drop(unsafe { Box::from_raw(s) });
        }
    })
}

/// The bytes of `b`. Valid until `tessera_bytes_free(b)`. Returns NULL when `b` is NULL; the
/// pointer of an empty object is not NULL but must not be read.
///
/// # Safety
/// `b` must be NULL or a live `tessera_bytes` from Tessera.
#[no_mangle]
pub unsafe extern "C" fn tessera_bytes_ptr(b: *const tessera_bytes) -> *const u8 {
    ffi_boundary!(value, std::ptr::null(), {
        // SAFETY: the caller's contract.
        match unsafe { b.as_ref() } {
            Some(b) => b.bytes.as_ptr(),
            None => std::ptr::null(),
        }
    })
}

/// The length of `b` in bytes. 0 when `b` is NULL.
///
/// # Safety
/// `b` must be NULL or a live `tessera_bytes` from Tessera.
#[no_mangle]
pub unsafe extern "C" fn tessera_bytes_len(b: *const tessera_bytes) -> usize {
    ffi_boundary!(value, 0, {
        // SAFETY: the caller's contract.
        unsafe { b.as_ref() }.map_or(0, |b| b.bytes.len())
    })
}

/// Overwrites the bytes of `b` with zeros and frees it. `tessera_bytes_free(NULL)` does
/// nothing. `b` must not be used afterwards.
///
/// # Safety
/// `b` must be NULL or a `tessera_bytes` from Tessera not yet freed, and no other thread may be
/// using it.
#[no_mangle]
pub unsafe extern "C" fn tessera_bytes_free(b: *mut tessera_bytes) {
    ffi_boundary!(value, (), {
        if !b.is_null() {
            // SAFETY: made by Box::into_raw in `give`; the caller gives up ownership.
            drop(unsafe { Box::from_raw(b) });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_give_read_free() {
        let mut s: *mut tessera_string = std::ptr::null_mut();
        // SAFETY: `s` is a valid out-pointer; the string is freed once.
        unsafe {
            tessera_string::give("{\"id\":\"alice\"}".to_owned(), NonNull::from(&mut s));
            assert_eq!(tessera_string_len(s), 14);
            let text = std::ffi::CStr::from_ptr(tessera_string_ptr(s));
            assert_eq!(text.to_str().unwrap(), "{\"id\":\"alice\"}");
            tessera_string_free(s);
            tessera_string_free(std::ptr::null_mut());
            assert_eq!(tessera_string_len(std::ptr::null()), 0);
            assert!(tessera_string_ptr(std::ptr::null()).is_null());
            tessera_string::give_json_opt(&[1, 2], std::ptr::null_mut()).unwrap();
        }
    }

    #[test]
    fn bytes_give_read_free() {
        let mut b: *mut tessera_bytes = std::ptr::null_mut();
        // SAFETY: `b` is a valid out-pointer; freed once.
        unsafe {
            tessera_bytes::give(vec![0, 1, 2], NonNull::from(&mut b));
            assert_eq!(tessera_bytes_len(b), 3);
            assert_eq!(
                std::slice::from_raw_parts(tessera_bytes_ptr(b), 3),
                &[0, 1, 2]
            );
            tessera_bytes_free(b);
            tessera_bytes_free(std::ptr::null_mut());
            assert_eq!(tessera_bytes_len(std::ptr::null()), 0);
        }
    }
}
