//! The panic boundary every `extern "C"` body runs in, and the thread-local last error.
//!
//! Every exported function is written as
//!
//! ```ignore
//! #[no_mangle]
//! pub unsafe extern "C" fn tessera_thing_do(...) -> tessera_status {
//!     ffi_boundary!({
//!         let input = str_in!(ptr, len)?;   // Failure on NULL / UTF-8 / size
//!         engine.do_it(input)?;                     // crate::Error converts into a Failure
//!         Ok(())
//!     })
//! }
//! ```
//!
//! The macro clears the calling thread's last error message, runs the body under
//! `catch_unwind`, and turns `Err(Failure)` into its status (recording the message) and an unwind
//! into `TESSERA_PANIC`. Functions that return something other than a status (a `const char *`,
//! a length, `void`) use the `value` form, which gives a fixed value on panic.

use std::cell::RefCell;
use std::ffi::c_char;

use super::status::tessera_status;
use crate::error::Error;

/// A failed FFI call: the status to return and the message to leave for
/// `tessera_last_error_message`.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) status: tessera_status,
    pub(crate) message: String,
}

impl Failure {
    /// A failure with an ABI-level status (NULL pointer, bad UTF-8, ...).
    pub(crate) fn new(status: tessera_status, message: impl Into<String>) -> Failure {
        Failure {
            status,
            message: message.into(),
        }
    }
}

impl From<Error> for Failure {
    fn from(err: Error) -> Failure {
        Failure {
            status: tessera_status::from_kind(err.kind()),
            message: err.message().to_owned(),
        }
    }
}

thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Forgets the calling thread's last error message. Run at the start of every call.
pub(crate) fn clear_last_error() {
    // `try_with` so a call made during thread teardown cannot panic here.
    let _ = LAST_ERROR.try_with(|m| m.borrow_mut().clear());
}

/// Records `message` as the calling thread's last error message.
pub(crate) fn set_last_error(message: &str) {
    let _ = LAST_ERROR.try_with(|m| {
        let mut m = m.borrow_mut();
        m.clear();
        m.push_str(message);
    });
}

/// A copy of the calling thread's last error message ("" when there is none).
pub(crate) fn last_error() -> String {
    LAST_ERROR
        .try_with(|m| m.borrow().clone())
        .unwrap_or_default()
}

/// Describes a caught panic payload for the last error message.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let detail = if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.as_str()
    } else {
        "non-string payload"
    };
    format!("panic inside Tessera (please report this bug): {detail}")
}

/// Finishes a status-returning call: records the message of a failure or a panic.
pub(crate) fn finish(outcome: std::thread::Result<Result<(), Failure>>) -> tessera_status {
    match outcome {
        Ok(Ok(())) => tessera_status::TESSERA_OK,
        Ok(Err(failure)) => {
            set_last_error(&failure.message);
            failure.status
        }
        Err(payload) => {
            set_last_error(&panic_message(payload.as_ref()));
            tessera_status::TESSERA_PANIC
        }
    }
}

/// Finishes a value-returning call: on panic, records the message and yields `on_panic`.
pub(crate) fn finish_value<T>(outcome: std::thread::Result<T>, on_panic: T) -> T {
    match outcome {
        Ok(v) => v,
        Err(payload) => {
            set_last_error(&panic_message(payload.as_ref()));
            on_panic
        }
    }
}

/// The panic boundary. See the module documentation.
///
/// `ffi_boundary!({ ...; Ok(()) })` returns a `tessera_status`.
/// `ffi_boundary!(value, on_panic, { ... })` returns the block's value, or `on_panic`; it
/// leaves the last error message alone unless it catches a panic.
macro_rules! ffi_boundary {
    ($body:block) => {{
        $crate::ffi::boundary::clear_last_error();
        let outcome = ::std::panic::catch_unwind(::std::panic::AssertUnwindSafe(
            || -> ::std::result::Result<(), $crate::ffi::boundary::Failure> { $body },
        ));
        $crate::ffi::boundary::finish(outcome)
    }};
    (value, $on_panic:expr, $body:block) => {{
        let outcome = ::std::panic::catch_unwind(::std::panic::AssertUnwindSafe(|| $body));
        $crate::ffi::boundary::finish_value(outcome, $on_panic)
    }};
}

/// Copies the calling thread's last error message into `buf` as NUL-terminated UTF-8.
///
/// The last error message is set by the most recent Tessera call on this thread that failed,
/// and cleared at the start of every function returning a `tessera_status` except this one
/// (accessors such as `tessera_string_len` or `tessera_status_str` leave it alone); it is empty
/// after a call that succeeded. It never contains a secret
/// (no token, key or digest).
///
/// `buf` may be NULL only when `cap` is 0 (a size query). `*out_len` receives the message
/// length in bytes, not counting the NUL, whether or not it fits; the buffer needs
/// `*out_len + 1` bytes. Returns `TESSERA_OK`, `TESSERA_BUFFER_TOO_SMALL` (the buffer is left
/// untouched and the message is kept, so the call can be retried) or `TESSERA_NULL_POINTER`
/// (`out_len` is NULL, or `buf` is NULL with `cap > 0`).
///
/// Thread-local: each thread sees its own message.
///
/// Fails with `TESSERA_NULL_POINTER` if `out_len` is NULL.
///
/// # Safety
/// `buf` must be valid for writes of `cap` bytes and `out_len` for one `size_t` write.
#[no_mangle]
pub unsafe extern "C" fn tessera_last_error_message(
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
) -> tessera_status {
    // The value form: a too-small buffer must not replace the message being fetched.
    ffi_boundary!(value, tessera_status::TESSERA_PANIC, {
        let message = last_error();
        // SAFETY: the caller's contract above.
        match unsafe { text_out!(buf, cap, out_len).write(&message) } {
            Ok(()) => tessera_status::TESSERA_OK,
            Err(failure) => failure.status,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_status::*;

    #[test]
    fn failure_sets_message_and_success_clears_it() {
        let st = ffi_boundary!({
            Err(Failure::new(
                TESSERA_INVALID_ARGUMENT,
                "limit must be 1..=100",
            ))
        });
        assert_eq!(st, TESSERA_INVALID_ARGUMENT);
        assert_eq!(last_error(), "limit must be 1..=100");
        let st = ffi_boundary!({ Ok(()) });
        assert_eq!(st, TESSERA_OK);
        assert_eq!(last_error(), "");
    }

    #[test]
    fn rust_errors_keep_their_code() {
        let st = ffi_boundary!({
            Err(Error::new(crate::ErrorKind::UserNotFound, "no user \"bob\"").into())
        });
        assert_eq!(st, TESSERA_USER_NOT_FOUND);
        assert_eq!(last_error(), "no user \"bob\"");
    }

    #[test]
    fn panics_become_a_status_not_an_unwind() {
        let st = ffi_boundary!({
            if last_error().is_empty() {
                panic!("boom");
            }
            Ok(())
        });
        assert_eq!(st, TESSERA_PANIC);
        assert!(last_error().contains("boom"), "{}", last_error());
        let v: usize = ffi_boundary!(value, 7, {
            let v: Vec<usize> = Vec::new();
            v[3]
        });
        assert_eq!(v, 7);
    }

    #[test]
    fn last_error_message_copies_and_reports_length() {
        set_last_error("user not found: alice");
        let mut len = 0usize;
        // Size query.
        // SAFETY: NULL with cap 0 is allowed; `len` is a valid out-pointer.
        let st = unsafe { tessera_last_error_message(std::ptr::null_mut(), 0, &mut len) };
        assert_eq!(st, TESSERA_BUFFER_TOO_SMALL);
        assert_eq!(len, 21);
        // Exactly len bytes is one too few (the NUL).
        let mut small = [0x55 as c_char; 21];
        // SAFETY: buffer valid for 21 bytes.
        let st = unsafe { tessera_last_error_message(small.as_mut_ptr(), 21, &mut len) };
        assert_eq!(st, TESSERA_BUFFER_TOO_SMALL);
        assert!(small.iter().all(|&b| b == 0x55), "buffer must be untouched");
        let mut buf = [0 as c_char; 22];
        // SAFETY: buffer valid for 22 bytes.
        let st = unsafe { tessera_last_error_message(buf.as_mut_ptr(), 22, &mut len) };
        assert_eq!(
            st, TESSERA_OK,
            "the too-small retries must not have replaced the message"
        );
        assert_eq!(len, 21);
        // SAFETY: text_out NUL-terminated it.
        let got = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
        assert_eq!(got.to_str().unwrap(), "user not found: alice");
    }

    #[test]
    fn last_error_is_per_thread() {
        set_last_error("main thread");
        std::thread::spawn(|| assert_eq!(last_error(), ""))
            .join()
            .unwrap();
        assert_eq!(last_error(), "main thread");
    }
}
