//! The persistence of an in-memory engine: nothing to sync; blobs kept in a map.

use std::sync::Arc;

use hashbrown::HashMap;
use parking_lot::RwLock;

use super::Persistence;
use crate::error::Result;
use crate::key_ring::StoredKeyRing;
use crate::mutation::Mutation;

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
