//! Two chat-server nodes sharing one identity state through PostgreSQL: a session token issued
//! by node A is accepted by node B; A revokes it and B refuses it a moment later, and raises
//! the revocation event so it can drop the user's sockets.
//!
//! Node B is a second process (this example re-run with `--node-b`), as it would be in a real
//! deployment. Run it against a throwaway PostgreSQL:
//!
//! ```sh
//! scripts/with-postgres.sh cargo run --example cluster
//! cargo run --example cluster -- "host=db dbname=tessera user=tessera"   # your own database
//! ```

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tessera::{Engine, ErrorKind, NewUser};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--node-b") {
        return node_b(&args[1]);
    }
    let dsn = args
        .first()
        .cloned()
        .or_else(|| std::env::var("TESSERA_PG_DSN").ok())
        .ok_or("give a PostgreSQL connection string, or run under scripts/with-postgres.sh")?;

    let a = Engine::open_postgres(&dsn)?;
    println!("node A: open, {} users in the cluster", a.user_count());
    let user = format!("alice-{}", std::process::id());
    a.create_user(NewUser::new(user.clone(), "Alice"))?;
    let token = a.issue_session_token(&user, None)?;
    println!("node A: created {user:?} and issued a session token");

    let mut b = Command::new(std::env::current_exe()?)
        .args(["--node-b", &dsn])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut to_b = b.stdin.take().ok_or("no stdin")?;
    let mut from_b = BufReader::new(b.stdout.take().ok_or("no stdout")?).lines();
    let mut ask_b = |line: &str| -> Result<String, Box<dyn std::error::Error>> {
        writeln!(to_b, "{line}")?;
        to_b.flush()?;
        Ok(from_b.next().ok_or("node B exited")??)
    };

    println!("node B: verify -> {}", ask_b(token.as_str())?);
    a.revoke_sessions(&user)?;
    let revoked_at = Instant::now();
    println!("node A: revoked {user:?}'s sessions");
    loop {
        let answer = ask_b(token.as_str())?;
        if answer != "valid" {
            println!(
                "node B: verify -> {answer} ({:.1} ms after A's revocation returned)",
                revoked_at.elapsed().as_secs_f64() * 1e3
            );
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    println!("node B: events -> {}", ask_b("events")?);
    a.delete_user(&user)?;
    drop(to_b);
    b.wait()?;
    Ok(())
}

/// Node B: answers each token on stdin with `valid` or the error kind; `events` drains the
/// revocation events this node raised.
fn node_b(dsn: &str) -> Result<(), Box<dyn std::error::Error>> {
    let b = Engine::open_postgres(dsn)?;
    let stdout = std::io::stdout();
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let answer = if line == "events" {
            let kinds: Vec<&str> = b
                .drain_events(100)
                .iter()
                .map(|e| e.kind.as_str())
                .collect();
            kinds.join(",")
        } else {
            match b.verify_session_token(&line) {
                Ok(_) => "valid".to_owned(),
                Err(e) if e.kind() == ErrorKind::TokenRevoked => "revoked".to_owned(),
                Err(e) => format!("{:?}", e.kind()),
            }
        };
        let mut out = stdout.lock();
        writeln!(out, "{answer}")?;
        out.flush()?;
    }
    Ok(())
}
