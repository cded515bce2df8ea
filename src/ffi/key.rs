//! Signing keys: rotate, retire, list.

use std::ffi::c_char;

use super::engine::{engine, tessera_engine};
use super::owned::tessera_string;
use super::status::tessera_status;
use crate::key_ring::KeyInfo;

/// Size in bytes of a signing key secret, as written by `tessera_key_export`.
pub const TESSERA_KEY_SECRET_LEN: usize = 32;

fn key_json(k: &KeyInfo) -> serde_json::Value {
    serde_json::json!({
        "key_id": k.key_id.as_str(),
        "created_at_ms": k.created_at_ms,
        "active": k.active,
    })
}

/// Adds a new active signing key; older keys keep verifying until retired. `*out_key` (if not
/// NULL) receives `{"key_id": "b", "created_at_ms": ..., "active": true}`. Thread-safe.
///
/// Fails with `TESSERA_NULL_POINTER` if `engine` is NULL.
///
/// # Safety
/// `out_key` NULL or valid for one pointer write; `engine` a live handle.
#[no_mangle]
pub unsafe extern "C" fn tessera_key_rotate(
    engine: *const tessera_engine,
    out_key: *mut *mut tessera_string,
) -> tessera_status {
    ffi_boundary!({
        // SAFETY: the caller's contract, for this and every unsafe call below.
        let e = unsafe { self::engine(engine) }?;
        let info = e.rotate_key()?;
        unsafe { tessera_string::give_json_opt(&key_json(&info), out_key) }
    })
}

/// Retires a signing key by id: session tokens it signed stop verifying and are reported as
/// `TESSERA_TOKEN_REVOKED` (a `key_retired` event is queued). Fails with `TESSERA_KEY_NOT_FOUND`, or `TESSERA_KEY_ACTIVE` for the active key
/// (rotate first). Thread-safe.
///
/// Fails with `TESSERA_NULL_POINTER` if `engine` is NULL.
///
/// # Safety
/// `key_id` valid for `key_id_len` bytes; `engine` a live handle.
#[no_mangle]
pub unsafe extern "C" fn tessera_key_retire(
    engine: *const tessera_engine,
    key_id: *const c_char,
    key_id_len: usize,
) -> tessera_status {
    ffi_boundary!({
        // SAFETY: the caller's contract, for this and every unsafe call below.
        let e = unsafe { self::engine(engine) }?;
        let key_id = unsafe { str_in!(key_id, key_id_len) }?;
        Ok(e.retire_key(key_id)?)
    })
}

/// Writes every live signing key, oldest first, as a JSON array of
/// `{"key_id", "created_at_ms", "active"}` objects to `*out_keys` (required). Never the
/// secrets. Thread-safe.
///
/// Fails with `TESSERA_NULL_POINTER` if `engine` or `out_keys` is NULL.
///
/// # Safety
/// `out_keys` valid for one pointer write; `engine` a live handle.
#[no_mangle]
pub unsafe extern "C" fn tessera_key_list(
    engine: *const tessera_engine,
    out_keys: *mut *mut tessera_string,
) -> tessera_status {
    ffi_boundary!({
        // SAFETY: the caller's contract, for this and every unsafe call below.
        let e = unsafe { self::engine(engine) }?;
        let out_keys = non_null!(out_keys)?;
        let keys: Vec<serde_json::Value> = e.keys().iter().map(key_json).collect();
        unsafe { tessera_string::give_json(&keys, out_keys) }
    })
}

/// Copies the secret of the live signing key `key_id` into `out_key`, which must have room for
/// `TESSERA_KEY_SECRET_LEN` (32) bytes, so another service can verify Tessera session tokens
/// with any HS256 JWT library (the token header's `kid` names the key).
///
/// **This is secret material.** Whoever holds it can mint session tokens for every user that
/// verify until the key is retired: keep it out of logs, send it only over an authenticated,
/// encrypted channel, and wipe the buffer when done (e.g. `explicit_bzero`). The key id comes
/// from `tessera_key_list` or a verified token's `key_id`.
///
/// Fails with `TESSERA_KEY_NOT_FOUND` (unknown or retired key, or a malformed id) or
/// `TESSERA_INVALID_UTF8`; on any failure `out_key` is not written. Works on salvage engines.
/// Thread-safe.
///
/// Fails with `TESSERA_NULL_POINTER` if `engine` or `out_key` is NULL.
///
/// # Safety
/// `key_id` valid for `key_id_len` bytes; `out_key`, unless NULL, valid for writes of 32 bytes;
/// `engine` a live handle.
#[no_mangle]
pub unsafe extern "C" fn tessera_key_export(
    engine: *const tessera_engine,
    key_id: *const c_char,
    key_id_len: usize,
    out_key: *mut u8,
) -> tessera_status {
    ffi_boundary!({
        // SAFETY: the caller's contract, for this and every unsafe call below.
        let e = unsafe { self::engine(engine) }?;
        let key_id = unsafe { str_in!(key_id, key_id_len) }?;
        let out_key = non_null!(out_key)?;
        let secret = e.export_key(key_id)?;
        // The type ties the constant in the header to the key size.
        let bytes: &[u8; TESSERA_KEY_SECRET_LEN] = secret.as_bytes();
        // SAFETY: non-NULL and valid for 32 bytes by the caller's contract; `secret` is a
        // distinct Rust allocation (zeroized when dropped at the end of this scope).
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), out_key.as_ptr(), bytes.len()) };
        Ok(())
    })
}
