//! Events the host drains: revocations, so a chat server can drop sockets that used a
//! credential which is no longer valid, and notices from the durable store.

use parking_lot::Mutex;
use std::collections::VecDeque;

/// What happened: mostly what was revoked.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// The user's oldest access token was revoked because a new one exceeded the limit.
    AccessTokenEvicted,
    /// One access token was revoked.
    AccessTokenRevoked,
    /// Every access token of the user was revoked.
    AccessTokensRevoked,
    /// Every session token of the user was revoked.
    SessionsRevoked,
    /// The user was deleted (all its tokens are gone).
    UserDeleted,
    /// The user was deactivated (its tokens stop verifying until reactivated).
    UserDeactivated,
    /// A signing key was retired; its session tokens no longer verify.
    KeyRetired,
    /// Engine-wide emergency revocation: every session token issued before it is invalid.
    AllSessionsRevoked,
    /// Opening the data directory cut a torn tail off the newest journal: the last write,
    /// which was never fully synced (a crash or power loss during it; never an acknowledged
    /// write in [`crate::SyncMode::Durable`]). Queued once, at open; how many bytes and records
    /// were cut is in [`crate::StoreStats`].
    StoreTornTail,
}

impl EventKind {
    /// Stable numeric code, shared with the C ABI and Python.
    pub const fn code(self) -> u32 {
        match self {
            EventKind::AccessTokenEvicted => 1,
            EventKind::AccessTokenRevoked => 2,
            EventKind::AccessTokensRevoked => 3,
            EventKind::SessionsRevoked => 4,
            EventKind::UserDeleted => 5,
            EventKind::UserDeactivated => 6,
            EventKind::KeyRetired => 7,
            EventKind::AllSessionsRevoked => 8,
            EventKind::StoreTornTail => 9,
        }
    }

    /// Stable snake_case name, used in JSON.
    pub const fn as_str(self) -> &'static str {
        match self {
            EventKind::AccessTokenEvicted => "access_token_evicted",
            EventKind::AccessTokenRevoked => "access_token_revoked",
            EventKind::AccessTokensRevoked => "access_tokens_revoked",
            EventKind::SessionsRevoked => "sessions_revoked",
            EventKind::UserDeleted => "user_deleted",
            EventKind::UserDeactivated => "user_deactivated",
            EventKind::KeyRetired => "key_retired",
            EventKind::AllSessionsRevoked => "all_sessions_revoked",
            EventKind::StoreTornTail => "store_torn_tail",
        }
    }
}

/// One event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// The user concerned, for per-user events.
    pub user_id: Option<String>,
    /// The access token concerned, for single-token events.
    pub token_id: Option<u64>,
    /// The key concerned, for key retirement.
    pub key_id: Option<String>,
    /// When, milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// Sequence number, from 1, with no gaps except for dropped events.
    pub seq: u64,
}

/// A bounded queue: when the host does not drain it, the oldest events are dropped and
/// counted rather than letting memory grow without bound.
pub(crate) struct EventQueue {
    inner: Mutex<QueueState>,
    capacity: usize,
}

struct QueueState {
    events: VecDeque<Event>,
    next_seq: u64,
    dropped: u64,
}

impl EventQueue {
    pub fn new(capacity: usize) -> EventQueue {
        EventQueue {
            inner: Mutex::new(QueueState {
                events: VecDeque::new(),
                next_seq: 1,
                dropped: 0,
            }),
            capacity,
        }
    }

    pub fn push(
        &self,
        kind: EventKind,
        user_id: Option<&str>,
        token_id: Option<u64>,
        key_id: Option<String>,
        at_ms: i64,
    ) {
        let mut q = self.inner.lock();
        if q.events.len() == self.capacity {
            q.events.pop_front();
            q.dropped += 1;
        }
        let seq = q.next_seq;
        q.next_seq += 1;
        q.events.push_back(Event {
            kind,
            user_id: user_id.map(String::from),
            token_id,
            key_id,
            at_ms,
            seq,
        });
    }

    pub fn drain(&self, max: usize) -> Vec<Event> {
        let mut q = self.inner.lock();
        let n = max.min(q.events.len());
        q.events.drain(..n).collect()
    }

    pub fn dropped(&self) -> u64 {
        self.inner.lock().dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_fifo_counts_drops() {
        let q = EventQueue::new(2);
        for i in 0..3 {
            q.push(EventKind::SessionsRevoked, Some("u"), Some(i), None, 0);
        }
        assert_eq!(q.dropped(), 1);
        let e = q.drain(10);
        assert_eq!(e.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![2, 3]);
        assert!(q.drain(10).is_empty());
    }

    #[test]
    fn codes_are_unique() {
        use EventKind::*;
        let all = [
            AccessTokenEvicted,
            AccessTokenRevoked,
            AccessTokensRevoked,
            SessionsRevoked,
            UserDeleted,
            UserDeactivated,
            KeyRetired,
            AllSessionsRevoked,
            StoreTornTail,
        ];
        let codes: std::collections::HashSet<_> = all.iter().map(|k| k.code()).collect();
        assert_eq!(codes.len(), all.len());
        let names: std::collections::HashSet<_> = all.iter().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), all.len());
    }
}
