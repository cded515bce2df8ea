//! Session tokens: issue, verify, revoke.

use std::ffi::c_char;
use std::ptr::addr_of_mut;

use super::boundary::Failure;
use super::engine::{engine, tessera_engine};
use super::io::fill_array;
use super::status::tessera_status;
use super::user::{user_id_in, TESSERA_USER_ID_BUF_SIZE};
use crate::session_token::SESSION_TOKEN_MAX_LEN;

/// Size of the `key_id` array of `tessera_verified_session`: 1..=3 characters plus the NUL.
pub const TESSERA_KEY_ID_BUF_SIZE: usize = 4;

/// The result of a successful `tessera_session_token_verify`. Filled by Tessera; no pointers
/// inside, nothing to free.
#[repr(C)]
pub struct tessera_verified_session {
    /// The user's id, NUL-terminated UTF-8.
    pub user_id: [c_char; TESSERA_USER_ID_BUF_SIZE],
    /// Length of `user_id` in bytes, without the NUL.
    pub user_id_len: usize,
    /// When the token was issued, ms since the Unix epoch (whole seconds).
    pub issued_at_ms: i64,
    /// When it expires, ms since the Unix epoch (whole seconds).
    pub expires_at_ms: i64,
    /// The id of the signing key, NUL-terminated.
    pub key_id: [c_char; TESSERA_KEY_ID_BUF_SIZE],
}

/// Issues a session token (an HS256 JWT of 119..=168 characters) for a user, expiring at
/// `expires_at_ms`, and writes it, NUL-terminated, into `token_buf`.
///
/// `expires_at_ms` is the expiry in ms since the Unix epoch, rounded down to whole seconds.
/// Every value is taken literally: one not in the future (0 and every negative value
/// included), more than the configured maximum from now, or past the year 2286 fails with
/// `TESSERA_INVALID_EXPIRY` — so an expiry computed by mistake as 0 or as a wrapped sum is
/// an error, never a token. For the configured default lifetime call
/// `tessera_session_token_issue_default`. `token_cap` must be at least
/// `TESSERA_SESSION_TOKEN_MAX_LEN + 1`; this is checked before anything happens
/// (`TESSERA_BUFFER_TOO_SMALL`, `*out_token_len` set to `TESSERA_SESSION_TOKEN_MAX_LEN`).
/// `*out_token_len` receives the token length; `*out_expires_at_ms` (if not NULL) the expiry.
///
/// Hot path: allocates nothing for the caller. Thread-safe.
///
/// Fails with `TESSERA_NULL_POINTER` if `engine` or `out_token_len` is NULL.
///
/// # Safety
/// `user_id` valid for `user_id_len` bytes; `token_buf` valid for `token_cap` bytes;
/// `out_token_len` valid for one write; `out_expires_at_ms` NULL or valid for one write;
/// `engine` a live handle.
#[no_mangle]
pub unsafe extern "C" fn tessera_session_token_issue(
    engine: *const tessera_engine,
    user_id: *const c_char,
    user_id_len: usize,
    expires_at_ms: i64,
    token_buf: *mut c_char,
    token_cap: usize,
    out_token_len: *mut usize,
    out_expires_at_ms: *mut i64,
) -> tessera_status {
    ffi_boundary!({
        // SAFETY: the caller's contract.
        unsafe {
            issue(
                engine,
                user_id,
                user_id_len,
                Some(expires_at_ms),
                token_buf,
                token_cap,
                out_token_len,
                out_expires_at_ms,
            )
        }
    })
}

/// Issues a session token with the configured default lifetime (7 days unless configured
/// otherwise); otherwise exactly `tessera_session_token_issue`.
///
/// Hot path: allocates nothing for the caller. Thread-safe.
///
/// Fails with `TESSERA_NULL_POINTER` if `engine` or `out_token_len` is NULL.
///
/// # Safety
/// As `tessera_session_token_issue`.
#[no_mangle]
pub unsafe extern "C" fn tessera_session_token_issue_default(
    engine: *const tessera_engine,
    user_id: *const c_char,
    user_id_len: usize,
    token_buf: *mut c_char,
    token_cap: usize,
    out_token_len: *mut usize,
    out_expires_at_ms: *mut i64,
) -> tessera_status {
    ffi_boundary!({
        // SAFETY: the caller's contract.
        unsafe {
            issue(
                engine,
                user_id,
                user_id_len,
                None,
                token_buf,
                token_cap,
                out_token_len,
                out_expires_at_ms,
            )
        }
    })
}

/// The body of both issue functions; `None` is the configured default expiry.
///
/// # Safety
/// As `tessera_session_token_issue`.
#[allow(clippy::too_many_arguments)]
unsafe fn issue(
    engine: *const tessera_engine,
    user_id: *const c_char,
    user_id_len: usize,
    expires_at_ms: Option<i64>,
    token_buf: *mut c_char,
    token_cap: usize,
    out_token_len: *mut usize,
    out_expires_at_ms: *mut i64,
) -> Result<(), Failure> {
    // SAFETY: the caller's contract, for this and every unsafe call below.
    let e = unsafe { self::engine(engine) }?;
    let id = unsafe { user_id_in(user_id, user_id_len) }?;
    let token_out = text_out!(token_buf, token_cap, out_token_len);
    unsafe { token_out.reserve(SESSION_TOKEN_MAX_LEN) }?;
    let token = e.issue_session_token(id, expires_at_ms)?;
    unsafe { token_out.write(token.as_str()) }?;
    if !out_expires_at_ms.is_null() {
        unsafe { out_expires_at_ms.write(token.expires_at_ms()) };
    }
    Ok(())
}

/// Verifies a session token: format and signature first (any failure there, including a key
/// id never issued, is `TESSERA_INVALID_TOKEN`), then expiry (`TESSERA_TOKEN_EXPIRED`), then
/// revocation — of the user's sessions, by retiring its key, or by deleting its user, even
/// when the id has been taken again (`TESSERA_TOKEN_REVOKED`; never `TESSERA_USER_NOT_FOUND`)
/// — and the user's state (`TESSERA_USER_DEACTIVATED`). See docs/ERRORS.md.
///
/// `*out` (if not NULL) is filled on success only. Hot path: allocates nothing for the caller.
/// Thread-safe; verifications never block one another.
///
/// Fails with `TESSERA_NULL_POINTER` if `engine` is NULL.
///
/// # Safety
/// `token` valid for `token_len` bytes; `out` NULL or valid for one write; `engine` live.
#[no_mangle]
pub unsafe extern "C" fn tessera_session_token_verify(
    engine: *const tessera_engine,
    token: *const c_char,
    token_len: usize,
    out: *mut tessera_verified_session,
) -> tessera_status {
    ffi_boundary!({
        // SAFETY: the caller's contract, for this and every unsafe call below.
        let e = unsafe { self::engine(engine) }?;
        let token = unsafe { str_in!(token, token_len) }?;
        let v = e.verify_session_token(token)?;
        if !out.is_null() {
            unsafe {
                let len = fill_array(addr_of_mut!((*out).user_id), &v.user_id)?;
                addr_of_mut!((*out).user_id_len).write(len);
                addr_of_mut!((*out).issued_at_ms).write(v.issued_at_ms);
                addr_of_mut!((*out).expires_at_ms).write(v.expires_at_ms);
                fill_array(addr_of_mut!((*out).key_id), v.key_id.as_str())?;
            }
        }
        Ok(())
    })
}

/// Revokes every session token of a user issued before this call returns (tokens issued after
/// it verify; access tokens are untouched). A `sessions_revoked` event is queued. Thread-safe.
///
/// Fails with `TESSERA_NULL_POINTER` if `engine` is NULL.
///
/// # Safety
/// `user_id` valid for `user_id_len` bytes; `engine` a live handle.
#[no_mangle]
pub unsafe extern "C" fn tessera_session_token_revoke(
    engine: *const tessera_engine,
    user_id: *const c_char,
    user_id_len: usize,
) -> tessera_status {
    ffi_boundary!({
        // SAFETY: the caller's contract, for this and every unsafe call below.
        let e = unsafe { self::engine(engine) }?;
        let id = unsafe { user_id_in(user_id, user_id_len) }?;
        Ok(e.revoke_sessions(id)?)
    })
}

/// Emergency: invalidates every session token of every user by replacing all signing keys with
/// one fresh key; the old tokens are `TESSERA_TOKEN_REVOKED` (`key_retired` events and one
/// `all_sessions_revoked` event are queued).
/// Thread-safe.
///
/// Fails with `TESSERA_NULL_POINTER` if `engine` is NULL.
///
/// # Safety
/// `engine` must be a live handle.
#[no_mangle]
pub unsafe extern "C" fn tessera_session_token_revoke_everyone(
    engine: *const tessera_engine,
) -> tessera_status {
    ffi_boundary!({
        // SAFETY: the caller's contract.
        let e = unsafe { self::engine(engine) }?;
        Ok(e.revoke_all_sessions()?)
    })
}
