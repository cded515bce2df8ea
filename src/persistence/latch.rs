//! A persistence whose syncs can be held on a latch, and a crash that keeps only what was
//! synced: lets a test stop a write at the worst instant (applied in memory, not yet durable)
//! and check what callers were told meanwhile.

use parking_lot::{Condvar, Mutex};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::{MemoryPersistence, Persistence};
use crate::error::{Error, ErrorKind, Result};
use crate::key_ring::StoredKeyRing;
use crate::mutation::Mutation;

#[derive(Default)]
struct State {
    records: Vec<Mutation>,
    synced: usize,
    held: bool,
    crashed: bool,
    keys: Option<StoredKeyRing>,
}

/// Durable-mode semantics: a write is acknowledged once synced; `hold` stops all syncs.
#[derive(Default)]
pub(crate) struct LatchPersistence {
    state: Mutex<State>,
    changed: Condvar,
    synced: AtomicU64,
    blobs: MemoryPersistence,
}

impl LatchPersistence {
    pub(crate) fn new() -> Arc<LatchPersistence> {
        Arc::new(LatchPersistence::default())
    }

    /// From now on no record becomes durable until [`LatchPersistence::release`].
    pub(crate) fn hold(&self) {
        self.state.lock().held = true;
    }

    pub(crate) fn release(&self) {
        self.state.lock().held = false;
        self.changed.notify_all();
    }

    /// Records appended so far (synced or not).
    pub(crate) fn appended(&self) -> usize {
        self.state.lock().records.len()
    }

    /// The process dies: every waiter fails, and what survives is the synced prefix of the
    /// records and the last key ring saved.
    pub(crate) fn crash(&self) -> (Vec<Mutation>, Option<StoredKeyRing>) {
        let mut st = self.state.lock();
        st.crashed = true;
        self.changed.notify_all();
        (st.records[..st.synced].to_vec(), st.keys.clone())
    }

    fn wait_synced(&self, ticket: u64) -> Result<()> {
        let mut st = self.state.lock();
        loop {
            if st.crashed {
                return Err(Error::new(ErrorKind::Io, "crashed"));
            }
            if st.synced as u64 >= ticket {
                return Ok(());
            }
            if !st.held {
                st.synced = st.records.len();
                self.synced.store(st.synced as u64, Ordering::Release);
                self.changed.notify_all();
                continue;
            }
            self.changed.wait(&mut st);
        }
    }
}

impl Persistence for LatchPersistence {
    fn append(&self, mutation: &Mutation) -> Result<u64> {
        let mut st = self.state.lock();
        if st.crashed {
            return Err(Error::new(ErrorKind::Io, "crashed"));
        }
        st.records.push(mutation.clone());
        Ok(st.records.len() as u64)
    }

    fn wait(&self, ticket: u64) -> Result<()> {
        self.wait_synced(ticket)
    }

    fn synced(&self) -> u64 {
        self.synced.load(Ordering::Acquire)
    }

    fn readable(&self) -> u64 {
        self.synced()
    }

    fn sync_through(&self, ticket: u64) -> Result<()> {
        self.wait_synced(ticket)
    }

    fn put_blob(&self, sha256: &[u8; 32], bytes: &[u8]) -> Result<()> {
        self.blobs.put_blob(sha256, bytes)
    }

    fn get_blob(&self, sha256: &[u8; 32]) -> Result<Option<Vec<u8>>> {
        self.blobs.get_blob(sha256)
    }

    fn save_keys(&self, keys: &StoredKeyRing) -> Result<()> {
        self.state.lock().keys = Some(keys.clone());
        Ok(())
    }
}
