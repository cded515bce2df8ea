//! The hook through which the engine makes its changes durable.
//!
//! Three implementations side by side: [`MemoryPersistence`] (nothing to keep), `embedded`
//! (the journal and snapshots of a data directory, `crate::store`) and `postgres` (cluster
//! mode). The rules that decide and apply every change stay in `crate::engine`, above them.

mod backup;
pub(crate) mod embedded;
#[cfg(test)]
pub(crate) mod latch;
mod memory;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;

use std::path::Path;
use std::sync::Arc;

pub use backup::{BackupProgress, BackupStats};
pub(crate) use memory::MemoryPersistence;

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
    /// Copies the files holding the engine's state at one instant into the empty directory
    /// `to`, while readers and writers go on ([`Engine::backup_to`]), and returns what it
    /// wrote. `None`: this backend has no such files, and the backup copies the state through
    /// [`Engine::import_from`] instead. `progress(bytes copied, bytes expected)` is called as
    /// the copy goes.
    fn backup_files(
        &self,
        _engine: &Engine,
        _to: &Path,
        _progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Option<BackupStats>> {
        Ok(None)
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
