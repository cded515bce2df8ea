//! Every state change of the engine as a self-contained fact.
//!
//! A mutation carries every value it needs (handles, ids, times, digests, which token or
//! device was evicted), so applying it is deterministic: the same sequence of mutations
//! always rebuilds the same state. That is what lets the store journal mutations and replay
//! them on open.

use serde::{Deserialize, Serialize};

use crate::access_token::AccessTokenEntry;
use crate::device::Device;
use crate::user::UserRecord;

/// One state change. Variants are only ever added, never changed, so journals written by an
/// older release keep replaying (the store's format version guards anything else).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) enum Mutation {
    /// Counters that must never go backwards; written first in every snapshot.
    Counters {
        next_handle: u64,
        next_token_id: u64,
    },
    /// A new user.
    UserCreated { handle: u64, record: UserRecord },
    /// A user's record replaced (update, deactivate/reactivate, profile image).
    UserReplaced { handle: u64, record: UserRecord },
    /// A user deleted with all its tokens and devices.
    UserDeleted { handle: u64 },
    /// A device registered; `moved_from` is the user that held the push token before, and
    /// `evicted` the push token of the oldest same-type device removed to make room.
    DeviceAdded {
        handle: u64,
        device: Device,
        evicted: Option<String>,
        moved_from: Option<u64>,
    },
    /// A device removed.
    DeviceRemoved { handle: u64, push_token: String },
    /// An access token issued; `evicted` is the id of the oldest token revoked to make room.
    AccessTokenIssued {
        handle: u64,
        entry: AccessTokenEntry,
        evicted: Option<u64>,
    },
    /// One access token revoked.
    AccessTokenRevoked { handle: u64, token_id: u64 },
    /// Every access token of a user revoked.
    AccessTokensRevoked { handle: u64 },
    /// The user's session epoch set (revoking every session token with an older one).
    SessionsRevoked { handle: u64, epoch: u32 },
    /// The user has been issued a token, so it can no longer log in with its id alone.
    TokenRequired { handle: u64 },
    /// A whole user, as written by a snapshot.
    UserRestored {
        handle: u64,
        record: UserRecord,
        epoch: u32,
        token_required: bool,
        tokens: Vec<AccessTokenEntry>,
        devices: Vec<Device>,
    },
}
