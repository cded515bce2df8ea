//! The engine: sharded in-memory state, the rules that decide each change, and the one place
//! (`apply`) where changes happen.
//!
//! Concurrency model. Readers (verify, get, list) take only per-shard read locks, never a
//! global one, and never hold two locks at once. Writers serialise on one writer mutex: they
//! decide a [`Mutation`] against the current state, append it to the persistence hook, apply
//! it, release the mutex, and only then wait for durability — so concurrent writers share
//! syncs (group commit). Because a writer never holds two shard locks at once either, no lock
//! order exists to get wrong.

use arc_swap::ArcSwap;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hashbrown::HashMap;
use parking_lot::{MappedRwLockWriteGuard, Mutex, MutexGuard, RwLock, RwLockWriteGuard};
use ring::rand::SystemRandom;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::access_token::{
    self, AccessTokenEntry, AccessTokenInfo, IssuedAccessToken, VerifiedAccessToken,
    ACCESS_TOKEN_PREFIX,
};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::device::{Device, DeviceAdded, NewDevice};
use crate::error::{Error, ErrorKind, Result};
use crate::event::{Event, EventKind, EventQueue};
use crate::key_ring::{KeyId, KeyInfo, KeyRing, KeySecret, StoredKeyRing};
use crate::mutation::Mutation;
use crate::persistence::{Change, MemoryPersistence, Persistence, UserHandles};
use crate::profile_image::{self, ProfileImage};
use crate::session_token::{
    self, Claims, SessionToken, VerifiedSession, MAX_EPOCH, MAX_HANDLE, SEALED_EPOCH,
};
use crate::user::{check_text, normalize_user_id, NewUser, User, UserPatch, UserRecord};
use crate::user_table::UserTable;

/// Number of shards of every sharded map; a power of two.
pub(crate) const SHARDS: usize = 64;

/// A lock on its own cache lines, so threads working on neighbouring shards do not slow each
/// other down through false sharing.
#[repr(align(128))]
#[derive(Default)]
struct Shard<T>(RwLock<T>);

fn shards<T: Default>() -> Box<[Shard<T>]> {
    (0..SHARDS).map(|_| Shard::default()).collect()
}

/// User id → handle.
type IdIndex = HashMap<Box<str>, u64>;

/// Everything the engine keeps about one user.
#[derive(Clone, Debug)]
pub(crate) struct UserSlot {
    pub record: UserRecord,
    /// Session epoch: session tokens carrying another value are revoked.
    pub epoch: u32,
    /// Set once any token was issued: from then on a login needs a token.
    pub token_required: bool,
    /// Exactly sized: a user's tokens change rarely and are many in total.
    pub tokens: Box<[AccessTokenEntry]>,
    /// Exactly sized too: a boxed slice is 8 bytes smaller than a `Vec`, which keeps the slot
    /// within one 128-byte allocation (`user_slot_fits_one_128_byte_allocation`).
    pub devices: Box<[Device]>,
    /// Durability ticket of the last mutation that changed this slot (0 for state loaded at
    /// open). A read that finds it newer than what is synced waits for that sync first, so
    /// nothing a call returns depends on a change a crash could still undo.
    pub seq: u64,
}

/// How durable the state behind an answer must be before the answer is given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Durability {
    /// A plain read: as durable as the sync mode makes a write call's acknowledgement.
    Read,
    /// An answer that hands out or confirms a credential: on stable storage, whatever the sync
    /// mode, so that a crash can never undo a revocation a credential already relies on.
    Credential,
}

/// The writer mutex held for one write call; dropping it ends the persistence's write (a
/// shared backend rolls back a write that decided not to write and releases its lock).
struct WriterGuard<'a> {
    engine: &'a Engine,
    state: MutexGuard<'a, WriterState>,
}

impl std::ops::Deref for WriterGuard<'_> {
    type Target = WriterState;
    fn deref(&self) -> &WriterState {
        &self.state
    }
}

impl std::ops::DerefMut for WriterGuard<'_> {
    fn deref_mut(&mut self) -> &mut WriterState {
        &mut self.state
    }
}

impl Drop for WriterGuard<'_> {
    fn drop(&mut self) {
        self.engine.inner.persistence.end_write();
    }
}

/// A user's credentials before a reload ([`Engine::reload_events`]).
struct HeldCredentials {
    user_id: String,
    epoch: u32,
    active: bool,
    tokens: Vec<u64>,
}

/// Counters, owned by the writer mutex.
struct WriterState {
    next_handle: u64,
    next_token_id: u64,
    /// Ticket of the last mutation committed: a writer that decides *not* to write still read
    /// everything appended so far, so it waits for this before answering.
    last_seq: u64,
    /// Most users a `Counters` record may presize the id index for: what the bytes being
    /// replayed can possibly hold (0 outside a replay). See [`Engine::set_presize_budget`].
    presize_budget: u64,
    /// Copies of the state in progress (compaction, export): a writer lets each save a user
    /// before changing it ([`state_copy`]). Almost always empty.
    copies: Vec<Arc<state_copy::CopyInProgress>>,
}

/// The result of [`Engine::upsert_user`].
#[derive(Clone, Debug, PartialEq)]
pub struct Upserted {
    /// The user now stored.
    pub user: User,
    /// True when this call created it; false when it already existed (MirrorFly's
    /// `isExisting`, inverted).
    pub created: bool,
}

/// A filter and page request for [`Engine::list_users`]. Every set filter must match.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UserQuery {
    /// Page size, 1..=100. Default 20.
    pub limit: usize,
    /// The `next_cursor` of the previous page; `None` for the first page.
    pub cursor: Option<String>,
    /// Only these user ids.
    pub user_ids: Option<Vec<String>>,
    /// Only users whose nickname starts with this (case-sensitive).
    pub nickname_prefix: Option<String>,
    /// Only users whose public metadata has this key with this string value.
    pub metadata_key: Option<String>,
    /// The value for `metadata_key`.
    pub metadata_value: Option<String>,
    /// Only users with this tag.
    pub tag: Option<String>,
    /// Only active (`true`) or deactivated (`false`) users.
    pub active: Option<bool>,
}

impl Default for UserQuery {
    fn default() -> UserQuery {
        UserQuery {
            limit: 20,
            cursor: None,
            user_ids: None,
            nickname_prefix: None,
            metadata_key: None,
            metadata_value: None,
            tag: None,
            active: None,
        }
    }
}

/// One page of users, in creation order.
#[derive(Clone, Debug, PartialEq)]
pub struct UserPage {
    /// The users.
    pub users: Vec<User>,
    /// Pass this as `cursor` to get the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// How [`Engine::authenticate`] accepted a login.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthMethod {
    /// By user id alone (allowed only by configuration, and only before any token was issued).
    UserIdOnly,
    /// By an access token.
    AccessToken {
        /// Its id.
        token_id: u64,
    },
    /// By a session token.
    SessionToken {
        /// Its expiry, milliseconds since the Unix epoch.
        expires_at_ms: i64,
    },
}

/// A successful login.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authenticated {
    /// The user.
    pub user_id: String,
    /// What credential was accepted.
    pub method: AuthMethod,
}

/// Builds an [`Engine`] with a configuration and a clock.
pub struct EngineBuilder {
    pub(crate) config: Config,
    pub(crate) clock: Arc<dyn Clock>,
    /// Used by [`EngineBuilder::open`] (in the store module).
    pub(crate) sync: crate::store::SyncMode,
}

impl EngineBuilder {
    /// Uses this configuration (checked when the engine is built).
    pub fn config(mut self, config: Config) -> EngineBuilder {
        self.config = config;
        self
    }

    /// Uses this clock instead of the system clock (tests, simulations).
    pub fn clock(mut self, clock: impl Clock) -> EngineBuilder {
        self.clock = Arc::new(clock);
        self
    }

    /// An engine whose state lives only in memory and is gone when it is dropped.
    pub fn in_memory(self) -> Result<Engine> {
        self.config.validate()?;
        let rng = SystemRandom::new();
        let keys = KeyRing::generate(&rng, self.clock.now_ms())?;
        Ok(Engine::assemble(
            self.config,
            self.clock,
            Arc::new(MemoryPersistence::default()),
            keys,
        ))
    }
}

/// The identity and token engine.
///
/// `Engine` is `Send + Sync` and used through `&self` from any number of threads; clones are
/// cheap handles to the same state.
///
/// ```
/// use tessera::{Engine, NewUser};
/// let engine = Engine::in_memory()?;
/// engine.create_user(NewUser::new("alice", "Alice"))?;
/// let session = engine.issue_session_token("alice", None)?;
/// let verified = engine.verify_session_token(session.as_str())?;
/// assert_eq!(verified.user_id, "alice");
/// let access = engine.issue_access_token("alice", Some("phone"))?;
/// assert_eq!(engine.verify_access_token(access.token.as_str())?.user_id, "alice");
/// # Ok::<(), tessera::Error>(())
/// ```
#[derive(Clone)]
pub struct Engine {
    /// `None` only in handles the engine makes for its own background work. Declared first so
    /// that the user's last handle waits for that work before dropping `inner`.
    _user: Option<Arc<UserHandles>>,
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    config: Config,
    clock: Arc<dyn Clock>,
    rng: SystemRandom,
    users: Box<[Shard<UserTable>]>,
    ids: Box<[Shard<IdIndex>]>,
    /// Number of live users.
    live_users: AtomicUsize,
    /// One past the largest handle ever stored: where pagination stops.
    handle_limit: AtomicU64,
    discovery: RwLock<HashMap<Box<str>, u64>>,
    push_tokens: RwLock<HashMap<Box<str>, u64>>,
    keys: ArcSwap<KeyRing>,
    /// Ticket of the latest mutation that removed a user or an index entry (delete, device
    /// removal or eviction, discovery-key change): a lookup that finds nothing may be looking
    /// at that removal, so it waits for it to be synced.
    removed_seq: AtomicU64,
    writer: Mutex<WriterState>,
    events: EventQueue,
    persistence: Arc<dyn Persistence>,
}

/// A handle that does not keep the engine alive: background threads (cluster follower) hold
/// one, so dropping the user's last [`Engine`] ends them.
#[derive(Clone)]
pub(crate) struct WeakEngine(std::sync::Weak<Inner>);

impl WeakEngine {
    pub(crate) fn upgrade(&self) -> Option<Engine> {
        self.0.upgrade().map(|inner| Engine { _user: None, inner })
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("users", &self.user_count())
            .finish_non_exhaustive()
    }
}

/// Fewest bytes one user takes in a snapshot or journal: a minimal `UserCreated` or
/// `UserRestored` payload is 9 bytes before its framing (pinned by a test). Dividing the bytes
/// to replay by it bounds how many users they can hold, so presizing for a forged counter
/// allocates at most a small multiple of the files' size.
pub(crate) const MIN_STORED_USER_BYTES: u64 = 8;

/// The largest user handle any release stored: format-1 session tokens carried 12 digits (the
/// current format 10, [`MAX_HANDLE`], past which new users are refused). A stored record
/// naming a larger one is damage, refused before the dense user table grows to reach it.
const MAX_STORED_HANDLE: u64 = 999_999_999_999;

fn shard_of(h: u64) -> usize {
    (h as usize) % SHARDS
}

fn id_shard(id: &str) -> usize {
    // FNV-1a: cheap, stable, good enough to spread ids over 64 shards (the map inside each
    // shard uses hashbrown's own hasher).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h as usize) % SHARDS
}

fn not_found(id: &str) -> Error {
    Error::new(ErrorKind::UserNotFound, format!("no user {id:?}"))
}

impl Engine {
    /// A builder with the default configuration and the system clock.
    pub fn builder() -> EngineBuilder {
        EngineBuilder {
            config: Config::default(),
            clock: Arc::new(SystemClock),
            sync: crate::store::SyncMode::default(),
        }
    }

    /// An in-memory engine with the default configuration.
    pub fn in_memory() -> Result<Engine> {
        Engine::builder().in_memory()
    }

    pub(crate) fn assemble(
        config: Config,
        clock: Arc<dyn Clock>,
        persistence: Arc<dyn Persistence>,
        keys: KeyRing,
    ) -> Engine {
        let capacity = config.event_queue_capacity;
        Engine {
            _user: Some(Arc::new(UserHandles::new(Arc::clone(&persistence)))),
            inner: Arc::new(Inner {
                config,
                clock,
                rng: SystemRandom::new(),
                users: shards(),
                ids: shards(),
                live_users: AtomicUsize::new(0),
                handle_limit: AtomicU64::new(1),
                discovery: RwLock::new(HashMap::new()),
                push_tokens: RwLock::new(HashMap::new()),
                keys: ArcSwap::from_pointee(keys),
                removed_seq: AtomicU64::new(0),
                writer: Mutex::new(WriterState {
                    next_handle: 1,
                    next_token_id: 1,
                    last_seq: 0,
                    presize_budget: 0,
                    copies: Vec::new(),
                }),
                events: EventQueue::new(capacity),
                persistence,
            }),
        }
    }

    #[allow(dead_code)] // used by cluster mode
    pub(crate) fn downgrade(&self) -> WeakEngine {
        WeakEngine(Arc::downgrade(&self.inner))
    }

    /// A handle for background work (a compaction thread): it does not count as the user's,
    /// so the user's last handle going away waits for that work rather than leaving the
    /// engine alive behind it.
    pub(crate) fn background_handle(&self) -> Engine {
        Engine {
            _user: None,
            inner: Arc::clone(&self.inner),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    fn now(&self) -> i64 {
        self.inner.clock.now_ms().max(0)
    }

    /// Number of users.
    pub fn user_count(&self) -> usize {
        self.inner.live_users.load(Ordering::Relaxed)
    }

    // ----- lookups ---------------------------------------------------------------------

    fn handle_of_normalized(&self, id: &str) -> Option<u64> {
        self.inner.ids[id_shard(id)].0.read().get(id).copied()
    }

    /// Normalises `id` and finds its handle. A miss waits until every removal it may be
    /// seeing is synced (see [`Engine::settle_miss`]).
    fn handle_of(&self, id: &str) -> Result<(u64, String)> {
        self.handle_of_borrowed(id)
            .map(|(h, id)| (h, id.into_owned()))
    }

    /// [`Engine::handle_of`] without copying the id when normalising leaves it unchanged
    /// (hot paths that need the id only for an error message).
    fn handle_of_borrowed<'a>(&self, id: &'a str) -> Result<(u64, std::borrow::Cow<'a, str>)> {
        let id = normalize_user_id(&self.inner.config, id)?;
        match self.handle_of_normalized(&id) {
            Some(h) => Ok((h, id)),
            None => {
                self.settle_miss()?;
                Err(not_found(&id))
            }
        }
    }

    /// The raw slot, for writers deciding under the writer mutex: what they read is ordered
    /// before the mutation they append, so their own durability wait covers it.
    fn peek_slot<T>(&self, handle: u64, f: impl FnOnce(&UserSlot) -> T) -> Option<T> {
        self.inner.users[shard_of(handle)]
            .0
            .read()
            .get(handle)
            .map(f)
    }

    /// Reads a slot for a caller: if the slot's last change is not yet durable enough for
    /// `need`, waits for it (outside the shard lock) before handing back what was read. A
    /// missing slot waits for the latest removal. Settled slots (nearly all) cost one
    /// comparison.
    fn with_slot<T>(
        &self,
        handle: u64,
        need: Durability,
        f: impl FnOnce(&UserSlot) -> T,
    ) -> Result<Option<T>> {
        let read = self.peek_slot(handle, |s| (s.seq, f(s)));
        match read {
            Some((seq, value)) => {
                self.settle(seq, need)?;
                Ok(Some(value))
            }
            None => {
                self.settle_miss()?;
                Ok(None)
            }
        }
    }

    fn with_user<T>(
        &self,
        id: &str,
        need: Durability,
        f: impl FnOnce(&UserSlot) -> Result<T>,
    ) -> Result<T> {
        let (handle, id) = self.handle_of(id)?;
        self.with_slot(handle, need, f)?
            .unwrap_or_else(|| Err(not_found(&id)))
    }

    /// Waits until the mutation of ticket `seq` is as durable as `need` asks.
    fn settle(&self, seq: u64, need: Durability) -> Result<()> {
        if seq == 0 {
            return Ok(()); // loaded at open, or an in-memory engine
        }
        let p = &self.inner.persistence;
        match need {
            Durability::Read if seq <= p.readable() => Ok(()),
            Durability::Read => p.wait(seq),
            Durability::Credential if seq <= p.synced() => Ok(()),
            Durability::Credential => p.sync_through(seq),
        }
    }

    /// A lookup found nothing: it may be seeing a removal whose record is not yet synced.
    /// Waits for it with credential strength (misses are rare; being exact costs little).
    fn settle_miss(&self) -> Result<()> {
        let seq = self.inner.removed_seq.load(Ordering::Acquire);
        self.settle(seq, Durability::Credential)
    }

    /// Leaves a write call that decided not to write: its answer rests on everything
    /// appended so far, so it waits for that before returning `result`.
    fn leave<T>(&self, w: WriterGuard<'_>, result: Result<T>) -> Result<T> {
        let seq = w.last_seq;
        drop(w);
        self.settle(seq, Durability::Credential)?;
        result
    }

    fn slot_clone(&self, handle: u64) -> Result<UserSlot> {
        self.peek_slot(handle, UserSlot::clone)
            .ok_or_else(|| Error::new(ErrorKind::Internal, "user index out of step"))
    }

    // ----- the one door ------------------------------------------------------------------

    /// Journals and applies a mutation; the caller holds the writer mutex. Returns the
    /// durability ticket to wait on once the mutex is released.
    fn commit(&self, w: &mut WriterState, m: Mutation) -> Result<u64> {
        let ticket = self.inner.persistence.append(&m)?;
        self.apply(w, m, ticket)?;
        w.last_seq = ticket;
        Ok(ticket)
    }

    /// The writer mutex, raw: for replay, export and tests, which must not start a write.
    fn lock_writer(&self) -> MutexGuard<'_, WriterState> {
        self.inner.writer.lock()
    }

    /// Starts a write: takes the writer mutex, then lets the persistence start its write (a
    /// shared backend takes the cluster-wide write lock there and hands back what other nodes
    /// committed meanwhile, which is applied before anything is decided, so every decision
    /// sees the whole cluster's state).
    fn write_lock(&self) -> Result<WriterGuard<'_>> {
        let mut guard = WriterGuard {
            engine: self,
            state: self.inner.writer.lock(),
        };
        let changes = self.inner.persistence.begin_write()?;
        self.apply_changes(&mut guard, changes)?;
        Ok(guard)
    }

    /// Starts a write about one user: the write lock first, then the id lookup, so the write
    /// decides on the user as the whole cluster has it. Looked up before the lock, the id
    /// would be resolved from this node's memory alone, which may not have heard yet of a user
    /// another node just created, or deleted and re-created under a new handle.
    fn write_user(&self, user_id: &str) -> Result<(WriterGuard<'_>, u64, String)> {
        let id = normalize_user_id(&self.inner.config, user_id)?.into_owned();
        let w = self.write_lock()?;
        match self.handle_of_normalized(&id) {
            Some(handle) => Ok((w, handle, id)),
            None => self.leave(w, Err(not_found(&id))),
        }
    }

    /// Applies what other nodes committed that this engine has not seen yet (cluster mode's
    /// follower calls this; a write does the same under its lock in [`Engine::write_lock`]).
    pub(crate) fn catch_up(&self) -> Result<()> {
        let mut w = self.lock_writer();
        let changes = self.inner.persistence.pull()?;
        self.apply_changes(&mut w, changes)
    }

    /// Applies changes committed by other nodes, raising on this node the events their
    /// writers raised there, so every node can drop the sockets it holds.
    fn apply_changes(&self, w: &mut WriterState, changes: Vec<Change>) -> Result<()> {
        for change in changes {
            match change {
                Change::Mutation { seq, mutation } => {
                    self.remote_events(&mutation);
                    self.apply(w, mutation, seq)?;
                }
                Change::Keys(stored) => {
                    let ring = KeyRing::from_stored(&stored)?;
                    self.install_keys(ring);
                }
                Change::Reload { state, keys } => {
                    let before = self.held_credentials(w);
                    self.reset(w);
                    for m in state {
                        self.apply(w, m, 0)?;
                    }
                    self.reload_events(before);
                    self.install_keys(KeyRing::from_stored(&keys)?);
                }
            }
        }
        Ok(())
    }

    /// Swaps in a key ring another node wrote, raising the events its change means here.
    fn install_keys(&self, ring: KeyRing) {
        let old = self.inner.keys.load_full();
        let live: Vec<KeyId> = ring.infos().iter().map(|k| k.key_id).collect();
        let retired: Vec<KeyId> = old
            .infos()
            .iter()
            .map(|k| k.key_id)
            .filter(|id| !live.contains(id))
            .collect();
        let replaced = !retired.is_empty() && retired.len() == old.infos().len();
        self.inner.keys.store(Arc::new(ring));
        for id in retired {
            self.event(EventKind::KeyRetired, None, None, Some(id.to_string()));
        }
        if replaced {
            self.event(EventKind::AllSessionsRevoked, None, None, None);
        }
    }

    /// The events a mutation committed by another node means, from the state before it.
    fn remote_events(&self, m: &Mutation) {
        let (kind, handle, tokens): (EventKind, u64, &[u64]) = match m {
            Mutation::UserDeleted { handle } => (EventKind::UserDeleted, *handle, &[]),
            Mutation::UserReplaced { handle, record } => {
                let was_active = self.peek_slot(*handle, |s| s.record.active);
                if was_active != Some(true) || record.active {
                    return;
                }
                (EventKind::UserDeactivated, *handle, &[])
            }
            Mutation::AccessTokenIssued {
                handle,
                evicted: Some(t),
                ..
            } => (
                EventKind::AccessTokenEvicted,
                *handle,
                std::slice::from_ref(t),
            ),
            Mutation::AccessTokenIssuedEvicting {
                handle, evicted, ..
            } if !evicted.is_empty() => (EventKind::AccessTokenEvicted, *handle, evicted),
            Mutation::AccessTokenRevoked { handle, token_id } => (
                EventKind::AccessTokenRevoked,
                *handle,
                std::slice::from_ref(token_id),
            ),
            Mutation::AccessTokensRevoked { handle } => {
                (EventKind::AccessTokensRevoked, *handle, &[])
            }
            Mutation::SessionsRevoked { handle, .. } => (EventKind::SessionsRevoked, *handle, &[]),
            _ => return,
        };
        let Some(id) = self.peek_slot(handle, |s| String::from(&*s.record.id)) else {
            return;
        };
        if tokens.is_empty() {
            self.event(kind, Some(&id), None, None);
        }
        for &t in tokens {
            self.event(kind, Some(&id), Some(t), None);
        }
    }

    /// What each user holds that a change may take away, for [`Engine::reload_events`].
    fn held_credentials(&self, w: &WriterState) -> Vec<(u64, HeldCredentials)> {
        (1..w.next_handle)
            .filter_map(|handle| {
                self.peek_slot(handle, |s| {
                    let held = HeldCredentials {
                        user_id: String::from(&*s.record.id),
                        epoch: s.epoch,
                        active: s.record.active,
                        tokens: s.tokens.iter().map(|t| t.id).collect(),
                    };
                    (handle, held)
                })
            })
            .collect()
    }

    /// After a reload (this node fell behind the pruned log and skipped the changes in
    /// between), raises revocation events from the difference with what users held before, so
    /// the node's server still drops the sockets of credentials revoked meanwhile: a handle
    /// gone is a deleted user (handles are never reused), a new session epoch is
    /// `SessionsRevoked`, a lost active flag `UserDeactivated`, and every access token gone
    /// (revoked one by one, all at once or evicted) one `AccessTokenRevoked`. Keys are
    /// compared by `install_keys`.
    fn reload_events(&self, before: Vec<(u64, HeldCredentials)>) {
        for (handle, old) in before {
            let now = self.peek_slot(handle, |s| {
                let tokens: Vec<u64> = s.tokens.iter().map(|t| t.id).collect();
                (s.epoch, s.record.active, tokens)
            });
            let id = Some(old.user_id.as_str());
            let Some((epoch, active, tokens)) = now else {
                self.event(EventKind::UserDeleted, id, None, None);
                continue;
            };
            for &t in old.tokens.iter().filter(|t| !tokens.contains(t)) {
                self.event(EventKind::AccessTokenRevoked, id, Some(t), None);
            }
            if epoch != old.epoch {
                self.event(EventKind::SessionsRevoked, id, None, None);
            }
            if old.active && !active {
                self.event(EventKind::UserDeactivated, id, None, None);
            }
        }
    }

    /// Forgets every user, for a reload from a full copy of the shared state.
    fn reset(&self, w: &mut WriterState) {
        let inner = &*self.inner;
        if !w.copies.is_empty() {
            // A copy in progress still needs every user it has not read as it was at its cut.
            for handle in 1..w.next_handle {
                let table = inner.users[shard_of(handle)].0.write();
                w.before_change(handle, table.get(handle));
            }
        }
        for shard in inner.users.iter() {
            *shard.0.write() = UserTable::default();
        }
        for shard in inner.ids.iter() {
            shard.0.write().clear();
        }
        inner.discovery.write().clear();
        inner.push_tokens.write().clear();
        inner.live_users.store(0, Ordering::Relaxed);
        w.next_handle = 1;
        w.next_token_id = 1;
    }

    /// Waits until the write of `ticket` is as durable as the sync mode promises.
    fn durable(&self, ticket: u64) -> Result<()> {
        self.inner.persistence.wait(ticket)?;
        // Outside the writer mutex: lets the store start a background compaction.
        self.inner.persistence.maintain(self);
        Ok(())
    }

    /// Waits until the write of `ticket` is on stable storage whatever the sync mode: for
    /// writes whose caller receives a credential.
    fn durable_credential(&self, ticket: u64) -> Result<()> {
        self.inner.persistence.sync_through(ticket)?;
        self.inner.persistence.maintain(self);
        Ok(())
    }

    /// Writes a snapshot of the whole state and starts a fresh journal, so the next open
    /// replays less. Durable engines also do this on their own when the journal has grown
    /// larger than the last snapshot; in memory it does nothing. Readers are never blocked,
    /// and writers wait only for the switch to the new journal (a sync of the old one), not
    /// while the state is copied out or the snapshot written: the snapshot is the state at
    /// the switch, copied user by user while writes go on (a writer saves a user's old
    /// version before changing one the copy has not reached yet).
    pub fn compact(&self) -> Result<()> {
        self.inner.persistence.compact(self)
    }

    /// Runs `f` holding the writer mutex: no write decides, appends or applies anything
    /// meanwhile (readers go on). A backup switches the journal here, so the files it copies
    /// hold the state at exactly this instant.
    pub(crate) fn with_writers_paused<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let _w = self.lock_writer();
        f()
    }

    /// The persistence hook, for a backup to ask it for its files.
    pub(crate) fn persistence(&self) -> &dyn Persistence {
        &*self.inner.persistence
    }

    /// Journal counters of a durable engine since it was opened (all zero in memory):
    /// `records_synced / syncs` shows how many concurrent writes shared each sync.
    pub fn store_stats(&self) -> crate::store::StoreStats {
        self.inner.persistence.stats()
    }

    /// Replays a stored mutation (snapshot or journal) during open: no journaling, no events.
    /// It takes the writer mutex only, never starts a write: in cluster mode a write would
    /// lock the head row and apply what other nodes committed since the state being replayed
    /// was read, in the middle of it (the follower catches up once the replay is done).
    pub(crate) fn replay(&self, m: Mutation) -> Result<()> {
        let mut w = self.lock_writer();
        self.apply(&mut w, m, 0)
    }

    /// How many users the id index can hold without growing.
    #[cfg(test)]
    pub(crate) fn id_index_capacity(&self) -> usize {
        self.inner.ids.iter().map(|s| s.0.read().capacity()).sum()
    }

    /// Bounds the id-index presizing of the replay that follows by the size of the files it
    /// reads (`stored_bytes`; 0 after it, which turns presizing off).
    pub(crate) fn set_presize_budget(&self, stored_bytes: u64) {
        self.lock_writer().presize_budget = stored_bytes / MIN_STORED_USER_BYTES;
    }

    /// Copies the whole state of `source` into this engine, which must be new (no user was
    /// ever created in it): users with their access tokens, devices, session epochs and
    /// profile images, the signing keys (so issued session tokens keep verifying) and the id
    /// counters (so no handle or token id is ever reused). Returns the number of users.
    ///
    /// This is how a single node moves into a cluster, and how a cluster is backed up into a
    /// data directory:
    ///
    /// ```no_run
    /// use tessera::Engine;
    /// let embedded = Engine::open("tessera-data")?;
    /// let cluster = Engine::open_postgres("host=db.internal dbname=tessera user=tessera")?;
    /// cluster.import_from(&embedded)?; // and back: Engine::open("backup")?.import_from(&cluster)
    /// # Ok::<(), tessera::Error>(())
    /// ```
    ///
    /// `source` is read as of one instant, the start of the call; neither its readers nor its
    /// writers wait while it is copied out. Into PostgreSQL the users go in as one transaction, after the key ring: if that
    /// fails, the target holds the keys and still no user, and the import can be run again.
    pub fn import_from(&self, source: &Engine) -> Result<usize> {
        let mut state = Vec::new();
        source.export(|m| {
            state.push(m.clone());
            Ok(())
        })?;
        let keys = source.stored_keys();
        // Images first: durable before any record names them.
        for m in &state {
            if let Mutation::UserRestored { record, .. } = m {
                let address = record
                    .profile_url
                    .as_deref()
                    .and_then(crate::persistence::embedded::blob_address_in);
                if let Some(sha) = address {
                    if let Some(bytes) = source.inner.persistence.get_blob(&sha)? {
                        self.inner.persistence.put_blob(&sha, &bytes)?;
                    }
                }
            }
        }
        let mut w = self.write_lock()?;
        if w.next_handle != 1 || self.user_count() != 0 {
            let e = Error::new(
                ErrorKind::InvalidArgument,
                "import_from needs an engine in which no user was ever created",
            );
            return self.leave(w, Err(e));
        }
        let ring = KeyRing::from_stored(&keys)?;
        self.inner.persistence.save_keys(&keys)?;
        let ticket = self.inner.persistence.append_batch(&state)?;
        let users = state.len().saturating_sub(1);
        w.presize_budget = state.len() as u64;
        for m in state {
            self.apply(&mut w, m, ticket)?;
        }
        self.inner.keys.store(Arc::new(ring));
        w.presize_budget = 0;
        w.last_seq = ticket;
        drop(w);
        self.durable(ticket)?;
        Ok(users)
    }

    /// The persisted form of the key ring.
    pub(crate) fn stored_keys(&self) -> StoredKeyRing {
        self.inner.keys.load().to_stored()
    }

    fn corrupt(what: &str) -> Error {
        Error::new(
            ErrorKind::Corrupt,
            format!("mutation refers to a missing {what}"),
        )
    }

    /// Applies one mutation. Every state change of the engine goes through here. Taking the
    /// mutation by value lets the records it carries move into the state instead of being
    /// copied, which is most of the work of replaying a snapshot. `seq` is the mutation's
    /// durability ticket (0 when replaying), stamped on every slot it changes.
    fn apply(&self, w: &mut WriterState, m: Mutation, seq: u64) -> Result<()> {
        let inner = &*self.inner;
        match m {
            Mutation::Counters {
                next_handle,
                next_token_id,
            } => {
                if self.user_count() == 0 && next_handle > w.next_handle {
                    // A snapshot starts with its counters: size the id index once rather
                    // than growing it through every doubling while a million users load.
                    // The counter read from disk is only a hint (an overestimate once users
                    // were deleted), so it is capped by what the replayed bytes can hold: a
                    // damaged or forged one that passed its checksum must not become an
                    // allocation that aborts the process (or costs far more than the files).
                    let hint = (next_handle - w.next_handle).min(w.presize_budget);
                    let per_shard = hint as usize / SHARDS + 1;
                    for shard in inner.ids.iter() {
                        shard.0.write().reserve(per_shard);
                    }
                }
                w.next_handle = w.next_handle.max(next_handle);
                w.next_token_id = w.next_token_id.max(next_token_id);
            }
            Mutation::UserCreated { handle, record } => {
                w.record_written(&record);
                self.insert_slot(
                    w,
                    handle,
                    UserSlot {
                        record,
                        epoch: 0,
                        token_required: false,
                        tokens: Box::default(),
                        devices: Box::default(),
                        seq,
                    },
                )?;
            }
            Mutation::UserRestored {
                handle,
                record,
                epoch,
                token_required,
                tokens,
                devices,
            } => {
                for t in &tokens {
                    w.next_token_id = w.next_token_id.max(t.id.saturating_add(1));
                }
                w.record_written(&record);
                self.insert_slot(
                    w,
                    handle,
                    UserSlot {
                        record,
                        epoch,
                        token_required,
                        tokens: tokens.into_boxed_slice(),
                        devices: devices.into_boxed_slice(),
                        seq,
                    },
                )?;
            }
            Mutation::UserReplaced { handle, record } => {
                let new_keys: Vec<Box<str>> = record.discovery_keys().to_vec();
                w.record_written(&record);
                let old_keys = {
                    let mut slot = self.slot_mut(w, handle, seq)?;
                    let old: Vec<Box<str>> = slot.record.discovery_keys().to_vec();
                    slot.record = record;
                    old
                };
                if !old_keys.is_empty() {
                    self.removed(seq);
                }
                if !old_keys.is_empty() || !new_keys.is_empty() {
                    let mut d = inner.discovery.write();
                    for k in &old_keys {
                        d.remove(k);
                    }
                    for k in new_keys {
                        d.insert(k, handle);
                    }
                }
            }
            other => self.apply_change(w, &other, seq)?,
        }
        Ok(())
    }

    /// The mutations that carry little data, applied by reference.
    fn apply_change(&self, w: &mut WriterState, m: &Mutation, seq: u64) -> Result<()> {
        let inner = &*self.inner;
        match m {
            Mutation::UserDeleted { handle } => {
                self.removed(seq);
                let removed = {
                    let mut table = inner.users[shard_of(*handle)].0.write();
                    w.before_change(*handle, table.get(*handle));
                    table.remove(*handle)
                };
                let slot = removed.ok_or_else(|| Self::corrupt("user"))?;
                inner.live_users.fetch_sub(1, Ordering::Relaxed);
                inner.ids[id_shard(&slot.record.id)]
                    .0
                    .write()
                    .remove(&slot.record.id);
                let mut d = inner.discovery.write();
                for k in slot.record.discovery_keys() {
                    d.remove(k);
                }
                drop(d);
                let mut p = inner.push_tokens.write();
                for dev in &slot.devices {
                    p.remove(dev.push_token.as_str());
                }
            }
            Mutation::DeviceAdded {
                handle,
                device,
                evicted,
                moved_from,
            } => {
                if evicted.is_some() || moved_from.is_some() {
                    self.removed(seq);
                }
                if let Some(from) = moved_from {
                    let mut slot = self.slot_mut(w, *from, seq)?;
                    edit_devices(
                        &mut slot.devices,
                        |d| d.push_token != device.push_token,
                        None,
                    );
                }
                {
                    let mut slot = self.slot_mut(w, *handle, seq)?;
                    edit_devices(
                        &mut slot.devices,
                        |d| {
                            d.push_token != device.push_token
                                && Some(&d.push_token) != evicted.as_ref()
                        },
                        Some(device.clone()),
                    );
                }
                let mut p = inner.push_tokens.write();
                if let Some(e) = evicted {
                    p.remove(e.as_str());
                }
                p.insert(Box::from(device.push_token.as_str()), *handle);
            }
            Mutation::DeviceRemoved { handle, push_token } => {
                self.removed(seq);
                {
                    let mut slot = self.slot_mut(w, *handle, seq)?;
                    edit_devices(&mut slot.devices, |d| &d.push_token != push_token, None);
                }
                inner.push_tokens.write().remove(push_token.as_str());
            }
            Mutation::AccessTokenIssued {
                handle,
                entry,
                evicted,
            } => self.apply_issued(w, *handle, entry, evicted.as_slice(), seq)?,
            Mutation::AccessTokenIssuedEvicting {
                handle,
                entry,
                evicted,
            } => self.apply_issued(w, *handle, entry, evicted, seq)?,
            Mutation::AccessTokenRevoked { handle, token_id } => {
                let mut slot = self.slot_mut(w, *handle, seq)?;
                slot.tokens = slot
                    .tokens
                    .iter()
                    .filter(|t| t.id != *token_id)
                    .cloned()
                    .collect();
            }
            Mutation::AccessTokensRevoked { handle } => {
                let mut slot = self.slot_mut(w, *handle, seq)?;
                slot.tokens = Box::default();
            }
            Mutation::SessionsRevoked { handle, epoch } => {
                let mut slot = self.slot_mut(w, *handle, seq)?;
                slot.epoch = *epoch;
            }
            Mutation::TokenRequired { handle } => {
                let mut slot = self.slot_mut(w, *handle, seq)?;
                slot.token_required = true;
            }
            Mutation::Counters { .. }
            | Mutation::UserCreated { .. }
            | Mutation::UserRestored { .. }
            | Mutation::UserReplaced { .. } => {
                return Err(Error::new(
                    ErrorKind::Internal,
                    "record-carrying mutation reached apply_change",
                ))
            }
        }
        Ok(())
    }

    /// Adds an issued access token to the user's tokens and drops the `evicted` ones.
    fn apply_issued(
        &self,
        w: &mut WriterState,
        handle: u64,
        entry: &AccessTokenEntry,
        evicted: &[u64],
        seq: u64,
    ) -> Result<()> {
        w.next_token_id = w.next_token_id.max(entry.id + 1);
        let mut slot = self.slot_mut(w, handle, seq)?;
        let kept = || slot.tokens.iter().filter(|t| !evicted.contains(&t.id));
        // Sized exactly up front: growing and then shrinking would leave allocator fragments
        // behind on every issue.
        let mut tokens = Vec::with_capacity(kept().count() + 1);
        tokens.extend(kept().cloned());
        tokens.push(entry.clone());
        slot.tokens = tokens.into_boxed_slice();
        slot.token_required = true;
        Ok(())
    }

    /// Write access to one user's slot, for `apply`: a mutation naming a user that does not
    /// exist does not fit the state, which only a corrupt journal can cause.
    /// The slot is stamped with the mutation's ticket `seq`, after any copy of the state in
    /// progress has saved it.
    fn slot_mut(
        &self,
        w: &WriterState,
        handle: u64,
        seq: u64,
    ) -> Result<MappedRwLockWriteGuard<'_, UserSlot>> {
        RwLockWriteGuard::try_map(self.inner.users[shard_of(handle)].0.write(), |t| {
            let slot = t.get_mut(handle)?;
            w.before_change(handle, Some(slot));
            slot.seq = seq;
            Some(slot)
        })
        .map_err(|_| Self::corrupt("user"))
    }

    /// Records that the mutation of ticket `seq` removes something lookups could miss.
    fn removed(&self, seq: u64) {
        self.inner.removed_seq.fetch_max(seq, Ordering::Release);
    }

    fn insert_slot(&self, w: &mut WriterState, handle: u64, slot: UserSlot) -> Result<()> {
        let inner = &*self.inner;
        if handle > MAX_STORED_HANDLE {
            return Err(Error::new(
                ErrorKind::Corrupt,
                format!(
                    "a stored user has handle {handle}, past any release's {MAX_STORED_HANDLE}"
                ),
            ));
        }
        let id = slot.record.id.clone();
        let keys: Vec<Box<str>> = slot.record.discovery_keys().to_vec();
        let pushes: Vec<Box<str>> = slot
            .devices
            .iter()
            .map(|d| Box::from(d.push_token.as_str()))
            .collect();
        // The slot goes in before the indexes that point at it, so a reader that finds the
        // id always finds the user.
        let inserted = {
            let mut table = inner.users[shard_of(handle)].0.write();
            w.before_change(handle, table.get(handle));
            table.insert(handle, slot)
        }
        .map_err(|e| {
            Error::new(
                ErrorKind::Exhausted,
                format!("no memory for the user table to reach handle {handle} ({e})"),
            )
        })?;
        w.next_handle = w.next_handle.max(handle + 1);
        if inserted {
            inner.live_users.fetch_add(1, Ordering::Relaxed);
        }
        inner.handle_limit.fetch_max(handle + 1, Ordering::Release);
        if !keys.is_empty() {
            let mut d = inner.discovery.write();
            for k in keys {
                d.insert(k, handle);
            }
        }
        if !pushes.is_empty() {
            let mut p = inner.push_tokens.write();
            for k in pushes {
                p.insert(k, handle);
            }
        }
        inner.ids[id_shard(&id)].0.write().insert(id, handle);
        Ok(())
    }

    pub(crate) fn event(
        &self,
        kind: EventKind,
        user: Option<&str>,
        token: Option<u64>,
        key: Option<String>,
    ) {
        self.inner.events.push(kind, user, token, key, self.now());
    }

    // ----- users -------------------------------------------------------------------------

    /// Creates a user. Fails with [`ErrorKind::UserAlreadyExists`] if the id is taken.
    pub fn create_user(&self, new: NewUser) -> Result<User> {
        self.create(new, false).map(|u| u.user)
    }

    /// Creates a user, or returns the existing one with that id unchanged (`created: false`).
    pub fn upsert_user(&self, new: NewUser) -> Result<Upserted> {
        self.create(new, true)
    }

    /// Creates a user moved in from another store (a `tessera users export` file, a hosted
    /// platform's user list) as it was there: with its creation time (milliseconds since the
    /// Unix epoch, 0 or more: [`ErrorKind::InvalidField`] otherwise) and its active state. Every
    /// other rule is [`Engine::create_user`]'s. A user created deactivated raises no event: no
    /// credential of it exists yet.
    pub fn import_user(&self, new: NewUser, created_at_ms: i64, active: bool) -> Result<User> {
        if created_at_ms < 0 {
            return Err(Error::new(
                ErrorKind::InvalidField,
                format!("created_at_ms is {created_at_ms}; it must be 0 or more"),
            ));
        }
        self.create_as(new, false, Some((created_at_ms, active)))
            .map(|u| u.user)
    }

    fn create(&self, new: NewUser, upsert: bool) -> Result<Upserted> {
        self.create_as(new, upsert, None)
    }

    /// `imported`: the creation time and active state of a user moved in ([`Engine::import_user`]).
    fn create_as(
        &self,
        new: NewUser,
        upsert: bool,
        imported: Option<(i64, bool)>,
    ) -> Result<Upserted> {
        let config = &self.inner.config;
        let id = normalize_user_id(config, &new.user_id)?.into_owned();
        let created_at_ms = imported.map_or_else(|| self.now(), |(at, _)| at);
        let mut record = UserRecord::from_new(config, &id, &new, created_at_ms)?;
        record.active = imported.is_none_or(|(_, active)| active);
        let mut w = self.write_lock()?;
        if let Some(handle) = self.handle_of_normalized(&id) {
            if upsert {
                let user = self.slot_clone(handle).map(|s| s.record.to_user(handle));
                return self.leave(
                    w,
                    user.map(|user| Upserted {
                        user,
                        created: false,
                    }),
                );
            }
            return self.leave(
                w,
                Err(Error::new(
                    ErrorKind::UserAlreadyExists,
                    format!("user {id:?} already exists"),
                )),
            );
        }
        if let Err(e) = self.check_discovery_keys(record.discovery_keys(), None) {
            return self.leave(w, Err(e));
        }
        let handle = w.next_handle;
        if handle > MAX_HANDLE {
            return Err(Error::new(ErrorKind::Exhausted, "user handles exhausted"));
        }
        let user = record.to_user(handle);
        let ticket = self.commit(&mut w, Mutation::UserCreated { handle, record })?;
        drop(w);
        self.durable(ticket)?;
        Ok(Upserted {
            user,
            created: true,
        })
    }

    fn check_discovery_keys(&self, keys: &[Box<str>], owner: Option<u64>) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let d = self.inner.discovery.read();
        for k in keys {
            if let Some(&h) = d.get(k) {
                if Some(h) != owner {
                    return Err(Error::new(
                        ErrorKind::DiscoveryKeyTaken,
                        format!("discovery key {k:?} belongs to another user"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Gets a user by id.
    pub fn get_user(&self, user_id: &str) -> Result<User> {
        let (handle, id) = self.handle_of(user_id)?;
        self.with_slot(handle, Durability::Read, |s| s.record.to_user(handle))?
            .ok_or_else(|| not_found(&id))
    }

    /// Gets a user by its [`User::handle`], the `sub` claim of its session tokens: a service
    /// that verified a token with an [exported key](Engine::export_key) finds its user here.
    /// Handles are never reused, so a deleted user's handle finds nobody
    /// ([`ErrorKind::UserNotFound`]), even when a new user has taken its id.
    pub fn get_user_by_handle(&self, handle: u64) -> Result<User> {
        self.with_slot(handle, Durability::Read, |s| s.record.to_user(handle))?
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::UserNotFound,
                    format!("no user has handle {handle}"),
                )
            })
    }

    /// Changes the fields a patch sets; all-or-nothing.
    pub fn update_user(&self, user_id: &str, patch: &UserPatch) -> Result<User> {
        let (mut w, handle, id) = self.write_user(user_id)?;
        let decided = self.live_record(handle, &id).and_then(|mut record| {
            record.apply_patch(&self.inner.config, patch)?;
            self.check_discovery_keys(record.discovery_keys(), Some(handle))?;
            Ok(record)
        });
        let record = match decided {
            Ok(r) => r,
            Err(e) => return self.leave(w, Err(e)),
        };
        let user = record.to_user(handle);
        let ticket = self.commit(&mut w, Mutation::UserReplaced { handle, record })?;
        drop(w);
        self.durable(ticket)?;
        Ok(user)
    }

    /// The current record of `handle`, under the writer mutex.
    fn live_record(&self, handle: u64, user_id: &str) -> Result<UserRecord> {
        self.peek_slot(handle, |s| s.record.clone())
            .ok_or_else(|| not_found(user_id))
    }

    /// Deletes a user and revokes everything it held. A user created later with the same id
    /// gets a new internal handle, so none of the old tokens can ever reach it.
    pub fn delete_user(&self, user_id: &str) -> Result<()> {
        let (mut w, handle, id) = self.write_user(user_id)?;
        if let Err(e) = self.live_record(handle, &id) {
            return self.leave(w, Err(e));
        }
        let ticket = self.commit(&mut w, Mutation::UserDeleted { handle })?;
        drop(w);
        self.event(EventKind::UserDeleted, Some(&id), None, None);
        self.durable(ticket)
    }

    /// Deactivates a user: its tokens stop verifying (they are not revoked) until reactivated.
    pub fn deactivate_user(&self, user_id: &str) -> Result<User> {
        self.set_active(user_id, false)
    }

    /// Reactivates a deactivated user.
    pub fn reactivate_user(&self, user_id: &str) -> Result<User> {
        self.set_active(user_id, true)
    }

    fn set_active(&self, user_id: &str, active: bool) -> Result<User> {
        let (mut w, handle, id) = self.write_user(user_id)?;
        let mut record = match self.live_record(handle, &id) {
            Ok(r) => r,
            Err(e) => return self.leave(w, Err(e)),
        };
        if record.active == active {
            return self.leave(w, Ok(record.to_user(handle)));
        }
        record.active = active;
        let user = record.to_user(handle);
        let ticket = self.commit(&mut w, Mutation::UserReplaced { handle, record })?;
        drop(w);
        if !active {
            self.event(EventKind::UserDeactivated, Some(&id), None, None);
        }
        self.durable(ticket)?;
        Ok(user)
    }

    /// Lists users in creation order, one page at a time, with optional filters. The private
    /// part of metadata is never matched.
    pub fn list_users(&self, query: &UserQuery) -> Result<UserPage> {
        if !(1..=100).contains(&query.limit) {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("limit must be 1..=100, got {}", query.limit),
            ));
        }
        if query.metadata_key.is_some() != query.metadata_value.is_some() {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "metadata_key and metadata_value go together",
            ));
        }
        let after = match &query.cursor {
            None => 0,
            Some(c) => decode_cursor(c)?,
        };
        let wanted: Option<Vec<u64>> = match &query.user_ids {
            None => None,
            Some(ids) => {
                if ids.len() > 100 {
                    return Err(Error::new(
                        ErrorKind::InvalidArgument,
                        "at most 100 user ids per query",
                    ));
                }
                let mut hs = Vec::with_capacity(ids.len());
                for id in ids {
                    let id = normalize_user_id(&self.inner.config, id)?;
                    hs.extend(self.handle_of_normalized(&id));
                }
                hs.sort_unstable();
                hs.dedup();
                Some(hs)
            }
        };
        let matches = |s: &UserSlot| {
            let r = &s.record;
            query.active.is_none_or(|a| r.active == a)
                && query
                    .nickname_prefix
                    .as_deref()
                    .is_none_or(|p| r.nickname.starts_with(p))
                && query
                    .tag
                    .as_deref()
                    .is_none_or(|t| r.tags().iter().any(|x| &**x == t))
                && match (&query.metadata_key, &query.metadata_value) {
                    (Some(k), Some(v)) => r.metadata_matches(k, v),
                    _ => true,
                }
        };
        let mut users = Vec::new();
        let mut last = after;
        let mut more = false;
        // The newest change among the users read: the page waits for it once, at the end.
        let mut newest = 0;
        let mut consider = |handle: u64, users: &mut Vec<User>| -> bool {
            // Returns false when the page is full and one more match exists.
            let hit = self.peek_slot(handle, |s| {
                newest = newest.max(s.seq);
                matches(s).then(|| s.record.to_user(handle))
            });
            if let Some(Some(u)) = hit {
                if users.len() == query.limit {
                    return false;
                }
                users.push(u);
                last = handle;
            }
            true
        };
        match wanted {
            Some(hs) => {
                for h in hs.into_iter().filter(|&h| h > after) {
                    if !consider(h, &mut users) {
                        more = true;
                        break;
                    }
                }
            }
            None => {
                // Handles are dense and ascending in creation order; holes are deleted users.
                let limit = self.inner.handle_limit.load(Ordering::Acquire);
                for h in after.saturating_add(1)..limit {
                    if !consider(h, &mut users) {
                        more = true;
                        break;
                    }
                }
            }
        }
        // A page shows both what it found and what it did not (deleted users).
        self.settle(newest, Durability::Read)?;
        self.settle_miss()?;
        Ok(UserPage {
            users,
            next_cursor: more.then(|| encode_cursor(last)),
        })
    }

    /// Finds the user holding a discovery key.
    pub fn find_user_by_discovery_key(&self, key: &str) -> Result<User> {
        let handle = self.inner.discovery.read().get(key).copied();
        let user = match handle {
            Some(h) => self.with_slot(h, Durability::Read, |s| s.record.to_user(h))?,
            None => {
                self.settle_miss()?;
                None
            }
        };
        user.ok_or_else(|| Error::new(ErrorKind::UserNotFound, "no user has this discovery key"))
    }

    // ----- profile images ------------------------------------------------------------------

    /// Stores an uploaded PNG or JPEG (checked by magic number, not by name) and points the
    /// user's profile URL at it. The image is durable before the record that refers to it.
    pub fn set_profile_image(&self, user_id: &str, bytes: &[u8]) -> Result<User> {
        let (format, digest) = profile_image::inspect(&self.inner.config, bytes)?;
        normalize_user_id(&self.inner.config, user_id)?;
        self.inner.persistence.put_blob(&digest, bytes)?;
        let url = profile_image::url(&self.inner.config, format, &digest);
        let (mut w, handle, id) = self.write_user(user_id)?;
        let mut record = match self.live_record(handle, &id) {
            Ok(r) => r,
            Err(e) => return self.leave(w, Err(e)),
        };
        record.profile_url = Some(url.into_boxed_str());
        let user = record.to_user(handle);
        let ticket = self.commit(&mut w, Mutation::UserReplaced { handle, record })?;
        drop(w);
        self.durable(ticket)?;
        Ok(user)
    }

    /// Reads an uploaded image by its SHA-256 (hex, as in the engine URL).
    pub fn profile_image(&self, sha256_hex: &str) -> Result<ProfileImage> {
        let missing = || Error::new(ErrorKind::ImageNotFound, "no image with this address");
        let digest = profile_image::parse_hex(sha256_hex).ok_or_else(missing)?;
        let bytes = self
            .inner
            .persistence
            .get_blob(&digest)?
            .ok_or_else(missing)?;
        let format = profile_image::ImageFormat::sniff(&bytes)
            .ok_or_else(|| Error::new(ErrorKind::Corrupt, "stored image is not PNG or JPEG"))?;
        Ok(ProfileImage {
            format,
            sha256_hex: profile_image::hex(&digest),
            bytes,
        })
    }

    // ----- devices -------------------------------------------------------------------------

    /// Registers a device for push notifications. Re-registering a push token refreshes it; a
    /// push token held by another user moves to this one (the install changed hands); past
    /// the per-type limit the oldest device of that type is evicted.
    pub fn add_device(&self, user_id: &str, new: NewDevice) -> Result<DeviceAdded> {
        new.validate(&self.inner.config)?;
        let device = new.into_device(self.now());
        let (mut w, handle, id) = self.write_user(user_id)?;
        let owner = self
            .inner
            .push_tokens
            .read()
            .get(device.push_token.as_str())
            .copied();
        let moved_from = owner.filter(|&o| o != handle);
        let evicted = self
            .peek_slot(handle, |s| {
                let same: Vec<&Device> = s
                    .devices
                    .iter()
                    .filter(|d| {
                        d.device_type == device.device_type && d.push_token != device.push_token
                    })
                    .collect();
                (same.len() >= self.inner.config.devices_per_type_max).then(|| same[0].clone())
            })
            .ok_or_else(|| not_found(&id));
        let evicted = match evicted {
            Ok(e) => e,
            Err(e) => return self.leave(w, Err(e)),
        };
        let ticket = self.commit(
            &mut w,
            Mutation::DeviceAdded {
                handle,
                device: device.clone(),
                evicted: evicted.as_ref().map(|d| d.push_token.clone()),
                moved_from,
            },
        )?;
        drop(w);
        self.durable(ticket)?;
        Ok(DeviceAdded { device, evicted })
    }

    /// The user's devices, oldest first.
    pub fn list_devices(&self, user_id: &str) -> Result<Vec<Device>> {
        self.with_user(user_id, Durability::Read, |s| Ok(s.devices.to_vec()))
    }

    /// Removes the user's device with this push token.
    pub fn remove_device(&self, user_id: &str, push_token: &str) -> Result<Device> {
        let (mut w, handle, id) = self.write_user(user_id)?;
        let device = self
            .peek_slot(handle, |s| {
                s.devices
                    .iter()
                    .find(|d| d.push_token == push_token)
                    .cloned()
            })
            .ok_or_else(|| not_found(&id))
            .and_then(|d| {
                d.ok_or_else(|| {
                    Error::new(
                        ErrorKind::DeviceNotFound,
                        "the user has no device with this push token",
                    )
                })
            });
        let device = match device {
            Ok(d) => d,
            Err(e) => return self.leave(w, Err(e)),
        };
        let ticket = self.commit(
            &mut w,
            Mutation::DeviceRemoved {
                handle,
                push_token: push_token.to_owned(),
            },
        )?;
        drop(w);
        self.durable(ticket)?;
        Ok(device)
    }

    /// Finds which user owns a push token.
    pub fn find_user_by_push_token(&self, push_token: &str) -> Result<User> {
        let handle = self.inner.push_tokens.read().get(push_token).copied();
        let user = match handle {
            Some(h) => self.with_slot(h, Durability::Read, |s| s.record.to_user(h))?,
            None => {
                self.settle_miss()?;
                None
            }
        };
        user.ok_or_else(|| Error::new(ErrorKind::DeviceNotFound, "no user has this push token"))
    }

    // ----- access tokens -------------------------------------------------------------------

    /// Issues a permanent access token. If the user already holds
    /// [`Config::access_tokens_per_user`] tokens, the oldest are revoked in the same step so
    /// that the user holds exactly that many afterwards, and their ids are returned in
    /// `evicted`, oldest first, with one [`EventKind::AccessTokenEvicted`] event each. That is
    /// one token normally, more when the limit was lowered since the tokens were issued.
    pub fn issue_access_token(
        &self,
        user_id: &str,
        label: Option<&str>,
    ) -> Result<IssuedAccessToken> {
        if let Some(l) = label {
            check_text("label", l, self.inner.config.access_token_label_max_chars)?;
        }
        let now = self.now();
        let (mut w, handle, id) = self.write_user(user_id)?;
        // The limit may have been lowered since the user's tokens were issued, so the oldest
        // tokens beyond it all go, not just one: afterwards the user holds exactly the limit.
        let keep = self.inner.config.access_tokens_per_user.saturating_sub(1);
        let found = self.peek_slot(handle, |s| {
            let excess = s.tokens.len().saturating_sub(keep);
            let evicted: Vec<u64> = s.tokens[..excess].iter().map(|t| t.id).collect();
            (s.record.active, evicted)
        });
        let (active, evicted) = match found {
            Some(f) => f,
            None => return self.leave(w, Err(not_found(&id))),
        };
        if !active {
            return self.leave(w, Err(deactivated(&id)));
        }
        let (token, digest) = access_token::generate(&self.inner.rng, handle)?;
        let entry = AccessTokenEntry {
            id: w.next_token_id,
            created_at_ms: now,
            digest,
            label: label.map(Box::from),
        };
        let info = entry.info();
        let ticket = self.commit(
            &mut w,
            Mutation::AccessTokenIssuedEvicting {
                handle,
                entry,
                evicted: evicted.clone(),
            },
        )?;
        drop(w);
        for &old in &evicted {
            self.event(EventKind::AccessTokenEvicted, Some(&id), Some(old), None);
        }
        self.durable_credential(ticket)?;
        Ok(IssuedAccessToken {
            token,
            info,
            evicted,
        })
    }

    /// Verifies an access token: its checksum, then SHA-256 of the text compared in constant
    /// time with the digests of the one user the token names.
    pub fn verify_access_token(&self, token: &str) -> Result<VerifiedAccessToken> {
        let (handle, digest) = access_token::parse(token)?;
        self.inner.persistence.check_fresh()?;
        self.with_slot(handle, Durability::Credential, |s| {
            let t = s
                .tokens
                .iter()
                .find(|t| t.digest == digest)
                .ok_or_else(Error::invalid_token)?;
            if !s.record.active {
                return Err(deactivated(&s.record.id));
            }
            Ok(VerifiedAccessToken {
                user_id: String::from(&*s.record.id),
                token_id: t.id,
            })
        })?
        .unwrap_or_else(|| Err(Error::invalid_token()))
    }

    /// The user's valid access tokens, oldest first (never their secrets).
    pub fn list_access_tokens(&self, user_id: &str) -> Result<Vec<AccessTokenInfo>> {
        self.with_user(user_id, Durability::Read, |s| {
            Ok(s.tokens.iter().map(|t| t.info()).collect())
        })
    }

    /// Revokes one access token of the user.
    pub fn revoke_access_token(&self, user_id: &str, token_id: u64) -> Result<()> {
        let (mut w, handle, id) = self.write_user(user_id)?;
        let has = self.peek_slot(handle, |s| s.tokens.iter().any(|t| t.id == token_id));
        match has {
            Some(true) => {}
            Some(false) => {
                let e = Error::new(
                    ErrorKind::TokenNotFound,
                    format!("user {id:?} has no access token {token_id}"),
                );
                return self.leave(w, Err(e));
            }
            None => return self.leave(w, Err(not_found(&id))),
        }
        let ticket = self.commit(&mut w, Mutation::AccessTokenRevoked { handle, token_id })?;
        drop(w);
        self.event(
            EventKind::AccessTokenRevoked,
            Some(&id),
            Some(token_id),
            None,
        );
        self.durable(ticket)
    }

    /// Revokes every access token of the user; returns how many there were.
    pub fn revoke_all_access_tokens(&self, user_id: &str) -> Result<usize> {
        let (mut w, handle, id) = self.write_user(user_id)?;
        let n = match self.peek_slot(handle, |s| s.tokens.len()) {
            Some(n) => n,
            None => return self.leave(w, Err(not_found(&id))),
        };
        if n == 0 {
            return self.leave(w, Ok(0));
        }
        let ticket = self.commit(&mut w, Mutation::AccessTokensRevoked { handle })?;
        drop(w);
        self.event(EventKind::AccessTokensRevoked, Some(&id), None, None);
        self.durable(ticket)?;
        Ok(n)
    }

    // ----- session tokens ------------------------------------------------------------------

    /// Issues a session token expiring at `expires_at_ms` (milliseconds since the epoch,
    /// rounded down to whole seconds as JWT's `exp` is), or after the configured default
    /// (7 days). An expiry in the past or beyond the configured maximum is rejected.
    pub fn issue_session_token(
        &self,
        user_id: &str,
        expires_at_ms: Option<i64>,
    ) -> Result<SessionToken> {
        let config = &self.inner.config;
        let now = self.now();
        let exp_s = session_token::expiry_seconds(
            now,
            expires_at_ms,
            config.session_ttl_ms,
            config.session_max_ttl_ms,
        )?;
        self.inner.persistence.check_fresh()?;
        let (handle, id) = self.handle_of_borrowed(user_id)?;
        // The token carries the epoch read here: a revocation that set it must be on disk
        // before the token is handed out, or a crash could bring the epoch back below the
        // token's and a later revocation would make the token valid again.
        let (active, epoch, required) = self
            .with_slot(handle, Durability::Credential, |s| {
                (s.record.active, s.epoch, s.token_required)
            })?
            .ok_or_else(|| not_found(&id))?;
        if !active {
            return Err(deactivated(&id));
        }
        if epoch > MAX_EPOCH || handle > MAX_HANDLE {
            // A handle past the token budget can only come from data of an older release.
            return Err(Error::new(
                ErrorKind::Exhausted,
                "this user's session revocations (or handle) exceed what a session token can \
                 carry; re-create the user",
            ));
        }
        if !required {
            // First token for this user: from now on a login needs one (Sendbird's rule).
            let mut w = self.write_lock()?;
            if self.peek_slot(handle, |s| s.token_required) == Some(false) {
                let ticket = self.commit(&mut w, Mutation::TokenRequired { handle })?;
                drop(w);
                self.durable_credential(ticket)?;
            }
        }
        let keys = self.inner.keys.load();
        session_token::encode(
            keys.active(),
            &Claims {
                handle,
                epoch,
                iat_s: now / 1000,
                exp_s,
            },
        )
    }

    /// Verifies a session token. In this order: format and signature (any failure, including
    /// a key id never issued, is [`ErrorKind::InvalidToken`]); expiry
    /// ([`ErrorKind::TokenExpired`]); revocation, by [`revoke_sessions`](Engine::revoke_sessions),
    /// by retiring its key ([`retire_key`](Engine::retire_key),
    /// [`revoke_all_sessions`](Engine::revoke_all_sessions)) or by deleting its user
    /// ([`ErrorKind::TokenRevoked`], never `UserNotFound`, even when another user now has
    /// the id); the user's state ([`ErrorKind::UserDeactivated`]). See docs/ERRORS.md.
    pub fn verify_session_token(&self, token: &str) -> Result<VerifiedSession> {
        let keys = self.inner.keys.load();
        let genuine = session_token::verify(&keys, token)?;
        drop(keys);
        self.inner.persistence.check_fresh()?;
        let claims = genuine.claims;
        if !session_token::accepted_at(claims.exp_s, self.inner.config.clock_skew_ms, self.now()) {
            return Err(Error::new(ErrorKind::TokenExpired, "session token expired"));
        }
        let revoked = |why: &str| {
            Error::new(
                ErrorKind::TokenRevoked,
                format!("session token revoked: {why}"),
            )
        };
        if genuine.key_retired {
            return Err(revoked("its signing key was retired"));
        }
        self.with_slot(claims.handle, Durability::Credential, |s| {
            if s.epoch != claims.epoch {
                return Err(revoked("the user's sessions were revoked"));
            }
            if !s.record.active {
                return Err(deactivated(&s.record.id));
            }
            Ok(VerifiedSession {
                user_id: String::from(&*s.record.id),
                issued_at_ms: claims.iat_ms(),
                expires_at_ms: claims.exp_ms(),
                key_id: genuine.key_id,
            })
        })?
        // Handles are never reused: whoever now has the id, this token's user is gone.
        .unwrap_or_else(|| Err(revoked("its user was deleted")))
    }

    /// Revokes every session token of the user issued before this call returns; tokens issued
    /// after it verify. Access tokens are untouched.
    pub fn revoke_sessions(&self, user_id: &str) -> Result<()> {
        let (mut w, handle, id) = self.write_user(user_id)?;
        let epoch = match self.peek_slot(handle, |s| s.epoch) {
            Some(e) => e,
            None => return self.leave(w, Err(not_found(&id))),
        };
        // Past MAX_EPOCH no new token can carry the epoch, and SEALED_EPOCH is in no token of
        // any format: the user ends sealed, with every session revoked, rather than wrapping
        // around and reviving old tokens.
        let next = epoch.saturating_add(1).min(SEALED_EPOCH);
        let ticket = self.commit(
            &mut w,
            Mutation::SessionsRevoked {
                handle,
                epoch: next,
            },
        )?;
        drop(w);
        self.event(EventKind::SessionsRevoked, Some(&id), None, None);
        self.durable(ticket)
    }

    /// Emergency: invalidates every session token of every user by replacing the whole key
    /// ring with one fresh key; the old tokens are [`ErrorKind::TokenRevoked`].
    pub fn revoke_all_sessions(&self) -> Result<()> {
        let _w = self.write_lock()?;
        let (ring, retired) = self
            .inner
            .keys
            .load()
            .replaced(&self.inner.rng, self.now())?;
        self.inner.persistence.save_keys(&ring.to_stored())?;
        self.inner.keys.store(Arc::new(ring));
        for id in retired {
            self.event(EventKind::KeyRetired, None, None, Some(id.to_string()));
        }
        self.event(EventKind::AllSessionsRevoked, None, None, None);
        Ok(())
    }

    // ----- signing keys --------------------------------------------------------------------

    /// Adds a new active signing key; older keys keep verifying until retired.
    pub fn rotate_key(&self) -> Result<KeyInfo> {
        let _w = self.write_lock()?;
        let ring = self
            .inner
            .keys
            .load()
            .rotated(&self.inner.rng, self.now())?;
        self.inner.persistence.save_keys(&ring.to_stored())?;
        let info = ring.infos().pop();
        self.inner.keys.store(Arc::new(ring));
        info.ok_or_else(|| Error::new(ErrorKind::Internal, "empty key ring"))
    }

    /// Retires a key: session tokens it signed stop verifying ([`ErrorKind::TokenRevoked`]; the
    /// key's secret is kept only to tell them from forgeries, never to sign or export). The
    /// active key cannot be retired.
    pub fn retire_key(&self, key_id: &str) -> Result<()> {
        let id = KeyId::parse(key_id)
            .ok_or_else(|| Error::new(ErrorKind::KeyNotFound, format!("no live key {key_id:?}")))?;
        let _w = self.write_lock()?;
        let ring = self.inner.keys.load().retired(id)?;
        self.inner.persistence.save_keys(&ring.to_stored())?;
        self.inner.keys.store(Arc::new(ring));
        self.event(EventKind::KeyRetired, None, None, Some(id.to_string()));
        Ok(())
    }

    /// The secret of a live signing key, so another service can verify session tokens with
    /// any HS256 JWT library; the token's `sub` claim, a decimal string, is the
    /// [`User::handle`] that [`Engine::get_user_by_handle`] resolves. Whoever holds the secret
    /// can mint tokens: treat it like a password.
    pub fn export_key(&self, key_id: &str) -> Result<KeySecret> {
        let missing = || Error::new(ErrorKind::KeyNotFound, format!("no live key {key_id:?}"));
        let id = KeyId::parse(key_id).ok_or_else(missing)?;
        self.inner.keys.load().secret(id).ok_or_else(missing)
    }

    /// Every live signing key, oldest first.
    pub fn keys(&self) -> Vec<KeyInfo> {
        self.inner.keys.load().infos()
    }

    // ----- authentication ------------------------------------------------------------------

    /// Sendbird's login rule. With no token, the login succeeds only if
    /// [`Config::allow_id_only_login`] is set and the user was never issued a token. With a
    /// token, it must be a valid access or session token *of this user*: the token's own
    /// verdict ([`Engine::verify_session_token`], [`Engine::verify_access_token`]) is the
    /// answer, and a valid token of anyone else is [`ErrorKind::InvalidToken`] — so with a
    /// token the answer never depends on whether `user_id` exists.
    pub fn authenticate(&self, user_id: &str, token: Option<&str>) -> Result<Authenticated> {
        self.inner.persistence.check_fresh()?;
        let Some(token) = token else {
            let (handle, id) = self.handle_of(user_id)?;
            let (active, required) = self
                .with_slot(handle, Durability::Credential, |s| {
                    (s.record.active, s.token_required)
                })?
                .ok_or_else(|| not_found(&id))?;
            if !active {
                return Err(deactivated(&id));
            }
            if self.inner.config.allow_id_only_login && !required {
                return Ok(Authenticated {
                    user_id: id,
                    method: AuthMethod::UserIdOnly,
                });
            }
            return Err(Error::new(
                ErrorKind::TokenRequired,
                "a token is required to log in",
            ));
        };
        // The id's shape is checked (that reveals nothing); its existence is not looked up.
        let id = normalize_user_id(&self.inner.config, user_id)?;
        let (owner, method) = if token.starts_with(ACCESS_TOKEN_PREFIX) {
            let v = self.verify_access_token(token)?;
            (
                v.user_id,
                AuthMethod::AccessToken {
                    token_id: v.token_id,
                },
            )
        } else {
            let v = self.verify_session_token(token)?;
            (
                v.user_id,
                AuthMethod::SessionToken {
                    expires_at_ms: v.expires_at_ms,
                },
            )
        };
        if owner != id {
            // A genuine token of someone else: to the caller it is simply not a credential
            // for this user.
            return Err(Error::invalid_token());
        }
        Ok(Authenticated {
            user_id: owner,
            method,
        })
    }

    // ----- events --------------------------------------------------------------------------

    /// Takes up to `max` queued events (revocations, store notices), oldest first.
    pub fn drain_events(&self, max: usize) -> Vec<Event> {
        self.inner.events.drain(max)
    }

    /// How many events were dropped because the queue was full.
    pub fn dropped_events(&self) -> u64 {
        self.inner.events.dropped()
    }
}

/// Keeps the devices `keep` accepts and appends `add`: a slot's devices are an exactly sized
/// boxed slice (they change rarely), rebuilt on each change.
fn edit_devices(
    devices: &mut Box<[Device]>,
    keep: impl FnMut(&Device) -> bool,
    add: Option<Device>,
) {
    let mut v = std::mem::take(devices).into_vec();
    v.retain(keep);
    v.extend(add);
    *devices = v.into_boxed_slice();
}

fn deactivated(id: &str) -> Error {
    Error::new(
        ErrorKind::UserDeactivated,
        format!("user {id:?} is deactivated"),
    )
}

fn encode_cursor(handle: u64) -> String {
    URL_SAFE_NO_PAD.encode(handle.to_be_bytes())
}

fn decode_cursor(c: &str) -> Result<u64> {
    let mut b = [0u8; 8];
    match URL_SAFE_NO_PAD.decode_slice(c.as_bytes(), &mut b) {
        Ok(8) => Ok(u64::from_be_bytes(b)),
        _ => Err(Error::new(ErrorKind::InvalidArgument, "invalid cursor")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::device::DeviceType;

    #[test]
    fn user_slot_fits_one_128_byte_allocation() {
        // Every user is one boxed slot. glibc serves n bytes from a chunk of n + 8 rounded up
        // to 16: 120 bytes is the most a 128-byte chunk holds, and 121..=136 take 144, i.e.
        // 16 bytes more per user (the budget is 300 per minimal user at 10 M users).
        let size = std::mem::size_of::<UserSlot>();
        assert!(size <= 120, "UserSlot is {size} bytes");
    }

    fn state(e: &Engine) -> Vec<Mutation> {
        let mut v = Vec::new();
        e.export(|m| {
            v.push(m.clone());
            Ok(())
        })
        .unwrap();
        v
    }

    /// Replaying the exported mutations into a fresh engine rebuilds the same state: the
    /// property the store's snapshot relies on.
    #[test]
    fn export_then_replay_rebuilds_identical_state() {
        let clock = ManualClock::new(1_700_000_000_000);
        let e = Engine::builder().clock(clock.clone()).in_memory().unwrap();
        let mut n = NewUser::new("a", "A");
        n.discovery_keys = vec!["k".into()];
        e.create_user(n).unwrap();
        e.create_user(NewUser::new("b", "B")).unwrap();
        e.create_user(NewUser::new("gone", "")).unwrap();
        e.delete_user("gone").unwrap();
        let t = e.issue_access_token("a", Some("x")).unwrap();
        e.add_device("b", NewDevice::new(DeviceType::Web, "p"))
            .unwrap();
        e.revoke_sessions("b").unwrap();
        let s = e.issue_session_token("b", None).unwrap();

        let copy = Engine::assemble(
            Config::default(),
            Arc::new(clock),
            Arc::new(MemoryPersistence::default()),
            KeyRing::from_stored(&e.stored_keys()).unwrap(),
        );
        for m in state(&e) {
            copy.replay(m).unwrap();
        }
        assert_eq!(state(&copy), state(&e));
        assert_eq!(
            copy.verify_access_token(t.token.as_str()).unwrap().user_id,
            "a"
        );
        assert_eq!(copy.verify_session_token(s.as_str()).unwrap().user_id, "b");
        assert_eq!(copy.find_user_by_discovery_key("k").unwrap().user_id, "a");
        assert_eq!(copy.find_user_by_push_token("p").unwrap().user_id, "b");
        // Handles and token ids continue after the old ones, never reusing "gone"'s handle.
        copy.create_user(NewUser::new("c", "")).unwrap();
        let Mutation::Counters { next_handle, .. } = state(&copy)[0] else {
            panic!("counters first")
        };
        assert_eq!(next_handle, 5);
    }

    /// The limit lowered in memory: an engine holding the state of one whose limit was 5 (as a
    /// reopen rebuilds it), with a limit of 2.
    #[test]
    fn issuing_under_a_lowered_limit_evicts_down_to_it() {
        let clock = ManualClock::new(1_700_000_000_000);
        let cap = |n| Config {
            access_tokens_per_user: n,
            ..Config::default()
        };
        let five = Engine::builder()
            .config(cap(5))
            .clock(clock.clone())
            .in_memory()
            .unwrap();
        five.create_user(NewUser::new("u", "")).unwrap();
        let old: Vec<IssuedAccessToken> = (0..5)
            .map(|_| five.issue_access_token("u", None).unwrap())
            .collect();
        let two = Engine::assemble(
            cap(2),
            Arc::new(clock),
            Arc::new(MemoryPersistence::default()),
            KeyRing::from_stored(&five.stored_keys()).unwrap(),
        );
        for m in state(&five) {
            two.replay(m).unwrap();
        }
        let new = two.issue_access_token("u", None).unwrap();
        let old_ids: Vec<u64> = old.iter().map(|t| t.info.id).collect();
        assert_eq!(new.evicted, old_ids[..4]);
        let events: Vec<(EventKind, Option<u64>)> = two
            .drain_events(100)
            .into_iter()
            .map(|e| (e.kind, e.token_id))
            .collect();
        let expected: Vec<_> = old_ids[..4]
            .iter()
            .map(|&id| (EventKind::AccessTokenEvicted, Some(id)))
            .collect();
        assert_eq!(events, expected);
        let valid: Vec<u64> = old
            .iter()
            .chain([&new])
            .filter(|t| two.verify_access_token(t.token.as_str()).is_ok())
            .map(|t| t.info.id)
            .collect();
        assert_eq!(valid, vec![old_ids[4], new.info.id]);
        // At the limit, an issue evicts exactly one, as before.
        let next = two.issue_access_token("u", None).unwrap();
        assert_eq!(next.evicted, vec![old_ids[4]]);
    }

    /// Found by the `store_open` fuzz target: a stored record naming a handle far past any
    /// release's made the dense user table grow to reach it — an allocation of up to 2^61
    /// slots that aborted the process (or, below that, gigabytes). Now refused as damage,
    /// changing nothing.
    #[test]
    fn a_stored_handle_past_any_release_is_corrupt_not_an_abort() {
        let e = Engine::in_memory().unwrap();
        e.create_user(NewUser::new("a", "")).unwrap();
        let mut record = e.slot_clone(1).unwrap().record;
        record.id = "huge".into();
        for handle in [MAX_STORED_HANDLE + 1, u64::MAX / 2, u64::MAX] {
            let err = e
                .replay(Mutation::UserCreated {
                    handle,
                    record: record.clone(),
                })
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Corrupt, "{handle}: {err}");
        }
        assert_eq!(e.user_count(), 1);
        assert_eq!(
            e.get_user("huge").unwrap_err().kind(),
            ErrorKind::UserNotFound
        );
        assert_eq!(
            e.create_user(NewUser::new("b", "")).unwrap().handle,
            2,
            "the counter did not move"
        );
    }

    /// State an older release could leave: a handle or an epoch past what the current token
    /// format carries. Issuing is refused (never a token that breaks the length bounds) and
    /// the old tokens stay revocable.
    #[test]
    fn handles_and_epochs_past_the_token_budget_are_refused_not_truncated() {
        let e = Engine::in_memory().unwrap();
        e.create_user(NewUser::new("a", "")).unwrap();
        let record = e.slot_clone(1).unwrap().record;
        let mut big = record.clone();
        big.id = "big".into();
        e.replay(Mutation::UserCreated {
            handle: MAX_HANDLE + 1,
            record: big,
        })
        .unwrap();
        let user = e.get_user("big").unwrap();
        assert_eq!(user.handle, MAX_HANDLE + 1);
        assert_eq!(e.get_user_by_handle(MAX_HANDLE + 1).unwrap(), user);
        assert_eq!(
            e.issue_session_token("big", None).unwrap_err().kind(),
            ErrorKind::Exhausted
        );
        assert_eq!(
            e.create_user(NewUser::new("c", "")).unwrap_err().kind(),
            ErrorKind::Exhausted
        );

        // Format 1 carried epochs up to 9 999 999: revoking must move past the one a token
        // holds, so it increments up to SEALED_EPOCH, which no token of any format carries.
        for (epoch, after) in [
            (MAX_EPOCH, MAX_EPOCH + 1),
            (150_000, 150_001),
            (SEALED_EPOCH - 1, SEALED_EPOCH),
            (SEALED_EPOCH, SEALED_EPOCH),
        ] {
            e.replay(Mutation::SessionsRevoked { handle: 1, epoch })
                .unwrap();
            let issued = e.issue_session_token("a", None);
            if epoch == MAX_EPOCH {
                assert!(issued.is_ok());
            } else {
                assert_eq!(issued.unwrap_err().kind(), ErrorKind::Exhausted, "{epoch}");
            }
            e.revoke_sessions("a").unwrap();
            assert_eq!(e.peek_slot(1, |s| s.epoch), Some(after), "{epoch}");
        }
    }

    #[test]
    fn replaying_a_mutation_for_a_missing_user_is_corruption() {
        let e = Engine::in_memory().unwrap();
        let err = e.replay(Mutation::UserDeleted { handle: 9 }).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt);
    }
}

#[path = "engine/state_copy.rs"]
mod state_copy;
#[cfg(test)]
pub(crate) use state_copy::saved_for_tests;

#[cfg(test)]
#[path = "engine/durability_tests.rs"]
mod durability_tests;

#[path = "engine/diagnosis.rs"]
mod diagnosis;
pub use diagnosis::{utc_rfc3339, TokenDiagnosis, TokenFinding, TokenFormat};
