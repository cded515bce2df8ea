//! A copy of the whole state as of one instant, taken while writers go on.
//!
//! Compaction needs the state at the journal switch exactly (the snapshot replaces every
//! record before the switch, the new journal holds every record after it), and
//! [`Engine::import_from`] needs one consistent instant of its source. Both used to hold the
//! writer mutex while the state was copied out — 1–2.5 s at 1 M users, during which every
//! write waited.
//!
//! Now the writer mutex is held only to take the *cut*: the counters, the number of handles
//! handed out, and the registration of a [`CopyInProgress`] that writers consult. The copy
//! then reads users one at a time in handle order, each under its shard's read lock only,
//! moving a cursor past each handle it has read. A writer about to change, delete or (in a
//! reload) replace a user whose handle the cursor has not reached yet first saves the user as
//! it is — a clone, once per user per copy — and the copy takes that saved version instead
//! of the live one. So the copy is exactly the state at the cut, writers pay one clone for
//! the first change of each user not yet copied (and one `is_empty` check otherwise), and
//! readers are untouched.
//!
//! Why a copy-on-write instant rather than a "fuzzy" copy (each slot copied as it is when
//! reached, stamped with the journal position it reflects, and journal replay skipping the
//! records the snapshot already holds — the design first sketched in issue 13): a fuzzy
//! snapshot holds users at different instants, so it can hold states that were never true
//! together — a user deleted and re-created under its id after the cut appears twice with
//! one id, a push token moved between two users sits on both, a discovery key released by
//! one user and taken by another is held by both. Replay would then have to split records
//! that touch two users (`DeviceAdded { moved_from }`) and rebuild the id, discovery-key and
//! push-token indexes, and the snapshot could not be made durable before the journal had
//! synced every change it reflects. It would also change the snapshot format. The
//! copy-on-write instant needs none of that: snapshot and journal formats are unchanged and
//! replay is what it was.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use hashbrown::{HashMap, HashSet};
use parking_lot::Mutex;

use super::{shard_of, Engine, UserSlot, WriterState};
use crate::error::Result;
use crate::mutation::Mutation;
use crate::persistence::embedded::blob_address_in;
use crate::user::UserRecord;

/// Users saved by writers for a copy, ever, in this process (tests check that a race test
/// really raced).
#[cfg(test)]
static SAVED: AtomicU64 = AtomicU64::new(0);

#[cfg(test)]
pub(crate) fn saved_for_tests() -> u64 {
    SAVED.load(Ordering::Relaxed)
}

/// What writers consult while a copy runs. Registered in [`WriterState::copies`] at the cut.
pub(super) struct CopyInProgress {
    /// One past the largest handle handed out at the cut: the copy covers `1..limit`, and a
    /// user created later is not in it.
    limit: u64,
    /// The next handle the copy reads. Stored by the copying thread while it holds that
    /// handle's shard lock, so a writer holding the same shard's write lock sees whether the
    /// copy has read the handle yet.
    cursor: AtomicU64,
    /// Users as they were at the cut, saved by writers before their first change after it:
    /// `None` for a handle that held no user at the cut (only a reload can bring one back).
    saved: Mutex<HashMap<u64, Option<UserSlot>>>,
    /// Profile images named by records applied since the cut (see
    /// [`StateCopy::image_named_since_cut`]).
    images: Mutex<HashSet<[u8; 32]>>,
}

impl CopyInProgress {
    /// Called by a writer holding the write lock of `handle`'s shard, before the slot changes,
    /// goes or appears; `current` is the slot as it is now.
    pub(super) fn before_change(&self, handle: u64, current: Option<&UserSlot>) {
        if handle >= self.limit || handle < self.cursor.load(Ordering::Acquire) {
            return; // created after the cut, or already copied
        }
        self.saved.lock().entry(handle).or_insert_with(|| {
            #[cfg(test)]
            SAVED.fetch_add(1, Ordering::Relaxed);
            current.cloned()
        });
    }

    /// Called by a writer applying a record that may name a profile image.
    pub(super) fn record_written(&self, record: &UserRecord) {
        if let Some(sha) = record.profile_url.as_deref().and_then(blob_address_in) {
            self.images.lock().insert(sha);
        }
    }
}

impl WriterState {
    /// Lets every copy in progress save the slot of `handle` before it changes. Call with the
    /// handle's shard write-locked.
    pub(super) fn before_change(&self, handle: u64, current: Option<&UserSlot>) {
        for copy in &self.copies {
            copy.before_change(handle, current);
        }
    }

    /// Tells every copy in progress that a record was written (for blob collection).
    pub(super) fn record_written(&self, record: &UserRecord) {
        for copy in &self.copies {
            copy.record_written(record);
        }
    }
}

/// The state as of one instant (the cut), read while writers go on. Dropping it ends the
/// copy-on-write (it takes the writer mutex for a moment to unregister).
pub(crate) struct StateCopy<'a> {
    engine: &'a Engine,
    copy: Arc<CopyInProgress>,
    counters: Mutation,
}

impl Engine {
    /// Takes the cut of a [`StateCopy`]: under the writer mutex, calls `start` (the store
    /// switches to its new journal there, so that the copy is exactly the state at the
    /// switch), then registers the copy and releases the mutex. Returns `None`, copying
    /// nothing, when `start` does.
    pub(crate) fn begin_copy<T>(
        &self,
        start: impl FnOnce() -> Result<Option<T>>,
    ) -> Result<Option<(T, StateCopy<'_>)>> {
        let mut w = self.lock_writer();
        let Some(started) = start()? else {
            return Ok(None);
        };
        let copy = Arc::new(CopyInProgress {
            limit: w.next_handle,
            cursor: AtomicU64::new(1),
            saved: Mutex::new(HashMap::new()),
            images: Mutex::new(HashSet::new()),
        });
        w.copies.push(Arc::clone(&copy));
        let counters = Mutation::Counters {
            next_handle: w.next_handle,
            next_token_id: w.next_token_id,
        };
        drop(w);
        Ok(Some((
            started,
            StateCopy {
                engine: self,
                copy,
                counters,
            },
        )))
    }

    /// Calls `f` with a sequence of mutations that rebuilds the state as of the call (the
    /// counters, then one `UserRestored` per user). Neither readers nor writers wait for it.
    pub(crate) fn export(&self, f: impl FnMut(&Mutation) -> Result<()>) -> Result<()> {
        match self.begin_copy(|| Ok(Some(())))? {
            Some(((), copy)) => copy.for_each(f),
            None => Ok(()),
        }
    }
}

impl StateCopy<'_> {
    /// Calls `f` with mutations that rebuild the state at the cut: the counters, then one
    /// `UserRestored` per user, in handle order. Each user is read under its shard's read
    /// lock alone, which is released before `f` runs.
    pub(crate) fn for_each(&self, mut f: impl FnMut(&Mutation) -> Result<()>) -> Result<()> {
        f(&self.counters)?;
        for handle in 1..self.copy.limit {
            let Some(slot) = self.read(handle) else {
                continue;
            };
            f(&Mutation::UserRestored {
                handle,
                record: slot.record,
                epoch: slot.epoch,
                token_required: slot.token_required,
                tokens: slot.tokens.into_vec(),
                devices: slot.devices.into_vec(),
            })?;
        }
        Ok(())
    }

    /// How many handles the copy covers (`1..=handles()`, holes included).
    #[cfg(feature = "fault-injection")]
    pub(crate) fn handles(&self) -> u64 {
        self.copy.limit - 1
    }

    /// The user of `handle` at the cut, and the cursor moved past it.
    fn read(&self, handle: u64) -> Option<UserSlot> {
        let table = self.engine.inner.users[shard_of(handle)].0.read();
        let saved = self.copy.saved.lock().remove(&handle);
        let slot = match saved {
            Some(at_cut) => at_cut,
            None => table.get(handle).cloned(),
        };
        // Under the shard lock: a writer that takes it next sees the handle copied and
        // saves nothing.
        self.copy.cursor.store(handle + 1, Ordering::Release);
        slot
    }

    /// Whether a record applied since the cut (until now) names this blob. Blob collection
    /// spares such blobs even though the copy, which is the state at the cut, does not
    /// name them.
    pub(crate) fn image_named_since_cut(&self, sha256: &[u8; 32]) -> bool {
        self.copy.images.lock().contains(sha256)
    }
}

impl Drop for StateCopy<'_> {
    fn drop(&mut self) {
        let mut w = self.engine.lock_writer();
        w.copies.retain(|c| !Arc::ptr_eq(c, &self.copy));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::device::{DeviceType, NewDevice};
    use crate::key_ring::KeyRing;
    use crate::persistence::{Change, MemoryPersistence};
    use crate::user::{NewUser, UserPatch};
    use crate::Config;

    fn png(tag: &str) -> Vec<u8> {
        let mut v = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
        v.extend_from_slice(tag.as_bytes());
        v
    }

    /// Six users with a discovery key, a device, two access tokens and an image each (users
    /// 1..=6, ids u1..u6).
    fn engine() -> Engine {
        let e = Engine::builder()
            .clock(ManualClock::new(1_700_000_000_000))
            .in_memory()
            .unwrap();
        for i in 1..=6 {
            let id = format!("u{i}");
            let mut n = NewUser::new(id.as_str(), "before");
            n.discovery_keys = vec![format!("k{i}")];
            e.create_user(n).unwrap();
            e.add_device(&id, NewDevice::new(DeviceType::Ios, format!("p{i}")))
                .unwrap();
            e.issue_access_token(&id, None).unwrap();
            e.issue_access_token(&id, None).unwrap();
            e.set_profile_image(&id, &png(&id)).unwrap();
        }
        e
    }

    fn all(e: &Engine) -> Vec<Mutation> {
        let mut v = Vec::new();
        e.export(|m| {
            v.push(m.clone());
            Ok(())
        })
        .unwrap();
        v
    }

    fn cut(e: &Engine) -> StateCopy<'_> {
        e.begin_copy(|| Ok(Some(()))).unwrap().unwrap().1
    }

    fn read(copy: &StateCopy<'_>, mut during: impl FnMut(u64)) -> Vec<Mutation> {
        let mut v = Vec::new();
        copy.for_each(|m| {
            v.push(m.clone());
            if let Mutation::UserRestored { handle, .. } = m {
                during(*handle);
            }
            Ok(())
        })
        .unwrap();
        v
    }

    /// Every kind of write, to users `a` (changed) and `b` (deleted), moving `b`'s push token
    /// and discovery key to `a`, re-creating `b`'s id under a new handle, and more.
    fn write_everything(e: &Engine, a: u64, b: u64, tag: &str) {
        let (ida, idb) = (format!("u{a}"), format!("u{b}"));
        let patch = UserPatch {
            nickname: Some(format!("after {tag}")),
            discovery_keys: Some(vec![format!("k{a}-{tag}")]),
            ..Default::default()
        };
        e.update_user(&ida, &patch).unwrap();
        e.add_device(&ida, NewDevice::new(DeviceType::Ios, format!("p{b}")))
            .unwrap();
        e.issue_access_token(&ida, None).unwrap();
        let first = e.list_access_tokens(&ida).unwrap()[0].id;
        e.revoke_access_token(&ida, first).unwrap();
        e.revoke_sessions(&ida).unwrap();
        e.set_profile_image(&ida, &png(tag)).unwrap();
        e.delete_user(&idb).unwrap();
        let mut again = NewUser::new(idb.as_str(), "re-created");
        again.discovery_keys = vec![format!("k{b}")];
        e.create_user(again).unwrap();
        e.create_user(NewUser::new(format!("new-{tag}"), ""))
            .unwrap();
        e.deactivate_user(&ida).unwrap();
    }

    /// The copy is the state at its cut, whether the writes come before the copy reads
    /// anything, or while it reads (to users it has read and to users it has not).
    #[test]
    fn a_copy_is_the_state_at_its_cut_whatever_is_written_meanwhile() {
        let e = engine();
        let at_cut = all(&e);
        let copy = cut(&e);
        write_everything(&e, 1, 2, "before-read");
        let got = read(&copy, |handle| {
            if handle == 3 {
                // 3 was just read; 1 and 2 long before; 4..6 not yet.
                write_everything(&e, 3, 4, "read-3");
                write_everything(&e, 5, 1, "read-3b");
            }
        });
        assert_eq!(got, at_cut);
        drop(copy);
        assert!(e.inner.writer.lock().copies.is_empty(), "unregistered");
        // The writes all happened: a new copy sees them.
        let now = all(&e);
        assert_ne!(now, at_cut);
        assert_eq!(
            e.get_user("u3").unwrap().nickname,
            "after read-3",
            "{now:?}"
        );
        assert_eq!(e.find_user_by_push_token("p4").unwrap().user_id, "u3");
    }

    /// Replaying a copy rebuilds the state of its cut exactly, even after everything written
    /// during the copy (what a snapshot needs).
    #[test]
    fn a_copy_replays_to_the_state_of_its_cut() {
        let e = engine();
        let at_cut = all(&e);
        let copy = cut(&e);
        let got = read(&copy, |handle| {
            if handle == 2 {
                write_everything(&e, 6, 3, "x");
            }
        });
        let rebuilt = Engine::assemble(
            Config::default(),
            Arc::new(ManualClock::new(1_700_000_000_000)),
            Arc::new(MemoryPersistence::default()),
            KeyRing::from_stored(&e.stored_keys()).unwrap(),
        );
        for m in got {
            rebuilt.replay(m).unwrap();
        }
        assert_eq!(all(&rebuilt), at_cut);
    }

    /// Images named by records written after the cut are known to blob collection; images
    /// of the state at the cut are in the copy itself.
    #[test]
    fn images_named_since_the_cut_are_known() {
        let e = engine();
        let copy = cut(&e);
        let sha =
            |tag: &str| -> [u8; 32] { <sha2::Sha256 as sha2::Digest>::digest(png(tag)).into() };
        assert!(!copy.image_named_since_cut(&sha("u1")));
        e.set_profile_image("u1", &png("later")).unwrap();
        assert!(copy.image_named_since_cut(&sha("later")));
        // A record pointing at an existing image without uploading it counts too.
        let url = format!(
            "https://cdn.example/{}.png",
            crate::profile_image::hex(&sha("u2"))
        );
        e.update_user(
            "u3",
            &UserPatch {
                profile_url: Some(Some(url)),
                ..Default::default()
            },
        )
        .unwrap();
        assert!(copy.image_named_since_cut(&sha("u2")));
    }

    /// Cluster mode: a follower that fell behind reloads the whole state under the writer
    /// mutex while a copy (an `import_from` of this node) runs; the copy keeps its cut.
    #[test]
    fn a_reload_during_a_copy_leaves_the_copy_at_its_cut() {
        let e = engine();
        let other = engine();
        write_everything(&other, 2, 5, "elsewhere");
        let at_cut = all(&e);
        let copy = cut(&e);
        let got = read(&copy, |handle| {
            if handle == 2 {
                let mut w = e.lock_writer();
                let change = Change::Reload {
                    state: all(&other),
                    keys: other.stored_keys(),
                };
                e.apply_changes(&mut w, vec![change]).unwrap();
            }
        });
        assert_eq!(got, at_cut);
        assert_eq!(all(&e), all(&other));
    }

    /// Two copies at once (a compaction and an import) each keep their own cut.
    #[test]
    fn concurrent_copies_keep_their_own_cuts() {
        let e = engine();
        let first_cut = all(&e);
        let first = cut(&e);
        write_everything(&e, 1, 2, "a");
        let second_cut = all(&e);
        let second = cut(&e);
        write_everything(&e, 3, 4, "b");
        assert_eq!(read(&second, |_| ()), second_cut);
        write_everything(&e, 5, 6, "c");
        assert_eq!(read(&first, |_| ()), first_cut);
    }
}
