//! Cluster mode against a real PostgreSQL, every engine in its own process: what one node
//! acknowledges is the truth for all of them, global rules hold when nodes race, every change
//! reaches every node (with its revocation events) through dropped connections, a database
//! restart and a node's own SIGKILL, a delayed commit neither lets another writer jump ahead
//! nor shows a follower anything early, a node that cannot confirm it is caught up refuses to
//! verify, operators find digests (never tokens) in the tables, and a whole state moves in and
//! out with `import_from`.
//!
//! A node is this test binary re-run as `cluster_node` with `TESSERA_CLUSTER_NODE` set to the
//! DSN (see `tests/crash.rs` for the pattern). It opens `open_postgres` and serves a line
//! protocol on stdin/stdout, one reply line per command line, each reply prefixed with `@`
//! (libtest prints its own text in front of the first one). The commands are listed at
//! [`exec`] and [`Served::run`]; replies are `ok [values…]` or `err <code> <message>`.
//! Options come from environment variables of the child (`NODE_*` below). The parent side
//! wraps a child in [`Node`]: start, call, SIGKILL, SIGSTOP/SIGCONT, restart.
//!
//! PostgreSQL comes from `scripts/with-postgres.sh` (`tests/support/pg.rs`): each test uses a
//! fresh database; without `TESSERA_PG_DSN` every test skips with a note (and fails with
//! `CI=true`). Tests that pause or restart the server hold [`SERVER`] exclusively, the others
//! share it, so a pause never lands in the middle of another test.

#[path = "support/pg.rs"]
mod pg;

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use tessera::{
    ClusterOptions, Config, DeviceType, Engine, Error, Event, NewDevice, NewUser, SyncMode,
    UserPatch, UserQuery,
};

// ----- the node process ------------------------------------------------------------------

/// Set in a node's environment: the DSN it opens.
const NODE_ENV: &str = "TESSERA_CLUSTER_NODE";
/// `ClusterOptions::max_staleness` in ms, or `none`.
const NODE_STALENESS: &str = "TESSERA_CLUSTER_NODE_STALENESS_MS";
/// `ClusterOptions::poll_interval` in ms.
const NODE_POLL: &str = "TESSERA_CLUSTER_NODE_POLL_MS";
/// `ClusterOptions::log_retention`.
const NODE_RETENTION: &str = "TESSERA_CLUSTER_NODE_LOG_RETENTION";
/// `Config::access_tokens_per_user`.
const NODE_TOKEN_CAP: &str = "TESSERA_CLUSTER_NODE_TOKEN_CAP";

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| v.parse().unwrap())
}

/// The child: opens a cluster node and serves the line protocol until killed.
#[test]
fn cluster_node() {
    let Ok(dsn) = std::env::var(NODE_ENV) else {
        return; // a normal test run: nothing to do
    };
    let mut options = ClusterOptions::new();
    if let Some(ms) = env_u64(NODE_POLL) {
        options = options.poll_interval(Duration::from_millis(ms));
    }
    match std::env::var(NODE_STALENESS).as_deref() {
        Ok("none") => options = options.max_staleness(None),
        Ok(ms) => options = options.max_staleness(Some(Duration::from_millis(ms.parse().unwrap()))),
        Err(_) => {}
    }
    if let Some(n) = env_u64(NODE_RETENTION) {
        options = options.log_retention(n);
    }
    let mut config = Config::default();
    if let Some(cap) = env_u64(NODE_TOKEN_CAP) {
        config.access_tokens_per_user = cap as usize;
    }
    let engine = match Engine::builder()
        .config(config)
        .open_postgres(&dsn, options)
    {
        Ok(e) => e,
        Err(e) => {
            reply(&format!("open_err {} {}", e.code(), e.message()));
            return;
        }
    };
    reply("ready");
    let mut served = Served {
        engine,
        events: Vec::new(),
        spawned: None,
    };
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let answer = served.run(line.trim());
        reply(&answer);
    }
}

fn reply(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "@{}", line.replace('\n', " ")).unwrap();
    out.flush().unwrap();
}

/// A node's state besides its engine: events drained but not yet claimed, and one command
/// running in the background.
struct Served {
    engine: Engine,
    events: Vec<Event>,
    spawned: Option<std::thread::JoinHandle<String>>,
}

impl Served {
    /// The commands that need more than the engine:
    /// - `spawn <command>` runs a command on a thread (`ok` at once); `done` answers `pending`
    ///   or its reply; `join` waits for its reply;
    /// - `events` drains every event (`ok kind:user:token:key …`);
    /// - `wait_event <ms> <kind> [user or key]` waits for one matching event and consumes it;
    /// - `wait <ms> <expected> <command>` repeats a command until its reply starts with the
    ///   expected words (`err:22` for `err 22`): `ok <µs waited> <reply>` or `timeout <reply>`;
    /// - `wait_held <n> <ms>`: until `n` cluster commits are held.
    fn run(&mut self, line: &str) -> String {
        let (cmd, rest) = line.split_once(' ').unwrap_or((line, ""));
        let words: Vec<&str> = rest.split_whitespace().collect();
        match cmd {
            "spawn" => {
                let engine = self.engine.clone();
                let rest = rest.to_owned();
                self.spawned = Some(std::thread::spawn(move || exec(&engine, &rest)));
                "ok".into()
            }
            "done" => match &self.spawned {
                Some(h) if h.is_finished() => self.spawned.take().unwrap().join().unwrap(),
                Some(_) => "pending".into(),
                None => "err 0 nothing spawned".into(),
            },
            "join" => match self.spawned.take() {
                Some(h) => h.join().unwrap(),
                None => "err 0 nothing spawned".into(),
            },
            "events" => {
                self.drain();
                let all: Vec<String> = self.events.drain(..).map(|e| event_text(&e)).collect();
                format!("ok {}", all.join(" ")).trim_end().to_owned()
            }
            "wait_event" => {
                let deadline = Duration::from_millis(words[0].parse().unwrap());
                let (kind, who) = (words[1], words.get(2).copied());
                let start = Instant::now();
                loop {
                    self.drain();
                    let found = self.events.iter().position(|e| {
                        e.kind.as_str() == kind
                            && who.is_none_or(|w| {
                                e.user_id.as_deref() == Some(w) || e.key_id.as_deref() == Some(w)
                            })
                    });
                    if let Some(i) = found {
                        let e = self.events.remove(i);
                        return format!("ok {} {}", start.elapsed().as_micros(), event_text(&e));
                    }
                    if start.elapsed() > deadline {
                        return "timeout".into();
                    }
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
            "wait" => {
                let deadline = Duration::from_millis(words[0].parse().unwrap());
                let expected: Vec<&str> = words[1].split(':').collect();
                let command = words[2..].join(" ");
                let start = Instant::now();
                loop {
                    let answer = exec(&self.engine, &command);
                    if answer
                        .split(' ')
                        .take(expected.len())
                        .eq(expected.iter().copied())
                    {
                        return format!("ok {} {answer}", start.elapsed().as_micros());
                    }
                    if start.elapsed() > deadline {
                        return format!("timeout {answer}");
                    }
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
            "wait_held" => {
                let n: usize = words[0].parse().unwrap();
                let deadline = Duration::from_millis(words[1].parse().unwrap());
                let start = Instant::now();
                while tessera::fault::held_cluster_commits() < n {
                    if start.elapsed() > deadline {
                        return "timeout".into();
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                "ok".into()
            }
            _ => exec(&self.engine, line),
        }
    }

    fn drain(&mut self) {
        self.events.extend(self.engine.drain_events(usize::MAX));
    }
}

fn event_text(e: &Event) -> String {
    format!(
        "{}:{}:{}:{}",
        e.kind.as_str(),
        e.user_id.as_deref().unwrap_or("-"),
        e.token_id.map_or("-".into(), |t| t.to_string()),
        e.key_id.as_deref().unwrap_or("-")
    )
}

/// A PNG as far as the engine looks (magic number and header), distinct for each `n`.
fn png(n: u64) -> Vec<u8> {
    let mut v = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    v.extend_from_slice(&n.to_le_bytes());
    v
}

/// Runs one engine command: `create <id> [discovery key]`, `rename <id> <nickname>`,
/// `get <id>` (`ok <nickname> active|inactive`), `delete`, `deactivate`, `reactivate <id>`,
/// `issue_access <id>` (`ok <token> <token id> [evicted id]`), `verify_access <token>`
/// (`ok <user> <token id>`), `tokens <id>` (ids), `revoke_access <id> <token id>`,
/// `revoke_all_access <id>`, `issue_session <id>`, `verify_session <token>`
/// (`ok <user> <key id>`), `revoke_sessions <id>`, `revoke_all_sessions`, `rotate_key`,
/// `retire_key <key id>`, `keys` (`kid*` for the active one), `add_device <id> <push token>`,
/// `devices <id>`, `push_owner <push token>`, `discovery_owner <key>`, `image <id> <n>`,
/// `image_bytes <sha256 hex>`, `count`, `users` (every id in creation order), `state`
/// (`ok <count> <digest>`, see [`state_digest`]), `compact`, `burst <n> <prefix>` (n mixed
/// writes, see [`burst`]), `hold` / `release` / `held` (cluster commits, `tessera::fault`).
fn exec(e: &Engine, line: &str) -> String {
    let w: Vec<&str> = line.split_whitespace().collect();
    let arg = |i: usize| w.get(i).copied().unwrap_or("");
    let num = |i: usize| arg(i).parse::<u64>().unwrap_or(u64::MAX);
    let r: Result<String, Error> = match arg(0) {
        "create" => {
            let mut new = NewUser::new(arg(1), arg(1));
            if let Some(k) = w.get(2) {
                new.discovery_keys = vec![(*k).to_owned()];
            }
            e.create_user(new).map(none)
        }
        "rename" => {
            let patch = UserPatch {
                nickname: Some(arg(2).to_owned()),
                ..Default::default()
            };
            e.update_user(arg(1), &patch).map(none)
        }
        "get" => e.get_user(arg(1)).map(|u| {
            let state = if u.is_active { "active" } else { "inactive" };
            format!("{} {state}", u.nickname)
        }),
        "delete" => e.delete_user(arg(1)).map(none),
        "deactivate" => e.deactivate_user(arg(1)).map(none),
        "reactivate" => e.reactivate_user(arg(1)).map(none),
        "issue_access" => e.issue_access_token(arg(1), None).map(|t| {
            let evicted: Vec<String> = t.evicted.iter().map(u64::to_string).collect();
            format!("{} {} {}", t.token.as_str(), t.info.id, evicted.join(" "))
        }),
        "verify_access" => e
            .verify_access_token(arg(1))
            .map(|v| format!("{} {}", v.user_id, v.token_id)),
        "tokens" => e.list_access_tokens(arg(1)).map(|ts| {
            let ids: Vec<String> = ts.iter().map(|t| t.id.to_string()).collect();
            ids.join(" ")
        }),
        "revoke_access" => e.revoke_access_token(arg(1), num(2)).map(none),
        "revoke_all_access" => e.revoke_all_access_tokens(arg(1)).map(|n| n.to_string()),
        "issue_session" => e
            .issue_session_token(arg(1), None)
            .map(|t| t.as_str().to_owned()),
        "verify_session" => e
            .verify_session_token(arg(1))
            .map(|v| format!("{} {}", v.user_id, v.key_id)),
        "revoke_sessions" => e.revoke_sessions(arg(1)).map(none),
        "revoke_all_sessions" => e.revoke_all_sessions().map(none),
        "rotate_key" => e.rotate_key().map(|k| k.key_id.to_string()),
        "retire_key" => e.retire_key(arg(1)).map(none),
        "keys" => Ok(e
            .keys()
            .iter()
            .map(|k| format!("{}{}", k.key_id, if k.active { "*" } else { "" }))
            .collect::<Vec<_>>()
            .join(" ")),
        "add_device" => e
            .add_device(arg(1), NewDevice::new(DeviceType::Android, arg(2)))
            .map(|d| d.evicted.map(|d| d.push_token).unwrap_or_default()),
        "devices" => e.list_devices(arg(1)).map(|ds| {
            let pushes: Vec<String> = ds.into_iter().map(|d| d.push_token).collect();
            pushes.join(" ")
        }),
        "push_owner" => e.find_user_by_push_token(arg(1)).map(|u| u.user_id),
        "discovery_owner" => e.find_user_by_discovery_key(arg(1)).map(|u| u.user_id),
        "image" => e
            .set_profile_image(arg(1), &png(num(2)))
            .map(|u| u.profile_url.unwrap_or_default()),
        "image_bytes" => e.profile_image(arg(1)).map(|i| {
            let sha: [u8; 32] = Sha256::digest(&i.bytes).into();
            format!("{} {}", i.bytes.len(), hex(&sha))
        }),
        "count" => Ok(e.user_count().to_string()),
        "users" => all_users(e).map(|us| {
            let ids: Vec<String> = us.into_iter().map(|u| u.user_id).collect();
            ids.join(" ")
        }),
        "state" => state_digest(e),
        "compact" => e.compact().map(none),
        "burst" => Ok(burst(e, num(1), arg(2))),
        "hold" => {
            tessera::fault::hold_cluster_commits();
            Ok(String::new())
        }
        "release" => {
            tessera::fault::release_cluster_commits();
            Ok(String::new())
        }
        "held" => Ok(tessera::fault::held_cluster_commits().to_string()),
        other => return format!("err 0 unknown command {other:?}"),
    };
    match r {
        Ok(s) if s.is_empty() => "ok".into(),
        Ok(s) => format!("ok {}", s.trim_end()),
        Err(e) => format!("err {} {}", e.code(), e.message()),
    }
}

/// `n` writes of every kind on users named `<prefix><i>`: creations, token issues,
/// renames, session and access revocations, devices, deletions. A write failing with
/// `Unavailable` (the database went away) is retried for a few seconds; other failures (a
/// retried write that had committed, a user whose creation failed) are counted. Returns
/// `<ok> <failed>`.
fn burst(e: &Engine, n: u64, prefix: &str) -> String {
    let (mut ok, mut failed) = (0, 0);
    for i in 0..n {
        let u = |back: u64| format!("{prefix}{}", i - back);
        let op = match i % 6 {
            0 => format!("create {}", u(0)),
            1 => format!("issue_access {}", u(1)),
            2 => format!("rename {} n{i}", u(2)),
            3 => format!("revoke_sessions {}", u(3)),
            4 => format!("add_device {} {prefix}push{i}", u(4)),
            _ if i % 12 == 5 => format!("delete {}", u(5)),
            _ => format!("revoke_all_access {}", u(5)),
        };
        let mut tries = 0;
        loop {
            let answer = exec(e, &op);
            if answer.starts_with("ok") {
                ok += 1;
            } else if answer.starts_with("err 55 ") && tries < 250 {
                tries += 1;
                std::thread::sleep(Duration::from_millis(20));
                continue;
            } else {
                failed += 1;
            }
            break;
        }
    }
    format!("{ok} {failed}")
}

fn all_users(e: &Engine) -> Result<Vec<tessera::User>, Error> {
    let mut users = Vec::new();
    let mut query = UserQuery {
        limit: 100,
        ..Default::default()
    };
    loop {
        let page = e.list_users(&query)?;
        users.extend(page.users);
        match page.next_cursor {
            Some(c) => query.cursor = Some(c),
            None => return Ok(users),
        }
    }
}

/// `<user count> <digest>`: SHA-256 (first 16 hex digits) over every user in creation order
/// with its access tokens and devices, and the key ring. Two engines with equal digests hold
/// the same state as far as any call can tell.
fn state_digest(e: &Engine) -> Result<String, Error> {
    let mut h = Sha256::new();
    let users = all_users(e)?;
    for u in &users {
        h.update(format!("{u:?}\n"));
        h.update(format!("{:?}\n", e.list_access_tokens(&u.user_id)?));
        h.update(format!("{:?}\n", e.list_devices(&u.user_id)?));
    }
    h.update(format!("{:?}", e.keys()));
    let digest: [u8; 32] = h.finalize().into();
    Ok(format!("{} {}", users.len(), &hex(&digest)[..16]))
}

/// Drops a call's value: the reply is a bare `ok`.
fn none<T>(_: T) -> String {
    String::new()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ----- the parent side -------------------------------------------------------------------

/// How long any single reply may take before the test gives up on the node.
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

/// A node process.
struct Node {
    name: String,
    dsn: String,
    env: Vec<(&'static str, String)>,
    child: Child,
    stdin: ChildStdin,
    replies: Receiver<String>,
    stderr: Arc<Mutex<String>>,
}

impl Node {
    /// Starts a node named `name` (also its `HOSTNAME`, so its `tessera_nodes` row starts with
    /// `name-`) and waits until it has opened the database.
    fn start(name: &str, dsn: &str, env: &[(&'static str, &str)]) -> Node {
        Node::try_start(name, dsn, env).unwrap_or_else(|e| panic!("node {name}: {e}"))
    }

    /// Like [`Node::start`]; `Err` carries the open error's reply (`open_err <code> …`).
    fn try_start(name: &str, dsn: &str, env: &[(&'static str, &str)]) -> Result<Node, String> {
        let env: Vec<(&'static str, String)> =
            env.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        let mut node = Node::spawn(name, dsn, env);
        let first = node.recv();
        if first == "ready" {
            Ok(node)
        } else {
            Err(first)
        }
    }

    fn spawn(name: &str, dsn: &str, env: Vec<(&'static str, String)>) -> Node {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args(["cluster_node", "--exact", "--nocapture", "--test-threads=1"])
            .env(NODE_ENV, dsn)
            .env("HOSTNAME", name)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, replies) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(at) = line.find('@') {
                    if tx.send(line[at + 1..].to_owned()).is_err() {
                        return;
                    }
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr);
        let mut err_pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err_pipe.read(&mut buf) {
                if n == 0 {
                    return;
                }
                let mut s = sink.lock().unwrap();
                s.push_str(&String::from_utf8_lossy(&buf[..n]));
                if s.len() > 16_384 {
                    let cut = s.len() - 8_192;
                    let cut = (cut..s.len()).find(|&i| s.is_char_boundary(i)).unwrap();
                    s.drain(..cut);
                }
            }
        });
        let stdin = child.stdin.take().unwrap();
        Node {
            name: name.to_owned(),
            dsn: dsn.to_owned(),
            env,
            child,
            stdin,
            replies,
            stderr,
        }
    }

    fn send(&mut self, line: &str) {
        if let Err(e) = writeln!(self.stdin, "{line}").and_then(|()| self.stdin.flush()) {
            panic!(
                "node {}: cannot send {line:?}: {e}{}",
                self.name,
                self.tail()
            );
        }
    }

    fn recv(&mut self) -> String {
        match self.replies.recv_timeout(REPLY_TIMEOUT) {
            Ok(line) => line,
            Err(e) => panic!("node {}: no reply ({e}){}", self.name, self.tail()),
        }
    }

    fn call(&mut self, line: &str) -> String {
        self.send(line);
        self.recv()
    }

    /// Calls and insists on `ok`; returns what follows it.
    fn ok(&mut self, line: &str) -> String {
        let answer = self.call(line);
        match answer.strip_prefix("ok") {
            Some(rest) => rest.trim_start().to_owned(),
            None => panic!("node {}: {line:?} answered {answer:?}", self.name),
        }
    }

    /// Reads a reply and insists on `ok`; returns what follows it.
    fn ok_reply(&mut self) -> String {
        let answer = self.recv();
        match answer.strip_prefix("ok") {
            Some(rest) => rest.trim_start().to_owned(),
            None => panic!("node {}: answered {answer:?}", self.name),
        }
    }

    /// Repeats `command` on this node until it answers `expected` (words, `err:22` for
    /// `err 22`), for at most `ms`; returns how long that took.
    fn wait(&mut self, ms: u64, expected: &str, command: &str) -> Duration {
        let answer = self.call(&format!("wait {ms} {expected} {command}"));
        let Some(rest) = answer.strip_prefix("ok ") else {
            panic!(
                "node {}: {command:?} did not answer {expected:?} within {ms} ms; last: {answer:?}",
                self.name
            );
        };
        Duration::from_micros(rest.split(' ').next().unwrap().parse().unwrap())
    }

    /// Waits for one event of `kind` (about `who`, a user or key id, if given) on this node.
    fn event(&mut self, ms: u64, kind: &str, who: Option<&str>) -> String {
        let answer = self.call(&format!("wait_event {ms} {kind} {}", who.unwrap_or("")));
        match answer.strip_prefix("ok ") {
            Some(rest) => rest.split_once(' ').unwrap().1.to_owned(),
            None => panic!(
                "node {}: no {kind} event about {who:?} within {ms} ms",
                self.name
            ),
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }

    /// SIGKILL, then the same node (name, options) again: it reloads from the tables.
    fn restart(&mut self) {
        self.kill();
        let env = std::mem::take(&mut self.env);
        let mut fresh = Node::spawn(&self.name, &self.dsn, env);
        let first = fresh.recv();
        assert_eq!(first, "ready", "node {} failed to reopen", self.name);
        std::mem::swap(self, &mut fresh);
    }

    fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn tail(&self) -> String {
        let s = self.stderr.lock().unwrap();
        if s.is_empty() {
            String::new()
        } else {
            format!("\n--- stderr of node {} ---\n{s}", self.name)
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The numeric code of an `err <code> …` reply.
fn code(answer: &str) -> Option<u32> {
    answer.strip_prefix("err ")?.split(' ').next()?.parse().ok()
}

/// Polls `state` on every node until all agree, for at most `within`; returns the state.
fn converge(nodes: &mut [&mut Node], within: Duration) -> String {
    let start = Instant::now();
    loop {
        let states: Vec<String> = nodes.iter_mut().map(|n| n.ok("state")).collect();
        if states.iter().all(|s| *s == states[0]) {
            return states[0].clone();
        }
        if start.elapsed() > within {
            let named: Vec<String> = nodes
                .iter()
                .zip(&states)
                .map(|(n, s)| format!("{}: {s}", n.name))
                .collect();
            panic!("nodes did not converge within {within:?}: {named:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Pause and restart act on the whole server: the tests doing them hold this exclusively,
/// every other test holds it shared.
static SERVER: RwLock<()> = RwLock::new(());

#[allow(dead_code)] // the guards are held, not read
enum ServerUse {
    Shared(RwLockReadGuard<'static, ()>),
    Exclusive(RwLockWriteGuard<'static, ()>),
}

/// A fresh database for one test, and the right to use the server.
struct Db {
    dsn: String,
    _use: ServerUse,
}

impl Db {
    fn sql(&self, sql: &str) -> String {
        pg::psql(&self.dsn, sql)
    }
}

fn database(test: &str) -> Option<Db> {
    let guard = ServerUse::Shared(SERVER.read().unwrap_or_else(|e| e.into_inner()));
    open_database(test, guard)
}

fn database_exclusive(test: &str) -> Option<Db> {
    let guard = ServerUse::Exclusive(SERVER.write().unwrap_or_else(|e| e.into_inner()));
    open_database(test, guard)
}

fn open_database(test: &str, guard: ServerUse) -> Option<Db> {
    let Some(dsn) = pg::fresh_database(test) else {
        pg::skip(test);
        return None;
    };
    Some(Db { dsn, _use: guard })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

// ----- 1. one truth ----------------------------------------------------------------------

/// A write node A acknowledged is the truth everywhere at once: node B's next write decides
/// on it (B's follower may not have heard of it yet), it survives A's SIGKILL right after the
/// acknowledgement, and A finds it when restarted. A write killed before its commit is seen by
/// nobody and holds no lock.
#[test]
fn an_acknowledged_write_is_the_truth_on_every_node() {
    let Some(db) = database("one_truth") else {
        return;
    };
    let mut a = Node::start("a", &db.dsn, &[]);
    let mut b = Node::start("b", &db.dsn, &[]);

    // B's writes see A's acknowledged ones immediately, whatever B's follower is doing.
    for i in 0..30 {
        a.ok(&format!("create u{i}"));
        let answer = b.call(&format!("issue_access u{i}"));
        assert!(
            answer.starts_with("ok "),
            "round {i}: B issued no token for the user A just created: {answer:?}"
        );
        a.ok(&format!("delete u{i}"));
        a.ok(&format!("create u{i}"));
        let answer = b.call(&format!("revoke_sessions u{i}"));
        assert_eq!(
            answer, "ok",
            "round {i}: B missed that A re-created the user"
        );
    }

    a.ok("create victim");
    let access = a.ok("issue_access victim");
    let access = access.split(' ').next().unwrap().to_owned();
    let session = a.ok("issue_session victim");
    a.kill(); // right after the acknowledgement
    b.wait(1000, "ok", &format!("verify_access {access}"));
    b.wait(1000, "ok", &format!("verify_session {session}"));
    a.restart();
    assert!(a
        .ok(&format!("verify_access {access}"))
        .starts_with("victim"));
    assert!(a
        .ok(&format!("verify_session {session}"))
        .starts_with("victim"));

    // Killed between deciding and committing: the transaction dies with the process.
    let head = db.sql("SELECT pos FROM tessera_head");
    a.ok("hold");
    a.ok("spawn create in_flight");
    a.ok("wait_held 1 5000");
    a.kill();
    b.ok("create after_the_kill"); // the head lock went with A's connection
    assert_eq!(code(&b.call("get in_flight")), Some(4));
    a.restart();
    assert_eq!(code(&a.call("get in_flight")), Some(4));
    a.wait(1000, "ok", "get after_the_kill");
    assert_eq!(
        db.sql("SELECT count(*) FROM tessera_users WHERE user_id = 'in_flight'"),
        "0"
    );
    let head_after: u64 = db.sql("SELECT pos FROM tessera_head").parse().unwrap();
    assert_eq!(head_after, head.parse::<u64>().unwrap() + 1);
    converge(&mut [&mut a, &mut b], Duration::from_secs(2));
}

// ----- 2. races --------------------------------------------------------------------------

/// Three processes create the same id at the same instant (every command sent before any
/// reply is read), many times: exactly one wins, the others get `UserAlreadyExists`.
#[test]
fn three_nodes_creating_one_id_at_once_exactly_one_wins() {
    let Some(db) = database("race_create") else {
        return;
    };
    let mut nodes: Vec<Node> = ["a", "b", "c"]
        .iter()
        .map(|n| Node::start(n, &db.dsn, &[]))
        .collect();
    for round in 0..40 {
        for n in &mut nodes {
            n.send(&format!("create r{round}"));
        }
        let answers: Vec<String> = nodes.iter_mut().map(Node::recv).collect();
        let wins = answers.iter().filter(|a| *a == "ok").count();
        let lost = answers.iter().filter(|a| code(a) == Some(3)).count();
        assert_eq!(
            (wins, lost),
            (1, 2),
            "round {round}: one winner, two UserAlreadyExists: {answers:?}"
        );
    }
    assert_eq!(db.sql("SELECT count(*) FROM tessera_users"), "40");
    let [a, b, c] = &mut nodes[..] else {
        unreachable!()
    };
    let state = converge(&mut [a, b, c], Duration::from_secs(2));
    assert!(state.starts_with("40 "), "{state}");
}

/// Two processes issue access tokens for one user at once with a cap of 3: the cap holds on
/// every node and in the table, the survivors are the newest three, and every other token was
/// reported evicted exactly once and stops verifying everywhere.
#[test]
fn the_access_token_cap_holds_when_two_nodes_issue_at_once() {
    let Some(db) = database("race_cap") else {
        return;
    };
    let env = [(NODE_TOKEN_CAP, "3")];
    let mut a = Node::start("a", &db.dsn, &env);
    let mut b = Node::start("b", &db.dsn, &env);
    for round in 0..8 {
        let user = format!("capped{round}");
        a.ok(&format!("create {user}"));
        for _ in 0..4 {
            a.send(&format!("issue_access {user}"));
            b.send(&format!("issue_access {user}"));
        }
        let mut issued: Vec<(u64, String)> = Vec::new();
        let mut evicted: Vec<u64> = Vec::new();
        for node in [&mut a, &mut b] {
            for _ in 0..4 {
                let answer = node.recv();
                let mut parts = answer
                    .strip_prefix("ok ")
                    .unwrap_or_else(|| panic!("round {round}: node {}: {answer:?}", node.name));
                parts = parts.trim();
                let mut words = parts.split(' ');
                let token = words.next().unwrap().to_owned();
                let id: u64 = words.next().unwrap().parse().unwrap();
                issued.push((id, token));
                evicted.extend(words.map(|w| w.parse::<u64>().unwrap()));
            }
        }
        issued.sort();
        let survivors: Vec<u64> = issued[issued.len() - 3..].iter().map(|t| t.0).collect();
        let mut gone: Vec<u64> = issued[..issued.len() - 3].iter().map(|t| t.0).collect();
        evicted.sort_unstable();
        gone.sort_unstable();
        assert_eq!(evicted, gone, "round {round}: every eviction reported once");
        let want: Vec<String> = survivors.iter().map(u64::to_string).collect();
        let want = format!("ok:{}", want.join(":"));
        for node in [&mut a, &mut b] {
            node.wait(1000, &want, &format!("tokens {user}"));
            for (id, token) in &issued {
                let answer = node.call(&format!("verify_access {token}"));
                if survivors.contains(id) {
                    assert_eq!(answer, format!("ok {user} {id}"), "round {round}");
                } else {
                    assert_eq!(
                        code(&answer),
                        Some(20),
                        "round {round}: evicted {id} verifies"
                    );
                }
            }
        }
        let rows = db.sql(&format!(
            "SELECT string_agg(t.id::text, ' ' ORDER BY t.id) FROM tessera_access_tokens t \
             JOIN tessera_users u USING (handle) WHERE u.user_id = '{user}'"
        ));
        let want_rows: Vec<String> = survivors.iter().map(u64::to_string).collect();
        assert_eq!(rows, want_rows.join(" "), "round {round}: the table");
    }
}

/// A discovery key claimed by two processes at once ends with one owner (the other gets
/// `DiscoveryKeyTaken`); a push token registered by two processes for two users at once ends
/// on one user, listed by that user only, on every node and in the table.
#[test]
fn discovery_keys_and_push_tokens_stay_unique_under_races() {
    let Some(db) = database("race_unique") else {
        return;
    };
    let mut a = Node::start("a", &db.dsn, &[]);
    let mut b = Node::start("b", &db.dsn, &[]);
    for round in 0..20 {
        a.send(&format!("create da{round} key{round}"));
        b.send(&format!("create db{round} key{round}"));
        let (ra, rb) = (a.recv(), b.recv());
        let winner = match (ra.as_str(), rb.as_str()) {
            ("ok", _) if code(&rb) == Some(9) => format!("da{round}"),
            (_, "ok") if code(&ra) == Some(9) => format!("db{round}"),
            _ => panic!("round {round}: one owner, one DiscoveryKeyTaken: {ra:?} {rb:?}"),
        };
        for node in [&mut a, &mut b] {
            node.wait(
                1000,
                &format!("ok:{winner}"),
                &format!("discovery_owner key{round}"),
            );
        }
    }
    a.ok("create pa");
    a.ok("create pb");
    for round in 0..20 {
        let push = format!("push{round}");
        a.send(&format!("add_device pa {push}"));
        b.send(&format!("add_device pb {push}"));
        let (ra, rb) = (a.recv(), b.recv());
        assert!(ra == "ok" && rb == "ok", "round {round}: {ra:?} {rb:?}");
    }
    let owners = db.sql(
        "SELECT string_agg(d.push_token || '=' || u.user_id, ' ' ORDER BY d.push_token) \
         FROM tessera_devices d JOIN tessera_users u USING (handle)",
    );
    let owners: HashMap<&str, &str> = owners
        .split(' ')
        .map(|p| p.split_once('=').unwrap())
        .collect();
    assert_eq!(owners.len(), 20, "one row per push token: {owners:?}");
    converge(&mut [&mut a, &mut b], Duration::from_secs(2));
    for node in [&mut a, &mut b] {
        let pa: BTreeSet<String> = node.ok("devices pa").split(' ').map(String::from).collect();
        let pb: BTreeSet<String> = node.ok("devices pb").split(' ').map(String::from).collect();
        for round in 0..20 {
            let push = format!("push{round}");
            let owner = node.ok(&format!("push_owner {push}"));
            assert_eq!(owner, owners[push.as_str()], "node {}: {push}", node.name);
            assert!(
                pa.contains(&push) ^ pb.contains(&push),
                "node {}: {push} listed by both users or neither: pa {pa:?} pb {pb:?}",
                node.name
            );
            assert_eq!(
                pa.contains(&push),
                owner == "pa",
                "node {}: {push}",
                node.name
            );
        }
    }
}

/// Two processes change the key ring at once, many times (rotations, then the emergency
/// replacement): no rotation is lost, both nodes and the table agree on the ring, and a
/// session token signed before the replacement verifies on neither node.
#[test]
fn key_ring_changes_on_two_nodes_at_once_all_take_effect() {
    let Some(db) = database("race_keys") else {
        return;
    };
    let mut a = Node::start("a", &db.dsn, &[]);
    let mut b = Node::start("b", &db.dsn, &[]);
    a.ok("create k");
    let mut rotated = BTreeSet::new();
    for round in 0..10 {
        a.send("rotate_key");
        b.send("rotate_key");
        let (ka, kb) = (a.ok_reply(), b.ok_reply());
        assert_ne!(ka, kb, "round {round}: two rotations made one key");
        rotated.extend([ka, kb]);
    }
    // The table is the truth; each node may still be applying the other's last rotation.
    let ring = db.sql(
        "SELECT string_agg(key_id || CASE WHEN active THEN '*' ELSE '' END, ' ' \
         ORDER BY number) FROM tessera_keys",
    );
    for node in [&mut a, &mut b] {
        node.wait(1000, &format!("ok:{}", ring.replace(' ', ":")), "keys");
    }
    let live: BTreeSet<String> = ring
        .split(' ')
        .map(|k| k.trim_end_matches('*').to_owned())
        .collect();
    assert!(
        rotated.is_subset(&live),
        "a rotation was lost: {rotated:?} vs {live:?}"
    );

    let before = [a.ok("issue_session k"), b.ok("issue_session k")];
    a.send("revoke_all_sessions");
    b.send("revoke_all_sessions");
    assert_eq!((a.recv(), b.recv()), ("ok".to_owned(), "ok".to_owned()));
    let ring = db.sql("SELECT string_agg(key_id || '*', ' ') FROM tessera_keys");
    assert_eq!(
        ring.split(' ').count(),
        1,
        "the replacement left old keys: {ring}"
    );
    for node in [&mut a, &mut b] {
        node.wait(1000, &format!("ok:{ring}"), "keys");
    }
    for node in [&mut a, &mut b] {
        for s in &before {
            assert_eq!(code(&node.call(&format!("verify_session {s}"))), Some(22));
        }
    }
}

// ----- 3. propagation --------------------------------------------------------------------

/// Every kind of change made through A is visible on B within a second, and B raises the
/// revocation events A raised. Then ~300 session revocations measure the A→B latency: the
/// worst must be under a second (p50 and p99 are printed; the benchmark reports them
/// properly).
#[test]
fn every_change_reaches_the_other_nodes_within_a_second_with_its_events() {
    let Some(db) = database("propagation") else {
        return;
    };
    let env = [(NODE_TOKEN_CAP, "2")];
    let mut a = Node::start("a", &db.dsn, &env);
    let mut b = Node::start("b", &db.dsn, &env);
    let first_key = a.ok("keys").trim_end_matches('*').to_owned();

    a.ok("create p");
    b.wait(1000, "ok", "get p");
    a.ok("rename p renamed");
    b.wait(1000, "ok:renamed", "get p");

    // Access tokens: issue, evict (cap 2), revoke one, revoke all.
    let issue = |a: &mut Node| {
        let answer = a.ok("issue_access p");
        let mut w = answer.split(' ');
        (
            w.next().unwrap().to_owned(),
            w.next().unwrap().parse::<u64>().unwrap(),
        )
    };
    let (t1, id1) = issue(&mut a);
    b.wait(1000, "ok:p", &format!("verify_access {t1}"));
    let (t2, id2) = issue(&mut a);
    let (t3, _) = issue(&mut a); // evicts t1
    b.wait(1000, "err:20", &format!("verify_access {t1}"));
    let e = b.event(1000, "access_token_evicted", Some("p"));
    assert_eq!(e, format!("access_token_evicted:p:{id1}:-"));
    b.wait(1000, "ok:p", &format!("verify_access {t3}"));
    a.ok(&format!("revoke_access p {id2}"));
    b.wait(1000, "err:20", &format!("verify_access {t2}"));
    let e = b.event(1000, "access_token_revoked", Some("p"));
    assert_eq!(e, format!("access_token_revoked:p:{id2}:-"));
    a.ok("revoke_all_access p");
    b.wait(1000, "err:20", &format!("verify_access {t3}"));
    b.event(1000, "access_tokens_revoked", Some("p"));

    // Sessions: per user, then keys: rotation, retirement, and the emergency replacement.
    let s1 = a.ok("issue_session p");
    b.wait(1000, "ok:p", &format!("verify_session {s1}"));
    a.ok("revoke_sessions p");
    b.wait(1000, "err:22", &format!("verify_session {s1}"));
    b.event(1000, "sessions_revoked", Some("p"));
    let s2 = a.ok("issue_session p");
    b.wait(1000, "ok:p", &format!("verify_session {s2}"));
    let second_key = a.ok("rotate_key");
    let s3 = a.ok("issue_session p");
    b.wait(
        1000,
        &format!("ok:p:{second_key}"),
        &format!("verify_session {s3}"),
    );
    a.ok(&format!("retire_key {first_key}"));
    b.wait(1000, "err:22", &format!("verify_session {s2}"));
    b.event(1000, "key_retired", Some(&first_key));
    b.wait(1000, "ok:p", &format!("verify_session {s3}"));
    a.ok("revoke_all_sessions");
    b.wait(1000, "err:22", &format!("verify_session {s3}"));
    b.event(1000, "key_retired", Some(&second_key));
    b.event(1000, "all_sessions_revoked", None);

    // The user: deactivation, then deletion.
    let (t4, _) = issue(&mut a);
    b.wait(1000, "ok:p", &format!("verify_access {t4}"));
    a.ok("deactivate p");
    b.wait(1000, "err:5", &format!("verify_access {t4}"));
    b.event(1000, "user_deactivated", Some("p"));
    a.ok("delete p");
    b.wait(1000, "err:4", "get p");
    b.event(1000, "user_deleted", Some("p"));
    assert_eq!(b.ok("events"), "", "B raised events A did not cause");
    converge(&mut [&mut a, &mut b], Duration::from_secs(1));

    // Latency, from A's acknowledgement to B's event.
    a.ok("create q");
    let mut latencies = Vec::new();
    for _ in 0..300 {
        a.ok("revoke_sessions q");
        let acked = Instant::now();
        b.event(1000, "sessions_revoked", Some("q"));
        latencies.push(acked.elapsed());
    }
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    eprintln!(
        "A→B revocation latency over {} revocations: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        latencies.len(),
        ms(pct(0.5)),
        ms(pct(0.99)),
        ms(*latencies.last().unwrap())
    );
    assert!(*latencies.last().unwrap() <= Duration::from_secs(1));
}

// ----- 4. nothing missed -----------------------------------------------------------------

/// A writes 500 changes while every cluster connection in the database (A's and B's) is
/// terminated, several times: A, B and a node opened afterwards from the tables end with the
/// same state.
#[test]
fn nodes_converge_through_terminated_connections() {
    let Some(db) = database("terminated") else {
        return;
    };
    let env = [(NODE_POLL, "50")];
    let mut a = Node::start("a", &db.dsn, &env);
    let mut b = Node::start("b", &db.dsn, &env);
    a.send("burst 500 x");
    let mut terminated = 0;
    for _ in 0..6 {
        std::thread::sleep(Duration::from_millis(150));
        terminated += pg::terminate_backends(&db.dsn, Some("tessera-%"));
    }
    let done = a.recv();
    assert!(done.starts_with("ok "), "{done}");
    assert!(terminated >= 6, "only {terminated} backends terminated");
    let mut c = Node::start("c", &db.dsn, &env);
    let state = converge(&mut [&mut a, &mut b, &mut c], Duration::from_secs(10));
    let users = db.sql("SELECT count(*) FROM tessera_users");
    assert!(
        state.starts_with(&format!("{users} ")),
        "{state} vs {users} rows"
    );
    eprintln!("burst through {terminated} terminated backends: {done}, state {state}");
}

/// PostgreSQL restarts in the middle of A's writes: every node converges.
#[test]
fn nodes_converge_through_a_postgres_restart() {
    let Some(db) = database_exclusive("pg_restart") else {
        return;
    };
    let env = [(NODE_POLL, "50")];
    let mut a = Node::start("a", &db.dsn, &env);
    let mut b = Node::start("b", &db.dsn, &env);
    a.send("burst 300 y");
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    pg::restart();
    let restarted = t.elapsed();
    let done = a.recv();
    assert!(done.starts_with("ok "), "{done}");
    let burst = t.elapsed();
    let mut c = Node::start("c", &db.dsn, &env);
    let state = converge(&mut [&mut a, &mut b, &mut c], Duration::from_secs(10));
    eprintln!(
        "PostgreSQL restarted in {:.0} ms; burst {done} done {:.0} ms after it began, all \
         converged {:.0} ms after it began: {state}",
        ms(restarted),
        ms(burst),
        ms(t.elapsed())
    );
}

/// B is SIGKILLed and restarted while A keeps writing, three times in one burst (so B opens
/// while changes are committing), then once more after A stopped: B converges every time.
#[test]
fn a_killed_node_catches_up_when_restarted() {
    let Some(db) = database("node_restart") else {
        return;
    };
    let mut a = Node::start("a", &db.dsn, &[]);
    let mut b = Node::start("b", &db.dsn, &[]);
    a.ok("burst 60 z");
    b.kill();
    a.ok("burst 60 y");
    b.restart();
    converge(&mut [&mut a, &mut b], Duration::from_secs(5));
    a.send("burst 300 w");
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(100));
        b.restart(); // opens while A commits
    }
    let done = a.recv();
    assert!(done.starts_with("ok "), "{done}");
    converge(&mut [&mut a, &mut b], Duration::from_secs(5));
}

/// A's commit is held after its log entry is written (head row locked): C's write waits
/// behind it rather than taking the next position, follower D sees neither, and after the
/// release every node holds both, in log order, with no gap in the log.
#[test]
fn a_delayed_commit_blocks_other_writers_and_hides_from_followers() {
    let Some(db) = database("delayed_commit") else {
        return;
    };
    let mut a = Node::start("a", &db.dsn, &[]);
    let mut c = Node::start("c", &db.dsn, &[]);
    let mut d = Node::start("d", &db.dsn, &[]);
    a.ok("create base");
    d.wait(1000, "ok", "get base");
    let head = db.sql("SELECT pos FROM tessera_head");

    a.ok("hold");
    a.ok("spawn create held_first");
    a.ok("wait_held 1 5000");
    c.ok("spawn create came_second");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        c.call("done"),
        "pending",
        "C wrote past A's uncommitted write"
    );
    assert_eq!(code(&d.call("get held_first")), Some(4));
    assert_eq!(code(&d.call("get came_second")), Some(4));
    assert_eq!(
        code(&a.call("get held_first")),
        Some(4),
        "A shows it before commit"
    );
    assert_eq!(db.sql("SELECT pos FROM tessera_head"), head);

    a.ok("release");
    assert_eq!(a.call("join"), "ok");
    assert_eq!(c.call("join"), "ok");
    let pos_of = |id: &str| -> u64 {
        db.sql(&format!(
            "SELECT pos FROM tessera_log WHERE position(convert_to('{id}', 'UTF8') in payload) > 0"
        ))
        .parse()
        .unwrap()
    };
    let (first, second) = (pos_of("held_first"), pos_of("came_second"));
    assert_eq!(second, first + 1, "log order is commit order");
    assert_eq!(
        db.sql("SELECT count(*) = max(pos) - min(pos) + 1 FROM tessera_log"),
        "t",
        "a gap in the log"
    );
    for node in [&mut a, &mut c, &mut d] {
        node.wait(1000, "ok", "get came_second");
        assert_eq!(node.ok("users"), "base held_first came_second");
    }
    converge(&mut [&mut a, &mut c, &mut d], Duration::from_secs(1));
}

// ----- 5. fail closed --------------------------------------------------------------------

/// With `max_staleness` 500 ms, a node whose database is paused refuses to verify within
/// about a second (`Unavailable`) a token it verified before; a node with `max_staleness`
/// `None` keeps verifying; after the resume the first verifies again.
#[test]
fn a_stale_node_fails_closed_and_recovers() {
    let Some(db) = database_exclusive("fail_closed") else {
        return;
    };
    let mut a = Node::start("a", &db.dsn, &[]);
    let mut strict = Node::start(
        "strict",
        &db.dsn,
        &[(NODE_STALENESS, "500"), (NODE_POLL, "50")],
    );
    let mut lax = Node::start(
        "lax",
        &db.dsn,
        &[(NODE_STALENESS, "none"), (NODE_POLL, "50")],
    );
    a.ok("create s");
    let access = a.ok("issue_access s");
    let access = access.split(' ').next().unwrap().to_owned();
    let session = a.ok("issue_session s");
    for node in [&mut strict, &mut lax] {
        node.wait(1000, "ok", &format!("verify_access {access}"));
        node.wait(1000, "ok", &format!("verify_session {session}"));
    }
    {
        let _paused = pg::paused();
        let refused = strict.wait(1500, "err:55", &format!("verify_access {access}"));
        assert_eq!(
            code(&strict.call(&format!("verify_session {session}"))),
            Some(55)
        );
        assert!(lax.ok(&format!("verify_access {access}")).starts_with("s "));
        assert!(lax
            .ok(&format!("verify_session {session}"))
            .starts_with("s "));
        eprintln!(
            "paused: the strict node refused after {:.0} ms",
            ms(refused)
        );
    }
    let back = strict.wait(10_000, "ok", &format!("verify_access {access}"));
    strict.wait(1000, "ok", &format!("verify_session {session}"));
    eprintln!(
        "resumed: the strict node verifies again after {:.0} ms",
        ms(back)
    );
}

// ----- 6. operator tables ----------------------------------------------------------------

/// After tokens are issued, no table holds a plaintext token or its secret, in any column
/// (text, bytea, the log's payloads): only the SHA-256 digests of access tokens.
#[test]
fn no_table_holds_a_plaintext_token() {
    let Some(db) = database("no_plaintext") else {
        return;
    };
    let mut a = Node::start("a", &db.dsn, &[]);
    let mut access = Vec::new();
    let mut sessions = Vec::new();
    for i in 0..5 {
        a.ok(&format!("create user{i} key{i}"));
        a.ok(&format!("add_device user{i} push{i}"));
        a.ok(&format!("image user{i} {i}"));
        for _ in 0..3 {
            let t = a.ok(&format!("issue_access user{i}"));
            access.push(t.split(' ').next().unwrap().to_owned());
        }
        sessions.push(a.ok(&format!("issue_session user{i}")));
    }
    a.ok("rotate_key");
    sessions.push(a.ok("issue_session user0"));

    let tables = db.sql(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' \
         AND tablename LIKE 'tessera%' ORDER BY 1",
    );
    assert!(tables.lines().count() >= 10, "{tables}");
    let mut dump = String::new();
    for table in tables.lines() {
        dump.push_str(&db.sql(&format!("SELECT t::text FROM {table} t")));
        dump.push('\n');
    }
    let dump = dump.to_lowercase();
    for t in &access {
        let body = &t[tessera::ACCESS_TOKEN_PREFIX.len()..t.len() - 6];
        let secret = URL_SAFE_NO_PAD.decode(body).unwrap();
        for needle in [
            t.to_lowercase(),
            body.to_lowercase(),
            hex(t.as_bytes()),
            hex(&secret[8..]),
        ] {
            assert!(
                !dump.contains(&needle),
                "an access token's secret is stored"
            );
        }
        let digest: [u8; 32] = Sha256::digest(t.as_bytes()).into();
        assert!(
            dump.contains(&hex(&digest)),
            "the access token's digest is not in the tables"
        );
    }
    for s in &sessions {
        let signature = s.rsplit('.').next().unwrap();
        for needle in [
            s.to_lowercase(),
            signature.to_lowercase(),
            hex(s.as_bytes()),
        ] {
            assert!(!dump.contains(&needle), "a session token is stored");
        }
    }
}

/// A database whose `tessera_schema` says a newer version than this library knows is
/// refused with `UnsupportedFormat`.
#[test]
fn a_newer_schema_is_refused() {
    let Some(db) = database("schema_version") else {
        return;
    };
    let mut a = Node::start("a", &db.dsn, &[]);
    a.ok("create before");
    drop(a);
    db.sql("UPDATE tessera_schema SET version = 999");
    let refused = Node::try_start("b", &db.dsn, &[])
        .err()
        .expect("opened a newer schema");
    assert_eq!(
        code(&refused.replace("open_err", "err")),
        Some(53),
        "{refused}"
    );
}

/// With `log_retention` 10: B is frozen (SIGSTOP) while A revokes, deletes, deactivates and
/// writes 100 more changes; B's position no longer holds the log back (its heartbeat is made
/// old) and A prunes. B, thawed, finds its position pruned, reloads the whole state,
/// converges, and raises the revocation events of the changes it never read, so its server
/// still drops the right sockets. A node SIGKILLed across a prune reopens from the tables.
#[test]
fn a_node_behind_the_pruned_log_reloads_and_converges() {
    let Some(db) = database("pruning") else {
        return;
    };
    let env = [(NODE_RETENTION, "10"), (NODE_POLL, "50")];
    let mut a = Node::start("a", &db.dsn, &env);
    let mut b = Node::start("b", &db.dsn, &env);
    for id in ["early", "gone", "sleepy"] {
        a.ok(&format!("create {id}"));
    }
    let access = a.ok("issue_access early");
    let (access, access_id) = access.split_once(' ').unwrap();
    let access_id = access_id.trim().to_owned();
    let session = a.ok("issue_session early");
    b.wait(1000, "ok:early", &format!("verify_session {session}"));
    b.wait(1000, "ok:early", &format!("verify_access {access}"));
    let b_pos: u64 = db.sql("SELECT pos FROM tessera_head").parse().unwrap();
    // B's heartbeat (once a second) has recorded its row, which would hold the log back.
    let start = Instant::now();
    while db.sql("SELECT count(*) FROM tessera_nodes WHERE node_id LIKE 'b-%'") != "1" {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "B never wrote its row"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(b.ok("events"), "");

    b.signal("-STOP");
    let thaw = Thaw(b.child.id());
    a.ok("revoke_sessions early");
    a.ok(&format!("revoke_access early {access_id}"));
    a.ok("delete gone");
    a.ok("deactivate sleepy");
    a.ok("burst 100 v");
    let forget_b = "UPDATE tessera_nodes SET seen_at = now() - interval '1 hour' \
                    WHERE node_id LIKE 'b-%'";
    db.sql(forget_b);
    // Pruning also waits for A's own position, which its heartbeat records once a second.
    let start = Instant::now();
    while db.sql(
        "SELECT count(*) FROM tessera_nodes WHERE node_id LIKE 'a-%' \
         AND applied_pos = (SELECT pos FROM tessera_head)",
    ) != "1"
    {
        assert!(start.elapsed() < Duration::from_secs(5), "A's row lags");
        std::thread::sleep(Duration::from_millis(50));
    }
    a.ok("compact");
    let oldest: u64 = db.sql("SELECT min(pos) FROM tessera_log").parse().unwrap();
    assert!(
        oldest > b_pos + 1,
        "the log was not pruned past B's position {b_pos} (oldest entry {oldest})"
    );
    drop(thaw); // SIGCONT
    converge(&mut [&mut a, &mut b], Duration::from_secs(5));
    assert_eq!(
        code(&b.call(&format!("verify_session {session}"))),
        Some(22)
    );
    assert_eq!(code(&b.call(&format!("verify_access {access}"))), Some(20));
    b.event(1000, "sessions_revoked", Some("early"));
    let revoked = b.event(1000, "access_token_revoked", Some("early"));
    assert_eq!(revoked, format!("access_token_revoked:early:{access_id}:-"));
    b.event(1000, "user_deleted", Some("gone"));
    b.event(1000, "user_deactivated", Some("sleepy"));

    b.kill();
    a.ok("burst 100 t");
    db.sql(forget_b);
    a.ok("compact");
    b.restart();
    converge(&mut [&mut a, &mut b], Duration::from_secs(5));
}

/// Sends SIGCONT to a process when dropped, so a failing test cannot leave it frozen.
struct Thaw(u32);

impl Drop for Thaw {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.0.to_string()])
            .status();
    }
}

// ----- 7. import -------------------------------------------------------------------------

/// A data directory with users, tokens, devices, discovery keys, revoked sessions, images and
/// two keys moves into an empty cluster with `import_from` (in this process); another node
/// process then holds the same state, verifies the old tokens and serves the images; and the
/// cluster moves back into a fresh data directory, which holds the same state after a reopen
/// (by `import_from`, and by `backup_to`).
#[test]
fn import_moves_an_embedded_state_into_the_cluster_and_back() {
    let Some(db) = database("import") else {
        return;
    };
    let tmp = std::env::temp_dir().join(format!("tessera-cluster-import-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let relaxed = || Engine::builder().sync_mode(SyncMode::Relaxed(Duration::from_millis(50)));
    let embedded = relaxed().open(tmp.join("embedded")).unwrap();
    let mut access = Vec::new();
    let mut sessions = Vec::new();
    let mut revoked = Vec::new();
    let mut images = Vec::new();
    for i in 0..300u64 {
        let id = format!("imp{i}");
        let mut new = NewUser::new(id.clone(), format!("Imported {i}"));
        if i % 3 == 0 {
            new.discovery_keys = vec![format!("disc{i}")];
        }
        embedded.create_user(new).unwrap();
        if i % 4 == 0 {
            let t = embedded.issue_access_token(&id, Some("phone")).unwrap();
            access.push((id.clone(), t.token.as_str().to_owned()));
        }
        if i % 5 == 0 {
            embedded
                .add_device(&id, NewDevice::new(DeviceType::Ios, format!("apns{i}")))
                .unwrap();
        }
        if i % 7 == 0 {
            let s = embedded.issue_session_token(&id, None).unwrap();
            if i % 14 == 0 {
                embedded.revoke_sessions(&id).unwrap();
                revoked.push(s.as_str().to_owned());
            } else {
                sessions.push((id.clone(), s.as_str().to_owned()));
            }
        }
        if i % 50 == 0 {
            let url = embedded
                .set_profile_image(&id, &png(i))
                .unwrap()
                .profile_url
                .unwrap();
            images.push((url, png(i)));
        }
        if i == 150 {
            embedded.rotate_key().unwrap();
        }
    }
    embedded.delete_user("imp1").unwrap(); // a hole in the handles
    let want = state_digest(&embedded).unwrap();

    let cluster = Engine::builder()
        .open_postgres(&db.dsn, ClusterOptions::new())
        .unwrap();
    assert_eq!(cluster.import_from(&embedded).unwrap(), 299);
    let mut n = Node::start("n", &db.dsn, &[]);
    assert_eq!(n.ok("state"), want);
    for (id, t) in &access {
        assert!(n
            .ok(&format!("verify_access {t}"))
            .starts_with(&format!("{id} ")));
    }
    for (id, s) in &sessions {
        assert!(n
            .ok(&format!("verify_session {s}"))
            .starts_with(&format!("{id} ")));
    }
    for s in &revoked {
        assert_eq!(code(&n.call(&format!("verify_session {s}"))), Some(22));
    }
    let sha_of = |url: &str| {
        url.rsplit('/')
            .next()
            .unwrap()
            .split('.')
            .next()
            .unwrap()
            .to_owned()
    };
    for (url, bytes) in &images {
        let sha: [u8; 32] = Sha256::digest(bytes).into();
        assert_eq!(
            n.ok(&format!("image_bytes {}", sha_of(url))),
            format!("{} {}", bytes.len(), hex(&sha))
        );
    }
    // A write in the cluster continues the counters: no handle or token id is reused.
    let t = n.ok("issue_access imp4");
    let new_id: u64 = t.split(' ').nth(1).unwrap().parse().unwrap();
    assert!(new_id > access.len() as u64, "token id {new_id} reused");
    n.ok("create after_import");
    let cluster_state = n.ok("state");

    // And back, for a backup.
    let wait_for = Instant::now();
    while state_digest(&cluster).unwrap() != cluster_state {
        assert!(
            wait_for.elapsed() < Duration::from_secs(2),
            "in-process node lags"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let backup = relaxed().open(tmp.join("backup")).unwrap();
    assert_eq!(backup.import_from(&cluster).unwrap(), 300);
    drop(backup);
    let backup = Engine::open(tmp.join("backup")).unwrap();
    assert_eq!(state_digest(&backup).unwrap(), cluster_state);
    for (id, s) in &sessions {
        assert_eq!(backup.verify_session_token(s).unwrap().user_id, *id);
    }
    for (url, bytes) in &images {
        assert_eq!(backup.profile_image(&sha_of(url)).unwrap().bytes, *bytes);
    }
    // The same in one call: `backup_to` builds the data directory beside its target and
    // renames it into place.
    let stats = cluster.backup_to(tmp.join("backup-to")).unwrap();
    assert_eq!(stats.users, 300);
    let copy = Engine::open(tmp.join("backup-to")).unwrap();
    assert_eq!(state_digest(&copy).unwrap(), cluster_state);
    for (url, bytes) in &images {
        assert_eq!(copy.profile_image(&sha_of(url)).unwrap().bytes, *bytes);
    }
    drop((copy, backup, embedded, cluster));
    std::fs::remove_dir_all(&tmp).unwrap();
}
