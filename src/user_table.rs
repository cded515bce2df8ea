//! Users stored by internal handle in a paged table, one table per shard.
//!
//! Handles are handed out sequentially, so shard `h % SHARDS` keeps user `h` at index
//! `h / SHARDS`: no hashing on the verify path, no hash-table slack (a hash map sits 44–87 %
//! full), and iteration in handle order is creation order, which is what pagination needs.
//! Each user is boxed so a deleted user's hole costs one pointer.
//!
//! The indexes are split into pages of [`PAGE_LEN`] slots, allocated when a user first lands
//! in them. A lookup is one more indexed load than a flat vector, and what it buys is that
//! memory follows the users, not the largest handle: a store whose users were mostly deleted
//! (guest accounts come and go) keeps no page for a run of 4,096 dead handles, and a damaged
//! or forged record naming handle 999 999 999 999 costs one page plus a page directory of a
//! few megabytes, where a flat table had to grow to ~125 GB to reach it.

use crate::engine::{UserSlot, SHARDS};

const PAGE_BITS: u32 = 12;
/// Slots per page: 32 KiB of pointers.
const PAGE_LEN: usize = 1 << PAGE_BITS;

type Page = [Option<Box<UserSlot>>; PAGE_LEN];

/// One shard's users.
#[derive(Default)]
pub(crate) struct UserTable {
    pages: Vec<Option<Box<Page>>>,
}

impl UserTable {
    /// The page and the slot within it that hold `handle`.
    fn locate(handle: u64) -> (usize, usize) {
        let i = handle / SHARDS as u64;
        ((i >> PAGE_BITS) as usize, (i as usize) & (PAGE_LEN - 1))
    }

    pub fn get(&self, handle: u64) -> Option<&UserSlot> {
        let (p, i) = Self::locate(handle);
        self.pages.get(p)?.as_deref()?[i].as_deref()
    }

    pub fn get_mut(&mut self, handle: u64) -> Option<&mut UserSlot> {
        let (p, i) = Self::locate(handle);
        self.pages.get_mut(p)?.as_deref_mut()?[i].as_deref_mut()
    }

    /// Stores a user; returns true when the handle was free. Fails, changing nothing, when the
    /// page directory cannot grow to reach the handle (only a handle read from a damaged or
    /// forged store is that large): a failed allocation must be an error, not an abort.
    pub fn insert(
        &mut self,
        handle: u64,
        slot: UserSlot,
    ) -> Result<bool, std::collections::TryReserveError> {
        let (p, i) = Self::locate(handle);
        if p >= self.pages.len() {
            // `try_reserve` grows geometrically: n new pages cost O(n) copying.
            self.pages.try_reserve(p + 1 - self.pages.len())?;
            self.pages.resize_with(p + 1, || None);
        }
        let page = self.pages[p].get_or_insert_with(|| Box::new([const { None }; PAGE_LEN]));
        Ok(page[i].replace(Box::new(slot)).is_none())
    }

    pub fn remove(&mut self, handle: u64) -> Option<UserSlot> {
        let (p, i) = Self::locate(handle);
        self.pages.get_mut(p)?.as_deref_mut()?[i].take().map(|b| *b)
    }

    /// Bytes of page directory and pages, for tests of the memory bound.
    #[cfg(test)]
    fn table_bytes(&self) -> usize {
        self.pages.capacity() * std::mem::size_of::<Option<Box<Page>>>()
            + self.pages.iter().flatten().count() * std::mem::size_of::<Page>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::user::UserRecord;

    fn slot(n: u64) -> UserSlot {
        UserSlot {
            record: UserRecord {
                id: Box::from(n.to_string()),
                nickname: Box::from(""),
                profile_url: None,
                created_at_ms: 0,
                active: true,
                extra: None,
            },
            epoch: 0,
            token_required: false,
            tokens: Default::default(),
            devices: Default::default(),
            seq: 0,
        }
    }

    #[test]
    fn slots_round_trip_across_page_edges() {
        let mut t = UserTable::default();
        // One shard's handles (multiples of SHARDS here), on both sides of page edges.
        let (s, page) = (SHARDS as u64, (PAGE_LEN * SHARDS) as u64);
        let handles = [s, 2 * s, page - s, page, page + s, 7 * page + 3 * s];
        for &h in &handles {
            assert_eq!(t.insert(h, slot(h)), Ok(true));
        }
        assert_eq!(t.insert(page, slot(page)), Ok(false), "taken");
        for &h in &handles {
            assert_eq!(&*t.get(h).unwrap().record.id, h.to_string());
            t.get_mut(h).unwrap().epoch = 9;
        }
        assert!(t.get(0).is_none() && t.get(page * 5).is_none() && t.get(u64::MAX).is_none());
        assert_eq!(t.remove(page).unwrap().epoch, 9);
        assert!(t.get(page).is_none() && t.remove(page).is_none());
        assert!(t.get(page + s).is_some());
    }

    #[test]
    fn memory_follows_users_not_the_largest_handle() {
        // A forged record at the largest handle a store may name: one page and a directory of
        // a few MB (a flat table needed ~2 GB in this shard).
        let mut t = UserTable::default();
        let largest = 999_999_999_999 / SHARDS as u64 * SHARDS as u64;
        assert_eq!(t.insert(largest, slot(1)), Ok(true));
        assert!(t.table_bytes() < 64 << 20, "{} bytes", t.table_bytes());
        // Churn: users at every 10,000th handle of 100 M cost a page each, not 12.5 M slots.
        let mut t = UserTable::default();
        for h in (0..100_000_000u64).step_by(10_000 * SHARDS) {
            t.insert(h, slot(h)).unwrap();
        }
        let users = 100_000_000 / (10_000 * SHARDS);
        assert!(t.table_bytes() <= users * std::mem::size_of::<Page>() + (1 << 16));
        // A handle no directory can reach fails without growing anything.
        let before = t.table_bytes();
        assert!(t.insert(u64::MAX, slot(0)).is_err());
        assert_eq!(t.table_bytes(), before);
    }

    #[test]
    fn growth_is_geometric() {
        // Users arrive in handle order; the directory is reallocated O(log n) times.
        let mut t = UserTable::default();
        let (mut reallocations, mut capacity) = (0, 0);
        for h in 0..(200 * PAGE_LEN as u64) {
            t.insert(h * SHARDS as u64, slot(h)).unwrap();
            if t.pages.capacity() != capacity {
                capacity = t.pages.capacity();
                reallocations += 1;
            }
        }
        assert!(reallocations < 20, "{reallocations} reallocations");
    }
}
