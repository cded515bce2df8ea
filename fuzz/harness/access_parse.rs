//! Access-token parsing and lookup (`Engine::verify_access_token`, and `authenticate` with an
//! access token).
//!
//! Input: first byte even, the rest is the token text; odd, the rest edits one of the live or
//! revoked tokens the fixture issued (see `common::mutate`). Properties: never a panic; a
//! string verifies only if it is, byte for byte, a live token the fixture issued, and then as
//! its user; every other string is `InvalidToken` (revoked and evicted tokens included: they
//! are forgotten, not remembered as revoked).

use std::sync::OnceLock;

use tessera::{Config, Engine, ErrorKind, ManualClock, NewUser};

use super::common::{mutate, NOW_MS};

pub struct Fixture {
    pub engine: Engine,
    /// (token, user id, live).
    pub issued: Vec<(String, &'static str, bool)>,
}

/// Tokens are random, so they differ per process; the corpus holds the edits, not the tokens.
pub fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let config = Config {
            access_tokens_per_user: 2,
            ..Config::default()
        };
        let e = Engine::builder()
            .config(config)
            .clock(ManualClock::new(NOW_MS))
            .in_memory()
            .unwrap();
        let mut issued = Vec::new();
        for id in ["alice", "bob", "carol"] {
            e.create_user(NewUser::new(id, id)).unwrap();
        }
        for (id, label) in [
            ("alice", Some("phone")),
            ("alice", None),
            ("alice", Some("laptop")), // evicts the first
            ("bob", None),
            ("carol", None),
        ] {
            let t = e.issue_access_token(id, label).unwrap();
            issued.push((t.token.as_str().to_owned(), id, true));
        }
        issued[0].2 = false;
        let bob = e.list_access_tokens("bob").unwrap();
        e.revoke_access_token("bob", bob[0].id).unwrap();
        issued[3].2 = false;
        e.deactivate_user("carol").unwrap();
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
            f.issued[usize::from(which) % f.issued.len()].0.as_bytes(),
            ops,
        )
    };
    let text = String::from_utf8_lossy(&bytes);
    let known = f.issued.iter().find(|(t, _, live)| *live && *t == text);
    match (f.engine.verify_access_token(&text), known) {
        (Ok(v), Some((_, id, _))) => assert_eq!(v.user_id, *id),
        (Ok(v), None) => panic!("unknown access token accepted: {text:?} as {v:?}"),
        // carol is deactivated: her live token is recognised and refused.
        (Err(e), Some((_, "carol", _))) => assert_eq!(e.kind(), ErrorKind::UserDeactivated),
        (Err(e), Some(_)) => panic!("live token {text:?} refused: {e}"),
        (Err(e), None) => assert_eq!(e.kind(), ErrorKind::InvalidToken, "{text:?}: {e}"),
    }
    match f.engine.authenticate("alice", Some(&text)) {
        Ok(_) => assert!(
            known.is_some_and(|(_, id, _)| *id == "alice"),
            "authenticate accepted {text:?}"
        ),
        Err(e) => assert_ne!(e.kind(), ErrorKind::Internal, "{e}"),
    }
}
