//! `tessera_engine`: opening, configuring and freeing an engine.

use std::ffi::c_char;
use std::ptr::NonNull;

use serde::Deserialize;

use std::path::Path;
use std::time::Duration;

use super::boundary::Failure;
use super::io::{fail, write_out};
use super::owned::tessera_string;
use super::status::tessera_status::{self, *};
use crate::config::{Config, UserIdCase, UserIdPolicy};
use crate::engine::Engine;
use crate::store::SyncMode;

/// An engine handle. Opened with `tessera_engine_open_in_memory` (or
/// `tessera_engine_open_in_memory_with_config`), `tessera_engine_open` (durable, on a data
/// directory) or `tessera_engine_open_salvage` (read-only); freed with `tessera_engine_free`.
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
/// `engine`, unless NULL, must be a live handle from `tessera_engine_open*` for `'a`.
pub(crate) unsafe fn engine<'a>(engine: *const tessera_engine) -> Result<&'a Engine, Failure> {
    let engine = non_null!(engine)?;
    // SAFETY: the caller's contract: a live handle, shared (`&`) access only.
    Ok(unsafe { &engine.as_ref().engine })
}

/// Hands a new engine to the caller through `out_engine`, checked before the engine was built.
///
/// # Safety
/// `out_engine` must be valid for one pointer write.
unsafe fn give(engine: Engine, out_engine: NonNull<*mut tessera_engine>) -> Result<(), Failure> {
    let handle = Box::into_raw(Box::new(tessera_engine { engine }));
    // SAFETY: the caller's contract.
    unsafe { write_out(out_engine, handle) };
    Ok(())
}

/// Configuration as JSON: every field of `tessera::Config` is optional and defaults to its
/// documented default; `sync_mode` (durable opens only) is the builder's `SyncMode`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigJson {
    sync_mode: Option<SyncJson>,
    cluster: Option<ClusterJson>,
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

/// `"durable"` or `{"relaxed_ms": N}`.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum SyncJson {
    Durable,
    RelaxedMs(u64),
}

/// Cluster options (`tessera_engine_open_postgres` only); every field optional.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClusterJson {
    /// Milliseconds, or `null` to keep verifying through a partition.
    #[serde(default, deserialize_with = "present")]
    max_staleness_ms: Option<Option<u64>>,
    poll_interval_ms: Option<u64>,
    log_retention: Option<u64>,
}

/// Tells a present `null` (`Some(None)`) from an absent field (`None`, by `default`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<u64>>, D::Error> {
    Option::<u64>::deserialize(d).map(Some)
}

/// Longest relaxed sync interval accepted: beyond a minute "relaxed" is "unsynced".
const RELAXED_SYNC_MAX_MS: u64 = 60_000;

impl SyncJson {
    fn into_mode(self) -> Result<SyncMode, Failure> {
        match self {
            SyncJson::Durable => Ok(SyncMode::Durable),
            SyncJson::RelaxedMs(ms @ 1..=RELAXED_SYNC_MAX_MS) => {
                Ok(SyncMode::Relaxed(Duration::from_millis(ms)))
            }
            SyncJson::RelaxedMs(ms) => fail(
                TESSERA_INVALID_ARGUMENT,
                format!("sync_mode relaxed_ms must be 1..={RELAXED_SYNC_MAX_MS}, got {ms}"),
            ),
        }
    }
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
    /// The configuration and sync mode of `(config_json, config_len)`; (NULL, 0) is all
    /// defaults.
    ///
    /// # Safety
    /// As [`json_in`].
    unsafe fn parse(
        config_json: *const c_char,
        config_len: usize,
    ) -> Result<(Config, SyncMode), Failure> {
        // SAFETY: forwarded contract.
        let (config, sync, cluster) = unsafe { ConfigJson::parse_all(config_json, config_len) }?;
        if cluster.is_some() {
            return fail(
                TESSERA_INVALID_ARGUMENT,
                "cluster applies to tessera_engine_open_postgres only",
            );
        }
        Ok((config, sync))
    }

    /// [`ConfigJson::parse`], with the cluster options.
    ///
    /// # Safety
    /// As [`json_in`].
    unsafe fn parse_all(
        config_json: *const c_char,
        config_len: usize,
    ) -> Result<(Config, SyncMode, Option<ClusterJson>), Failure> {
        if config_json.is_null() && config_len == 0 {
            return Ok((Config::default(), SyncMode::default(), None));
        }
        // SAFETY: forwarded contract.
        let mut json: ConfigJson = unsafe { json_in!(config_json, config_len) }?;
        let sync = match json.sync_mode.take() {
            Some(s) => s.into_mode()?,
            None => SyncMode::default(),
        };
        let cluster = json.cluster.take();
        Ok((json.into_config(), sync, cluster))
    }

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
/// failure `*out_engine` is left untouched. Thread-safe.
///
/// Fails with `TESSERA_NULL_POINTER` if `out_engine` is NULL.
///
/// # Safety
/// `out_engine`, unless NULL, must be valid for one pointer write.
#[no_mangle]
pub unsafe extern "C" fn tessera_engine_open_in_memory(
    out_engine: *mut *mut tessera_engine,
) -> tessera_status {
    ffi_boundary!({
        let out_engine = non_null!(out_engine)?;
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
/// `"lowercase"`. Unknown fields and values of the wrong JSON type fail with
/// `TESSERA_INVALID_JSON`; out-of-range values and unknown enum values with
/// `TESSERA_INVALID_ARGUMENT`. An empty input (NULL, 0) means the default configuration.
/// `sync_mode` (see `tessera_engine_open`) is accepted only as `"durable"`, which an
/// in-memory engine trivially is.
///
/// On success writes a new handle to `*out_engine` (free with `tessera_engine_free`); on
/// failure leaves it untouched. Thread-safe.
///
/// Fails with `TESSERA_NULL_POINTER` if `out_engine` is NULL.
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
        let out_engine = non_null!(out_engine)?;
        // SAFETY: the caller's contract.
        let (config, sync) = unsafe { ConfigJson::parse(config_json, config_len) }?;
        if !matches!(sync, SyncMode::Durable) {
            return fail(
                TESSERA_INVALID_ARGUMENT,
                "sync_mode applies to durable engines (tessera_engine_open) only",
            );
        }
        let engine = Engine::builder().config(config).in_memory()?;
        // SAFETY: checked non-NULL; the caller's contract.
        unsafe { give(engine, out_engine) }
    })
}

/// A data directory argument: UTF-8, not empty, no NUL byte.
///
/// # Safety
/// As [`str_in`].
unsafe fn dir_in<'a>(dir: *const c_char, dir_len: usize) -> Result<&'a Path, Failure> {
    // SAFETY: forwarded contract.
    let dir = unsafe { str_in!(dir, dir_len) }?;
    if dir.is_empty() {
        return fail(TESSERA_INVALID_ARGUMENT, "dir is empty");
    }
    if dir.contains('\0') {
        return fail(TESSERA_INVALID_ARGUMENT, "dir contains a NUL byte");
    }
    Ok(Path::new(dir))
}

/// Opens (creating it if needed) a durable engine on the data directory `dir`.
///
/// `dir` (UTF-8, `dir_len` bytes, not NUL-terminated) is the directory path, relative to the
/// working directory or absolute; an empty path is `TESSERA_INVALID_ARGUMENT`. The state is
/// loaded from the newest snapshot and the journal, and every later change is journaled before
/// the call that made it returns.
///
/// `config_json` is as for `tessera_engine_open_in_memory_with_config` (NULL, 0 for the
/// defaults), plus one optional field, `sync_mode`:
/// - `"durable"` (the default): a write call returns after its record is synced with
///   `fdatasync`; concurrent writers share syncs. Nothing acknowledged is lost on power failure.
/// - `{"relaxed_ms": N}` (N in 1..=60000): a background thread syncs every N ms and write calls
///   return once the record is buffered; a crash or power failure loses at most the last N ms
///   of acknowledged writes, and the directory stays consistent.
///
/// Fails with `TESSERA_LOCKED` when another engine has `dir` open, in this process or another
/// (the lock is released by `tessera_engine_free`, or by the kernel when the process dies);
/// `TESSERA_CORRUPT` when stored data is damaged anywhere but in the torn final write (see
/// `tessera_engine_open_salvage`); `TESSERA_UNSUPPORTED_FORMAT` when a file's intact header
/// names a newer format version; `TESSERA_IO`. `tessera_engine_free` waits for a background
/// compaction still running, so a reopen right after it never sees `TESSERA_LOCKED`.
///
/// On success writes a new handle to `*out_engine` (free with `tessera_engine_free`, which
/// also releases the directory); on failure leaves it untouched. Thread-safe.
///
/// Fails with `TESSERA_NULL_POINTER` if `out_engine` is NULL.
///
/// # Safety
/// `dir` must be valid for `dir_len` bytes and `config_json` for `config_len` bytes (or NULL
/// with 0); `out_engine`, unless NULL, valid for one pointer write.
#[no_mangle]
pub unsafe extern "C" fn tessera_engine_open(
    dir: *const c_char,
    dir_len: usize,
    config_json: *const c_char,
    config_len: usize,
    out_engine: *mut *mut tessera_engine,
) -> tessera_status {
    ffi_boundary!({
        let out_engine = non_null!(out_engine)?;
        // SAFETY: the caller's contract, for this and every unsafe call below.
        let dir = unsafe { dir_in(dir, dir_len) }?;
        let (config, sync) = unsafe { ConfigJson::parse(config_json, config_len) }?;
        let engine = Engine::builder().config(config).sync_mode(sync).open(dir)?;
        unsafe { give(engine, out_engine) }
    })
}

/// Opens a damaged data directory read-only, to get out what is still readable.
///
/// Loads every record before the first damaged one and stops there; nothing on disk is changed.
/// Every write call on the engine fails with `TESSERA_READ_ONLY`; reads (get, list, verify,
/// `tessera_key_export`) work. Several salvage opens of one directory may coexist, but not
/// with a read-write `tessera_engine_open` (`TESSERA_LOCKED` either way round). A directory
/// that does not exist is `TESSERA_IO` (salvage creates nothing).
///
/// `dir` and `config_json` are as for `tessera_engine_open` (`sync_mode` is accepted and has
/// no effect: nothing is written). On success writes a new handle to `*out_engine` (free with
/// `tessera_engine_free`), and, if `out_damage` is not NULL, the damage that stopped loading
/// to `*out_damage` as `{"code": 51, "message": "..."}` (a `tessera_string` to free with
/// `tessera_string_free`), or NULL when the directory was intact. On failure neither is
/// written. Thread-safe.
///
/// Fails with `TESSERA_NULL_POINTER` if `out_engine` is NULL.
///
/// # Safety
/// As `tessera_engine_open`; `out_damage`, unless NULL, valid for one pointer write.
#[no_mangle]
pub unsafe extern "C" fn tessera_engine_open_salvage(
    dir: *const c_char,
    dir_len: usize,
    config_json: *const c_char,
    config_len: usize,
    out_engine: *mut *mut tessera_engine,
    out_damage: *mut *mut tessera_string,
) -> tessera_status {
    ffi_boundary!({
        let out_engine = non_null!(out_engine)?;
        // SAFETY: the caller's contract, for this and every unsafe call below.
        let dir = unsafe { dir_in(dir, dir_len) }?;
        let (config, sync) = unsafe { ConfigJson::parse(config_json, config_len) }?;
        let (engine, damage) = Engine::builder()
            .config(config)
            .sync_mode(sync)
            .open_salvage(dir)?;
        // The damage first: once the handle is written, nothing after it may fail.
        if let Some(out_damage) = NonNull::new(out_damage) {
            match damage {
                Some(err) => unsafe {
                    tessera_string::give_json(
                        &serde_json::json!({
                            "code": err.kind().code(),
                            "message": err.message(),
                        }),
                        out_damage,
                    )
                }?,
                None => unsafe { write_out(out_damage, std::ptr::null_mut()) },
            }
        }
        unsafe { give(engine, out_engine) }
    })
}

/// Writes a snapshot of the whole state and starts a fresh journal, so the next open replays
/// less, and deletes the files (and profile images no user refers to) that the snapshot makes
/// obsolete. Durable engines also compact on their own when the journal outgrows the last
/// snapshot; an in-memory engine does nothing here. Readers are never blocked, and writers wait
/// only for the switch to the new journal (a sync of the old one), not while the state is
/// copied out or the snapshot written. Fails with `TESSERA_READ_ONLY` on a salvage engine and
/// `TESSERA_IO` when a file cannot be written (nothing is lost: the journal still holds every
/// record). Thread-safe; concurrent compactions run one at a time.
///
/// Fails with `TESSERA_NULL_POINTER` if `engine` is NULL.
///
/// # Safety
/// `engine` must be a live handle.
#[no_mangle]
pub unsafe extern "C" fn tessera_engine_compact(engine: *const tessera_engine) -> tessera_status {
    ffi_boundary!({
        // SAFETY: the caller's contract.
        let e = unsafe { self::engine(engine) }?;
        Ok(e.compact()?)
    })
}

/// Writes the journal counters of a durable engine since it was opened, and what the open
/// found, to `*out_stats` (required) as a JSON object: `{"records_synced": N, "syncs": N,
/// "bytes_written": N, "torn_tail_bytes": N, "torn_tail_records": N}`, all zero for an
/// in-memory engine (a salvage engine writes nothing, so only the torn tail fields can be
/// non-zero). `records_synced / syncs` is how many writes shared each `fdatasync`.
/// `torn_tail_bytes` is the size of the torn tail (the last write, which was never fully
/// synced) that open cut off the newest journal, 0 when it ended cleanly; `torn_tail_records`
/// the records it held: the count in its batch header when that reached the disk intact,
/// otherwise 1 (a lower bound); at least 1 whenever there was a tail.
/// A cut also queues a `store_torn_tail` event. New counters may be added to the object;
/// ignore fields you do not know. Free the string with `tessera_string_free`. Thread-safe.
///
/// Fails with `TESSERA_NULL_POINTER` if `engine` or `out_stats` is NULL.
///
/// # Safety
/// `engine` must be a live handle; `out_stats`, unless NULL, valid for one pointer write.
#[no_mangle]
pub unsafe extern "C" fn tessera_engine_store_stats(
    engine: *const tessera_engine,
    out_stats: *mut *mut tessera_string,
) -> tessera_status {
    ffi_boundary!({
        // SAFETY: the caller's contract, for this and every unsafe call below.
        let e = unsafe { self::engine(engine) }?;
        let out_stats = non_null!(out_stats)?;
        let s = e.store_stats();
        let json = serde_json::json!({
            "records_synced": s.records_synced,
            "syncs": s.syncs,
            "bytes_written": s.bytes_written,
            "torn_tail_bytes": s.torn_tail_bytes,
            "torn_tail_records": s.torn_tail_records,
        });
        unsafe { tessera_string::give_json(&json, out_stats) }
    })
}

/// Writes a consistent copy of the engine's state into the directory `dir`, while other
/// threads keep reading and writing; the copy opens with `tessera_engine_open` like any data
/// directory.
///
/// `dir` (UTF-8, `dir_len` bytes, not NUL-terminated, relative or absolute) must not exist or
/// be an empty directory; its parent is created if missing. The copy holds the state at one
/// instant during the call (every write that returned before the call started, none started
/// after it returned), with the signing keys (the key file keeps mode 0600) and profile
/// images. A durable engine pauses writers only to sync its journal and start a new one, then
/// copies its files with no lock held (a compaction asked for meanwhile waits); a salvage
/// engine that found no damage copies its files as they are; an in-memory or cluster engine
/// (or a salvage one that stopped at damage) is copied into a new data directory from a
/// copy-on-write cut of its state, writers going on. The copy is built in a hidden temporary directory beside
/// `dir` (`.<name>.backup-*.tmp`) and renamed to `dir` last: after a crash or a failure
/// there is no partial backup at `dir` (a crash may leave the temporary directory, which can
/// be deleted).
///
/// If `out_stats` is not NULL, writes to `*out_stats` a JSON object `{"users": N, "files": N,
/// "bytes": N}` (users in the copy, files and bytes written; new fields may be added), a
/// `tessera_string` to free with `tessera_string_free`; on failure it is left untouched.
///
/// Fails with `TESSERA_INVALID_ARGUMENT` when `dir` is empty, contains a NUL byte, names no
/// directory entry (`/`, `..`), exists and is not an empty directory (a symbolic link
/// included), or is filled by someone else before the copy is renamed into it — `dir` is
/// left as it was; `TESSERA_IO` when a file cannot be written; `TESSERA_CORRUPT` when a
/// stored image or journal of the engine is damaged. On failure nothing is left behind.
/// Thread-safe.
///
/// Fails with `TESSERA_NULL_POINTER` if `engine` is NULL.
///
/// # Safety
/// `engine` must be a live handle; `dir` valid for `dir_len` bytes; `out_stats`, unless NULL,
/// valid for one pointer write.
#[no_mangle]
pub unsafe extern "C" fn tessera_engine_backup_to(
    engine: *const tessera_engine,
    dir: *const c_char,
    dir_len: usize,
    out_stats: *mut *mut tessera_string,
) -> tessera_status {
    ffi_boundary!({
        // SAFETY: the caller's contract, for this and every unsafe call below.
        let e = unsafe { self::engine(engine) }?;
        let dir = unsafe { dir_in(dir, dir_len) }?;
        let stats = e.backup_to(dir)?;
        let json = serde_json::json!({
            "users": stats.users,
            "files": stats.files,
            "bytes": stats.bytes,
        });
        unsafe { tessera_string::give_json_opt(&json, out_stats) }
    })
}

/// Opens a cluster node on a PostgreSQL database shared by every node of the chat service.
///
/// `conninfo` (UTF-8, `conninfo_len` bytes) is a libpq connection string, `host=… port=…
/// user=… dbname=…`, or a `postgresql://` URL. The schema is created on first use; the whole
/// state is loaded into memory, and the node then follows what other nodes commit (within
/// milliseconds; revocation events are raised on every node). Every write returns only after
/// its transaction committed in PostgreSQL; verification is served from memory.
///
/// `config_json` is as for `tessera_engine_open_in_memory_with_config` (NULL, 0 for the
/// defaults), plus one optional object, `cluster`:
/// - `max_staleness_ms` (default 5000): past this long without confirming it is caught up with
///   the database, the node refuses verification with `TESSERA_UNAVAILABLE` rather than accept
///   a token that may have been revoked on another node. `null` keeps verifying from memory
///   through a partition (available, but blind to revocations made elsewhere until it heals).
/// - `poll_interval_ms` (default 100): how often the node polls when no notification arrives.
/// - `log_retention` (default 100000): change-log entries kept behind the slowest node.
///
/// Fails with `TESSERA_UNAVAILABLE` when the database cannot be reached (or, in a library built
/// without the `postgres` feature, always); `TESSERA_UNSUPPORTED_FORMAT` when the database
/// holds a newer schema than this library knows; `TESSERA_INVALID_ARGUMENT` for a malformed
/// `conninfo` or an out-of-range option.
///
/// On success writes a new handle to `*out_engine` (free with `tessera_engine_free`); on
/// failure leaves it untouched. Thread-safe.
///
/// Fails with `TESSERA_NULL_POINTER` if `out_engine` is NULL.
///
/// # Safety
/// `conninfo` must be valid for `conninfo_len` bytes and `config_json` for `config_len` bytes
/// (or NULL with 0); `out_engine`, unless NULL, valid for one pointer write.
#[no_mangle]
pub unsafe extern "C" fn tessera_engine_open_postgres(
    conninfo: *const c_char,
    conninfo_len: usize,
    config_json: *const c_char,
    config_len: usize,
    out_engine: *mut *mut tessera_engine,
) -> tessera_status {
    ffi_boundary!({
        let out_engine = non_null!(out_engine)?;
        // SAFETY: the caller's contract, for this and every unsafe call below.
        let conninfo = unsafe { str_in!(conninfo, conninfo_len) }?;
        let (config, sync, cluster) = unsafe { ConfigJson::parse_all(config_json, config_len) }?;
        if !matches!(sync, SyncMode::Durable) {
            return fail(
                TESSERA_INVALID_ARGUMENT,
                "sync_mode applies to tessera_engine_open only; a cluster write commits",
            );
        }
        let engine = open_postgres(conninfo, config, cluster)?;
        unsafe { give(engine, out_engine) }
    })
}

#[cfg(feature = "postgres")]
fn open_postgres(
    conninfo: &str,
    config: Config,
    cluster: Option<ClusterJson>,
) -> Result<Engine, Failure> {
    Ok(Engine::builder()
        .config(config)
        .open_postgres(conninfo, cluster_options(cluster))?)
}

/// The cluster options of a configuration document: absent fields keep their defaults.
#[cfg(feature = "postgres")]
fn cluster_options(cluster: Option<ClusterJson>) -> crate::ClusterOptions {
    let mut options = crate::ClusterOptions::default();
    if let Some(c) = cluster {
        if let Some(max) = c.max_staleness_ms {
            options = options.max_staleness(max.map(Duration::from_millis));
        }
        if let Some(ms) = c.poll_interval_ms {
            options = options.poll_interval(Duration::from_millis(ms));
        }
        if let Some(n) = c.log_retention {
            options = options.log_retention(n);
        }
    }
    options
}

/// A configuration document, read as the C ABI reads `config_json`
/// ([`parse_config_document`]).
#[derive(Clone, Debug)]
pub struct ConfigDocument {
    /// Every limit and default; absent fields keep [`Config::default`]'s.
    pub config: Config,
    /// `sync_mode`, for durable opens; [`SyncMode::default`] when absent.
    pub sync_mode: SyncMode,
    /// Whether the document has a `cluster` object (which only cluster opens accept).
    pub has_cluster: bool,
    /// `cluster`, for cluster opens; defaults when absent.
    #[cfg(feature = "postgres")]
    pub cluster: crate::ClusterOptions,
}

/// Reads a configuration document — the JSON a C or Python server passes as `config_json` to
/// `tessera_engine_open` / `tessera_engine_open_postgres` — with exactly the C ABI's rules
/// (unknown fields refused, ranges checked), so a Rust program such as the `tessera` command
/// (`--config FILE`) opens a store under the same limits as the server that owns it.
/// A malformed document fails with [`ErrorKind::InvalidArgument`]
/// (the C ABI's `TESSERA_INVALID_JSON` has no Rust kind), an invalid value as the C ABI does.
pub fn parse_config_document(json: &[u8]) -> crate::Result<ConfigDocument> {
    // SAFETY: a slice is valid for its length (and never NULL).
    let parsed = unsafe { ConfigJson::parse_all(json.as_ptr().cast(), json.len()) };
    let (config, sync_mode, cluster) = parsed.map_err(|f| {
        let kind = crate::ErrorKind::from_code(f.status as u32)
            .unwrap_or(crate::ErrorKind::InvalidArgument);
        crate::Error::new(kind, f.message)
    })?;
    config.validate()?;
    Ok(ConfigDocument {
        config,
        sync_mode,
        has_cluster: cluster.is_some(),
        #[cfg(feature = "postgres")]
        cluster: cluster_options(cluster),
    })
}

#[cfg(not(feature = "postgres"))]
fn open_postgres(
    _conninfo: &str,
    _config: Config,
    _cluster: Option<ClusterJson>,
) -> Result<Engine, Failure> {
    fail(
        TESSERA_UNAVAILABLE,
        "this library was built without the postgres feature (cluster mode)",
    )
}

/// Copies the whole state of `source` into `engine`, which must be new (no user was ever
/// created in it): users with their access tokens, devices, session epochs and profile
/// images, the signing keys (issued session tokens keep verifying) and the id counters. This
/// moves a single node's data directory into a cluster (`engine` from
/// `tessera_engine_open_postgres`, `source` from `tessera_engine_open`) and backs a cluster up
/// into a data directory (the other way round). Writes the number of users to `*out_users`
/// unless it is NULL.
///
/// Fails with `TESSERA_INVALID_ARGUMENT` when `engine` already had users. Thread-safe.
///
/// Fails with `TESSERA_NULL_POINTER` if `engine` or `source` is NULL.
///
/// # Safety
/// `engine` and `source` must be live handles; `out_users`, unless NULL, valid for one write.
#[no_mangle]
pub unsafe extern "C" fn tessera_engine_import_from(
    engine: *const tessera_engine,
    source: *const tessera_engine,
    out_users: *mut usize,
) -> tessera_status {
    ffi_boundary!({
        // SAFETY: the caller's contract.
        let e = unsafe { self::engine(engine) }?;
        let source = non_null!(source)?;
        // SAFETY: the caller's contract: a live handle, shared access only.
        let source = unsafe { &source.as_ref().engine };
        let users = e.import_from(source)?;
        if let Some(out) = NonNull::new(out_users) {
            // SAFETY: non-NULL; the caller's contract.
            unsafe { out.as_ptr().write(users) };
        }
        Ok(())
    })
}

/// Frees an engine handle and all its in-memory state. `tessera_engine_free(NULL)` does nothing.
///
/// A durable engine first waits for a background compaction it started to finish, syncs what a
/// relaxed `sync_mode` still buffers, then releases its data directory before returning. A
/// failure of that last sync cannot be reported: use `"durable"` sync when every acknowledged
/// write matters.
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
/// Fails with `TESSERA_NULL_POINTER` if `engine` or `out_count` is NULL.
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
        let out_count = non_null!(out_count)?;
        // SAFETY: checked non-NULL; the caller's contract.
        unsafe { write_out(out_count, e.user_count()) };
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dir(std::path::PathBuf);
    impl Dir {
        fn new(name: &str) -> Dir {
            let p = std::env::temp_dir().join(format!("tessera-ffi-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            Dir(p)
        }
        fn as_str(&self) -> &str {
            self.0.to_str().unwrap()
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// `tessera_engine_open` on `dir` with `config`; the handle is freed at once.
    fn open(dir: &str, config: &str) -> tessera_status {
        let mut e: *mut tessera_engine = std::ptr::null_mut();
        let (cp, cl) = if config.is_empty() {
            (std::ptr::null(), 0)
        } else {
            (config.as_ptr().cast(), config.len())
        };
        // SAFETY: valid inputs for their lengths and a valid out-pointer.
        let st = unsafe { tessera_engine_open(dir.as_ptr().cast(), dir.len(), cp, cl, &mut e) };
        assert_eq!(st == TESSERA_OK, !e.is_null());
        // SAFETY: NULL or the handle just opened.
        unsafe { tessera_engine_free(e) };
        st
    }

    #[test]
    fn sync_mode_is_parsed_and_bounded() {
        let dir = Dir::new("sync");
        for ok in [
            "",
            r#"{"sync_mode": "durable"}"#,
            r#"{"sync_mode": {"relaxed_ms": 1}}"#,
            r#"{"sync_mode": {"relaxed_ms": 60000}, "tags_max": 3}"#,
        ] {
            assert_eq!(open(dir.as_str(), ok), TESSERA_OK, "{ok}");
        }
        for (bad, st) in [
            (
                r#"{"sync_mode": {"relaxed_ms": 0}}"#,
                TESSERA_INVALID_ARGUMENT,
            ),
            (
                r#"{"sync_mode": {"relaxed_ms": 60001}}"#,
                TESSERA_INVALID_ARGUMENT,
            ),
            // Well-formed, with a value not allowed: an unknown mode, a negative interval.
            (r#"{"sync_mode": "relaxed"}"#, TESSERA_INVALID_ARGUMENT),
            (
                r#"{"sync_mode": {"relaxed_ms": -1}}"#,
                TESSERA_INVALID_ARGUMENT,
            ),
            (r#"{"sync_mode": {"relaxed": 5}}"#, TESSERA_INVALID_ARGUMENT),
            // Not the shape of a mode.
            (r#"{"sync_mode": 5}"#, TESSERA_INVALID_JSON),
            (
                r#"{"sync_mode": {"relaxed_ms": "5"}}"#,
                TESSERA_INVALID_JSON,
            ),
        ] {
            assert_eq!(open(dir.as_str(), bad), st, "{bad}");
        }
        assert_eq!(open("", ""), TESSERA_INVALID_ARGUMENT);
        assert_eq!(open("a\0b", ""), TESSERA_INVALID_ARGUMENT);
    }

    /// `tessera_engine_free` waits for a background compaction the engine started, so the
    /// next open never finds the directory locked.
    #[test]
    fn free_waits_for_a_background_compaction() {
        let dir = Dir::new("free-compaction");
        // Every write whose journal has outgrown the snapshot starts a background compaction.
        crate::store::set_compaction_min_journal_bytes_for_tests(0);
        let d = dir.as_str();
        for cycle in 0..100 {
            let mut e: *mut tessera_engine = std::ptr::null_mut();
            // SAFETY: valid inputs for their lengths and a valid out-pointer.
            let st = unsafe {
                tessera_engine_open(d.as_ptr().cast(), d.len(), std::ptr::null(), 0, &mut e)
            };
            assert_eq!(st, TESSERA_OK, "cycle {cycle}");
            let user = r#"{"user_id": "u", "nickname": ""}"#;
            // SAFETY: a live handle and valid inputs; the out-pointers may be NULL.
            let st = unsafe {
                crate::ffi::user::tessera_user_upsert(
                    e,
                    user.as_ptr().cast(),
                    user.len(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                )
            };
            assert_eq!(st, TESSERA_OK, "cycle {cycle}");
            // Two long nicknames outgrow a snapshot of one user.
            for i in 0..3 {
                let patch = format!(r#"{{"nickname": "{cycle}.{i} {}"}}"#, "n".repeat(70));
                // SAFETY: a live handle and valid inputs; the out-pointer may be NULL.
                let st = unsafe {
                    crate::ffi::user::tessera_user_update(
                        e,
                        "u".as_ptr().cast(),
                        1,
                        patch.as_ptr().cast(),
                        patch.len(),
                        std::ptr::null_mut(),
                    )
                };
                assert_eq!(st, TESSERA_OK, "cycle {cycle}");
            }
            // SAFETY: the handle just opened, used by nothing else.
            unsafe { tessera_engine_free(e) };
        }
        let snapshots = std::fs::read_dir(&dir.0)
            .unwrap()
            .filter(|f| {
                let name = f.as_ref().unwrap().file_name();
                name.to_str().unwrap().starts_with("snapshot-")
            })
            .count();
        assert_eq!(snapshots, 1);
    }

    #[test]
    fn in_memory_config_takes_only_durable_sync() {
        let mut e: *mut tessera_engine = std::ptr::null_mut();
        for (json, want) in [
            (r#"{"sync_mode": "durable"}"#, TESSERA_OK),
            (
                r#"{"sync_mode": {"relaxed_ms": 5}}"#,
                TESSERA_INVALID_ARGUMENT,
            ),
        ] {
            // SAFETY: valid inputs and out-pointer; the handle is freed below.
            let st = unsafe {
                tessera_engine_open_in_memory_with_config(json.as_ptr().cast(), json.len(), &mut e)
            };
            assert_eq!(st, want, "{json}");
            // SAFETY: NULL or a live handle.
            unsafe { tessera_engine_free(std::mem::replace(&mut e, std::ptr::null_mut())) };
        }
    }
}
