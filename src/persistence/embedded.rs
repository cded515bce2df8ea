//! The embedded store (`crate::store`, a data directory) as the engine's persistence hook, and the durable constructors
//! ([`Engine::open`], [`EngineBuilder::open`], salvage).
//!
//! Records are [`Mutation`]s serialised with postcard (compact, serde, no schema in the data):
//! journals hold the mutations as they happen, snapshots hold the state as of the journal
//! switch that `Engine::begin_copy` reads out (counters, then one `UserRestored` per user).
//! Both replay through [`Engine::replay`], the engine's own apply path, so recovery cannot
//! drift from live behaviour.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use ring::rand::SystemRandom;
use zeroize::Zeroizing;

use crate::engine::{Engine, EngineBuilder};
use crate::error::{Error, ErrorKind, Result};
use crate::event::EventKind;
use crate::key_ring::{KeyRing, RetiredKeys, StoredKey, StoredKeyRing};
use crate::mutation::Mutation;
use crate::persistence::{BackupStats, Persistence};
use crate::store::{LockedDir, Origin, Store, StoreOptions, StoreStats, SyncMode, Ticket};

/// The journal-and-snapshot persistence of a durable engine.
struct DurableStore {
    /// Set once replay has finished; replay itself never journals.
    store: OnceLock<Store>,
    /// One compaction at a time (explicit or automatic).
    compaction: Mutex<()>,
    background_compaction: Arc<AtomicBool>,
    /// The thread of the last background compaction, joined by [`Persistence::close`].
    background_thread: Mutex<Option<JoinHandle<()>>>,
    /// A salvage open stopped at damage: what it loaded is less than its files hold.
    salvage_damage: AtomicBool,
}

impl DurableStore {
    fn store(&self) -> Result<&Store> {
        self.store
            .get()
            .ok_or_else(|| Error::new(ErrorKind::Internal, "store used before it was opened"))
    }
}

fn encode_error(e: postcard::Error) -> Error {
    Error::new(
        ErrorKind::Internal,
        format!("serialising a store record: {e}"),
    )
}

fn serialize_into<T: serde::Serialize>(value: &T, buf: &mut Vec<u8>) -> Result<()> {
    postcard::to_io(value, buf)
        .map(|_| ())
        .map_err(encode_error)
}

impl Persistence for DurableStore {
    fn append(&self, mutation: &Mutation) -> Result<u64> {
        let Ticket(t) = self
            .store()?
            .append_with(|buf| serialize_into(mutation, buf))?;
        Ok(t)
    }

    fn wait(&self, ticket: u64) -> Result<()> {
        self.store()?.wait(Ticket(ticket))
    }

    fn synced(&self) -> u64 {
        // Before the store is set, the engine is replaying: nothing carries a ticket yet.
        self.store.get().map_or(u64::MAX, Store::synced)
    }

    fn readable(&self) -> u64 {
        self.store.get().map_or(u64::MAX, Store::readable)
    }

    fn sync_through(&self, ticket: u64) -> Result<()> {
        self.store()?.sync_through(Ticket(ticket))
    }

    fn put_blob(&self, sha256: &[u8; 32], bytes: &[u8]) -> Result<()> {
        self.store()?.put_blob(sha256, bytes)
    }

    fn get_blob(&self, sha256: &[u8; 32]) -> Result<Option<Vec<u8>>> {
        self.store()?.get_blob(sha256)
    }

    fn save_keys(&self, keys: &StoredKeyRing) -> Result<()> {
        let mut buf = Zeroizing::new(Vec::new());
        serialize_into(keys, &mut buf)?;
        self.store()?.write_key_ring(&buf)
    }

    fn stats(&self) -> StoreStats {
        self.store().map(Store::stats).unwrap_or_default()
    }

    fn maintain(&self, engine: &Engine) {
        let Ok(store) = self.store() else { return };
        if !store.wants_compaction() || self.background_compaction.swap(true, Ordering::AcqRel) {
            return;
        }
        // Not a user handle: the user's last handle going away joins this thread (`close`)
        // instead of this thread keeping the engine, and its directory lock, alive.
        let engine = engine.background_handle();
        let running = Arc::clone(&self.background_compaction);
        let spawned = std::thread::Builder::new()
            .name("tessera-compaction".into())
            .spawn(move || {
                // A failure loses nothing (the journals still hold every record); it is retried
                // once the journal has grown again.
                let _ = engine.compact();
                drop(engine);
                running.store(false, Ordering::Release);
            });
        match spawned {
            Ok(thread) => {
                // The previous thread has cleared `running`, so it is finishing or finished.
                let previous = self.background_thread.lock().replace(thread);
                if let Some(previous) = previous {
                    let _ = previous.join();
                }
            }
            Err(_) => self.background_compaction.store(false, Ordering::Release),
        }
    }

    fn close(&self) {
        let thread = self.background_thread.lock().take();
        if let Some(thread) = thread {
            // The compaction thread holds no user handle, so this never runs on it; checked
            // anyway, as joining itself would deadlock.
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
    }

    fn backup_files(
        &self,
        engine: &Engine,
        to: &Path,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Option<BackupStats>> {
        let store = self.store()?;
        // Compaction deletes the files a new snapshot makes obsolete and collects images no
        // user names: kept away until the copy is done (it waits; writers do not).
        let _no_compaction = self.compaction.lock();
        let (source, users, keys) = if store.is_read_only() {
            if self.salvage_damage.load(Ordering::Acquire) {
                // The files hold damage the open stopped at: copy the state it loaded.
                return Ok(None);
            }
            // Nothing can write while this open holds its shared lock: the files are the
            // state, as they are.
            let source = store.read_only_backup_source()?;
            (source, engine.user_count(), engine.stored_keys())
        } else {
            engine.with_writers_paused(|| {
                Ok((
                    store.begin_backup()?,
                    engine.user_count(),
                    engine.stored_keys(),
                ))
            })?
        };
        let mut ring = Zeroizing::new(Vec::new());
        serialize_into(&keys, &mut ring)?;
        let blobs = store.blob_addresses()?;
        let copied = source.copy_into(to, &ring, &blobs, |sha| store.get_blob(sha), progress)?;
        Ok(Some(BackupStats {
            users,
            files: copied.files,
            bytes: copied.bytes,
        }))
    }

    fn compact(&self, engine: &Engine) -> Result<()> {
        let store = self.store()?;
        let _one = self.compaction.lock();
        // Blobs last written before `cutoff` and referenced neither by the snapshot nor by a
        // record written since its cut are collected. Listed before the cut: a blob written
        // later is not a candidate, and the grace period covers a write that stored its blob
        // but had not yet appended its record when the copy was cut.
        let cutoff = SystemTime::now()
            .checked_sub(blob_grace())
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let stored_blobs = store.blob_addresses()?;
        // The new journal and the snapshot's file are created first, without the writer
        // mutex; under it, only the old journal is synced and the new one takes over. The
        // copy is of the state at that instant, read while writers go on.
        let started = store
            .prepare_compaction()
            .and_then(|prepared| match prepared {
                Some(p) => engine.begin_copy(|| p.switch().map(Some)),
                None => Ok(None),
            });
        let (mut compaction, copy) = match started {
            Ok(Some(started)) => started,
            Ok(None) => return Ok(()), // another compaction is running
            Err(e) => {
                store.compaction_failed();
                return Err(e);
            }
        };
        #[cfg(feature = "fault-injection")]
        crate::fault::at_compaction_stage(store.dir(), crate::fault::CompactionStage::Switched);
        let mut referenced = HashSet::new();
        let mut buf = Vec::new();
        #[cfg(feature = "fault-injection")]
        let mut half = Some(copy.handles() / 2);
        let copied = copy.for_each(|m| {
            #[cfg(feature = "fault-injection")]
            if let (Mutation::UserRestored { handle, .. }, Some(h)) = (m, half) {
                if *handle >= h {
                    half = None;
                    crate::fault::at_compaction_stage(
                        store.dir(),
                        crate::fault::CompactionStage::MidCopy,
                    );
                }
            }
            if let Mutation::UserRestored { record, .. } = m {
                if let Some(sha) = record.profile_url.as_deref().and_then(blob_address_in) {
                    referenced.insert(sha);
                }
            }
            buf.clear();
            serialize_into(m, &mut buf)?;
            compaction.write(&buf)
        });
        let finished = copied.and_then(|()| {
            compaction.finish_with(|| {
                #[cfg(feature = "fault-injection")]
                crate::fault::at_compaction_stage(
                    store.dir(),
                    crate::fault::CompactionStage::SnapshotRenamed,
                );
            })
        });
        match finished {
            Ok(bytes) => {
                store.compaction_finished(bytes);
                // The copy is still registered, so records written until now are known.
                for sha in stored_blobs.iter().filter(|s| !referenced.contains(*s)) {
                    if !copy.image_named_since_cut(sha) {
                        store.collect_blob(sha, cutoff)?;
                    }
                }
                Ok(())
            }
            Err(e) => {
                store.compaction_failed();
                Err(e)
            }
        }
    }
}

/// Total size of the snapshots and journals in `dir` (what an open can replay), 0 when it
/// cannot be listed (the open itself then reports why).
fn stored_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with("snapshot-") || name.starts_with("journal-")
        })
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .fold(0, u64::saturating_add)
}

/// How long a stored blob is safe from collection: longer than any write can take between
/// storing its image and appending the record that points at it.
const BLOB_GRACE: Duration = Duration::from_secs(10 * 60);

#[cfg(not(test))]
fn blob_grace() -> Duration {
    BLOB_GRACE
}

#[cfg(test)]
thread_local! {
    static BLOB_GRACE_FOR_TESTS: std::cell::Cell<Duration> = const { std::cell::Cell::new(BLOB_GRACE) };
}

/// Lets a test collect blobs it has just written (per thread, like the compaction threshold).
#[cfg(test)]
pub(crate) fn set_blob_grace_for_tests(grace: Duration) {
    BLOB_GRACE_FOR_TESTS.with(|g| g.set(grace));
}

#[cfg(test)]
fn blob_grace() -> Duration {
    BLOB_GRACE_FOR_TESTS.with(|g| g.get())
}

/// The blob a profile URL points at: its first run of 64 hex digits. Any such run counts, not
/// only URLs under the configured image base, so changing `image_url_base` between runs can
/// never get a referenced image collected.
pub(crate) fn blob_address_in(url: &str) -> Option<[u8; 32]> {
    let b = url.as_bytes();
    let mut run = 0;
    for (i, c) in b.iter().enumerate() {
        run = if c.is_ascii_hexdigit() { run + 1 } else { 0 };
        if run == 64 && b.get(i + 1).is_none_or(|n| !n.is_ascii_hexdigit()) {
            let hex = &url[i + 1 - 64..=i];
            let mut out = [0u8; 32];
            for (j, byte) in out.iter_mut().enumerate() {
                *byte = u8::from_str_radix(&hex[2 * j..2 * j + 2], 16).ok()?;
            }
            return Some(out);
        }
    }
    None
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    postcard::from_bytes(bytes).map_err(|e| {
        Error::new(
            ErrorKind::Corrupt,
            format!("a {what} record passed its checksum but does not decode ({e})"),
        )
    })
}

/// Decodes the key file's record. `StoredKeyRing` is written field by field, and files from
/// before retired keys were kept hold only its first two fields: read those, then the
/// retired keys if anything follows. (An older release reading a newer file stops after the
/// second field, so it keeps its live keys and forgets only the retired ones.)
pub(crate) fn decode_key_ring(bytes: &[u8]) -> Result<StoredKeyRing> {
    let corrupt = |e: postcard::Error| {
        Error::new(
            ErrorKind::Corrupt,
            format!("a key ring record passed its checksum but does not decode ({e})"),
        )
    };
    let ((keys, next_number), rest) =
        postcard::take_from_bytes::<(Vec<StoredKey>, u32)>(bytes).map_err(corrupt)?;
    let retired = if rest.is_empty() {
        RetiredKeys::default()
    } else {
        postcard::from_bytes(rest).map_err(corrupt)?
    };
    Ok(StoredKeyRing {
        keys,
        next_number,
        retired,
    })
}

impl EngineBuilder {
    /// When writes reach the disk in a durable engine. Default [`SyncMode::Durable`].
    pub fn sync_mode(mut self, mode: SyncMode) -> EngineBuilder {
        self.sync = mode;
        self
    }

    /// A durable engine on the data directory `dir`, created if missing: loads the newest
    /// snapshot, replays the journal, and journals every later change before the call that made
    /// it returns. Fails with [`ErrorKind::Locked`] if another engine has `dir` open.
    ///
    /// The directory stays locked until the last handle is dropped; that drop waits for a
    /// background compaction still running, so a reopen right after it never sees
    /// [`ErrorKind::Locked`].
    pub fn open(self, dir: impl AsRef<Path>) -> Result<Engine> {
        self.open_dir(dir.as_ref(), false).map(|(e, _)| e)
    }

    /// A read-only engine on a damaged data directory: loads every record before the first
    /// damaged one and stops there. Returns the engine (whose writes fail with
    /// [`ErrorKind::ReadOnly`]) and the damage that stopped loading, or `None` when the
    /// directory was intact. Nothing on disk is changed; export what is needed, then repair.
    pub fn open_salvage(self, dir: impl AsRef<Path>) -> Result<(Engine, Option<Error>)> {
        self.open_dir(dir.as_ref(), true)
    }

    fn open_dir(self, dir: &Path, salvage: bool) -> Result<(Engine, Option<Error>)> {
        self.config.validate()?;
        let locked = LockedDir::acquire(dir, salvage)?;
        let keys = match locked.read_key_ring()? {
            Some(bytes) => KeyRing::from_stored(&decode_key_ring(&bytes)?)?,
            None => {
                let ring = KeyRing::generate(&SystemRandom::new(), self.clock.now_ms())?;
                if !salvage {
                    let mut buf = Zeroizing::new(Vec::new());
                    serialize_into(&ring.to_stored(), &mut buf)?;
                    locked.write_key_ring(&buf)?;
                }
                ring
            }
        };
        let durable = Arc::new(DurableStore {
            store: OnceLock::new(),
            compaction: Mutex::new(()),
            background_compaction: Arc::new(AtomicBool::new(false)),
            background_thread: Mutex::new(None),
            salvage_damage: AtomicBool::new(false),
        });
        let engine = Engine::assemble(self.config, self.clock, durable.clone(), keys);
        let opts = StoreOptions { sync: self.sync };
        engine.set_presize_budget(stored_bytes(dir));
        let (store, recovery) = Store::open_locked(locked, opts, |origin, bytes| {
            let what = match origin {
                Origin::Snapshot => "snapshot",
                Origin::Journal => "journal",
            };
            engine.replay(decode::<Mutation>(bytes, what)?)
        })?;
        engine.set_presize_budget(0);
        if durable.store.set(store).is_err() {
            return Err(Error::new(ErrorKind::Internal, "store opened twice"));
        }
        if recovery.torn_bytes > 0 {
            engine.event(EventKind::StoreTornTail, None, None, None);
        }
        if recovery.salvage_stopped_at.is_some() {
            durable.salvage_damage.store(true, Ordering::Release);
        }
        Ok((engine, recovery.salvage_stopped_at))
    }
}

impl Engine {
    /// A durable engine on `dir` with the default configuration, system clock and
    /// [`SyncMode::Durable`]; see [`EngineBuilder::open`].
    ///
    /// ```
    /// use tessera::{Engine, NewUser};
    /// let dir = std::env::temp_dir().join(format!("tessera-doc-{}", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// {
    ///     let engine = Engine::open(&dir)?;
    ///     engine.create_user(NewUser::new("alice", "Alice"))?;
    /// } // dropped: the directory is unlocked
    /// let engine = Engine::open(&dir)?;
    /// assert_eq!(engine.get_user("alice")?.nickname, "Alice");
    /// # drop(engine); std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok::<(), tessera::Error>(())
    /// ```
    pub fn open(dir: impl AsRef<Path>) -> Result<Engine> {
        Engine::builder().open(dir)
    }

    /// A read-only salvage open with the defaults; see [`EngineBuilder::open_salvage`].
    pub fn open_salvage(dir: impl AsRef<Path>) -> Result<(Engine, Option<Error>)> {
        Engine::builder().open_salvage(dir)
    }
}
