//! The main job of Tessera on its embedded default: a durable engine in a local directory (no
//! server, no configuration). It creates users, hands out access and session tokens, logs
//! users in, revokes, and drains the revocation events a chat server acts on. Run it twice:
//! the second run finds the users and the access token of the first.
//!
//! `cargo run --example quickstart [DATA_DIR]` (default `./tessera-data`).

use tessera::{Engine, NewUser};

fn main() -> tessera::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "tessera-data".to_owned());
    let engine = Engine::open(&dir)?;
    println!("opened {dir}: {} users already there", engine.user_count());

    let mut alice = NewUser::new("alice", "Alice 🚀");
    alice.tags = vec!["beta".into()];
    let created = engine.upsert_user(alice)?.created;
    engine.upsert_user(NewUser::new("bob", "Bob"))?;
    println!(
        "alice {}",
        if created {
            "created"
        } else {
            "already existed"
        }
    );

    let previous = engine.list_access_tokens("alice")?;
    println!(
        "alice holds {} access token(s) from earlier runs",
        previous.len()
    );
    let access = engine.issue_access_token("alice", Some("alice's phone"))?;
    for revoked in &access.evicted {
        println!("alice was at the limit: token {revoked} was revoked to make room");
    }
    let session = engine.issue_session_token("bob", None)?;
    println!(
        "issued access token {} to alice and a {}-character session token to bob",
        access.info.id,
        session.as_str().len()
    );

    let login = engine.authenticate("alice", Some(access.token.as_str()))?;
    println!("alice logged in with {:?}", login.method);
    let login = engine.authenticate("bob", Some(session.as_str()))?;
    println!("bob logged in with {:?}", login.method);

    engine.revoke_sessions("bob")?;
    match engine.authenticate("bob", Some(session.as_str())) {
        Err(e) => println!("after revocation bob's old session is refused: {e}"),
        Ok(_) => unreachable!("a revoked session must not verify"),
    }

    for event in engine.drain_events(16) {
        println!("event: {} for {:?}", event.kind.as_str(), event.user_id);
    }
    println!("{} users, all durable in {dir}", engine.user_count());
    Ok(())
}
