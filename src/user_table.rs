//! Users stored by internal handle in a dense table, one table per shard.
//!
//! Handles are handed out sequentially, so shard `h % SHARDS` keeps user `h` at index
//! `h / SHARDS` of a vector: no hashing on the verify path, no hash-table slack (a hash map
//! sits 44–87 % full), and iteration in handle order is creation order, which is what
//! pagination needs. Each user is boxed so a deleted user's hole costs one pointer.

use crate::engine::{UserSlot, SHARDS};

/// One shard's users.
#[derive(Default)]
pub(crate) struct UserTable {
    slots: Vec<Option<Box<UserSlot>>>,
}

impl UserTable {
    fn index(handle: u64) -> usize {
        (handle / SHARDS as u64) as usize
    }

    pub fn get(&self, handle: u64) -> Option<&UserSlot> {
        self.slots.get(Self::index(handle))?.as_deref()
    }

    pub fn get_mut(&mut self, handle: u64) -> Option<&mut UserSlot> {
        self.slots.get_mut(Self::index(handle))?.as_deref_mut()
    }

    /// Stores a user; returns true when the handle was free. Fails, changing nothing, when the
    /// table cannot grow to reach the handle (only a handle read from a damaged or forged store
    /// is that large): a failed allocation must be an error, not an abort.
    pub fn insert(
        &mut self,
        handle: u64,
        slot: UserSlot,
    ) -> Result<bool, std::collections::TryReserveError> {
        let i = Self::index(handle);
        if i >= self.slots.len() {
            self.slots.try_reserve_exact(i + 1 - self.slots.len())?;
            self.slots.resize_with(i + 1, || None);
        }
        Ok(self.slots[i].replace(Box::new(slot)).is_none())
    }

    pub fn remove(&mut self, handle: u64) -> Option<UserSlot> {
        self.slots.get_mut(Self::index(handle))?.take().map(|b| *b)
    }
}
