//! Profile image upload and download.

use std::ffi::c_char;

use super::engine::{engine, tessera_engine};
use super::owned::{tessera_bytes, tessera_string};
use super::status::tessera_status;
use super::user::user_id_in;

/// Uploads a profile image for a user: PNG or JPEG bytes (checked by magic number), at most
/// the engine's `profile_image_max_bytes` (default 5 MiB; this input is exempt from
/// `TESSERA_MAX_INPUT_LEN`). The image is stored content-addressed and the user's
/// `profile_url` points at it (`tessera://images/<sha256>.png` by default).
///
/// Fails with `TESSERA_INVALID_IMAGE`, `TESSERA_IMAGE_TOO_LARGE` or `TESSERA_USER_NOT_FOUND`.
/// `*out_user` (if not NULL) receives the updated user as JSON. Thread-safe.
///
/// Fails with `TESSERA_NULL_POINTER` if `engine` is NULL.
///
/// # Safety
/// `user_id` valid for `user_id_len` bytes, `image` for `image_len` bytes; `out_user` NULL or
/// valid for one pointer write; `engine` a live handle.
#[no_mangle]
pub unsafe extern "C" fn tessera_profile_image_upload(
    engine: *const tessera_engine,
    user_id: *const c_char,
    user_id_len: usize,
    image: *const u8,
    image_len: usize,
    out_user: *mut *mut tessera_string,
) -> tessera_status {
    ffi_boundary!({
        // SAFETY: the caller's contract, for this and every unsafe call below.
        let e = unsafe { self::engine(engine) }?;
        let id = unsafe { user_id_in(user_id, user_id_len) }?;
        // The engine enforces its configured image limit with TESSERA_IMAGE_TOO_LARGE.
        let bytes = unsafe { bytes_in_max!(image, image_len, usize::MAX) }?;
        let user = e.set_profile_image(id, bytes)?;
        unsafe { tessera_string::give_json_opt(&user, out_user) }
    })
}

/// Reads an uploaded image by its content address: the 64 lowercase hex digits of its SHA-256,
/// as in the user's `profile_url`. `*out_image` (required) receives the bytes (free with
/// `tessera_bytes_free`); `*out_content_type` (if not NULL) receives a static string,
/// `"image/png"` or `"image/jpeg"` (do not free). Fails with `TESSERA_IMAGE_NOT_FOUND`.
/// Thread-safe.
///
/// Fails with `TESSERA_NULL_POINTER` if `engine` or `out_image` is NULL.
///
/// # Safety
/// `sha256_hex` valid for `sha256_hex_len` bytes; `out_image` valid for one pointer write;
/// `out_content_type` NULL or valid for one pointer write; `engine` a live handle.
#[no_mangle]
pub unsafe extern "C" fn tessera_profile_image_get(
    engine: *const tessera_engine,
    sha256_hex: *const c_char,
    sha256_hex_len: usize,
    out_image: *mut *mut tessera_bytes,
    out_content_type: *mut *const c_char,
) -> tessera_status {
    ffi_boundary!({
        // SAFETY: the caller's contract, for this and every unsafe call below.
        let e = unsafe { self::engine(engine) }?;
        let hex = unsafe { str_in!(sha256_hex, sha256_hex_len) }?;
        let out_image = non_null!(out_image)?;
        let image = e.profile_image(hex)?;
        let content_type = match image.format {
            crate::ImageFormat::Png => c"image/png",
            crate::ImageFormat::Jpeg => c"image/jpeg",
        };
        unsafe { tessera_bytes::give(image.bytes, out_image) };
        if !out_content_type.is_null() {
            unsafe { out_content_type.write(content_type.as_ptr()) };
        }
        Ok(())
    })
}
