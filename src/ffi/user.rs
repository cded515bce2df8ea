//! Users: create, upsert, get, update, delete, (de)activate, list, find, and authenticate.
//! Records cross as JSON (the serde form of `tessera::NewUser`, `UserPatch`, `User`,
//! `UserQuery`).

use std::ffi::c_char;
use std::ptr::addr_of_mut;

use super::boundary::Failure;
use super::engine::{engine, tessera_engine};
use super::io::fill_array;
use super::owned::tessera_string;
use super::status::tessera_status;
use crate::config::USER_ID_MAX_CHARS_LIMIT;
use crate::engine::{AuthMethod, UserQuery};
use crate::user::{NewUser, UserPatch};

/// Size of the `user_id` arrays in result structs: the longest user id any configuration allows
/// (191 characters of up to 4 UTF-8 bytes each) plus the terminating NUL.
pub const TESSERA_USER_ID_BUF_SIZE: usize = 765;
const _: () = assert!(TESSERA_USER_ID_BUF_SIZE == USER_ID_MAX_CHARS_LIMIT * 4 + 1);

/// The user id argument every user function takes.
///
/// # Safety
/// As `str_in`.
pub(crate) unsafe fn user_id_in<'a>(
    user_id: *const c_char,
    user_id_len: usize,
) -> Result<&'a str, Failure> {
    // SAFETY: forwarded contract.
    unsafe { str_in!(user_id, user_id_len) }
}

/// Creates a user from a JSON object: `{"user_id": "alice", "nickname": "Alice", ...}` with the
/// optional fields `profile_url`, `metadata` (object), `tags`, `role`, `status_message`, `link`,
/// `email`, `mobile_number`, `discovery_keys`. Unknown fields fail with `TESSERA_INVALID_JSON`.
///
/// Fails with `TESSERA_USER_ALREADY_EXISTS` when the id is taken, or a field code
/// (`TESSERA_INVALID_USER_ID`, `TESSERA_FIELD_TOO_LONG`, ...). On success, when `out_user` is
/// not NULL, writes the stored user as a JSON `tessera_string` (free with
/// `tessera_string_free`). Thread-safe.
///
/// Fails with `TESSERA_NULL_POINTER` if `engine` is NULL.
///
/// # Safety
/// `user_json` valid for `user_len` bytes; `out_user` NULL or valid for one pointer write;
/// `engine` a live handle.
#[no_mangle]
pub unsafe extern "C" fn tessera_user_create(
    engine: *const tessera_engine,
    user_json: *const c_char,
    user_len: usize,
    out_user: *mut *mut tessera_string,
) -> tessera_status {
    ffi_boundary!({
        // SAFETY: the caller's contract, for this and every unsafe call below.
        let e = unsafe { self::engine(engine) }?;
        let new: NewUser = unsafe { json_in!(user_json, user_len) }?;
        let user = e.create_user(new)?;
        unsafe { tessera_string::give_json_opt(&user, out_user) }
    })
}

/// Creates a user, or finds the existing user with that id and leaves it unchanged.
///
/// Takes the same JSON as `tessera_user_create`. `*out_created` (if not NULL) receives `true`
/// when this call created the user. `*out_user` (if not NULL) receives the stored user as JSON.
/// Thread-safe.
///
/// Fails with `TESSERA_NULL_POINTER` if `engine` is NULL.
///
/// # Safety
/// As `tessera_user_create`; `out_created` NULL or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn tessera_user_upsert(
    engine: *const tessera_engine,
    user_json: *const c_char,
    user_len: usize,
    out_created: *mut bool,
    out_user: *mut *mut tessera_string,
) -> tessera_status {
    ffi_boundary!({
        // SAFETY: the caller's contract, for this and every unsafe call below.
        let e = unsafe { self::engine(engine) }?;
        let new: NewUser = unsafe { json_in!(user_json, user_len) }?;
        let upserted = e.upsert_user(new)?;
        if !out_created.is_null() {
            unsafe { out_created.write(upserted.created) };
        }
        unsafe { tessera_string::give_json_opt(&upserted.user, out_user) }
    })
}

/// Gets a user by id and writes it as a JSON `tessera_string` to `*out_user` (required; free
/// with `tessera_string_free`). Fails with `TESSERA_USER_NOT_FOUND`. Thread-safe.
///
/// Fails with `TESSERA_NULL_POINTER` if `engine` or `out_user` is NULL.
///
/// # Safety
/// `user_id` valid for `user_id_len` bytes; `out_user` valid for one pointer write; `engine` a
/// live handle.
#[no_mangle]
pub unsafe extern "C" fn tessera_user_get(
    engine: *const tessera_engine,
    user_id: *const c_char,
    user_id_len: usize,
    out_user: *mut *mut tessera_string,
) -> tessera_status {
    ffi_boundary!({
        // SAFETY: the caller's contract, for this and every unsafe call below.
        let e = unsafe { self::engine(engine) }?;
        let id = unsafe { user_id_in(user_id, user_id_len) }?;
        let out_user = non_null!(out_user)?;
        let user = e.get_user(id)?;
        unsafe { tessera_string::give_json(&user, out_user) }
    })
}

/// Gets a user by its handle (the `"handle"` field of every user JSON, and the `sub` claim of
/// its session tokens, as a decimal string) and writes it as a JSON `tessera_string` to
/// `*out_user` (required; free with `tessera_string_free`). A service that verified a session
/// token with an exported key (`tessera_key_export`) resolves its subject this way. Fails with
/// `TESSERA_USER_NOT_FOUND` for a handle no live user has; handles are never reused, so a
/// deleted user's handle finds nobody even when a new user has its id. Thread-safe.
///
/// Fails with `TESSERA_NULL_POINTER` if `engine` or `out_user` is NULL.
///
/// # Safety
/// `out_user` valid for one pointer write; `engine` a live handle.
#[no_mangle]
pub unsafe extern "C" fn tessera_user_get_by_handle(
    engine: *const tessera_engine,
    handle: u64,
    out_user: *mut *mut tessera_string,
) -> tessera_status {
    ffi_boundary!({
        // SAFETY: the caller's contract, for this and every unsafe call below.
        let e = unsafe { self::engine(engine) }?;
        let out_user = non_null!(out_user)?;
        let user = e.get_user_by_handle(handle)?;
        unsafe { tessera_string::give_json(&user, out_user) }
    })
}

/// Changes the fields a JSON patch sets, all or nothing. The patch has the optional fields
/// `nickname`, `profile_url`, `metadata`, `tags`, `role`, `status_message`, `link`, `email`,
/// `mobile_number`, `discovery_keys`; a field set to `null` is cleared, a missing field is kept.
/// `*out_user` (if not NULL) receives the updated user as JSON. Thread-safe.
///
/// Fails with `TESSERA_NULL_POINTER` if `engine` is NULL.
///
/// # Safety
/// Pointer/length pairs valid; `out_user` NULL or valid for one pointer write; `engine` live.
#[no_mangle]
pub unsafe extern "C" fn tessera_user_update(
    engine: *const tessera_engine,
    user_id: *const c_char,
    user_id_len: usize,
    patch_json: *const c_char,
    patch_len: usize,
    out_user: *mut *mut tessera_string,
) -> tessera_status {
    ffi_boundary!({
        // SAFETY: the caller's contract, for this and every unsafe call below.
        let e = unsafe { self::engine(engine) }?;
        let id = unsafe { user_id_in(user_id, user_id_len) }?;
        let patch: UserPatch = unsafe { json_in!(patch_json, patch_len) }?;
        let user = e.update_user(id, &patch)?;
        unsafe { tessera_string::give_json_opt(&user, out_user) }
    })
}

/// Deletes a user and revokes every token it held (a `user_deleted` event is queued). A user
/// created later with the same id can never be reached by the old tokens. Thread-safe.
///
/// Fails with `TESSERA_NULL_POINTER` if `engine` is NULL.
///
/// # Safety
/// `user_id` valid for `user_id_len` bytes; `engine` a live handle.
#[no_mangle]
pub unsafe extern "C" fn tessera_user_delete(
    engine: *const tessera_engine,
    user_id: *const c_char,
    user_id_len: usize,
) -> tessera_status {
    ffi_boundary!({
        // SAFETY: the caller's contract, for this and every unsafe call below.
        let e = unsafe { self::engine(engine) }?;
        let id = unsafe { user_id_in(user_id, user_id_len) }?;
        Ok(e.delete_user(id)?)
    })
}

/// Deactivates a user: its tokens stop verifying (with `TESSERA_USER_DEACTIVATED`) until it
/// is reactivated; nothing is revoked. Idempotent. `*out_user` (if not NULL) receives the user
/// as JSON. Thread-safe.
///
/// Fails with `TESSERA_NULL_POINTER` if `engine` is NULL.
///
/// # Safety
/// `user_id` valid for `user_id_len` bytes; `out_user` NULL or valid for one pointer write;
/// `engine` a live handle.
#[no_mangle]
pub unsafe extern "C" fn tessera_user_deactivate(
    engine: *const tessera_engine,
    user_id: *const c_char,
    user_id_len: usize,
    out_user: *mut *mut tessera_string,
) -> tessera_status {
    ffi_boundary!({
        // SAFETY: the caller's contract, for this and every unsafe call below.
        let e = unsafe { self::engine(engine) }?;
        let id = unsafe { user_id_in(user_id, user_id_len) }?;
        let user = e.deactivate_user(id)?;
        unsafe { tessera_string::give_json_opt(&user, out_user) }
    })
}

/// Reactivates a deactivated user; its unrevoked tokens verify again. Idempotent. `*out_user`
/// (if not NULL) receives the user as JSON. Thread-safe.
///
/// Fails with `TESSERA_NULL_POINTER` if `engine` is NULL.
///
/// # Safety
/// As `tessera_user_deactivate`.
#[no_mangle]
pub unsafe extern "C" fn tessera_user_reactivate(
    engine: *const tessera_engine,
    user_id: *const c_char,
    user_id_len: usize,
    out_user: *mut *mut tessera_string,
) -> tessera_status {
    ffi_boundary!({
        // SAFETY: the caller's contract, for this and every unsafe call below.
        let e = unsafe { self::engine(engine) }?;
        let id = unsafe { user_id_in(user_id, user_id_len) }?;
        let user = e.reactivate_user(id)?;
        unsafe { tessera_string::give_json_opt(&user, out_user) }
    })
}

/// Lists users in creation order, one page at a time.
///
/// `query_json` is an object with the optional fields `limit` (1..=100, default 20), `cursor`
/// (the previous page's `next_cursor`), `user_ids` (array), `nickname_prefix`,
/// `metadata_key` + `metadata_value`, `tag`, `active` (bool); every set filter must match. An
/// empty input (NULL, 0) is the first page with no filter. `*out_page` (required) receives
/// `{"users": [...], "next_cursor": "..." or null}`. Thread-safe.
///
/// Fails with `TESSERA_NULL_POINTER` if `engine` or `out_page` is NULL.
///
/// # Safety
/// `query_json` valid for `query_len` bytes (or NULL with 0); `out_page` valid for one pointer
/// write; `engine` a live handle.
#[no_mangle]
pub unsafe extern "C" fn tessera_user_list(
    engine: *const tessera_engine,
    query_json: *const c_char,
    query_len: usize,
    out_page: *mut *mut tessera_string,
) -> tessera_status {
    ffi_boundary!({
        // SAFETY: the caller's contract, for this and every unsafe call below.
        let e = unsafe { self::engine(engine) }?;
        let query: UserQuery = if query_json.is_null() && query_len == 0 {
            UserQuery::default()
        } else {
            unsafe { json_in!(query_json, query_len) }?
        };
        let out_page = non_null!(out_page)?;
        let page = e.list_users(&query)?;
        let json = serde_json::json!({ "users": page.users, "next_cursor": page.next_cursor });
        unsafe { tessera_string::give_json(&json, out_page) }
    })
}

/// Finds the user holding a discovery key and writes it as JSON to `*out_user` (required).
/// Fails with `TESSERA_USER_NOT_FOUND`. Thread-safe.
///
/// Fails with `TESSERA_NULL_POINTER` if `engine` or `out_user` is NULL.
///
/// # Safety
/// `key` valid for `key_len` bytes; `out_user` valid for one pointer write; `engine` live.
#[no_mangle]
pub unsafe extern "C" fn tessera_user_find_by_discovery_key(
    engine: *const tessera_engine,
    key: *const c_char,
    key_len: usize,
    out_user: *mut *mut tessera_string,
) -> tessera_status {
    ffi_boundary!({
        // SAFETY: the caller's contract, for this and every unsafe call below.
        let e = unsafe { self::engine(engine) }?;
        let key = unsafe { str_in!(key, key_len) }?;
        let out_user = non_null!(out_user)?;
        let user = e.find_user_by_discovery_key(key)?;
        unsafe { tessera_string::give_json(&user, out_user) }
    })
}

/// Finds the user owning a device push token and writes it as JSON to `*out_user` (required).
/// Fails with `TESSERA_DEVICE_NOT_FOUND`. Thread-safe.
///
/// Fails with `TESSERA_NULL_POINTER` if `engine` or `out_user` is NULL.
///
/// # Safety
/// `push_token` valid for `push_token_len` bytes; `out_user` valid for one pointer write;
/// `engine` live.
#[no_mangle]
pub unsafe extern "C" fn tessera_user_find_by_push_token(
    engine: *const tessera_engine,
    push_token: *const c_char,
    push_token_len: usize,
    out_user: *mut *mut tessera_string,
) -> tessera_status {
    ffi_boundary!({
        // SAFETY: the caller's contract, for this and every unsafe call below.
        let e = unsafe { self::engine(engine) }?;
        let token = unsafe { str_in!(push_token, push_token_len) }?;
        let out_user = non_null!(out_user)?;
        let user = e.find_user_by_push_token(token)?;
        unsafe { tessera_string::give_json(&user, out_user) }
    })
}

/// How `tessera_user_authenticate` accepted a login.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum tessera_auth_method {
    /// By user id alone (only with `allow_id_only_login`, before any token was issued).
    TESSERA_AUTH_USER_ID_ONLY = 1,
    /// By an access token (`token_id` is set).
    TESSERA_AUTH_ACCESS_TOKEN = 2,
    /// By a session token (`expires_at_ms` is set).
    TESSERA_AUTH_SESSION_TOKEN = 3,
}

/// The result of a successful `tessera_user_authenticate`. Filled by Tessera; no pointers
/// inside, nothing to free.
#[repr(C)]
pub struct tessera_authenticated {
    /// The user's id as stored (after case normalisation), NUL-terminated UTF-8.
    pub user_id: [c_char; TESSERA_USER_ID_BUF_SIZE],
    /// Length of `user_id` in bytes, without the NUL.
    pub user_id_len: usize,
    /// Which credential was accepted.
    pub method: tessera_auth_method,
    /// The access token's id for `TESSERA_AUTH_ACCESS_TOKEN`, else 0.
    pub token_id: u64,
    /// The session token's expiry (ms since the Unix epoch) for `TESSERA_AUTH_SESSION_TOKEN`,
    /// else 0.
    pub expires_at_ms: i64,
}

/// Logs a user in (Sendbird's rule). With no token (`token` NULL and `token_len` 0), succeeds
/// only when the engine allows id-only login and the user was never issued a token (else
/// `TESSERA_TOKEN_REQUIRED`). With a token, it must be a valid access or session token *of
/// this user*: a failing token gets its own verify status (`TESSERA_INVALID_TOKEN`,
/// `TESSERA_TOKEN_EXPIRED`, `TESSERA_TOKEN_REVOKED`, `TESSERA_USER_DEACTIVATED`), and a valid
/// token of anyone else `TESSERA_INVALID_TOKEN` — whether or not `user_id` exists, so a token
/// never reveals that (only a malformed id fails first, `TESSERA_INVALID_USER_ID`).
///
/// Hot path: allocates nothing for the caller. `*out` (if not NULL) is filled on success only.
/// Thread-safe.
///
/// Fails with `TESSERA_NULL_POINTER` if `engine` is NULL.
///
/// # Safety
/// Pointer/length pairs valid; `out` NULL or valid for one write; `engine` a live handle.
#[no_mangle]
pub unsafe extern "C" fn tessera_user_authenticate(
    engine: *const tessera_engine,
    user_id: *const c_char,
    user_id_len: usize,
    token: *const c_char,
    token_len: usize,
    out: *mut tessera_authenticated,
) -> tessera_status {
    ffi_boundary!({
        // SAFETY: the caller's contract, for this and every unsafe call below.
        let e = unsafe { self::engine(engine) }?;
        let id = unsafe { user_id_in(user_id, user_id_len) }?;
        let token = unsafe { opt_str_in!(token, token_len) }?;
        let auth = e.authenticate(id, token)?;
        if out.is_null() {
            return Ok(());
        }
        let (method, token_id, expires_at_ms) = match auth.method {
            AuthMethod::UserIdOnly => (tessera_auth_method::TESSERA_AUTH_USER_ID_ONLY, 0, 0),
            AuthMethod::AccessToken { token_id } => {
                (tessera_auth_method::TESSERA_AUTH_ACCESS_TOKEN, token_id, 0)
            }
            AuthMethod::SessionToken { expires_at_ms } => (
                tessera_auth_method::TESSERA_AUTH_SESSION_TOKEN,
                0,
                expires_at_ms,
            ),
        };
        // Field by field through raw pointers: no reference to caller memory is formed, and
        // the id array is written only as far as the id goes.
        unsafe {
            let len = fill_array(addr_of_mut!((*out).user_id), &auth.user_id)?;
            addr_of_mut!((*out).user_id_len).write(len);
            addr_of_mut!((*out).method).write(method);
            addr_of_mut!((*out).token_id).write(token_id);
            addr_of_mut!((*out).expires_at_ms).write(expires_at_ms);
        }
        Ok(())
    })
}
