//! The durable embedded store: a data directory holding a journal of records, periodic
//! snapshots, content-addressed blobs and the key file.
//!
//! The store deals in opaque byte records; the engine decides what they mean. Layout of a data
//! directory:
//!
//! ```text
//! LOCK                               advisory lock: one read-write open at a time
//! snapshot-<generation:016x>.tss     state as of the start of journal <generation>
//! journal-<generation:016x>.tsj      records appended since then, one checksummed batch per
//!                                    group commit (format 2, `batch`; format 1 is only read)
//! images/<sha256 hex>                profile images
//! keys                               signing key ring (mode 0600)
//! *.tmp, images/*.tmp                debris of an interrupted write, removed on open only
//! ```
//!
//! Compaction first starts journal G+1 (after syncing journal G), then writes snapshot G+1 of
//! the state at that instant, then deletes everything older. A crash at any step leaves either
//! the old snapshot with journals G and G+1, or the new snapshot with journal G+1 — both
//! complete. Open picks the newest snapshot, replays the journals from its generation on, and
//! deletes what is older.

// Everything here is std file I/O; the store needs no unsafe code (File::try_lock is flock).
#![forbid(unsafe_code)]

mod atomic_file;
mod backup;
mod batch;
mod blobs;
mod dir_lock;
mod frame;
mod journal;
mod key_file;
mod snapshot;

use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::{Mutex, RwLock};
use zeroize::Zeroizing;

use crate::error::{Error, ErrorKind, Result};
use atomic_file::{create_private, sync_dir, temp_path_for, TMP_SUFFIX};
pub(crate) use backup::{sync_dir_of, sync_tree};
use batch::{BatchCursor, BatchEnd, PRELUDE_LEN};
use blobs::BlobStore;
use dir_lock::DirLock;
use frame::{
    corrupt_error, encode_header, parse_header_version, scan_frames, FileKind, ScanEnd, HEADER_LEN,
    JOURNAL_VERSION_BATCHES, JOURNAL_VERSION_RECORDS,
};
use journal::Journal;
pub use journal::StoreStats;
pub use journal::SyncMode;
pub(crate) use journal::Ticket;
use snapshot::{read_snapshot, SnapshotWriter};

const JOURNAL_PREFIX: &str = "journal-";
const JOURNAL_SUFFIX: &str = ".tsj";
const SNAPSHOT_PREFIX: &str = "snapshot-";
const SNAPSHOT_SUFFIX: &str = ".tss";

/// A journal smaller than this is never worth compacting, whatever the snapshot size.
pub(crate) const COMPACTION_MIN_JOURNAL_BYTES: u64 = 16 << 20;

#[cfg(not(test))]
fn compaction_min_journal_bytes() -> u64 {
    COMPACTION_MIN_JOURNAL_BYTES
}

#[cfg(test)]
thread_local! {
    static COMPACTION_MIN_FOR_TESTS: std::cell::Cell<u64> =
        const { std::cell::Cell::new(COMPACTION_MIN_JOURNAL_BYTES) };
}

/// Lets a test see automatic compaction without writing 16 MiB. Per thread (the decision is
/// made on the writing thread), so tests running alongside are not slowed by compactions they
/// did not ask for.
#[cfg(test)]
pub(crate) fn set_compaction_min_journal_bytes_for_tests(bytes: u64) {
    COMPACTION_MIN_FOR_TESTS.with(|c| c.set(bytes));
}

#[cfg(test)]
fn compaction_min_journal_bytes() -> u64 {
    COMPACTION_MIN_FOR_TESTS.with(|c| c.get())
}

fn journal_name(generation: u64) -> String {
    format!("{JOURNAL_PREFIX}{generation:016x}{JOURNAL_SUFFIX}")
}

fn snapshot_name(generation: u64) -> String {
    format!("{SNAPSHOT_PREFIX}{generation:016x}{SNAPSHOT_SUFFIX}")
}

fn parse_generation(name: &str, prefix: &str, suffix: &str) -> Option<u64> {
    let hex = name.strip_prefix(prefix)?.strip_suffix(suffix)?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// How to open a data directory.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct StoreOptions {
    /// When appended records are synced.
    pub(crate) sync: SyncMode,
}

/// Where a replayed record came from: snapshots hold state entries, journals hold changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    /// A record of the snapshot.
    Snapshot,
    /// A record of a journal.
    Journal,
}

/// What open found.
#[derive(Debug, Default)]
pub(crate) struct Recovery {
    /// Generation of the snapshot loaded, if any.
    pub(crate) snapshot_generation: Option<u64>,
    /// Records delivered (snapshot and journal).
    pub(crate) records: u64,
    /// Bytes of a torn final write cut off the newest journal (never acknowledged).
    pub(crate) torn_bytes: u64,
    /// Records in those bytes: at least 1 when `torn_bytes` is not 0 (see
    /// [`StoreStats::torn_tail_records`]).
    pub(crate) torn_records: u64,
    /// In salvage mode, the damage where loading stopped; everything after it was not loaded.
    pub(crate) salvage_stopped_at: Option<Error>,
}

/// A data directory locked for this engine, before its records are loaded: the key ring is
/// read first because the engine needs it before replaying anything.
pub(crate) struct LockedDir {
    dir: PathBuf,
    lock: Option<DirLock>,
    read_only: bool,
}

impl LockedDir {
    /// Locks `dir` — exclusively, creating it if needed; or shared and read-only for salvage.
    pub(crate) fn acquire(dir: &Path, salvage: bool) -> Result<LockedDir> {
        let lock = if salvage {
            if !dir.is_dir() {
                return Err(Error::new(
                    ErrorKind::Io,
                    format!("data directory {} does not exist", dir.display()),
                ));
            }
            DirLock::shared(dir)?
        } else {
            if !dir.is_dir() {
                fs::create_dir_all(dir)
                    .map_err(|e| Error::io(&format!("creating {}", dir.display()), e))?;
                if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                    sync_dir(parent)?;
                }
            }
            Some(DirLock::exclusive(dir)?)
        };
        Ok(LockedDir {
            dir: dir.to_path_buf(),
            lock,
            read_only: salvage,
        })
    }

    /// The serialised key ring, if one was written.
    pub(crate) fn read_key_ring(&self) -> Result<Option<Zeroizing<Vec<u8>>>> {
        key_file::read_key_file(&self.dir.join(key_file::KEY_FILE))
    }

    /// Writes the key ring (first open of a new directory).
    pub(crate) fn write_key_ring(&self, key_ring: &[u8]) -> Result<()> {
        if self.read_only {
            return Err(Error::new(
                ErrorKind::ReadOnly,
                "salvage opens write nothing",
            ));
        }
        key_file::write_key_file(&self.dir.join(key_file::KEY_FILE), key_ring)
    }
}

/// An open data directory.
pub(crate) struct Store {
    dir: PathBuf,
    _lock: Option<DirLock>,
    /// `None` when opened for salvage.
    journal: Option<Journal>,
    blobs: BlobStore,
    /// Generation of the journal being appended to.
    generation: Mutex<u64>,
    snapshot_bytes: AtomicU64,
    compacting: Arc<AtomicBool>,
    /// Held shared by blob writes and exclusively by blob collection.
    blob_collection: RwLock<()>,
    /// The torn tail open cut: (bytes, records).
    torn_tail: (u64, u64),
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if needed, unless salvaging) the data directory `dir`, delivering every
    /// stored record to `apply` in order: the newest snapshot's, then the journals'.
    #[cfg(test)]
    pub(crate) fn open(
        dir: &Path,
        salvage: bool,
        apply: impl FnMut(Origin, &[u8]) -> Result<()>,
    ) -> Result<(Store, Recovery)> {
        Store::open_locked(
            LockedDir::acquire(dir, salvage)?,
            StoreOptions::default(),
            apply,
        )
    }

    /// Opens a locked data directory, delivering every stored record to `apply` in order: the
    /// newest snapshot's, then the journals'. A salvage lock loads every record before the
    /// first damaged one instead of failing, changes nothing on disk, and refuses writes with
    /// [`ErrorKind::ReadOnly`].
    pub(crate) fn open_locked(
        locked: LockedDir,
        opts: StoreOptions,
        mut apply: impl FnMut(Origin, &[u8]) -> Result<()>,
    ) -> Result<(Store, Recovery)> {
        let LockedDir {
            dir,
            lock,
            read_only,
        } = locked;
        let dir = dir.as_path();
        let (mut snapshots, mut journals) = (Vec::new(), Vec::new());
        let entries =
            fs::read_dir(dir).map_err(|e| Error::io(&format!("listing {}", dir.display()), e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&format!("listing {}", dir.display()), e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(g) = parse_generation(name, SNAPSHOT_PREFIX, SNAPSHOT_SUFFIX) {
                snapshots.push(g);
            } else if let Some(g) = parse_generation(name, JOURNAL_PREFIX, JOURNAL_SUFFIX) {
                journals.push(g);
            } else if name.ends_with(TMP_SUFFIX) && !read_only {
                let _ = fs::remove_file(entry.path());
            }
        }
        snapshots.sort_unstable();
        journals.sort_unstable();

        let mut recovery = Recovery::default();
        let mut snapshot_bytes = 0;
        let base = snapshots.last().copied();
        if let Some(s) = base {
            let path = dir.join(snapshot_name(s));
            let (read, stopped) = read_snapshot(&path, read_only, |rec| {
                recovery.records += 1;
                apply(Origin::Snapshot, rec)
            })?;
            if read.generation != s {
                return Err(Error::new(
                    ErrorKind::Corrupt,
                    format!(
                        "{}: header says generation {}",
                        path.display(),
                        read.generation
                    ),
                ));
            }
            recovery.snapshot_generation = Some(s);
            recovery.salvage_stopped_at = stopped;
            snapshot_bytes = read.bytes;
        }
        let first = base.unwrap_or(1);
        let live: Vec<u64> = journals.iter().copied().filter(|&g| g >= first).collect();
        // Journals must run without a gap from the snapshot's generation (or from 1 when there
        // is no snapshot): a missing file means lost records, not an empty history.
        for (i, &g) in live.iter().enumerate() {
            if g != first + i as u64 {
                let missing = first + i as u64;
                let what = if base.is_none() && i == 0 {
                    format!("no snapshot, and the oldest journal is {}", journal_name(g))
                } else {
                    format!("{} is missing", journal_name(missing))
                };
                return Err(Error::new(
                    ErrorKind::Corrupt,
                    format!("{}: {what}", dir.display()),
                ));
            }
        }

        let mut tail: Option<(PathBuf, Replayed)> = None;
        if recovery.salvage_stopped_at.is_none() {
            for (i, &g) in live.iter().enumerate() {
                let newest = i + 1 == live.len();
                let path = dir.join(journal_name(g));
                let replayed = replay_journal(&path, g, newest, read_only, &mut |rec| {
                    recovery.records += 1;
                    apply(Origin::Journal, rec)
                })?;
                recovery.torn_bytes += replayed.torn_bytes;
                recovery.torn_records += replayed.torn_records;
                if let Some(e) = replayed.salvage_stopped_at {
                    recovery.salvage_stopped_at = Some(e);
                    break;
                }
                if newest {
                    tail = Some((path, replayed));
                }
            }
        }

        let blobs = BlobStore::open(dir, read_only)?;
        if read_only {
            let store = Store {
                dir: dir.to_path_buf(),
                _lock: lock,
                journal: None,
                blobs,
                generation: Mutex::new(live.last().copied().unwrap_or(first)),
                snapshot_bytes: AtomicU64::new(snapshot_bytes),
                compacting: Arc::new(AtomicBool::new(false)),
                blob_collection: RwLock::new(()),
                torn_tail: (recovery.torn_bytes, recovery.torn_records),
            };
            return Ok((store, recovery));
        }

        // Only now, after everything replayed cleanly, is anything changed on disk.
        let newest = live.last().copied();
        let (generation, file, next_batch) = match (tail, newest) {
            (Some((path, replayed)), Some(newest)) => {
                let valid_len = replayed.valid_len;
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&path)
                    .map_err(|e| Error::io(&format!("opening {}", path.display()), e))?;
                let len = file
                    .metadata()
                    .map_err(|e| Error::io(&format!("reading {}", path.display()), e))?
                    .len();
                if len != valid_len {
                    file.set_len(valid_len)
                        .and_then(|()| file.sync_all())
                        .map_err(|e| Error::io(&format!("truncating {}", path.display()), e))?;
                }
                match replayed.next_batch {
                    Some(next) => {
                        debug_assert_eq!(next.offset, valid_len);
                        let mut file = file;
                        file.seek(SeekFrom::End(0))
                            .map_err(|e| Error::io(&format!("seeking {}", path.display()), e))?;
                        (newest, file, next)
                    }
                    // A journal of the previous format is only read: this build writes
                    // batches, so it continues in a new journal (cut and synced above, the
                    // old one ends cleanly, as every journal but the newest must).
                    None => {
                        drop(file);
                        let (file, salt) = create_journal(dir, newest + 1)?;
                        (newest + 1, file, BatchCursor::start(salt))
                    }
                }
            }
            _ => {
                let (file, salt) = create_journal(dir, first)?;
                (first, file, BatchCursor::start(salt))
            }
        };
        for &g in snapshots.iter().filter(|&&g| g < first) {
            remove_if_exists(&dir.join(snapshot_name(g)))?;
        }
        for &g in journals.iter().filter(|&&g| g < first) {
            remove_if_exists(&dir.join(journal_name(g)))?;
        }
        blobs.remove_debris()?;
        let journal = Journal::new(
            Arc::new(file),
            dir.join(journal_name(generation)),
            next_batch,
            opts.sync,
        )?;
        let store = Store {
            dir: dir.to_path_buf(),
            _lock: lock,
            journal: Some(journal),
            blobs,
            generation: Mutex::new(generation),
            snapshot_bytes: AtomicU64::new(snapshot_bytes),
            compacting: Arc::new(AtomicBool::new(false)),
            blob_collection: RwLock::new(()),
            torn_tail: (recovery.torn_bytes, recovery.torn_records),
        };
        Ok((store, recovery))
    }

    /// The data directory.
    #[cfg(feature = "fault-injection")]
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    fn journal(&self) -> Result<&Journal> {
        self.journal.as_ref().ok_or_else(|| {
            Error::new(
                ErrorKind::ReadOnly,
                format!("{} was opened read-only for salvage", self.dir.display()),
            )
        })
    }

    /// Buffers a record in apply order (call with the engine's writer mutex held).
    #[cfg(test)]
    pub(crate) fn append(&self, record: &[u8]) -> Result<Ticket> {
        self.journal()?.append_with(|buf| {
            buf.extend_from_slice(record);
            Ok(())
        })
    }

    /// Buffers the record that `write` serialises straight into the journal's buffer.
    pub(crate) fn append_with(
        &self,
        write: impl FnOnce(&mut Vec<u8>) -> Result<()>,
    ) -> Result<Ticket> {
        self.journal()?.append_with(write)
    }

    /// Waits until the record of `ticket` is as durable as the sync mode promises.
    pub(crate) fn wait(&self, ticket: Ticket) -> Result<()> {
        self.journal()?.wait(ticket)
    }

    /// Waits until the record of `ticket` is synced, whatever the sync mode.
    pub(crate) fn sync_through(&self, ticket: Ticket) -> Result<()> {
        self.journal()?.sync_through(ticket)
    }

    /// Every ticket up to this one is synced (everything, when opened for salvage).
    pub(crate) fn synced(&self) -> u64 {
        self.journal.as_ref().map_or(u64::MAX, Journal::synced)
    }

    /// Every ticket up to this one counts as acknowledged in the sync mode.
    pub(crate) fn readable(&self) -> u64 {
        self.journal.as_ref().map_or(u64::MAX, Journal::readable)
    }

    /// Group-commit counters, and the torn tail open cut.
    pub(crate) fn stats(&self) -> StoreStats {
        let mut stats = self
            .journal
            .as_ref()
            .map(Journal::stats)
            .unwrap_or_default();
        (stats.torn_tail_bytes, stats.torn_tail_records) = self.torn_tail;
        stats
    }

    /// Stores a content-addressed blob durably; call before appending the record naming it.
    pub(crate) fn put_blob(&self, sha256: &[u8; 32], bytes: &[u8]) -> Result<()> {
        self.journal()?;
        let _no_collection = self.blob_collection.read();
        self.blobs.put(sha256, bytes)
    }

    /// Removes a blob unreferenced by the state if it was last written before `cutoff`.
    /// Excludes concurrent [`Store::put_blob`]s, so a put that found the blob already there
    /// (and refreshed its time) cannot have it removed underneath.
    pub(crate) fn collect_blob(&self, sha256: &[u8; 32], cutoff: SystemTime) -> Result<bool> {
        self.journal()?;
        let _exclusive = self.blob_collection.write();
        self.blobs.remove_if_older(sha256, cutoff)
    }

    /// A stored blob, verified against its address.
    pub(crate) fn get_blob(&self, sha256: &[u8; 32]) -> Result<Option<Vec<u8>>> {
        self.blobs.get(sha256)
    }

    /// Every stored blob address.
    pub(crate) fn blob_addresses(&self) -> Result<Vec<[u8; 32]>> {
        self.blobs.list()
    }

    /// Replaces the key file (mode 0600) with the serialised key ring.
    pub(crate) fn write_key_ring(&self, key_ring: &[u8]) -> Result<()> {
        self.journal()?;
        key_file::write_key_file(&self.dir.join(key_file::KEY_FILE), key_ring)
    }

    /// The serialised key ring, if one was written.
    #[cfg(test)]
    pub(crate) fn read_key_ring(&self) -> Result<Option<Zeroizing<Vec<u8>>>> {
        key_file::read_key_file(&self.dir.join(key_file::KEY_FILE))
    }

    /// Bytes of batches in the current journal.
    pub(crate) fn journal_bytes(&self) -> u64 {
        self.journal.as_ref().map_or(0, Journal::file_bytes)
    }

    /// Whether the journal has outgrown the snapshot enough that replaying it costs more than
    /// writing a new snapshot: larger than the snapshot and than
    /// [`COMPACTION_MIN_JOURNAL_BYTES`].
    pub(crate) fn wants_compaction(&self) -> bool {
        let floor = self
            .snapshot_bytes
            .load(Ordering::Relaxed)
            .max(compaction_min_journal_bytes());
        !self.compacting.load(Ordering::Relaxed) && self.journal_bytes() > floor
    }

    /// Starts a compaction, without the engine's writer mutex: creates the next journal under
    /// a temporary name (its header synced) and the snapshot's temporary file. Then call
    /// [`PreparedCompaction::switch`] with the writer mutex held. Dropping the prepared
    /// compaction instead removes both files.
    ///
    /// Returns `Ok(None)` when another compaction is still running.
    pub(crate) fn prepare_compaction(&self) -> Result<Option<PreparedCompaction<'_>>> {
        self.journal()?;
        if self.compacting.swap(true, Ordering::AcqRel) {
            return Ok(None);
        }
        let flag = CompactionFlag(Arc::clone(&self.compacting));
        let next = *self.generation.lock() + 1;
        let journal = NewJournal::create(&self.dir, next)?;
        let writer = SnapshotWriter::create(self.dir.join(snapshot_name(next)), next)?;
        Ok(Some(PreparedCompaction {
            store: self,
            journal,
            writer,
            generation: next,
            flag,
        }))
    }

    /// [`Store::prepare_compaction`] and [`PreparedCompaction::switch`] at once.
    #[cfg(test)]
    pub(crate) fn begin_compaction(&self) -> Result<Option<Compaction>> {
        match self.prepare_compaction()? {
            Some(prepared) => prepared.switch().map(Some),
            None => Ok(None),
        }
    }

    /// Records the size of a snapshot just finished, for [`Store::wants_compaction`].
    pub(crate) fn compaction_finished(&self, snapshot_bytes: u64) {
        self.snapshot_bytes.store(snapshot_bytes, Ordering::Relaxed);
    }

    /// After a failed compaction, waits for the journal to double before trying again, so a
    /// full disk does not start a compaction after every write.
    pub(crate) fn compaction_failed(&self) {
        self.snapshot_bytes
            .fetch_max(self.journal_bytes(), Ordering::Relaxed);
    }
}

/// A compaction whose files exist but whose journal switch has not happened yet.
pub(crate) struct PreparedCompaction<'a> {
    store: &'a Store,
    journal: NewJournal,
    writer: SnapshotWriter,
    generation: u64,
    flag: CompactionFlag,
}

impl PreparedCompaction<'_> {
    /// Syncs the current journal and continues in the new one, then returns the writer for
    /// the snapshot of the state *at this instant*. Call with the engine's writer mutex held
    /// (so no record is appended in between), take the state as of this instant, release the
    /// mutex, and write that state into the returned [`Compaction`] while readers and writers
    /// go on.
    ///
    /// What waits here, under the writer mutex, is the sync of the old journal and a rename.
    /// The directory sync that makes the rename durable is left to whichever comes first: the
    /// first batch of the new journal (before it is written, so no record in it can be
    /// acknowledged before the file's name is durable) or the snapshot's own directory sync.
    /// A crash before it leaves the old journal complete and the new one absent or empty.
    pub(crate) fn switch(self) -> Result<Compaction> {
        let PreparedCompaction {
            store,
            journal: new,
            writer,
            generation,
            flag,
        } = self;
        let journal = store.journal()?;
        let mut current = store.generation.lock();
        // The old journal must be complete before the new one exists under its name: open
        // refuses an older journal that ends in a torn batch.
        journal.sync_all()?;
        let path = store.dir.join(journal_name(generation));
        let (file, salt) = new.rename_to(&path)?;
        journal.switch_to(Arc::new(file), path, salt, Some(store.dir.clone()))?;
        *current = generation;
        Ok(Compaction {
            writer,
            generation,
            dir: store.dir.clone(),
            _flag: flag,
        })
    }
}

/// A new journal's file under its temporary name, its header and prelude synced.
struct NewJournal {
    file: Option<File>,
    tmp: PathBuf,
    salt: u64,
}

impl NewJournal {
    fn create(dir: &Path, generation: u64) -> Result<NewJournal> {
        use std::io::Write;
        let tmp = temp_path_for(&dir.join(journal_name(generation)));
        let io_err = |what: &str, e| Error::io(&format!("{what} {}", tmp.display()), e);
        let salt = batch::new_salt()?;
        let header = encode_header(FileKind::Journal, generation);
        let mut start = header.to_vec();
        start.extend_from_slice(&batch::encode_prelude(&header, salt));
        let mut file = create_private(&tmp).map_err(|e| io_err("creating", e))?;
        let mut new = NewJournal {
            file: None,
            tmp: tmp.clone(),
            salt,
        };
        file.write_all(&start)
            .and_then(|()| file.sync_all())
            .map_err(|e| io_err("writing", e))?;
        new.file = Some(file);
        Ok(new)
    }

    /// Gives the file its final name (not yet durable: sync the directory) and returns it,
    /// positioned for appending, with its salt.
    fn rename_to(mut self, path: &Path) -> Result<(File, u64)> {
        fs::rename(&self.tmp, path)
            .map_err(|e| Error::io(&format!("renaming {}", self.tmp.display()), e))?;
        let file = self
            .file
            .take()
            .ok_or_else(|| Error::new(ErrorKind::Internal, "journal file taken twice"))?;
        Ok((file, self.salt))
    }
}

impl Drop for NewJournal {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

struct CompactionFlag(Arc<AtomicBool>);

impl Drop for CompactionFlag {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// A snapshot being written; dropping it unfinished abandons it harmlessly (the journals still
/// hold everything).
pub(crate) struct Compaction {
    writer: SnapshotWriter,
    generation: u64,
    dir: PathBuf,
    _flag: CompactionFlag,
}

impl Compaction {
    /// Adds one state entry to the snapshot.
    pub(crate) fn write(&mut self, record: &[u8]) -> Result<()> {
        self.writer.write(record)
    }

    /// Makes the snapshot durable and deletes the snapshot and journals it replaces. Returns
    /// the snapshot's size; pass it to [`Store::compaction_finished`].
    #[cfg(test)]
    pub(crate) fn finish(self) -> Result<u64> {
        self.finish_with(|| {})
    }

    /// [`Compaction::finish`], calling `renamed` between the snapshot becoming durable under
    /// its name and the deletion of what it supersedes (fault injection stops there).
    pub(crate) fn finish_with(self, renamed: impl FnOnce()) -> Result<u64> {
        let bytes = self.writer.finish()?;
        renamed();
        remove_older_than(&self.dir, self.generation)?;
        Ok(bytes)
    }

    /// Like [`Compaction::finish`] but stops before deleting anything: the state a crash right
    /// after the rename leaves.
    #[cfg(test)]
    fn finish_without_cleanup(self) -> Result<u64> {
        self.writer.finish()
    }
}

/// Deletes snapshots and journals older than `generation`, oldest snapshots first so that a
/// crash midway never leaves a journal without the snapshot it continues.
fn remove_older_than(dir: &Path, generation: u64) -> Result<()> {
    let entries =
        fs::read_dir(dir).map_err(|e| Error::io(&format!("listing {}", dir.display()), e))?;
    let mut old = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(&format!("listing {}", dir.display()), e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(g) = parse_generation(name, SNAPSHOT_PREFIX, SNAPSHOT_SUFFIX) {
            old.push((0, g, entry.path()));
        } else if let Some(g) = parse_generation(name, JOURNAL_PREFIX, JOURNAL_SUFFIX) {
            old.push((1, g, entry.path()));
        }
    }
    old.retain(|&(_, g, _)| g < generation);
    old.sort();
    for (_, _, path) in &old {
        shrink(path)?;
        remove_if_exists(path)?;
    }
    if !old.is_empty() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Files are shrunk this much at a time before they are deleted.
const SHRINK_STEP: u64 = 8 << 20;

/// Shrinks a superseded file to nothing in [`SHRINK_STEP`]s, syncing after each, before it is
/// deleted. Freeing a large file's blocks at once makes the file system's next journal commit
/// wait for all of them (with online discard, a discard of every extent), and the journal's
/// next `fdatasync` waits for that commit: deleting a 135 MB snapshot in one go held a
/// concurrent write for 70–140 ms. Only files no open reads are shrunk (older than the newest
/// snapshot), so a crash midway leaves nothing that matters damaged.
fn shrink(path: &Path) -> Result<()> {
    let file = match OpenOptions::new().write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(&format!("opening {}", path.display()), e)),
    };
    let io_err = |e| Error::io(&format!("shrinking {}", path.display()), e);
    let mut len = file.metadata().map_err(io_err)?.len();
    while len > SHRINK_STEP {
        len -= SHRINK_STEP;
        file.set_len(len)
            .and_then(|()| file.sync_all())
            .map_err(io_err)?;
    }
    Ok(())
}

fn remove_if_exists(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(&format!("removing {}", path.display()), e)),
    }
}

/// Creates journal `generation` (format 2) holding just its header and prelude with a fresh
/// salt — durably, under its final name — and returns it positioned for appending, with the
/// salt.
fn create_journal(dir: &Path, generation: u64) -> Result<(File, u64)> {
    use std::io::Write;
    let path = dir.join(journal_name(generation));
    let tmp = temp_path_for(&path);
    let io_err = |what: &str, e| Error::io(&format!("{what} {}", tmp.display()), e);
    let salt = batch::new_salt()?;
    let header = encode_header(FileKind::Journal, generation);
    let mut start = header.to_vec();
    start.extend_from_slice(&batch::encode_prelude(&header, salt));
    let mut file = create_private(&tmp).map_err(|e| io_err("creating", e))?;
    file.write_all(&start)
        .and_then(|()| file.sync_all())
        .map_err(|e| io_err("writing", e))?;
    fs::rename(&tmp, &path).map_err(|e| io_err("renaming", e))?;
    sync_dir(dir)?;
    Ok((file, salt))
}

struct Replayed {
    /// Length of the file up to the end of its last valid record (format 1) or batch.
    valid_len: u64,
    torn_bytes: u64,
    torn_records: u64,
    salvage_stopped_at: Option<Error>,
    /// Where the next batch goes in a format-2 journal; `None` for format 1.
    next_batch: Option<BatchCursor>,
}

fn replay_journal(
    path: &Path,
    generation: u64,
    newest: bool,
    salvage: bool,
    apply: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<Replayed> {
    let io_err = |e| Error::io(&format!("reading {}", path.display()), e);
    let file = File::open(path).map_err(io_err)?;
    let len = file.metadata().map_err(io_err)?.len();
    let mut r = BufReader::with_capacity(1 << 20, file);
    let mut header = Vec::with_capacity(HEADER_LEN);
    (&mut r)
        .take(HEADER_LEN as u64)
        .read_to_end(&mut header)
        .map_err(io_err)?;
    let (found, version) = parse_header_version(path, FileKind::Journal, &header)?;
    if found != generation {
        return Err(Error::new(
            ErrorKind::Corrupt,
            format!("{}: header says generation {found}", path.display()),
        ));
    }
    let mut out = Replayed {
        valid_len: len,
        torn_bytes: 0,
        torn_records: 0,
        salvage_stopped_at: None,
        next_batch: None,
    };
    let damage = match version {
        JOURNAL_VERSION_RECORDS => replay_records(&mut r, path, len, newest, apply, &mut out)?,
        JOURNAL_VERSION_BATCHES => {
            let mut prelude = Vec::with_capacity(PRELUDE_LEN);
            (&mut r)
                .take(PRELUDE_LEN as u64)
                .read_to_end(&mut prelude)
                .map_err(io_err)?;
            let salt = batch::parse_prelude(path, &header, &prelude)?;
            replay_batches(&mut r, path, len, salt, newest, apply, &mut out)?
        }
        _ => {
            return Err(Error::new(
                ErrorKind::Internal,
                format!("{}: no reader for journal format {version}", path.display()),
            ))
        }
    };
    match damage {
        None => Ok(out),
        Some(damage) if salvage => {
            out.salvage_stopped_at = Some(damage);
            Ok(out)
        }
        Some(damage) => Err(damage),
    }
}

/// Format 1: records framed one after another. A torn final record of the newest journal is
/// cut (counted as one record); what else does not scan is the damage returned.
fn replay_records(
    r: &mut BufReader<File>,
    path: &Path,
    len: u64,
    newest: bool,
    apply: &mut dyn FnMut(&[u8]) -> Result<()>,
    out: &mut Replayed,
) -> Result<Option<Error>> {
    let end = scan_frames(
        r,
        HEADER_LEN as u64,
        len,
        |offset, rec| apply(rec).map_err(|e| frame::locate(e, path, offset)),
        path,
    )?;
    Ok(match end {
        ScanEnd::Clean => None,
        // Only the newest journal can end in a write that was never synced: an older one was
        // synced completely before its successor was created.
        ScanEnd::Torn { offset } if newest => {
            out.valid_len = offset;
            out.torn_bytes = len - offset;
            // A torn tail is one incomplete frame (or a zero-filled run where the write
            // should have been); nothing after its start can be parsed, so one record is all
            // that can be counted.
            out.torn_records = 1;
            None
        }
        ScanEnd::Torn { offset } => Some(corrupt_error(
            path,
            offset,
            "cut short, yet a newer journal exists",
        )),
        ScanEnd::Corrupt { offset, reason } => Some(corrupt_error(path, offset, reason)),
    })
}

/// Format 2: one batch per group-commit write. The first batch that does not validate, with
/// nothing valid after it, is the newest journal's torn final write and is cut, with every
/// record before it kept; what else does not scan is the damage returned.
fn replay_batches(
    r: &mut BufReader<File>,
    path: &Path,
    len: u64,
    salt: u64,
    newest: bool,
    apply: &mut dyn FnMut(&[u8]) -> Result<()>,
    out: &mut Replayed,
) -> Result<Option<Error>> {
    let scan = batch::scan_batches(r, len, salt, path, |offset, rec| {
        apply(rec).map_err(|e| frame::locate(e, path, offset))
    })?;
    out.next_batch = Some(scan.next);
    Ok(match scan.end {
        BatchEnd::Clean => None,
        // Only the newest journal can end in a write that was never synced: an older one was
        // synced completely before its successor was created.
        BatchEnd::Torn { offset, records } if newest => {
            out.valid_len = offset;
            out.torn_bytes = len - offset;
            out.torn_records = records;
            None
        }
        BatchEnd::Torn { offset, .. } => Some(Error::new(
            ErrorKind::Corrupt,
            format!(
                "{}: batch at byte offset {offset} is damaged or cut short, yet a newer \
                 journal exists; a read-only salvage open can load the records before it",
                path.display()
            ),
        )),
        BatchEnd::Corrupt(e) => Some(e),
    })
}

#[cfg(test)]
mod engine_tests;
#[cfg(test)]
mod power_loss_tests;
#[cfg(test)]
mod tests;
