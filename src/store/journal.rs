//! The journal appender: framed records appended to the current journal file with group
//! commit, one checksummed batch per write ([`super::batch`]).
//!
//! [`Journal::append`] only copies a framed record into a shared buffer (behind room for the
//! batch header) and hands back a [`Ticket`]; it is called under the engine's writer mutex, so
//! the buffer is in apply order. [`Journal::wait`] is called after that mutex is released: the
//! first waiter whose record is not yet durable becomes the *leader*, takes the whole buffer,
//! seals it as one batch, writes it and calls `fdatasync` once without holding the journal
//! lock; records appended meanwhile wait for the next leader. So N concurrent writers share
//! syncs instead of queueing for one each, and each batch is synced before the next one is
//! written — which is what lets open tell a torn final batch from damage.
//!
//! A failed write or sync *poisons* the journal: the kernel may have dropped the dirty pages
//! (Linux reports a writeback error once, then forgets it), so retrying could report success
//! for data that is gone. Every later append and wait fails with [`ErrorKind::Io`] until the
//! store is reopened and recovers from what really is on disk.

use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, MutexGuard};

use super::batch::{begin_batch, seal_batch, BatchCursor, BATCHES_START, BATCH_HEADER_LEN};
use super::frame::encode_frame_with;
use crate::error::{Error, ErrorKind, Result};

/// Longest a leader waits for more records before syncing (see [`Inner::lead`]).
const MAX_GATHER: Duration = Duration::from_millis(1);

/// When appended records reach the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SyncMode {
    /// Every write call returns only after its record is synced with `fdatasync`; concurrent
    /// writers share syncs (group commit). Nothing acknowledged is lost on power failure.
    #[default]
    Durable,
    /// A background thread syncs every given interval; write calls return as soon as the
    /// record is buffered. A power failure (or a crash of this process) loses up to one
    /// interval of acknowledged writes; the data on disk is still consistent. Calls that hand
    /// out or confirm a credential (token issue, verify, authenticate) still wait for the sync
    /// of the state they read, so no credential outlives a lost revocation.
    Relaxed(Duration),
}

/// Position of an appended record in the journal's sequence; wait on it for durability.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Ticket(pub(crate) u64);

/// Counters of a durable engine's journal since it was opened, and what the open found
/// ([`crate::Engine::store_stats`]).
///
/// `records_synced / syncs` is the group-commit factor: how many writes shared one
/// `fdatasync`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreStats {
    /// Records written and synced.
    pub records_synced: u64,
    /// Calls to `fdatasync` that succeeded.
    pub syncs: u64,
    /// Journal bytes written: the records and the header of each batch (file headers
    /// excluded).
    pub bytes_written: u64,
    /// Bytes of a torn tail that open cut off the newest journal: the last write, which was
    /// never synced (or not completely: the disk may have kept any of its pages), so never
    /// acknowledged in [`SyncMode::Durable`] (in relaxed mode, at most the last interval's
    /// writes). 0 when the journal ended cleanly. A salvage open leaves the tail on disk but
    /// does not load it, and reports it the same way. Each cut also queues an
    /// [`crate::EventKind::StoreTornTail`] event.
    pub torn_tail_bytes: u64,
    /// Records cut with the torn tail: the record count in the header of the torn batch when
    /// that header reached the disk intact, otherwise 1 (a lower bound: nothing after the
    /// start of the cut can be trusted). At least 1 whenever `torn_tail_bytes` is not 0. A
    /// journal of the previous format (one frame per record, no batches) always reports 1.
    pub torn_tail_records: u64,
}

/// Where batches go: the journal file, or a fault-injecting stand-in in tests.
pub(crate) trait Sink: Send + Sync {
    fn write_all(&self, bytes: &[u8]) -> io::Result<()>;
    fn sync_data(&self) -> io::Result<()>;
}

impl Sink for File {
    fn write_all(&self, bytes: &[u8]) -> io::Result<()> {
        // `&File` is `Write`: only the single leader writes, so no exclusive borrow is needed.
        (&mut &*self).write_all(bytes)
    }

    fn sync_data(&self) -> io::Result<()> {
        File::sync_data(self)
    }
}

struct State {
    /// Room for a batch header, then the framed records appended but not yet taken by a
    /// leader; empty when nothing is pending.
    pending: Vec<u8>,
    pending_records: u64,
    /// A drained buffer kept to avoid reallocating every batch.
    spare: Vec<u8>,
    /// Ticket of the last appended record.
    appended: u64,
    /// Every ticket up to this one is durable.
    durable: u64,
    /// A leader is writing and syncing a batch right now.
    leading: bool,
    poisoned: Option<Arc<str>>,
    sink: Arc<dyn Sink>,
    path: PathBuf,
    /// Threads inside [`Inner::wait_durable`].
    waiters: usize,
    /// Writers that were waiting when the last batch finished: how many records the next
    /// leader may reasonably gather.
    concurrency: usize,
    /// Duration of the last write + sync, bounding how long a leader gathers.
    last_sync: Duration,
    /// Where the next batch goes in the current file, and its salt.
    next_batch: BatchCursor,
    /// Bytes of batches in the current file (synced or pending), for the compaction threshold.
    file_bytes: u64,
    /// A directory to sync before the next batch is written: the current file was renamed
    /// into place and no record in it may become durable before its name is.
    dir_to_sync: Option<PathBuf>,
    shutdown: bool,
}

struct Inner {
    state: Mutex<State>,
    /// Signalled when a batch finishes (or the journal is poisoned or shut down).
    done: Condvar,
    /// Signalled on every append, for a leader gathering a batch.
    appended: Condvar,
    /// Mirror of `State::durable`, readable without the lock: readers compare a user's last
    /// ticket with it on every read.
    synced: AtomicU64,
    records_synced: AtomicU64,
    syncs: AtomicU64,
    bytes_written: AtomicU64,
}

/// The appender of the current journal file.
pub(crate) struct Journal {
    inner: Arc<Inner>,
    mode: SyncMode,
    flusher: Option<JoinHandle<()>>,
}

impl Journal {
    /// Appends to `sink` (a format-2 journal positioned at its end, where `next_batch` goes).
    pub(crate) fn new(
        sink: Arc<dyn Sink>,
        path: PathBuf,
        next_batch: BatchCursor,
        mode: SyncMode,
    ) -> Result<Journal> {
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                pending: Vec::new(),
                pending_records: 0,
                spare: Vec::new(),
                appended: 0,
                durable: 0,
                leading: false,
                poisoned: None,
                sink,
                path,
                waiters: 0,
                concurrency: 0,
                last_sync: Duration::ZERO,
                next_batch,
                file_bytes: next_batch.offset - BATCHES_START,
                dir_to_sync: None,
                shutdown: false,
            }),
            done: Condvar::new(),
            appended: Condvar::new(),
            synced: AtomicU64::new(0),
            records_synced: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            bytes_written: AtomicU64::new(0),
        });
        let flusher = match mode {
            SyncMode::Durable => None,
            SyncMode::Relaxed(every) => {
                let inner = Arc::clone(&inner);
                Some(
                    std::thread::Builder::new()
                        .name("tessera-journal-sync".into())
                        .spawn(move || inner.flush_periodically(every))
                        .map_err(|e| Error::io("spawning the journal sync thread", e))?,
                )
            }
        };
        Ok(Journal {
            inner,
            mode,
            flusher,
        })
    }

    /// Buffers one record; call [`Journal::wait`] with the ticket to make it durable.
    #[cfg(test)]
    pub(crate) fn append(&self, record: &[u8]) -> Result<Ticket> {
        self.append_with(|buf| {
            buf.extend_from_slice(record);
            Ok(())
        })
    }

    /// Buffers the record `write` serialises into the pending batch.
    pub(crate) fn append_with(
        &self,
        write: impl FnOnce(&mut Vec<u8>) -> Result<()>,
    ) -> Result<Ticket> {
        let mut st = self.inner.state.lock();
        if let Some(msg) = &st.poisoned {
            return Err(poisoned_error(msg));
        }
        let new_batch = st.pending.is_empty();
        if new_batch {
            begin_batch(&mut st.pending);
        }
        let before = st.pending.len();
        if let Err(e) = encode_frame_with(&mut st.pending, write) {
            if new_batch {
                st.pending.clear();
            }
            return Err(e);
        }
        let added = st.pending.len() - before + if new_batch { BATCH_HEADER_LEN } else { 0 };
        st.file_bytes += added as u64;
        st.pending_records += 1;
        st.appended += 1;
        let ticket = Ticket(st.appended);
        drop(st);
        self.inner.appended.notify_one();
        Ok(ticket)
    }

    /// Blocks until the record of `ticket` is durable (in [`SyncMode::Durable`]); in relaxed
    /// mode returns at once unless the journal is poisoned.
    pub(crate) fn wait(&self, ticket: Ticket) -> Result<()> {
        match self.mode {
            SyncMode::Durable => self.inner.wait_durable(ticket.0),
            SyncMode::Relaxed(_) => match &self.inner.state.lock().poisoned {
                Some(msg) => Err(poisoned_error(msg)),
                None => Ok(()),
            },
        }
    }

    /// Blocks until the record of `ticket` (and every earlier one) is synced, whatever the
    /// mode.
    pub(crate) fn sync_through(&self, ticket: Ticket) -> Result<()> {
        if self.synced() >= ticket.0 {
            return Ok(());
        }
        self.inner.wait_durable(ticket.0)
    }

    /// Every ticket up to this one is synced.
    pub(crate) fn synced(&self) -> u64 {
        self.inner.synced.load(Ordering::Acquire)
    }

    /// Every ticket up to this one counts as acknowledged in this sync mode.
    pub(crate) fn readable(&self) -> u64 {
        match self.mode {
            SyncMode::Durable => self.synced(),
            SyncMode::Relaxed(_) => u64::MAX,
        }
    }

    /// Makes everything appended so far durable, whatever the mode.
    pub(crate) fn sync_all(&self) -> Result<()> {
        let target = self.inner.state.lock().appended;
        self.inner.wait_durable(target)
    }

    /// Syncs everything appended so far and continues in a new, empty format-2 file whose
    /// prelude holds `salt`. Call with the engine's writer mutex held so no record is appended
    /// in between. `dir_to_sync`, if given, is synced before the first batch of the new file is
    /// written (the file was just renamed into place).
    pub(crate) fn switch_to(
        &self,
        sink: Arc<dyn Sink>,
        path: PathBuf,
        salt: u64,
        dir_to_sync: Option<PathBuf>,
    ) -> Result<()> {
        self.sync_all()?;
        let mut st = self.inner.state.lock();
        while st.leading {
            self.inner.done.wait(&mut st);
        }
        if let Some(msg) = &st.poisoned {
            return Err(poisoned_error(msg));
        }
        debug_assert!(st.pending.is_empty(), "switch_to raced with an append");
        st.sink = sink;
        st.path = path;
        st.next_batch = BatchCursor::start(salt);
        st.file_bytes = 0;
        st.dir_to_sync = dir_to_sync;
        Ok(())
    }

    /// Bytes of batches in the current journal file (synced or not).
    pub(crate) fn file_bytes(&self) -> u64 {
        self.inner.state.lock().file_bytes
    }

    pub(crate) fn stats(&self) -> StoreStats {
        StoreStats {
            records_synced: self.inner.records_synced.load(Ordering::Relaxed),
            syncs: self.inner.syncs.load(Ordering::Relaxed),
            bytes_written: self.inner.bytes_written.load(Ordering::Relaxed),
            ..StoreStats::default()
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        if let Some(handle) = self.flusher.take() {
            self.inner.state.lock().shutdown = true;
            self.inner.done.notify_all();
            let _ = handle.join();
        }
        // Relaxed mode promises at most one interval of loss on power failure, not loss on a
        // clean close; a durable journal has nothing pending here. An error cannot be reported
        // from drop; it is on disk as a torn tail at worst.
        let _ = self.sync_all();
    }
}

impl Inner {
    fn wait_durable(&self, ticket: u64) -> Result<()> {
        let mut st = self.state.lock();
        st.waiters += 1;
        let result = self.wait_durable_locked(&mut st, ticket);
        st.waiters -= 1;
        result
    }

    fn wait_durable_locked(&self, st: &mut MutexGuard<'_, State>, ticket: u64) -> Result<()> {
        loop {
            if st.durable >= ticket {
                return Ok(());
            }
            if let Some(msg) = &st.poisoned {
                return Err(poisoned_error(msg));
            }
            if st.leading {
                self.done.wait(st);
            } else if st.pending.is_empty() {
                // Every appended record is pending, in a leader's batch, or durable.
                return Err(Error::new(
                    ErrorKind::Internal,
                    format!("journal ticket {ticket} is neither pending nor durable"),
                ));
            } else {
                self.lead(st);
            }
        }
    }

    /// Seals every pending record into one batch, writes and syncs it, with the lock released
    /// meanwhile.
    fn lead(&self, st: &mut MutexGuard<'_, State>) {
        if st.pending.is_empty() {
            return;
        }
        st.leading = true;
        // Gather: if the last sync ended with several writers waiting, they are likely to
        // append again right away; waiting a fraction of a sync for them turns strict
        // alternation (one record per sync with two writers) into shared syncs. A lone
        // writer (concurrency 1) never waits.
        if st.concurrency > 1 && st.pending_records < st.concurrency as u64 {
            let deadline = Instant::now() + (st.last_sync / 2).min(MAX_GATHER);
            while st.pending_records < st.concurrency as u64 && !st.shutdown {
                if self.appended.wait_until(st, deadline).timed_out() {
                    break;
                }
            }
        }
        let spare = std::mem::take(&mut st.spare);
        let mut batch = std::mem::replace(&mut st.pending, spare);
        let records = std::mem::take(&mut st.pending_records);
        let target = st.appended;
        let sink = Arc::clone(&st.sink);
        // Only one leader at a time, and a failed write poisons the journal: the next batch
        // goes right after this one.
        let at = st.next_batch;
        st.next_batch = BatchCursor {
            salt: at.salt,
            seq: at.seq + 1,
            offset: at.offset + batch.len() as u64,
        };
        let dir_to_sync = st.dir_to_sync.take();
        let started = Instant::now();
        let result = MutexGuard::unlocked(st, || {
            seal_batch(&mut batch, at, records);
            #[cfg(feature = "fault-injection")]
            crate::fault::before_journal_write();
            if let Some(dir) = &dir_to_sync {
                std::fs::File::open(dir).and_then(|d| d.sync_all())?;
            }
            sink.write_all(&batch).and_then(|()| sink.sync_data())
        });
        st.last_sync = started.elapsed();
        // Everyone still in `wait` now (this leader included) is a concurrent writer.
        st.concurrency = st.waiters;
        st.leading = false;
        match result {
            Ok(()) => {
                st.durable = target;
                self.synced.store(target, Ordering::Release);
                self.records_synced.fetch_add(records, Ordering::Relaxed);
                self.syncs.fetch_add(1, Ordering::Relaxed);
                self.bytes_written
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                batch.clear();
                st.spare = batch;
            }
            Err(e) => {
                st.poisoned = Some(
                    format!(
                        "journal {} failed a write or sync ({e}); nothing after its last \
                         successful sync is durable and the engine accepts no more writes — \
                         reopen the data directory to recover",
                        st.path.display()
                    )
                    .into(),
                );
            }
        }
        self.done.notify_all();
    }

    fn flush_periodically(&self, every: Duration) {
        let mut st = self.state.lock();
        while !st.shutdown {
            self.done.wait_for(&mut st, every);
            if st.poisoned.is_some() {
                return;
            }
            if !st.leading {
                self.lead(&mut st);
            }
        }
    }
}

fn poisoned_error(msg: &str) -> Error {
    Error::new(ErrorKind::Io, msg)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    /// An in-memory sink that can be told to fail, and can be slow like a real disk.
    #[derive(Default)]
    pub(crate) struct FakeSink {
        pub(crate) written: Mutex<Vec<u8>>,
        pub(crate) synced_len: AtomicU64,
        pub(crate) fail_sync: AtomicBool,
        pub(crate) sync_delay: Mutex<Duration>,
    }

    impl Sink for FakeSink {
        fn write_all(&self, bytes: &[u8]) -> io::Result<()> {
            self.written.lock().extend_from_slice(bytes);
            Ok(())
        }

        fn sync_data(&self) -> io::Result<()> {
            std::thread::sleep(*self.sync_delay.lock());
            if self.fail_sync.load(Ordering::SeqCst) {
                return Err(io::Error::other("injected EIO"));
            }
            self.synced_len
                .store(self.written.lock().len() as u64, Ordering::SeqCst);
            Ok(())
        }
    }

    fn journal(sink: &Arc<FakeSink>, mode: SyncMode) -> Journal {
        Journal::new(
            sink.clone(),
            PathBuf::from("test-journal"),
            BatchCursor::start(SALT),
            mode,
        )
        .unwrap()
    }

    const SALT: u64 = 0x0123_4567_89ab_cdef;

    /// What `sink` holds, read back as batches after a journal header and prelude.
    fn batches_in(sink: &FakeSink) -> (Vec<Vec<u8>>, super::super::batch::BatchScan) {
        use super::super::frame::{encode_header, FileKind};
        let header = encode_header(FileKind::Journal, 1);
        let mut bytes = header.to_vec();
        bytes.extend_from_slice(&super::super::batch::encode_prelude(&header, SALT));
        bytes.extend_from_slice(&sink.written.lock());
        let mut got = Vec::new();
        let scan = super::super::batch::scan_batches(
            &mut std::io::Cursor::new(&bytes),
            bytes.len() as u64,
            SALT,
            std::path::Path::new("test-journal"),
            |_, rec| {
                got.push(rec.to_vec());
                Ok(())
            },
        )
        .unwrap();
        (got, scan)
    }

    #[test]
    fn wait_makes_the_record_durable_with_one_sync() {
        let sink = Arc::new(FakeSink::default());
        let j = journal(&sink, SyncMode::Durable);
        let t1 = j.append(b"one").unwrap();
        let t2 = j.append(b"two").unwrap();
        assert!(t2 > t1);
        assert_eq!(
            sink.synced_len.load(Ordering::SeqCst),
            0,
            "append alone writes nothing"
        );
        j.wait(t1).unwrap();
        // Both were pending, so one batch covered both.
        j.wait(t2).unwrap();
        let s = j.stats();
        assert_eq!((s.records_synced, s.syncs), (2, 1));
        // One batch: its header, then both framed records.
        assert_eq!(
            sink.synced_len.load(Ordering::SeqCst),
            (BATCH_HEADER_LEN + 2 * 8 + 6) as u64
        );
        assert_eq!(s.bytes_written, sink.synced_len.load(Ordering::SeqCst));
        assert_eq!(j.file_bytes(), s.bytes_written);
        let (got, scan) = batches_in(&sink);
        assert_eq!(got, [b"one".to_vec(), b"two".to_vec()]);
        assert_eq!(scan.next.seq, 2);
    }

    /// After a switch into a file just renamed into place, the directory is synced before
    /// the first batch is written: when that sync fails, nothing is written and the journal
    /// is poisoned, so no record of the new file is acknowledged before its name is durable.
    #[test]
    fn the_first_batch_after_a_switch_syncs_the_directory_first() {
        let old = Arc::new(FakeSink::default());
        let j = journal(&old, SyncMode::Durable);
        j.wait(j.append(b"old").unwrap()).unwrap();
        let fine = Arc::new(FakeSink::default());
        let dir = std::env::temp_dir();
        j.switch_to(fine.clone(), PathBuf::from("new"), SALT, Some(dir))
            .unwrap();
        j.wait(j.append(b"after").unwrap()).unwrap();
        assert_eq!(batches_in(&fine).0, [b"after".to_vec()]);

        let broken = Arc::new(FakeSink::default());
        let gone = std::env::temp_dir().join(format!("tessera-no-such-dir-{}", std::process::id()));
        j.switch_to(broken.clone(), PathBuf::from("newer"), SALT, Some(gone))
            .unwrap();
        let e = j.wait(j.append(b"lost").unwrap()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Io, "{e}");
        assert!(broken.written.lock().is_empty(), "the batch was written");
        assert_eq!(j.append(b"later").unwrap_err().kind(), ErrorKind::Io);
    }

    #[test]
    fn a_record_that_fails_to_serialise_leaves_no_empty_batch() {
        let sink = Arc::new(FakeSink::default());
        let j = journal(&sink, SyncMode::Durable);
        let failed = j.append_with(|_| Err(Error::new(ErrorKind::Internal, "no")));
        assert!(failed.is_err());
        assert_eq!(j.file_bytes(), 0);
        j.wait(j.append(b"x").unwrap()).unwrap();
        let (got, _) = batches_in(&sink);
        assert_eq!(got, [b"x".to_vec()]);
        assert_eq!(j.stats().syncs, 1);
    }

    #[test]
    fn a_failed_sync_poisons_every_later_call() {
        let sink = Arc::new(FakeSink::default());
        let j = journal(&sink, SyncMode::Durable);
        j.wait(j.append(b"fine").unwrap()).unwrap();
        sink.fail_sync.store(true, Ordering::SeqCst);
        let t = j.append(b"lost").unwrap();
        let e = j.wait(t).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Io);
        assert!(e.message().contains("injected EIO"), "{e}");
        // Even once the device "recovers", the journal never claims durability again.
        sink.fail_sync.store(false, Ordering::SeqCst);
        assert_eq!(j.append(b"after").unwrap_err().kind(), ErrorKind::Io);
        assert_eq!(j.wait(t).unwrap_err().kind(), ErrorKind::Io);
        assert_eq!(j.stats().records_synced, 1);
    }

    fn hammer(threads: usize, per_thread: usize) -> StoreStats {
        let sink = Arc::new(FakeSink::default());
        *sink.sync_delay.lock() = Duration::from_micros(300);
        let j = journal(&sink, SyncMode::Durable);
        // The mutex plays the engine's writer mutex: appends are ordered, waits are not.
        let writer = Mutex::new(());
        std::thread::scope(|s| {
            for t in 0..threads {
                let (j, writer) = (&j, &writer);
                s.spawn(move || {
                    for i in 0..per_thread {
                        let ticket = {
                            let _g = writer.lock();
                            j.append(format!("{t}:{i}").as_bytes()).unwrap()
                        };
                        j.wait(ticket).unwrap();
                    }
                });
            }
        });
        let stats = j.stats();
        assert_eq!(stats.records_synced, (threads * per_thread) as u64);
        // Every sync wrote one batch, and the batches hold every record.
        let (got, scan) = batches_in(&sink);
        assert_eq!(got.len(), threads * per_thread);
        assert_eq!(scan.next.seq, stats.syncs + 1);
        stats
    }

    #[test]
    fn concurrent_writers_share_syncs() {
        for threads in [2, 8] {
            let s = hammer(threads, 50);
            let ratio = s.records_synced as f64 / s.syncs as f64;
            assert!(ratio > 1.0, "{threads} threads: {s:?}");
        }
    }

    #[test]
    fn relaxed_mode_syncs_in_the_background_and_on_drop() {
        let sink = Arc::new(FakeSink::default());
        let j = journal(&sink, SyncMode::Relaxed(Duration::from_millis(5)));
        let t = j.append(b"x").unwrap();
        j.wait(t).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while sink.synced_len.load(Ordering::SeqCst) == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "background sync never ran"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        j.append(b"y").unwrap();
        drop(j);
        assert_eq!(
            sink.synced_len.load(Ordering::SeqCst),
            2 * (BATCH_HEADER_LEN as u64 + 8 + 1)
        );
        let (got, scan) = batches_in(&sink);
        assert_eq!(got, [b"x".to_vec(), b"y".to_vec()]);
        assert_eq!(scan.next.seq, 3);
    }
}
