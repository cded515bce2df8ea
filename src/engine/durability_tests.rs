//! Nothing a call returns depends on a write that is not yet durable. Each test holds the
//! sync of one write on a latch (applied in memory, not on disk), makes a second call that
//! reads what that write changed, then crashes and recovers from what was synced.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use ring::rand::SystemRandom;

use super::*;
use crate::key_ring::KeyRing;
use crate::persistence::latch::LatchPersistence;

/// How long a call must stay blocked to count as "did not return": a broken build returns in
/// microseconds, so a miss here is a real failure, never a slow machine's false alarm.
const BLOCKED: Duration = Duration::from_millis(300);

struct Node {
    engine: Engine,
    latch: Arc<LatchPersistence>,
    keys: StoredKeyRing,
}

fn node() -> Node {
    let latch = LatchPersistence::new();
    let ring = KeyRing::generate(&SystemRandom::new(), 1).unwrap();
    let keys = ring.to_stored();
    let engine = Engine::assemble(
        Config::default(),
        Arc::new(SystemClock),
        latch.clone(),
        ring,
    );
    Node {
        engine,
        latch,
        keys,
    }
}

impl Node {
    /// Kills the node and recovers a new one from what was synced.
    fn crash_and_recover(self) -> Engine {
        let (records, saved_keys) = self.latch.crash();
        let keys = KeyRing::from_stored(saved_keys.as_ref().unwrap_or(&self.keys)).unwrap();
        let engine = Engine::assemble(
            Config::default(),
            Arc::new(SystemClock),
            Arc::new(MemoryPersistence::default()),
            keys,
        );
        for m in records {
            engine.replay(m).unwrap();
        }
        engine
    }

    /// Starts `f` on its own thread once the writer mutex is free, i.e. once every write
    /// started before has been applied in memory.
    fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Engine) -> T + Send + 'static,
    ) -> mpsc::Receiver<T> {
        drop(self.engine.lock_writer());
        let (tx, rx) = mpsc::channel();
        let engine = self.engine.clone();
        std::thread::spawn(move || {
            let _ = tx.send(f(&engine));
        });
        rx
    }

    /// Starts a write and returns once it is applied in memory and stuck before its sync.
    fn stall<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Engine) -> T + Send + 'static,
    ) -> mpsc::Receiver<T> {
        let before = self.latch.appended();
        let rx = self.spawn(f);
        while self.latch.appended() == before {
            std::thread::yield_now();
        }
        drop(self.engine.lock_writer()); // appended under the mutex, applied before its release
        rx
    }
}

fn blocked<T>(rx: &mpsc::Receiver<T>) -> bool {
    matches!(
        rx.recv_timeout(BLOCKED),
        Err(mpsc::RecvTimeoutError::Timeout)
    )
}

/// The issue's scenario: revoke on one thread (its sync stalled), issue on another, crash.
/// No token may be acknowledged whose epoch a crash can take back: after recovery, one more
/// revocation must refuse every token the callers received.
#[test]
fn a_session_token_never_depends_on_an_unsynced_revocation() {
    let n = node();
    n.engine.create_user(NewUser::new("alice", "A")).unwrap();
    let before = n.engine.issue_session_token("alice", None).unwrap();
    n.latch.hold();
    let revoke = n.stall(|e| e.revoke_sessions("alice"));
    let issue = n.spawn(|e| e.issue_session_token("alice", None));
    assert!(
        blocked(&issue),
        "a session token was handed out while the revocation it carries was not durable"
    );
    let engine = n.crash_and_recover();
    assert!(
        revoke.recv().unwrap().is_err(),
        "the revocation was never acknowledged"
    );
    let issued = issue.recv().unwrap();
    assert!(issued.is_err(), "the crash left no token acknowledged");
    // The lost revocation was never acknowledged, so the earlier token is valid again; one
    // more revocation ends it, and no acknowledged token comes back to life.
    engine.verify_session_token(before.as_str()).unwrap();
    engine.revoke_sessions("alice").unwrap();
    let err = engine.verify_session_token(before.as_str()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TokenRevoked);
}

/// Once the revocation's sync completes, the waiting issue returns a token carrying the new
/// epoch, and that token survives a crash.
#[test]
fn a_session_issue_waiting_on_a_revocation_completes_with_it() {
    let n = node();
    n.engine.create_user(NewUser::new("alice", "A")).unwrap();
    let before = n.engine.issue_session_token("alice", None).unwrap();
    n.latch.hold();
    let revoke = n.stall(|e| e.revoke_sessions("alice"));
    let issue = n.spawn(|e| e.issue_session_token("alice", None));
    assert!(blocked(&issue));
    n.latch.release();
    revoke.recv().unwrap().unwrap();
    let token = issue.recv().unwrap().unwrap();
    let engine = n.crash_and_recover();
    engine.verify_session_token(token.as_str()).unwrap();
    let err = engine.verify_session_token(before.as_str()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TokenRevoked);
}

/// Verification confirms a credential: it must not accept a token on the strength of a
/// reactivation that a crash can undo, nor refuse one on a revocation a crash can undo.
#[test]
fn verification_waits_for_the_users_pending_change() {
    let n = node();
    n.engine.create_user(NewUser::new("alice", "A")).unwrap();
    let access = n.engine.issue_access_token("alice", None).unwrap();
    let session = n.engine.issue_session_token("alice", None).unwrap();
    n.engine.deactivate_user("alice").unwrap();
    n.latch.hold();
    let _reactivate = n.stall(|e| e.reactivate_user("alice"));
    let token = access.token.as_str().to_owned();
    let verify_access = n.spawn(move |e| e.verify_access_token(&token).map(|v| v.user_id));
    let token = session.as_str().to_owned();
    let verify_session = n.spawn(move |e| e.verify_session_token(&token).map(|v| v.user_id));
    let auth = n.spawn(|e| e.authenticate("alice", None).map(|a| a.user_id));
    assert!(
        blocked(&verify_access),
        "access verify answered from an unsynced change"
    );
    assert!(
        blocked(&verify_session),
        "session verify answered from an unsynced change"
    );
    assert!(
        blocked(&auth),
        "authenticate answered from an unsynced change"
    );
    let engine = n.crash_and_recover();
    for rx in [verify_access, verify_session, auth] {
        assert_eq!(rx.recv().unwrap().unwrap_err().kind(), ErrorKind::Io);
    }
    // What survived: the user is deactivated, as every acknowledged write said.
    assert!(!engine.get_user("alice").unwrap().is_active);
}

/// A revoked access token is not refused before the revocation is durable either: after a
/// crash that loses the revocation it is valid, so refusing it earlier would be a read of
/// state that never existed.
#[test]
fn access_verify_waits_for_a_pending_revocation() {
    let n = node();
    n.engine.create_user(NewUser::new("alice", "A")).unwrap();
    let access = n.engine.issue_access_token("alice", None).unwrap();
    let id = access.info.id;
    n.latch.hold();
    let _revoke = n.stall(move |e| e.revoke_access_token("alice", id));
    let token = access.token.as_str().to_owned();
    let verify = n.spawn(move |e| e.verify_access_token(&token).map(|v| v.token_id));
    assert!(blocked(&verify));
    let engine = n.crash_and_recover();
    assert_eq!(verify.recv().unwrap().unwrap_err().kind(), ErrorKind::Io);
    engine.verify_access_token(access.token.as_str()).unwrap();
}

/// Plain reads (get, list, lookups) of a user created, changed or deleted by a write still in
/// flight wait for it, like another connection of PostgreSQL or SQLite never sees an
/// uncommitted row.
#[test]
fn reads_never_show_a_write_before_it_is_durable() {
    let n = node();
    n.engine.create_user(NewUser::new("gone", "G")).unwrap();
    n.latch.hold();
    let _create = n.stall(|e| e.create_user(NewUser::new("bob", "B")));
    let _delete = n.stall(|e| e.delete_user("gone"));
    let get = n.spawn(|e| e.get_user("bob").map(|u| u.user_id));
    let get_deleted = n.spawn(|e| e.get_user("gone").map(|u| u.user_id));
    let list = n.spawn(|e| e.list_users(&UserQuery::default()).map(|p| p.users.len()));
    let again = n.spawn(|e| e.create_user(NewUser::new("bob", "B2")).map(|u| u.user_id));
    let upsert = n.spawn(|e| e.upsert_user(NewUser::new("bob", "B3")).map(|u| u.created));
    for (what, rx) in [("get", get), ("get deleted", get_deleted), ("again", again)] {
        assert!(blocked(&rx), "{what} answered from an unsynced write");
    }
    assert!(blocked(&list), "list answered from an unsynced write");
    assert!(blocked(&upsert), "upsert answered from an unsynced write");
    let engine = n.crash_and_recover();
    engine.get_user("gone").unwrap();
    assert_eq!(
        engine.get_user("bob").unwrap_err().kind(),
        ErrorKind::UserNotFound
    );
}

/// The same reads return at once when nothing they touch is pending: a stalled write to one
/// user does not hold up readers of another.
#[test]
fn reads_of_settled_users_do_not_wait_for_other_writes() {
    let n = node();
    n.engine.create_user(NewUser::new("alice", "A")).unwrap();
    n.engine.create_user(NewUser::new("carol", "C")).unwrap();
    let access = n.engine.issue_access_token("carol", None).unwrap();
    let session = n.engine.issue_session_token("carol", None).unwrap();
    n.latch.hold();
    let _revoke = n.stall(|e| e.revoke_sessions("alice"));
    n.engine.get_user("carol").unwrap();
    n.engine.verify_access_token(access.token.as_str()).unwrap();
    n.engine.verify_session_token(session.as_str()).unwrap();
    n.engine
        .authenticate("carol", Some(session.as_str()))
        .unwrap();
    n.latch.release();
}
