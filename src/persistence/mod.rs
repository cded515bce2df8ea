//! The hook through which the engine makes its changes durable, and the in-memory no-op.

use std::sync::Arc;

#[cfg(feature = "postgres")]
pub(crate) mod postgres;

use hashbrown::HashMap;
use parking_lot::RwLock;

use crate::engine::Engine;
use crate::error::Result;
use crate::key_ring::StoredKeyRing;
use crate::mutation::Mutation;
use crate::store::StoreStats;

/// Something another node committed to a shared backend, for this engine to apply.
pub(crate) enum Change {
    /// A mutation, with its position in the shared log.
    Mutation { seq: u64, mutation: Mutation },
    /// A new key ring (rotation, retirement, engine-wide revocation).
    Keys(StoredKeyRing),
    /// The whole state (this node fell behind the pruned log): replaces everything.
    Reload {
        state: Vec<Mutation>,
        keys: StoredKeyRing,
    },
}

/// Where mutations, blobs and keys go. The engine calls `append` with its writer mutex held
/// (so records are in apply order) and `wait` after releasing it (so concurrent writers can
/// share one sync).
pub(crate) trait Persistence: Send + Sync + 'static {
    /// Records a mutation; returns a ticket to wait on.
    fn append(&self, mutation: &Mutation) -> Result<u64>;
    /// Records several mutations at once (an import); returns the ticket of the last. A
    /// shared backend commits them in one transaction.
    fn append_batch(&self, mutations: &[Mutation]) -> Result<u64> {
        let mut last = 0;
        for m in mutations {
            last = self.append(m)?;
        }
        Ok(last)
    }
    /// Returns once the mutation of `ticket` (and every earlier one) is as durable as the
    /// sync mode promises a write call: synced in [`SyncMode::Durable`], buffered in relaxed
    /// mode.
    ///
    /// [`SyncMode::Durable`]: crate::SyncMode::Durable
    fn wait(&self, ticket: u64) -> Result<()>;
    /// Every ticket up to this one is on stable storage (`u64::MAX` when nothing ever needs a
    /// sync). One atomic load: readers call it on every read of a recently changed user.
    fn synced(&self) -> u64;
    /// Every ticket up to this one may be shown to a plain read: what the sync mode counts as
    /// acknowledged ([`Persistence::synced`] in durable mode, everything in relaxed mode).
    fn readable(&self) -> u64;
    /// Returns once the mutation of `ticket` (and every earlier one) is on stable storage,
    /// whatever the sync mode: calls that hand out or confirm a credential wait here for the
    /// state they read.
    fn sync_through(&self, ticket: u64) -> Result<()>;
    /// Stores a content-addressed blob durably before any record refers to it.
    fn put_blob(&self, sha256: &[u8; 32], bytes: &[u8]) -> Result<()>;
    /// Reads a blob.
    fn get_blob(&self, sha256: &[u8; 32]) -> Result<Option<Vec<u8>>>;
    /// Replaces the stored key ring durably.
    fn save_keys(&self, keys: &StoredKeyRing) -> Result<()>;
    /// Called with the writer mutex just taken, before a write decides anything. A shared
    /// backend takes the cluster-wide write lock here and returns what other nodes committed
    /// that this engine has not applied yet; local backends have nothing to do.
    fn begin_write(&self) -> Result<Vec<Change>> {
        Ok(Vec::new())
    }
    /// Called when a write call releases the writer mutex: ends what `begin_write` started
    /// (a write that appended nothing is rolled back).
    fn end_write(&self) {}
    /// What other nodes committed since this engine last looked (cluster mode's follower).
    fn pull(&self) -> Result<Vec<Change>> {
        Ok(Vec::new())
    }
    /// Fails with [`crate::ErrorKind::Unavailable`] when this node cannot vouch that its
    /// memory is recent enough to verify credentials (cluster mode's `max_staleness`).
    fn check_fresh(&self) -> Result<()> {
        Ok(())
    }
    /// Called after each durable write, outside the writer mutex; the store starts a
    /// background compaction from here when its journal has grown enough.
    fn maintain(&self, _engine: &Engine) {}
    /// Snapshots the engine's state and starts a fresh journal ([`Engine::compact`]).
    fn compact(&self, _engine: &Engine) -> Result<()> {
        Ok(())
    }
    /// Group-commit counters ([`Engine::store_stats`]); zero in memory.
    fn stats(&self) -> StoreStats {
        StoreStats::default()
    }
    /// Called when the user's last handle to the engine is dropped, before the engine's state
    /// is: waits for background work started from [`Persistence::maintain`] (whose engine
    /// handle would otherwise keep that state — a durable engine's directory lock — alive
    /// after the user let go of it), and stops cluster mode's follower.
    fn close(&self) {}
}

/// Shared by every handle the user holds on an engine, and by nothing the engine runs in the
/// background: dropped with the user's last handle, it lets the persistence finish its
/// background work first, so that dropping (or closing, or freeing) an engine releases its
/// resources by the time it returns.
pub(crate) struct UserHandles(Arc<dyn Persistence>);

impl UserHandles {
    pub(crate) fn new(persistence: Arc<dyn Persistence>) -> UserHandles {
        UserHandles(persistence)
    }
}

impl Drop for UserHandles {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// Persistence for an in-memory engine: nothing to sync; blobs kept in a map.
#[derive(Default)]
pub(crate) struct MemoryPersistence {
    blobs: RwLock<HashMap<[u8; 32], Arc<[u8]>>>,
}

impl Persistence for MemoryPersistence {
    fn append(&self, _mutation: &Mutation) -> Result<u64> {
        Ok(0)
    }

    fn wait(&self, _ticket: u64) -> Result<()> {
        Ok(())
    }

    fn synced(&self) -> u64 {
        u64::MAX
    }

    fn readable(&self) -> u64 {
        u64::MAX
    }

    fn sync_through(&self, _ticket: u64) -> Result<()> {
        Ok(())
    }

    fn put_blob(&self, sha256: &[u8; 32], bytes: &[u8]) -> Result<()> {
        self.blobs
            .write()
            .entry(*sha256)
            .or_insert_with(|| bytes.into());
        Ok(())
    }

    fn get_blob(&self, sha256: &[u8; 32]) -> Result<Option<Vec<u8>>> {
        Ok(self.blobs.read().get(sha256).map(|b| b.to_vec()))
    }

    fn save_keys(&self, _keys: &StoredKeyRing) -> Result<()> {
        Ok(())
    }
}

/// A persistence whose syncs can be held on a latch, and a crash that keeps only what was
/// synced: lets a test stop a write at the worst instant (applied in memory, not yet durable)
/// and check what callers were told meanwhile.
#[cfg(test)]
pub(crate) mod latch {
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
}
