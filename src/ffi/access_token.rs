//! Access tokens: issue, verify, list, revoke, revoke all.

use std::ffi::c_char;
use std::ptr::addr_of_mut;

use super::engine::{engine, tessera_engine};
use super::io::{fill_array, non_null, opt_str_in, str_in, text_capacity, text_out};
use super::owned::tessera_string;
use super::status::tessera_status;
use super::user::{user_id_in, TESSERA_USER_ID_BUF_SIZE};
use crate::access_token::ACCESS_TOKEN_LEN;

/// Length of every access token, in bytes (`tsat_` + 60 characters). A buffer for one needs
/// `TESSERA_ACCESS_TOKEN_LEN + 1` bytes.
pub const TESSERA_ACCESS_TOKEN_LEN: usize = 65;
const _: () = assert!(TESSERA_ACCESS_TOKEN_LEN == ACCESS_TOKEN_LEN);

/// The result of a successful `tessera_access_token_verify`. Filled by Tessera; no pointers
/// inside, nothing to free.
#[repr(C)]
pub struct tessera_verified_access_token {
    /// The owner's user id, NUL-terminated UTF-8.
    pub user_id: [c_char; TESSERA_USER_ID_BUF_SIZE],
    /// Length of `user_id` in bytes, without the NUL.
    pub user_id_len: usize,
    /// The token's id (for `tessera_access_token_revoke`).
    pub token_id: u64,
}

/// Issues a permanent access token for a user and writes it, NUL-terminated, into `token_buf`.
///
/// `label` is optional (NULL with length 0 for none). `token_cap` must be at least
/// `TESSERA_ACCESS_TOKEN_LEN + 1`; this is checked *before* anything is issued
/// (`TESSERA_BUFFER_TOO_SMALL`, `*out_token_len` set to `TESSERA_ACCESS_TOKEN_LEN`).
/// `*out_token_len` receives the token length. `*out_token_id` (if not NULL) receives the new
/// token's id; `*out_evicted_id` (if not NULL) the id of the user's oldest token if issuing this
/// one revoked it to stay within the per-user limit, else 0 (token ids start at 1).
///
/// The token is shown only now: Tessera keeps its SHA-256 digest. Wipe your copy when done.
/// Hot path: allocates nothing for the caller. Thread-safe.
///
/// # Safety
/// Pointer/length pairs valid; `token_buf` valid for `token_cap` bytes; out-pointers NULL (where
/// allowed) or valid for one write; `engine` a live handle.
#[no_mangle]
pub unsafe extern "C" fn tessera_access_token_issue(
    engine: *const tessera_engine,
    user_id: *const c_char,
    user_id_len: usize,
    label: *const c_char,
    label_len: usize,
    token_buf: *mut c_char,
    token_cap: usize,
    out_token_len: *mut usize,
    out_token_id: *mut u64,
    out_evicted_id: *mut u64,
) -> tessera_status {
    ffi_boundary!({
        // SAFETY: the caller's contract, for this and every unsafe call below.
        let e = unsafe { self::engine(engine) }?;
        let id = unsafe { user_id_in(user_id, user_id_len) }?;
        let label = unsafe { opt_str_in(label, label_len, "label") }?;
        unsafe { text_capacity(token_buf, token_cap, out_token_len, ACCESS_TOKEN_LEN) }?;
        let issued = e.issue_access_token(id, label)?;
        unsafe { text_out(issued.token.as_str(), token_buf, token_cap, out_token_len) }?;
        if !out_token_id.is_null() {
            unsafe { out_token_id.write(issued.info.id) };
        }
        if !out_evicted_id.is_null() {
            unsafe { out_evicted_id.write(issued.revoked.unwrap_or(0)) };
        }
        Ok(())
    })
}

/// Verifies an access token: `TESSERA_OK` when it is valid, else `TESSERA_INVALID_TOKEN`
/// (malformed, unknown or revoked: one code, no hint) or `TESSERA_USER_DEACTIVATED`.
///
/// `*out` (if not NULL) is filled on success only. Hot path: allocates nothing for the caller.
/// Thread-safe.
///
/// # Safety
/// `token` valid for `token_len` bytes; `out` NULL or valid for one write; `engine` live.
#[no_mangle]
pub unsafe extern "C" fn tessera_access_token_verify(
    engine: *const tessera_engine,
    token: *const c_char,
    token_len: usize,
    out: *mut tessera_verified_access_token,
) -> tessera_status {
    ffi_boundary!({
        // SAFETY: the caller's contract, for this and every unsafe call below.
        let e = unsafe { self::engine(engine) }?;
        let token = unsafe { str_in(token, token_len, "token") }?;
        let v = e.verify_access_token(token)?;
        if !out.is_null() {
            unsafe {
                let len = fill_array(addr_of_mut!((*out).user_id), &v.user_id)?;
                addr_of_mut!((*out).user_id_len).write(len);
                addr_of_mut!((*out).token_id).write(v.token_id);
            }
        }
        Ok(())
    })
}

/// Writes the user's valid access tokens, oldest first, as a JSON array to `*out_tokens`
/// (required): `[{"id": 1, "created_at_ms": ..., "label": "phone" or null}, ...]`. Never the
/// secrets. Thread-safe.
///
/// # Safety
/// `user_id` valid for `user_id_len` bytes; `out_tokens` valid for one pointer write; `engine`
/// a live handle.
#[no_mangle]
pub unsafe extern "C" fn tessera_access_token_list(
    engine: *const tessera_engine,
    user_id: *const c_char,
    user_id_len: usize,
    out_tokens: *mut *mut tessera_string,
) -> tessera_status {
    ffi_boundary!({
        // SAFETY: the caller's contract, for this and every unsafe call below.
        let e = unsafe { self::engine(engine) }?;
        let id = unsafe { user_id_in(user_id, user_id_len) }?;
        non_null(out_tokens, "out_tokens")?;
        let tokens = e.list_access_tokens(id)?;
        unsafe { tessera_string::give_json(&tokens, out_tokens) }
    })
}

/// Revokes one access token of a user, by id (an `access_token_revoked` event is queued).
/// Fails with `TESSERA_TOKEN_NOT_FOUND`. Thread-safe.
///
/// # Safety
/// `user_id` valid for `user_id_len` bytes; `engine` a live handle.
#[no_mangle]
pub unsafe extern "C" fn tessera_access_token_revoke(
    engine: *const tessera_engine,
    user_id: *const c_char,
    user_id_len: usize,
    token_id: u64,
) -> tessera_status {
    ffi_boundary!({
        // SAFETY: the caller's contract, for this and every unsafe call below.
        let e = unsafe { self::engine(engine) }?;
        let id = unsafe { user_id_in(user_id, user_id_len) }?;
        Ok(e.revoke_access_token(id, token_id)?)
    })
}

/// Revokes every access token of a user. `*out_count` (if not NULL) receives how many there
/// were. Thread-safe.
///
/// # Safety
/// `user_id` valid for `user_id_len` bytes; `out_count` NULL or valid for one write; `engine`
/// a live handle.
#[no_mangle]
pub unsafe extern "C" fn tessera_access_token_revoke_all(
    engine: *const tessera_engine,
    user_id: *const c_char,
    user_id_len: usize,
    out_count: *mut usize,
) -> tessera_status {
    ffi_boundary!({
        // SAFETY: the caller's contract, for this and every unsafe call below.
        let e = unsafe { self::engine(engine) }?;
        let id = unsafe { user_id_in(user_id, user_id_len) }?;
        let n = e.revoke_all_access_tokens(id)?;
        if !out_count.is_null() {
            unsafe { out_count.write(n) };
        }
        Ok(())
    })
}
