//! The hook through which the engine makes its changes durable, and the in-memory no-op.

use std::sync::Arc;

use hashbrown::HashMap;
use parking_lot::RwLock;

use crate::engine::Engine;
use crate::error::Result;
use crate::key_ring::StoredKeyRing;
use crate::mutation::Mutation;
use crate::store::StoreStats;

/// Where mutations, blobs and keys go. The engine calls `append` with its writer mutex held
/// (so records are in apply order) and `wait` after releasing it (so concurrent writers can
/// share one sync).
pub(crate) trait Persistence: Send + Sync + 'static {
    /// Records a mutation; returns a ticket to wait on.
    fn append(&self, mutation: &Mutation) -> Result<u64>;
    /// Returns once the mutation of `ticket` (and every earlier one) is durable.
    fn wait(&self, ticket: u64) -> Result<()>;
    /// Stores a content-addressed blob durably before any record refers to it.
    fn put_blob(&self, sha256: &[u8; 32], bytes: &[u8]) -> Result<()>;
    /// Reads a blob.
    fn get_blob(&self, sha256: &[u8; 32]) -> Result<Option<Vec<u8>>>;
    /// Replaces the stored key ring durably.
    fn save_keys(&self, keys: &StoredKeyRing) -> Result<()>;
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
    /// after the user let go of it).
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
