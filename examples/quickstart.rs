//! The main job of Tessera on its embedded default: create users, hand out access and
//! session tokens, log users in, revoke, and drain the revocation events a chat server acts on.
//!
//! Run with `cargo run --example quickstart`.

use tessera::{Engine, NewUser};

fn main() -> tessera::Result<()> {
    let engine = Engine::in_memory()?;

    let mut alice = NewUser::new("alice", "Alice 🚀");
    alice.tags = vec!["beta".into()];
    engine.create_user(alice)?;
    engine.create_user(NewUser::new("bob", "Bob"))?;

    let access = engine.issue_access_token("alice", Some("alice's phone"))?;
    let session = engine.issue_session_token("bob", None)?;
    println!(
        "issued an access token to alice (id {}) and a {}-character session token to bob",
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
    println!("{} users", engine.user_count());
    Ok(())
}
