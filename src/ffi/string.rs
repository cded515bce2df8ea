//! `tessera_string`: text that Tessera allocates for the caller, freed with
//! `tessera_string_free`.

use std::ffi::c_char;

use zeroize::Zeroizing;

use super::boundary::Failure;
use super::io::write_out;

/// A UTF-8 string owned by Tessera (a JSON record, a list page, a batch of events).
///
/// Read it with `tessera_string_ptr` and `tessera_string_len`; free it with
/// `tessera_string_free`, never with libc `free`. Freeing overwrites the bytes with zeros first,
/// since some of these strings hold secrets. A `const tessera_string *` may be read from several
/// threads at once.
pub struct tessera_string {
    /// The text followed by one NUL byte.
    bytes: Zeroizing<Vec<u8>>,
}

impl tessera_string {
    /// Boxes `text` (NUL-terminated) for the caller and writes the pointer to `*out`.
    ///
    /// # Safety
    /// `out`, unless NULL, must be valid for one pointer write.
    pub(crate) unsafe fn give(text: String, out: *mut *mut tessera_string) -> Result<(), Failure> {
        let mut bytes = Zeroizing::new(text.into_bytes());
        bytes.push(0);
        let boxed = Box::into_raw(Box::new(tessera_string { bytes }));
        // SAFETY: the caller's contract.
        match unsafe { write_out(out, boxed, "out") } {
            Ok(()) => Ok(()),
            Err(failure) => {
                // SAFETY: just made by Box::into_raw and not handed out.
                drop(unsafe { Box::from_raw(boxed) });
                Err(failure)
            }
        }
    }

    fn text_len(&self) -> usize {
        self.bytes.len() - 1
    }
}

/// The text of `s`, NUL-terminated UTF-8. Valid until `tessera_string_free(s)`.
///
/// Returns NULL when `s` is NULL. The text contains no NUL byte before its end, so it can be
/// used as a C string; its length is `tessera_string_len(s)`.
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
        unsafe { s.as_ref() }.map_or(0, tessera_string::text_len)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn give_read_free() {
        let mut s: *mut tessera_string = std::ptr::null_mut();
        // SAFETY: `s` is a valid out-pointer; the string is freed once.
        unsafe {
            tessera_string::give("{\"id\":\"alice\"}".to_owned(), &mut s).unwrap();
            assert_eq!(tessera_string_len(s), 14);
            let text = std::ffi::CStr::from_ptr(tessera_string_ptr(s));
            assert_eq!(text.to_str().unwrap(), "{\"id\":\"alice\"}");
            tessera_string_free(s);
            tessera_string_free(std::ptr::null_mut());
            assert_eq!(tessera_string_len(std::ptr::null()), 0);
            assert!(tessera_string_ptr(std::ptr::null()).is_null());
            let f = tessera_string::give("x".to_owned(), std::ptr::null_mut()).unwrap_err();
            assert_eq!(f.status, super::super::tessera_status::TESSERA_NULL_POINTER);
        }
    }
}
