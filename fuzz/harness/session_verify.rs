//! Session-token verification on an engine with a fixed key ring and a fixed clock.
//!
//! Input: first byte even, the rest is the token text; odd, the rest edits one of the tokens
//! the fixture issued (see `common::mutate`). Properties: never a panic; only a token the
//! fixture issued to a live, active, unrevoked user verifies; every other string — however
//! close to a real token — is `InvalidToken`; the fixture's own expired, revoked and
//! deactivated tokens fail with exactly their kind.

use std::sync::OnceLock;

use tessera::{Engine, ErrorKind, ManualClock, NewUser};

use super::common::{mutate, Scratch, DAY_MS, KEYS, NOW_MS};

/// A token the fixture issued and what verifying it must give.
pub struct Issued {
    pub token: String,
    pub user_id: &'static str,
    /// `None`: verifies.
    pub fails_with: Option<ErrorKind>,
}

pub struct Fixture {
    pub engine: Engine,
    pub issued: Vec<Issued>,
}

/// Opens a data directory holding the fixture key file, issues the tokens, retires key 1 (so
/// its kid takes the retired branch), then deletes the directory: verification writes nothing.
pub fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = Scratch::new("session");
        std::fs::write(dir.0.join("keys"), KEYS).unwrap();
        let clock = ManualClock::new(NOW_MS - DAY_MS);
        let e = Engine::builder().clock(clock.clone()).open(&dir.0).unwrap();
        let retired = e.keys().into_iter().find(|k| !k.active).unwrap();
        e.retire_key(retired.key_id.as_str()).unwrap();
        let mut issued = Vec::new();
        let mut issue = |id: &'static str, exp: i64, fails_with| {
            if e.get_user(id).is_err() {
                e.create_user(NewUser::new(id, id)).unwrap();
            }
            let t = e.issue_session_token(id, Some(exp)).unwrap();
            issued.push(Issued {
                token: t.as_str().to_owned(),
                user_id: id,
                fails_with,
            });
        };
        issue("alice", NOW_MS + 5 * DAY_MS, None);
        issue("alice", NOW_MS + 100 * DAY_MS, None);
        issue("bob", NOW_MS - 3_600_000, Some(ErrorKind::TokenExpired));
        issue("carol", NOW_MS + DAY_MS, Some(ErrorKind::TokenRevoked));
        issue("dave", NOW_MS + DAY_MS, Some(ErrorKind::UserDeactivated));
        issue("erin", NOW_MS + DAY_MS, Some(ErrorKind::TokenRevoked));
        e.revoke_sessions("carol").unwrap();
        e.deactivate_user("dave").unwrap();
        e.delete_user("erin").unwrap();
        // Issued after carol's revocation: verifies.
        issue("carol", NOW_MS + DAY_MS, None);
        clock.set(NOW_MS);
        drop(dir);
        Fixture { engine: e, issued }
    })
}

pub fn run(data: &[u8]) {
    let f = fixture();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let bytes = if mode % 2 == 0 {
        rest.to_vec()
    } else {
        let Some((&which, ops)) = rest.split_first() else {
            return;
        };
        mutate(
            f.issued[usize::from(which) % f.issued.len()]
                .token
                .as_bytes(),
            ops,
        )
    };
    let text = String::from_utf8_lossy(&bytes);
    let known = f.issued.iter().find(|i| i.token == text);
    match (f.engine.verify_session_token(&text), known) {
        (Ok(v), Some(i)) => {
            assert_eq!(i.fails_with, None, "{text:?} verified");
            assert_eq!(v.user_id, i.user_id);
            assert!(v.expires_at_ms > NOW_MS && v.issued_at_ms < NOW_MS);
        }
        (Ok(v), None) => panic!("forged session token accepted: {text:?} as {v:?}"),
        (Err(e), Some(i)) => assert_eq!(Some(e.kind()), i.fails_with, "{text:?}: {e}"),
        (Err(e), None) => assert_eq!(e.kind(), ErrorKind::InvalidToken, "{text:?}: {e}"),
    }
    match f.engine.authenticate("alice", Some(&text)) {
        Ok(_) => assert!(
            known.is_some_and(|i| i.user_id == "alice" && i.fails_with.is_none()),
            "authenticate accepted {text:?}"
        ),
        Err(e) => assert_ne!(e.kind(), ErrorKind::Internal, "{e}"),
    }
}
