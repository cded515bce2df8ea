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
//!
//! A third test kills the child in the middle of a compaction, held at its worst instants
//! (the `fault-injection` compaction stages): right after the journal switch, with half of the
//! snapshot copied, and with the snapshot durable but the files it supersedes not yet
//! deleted — each time after writes made while it was held (to users the copy had read and
//! users it had not). The reopened directory must hold exactly the state the child last
//! showed.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tessera::fault::CompactionStage;
use tessera::{DeviceType, Engine, ErrorKind, NewDevice, NewUser, UserPatch, UserQuery};

const CHILD_ENV: &str = "TESSERA_CRASH_CHILD";
const TARGETED_ENV: &str = "TESSERA_CRASH_TARGETED_CHILD";
const TRIAL_ENV: &str = "TESSERA_CRASH_TRIAL";
const COMPACTION_ENV: &str = "TESSERA_CRASH_COMPACTION_CHILD";
const STAGES_ENV: &str = "TESSERA_CRASH_STAGES";

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

/// Whether this process is one of the children the tests start.
fn is_child() -> bool {
    [CHILD_ENV, TARGETED_ENV, COMPACTION_ENV]
        .iter()
        .any(|v| std::env::var(v).is_ok())
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
    if is_child() {
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
    if is_child() {
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

// ----- killed mid-compaction ----------------------------------------------------------------

const USERS: usize = 40;

fn stage_named(name: &str) -> CompactionStage {
    match name {
        "switched" => CompactionStage::Switched,
        "mid-copy" => CompactionStage::MidCopy,
        "renamed" => CompactionStage::SnapshotRenamed,
        other => panic!("unknown stage {other}"),
    }
}

/// Everything a client can see of the state, one line per fact: every user (all fields,
/// handle included) with its access tokens and devices, then the verdict on every session and
/// access token ever handed out.
fn dump(engine: &Engine, sessions: &[String], access: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut query = UserQuery {
        limit: 100,
        ..Default::default()
    };
    loop {
        let page = engine.list_users(&query).unwrap();
        for u in &page.users {
            out.push(format!("{u:?}"));
            out.push(format!(
                "  tokens {:?}",
                engine.list_access_tokens(&u.user_id).unwrap()
            ));
            out.push(format!(
                "  devices {:?}",
                engine.list_devices(&u.user_id).unwrap()
            ));
        }
        match page.next_cursor {
            Some(c) => query.cursor = Some(c),
            None => break,
        }
    }
    for t in sessions {
        let v = engine.verify_session_token(t);
        out.push(format!(
            "session {:?}",
            v.map(|v| v.user_id).map_err(|e| e.kind())
        ));
    }
    for t in access {
        let v = engine.verify_access_token(t);
        let v = v.map(|v| (v.user_id, v.token_id)).map_err(|e| e.kind());
        out.push(format!("access {v:?}"));
    }
    out
}

/// Writes touching users all over the handle range (so, mid-copy, some the copy has read and
/// some it has not): renames, a delete and a re-create under the same id taking the deleted
/// user's discovery key, a push token moved, tokens issued and revoked, sessions revoked, a
/// deactivation, a discovery-key change, new users.
fn writes_after_the_cut(engine: &Engine, round: usize, access: &mut Vec<String>) {
    let u = |i: usize| format!("u{i}");
    for i in (round..USERS).step_by(3) {
        let patch = UserPatch {
            nickname: Some(format!("round {round}")),
            ..Default::default()
        };
        engine.update_user(&u(i), &patch).unwrap();
    }
    let (gone, reborn) = (u(5 + round), u(30 + round));
    engine.delete_user(&gone).unwrap();
    engine.delete_user(&reborn).unwrap();
    let mut again = NewUser::new(gone.as_str(), "re-created");
    again.discovery_keys = vec![format!("k{}", 30 + round)];
    engine.create_user(again).unwrap();
    engine
        .add_device(
            &u(35),
            NewDevice::new(DeviceType::Ios, format!("p{}", 2 + round)),
        )
        .unwrap();
    for i in [1, USERS - 1] {
        let t = engine.issue_access_token(&u(i), None).unwrap();
        access.push(t.token.as_str().to_owned());
    }
    for i in [10 + round, 33] {
        let first = engine.list_access_tokens(&u(i)).unwrap()[0].id;
        engine.revoke_access_token(&u(i), first).unwrap();
    }
    engine.revoke_sessions(&u(3 + round)).unwrap();
    engine.revoke_sessions(&u(38)).unwrap();
    engine.deactivate_user(&u(7 + round)).unwrap();
    let patch = UserPatch {
        discovery_keys: Some(vec![format!("k8-{round}")]),
        ..Default::default()
    };
    engine.update_user(&u(8), &patch).unwrap();
    engine
        .create_user(NewUser::new(format!("new{round}"), ""))
        .unwrap();
}

/// The child: builds a state, compacts once, writes into the new journal, then starts a
/// compaction held at each stage of `TESSERA_CRASH_STAGES` in turn and writes while it is
/// held there. Prints every token it handed out, then `STATE` lines (the dump), then `READY`,
/// and waits to be killed with the compaction still held.
#[test]
fn crash_compaction_child() {
    let Ok(dir) = std::env::var(COMPACTION_ENV) else {
        return;
    };
    let stages: Vec<CompactionStage> = std::env::var(STAGES_ENV)
        .unwrap()
        .split(',')
        .map(stage_named)
        .collect();
    let dir = std::path::PathBuf::from(dir);
    let engine = Engine::open(&dir).unwrap();
    let (mut sessions, mut access) = (Vec::new(), Vec::new());
    for i in 0..USERS {
        let id = format!("u{i}");
        let mut n = NewUser::new(id.as_str(), "first");
        n.discovery_keys = vec![format!("k{i}")];
        engine.create_user(n).unwrap();
        engine
            .add_device(&id, NewDevice::new(DeviceType::Ios, format!("p{i}")))
            .unwrap();
        for _ in 0..2 {
            let t = engine.issue_access_token(&id, None).unwrap();
            access.push(t.token.as_str().to_owned());
        }
        sessions.push(
            engine
                .issue_session_token(&id, None)
                .unwrap()
                .as_str()
                .to_owned(),
        );
    }
    // A snapshot and a journal for the held compaction to supersede.
    engine.compact().unwrap();
    engine
        .update_user(
            "u0",
            &UserPatch {
                nickname: Some("in the journal".into()),
                ..Default::default()
            },
        )
        .unwrap();
    let compactor = engine.clone();
    tessera::fault::hold_compaction(&dir, stages[0]);
    std::thread::spawn(move || compactor.compact().unwrap());
    for (round, &stage) in stages.iter().enumerate() {
        tessera::fault::hold_compaction(&dir, stage);
        while tessera::fault::compaction_waiting_at() != Some(stage) {
            std::thread::sleep(Duration::from_millis(1));
        }
        writes_after_the_cut(&engine, round, &mut access);
    }
    let mut out = std::io::stdout().lock();
    for t in &sessions {
        writeln!(out, "SESSION {t} END").unwrap();
    }
    for t in &access {
        writeln!(out, "ACCESS {t} END").unwrap();
    }
    for line in dump(&engine, &sessions, &access) {
        writeln!(out, "STATE {line} END").unwrap();
    }
    writeln!(out, "READY END").unwrap();
    out.flush().unwrap();
    drop(out);
    std::thread::sleep(Duration::from_secs(60));
}

/// Runs the child for `stages` in a new directory, kills it once it is ready, and returns the
/// directory, the tokens and the state it showed.
fn run_compaction_trial(
    stages: &str,
) -> (std::path::PathBuf, Vec<String>, Vec<String>, Vec<String>) {
    let dir = std::env::temp_dir().join(format!(
        "tessera-crash-c-{}-{}",
        std::process::id(),
        stages.replace(',', "+")
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "crash_compaction_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(COMPACTION_ENV, &dir)
        .env(STAGES_ENV, stages)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (mut sessions, mut access, mut state) = (Vec::new(), Vec::new(), Vec::new());
    let mut ready = false;
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        let Some(line) = line.strip_suffix(" END") else {
            continue;
        };
        // libtest prints "test crash_compaction_child ... " in front of the first line.
        let line = ["SESSION ", "ACCESS ", "STATE ", "READY"]
            .iter()
            .find_map(|p| line.find(p).map(|at| &line[at..]))
            .unwrap_or(line);
        if let Some(t) = line.strip_prefix("SESSION ") {
            sessions.push(t.to_owned());
        } else if let Some(t) = line.strip_prefix("ACCESS ") {
            access.push(t.to_owned());
        } else if let Some(s) = line.strip_prefix("STATE ") {
            state.push(s.to_owned());
        } else if line == "READY" {
            ready = true;
            break;
        }
    }
    child.kill().unwrap(); // SIGKILL, the compaction still held
    child.wait().unwrap();
    assert!(ready, "{stages}: the child never got ready");
    (dir, sessions, access, state)
}

fn file_names(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn a_kill_at_any_stage_of_a_compaction_loses_nothing_and_adds_nothing() {
    if is_child() {
        return;
    }
    for stages in ["switched", "mid-copy", "renamed", "mid-copy,renamed"] {
        let (dir, sessions, access, want) = run_compaction_trial(stages);
        let names = file_names(&dir);
        let snapshots = names.iter().filter(|n| n.ends_with(".tss")).count();
        let journals = names.iter().filter(|n| n.ends_with(".tsj")).count();
        if stages.ends_with("renamed") {
            // The held snapshot is durable; the snapshot and journal it supersedes are still
            // there.
            assert_eq!((snapshots, journals), (2, 2), "{stages}: {names:?}");
        } else {
            // The new journal exists; the snapshot does not (its temporary file may).
            assert_eq!((snapshots, journals), (1, 2), "{stages}: {names:?}");
        }
        let engine = Engine::open(&dir).unwrap_or_else(|e| panic!("{stages}: reopen failed: {e}"));
        assert_eq!(
            dump(&engine, &sessions, &access),
            want,
            "{stages}: after reopen"
        );
        // Recovery on top of recovery: compact what was recovered, reopen again.
        engine.compact().unwrap();
        drop(engine);
        let engine = Engine::open(&dir).unwrap();
        assert_eq!(
            dump(&engine, &sessions, &access),
            want,
            "{stages}: after a compaction of the recovered state"
        );
        drop(engine);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
