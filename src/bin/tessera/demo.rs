//! `tessera demo`: the quickstart's main job (examples/quickstart.rs) on a temporary durable
//! store, removed afterwards. It prints what happens, never a token.

use serde_json::json;
use tessera::{Engine, NewUser};

use crate::failure::{self, Failure};
use crate::output::Out;

pub fn run(out: &Out) -> Result<(), Failure> {
    let dir = std::env::temp_dir().join(format!(
        "tessera-demo-{}-{}",
        std::process::id(),
        crate::output::now_ms()
    ));
    let result = steps(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    let log = result?;
    if out.json {
        return out.json(&json!({ "steps": log }));
    }
    for line in log {
        out.line(&line)?;
    }
    Ok(())
}

fn steps(dir: &std::path::Path) -> Result<Vec<String>, Failure> {
    let mut log = Vec::new();
    let engine = Engine::open(dir)?;
    log.push(format!("opened a new data directory {}", dir.display()));

    let mut alice = NewUser::new("alice", "Alice 🚀");
    alice.tags = vec!["beta".into()];
    engine.create_user(alice)?;
    engine.create_user(NewUser::new("bob", "Bob"))?;
    log.push("created alice and bob".into());

    let access = engine.issue_access_token("alice", Some("alice's phone"))?;
    let session = engine.issue_session_token("bob", None)?;
    log.push(format!(
        "issued access token {} to alice and a {}-character session token to bob",
        access.info.id,
        session.as_str().len()
    ));

    let login = engine.authenticate("alice", Some(access.token.as_str()))?;
    log.push(format!("alice logged in with {:?}", login.method));
    let login = engine.authenticate("bob", Some(session.as_str()))?;
    log.push(format!("bob logged in with {:?}", login.method));

    engine.revoke_sessions("bob")?;
    match engine.authenticate("bob", Some(session.as_str())) {
        Err(e) => log.push(format!(
            "after revocation bob's old session is refused: {e}"
        )),
        Ok(_) => {
            return Err(failure::invalid(
                "a revoked session verified: this build is broken",
            ))
        }
    }
    for event in engine.drain_events(16) {
        log.push(format!(
            "event: {} for {:?}",
            event.kind.as_str(),
            event.user_id
        ));
    }
    drop(engine);
    let engine = Engine::open(dir)?;
    log.push(format!(
        "reopened: {} users and alice's {} access token(s) are still there",
        engine.user_count(),
        engine.list_access_tokens("alice")?.len()
    ));
    Ok(log)
}
