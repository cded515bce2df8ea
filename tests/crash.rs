//! Crash test: a child process writes through a durable engine and prints each write the
//! moment the call returns; the parent kills it with SIGKILL at a random moment, reopens the
//! directory and checks that every acknowledged write is there.
//!
//! The child is this same test binary, re-run with `TESSERA_CRASH_CHILD` set. A handful of
//! trials run in `cargo test`; `scripts/crash-soak.sh` runs hundreds
//! (`TESSERA_CRASH_TRIALS`). Every trial continues in the same directory, so recovery is also
//! tested on top of earlier recoveries and compactions.
//!
//! Random kills rarely land in the microseconds where a write is applied in memory but not yet
//! in the file, so a second test kills exactly there: the child holds the journal's group
//! commit (the `fault-injection` feature) while one thread revokes a user's sessions and
//! another asks for a new session token, and is killed while the revocation is in flight.
//! No session token it acknowledged may come back to life after the lost revocation.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tessera::{Engine, ErrorKind, NewUser, UserPatch};

const CHILD_ENV: &str = "TESSERA_CRASH_CHILD";
const TARGETED_ENV: &str = "TESSERA_CRASH_TARGETED_CHILD";
const TRIAL_ENV: &str = "TESSERA_CRASH_TRIAL";

/// The write the child makes at step `i` of trial `trial`: a pure function, so the parent
/// knows what an acknowledged step did and which user the one unacknowledged step touched.
#[derive(Debug)]
enum Op {
    Create(String),
    IssueToken(String),
    Delete(String),
    Image(String),
    Rename(String, String),
    Compact,
}

fn user(trial: u64, i: u64) -> String {
    format!("t{trial}-u{i}")
}

fn op(trial: u64, i: u64) -> Op {
    if i % 97 == 96 {
        return Op::Compact;
    }
    match i % 10 {
        0..=5 => Op::Create(user(trial, i)),
        // Steps 6, 7, 8, 9 touch users created at steps 5, 0, 4, 3 of the same ten.
        6 => Op::IssueToken(user(trial, i - 1)),
        7 => Op::Delete(user(trial, i - 7)),
        8 => Op::Image(user(trial, i - 4)),
        _ => Op::Rename(user(trial, i - 6), format!("name {i}")),
    }
}

fn png(i: u64) -> Vec<u8> {
    let mut v = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    v.extend_from_slice(&i.to_le_bytes());
    v
}

/// The child: writes until killed, one line per acknowledged write.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return; // a normal test run: nothing to do
    };
    let trial: u64 = std::env::var(TRIAL_ENV).unwrap().parse().unwrap();
    let engine = Engine::open(&dir).unwrap();
    let mut out = std::io::stdout().lock();
    for i in 0.. {
        let extra = match op(trial, i) {
            Op::Create(id) => engine
                .create_user(NewUser::new(id, "x"))
                .map(|_| String::new()),
            Op::IssueToken(id) => engine
                .issue_access_token(&id, None)
                .map(|t| t.token.as_str().to_owned()),
            Op::Delete(id) => engine.delete_user(&id).map(|_| String::new()),
            Op::Image(id) => engine
                .set_profile_image(&id, &png(i))
                .map(|_| String::new()),
            Op::Rename(id, name) => {
                let patch = UserPatch {
                    nickname: Some(name),
                    ..Default::default()
                };
                engine.update_user(&id, &patch).map(|_| String::new())
            }
            Op::Compact => engine.compact().map(|_| String::new()),
        };
        let extra = extra.unwrap();
        // The write call has returned: it is acknowledged from here on.
        let extra = if extra.is_empty() {
            "-"
        } else {
            extra.as_str()
        };
        writeln!(out, "ACK {i} {extra} END").unwrap();
        out.flush().unwrap();
    }
}

fn random_below(n: u64, salt: u64) -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut x = nanos ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x % n
}

/// What the parent expects of one user after all acknowledged writes.
#[derive(Default, Debug)]
struct Expect {
    exists: bool,
    tokens: Vec<String>,
    nickname: Option<String>,
    image: Option<u64>,
}

fn run_trial(dir: &std::path::Path, trial: u64, model: &mut HashMap<String, Expect>) -> u64 {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir)
        .env(TRIAL_ENV, trial.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            // libtest prints "test crash_child ... " in front of the first line.
            .filter_map(|l| l.find("ACK ").map(|at| l[at..].to_owned()))
            // A line cut short by the kill was never fully acknowledged.
            .filter(|l| l.ends_with(" END"))
            .collect::<Vec<_>>()
    });
    // Long enough for the child to start and make a few hundred writes, sometimes none.
    std::thread::sleep(Duration::from_millis(20 + random_below(600, trial)));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let lines = reader.join().unwrap();

    let mut acked = 0;
    for line in &lines {
        let mut parts = line.split(' ').skip(1);
        let i: u64 = parts.next().unwrap().parse().unwrap();
        assert_eq!(i, acked, "acknowledgements out of order");
        let extra = parts.next().unwrap_or("-");
        match op(trial, i) {
            Op::Create(id) => model.entry(id).or_default().exists = true,
            Op::IssueToken(id) => model.get_mut(&id).unwrap().tokens.push(extra.to_owned()),
            Op::Delete(id) => {
                model.insert(id, Expect::default());
            }
            Op::Image(id) => model.get_mut(&id).unwrap().image = Some(i),
            Op::Rename(id, name) => model.get_mut(&id).unwrap().nickname = Some(name),
            Op::Compact => {}
        }
        acked += 1;
    }
    // The one write in flight when the child died may or may not have happened.
    let in_flight = match op(trial, acked) {
        Op::Create(id)
        | Op::IssueToken(id)
        | Op::Delete(id)
        | Op::Image(id)
        | Op::Rename(id, _) => Some(id),
        Op::Compact => None,
    };

    let engine = Engine::open(dir).unwrap_or_else(|e| panic!("trial {trial}: reopen failed: {e}"));
    for (id, want) in model.iter_mut() {
        if Some(id) == in_flight.as_ref() {
            // Settle the model on whatever the recovered state is.
            want.exists = engine.get_user(id).is_ok();
            continue;
        }
        match engine.get_user(id) {
            Ok(u) => {
                assert!(want.exists, "trial {trial}: deleted user {id} is back");
                if let Some(n) = &want.nickname {
                    assert_eq!(&u.nickname, n, "trial {trial}: {id}");
                }
                if let Some(img) = want.image {
                    let url = u.profile_url.expect("acknowledged image missing");
                    let hex = url.rsplit('/').next().unwrap().split('.').next().unwrap();
                    assert_eq!(engine.profile_image(hex).unwrap().bytes, png(img));
                }
                for t in &want.tokens {
                    assert_eq!(
                        engine.verify_access_token(t).unwrap().user_id,
                        *id,
                        "trial {trial}: acknowledged token lost"
                    );
                }
            }
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::UserNotFound);
                assert!(!want.exists, "trial {trial}: acknowledged user {id} lost");
            }
        }
    }
    acked
}

#[test]
fn every_acknowledged_write_survives_sigkill() {
    if std::env::var(CHILD_ENV).is_ok() || std::env::var(TARGETED_ENV).is_ok() {
        return;
    }
    let trials: u64 = std::env::var("TESSERA_CRASH_TRIALS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    let dir = std::env::temp_dir().join(format!("tessera-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut model = HashMap::new();
    let mut total = 0;
    for trial in 0..trials {
        total += run_trial(&dir, trial, &mut model);
    }
    eprintln!("{trials} crash trials, {total} acknowledged writes checked");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The targeted child: one acknowledged session token, then a revocation held before its
/// journal write while another thread asks for a token. Prints `TOKEN <t>` for every token it
/// was given and `READY` once both calls are in flight; the parent kills it then.
#[test]
fn crash_targeted_child() {
    let Ok(dir) = std::env::var(TARGETED_ENV) else {
        return;
    };
    let user: String = std::env::var(TRIAL_ENV).unwrap();
    let engine = Engine::open(&dir).unwrap();
    let print = |line: String| {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line} END").unwrap();
        out.flush().unwrap();
    };
    engine.upsert_user(NewUser::new(user.clone(), "x")).unwrap();
    let first = engine.issue_session_token(&user, None).unwrap();
    print(format!("TOKEN {}", first.as_str()));
    tessera::fault::hold_syncs();
    let revoker = engine.clone();
    let id = user.clone();
    std::thread::spawn(move || {
        revoker.revoke_sessions(&id).unwrap();
        println!("REVOKED END");
    });
    while tessera::fault::held_batches() == 0 {
        std::thread::yield_now();
    }
    // The revocation is applied in memory and its record is not in the file.
    let issuer = engine.clone();
    std::thread::spawn(move || {
        if let Ok(t) = issuer.issue_session_token(&user, None) {
            print(format!("TOKEN {}", t.as_str()));
        }
    });
    println!("READY END");
    std::thread::sleep(Duration::from_secs(60));
}

/// One targeted trial: returns the session tokens the child acknowledged.
fn run_targeted_trial(dir: &std::path::Path, user: &str) -> Vec<String> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "crash_targeted_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(TARGETED_ENV, dir)
        .env(TRIAL_ENV, user)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut tokens = Vec::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("READY END") {
                let _ = tx.send(());
            }
            if let Some(at) = line.find("TOKEN ") {
                if let Some(t) = line[at + 6..].strip_suffix(" END") {
                    tokens.push(t.to_owned());
                }
            }
        }
        tokens
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("the targeted child never got both calls in flight");
    // Give a broken build the time to hand out the token it should not.
    std::thread::sleep(Duration::from_millis(200));
    child.kill().unwrap(); // SIGKILL, with the revocation's record still in memory
    child.wait().unwrap();
    reader.join().unwrap()
}

#[test]
fn no_session_token_outlives_a_revocation_lost_to_sigkill() {
    if std::env::var(CHILD_ENV).is_ok() || std::env::var(TARGETED_ENV).is_ok() {
        return;
    }
    let trials: u64 = std::env::var("TESSERA_CRASH_TRIALS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(3, |n: u64| n.div_ceil(10).max(3));
    let dir = std::env::temp_dir().join(format!("tessera-crash-t-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for trial in 0..trials {
        // Half the trials reuse one user, so recovery also meets earlier lost revocations.
        let user = if trial % 2 == 1 {
            "victim".to_owned()
        } else {
            format!("victim-{trial}")
        };
        let tokens = run_targeted_trial(&dir, &user);
        assert!(
            !tokens.is_empty(),
            "trial {trial}: the first token is acknowledged"
        );
        let engine = Engine::open(&dir).unwrap();
        // The lost revocation was never acknowledged; the user's next one must end every
        // session token the child was given.
        engine.revoke_sessions(&user).unwrap();
        for t in &tokens {
            let err = engine.verify_session_token(t).unwrap_err();
            assert_eq!(
                err.kind(),
                ErrorKind::TokenRevoked,
                "trial {trial}: an acknowledged session token came back to life after a \
                 revocation lost to the crash"
            );
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
