//! Events: revocations and store notices.

use super::engine::{engine, tessera_engine};
use super::io::{fail, write_out};
use super::owned::tessera_string;
use super::status::tessera_status::{self, TESSERA_INVALID_ARGUMENT};

/// Most events one `tessera_event_drain` call may take.
pub const TESSERA_EVENT_DRAIN_MAX: usize = 65536;

/// Takes up to `max` (1..=`TESSERA_EVENT_DRAIN_MAX`) queued events, oldest first, and
/// writes them as a JSON array to `*out_events` (required; `[]` when there are none). Each event
/// is `{"seq": 1, "kind": "sessions_revoked", "code": 4, "user_id": "alice" or null,
/// "token_id": 3 or null, "key_id": "a" or null, "at_ms": ...}`. Kinds and codes:
/// `access_token_evicted` 1, `access_token_revoked` 2, `access_tokens_revoked` 3,
/// `sessions_revoked` 4, `user_deleted` 5, `user_deactivated` 6, `key_retired` 7,
/// `all_sessions_revoked` 8, `store_torn_tail` 9 (queued at open when a torn final write was
/// cut off the journal; sizes in `tessera_engine_store_stats`); new kinds may appear.
///
/// Each event is delivered to exactly one drain call, even with several threads draining.
/// Thread-safe.
///
/// Fails with `TESSERA_NULL_POINTER` if `engine` or `out_events` is NULL.
///
/// # Safety
/// `out_events` valid for one pointer write; `engine` a live handle.
#[no_mangle]
pub unsafe extern "C" fn tessera_event_drain(
    engine: *const tessera_engine,
    max: usize,
    out_events: *mut *mut tessera_string,
) -> tessera_status {
    ffi_boundary!({
        // SAFETY: the caller's contract, for this and every unsafe call below.
        let e = unsafe { self::engine(engine) }?;
        if !(1..=TESSERA_EVENT_DRAIN_MAX).contains(&max) {
            return fail(
                TESSERA_INVALID_ARGUMENT,
                format!("max must be 1..={TESSERA_EVENT_DRAIN_MAX}, got {max}"),
            );
        }
        let out_events = non_null!(out_events)?;
        let events: Vec<serde_json::Value> = e
            .drain_events(max)
            .into_iter()
            .map(|ev| {
                serde_json::json!({
                    "seq": ev.seq,
                    "kind": ev.kind.as_str(),
                    "code": ev.kind.code(),
                    "user_id": ev.user_id,
                    "token_id": ev.token_id,
                    "key_id": ev.key_id,
                    "at_ms": ev.at_ms,
                })
            })
            .collect();
        unsafe { tessera_string::give_json(&events, out_events) }
    })
}

/// Writes to `*out_count` how many events were dropped because the queue was full (the
/// `event_queue_capacity` setting) since the engine was opened. Thread-safe.
///
/// Fails with `TESSERA_NULL_POINTER` if `engine` or `out_count` is NULL.
///
/// # Safety
/// `out_count` valid for one write; `engine` a live handle.
#[no_mangle]
pub unsafe extern "C" fn tessera_event_dropped_count(
    engine: *const tessera_engine,
    out_count: *mut u64,
) -> tessera_status {
    ffi_boundary!({
        // SAFETY: the caller's contract, for this and every unsafe call below.
        let e = unsafe { self::engine(engine) }?;
        let out_count = non_null!(out_count)?;
        unsafe { write_out(out_count, e.dropped_events()) };
        Ok(())
    })
}
