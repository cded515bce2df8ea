//! `Engine::backup_to`: a copy of a live engine, written while writers go on, that opens as a
//! data directory and holds the state at ONE instant during the call.
//!
//! The load test runs several *lanes* of writes. A lane is a sequence of operations on its own
//! users, each a pure function of the lane's state so far, executed one at a time (lane 0 by
//! two threads taking turns, the others by one thread each), with the wall-clock interval of
//! every call recorded. Each operation leaves a trace of its index (a metadata counter, a
//! token label, the bytes of an image) or is followed by one that does. For each copy the test
//! finds, per lane, the number k of operations whose effect it holds — by replaying the lane
//! up to its largest trace and comparing the copy with the replay — and then checks that one
//! instant explains every lane at once: some moment inside the backup call after operation k
//! of every lane started and before operation k+1 of any lane returned.
//!
//! The crash test kills a process whose backup is held just before its rename (the
//! `fault-injection` feature): nothing may appear at the target.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tessera::{Engine, ErrorKind, NewUser, UserPatch};

struct TestDir(PathBuf);

impl TestDir {
    fn new(name: &str) -> TestDir {
        static N: AtomicU64 = AtomicU64::new(0);
        // In memory where possible: the load test syncs thousands of times.
        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let path = base.join(format!(
            "tessera-backup-test-{}-{}-{name}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TestDir(path)
    }

    fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

/// A PNG signature and IHDR tag followed by the lane and operation: enough for the sniffer,
/// and the bytes name the operation that stored them.
fn png(lane: u64, i: u64) -> Vec<u8> {
    let mut v = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    v.extend_from_slice(&lane.to_le_bytes());
    v.extend_from_slice(&i.to_le_bytes());
    v
}

fn png_index(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes[bytes.len() - 8..].try_into().unwrap())
}

const USERS_PER_LANE: u64 = 5;
const TOKENS_PER_USER: usize = 10; // the default cap: an 11th issue evicts the oldest

fn user_id(lane: u64, u: u64) -> String {
    format!("l{lane}-u{u}")
}

/// What a lane's users hold, as the test sees it.
#[derive(Clone, Debug, Default, PartialEq)]
struct UserModel {
    /// Metadata counter `n`: the operation that last set it.
    n: u64,
    /// Labels of the valid access tokens, oldest first.
    tokens: Vec<u64>,
    /// The operation whose image is the profile image.
    image: Option<u64>,
}

type LaneModel = BTreeMap<u64, UserModel>;

#[derive(Debug)]
enum Op {
    Create(String),
    Delete(String),
    Update(String),
    Issue(String),
    RevokeOldest(String, u64),
    Image(String),
}

impl Op {
    /// Whether the copy shows this operation's index.
    fn traced(&self) -> bool {
        !matches!(self, Op::Delete(_) | Op::RevokeOldest(..))
    }
}

/// Operation `i` (from 1) of `lane`, given the lane's state before it; applies it to the model.
fn step(model: &mut LaneModel, lane: u64, i: u64) -> Op {
    let u = i % USERS_PER_LANE;
    let id = user_id(lane, u);
    let Some(m) = model.get_mut(&u) else {
        model.insert(
            u,
            UserModel {
                n: i,
                ..UserModel::default()
            },
        );
        return Op::Create(id);
    };
    if i.is_multiple_of(9) {
        model.remove(&u);
        return Op::Delete(id);
    }
    match i % 5 {
        1 => {
            m.tokens.push(i);
            if m.tokens.len() > TOKENS_PER_USER {
                m.tokens.remove(0);
            }
            Op::Issue(id)
        }
        2 if !m.tokens.is_empty() => Op::RevokeOldest(id, m.tokens.remove(0)),
        3 => {
            m.image = Some(i);
            Op::Image(id)
        }
        _ => {
            m.n = i;
            Op::Update(id)
        }
    }
}

fn with_n(i: u64) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    m.insert("n".into(), i.into());
    m
}

fn execute(engine: &Engine, lane: u64, i: u64, op: &Op) {
    match op {
        Op::Create(id) => {
            let mut new = NewUser::new(id.as_str(), "x");
            new.metadata = with_n(i);
            engine.create_user(new).map(|_| ())
        }
        Op::Delete(id) => engine.delete_user(id),
        Op::Update(id) => {
            let patch = UserPatch {
                metadata: Some(with_n(i)),
                ..Default::default()
            };
            engine.update_user(id, &patch).map(|_| ())
        }
        Op::Issue(id) => engine
            .issue_access_token(id, Some(&i.to_string()))
            .map(|_| ()),
        Op::RevokeOldest(id, label) => {
            let tokens = engine.list_access_tokens(id).unwrap();
            let t = tokens
                .iter()
                .find(|t| t.label.as_deref() == Some(&label.to_string()))
                .unwrap_or_else(|| panic!("lane {lane} op {i}: no token {label} on {id}"));
            engine.revoke_access_token(id, t.id)
        }
        Op::Image(id) => engine.set_profile_image(id, &png(lane, i)).map(|_| ()),
    }
    .unwrap_or_else(|e| panic!("lane {lane} op {i} {op:?}: {e}"));
}

/// The lane's users as stored in `engine`, and the largest operation index they show.
fn observe(engine: &Engine, lane: u64) -> (LaneModel, u64) {
    let mut model = LaneModel::new();
    let mut max = 0;
    for u in 0..USERS_PER_LANE {
        let id = user_id(lane, u);
        let user = match engine.get_user(&id) {
            Ok(user) => user,
            Err(e) if e.kind() == ErrorKind::UserNotFound => continue,
            Err(e) => panic!("{id}: {e}"),
        };
        let n = user.metadata["n"].as_u64().unwrap();
        let mut tokens: Vec<(u64, u64)> = engine
            .list_access_tokens(&id)
            .unwrap()
            .into_iter()
            .map(|t| (t.id, t.label.unwrap().parse().unwrap()))
            .collect();
        tokens.sort();
        let image = user.profile_url.map(|url| {
            let hex = url.rsplit('/').next().unwrap().split('.').next().unwrap();
            let bytes = engine.profile_image(hex).unwrap().bytes;
            assert_eq!(
                &bytes[bytes.len() - 16..bytes.len() - 8],
                lane.to_le_bytes()
            );
            png_index(&bytes)
        });
        let tokens: Vec<u64> = tokens.into_iter().map(|(_, label)| label).collect();
        max = max.max(n).max(image.unwrap_or(0));
        max = max.max(tokens.iter().copied().max().unwrap_or(0));
        model.insert(u, UserModel { n, tokens, image });
    }
    (model, max)
}

/// How many operations of `lane` the copy holds: the k whose replay equals what it stores.
fn operations_held(copy: &Engine, lane: u64) -> u64 {
    let (seen, max_trace) = observe(copy, lane);
    let mut model = LaneModel::new();
    for i in 1..=max_trace {
        step(&mut model, lane, i);
    }
    let mut k = max_trace;
    loop {
        if model == seen {
            return k;
        }
        // Operations past the largest trace can only be untraced ones.
        let mut next = model.clone();
        if !step(&mut next, lane, k + 1).traced() {
            model = next;
            k += 1;
            continue;
        }
        panic!(
            "lane {lane}: the copy is no prefix of the lane's operations \
             (largest trace {max_trace})\ncopy:   {seen:?}\nreplay: {model:?}"
        );
    }
}

/// One lane: its next operation index, its model, and the interval of every call so far.
struct Lane {
    next: u64,
    model: LaneModel,
    /// `(started, returned)` of operation `i` at index `i - 1`.
    calls: Vec<(Instant, Instant)>,
}

fn run_lane_op(engine: &Engine, lane: u64, state: &Mutex<Lane>) {
    let mut l = state.lock().unwrap();
    let i = l.next;
    let op = step(&mut l.model, lane, i);
    let started = Instant::now();
    execute(engine, lane, i, &op);
    let returned = Instant::now();
    l.calls.push((started, returned));
    l.next += 1;
}

/// Checks that one instant inside `[begin, end]` explains what the copy holds of every lane.
fn check_one_instant(copy: &Engine, lanes: &[Arc<Mutex<Lane>>], begin: Instant, end: Instant) {
    let mut latest_start = begin;
    let mut earliest_return = end;
    for (lane, state) in lanes.iter().enumerate() {
        let k = operations_held(copy, lane as u64);
        let l = state.lock().unwrap();
        assert!(
            (k as usize) <= l.calls.len(),
            "lane {lane}: the copy holds {k} operations, only {} ran",
            l.calls.len()
        );
        if k > 0 {
            latest_start = latest_start.max(l.calls[k as usize - 1].0);
        }
        if let Some(&(_, returned)) = l.calls.get(k as usize) {
            earliest_return = earliest_return.min(returned);
        }
    }
    assert!(
        latest_start < earliest_return,
        "no single instant explains the copy: an operation it holds started {:?} after one \
         it lacks had returned (or outside the backup call)",
        latest_start - earliest_return
    );
}

#[test]
fn a_backup_under_concurrent_writes_and_compactions_holds_one_instant() {
    let dir = TestDir::new("load");
    let engine = Engine::open(dir.join("data")).unwrap();
    let lanes: Vec<Arc<Mutex<Lane>>> = (0..4)
        .map(|_| {
            Arc::new(Mutex::new(Lane {
                next: 1,
                model: LaneModel::new(),
                calls: Vec::new(),
            }))
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    // Lane 0 by two threads taking turns; lanes 1..4 one thread each.
    for (lane, t) in [(0, 0), (0, 1), (1, 0), (2, 0), (3, 0)] {
        let (engine, state, stop) = (engine.clone(), lanes[lane].clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            let _ = t;
            while !stop.load(Ordering::Relaxed) {
                run_lane_op(&engine, lane as u64, &state);
            }
        }));
    }
    let compactions = Arc::new(AtomicU64::new(0));
    {
        let (engine, stop, compactions) = (engine.clone(), stop.clone(), compactions.clone());
        threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                engine.compact().unwrap();
                compactions.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(7));
            }
        }));
    }
    let session = {
        let mut new = NewUser::new("keeper", "k");
        new.metadata = with_n(0);
        engine.create_user(new).unwrap();
        engine.issue_session_token("keeper", None).unwrap()
    };

    let mut copies = Vec::new();
    for b in 0..4 {
        std::thread::sleep(Duration::from_millis(150));
        let target = dir.join(&format!("backup-{b}"));
        let begin = Instant::now();
        let stats = engine.backup_to(&target).unwrap();
        let end = Instant::now();
        assert!(
            stats.users >= 1 && stats.files >= 2 && stats.bytes > 0,
            "{stats:?}"
        );
        copies.push((target, begin, end, stats));
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let ops: usize = lanes.iter().map(|l| l.lock().unwrap().calls.len()).sum();
    assert!(
        ops > 200,
        "too little load to mean anything: {ops} operations"
    );
    assert!(compactions.load(Ordering::Relaxed) > 4);
    eprintln!(
        "{ops} operations, {} compactions, backups took {:?}",
        compactions.load(Ordering::Relaxed),
        copies.iter().map(|c| c.2 - c.1).collect::<Vec<_>>()
    );

    // Writers kept going: whole write calls started and returned inside the backup calls.
    let inside: usize = copies
        .iter()
        .map(|&(_, begin, end, _)| {
            lanes
                .iter()
                .flat_map(|l| l.lock().unwrap().calls.clone())
                .filter(|&(s, r)| s >= begin && r <= end)
                .count()
        })
        .sum();
    assert!(inside > 0, "no write completed while a backup ran");

    for (target, begin, end, stats) in &copies {
        let copy = Engine::open(target).unwrap();
        check_one_instant(&copy, &lanes, *begin, *end);
        assert_eq!(copy.user_count(), stats.users, "{}", target.display());
        assert_eq!(copy.keys(), engine.keys());
        copy.verify_session_token(session.as_str()).unwrap();
        // A data directory like any other: written, compacted, reopened.
        copy.create_user(NewUser::new("after", "a")).unwrap();
        copy.compact().unwrap();
        drop(copy);
        let copy = Engine::open(target).unwrap();
        assert_eq!(copy.get_user("after").unwrap().nickname, "a");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(target.join("keys")), 0o600);
        }
    }
    // The check has teeth: the first copy is not the state at any instant of the last
    // backup call.
    let first = Engine::open(&copies[0].0).unwrap();
    let (_, begin, end, _) = copies[3];
    let wrong = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        check_one_instant(&first, &lanes, begin, end)
    }));
    assert!(wrong.is_err());
    drop(first);
    // Nothing left beside the targets.
    assert_eq!(
        names_in(&dir.0),
        ["backup-0", "backup-1", "backup-2", "backup-3", "data"]
    );
}

/// Every piece of state, for comparing two engines (tokens by id and label, never secrets).
fn dump(engine: &Engine) -> Vec<String> {
    let mut out = Vec::new();
    let mut query = tessera::UserQuery {
        limit: 100,
        ..Default::default()
    };
    loop {
        let page = engine.list_users(&query).unwrap();
        for u in &page.users {
            let tokens = engine.list_access_tokens(&u.user_id).unwrap();
            let devices = engine.list_devices(&u.user_id).unwrap();
            let image = u
                .profile_url
                .as_deref()
                .map(|url| {
                    let hex = url.rsplit('/').next().unwrap().split('.').next().unwrap();
                    engine.profile_image(hex).unwrap().bytes
                })
                .unwrap_or_default();
            out.push(format!("{u:?} {tokens:?} {devices:?} {image:?}"));
        }
        match page.next_cursor {
            Some(next) => query.cursor = Some(next),
            None => break,
        }
    }
    out.push(format!("{:?}", engine.keys()));
    out
}

fn populate(engine: &Engine) -> (String, String) {
    for u in 0..30 {
        let id = format!("user{u}");
        engine.create_user(NewUser::new(id.as_str(), "n")).unwrap();
        if u % 3 == 0 {
            engine.issue_access_token(&id, Some("x")).unwrap();
        }
        if u % 4 == 0 {
            engine.set_profile_image(&id, &png(9, u)).unwrap();
        }
    }
    engine.delete_user("user7").unwrap();
    engine.rotate_key().unwrap();
    let access = engine.issue_access_token("user1", None).unwrap();
    let session = engine.issue_session_token("user2", None).unwrap();
    (
        access.token.as_str().to_owned(),
        session.as_str().to_owned(),
    )
}

fn check_copy(source: &Engine, target: &Path, tokens: &(String, String)) {
    let copy = Engine::open(target).unwrap();
    assert_eq!(dump(&copy), dump(source));
    assert_eq!(
        copy.verify_access_token(&tokens.0).unwrap().user_id,
        "user1"
    );
    assert_eq!(
        copy.verify_session_token(&tokens.1).unwrap().user_id,
        "user2"
    );
    // The id counters came along: a new user gets a handle never used in the source.
    let max = (0..30)
        .filter_map(|u| source.get_user(&format!("user{u}")).ok())
        .map(|u| u.handle)
        .max()
        .unwrap();
    assert!(copy.create_user(NewUser::new("new", "n")).unwrap().handle > max);
}

#[test]
fn a_durable_engine_backs_up_into_an_equal_data_directory() {
    let dir = TestDir::new("durable");
    let engine = Engine::open(dir.join("data")).unwrap();
    let tokens = populate(&engine);
    // A snapshot followed by more journal, as a store usually is.
    engine.compact().unwrap();
    engine
        .update_user(
            "user3",
            &UserPatch {
                nickname: Some("later".into()),
                ..Default::default()
            },
        )
        .unwrap();
    let stats = engine.backup_to(dir.join("b")).unwrap();
    assert_eq!(stats.users, 29);
    // Snapshot, journal, key file and 8 images.
    assert_eq!(stats.files, 11, "{stats:?}");
    check_copy(&engine, &dir.join("b"), &tokens);
    assert_eq!(names_in(&dir.0), ["b", "data"]);
    // The engine goes on after the journal switch, and its next open replays both journals.
    engine.create_user(NewUser::new("late", "l")).unwrap();
    let before = dump(&engine);
    drop(engine);
    assert_eq!(dump(&Engine::open(dir.join("data")).unwrap()), before);
}

#[test]
fn an_in_memory_engine_backs_up_into_a_data_directory() {
    let dir = TestDir::new("memory");
    let engine = Engine::in_memory().unwrap();
    let tokens = populate(&engine);
    let stats = engine.backup_to(dir.join("b")).unwrap();
    assert_eq!(stats.users, 29);
    assert_eq!(names_in(&dir.0), ["b"]);
    assert!(!dir.join("b/LOCK").exists());
    check_copy(&engine, &dir.join("b"), &tokens);
}

#[test]
fn a_salvage_engine_backs_up_what_it_loaded() {
    let dir = TestDir::new("salvage");
    let tokens = populate(&Engine::open(dir.join("data")).unwrap());
    let (salvage, damage) = Engine::open_salvage(dir.join("data")).unwrap();
    assert!(damage.is_none());
    salvage.backup_to(dir.join("b")).unwrap();
    check_copy(&salvage, &dir.join("b"), &tokens);
}

/// Runs a backup and returns its stats with every progress report it made.
fn backup_reporting(engine: &Engine, to: &Path) -> (tessera::BackupStats, Vec<(u64, u64)>) {
    let mut reports = Vec::new();
    let stats = engine
        .backup_to_with_progress(to, |p| reports.push((p.bytes_copied, p.bytes_expected)))
        .unwrap();
    // Never backwards, never past what is expected, and done at the end.
    for w in reports.windows(2) {
        assert!(w[0].0 <= w[1].0, "{reports:?}");
    }
    assert!(reports.iter().all(|&(c, e)| c <= e), "{reports:?}");
    let &(last, expected) = reports.last().expect("at least one report");
    assert_eq!(last, expected, "{reports:?}");
    (stats, reports)
}

#[test]
fn progress_is_reported_after_every_file_and_ends_at_what_was_expected() {
    let dir = TestDir::new("progress");
    let engine = Engine::open(dir.join("data")).unwrap();
    populate(&engine);
    engine.compact().unwrap();
    engine.create_user(NewUser::new("later", "l")).unwrap();
    let (stats, reports) = backup_reporting(&engine, &dir.join("b"));
    // A start, then the snapshot, the journal, the key file and 8 images, one report each.
    assert_eq!(reports.len(), 12, "{reports:?}");
    assert_eq!(reports[0].0, 0);
    assert_eq!(reports.last().unwrap().0, stats.bytes);
}

#[test]
fn an_intact_salvage_open_is_copied_file_by_file() {
    let dir = TestDir::new("salvage-files");
    let tokens = populate(&Engine::open(dir.join("data")).unwrap());
    let (salvage, damage) = Engine::open_salvage(dir.join("data")).unwrap();
    assert!(damage.is_none());
    let (_, reports) = backup_reporting(&salvage, &dir.join("b"));
    // File by file (a start and one report per file), not one import at the end.
    assert!(reports.len() > 2, "{reports:?}");
    // The source's journal itself, byte for byte: nothing was replayed into a new one.
    assert_eq!(
        std::fs::read(dir.join("b/journal-0000000000000001.tsj")).unwrap(),
        std::fs::read(dir.join("data/journal-0000000000000001.tsj")).unwrap()
    );
    check_copy(&salvage, &dir.join("b"), &tokens);
}

#[test]
fn a_salvage_open_that_stopped_at_damage_backs_up_what_it_loaded_not_the_files() {
    let dir = TestDir::new("salvage-damage");
    {
        let e = Engine::open(dir.join("data")).unwrap();
        // One durable batch per create, so damage in the middle leaves later batches behind.
        for u in 0..40 {
            e.create_user(NewUser::new(format!("u{u}").as_str(), "n"))
                .unwrap();
        }
    }
    let journal = dir.join("data/journal-0000000000000001.tsj");
    let mut bytes = std::fs::read(&journal).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&journal, &bytes).unwrap();
    let (salvage, damage) = Engine::open_salvage(dir.join("data")).unwrap();
    assert_eq!(damage.unwrap().kind(), ErrorKind::Corrupt);
    let loaded = salvage.user_count();
    assert!(loaded > 0 && loaded < 40, "{loaded}");
    let (stats, reports) = backup_reporting(&salvage, &dir.join("b"));
    assert_eq!(stats.users, loaded);
    // Copied through import_from: one report, at the end.
    assert_eq!(reports.len(), 1, "{reports:?}");
    // The copy is the loaded prefix, and intact: it opens read-write with nothing to cut.
    let copy = Engine::open(dir.join("b")).unwrap();
    assert_eq!(dump(&copy), dump(&salvage));
}

#[test]
fn a_target_that_exists_and_is_not_empty_is_refused_and_left_alone() {
    let dir = TestDir::new("targets");
    let engine = Engine::open(dir.join("data")).unwrap();
    engine.create_user(NewUser::new("a", "a")).unwrap();

    std::fs::write(dir.join("file"), b"mine").unwrap();
    std::fs::create_dir(dir.join("full")).unwrap();
    std::fs::write(dir.join("full/x"), b"mine").unwrap();
    #[cfg(unix)]
    {
        std::fs::create_dir(dir.join("empty-behind-link")).unwrap();
        std::os::unix::fs::symlink(dir.join("empty-behind-link"), dir.join("link")).unwrap();
    }
    let before = names_in(&dir.0);
    for bad in ["file", "full", "link", "data"] {
        let err = engine.backup_to(dir.join(bad)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{bad}: {err}");
    }
    for bad in ["", "/", ".."] {
        let err = engine.backup_to(bad).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{bad:?}: {err}");
    }
    assert_eq!(names_in(&dir.0), before);
    assert_eq!(std::fs::read(dir.join("file")).unwrap(), b"mine");
    assert_eq!(names_in(&dir.join("full")), ["x"]);

    // An empty directory is filled; a missing parent is created.
    std::fs::create_dir(dir.join("empty")).unwrap();
    engine.backup_to(dir.join("empty")).unwrap();
    engine.backup_to(dir.join("new/parent/b")).unwrap();
    for b in ["empty", "new/parent/b"] {
        assert_eq!(
            Engine::open(dir.join(b))
                .unwrap()
                .get_user("a")
                .unwrap()
                .nickname,
            "a"
        );
    }
    // Once written, a backup is no longer an empty target.
    let err = engine.backup_to(dir.join("empty")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
}

#[test]
fn a_target_filled_while_the_backup_runs_fails_it_and_nothing_is_left() {
    let dir = TestDir::new("race");
    let engine = Engine::open(dir.join("data")).unwrap();
    engine.create_user(NewUser::new("a", "a")).unwrap();
    let target = dir.join("b");
    std::fs::create_dir(&target).unwrap();
    tessera::fault::hold_backup_into(&target);
    let backup = {
        let (engine, target) = (engine.clone(), target.clone());
        std::thread::spawn(move || engine.backup_to(&target))
    };
    while tessera::fault::held_backups() == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    // The copy is complete, beside the target, under a name nothing opens.
    let tmp: Vec<String> = names_in(&dir.0)
        .into_iter()
        .filter(|n| n.starts_with(".b.backup-") && n.ends_with(".tmp"))
        .collect();
    assert_eq!(tmp.len(), 1);
    // Writers are not held by a backup.
    engine.create_user(NewUser::new("during", "d")).unwrap();
    std::fs::write(target.join("intruder"), b"x").unwrap();
    tessera::fault::release_backup_into(&target);
    let err = backup.join().unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert_eq!(names_in(&target), ["intruder"]);
    assert_eq!(names_in(&dir.0), ["b", "data"]);
}

const CRASH_CHILD_ENV: &str = "TESSERA_BACKUP_CRASH_CHILD";

/// The child of the crash test: starts a backup, holds it just before its rename, says so,
/// and waits to be killed.
#[test]
fn backup_crash_child() {
    let Ok(dir) = std::env::var(CRASH_CHILD_ENV) else {
        return; // a normal test run
    };
    let dir = PathBuf::from(dir);
    let engine = Engine::open(dir.join("data")).unwrap();
    let target = dir.join("b");
    tessera::fault::hold_backup_into(&target);
    let backup = {
        let engine = engine.clone();
        std::thread::spawn(move || engine.backup_to(&target))
    };
    while tessera::fault::held_backups() == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    println!("HELD");
    let _ = backup.join();
    unreachable!("the parent kills this process while the backup is held");
}

#[test]
fn a_crash_before_the_rename_leaves_no_backup_at_the_target() {
    let dir = TestDir::new("crash");
    {
        let engine = Engine::open(dir.join("data")).unwrap();
        populate(&engine);
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "backup_crash_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_CHILD_ENV, &dir.0)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&seen).contains("HELD") {
        let n = std::io::Read::read(&mut out, &mut buf).unwrap();
        assert!(n > 0, "the child ended without holding its backup");
        seen.extend_from_slice(&buf[..n]);
    }
    child.kill().unwrap(); // SIGKILL, the copy complete and synced, not yet renamed
    child.wait().unwrap();

    assert!(!dir.join("b").exists(), "a backup appeared at the target");
    // What is left is a hidden temporary directory, which can be deleted; the engine's own
    // directory is untouched and a new backup to the same target works.
    let left: Vec<String> = names_in(&dir.0);
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(
        left[0].starts_with(".b.backup-") && left[0].ends_with(".tmp"),
        "{left:?}"
    );
    let engine = Engine::open(dir.join("data")).unwrap();
    assert_eq!(engine.user_count(), 29);
    engine.backup_to(dir.join("b")).unwrap();
    assert_eq!(Engine::open(dir.join("b")).unwrap().user_count(), 29);
}
