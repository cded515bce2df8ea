//! `tessera_engine`: opening, configuring and freeing an engine.

use std::ffi::c_char;

use serde::Deserialize;

use super::boundary::Failure;
use super::io::{json_in, non_null, write_out};
use super::status::tessera_status;
use crate::config::{Config, UserIdCase, UserIdPolicy};
use crate::engine::Engine;

/// An engine handle. Opened with `tessera_engine_open_in_memory` (or
/// `tessera_engine_open_in_memory_with_config`), freed with `tessera_engine_free`.
///
/// Every function taking a `const tessera_engine *` may be called on the same handle from any
/// number of threads at once; readers (verify, get, list) do not block each other. Only
/// `tessera_engine_free` needs exclusive use.
pub struct tessera_engine {
    pub(crate) engine: Engine,
}

/// The engine behind a required handle argument.
///
/// # Safety
/// `e`, unless NULL, must be a live handle from `tessera_engine_open*` for `'a`.
pub(crate) unsafe fn engine<'a>(e: *const tessera_engine) -> Result<&'a Engine, Failure> {
    let e = non_null(e, "engine")?;
    // SAFETY: the caller's contract: a live handle, shared (`&`) access only.
    Ok(unsafe { &e.as_ref().engine })
}

/// Hands a new engine to the caller through a checked, non-NULL `out`.
///
/// # Safety
/// `out` must be valid for one pointer write.
unsafe fn give(engine: Engine, out: *mut *mut tessera_engine) -> Result<(), Failure> {
    let handle = Box::into_raw(Box::new(tessera_engine { engine }));
    // SAFETY: the caller's contract; `out` was checked before the engine was built, so this
    // cannot fail and leak the handle.
    unsafe { write_out(out, handle, "out_engine") }
}

/// Configuration as JSON: every field of `tessera::Config` is optional and defaults to its
/// documented default.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigJson {
    user_id_max_chars: Option<usize>,
    user_id_policy: Option<PolicyJson>,
    user_id_case: Option<CaseJson>,
    nickname_max_chars: Option<usize>,
    profile_url_max_chars: Option<usize>,
    metadata_max_bytes: Option<usize>,
    tags_max: Option<usize>,
    tag_max_chars: Option<usize>,
    role_max_chars: Option<usize>,
    status_message_max_chars: Option<usize>,
    link_max_chars: Option<usize>,
    email_max_chars: Option<usize>,
    mobile_max_digits: Option<usize>,
    discovery_keys_max: Option<usize>,
    discovery_key_max_chars: Option<usize>,
    devices_per_type_max: Option<usize>,
    push_token_max_chars: Option<usize>,
    os_version_max_chars: Option<usize>,
    profile_image_max_bytes: Option<usize>,
    image_url_base: Option<String>,
    access_tokens_per_user: Option<usize>,
    access_token_label_max_chars: Option<usize>,
    session_ttl_ms: Option<i64>,
    session_max_ttl_ms: Option<i64>,
    clock_skew_ms: Option<i64>,
    allow_id_only_login: Option<bool>,
    event_queue_capacity: Option<usize>,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum PolicyJson {
    Default,
    Strict,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum CaseJson {
    Preserve,
    Lowercase,
}

impl ConfigJson {
    fn into_config(self) -> Config {
        let mut c = Config::default();
        macro_rules! set {
            ($($field:ident),*) => { $( if let Some(v) = self.$field { c.$field = v; } )* };
        }
        set!(
            user_id_max_chars,
            nickname_max_chars,
            profile_url_max_chars,
            metadata_max_bytes,
            tags_max,
            tag_max_chars,
            role_max_chars,
            status_message_max_chars,
            link_max_chars,
            email_max_chars,
            mobile_max_digits,
            discovery_keys_max,
            discovery_key_max_chars,
            devices_per_type_max,
            push_token_max_chars,
            os_version_max_chars,
            profile_image_max_bytes,
            image_url_base,
            access_tokens_per_user,
            access_token_label_max_chars,
            session_ttl_ms,
            session_max_ttl_ms,
            clock_skew_ms,
            allow_id_only_login,
            event_queue_capacity
        );
        if let Some(p) = self.user_id_policy {
            c.user_id_policy = match p {
                PolicyJson::Default => UserIdPolicy::Default,
                PolicyJson::Strict => UserIdPolicy::Strict,
            };
        }
        if let Some(k) = self.user_id_case {
            c.user_id_case = match k {
                CaseJson::Preserve => UserIdCase::Preserve,
                CaseJson::Lowercase => UserIdCase::Lowercase,
            };
        }
        c
    }
}

/// Opens an engine that keeps its state in memory only, with the default configuration.
///
/// On success writes a new handle to `*out_engine`; free it with `tessera_engine_free`. On
/// failure `*out_engine` is left untouched. Returns `TESSERA_NULL_POINTER` when `out_engine`
/// is NULL. Thread-safe.
///
/// # Safety
/// `out_engine`, unless NULL, must be valid for one pointer write.
#[no_mangle]
pub unsafe extern "C" fn tessera_engine_open_in_memory(
    out_engine: *mut *mut tessera_engine,
) -> tessera_status {
    ffi_boundary!({
        non_null(out_engine, "out_engine")?;
        // SAFETY: checked non-NULL; the caller's contract.
        unsafe { give(Engine::in_memory()?, out_engine) }
    })
}

/// Opens an in-memory engine with a configuration given as a JSON object.
///
/// `config_json` (UTF-8, `config_len` bytes) holds any of the fields of the Rust
/// `tessera::Config`, by the same names; absent fields keep their documented defaults, e.g.
/// `{"allow_id_only_login": true, "access_tokens_per_user": 20}`.
/// `user_id_policy` is `"default"` or `"strict"`; `user_id_case` is `"preserve"` or
/// `"lowercase"`. Unknown fields fail with `TESSERA_INVALID_JSON`, out-of-range values with
/// `TESSERA_INVALID_ARGUMENT`. An empty input (NULL, 0) means the default configuration.
///
/// On success writes a new handle to `*out_engine` (free with `tessera_engine_free`); on
/// failure leaves it untouched. Thread-safe.
///
/// # Safety
/// `config_json` must be valid for `config_len` bytes (or NULL with 0); `out_engine`, unless
/// NULL, valid for one pointer write.
#[no_mangle]
pub unsafe extern "C" fn tessera_engine_open_in_memory_with_config(
    config_json: *const c_char,
    config_len: usize,
    out_engine: *mut *mut tessera_engine,
) -> tessera_status {
    ffi_boundary!({
        non_null(out_engine, "out_engine")?;
        let config = if config_json.is_null() && config_len == 0 {
            Config::default()
        } else {
            // SAFETY: the caller's contract.
            unsafe { json_in::<ConfigJson>(config_json, config_len, "config") }?.into_config()
        };
        let engine = Engine::builder().config(config).in_memory()?;
        // SAFETY: checked non-NULL; the caller's contract.
        unsafe { give(engine, out_engine) }
    })
}

// TODO(store): `tessera_engine_open(dir, dir_len, config_json, config_len, &engine)` wrapping
// the durable `Engine::open(dir)` once the store lands on main. Until then only in-memory
// engines can be opened from C.

/// Frees an engine handle and all its in-memory state. `tessera_engine_free(NULL)` does nothing.
///
/// No other call may be using `engine` (from any thread) while, or after, it is freed.
///
/// # Safety
/// `engine` must be NULL or a handle from `tessera_engine_open*` not yet freed.
#[no_mangle]
pub unsafe extern "C" fn tessera_engine_free(engine: *mut tessera_engine) {
    ffi_boundary!(value, (), {
        if !engine.is_null() {
            // SAFETY: made by Box::into_raw in an open function; the caller gives up ownership.
            drop(unsafe { Box::from_raw(engine) });
        }
    })
}

/// Writes the number of users to `*out_count`. Thread-safe.
///
/// # Safety
/// `engine` must be a live handle; `out_count`, unless NULL, valid for one write.
#[no_mangle]
pub unsafe extern "C" fn tessera_engine_user_count(
    engine: *const tessera_engine,
    out_count: *mut usize,
) -> tessera_status {
    ffi_boundary!({
        // SAFETY: the caller's contract.
        let e = unsafe { self::engine(engine) }?;
        non_null(out_count, "out_count")?;
        // SAFETY: checked non-NULL; the caller's contract.
        unsafe { write_out(out_count, e.user_count(), "out_count") }
    })
}
