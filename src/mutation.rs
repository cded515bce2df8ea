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
    /// Written by releases that evicted at most one token per issue; still replayed, no longer
    /// written (see [`Mutation::AccessTokenIssuedEvicting`]).
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
    /// An access token issued; `evicted` holds the ids of the user's tokens revoked in the
    /// same step, oldest first, to keep the user within the per-user limit. More than one when
    /// the limit was lowered since the tokens were issued.
    AccessTokenIssuedEvicting {
        handle: u64,
        entry: AccessTokenEntry,
        evicted: Vec<u64>,
    },
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::access_token::TokenDigest;

    /// `AccessTokenIssued { handle: 1, entry: {id 3, created 1.7e12 ms, digest 0xab.., label
    /// "phone"}, evicted: Some(1) }` as journals written before `AccessTokenIssuedEvicting`
    /// existed hold it: variant 6, then the fields in order.
    pub(crate) const OLD_ISSUED: &[u8] = &[
        6, 1, 3, 128, 160, 171, 254, 249, 98, 171, 171, 171, 171, 171, 171, 171, 171, 171, 171,
        171, 171, 171, 171, 171, 171, 171, 171, 171, 171, 171, 171, 171, 171, 171, 171, 171, 171,
        171, 171, 171, 171, 1, 5, 112, 104, 111, 110, 101, 1, 1,
    ];

    pub(crate) fn old_issued() -> Mutation {
        Mutation::AccessTokenIssued {
            handle: 1,
            entry: AccessTokenEntry {
                id: 3,
                created_at_ms: 1_700_000_000_000,
                digest: TokenDigest([0xab; 32]),
                label: Some("phone".into()),
            },
            evicted: Some(1),
        }
    }

    /// Old journals keep decoding to the same mutation, and it still encodes the same way.
    #[test]
    fn a_journal_record_of_the_old_issue_form_still_decodes() {
        let m: Mutation = postcard::from_bytes(OLD_ISSUED).unwrap();
        assert_eq!(m, old_issued());
        assert_eq!(postcard::to_allocvec(&m).unwrap(), OLD_ISSUED);
    }

    /// The form written now is frozen the same way: variant 12, the last one.
    #[test]
    fn the_issue_form_with_many_evictions_is_stable() {
        let m = Mutation::AccessTokenIssuedEvicting {
            handle: 1,
            entry: AccessTokenEntry {
                id: 9,
                created_at_ms: 1_700_000_000_000,
                digest: TokenDigest([0xcd; 32]),
                label: None,
            },
            evicted: vec![4, 5, 6],
        };
        let mut golden = vec![12, 1, 9, 128, 160, 171, 254, 249, 98];
        golden.extend([0xcd; 32]);
        golden.extend([0, 3, 4, 5, 6]);
        assert_eq!(postcard::to_allocvec(&m).unwrap(), golden);
        assert_eq!(postcard::from_bytes::<Mutation>(&golden).unwrap(), m);
    }
}
