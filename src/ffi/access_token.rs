//! Access tokens: issue, verify, list, revoke, revoke all.

use std::ffi::c_char;
use std::ptr::addr_of_mut;

use super::boundary::Failure;
use super::engine::{engine, tessera_engine};
use super::io::{fail, fill_array, null_buffer};
use super::limits::TESSERA_ACCESS_TOKENS_PER_USER_MAX;
use super::owned::tessera_string;
use super::status::tessera_status::{self, TESSERA_BUFFER_TOO_SMALL};
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
/// token's id.
///
/// When the user already holds `access_tokens_per_user` tokens, the oldest are revoked in the
/// same step so that the user holds exactly that many afterwards, with one
/// `access_token_evicted` event each: one token normally, more when the limit was lowered
/// since they were issued (an engine reopened with a smaller `access_tokens_per_user`). Their
/// ids, oldest first, are written to `evicted_buf` when `evicted_cap` is not 0, and their
/// number to `*out_evicted_count` (if not NULL). Pass `evicted_buf` NULL and `evicted_cap` 0
/// when you do not want the ids. Otherwise `evicted_cap` must be at least
/// `TESSERA_ACCESS_TOKENS_PER_USER_MAX`, the most one issue can evict; this is checked before
/// anything is issued (`TESSERA_BUFFER_TOO_SMALL`, `*out_evicted_count` set to
/// `TESSERA_ACCESS_TOKENS_PER_USER_MAX`).
///
/// The token is shown only now: Tessera keeps its SHA-256 digest. Wipe your copy when done.
/// Hot path: allocates nothing for the caller. Thread-safe.
///
/// Fails with `TESSERA_NULL_POINTER` if `engine` or `out_token_len` is NULL.
///
/// # Safety
/// Pointer/length pairs valid; `token_buf` valid for `token_cap` bytes; `evicted_buf` valid
/// for `evicted_cap` `uint64_t`s; out-pointers NULL (where allowed) or valid for one write;
/// `engine` a live handle.
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
    evicted_buf: *mut u64,
    evicted_cap: usize,
    out_evicted_count: *mut usize,
) -> tessera_status {
    ffi_boundary!({
        // SAFETY: the caller's contract, for this and every unsafe call below.
        let e = unsafe { self::engine(engine) }?;
        let id = unsafe { user_id_in(user_id, user_id_len) }?;
        let label = unsafe { opt_str_in!(label, label_len) }?;
        let token_out = text_out!(token_buf, token_cap, out_token_len);
        unsafe { token_out.reserve(ACCESS_TOKEN_LEN) }?;
        unsafe { evicted_capacity(evicted_buf, evicted_cap, out_evicted_count) }?;
        let issued = e.issue_access_token(id, label)?;
        unsafe { token_out.write(issued.token.as_str()) }?;
        if !out_token_id.is_null() {
            unsafe { out_token_id.write(issued.info.id) };
        }
        if evicted_cap > 0 {
            // evicted_capacity checked that the buffer is not NULL and holds
            // TESSERA_ACCESS_TOKENS_PER_USER_MAX ids, as many as a user can hold; `min` keeps
            // even a broken invariant inside it. The source is a distinct Rust allocation.
            let ids = &issued.evicted[..issued.evicted.len().min(evicted_cap)];
            unsafe { std::ptr::copy_nonoverlapping(ids.as_ptr(), evicted_buf, ids.len()) };
        }
        if !out_evicted_count.is_null() {
            unsafe { out_evicted_count.write(issued.evicted.len()) };
        }
        Ok(())
    })
}

/// Checks the evicted-ids buffer of `tessera_access_token_issue` before anything is issued:
/// capacity 0 means "not wanted"; anything else must be a real buffer with room for the most
/// ids one issue can evict.
///
/// # Safety
/// `out_evicted_count`, unless NULL, must be valid for one write.
unsafe fn evicted_capacity(
    evicted_buf: *mut u64,
    evicted_cap: usize,
    out_evicted_count: *mut usize,
) -> Result<(), Failure> {
    if evicted_cap == 0 {
        return Ok(());
    }
    if evicted_buf.is_null() {
        return Err(null_buffer("evicted_buf", evicted_cap));
    }
    if evicted_cap < TESSERA_ACCESS_TOKENS_PER_USER_MAX {
        if !out_evicted_count.is_null() {
            // SAFETY: the caller's contract.
            unsafe { out_evicted_count.write(TESSERA_ACCESS_TOKENS_PER_USER_MAX) };
        }
        return fail(
            TESSERA_BUFFER_TOO_SMALL,
            format!(
                "evicted_buf has room for {evicted_cap} ids; it needs \
                 TESSERA_ACCESS_TOKENS_PER_USER_MAX ({TESSERA_ACCESS_TOKENS_PER_USER_MAX})"
            ),
        );
    }
    Ok(())
}

/// Verifies an access token: `TESSERA_OK` when it is valid, else `TESSERA_INVALID_TOKEN`
/// (malformed, unknown or revoked: one code, no hint) or `TESSERA_USER_DEACTIVATED`.
///
/// `*out` (if not NULL) is filled on success only. Hot path: allocates nothing for the caller.
/// Thread-safe.
///
/// Fails with `TESSERA_NULL_POINTER` if `engine` is NULL.
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
        let token = unsafe { str_in!(token, token_len) }?;
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
/// Fails with `TESSERA_NULL_POINTER` if `engine` or `out_tokens` is NULL.
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
        let out_tokens = non_null!(out_tokens)?;
        let tokens = e.list_access_tokens(id)?;
        unsafe { tessera_string::give_json(&tokens, out_tokens) }
    })
}

/// Revokes one access token of a user, by id (an `access_token_revoked` event is queued).
/// Fails with `TESSERA_TOKEN_NOT_FOUND`. Thread-safe.
///
/// Fails with `TESSERA_NULL_POINTER` if `engine` is NULL.
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
/// Fails with `TESSERA_NULL_POINTER` if `engine` is NULL.
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
