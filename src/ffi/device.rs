//! Push devices.

use std::ffi::c_char;

use super::engine::{engine, tessera_engine};
use super::owned::tessera_string;
use super::status::tessera_status;
use super::user::user_id_in;
use crate::device::NewDevice;

/// Registers a push device for a user, from JSON:
/// `{"device_type": "ios" | "android" | "web", "push_token": "...", "voip_push_token": "...",
/// "os_version": "...", "mode": "production" | "sandbox"}` (the last three optional). Another
/// `device_type` or `mode` is `TESSERA_INVALID_ARGUMENT`.
///
/// Re-registering a push token refreshes it; a push token held by another user moves to this
/// one; past the per-type limit the oldest device of that type is evicted. `*out_result` (if not
/// NULL) receives `{"device": {...}, "evicted": {...} or null}`. Thread-safe.
///
/// Fails with `TESSERA_NULL_POINTER` if `engine` is NULL.
///
/// # Safety
/// Pointer/length pairs valid; `out_result` NULL or valid for one pointer write; `engine` live.
#[no_mangle]
pub unsafe extern "C" fn tessera_device_add(
    engine: *const tessera_engine,
    user_id: *const c_char,
    user_id_len: usize,
    device_json: *const c_char,
    device_len: usize,
    out_result: *mut *mut tessera_string,
) -> tessera_status {
    ffi_boundary!({
        // SAFETY: the caller's contract, for this and every unsafe call below.
        let e = unsafe { self::engine(engine) }?;
        let id = unsafe { user_id_in(user_id, user_id_len) }?;
        let new: NewDevice = unsafe { json_in!(device_json, device_len) }?;
        let added = e.add_device(id, new)?;
        let json = serde_json::json!({ "device": added.device, "evicted": added.evicted });
        unsafe { tessera_string::give_json_opt(&json, out_result) }
    })
}

/// Writes the user's devices, oldest first, as a JSON array to `*out_devices` (required).
/// Thread-safe.
///
/// Fails with `TESSERA_NULL_POINTER` if `engine` or `out_devices` is NULL.
///
/// # Safety
/// `user_id` valid for `user_id_len` bytes; `out_devices` valid for one pointer write; `engine`
/// a live handle.
#[no_mangle]
pub unsafe extern "C" fn tessera_device_list(
    engine: *const tessera_engine,
    user_id: *const c_char,
    user_id_len: usize,
    out_devices: *mut *mut tessera_string,
) -> tessera_status {
    ffi_boundary!({
        // SAFETY: the caller's contract, for this and every unsafe call below.
        let e = unsafe { self::engine(engine) }?;
        let id = unsafe { user_id_in(user_id, user_id_len) }?;
        let out_devices = non_null!(out_devices)?;
        let devices = e.list_devices(id)?;
        unsafe { tessera_string::give_json(&devices, out_devices) }
    })
}

/// Removes the user's device with this push token. Fails with `TESSERA_DEVICE_NOT_FOUND`.
/// `*out_device` (if not NULL) receives the removed device as JSON. Thread-safe.
///
/// Fails with `TESSERA_NULL_POINTER` if `engine` is NULL.
///
/// # Safety
/// Pointer/length pairs valid; `out_device` NULL or valid for one pointer write; `engine` live.
#[no_mangle]
pub unsafe extern "C" fn tessera_device_remove(
    engine: *const tessera_engine,
    user_id: *const c_char,
    user_id_len: usize,
    push_token: *const c_char,
    push_token_len: usize,
    out_device: *mut *mut tessera_string,
) -> tessera_status {
    ffi_boundary!({
        // SAFETY: the caller's contract, for this and every unsafe call below.
        let e = unsafe { self::engine(engine) }?;
        let id = unsafe { user_id_in(user_id, user_id_len) }?;
        let token = unsafe { str_in!(push_token, push_token_len) }?;
        let device = e.remove_device(id, token)?;
        unsafe { tessera_string::give_json_opt(&device, out_device) }
    })
}
