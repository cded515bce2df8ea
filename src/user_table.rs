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
            let needed = i + 1 - self.slots.len();
            if self.slots.capacity() - self.slots.len() < needed {
                // Grown by at least an eighth: n new users then cost O(n) copying. Growing by
                // exactly what was needed reallocated (and mostly copied) the whole table for
                // every new user: quadratic, minutes to open 10 M users. The slack stays
                // under an eighth of a pointer per user; a handle too large to reach still
                // fails here, without growing anything.
                let extra = needed.max(self.slots.capacity() / 8);
                self.slots.try_reserve_exact(extra)?;
            }
            self.slots.resize_with(i + 1, || None);
        }
        Ok(self.slots[i].replace(Box::new(slot)).is_none())
    }

    pub fn remove(&mut self, handle: u64) -> Option<UserSlot> {
        self.slots.get_mut(Self::index(handle))?.take().map(|b| *b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::user::UserRecord;

    fn slot() -> UserSlot {
        UserSlot {
            record: UserRecord {
                id: Box::from("u"),
                nickname: Box::from(""),
                profile_url: None,
                created_at_ms: 0,
                active: true,
                extra: None,
            },
            epoch: 0,
            token_required: false,
            tokens: Box::default(),
            devices: Box::default(),
            seq: 0,
        }
    }

    #[test]
    fn growth_is_geometric_and_its_slack_bounded() {
        // Users arrive in handle order; each new one extends the table by one entry. The
        // table must be reallocated O(log n) times, not once per user.
        let mut t = UserTable::default();
        let (mut reallocations, mut capacity) = (0, 0);
        let n = 20_000u64;
        for h in 0..n {
            assert_eq!(t.insert(h * SHARDS as u64, slot()), Ok(true));
            if t.slots.capacity() != capacity {
                capacity = t.slots.capacity();
                reallocations += 1;
            }
        }
        assert!(
            reallocations < 100,
            "{reallocations} reallocations for {n} users"
        );
        assert!(t.slots.capacity() <= n as usize + n as usize / 8 + 1);
        // A handle no table can reach fails without growing it.
        assert!(t.insert(u64::MAX, slot()).is_err());
        assert_eq!(t.slots.capacity(), capacity);
    }
}
