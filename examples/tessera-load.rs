//! Load harness: drives a Tessera engine from T threads with a mixed workload and reports
//! throughput and p50/p99/p99.9 latency per operation (HDR histograms), plus resident memory
//! per user and per access token.
//!
//! ```text
//! cargo run --release --example tessera-load -- [OPTIONS]
//!
//!   --backend B              memory (default), durable (a new temporary directory),
//!                            durable:DIR (DIR must not exist), or c-abi (in memory, every
//!                            call through the tessera_* C functions); durable data is removed
//!                            at the end. Every durable write syncs: use --users in thousands
//!   --threads T              worker threads (default 2)
//!   --users N                users created before the run (default 1000000)
//!   --tokens-per-user K      access tokens issued to each user (default 3)
//!   --duration SECONDS       length of the mixed run (default 10)
//!   --mix OP=W,...           weights; ops: verify_session verify_access issue_session
//!                            issue_access create_user revoke_sessions
//!                            (default verify_session=60,verify_access=25,issue_session=5,
//!                             issue_access=4,create_user=3,revoke_sessions=3)
//!   --scaling                also run the verify-only part of the mix on 1 thread and on T
//!                            threads and print the throughput ratio
//!   --quick                  smoke mode: 10000 users, 1 s runs; finishes in seconds
//!   --scenario S             mix (default: the weighted mix above) or mixed-compaction:
//!                            a durable engine (the backend is durable whatever --backend
//!                            says, unless durable:DIR), one thread writing (create_user,
//!                            issue_access, revoke_access, revoke_sessions, each waiting for
//!                            its fdatasync), one thread verifying, and compactions forced in
//!                            a loop; writes during a compaction are reported apart from the
//!                            others, and verification is compared with an idle phase of the
//!                            same run (see `mixed_compaction` below)
//!   --idle SECONDS           mixed-compaction: length of the idle verify phase (default 5)
//!   --compact-gap SECONDS    mixed-compaction: pause between two compactions (default 0.5)
//!   --json PATH              mixed-compaction: also write the results as JSON to PATH
//!                            (default target/bench-load/mixed-compaction.json), which
//!                            scripts/bench-report.py judges against the issue-13 targets
//! ```
//!
//! Exits non-zero if an operation that must succeed fails (a sampled token stops verifying,
//! an issue or create is refused), so `--quick` doubles as a test.
//!
//! It is an example, not a `[[bin]]`, so its dependency (`hdrhistogram`) stays a
//! dev-dependency and never reaches the library's users.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tessera::{ffi, Engine, NewUser};

// ----- operations ------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    VerifySession,
    VerifyAccess,
    IssueSession,
    IssueAccess,
    CreateUser,
    RevokeSessions,
}

const OPS: [Op; 6] = [
    Op::VerifySession,
    Op::VerifyAccess,
    Op::IssueSession,
    Op::IssueAccess,
    Op::CreateUser,
    Op::RevokeSessions,
];

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::VerifySession => "verify_session",
            Op::VerifyAccess => "verify_access",
            Op::IssueSession => "issue_session",
            Op::IssueAccess => "issue_access",
            Op::CreateUser => "create_user",
            Op::RevokeSessions => "revoke_sessions",
        }
    }

    fn parse(s: &str) -> Option<Op> {
        OPS.into_iter().find(|op| op.name() == s)
    }

    fn is_read(self) -> bool {
        matches!(self, Op::VerifySession | Op::VerifyAccess)
    }
}

// ----- backends --------------------------------------------------------------------------

/// What the harness drives. A new backend (the durable store, the C ABI) is one more variant
/// here plus, if it is not an [`Engine`], one `impl Target`.
#[derive(Clone, Debug)]
enum Backend {
    /// `Engine::in_memory()`.
    Memory,
    /// `Engine::open(dir)`: every write is journaled and synced before it returns. The
    /// directory must not exist yet (the harness creates it and removes it at the end), so a
    /// run never touches real data.
    Durable(std::path::PathBuf),
    /// An in-memory engine driven through the C ABI (`tessera_*` functions), exactly as a C
    /// chat server calls it: same entry points, panic boundary, last-error handling and
    /// caller-owned output buffers.
    CAbi,
}

impl Backend {
    fn parse(s: &str) -> Result<Backend, String> {
        match s {
            "memory" => Ok(Backend::Memory),
            "c-abi" => Ok(Backend::CAbi),
            "durable" => Ok(Backend::Durable(
                std::env::temp_dir().join(format!("tessera-load-{}", std::process::id())),
            )),
            other => match other.strip_prefix("durable:") {
                Some(dir) => Ok(Backend::Durable(dir.into())),
                None => Err(format!(
                    "unknown backend {other:?} (known: memory, durable, durable:DIR, c-abi)"
                )),
            },
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Backend::Memory => "memory",
            Backend::Durable(_) => "durable",
            Backend::CAbi => "c-abi",
        }
    }

    fn open(&self) -> Result<Box<dyn Target>, String> {
        match self {
            Backend::Memory => Ok(Box::new(Engine::in_memory().map_err(|e| e.to_string())?)),
            Backend::Durable(dir) => {
                if dir.exists() {
                    return Err(format!("{} exists; give a new directory", dir.display()));
                }
                Ok(Box::new(Engine::open(dir).map_err(|e| e.to_string())?))
            }
            Backend::CAbi => Ok(Box::new(CAbi::open()?)),
        }
    }

    /// Removes what `open` created.
    fn clean_up(&self) {
        if let Backend::Durable(dir) = self {
            if let Err(e) = std::fs::remove_dir_all(dir) {
                eprintln!("tessera-load: could not remove {}: {e}", dir.display());
            }
        }
    }
}

/// The calls the harness times. Each returns whether it succeeded; tokens come back as text.
trait Target: Send + Sync {
    fn create_user(&self, id: &str) -> bool;
    fn issue_access(&self, id: &str) -> Option<String>;
    fn issue_session(&self, id: &str) -> Option<String>;
    fn verify_access(&self, token: &str) -> bool;
    fn verify_session(&self, token: &str) -> bool;
    fn revoke_sessions(&self, id: &str) -> bool;
}

impl Target for Engine {
    fn create_user(&self, id: &str) -> bool {
        Engine::create_user(self, NewUser::new(id, "n")).is_ok()
    }
    fn issue_access(&self, id: &str) -> Option<String> {
        self.issue_access_token(id, None)
            .ok()
            .map(|t| t.token.as_str().to_owned())
    }
    fn issue_session(&self, id: &str) -> Option<String> {
        self.issue_session_token(id, None)
            .ok()
            .map(|t| t.as_str().to_owned())
    }
    fn verify_access(&self, token: &str) -> bool {
        self.verify_access_token(token).is_ok()
    }
    fn verify_session(&self, token: &str) -> bool {
        self.verify_session_token(token).is_ok()
    }
    fn revoke_sessions(&self, id: &str) -> bool {
        Engine::revoke_sessions(self, id).is_ok()
    }
}

/// An engine handle owned through the C ABI.
struct CAbi(*mut ffi::tessera_engine);

// SAFETY: the header documents `const tessera_engine *` as safe to use from many threads at
// once, and the handle is freed only in Drop, after every thread has finished.
unsafe impl Send for CAbi {}
unsafe impl Sync for CAbi {}

impl CAbi {
    fn open() -> Result<CAbi, String> {
        let mut e = std::ptr::null_mut();
        // SAFETY: `e` is a valid out-pointer.
        match unsafe { ffi::tessera_engine_open_in_memory(&mut e) } {
            ffi::tessera_status::TESSERA_OK => Ok(CAbi(e)),
            s => Err(format!("tessera_engine_open_in_memory: {s:?}")),
        }
    }

    fn ok(s: ffi::tessera_status) -> bool {
        s == ffi::tessera_status::TESSERA_OK
    }
}

impl Drop for CAbi {
    fn drop(&mut self) {
        // SAFETY: the handle came from tessera_engine_open_in_memory and is freed once.
        unsafe { ffi::tessera_engine_free(self.0) }
    }
}

fn c(s: &str) -> *const std::os::raw::c_char {
    s.as_ptr().cast()
}

impl Target for CAbi {
    fn create_user(&self, id: &str) -> bool {
        let json = format!(r#"{{"user_id":"{id}","nickname":"n"}}"#);
        let mut out = std::ptr::null_mut();
        // SAFETY: input valid for its length; `out` a valid out-pointer, freed below.
        let ok =
            Self::ok(unsafe { ffi::tessera_user_create(self.0, c(&json), json.len(), &mut out) });
        // SAFETY: `out` is NULL or a string this library returned.
        unsafe { ffi::tessera_string_free(out) };
        ok
    }
    fn issue_access(&self, id: &str) -> Option<String> {
        let mut buf = [0u8; ffi::TESSERA_ACCESS_TOKEN_LEN + 1];
        let mut evicted = [0u64; ffi::TESSERA_ACCESS_TOKENS_PER_USER_MAX];
        let (mut len, mut token_id, mut n_evicted) = (0usize, 0u64, 0usize);
        // SAFETY: every pointer is valid for the length given with it.
        let s = unsafe {
            ffi::tessera_access_token_issue(
                self.0,
                c(id),
                id.len(),
                std::ptr::null(),
                0,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut len,
                &mut token_id,
                evicted.as_mut_ptr(),
                evicted.len(),
                &mut n_evicted,
            )
        };
        Self::ok(s).then(|| String::from_utf8_lossy(&buf[..len]).into_owned())
    }
    fn issue_session(&self, id: &str) -> Option<String> {
        let mut buf = [0u8; tessera::SESSION_TOKEN_MAX_LEN + 1];
        let (mut len, mut exp) = (0usize, 0i64);
        // SAFETY: every pointer is valid for the length given with it.
        let s = unsafe {
            ffi::tessera_session_token_issue_default(
                self.0,
                c(id),
                id.len(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut len,
                &mut exp,
            )
        };
        Self::ok(s).then(|| String::from_utf8_lossy(&buf[..len]).into_owned())
    }
    fn verify_access(&self, token: &str) -> bool {
        let mut out = std::mem::MaybeUninit::<ffi::tessera_verified_access_token>::uninit();
        // SAFETY: token valid for its length; `out` valid for one write.
        Self::ok(unsafe {
            ffi::tessera_access_token_verify(self.0, c(token), token.len(), out.as_mut_ptr())
        })
    }
    fn verify_session(&self, token: &str) -> bool {
        let mut out = std::mem::MaybeUninit::<ffi::tessera_verified_session>::uninit();
        // SAFETY: token valid for its length; `out` valid for one write.
        Self::ok(unsafe {
            ffi::tessera_session_token_verify(self.0, c(token), token.len(), out.as_mut_ptr())
        })
    }
    fn revoke_sessions(&self, id: &str) -> bool {
        // SAFETY: id valid for its length.
        Self::ok(unsafe { ffi::tessera_session_token_revoke(self.0, c(id), id.len()) })
    }
}

// ----- options ---------------------------------------------------------------------------

/// What the run does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scenario {
    /// T threads drawing from the weighted mix.
    Mix,
    /// Verify latency and write latency while compactions run (issue 13).
    MixedCompaction,
}

#[derive(Clone, Debug)]
struct Options {
    scenario: Scenario,
    backend: Backend,
    threads: usize,
    users: usize,
    tokens_per_user: usize,
    duration: Duration,
    mix: [u32; OPS.len()],
    scaling: bool,
    quick: bool,
    idle: Duration,
    compact_gap: Duration,
    json: Option<std::path::PathBuf>,
}

const USAGE: &str =
    "usage: tessera-load [--backend memory|durable|durable:DIR|c-abi] [--threads T] [--users N] \
[--tokens-per-user K] [--duration SECONDS] [--mix op=weight,...] [--scaling] [--quick] \
[--scenario mix|mixed-compaction] [--idle SECONDS] [--compact-gap SECONDS] [--json PATH]";

fn parse_args() -> Result<Options, String> {
    let mut o = Options {
        scenario: Scenario::Mix,
        backend: Backend::Memory,
        threads: 2,
        users: 1_000_000,
        tokens_per_user: 3,
        duration: Duration::from_secs(10),
        mix: [60, 25, 5, 4, 3, 3],
        scaling: false,
        quick: false,
        idle: Duration::from_secs(5),
        compact_gap: Duration::from_millis(500),
        json: None,
    };
    let (mut users, mut duration, mut idle) = (None, None, None);
    let mut backend_given = false;
    let seconds = |name: &str, v: String| -> Result<Duration, String> {
        let s: f64 = v.parse().map_err(|e| format!("{name}: {e}"))?;
        Duration::try_from_secs_f64(s).map_err(|e| format!("{name}: {e}"))
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--backend" => {
                o.backend = Backend::parse(&value("--backend")?)?;
                backend_given = true;
            }
            "--scenario" => {
                o.scenario = match value("--scenario")?.as_str() {
                    "mix" => Scenario::Mix,
                    "mixed-compaction" => Scenario::MixedCompaction,
                    other => return Err(format!("unknown scenario {other:?}\n{USAGE}")),
                }
            }
            "--idle" => idle = Some(seconds("--idle", value("--idle")?)?),
            "--compact-gap" => o.compact_gap = seconds("--compact-gap", value("--compact-gap")?)?,
            "--json" => o.json = Some(value("--json")?.into()),
            "--threads" => o.threads = num(&value("--threads")?)?,
            "--users" => users = Some(num(&value("--users")?)?),
            "--tokens-per-user" => o.tokens_per_user = num(&value("--tokens-per-user")?)?,
            "--duration" => {
                let s: f64 = value("--duration")?
                    .parse()
                    .map_err(|e| format!("--duration: {e}"))?;
                duration = Some(Duration::from_secs_f64(s));
            }
            "--mix" => o.mix = parse_mix(&value("--mix")?)?,
            "--scaling" => o.scaling = true,
            "--quick" => o.quick = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if o.quick {
        o.users = 10_000;
        o.duration = Duration::from_secs(1);
        o.idle = Duration::from_millis(500);
    }
    o.users = users.unwrap_or(o.users);
    o.duration = duration.unwrap_or(o.duration);
    o.idle = idle.unwrap_or(o.idle);
    if o.scenario == Scenario::MixedCompaction {
        if !matches!(o.backend, Backend::Durable(_)) {
            if backend_given && !matches!(o.backend, Backend::Memory) {
                return Err("--scenario mixed-compaction needs a durable backend".into());
            }
            o.backend = Backend::parse("durable")?;
        }
        if o.json.is_none() {
            o.json = Some(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("target/bench-load/mixed-compaction.json"),
            );
        }
    }
    if o.threads == 0 || o.users < 2 || o.mix.iter().all(|&w| w == 0) {
        return Err("need at least 1 thread, 2 users and one non-zero weight".into());
    }
    Ok(o)
}

fn num(s: &str) -> Result<usize, String> {
    s.replace('_', "")
        .parse()
        .map_err(|e| format!("{s:?}: {e}"))
}

fn parse_mix(s: &str) -> Result<[u32; OPS.len()], String> {
    let mut mix = [0; OPS.len()];
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let (name, w) = part
            .split_once('=')
            .ok_or(format!("--mix: {part:?} is not op=weight"))?;
        let op = Op::parse(name).ok_or(format!("--mix: unknown op {name:?}"))?;
        let i = OPS.iter().position(|&o| o == op).expect("listed");
        mix[i] = w.parse().map_err(|e| format!("--mix {name}: {e}"))?;
    }
    Ok(mix)
}

// ----- measurement helpers ---------------------------------------------------------------

/// Resident set size in bytes, from /proc/self/status (Linux); `None` elsewhere.
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// CPU time this process has used (user + system), from /proc/self/stat, in seconds.
/// Clock ticks are taken as 100 Hz, the value on every Linux/x86-64 and arm64 build.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// SplitMix64: each worker's own generator, so choosing an op shares nothing.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A progress bar on stderr: redrawn in place on a terminal, a line per quarter otherwise
/// (so CI logs stay short).
struct Progress {
    label: &'static str,
    tty: bool,
    last_quarter: u32,
}

impl Progress {
    fn new(label: &'static str) -> Progress {
        Progress {
            label,
            tty: std::io::stderr().is_terminal(),
            last_quarter: 0,
        }
    }

    fn show(&mut self, fraction: f64, detail: &str) {
        let fraction = fraction.clamp(0.0, 1.0);
        if self.tty {
            let filled = (fraction * 30.0) as usize;
            eprint!(
                "\r{:<10} [{}{}] {:>3.0}% {detail}   ",
                self.label,
                "#".repeat(filled),
                "-".repeat(30 - filled),
                fraction * 100.0
            );
            let _ = std::io::stderr().flush();
        } else {
            let q = (fraction * 4.0) as u32;
            if q > self.last_quarter {
                self.last_quarter = q;
                eprintln!("{:<10} {:>3.0}% {detail}", self.label, fraction * 100.0);
            }
        }
    }

    fn done(&mut self, detail: &str) {
        self.show(1.0, detail);
        if self.tty {
            eprintln!();
        }
    }
}

fn user_id(i: usize) -> String {
    format!("user{i:07}")
}

// ----- population ------------------------------------------------------------------------

struct World {
    target: Box<dyn Target>,
    users: usize,
    /// Users `0..sample` are only ever read (their tokens must keep verifying); writes go to
    /// users `sample..users` and to new ids.
    sample: usize,
    session_tokens: Vec<String>,
    access_tokens: Vec<[u8; 65]>,
    bytes_per_user: Option<f64>,
    bytes_per_token: Option<f64>,
}

fn populate(o: &Options) -> Result<World, String> {
    let target = o.backend.open()?;
    let sample = o.users.min(65_536) / 2;
    // Preallocated and written before the first RSS reading, so keeping the sample does not
    // count as per-token memory.
    let mut access_tokens = vec![[b'x'; 65]; sample];
    let rss0 = rss_bytes();
    let started = Instant::now();
    let mut bar = Progress::new("users");
    for i in 0..o.users {
        if !target.create_user(&user_id(i)) {
            return Err(format!("creating user {i} failed"));
        }
        if i & 8191 == 0 {
            bar.show(i as f64 / o.users as f64, "");
        }
    }
    bar.done(&format!("{} users in {:.1?}", o.users, started.elapsed()));
    let rss1 = rss_bytes();
    let started = Instant::now();
    let mut bar = Progress::new("tokens");
    for i in 0..o.users {
        let id = user_id(i);
        for k in 0..o.tokens_per_user {
            let t = target
                .issue_access(&id)
                .ok_or(format!("issuing a token to user {i} failed"))?;
            if let (0, Some(slot)) = (k, access_tokens.get_mut(i)) {
                slot.copy_from_slice(t.as_bytes());
            }
        }
        if i & 8191 == 0 {
            bar.show(i as f64 / o.users as f64, "");
        }
    }
    bar.done(&format!(
        "{} access tokens in {:.1?}",
        o.users * o.tokens_per_user,
        started.elapsed()
    ));
    let rss2 = rss_bytes();
    let mut session_tokens = Vec::with_capacity(sample);
    for i in 0..sample {
        session_tokens.push(
            target
                .issue_session(&user_id(i))
                .ok_or(format!("issuing a session to user {i} failed"))?,
        );
    }
    let per = |a: Option<u64>, b: Option<u64>, n: usize| match (a, b) {
        (Some(a), Some(b)) if n > 0 => Some(b.saturating_sub(a) as f64 / n as f64),
        _ => None,
    };
    Ok(World {
        target,
        users: o.users,
        sample,
        session_tokens,
        access_tokens,
        bytes_per_user: per(rss0, rss1, o.users),
        bytes_per_token: per(rss1, rss2, o.users * o.tokens_per_user),
    })
}

// ----- the run ---------------------------------------------------------------------------

struct Tally {
    hist: Vec<Histogram<u64>>,
    errors: [u64; OPS.len()],
}

impl Tally {
    fn new() -> Tally {
        Tally {
            // 1 ns .. 100 s at 3 significant digits.
            hist: OPS
                .iter()
                .map(|_| Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("bounds"))
                .collect(),
            errors: [0; OPS.len()],
        }
    }

    fn merge(&mut self, other: &Tally) {
        for (a, b) in self.hist.iter_mut().zip(&other.hist) {
            a.add(b).expect("same bounds");
        }
        for (a, b) in self.errors.iter_mut().zip(other.errors) {
            *a += b;
        }
    }

    fn count(&self) -> u64 {
        self.hist.iter().map(|h| h.len()).sum()
    }
}

fn run(
    world: &World,
    threads: usize,
    mix: &[u32; OPS.len()],
    duration: Duration,
) -> (Tally, Duration) {
    let total_weight: u32 = mix.iter().sum();
    let stop = AtomicBool::new(false);
    let done = AtomicU64::new(0);
    let created = AtomicU64::new(0);
    let barrier = Barrier::new(threads + 1);
    let mut tally = Tally::new();
    let mut elapsed = Duration::ZERO;
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (stop, done, created, barrier) = (&stop, &done, &created, &barrier);
                s.spawn(move || {
                    let mut rng = Rng(0x5EED ^ (t as u64) << 32);
                    let mut tally = Tally::new();
                    let mut local = 0u64;
                    barrier.wait();
                    while !stop.load(Ordering::Relaxed) {
                        let mut pick = (rng.next() % u64::from(total_weight)) as u32;
                        let i = mix
                            .iter()
                            .position(|&w| {
                                if pick < w {
                                    true
                                } else {
                                    pick -= w;
                                    false
                                }
                            })
                            .expect("weights add up");
                        // Inputs are chosen before the clock starts.
                        let ok = match OPS[i] {
                            Op::VerifySession => {
                                let tok = &world.session_tokens[rng.below(world.sample)];
                                timed(&mut tally, i, || world.target.verify_session(tok))
                            }
                            Op::VerifyAccess => {
                                let tok = &world.access_tokens[rng.below(world.sample)];
                                let tok = std::str::from_utf8(tok).expect("ascii");
                                timed(&mut tally, i, || world.target.verify_access(tok))
                            }
                            Op::IssueSession => {
                                let id = user_id(rng.below(world.users));
                                timed(&mut tally, i, || world.target.issue_session(&id).is_some())
                            }
                            Op::IssueAccess => {
                                let id =
                                    user_id(world.sample + rng.below(world.users - world.sample));
                                timed(&mut tally, i, || world.target.issue_access(&id).is_some())
                            }
                            Op::CreateUser => {
                                let n = created.fetch_add(1, Ordering::Relaxed);
                                let id = format!("load-{n}");
                                timed(&mut tally, i, || world.target.create_user(&id))
                            }
                            Op::RevokeSessions => {
                                let id =
                                    user_id(world.sample + rng.below(world.users - world.sample));
                                timed(&mut tally, i, || world.target.revoke_sessions(&id))
                            }
                        };
                        if !ok {
                            tally.errors[i] += 1;
                        }
                        local += 1;
                        if local & 4095 == 0 {
                            done.fetch_add(4096, Ordering::Relaxed);
                        }
                    }
                    tally
                })
            })
            .collect();

        barrier.wait();
        let start = Instant::now();
        let mut bar = Progress::new(if threads == 1 { "run x1" } else { "run" });
        loop {
            let e = start.elapsed();
            if e >= duration {
                break;
            }
            let ops = done.load(Ordering::Relaxed);
            bar.show(
                e.as_secs_f64() / duration.as_secs_f64(),
                &format!(
                    "{:.1}/{:.1} s  {} ops  {:.0} k ops/s",
                    e.as_secs_f64(),
                    duration.as_secs_f64(),
                    ops,
                    ops as f64 / e.as_secs_f64().max(1e-9) / 1e3
                ),
            );
            std::thread::sleep((duration - e).min(Duration::from_millis(200)));
        }
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            tally.merge(&w.join().expect("worker panicked"));
        }
        elapsed = start.elapsed();
        bar.done(&format!("{} ops in {:.2?}", tally.count(), elapsed));
    });
    (tally, elapsed)
}

#[inline(always)]
fn timed(tally: &mut Tally, i: usize, f: impl FnOnce() -> bool) -> bool {
    let t0 = Instant::now();
    let ok = f();
    let ns = t0.elapsed().as_nanos() as u64;
    tally.hist[i].saturating_record(ns.max(1));
    ok
}

fn us(ns: u64) -> String {
    format!("{:.2}", ns as f64 / 1e3)
}

fn report(tally: &Tally, elapsed: Duration) {
    println!(
        "{:<16} {:>10} {:>12} {:>9} {:>9} {:>9} {:>9} {:>7}",
        "op", "count", "ops/s", "p50 µs", "p99 µs", "p99.9 µs", "max µs", "errors"
    );
    for (i, op) in OPS.iter().enumerate() {
        let h = &tally.hist[i];
        if h.is_empty() {
            continue;
        }
        println!(
            "{:<16} {:>10} {:>12.0} {:>9} {:>9} {:>9} {:>9} {:>7}",
            op.name(),
            h.len(),
            h.len() as f64 / elapsed.as_secs_f64(),
            us(h.value_at_quantile(0.5)),
            us(h.value_at_quantile(0.99)),
            us(h.value_at_quantile(0.999)),
            us(h.max()),
            tally.errors[i]
        );
    }
    println!(
        "{:<16} {:>10} {:>12.0}",
        "total",
        tally.count(),
        tally.count() as f64 / elapsed.as_secs_f64()
    );
}

fn main() {
    let o = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("tessera-load: {e}");
            std::process::exit(2);
        }
    };
    if o.scenario == Scenario::MixedCompaction {
        let outcome = mixed_compaction::run(&o);
        o.backend.clean_up();
        match outcome {
            Ok(true) => return,
            Ok(false) => eprintln!("tessera-load: FAILED (errors above)"),
            Err(e) => eprintln!("tessera-load: {e}"),
        }
        std::process::exit(1);
    }
    let world = match populate(&o) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("tessera-load: {e}");
            o.backend.clean_up();
            std::process::exit(1);
        }
    };
    let mix_text: Vec<String> = OPS
        .iter()
        .zip(o.mix)
        .filter(|(_, w)| *w > 0)
        .map(|(op, w)| format!("{}={w}", op.name()))
        .collect();
    println!(
        "tessera-load: backend={} threads={} users={} tokens/user={} duration={:.1?} mix={}",
        o.backend.name(),
        o.threads,
        o.users,
        o.tokens_per_user,
        o.duration,
        mix_text.join(",")
    );
    let fmt = |b: Option<f64>| b.map_or("n/a".to_owned(), |b| format!("{b:.0}"));
    println!(
        "memory: {} B resident per minimal user, {} B per access token (RSS deltas over {} users, {} tokens)",
        fmt(world.bytes_per_user),
        fmt(world.bytes_per_token),
        o.users,
        o.users * o.tokens_per_user
    );

    let (tally, elapsed) = run(&world, o.threads, &o.mix, o.duration);
    report(&tally, elapsed);
    let mut failed = tally.errors.iter().sum::<u64>() > 0 || tally.count() == 0;

    if o.scaling {
        let mut reads = o.mix;
        for (w, op) in reads.iter_mut().zip(OPS) {
            if !op.is_read() {
                *w = 0;
            }
        }
        if reads.iter().all(|&w| w == 0) {
            reads = [50, 50, 0, 0, 0, 0];
        }
        let c0 = cpu_seconds();
        let (t1, e1) = run(&world, 1, &reads, o.duration);
        let c1 = cpu_seconds();
        let (tn, en) = run(&world, o.threads, &reads, o.duration);
        let c2 = cpu_seconds();
        let r1 = t1.count() as f64 / e1.as_secs_f64();
        let rn = tn.count() as f64 / en.as_secs_f64();
        println!(
            "scaling (verify only): 1 thread {r1:.0} ops/s, {} threads {rn:.0} ops/s, ratio {:.2}x",
            o.threads,
            rn / r1
        );
        // On a shared machine the wall-clock ratio mostly says how much CPU we were given.
        // Operations per CPU-second tell whether the read path itself slows down when
        // threads run together (shared cache lines written), independent of that.
        if let (Some(c0), Some(c1), Some(c2)) = (c0, c1, c2) {
            let (cpu1, cpun) = (c1 - c0, c2 - c1);
            if cpu1 > 0.0 && cpun > 0.0 {
                let (p1, pn) = (t1.count() as f64 / cpu1, tn.count() as f64 / cpun);
                println!(
                    "  CPU used: {cpu1:.2} s vs {cpun:.2} s ({:.2} vs {:.2} cores); ops per CPU-second \
                     {p1:.0} vs {pn:.0}: per-core efficiency {:.2} (1.00 = no contention)",
                    cpu1 / e1.as_secs_f64(),
                    cpun / en.as_secs_f64(),
                    pn / p1
                );
            }
        }
        failed |= t1.errors.iter().chain(&tn.errors).sum::<u64>() > 0;
    }
    drop(world);
    o.backend.clean_up();
    if failed {
        eprintln!("tessera-load: FAILED (errors above, or no operation ran)");
        std::process::exit(1);
    }
}

// ----- scenario: writes and verification while compactions run (issue 13) ---------------

/// `--scenario mixed-compaction`. The state is built in memory and moved into the durable
/// engine with one `import_from` (one sync instead of one per write), then compacted once.
/// Phase 1 (idle): one thread verifies session and access tokens, alternately, for `--idle`.
/// Phase 2 (load), for `--duration`: the same verifier; one writer thread cycling through
/// create_user, issue_access, revoke_access and revoke_sessions (each a durable write that
/// waits for its `fdatasync`); and one thread running `compact()` in a loop with
/// `--compact-gap` between compactions. A write that overlapped a compaction, even partly, is
/// counted "during compaction", the others "outside". Targets (issue 13): write p99.9 during
/// compaction ≤ 20 ms; verify p99.9 under that load ≤ 3× the idle p50 of the same run.
mod mixed_compaction {
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    /// Write p99.9 during compaction must stay at or under this (ns).
    pub(super) const WRITE_P999_DURING_COMPACTION_NS: u64 = 20_000_000;
    /// Verify p99.9 under load must stay at or under this multiple of the idle p50.
    pub(super) const VERIFY_P999_OVER_IDLE_P50: f64 = 3.0;

    const WRITES: [&str; 4] = [
        "create_user",
        "issue_access",
        "revoke_access",
        "revoke_sessions",
    ];

    fn hist() -> Histogram<u64> {
        Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("bounds")
    }

    /// Latencies and failures of one named operation.
    struct Series {
        hist: Histogram<u64>,
        errors: u64,
    }

    impl Series {
        fn new() -> Series {
            Series {
                hist: hist(),
                errors: 0,
            }
        }
        fn record(&mut self, t0: Instant, ok: bool) {
            self.record_ns(t0.elapsed(), ok);
        }
        fn record_ns(&mut self, took: Duration, ok: bool) {
            let ns = took.as_nanos() as u64;
            self.hist.saturating_record(ns.max(1));
            if !ok {
                self.errors += 1;
            }
        }
    }

    /// Every series by name ("idle/verify_session", "during_compaction/create_user", …).
    #[derive(Default)]
    struct Results(BTreeMap<String, Series>);

    impl Results {
        fn get(&mut self, name: &str) -> &mut Series {
            self.0.entry(name.to_owned()).or_insert_with(Series::new)
        }
        fn absorb(&mut self, other: Results) {
            for (name, s) in other.0 {
                let mine = self.get(&name);
                mine.hist.add(&s.hist).expect("same bounds");
                mine.errors += s.errors;
            }
        }
    }

    struct Population {
        engine: Engine,
        users: usize,
        sample: usize,
        session_tokens: Vec<String>,
        access_tokens: Vec<String>,
    }

    fn populate(o: &Options) -> Result<Population, String> {
        let Backend::Durable(dir) = &o.backend else {
            return Err("mixed-compaction needs a durable backend".into());
        };
        if dir.exists() {
            return Err(format!("{} exists; give a new directory", dir.display()));
        }
        let e = |e: tessera::Error| e.to_string();
        let memory = Engine::in_memory().map_err(e)?;
        let sample = o.users.min(65_536) / 2;
        let mut access_tokens = Vec::with_capacity(sample);
        let mut session_tokens = Vec::with_capacity(sample);
        let started = Instant::now();
        let mut bar = Progress::new("users");
        for i in 0..o.users {
            let id = user_id(i);
            memory
                .create_user(NewUser::new(id.as_str(), "n"))
                .map_err(e)?;
            for k in 0..o.tokens_per_user {
                let t = memory.issue_access_token(&id, None).map_err(e)?;
                if k == 0 && i < sample {
                    access_tokens.push(t.token.as_str().to_owned());
                }
            }
            if i < sample {
                let t = memory.issue_session_token(&id, None).map_err(e)?;
                session_tokens.push(t.as_str().to_owned());
            }
            if i & 8191 == 0 {
                bar.show(i as f64 / o.users as f64, "");
            }
        }
        bar.done(&format!(
            "{} users, {} access tokens in memory in {:.1?}",
            o.users,
            o.users * o.tokens_per_user,
            started.elapsed()
        ));
        let engine = Engine::open(dir).map_err(e)?;
        let t = Instant::now();
        engine.import_from(&memory).map_err(e)?;
        drop(memory);
        println!(
            "imported into the durable engine in {:.2} s",
            t.elapsed().as_secs_f64()
        );
        let t = Instant::now();
        engine.compact().map_err(e)?;
        println!(
            "compact() at {} users, nothing else running: {:.2} s",
            o.users,
            t.elapsed().as_secs_f64()
        );
        if access_tokens.is_empty() {
            return Err("--tokens-per-user must be at least 1".into());
        }
        Ok(Population {
            engine,
            users: o.users,
            sample,
            session_tokens,
            access_tokens,
        })
    }

    /// Verifies sampled tokens, alternating session and access, until `stop`. With
    /// `compaction` (the load phase), each verify is also counted as during or outside a
    /// compaction, like the writes.
    fn verifier(
        p: &Population,
        phase: &str,
        stop: &AtomicBool,
        compaction: Option<&AtomicU64>,
    ) -> Results {
        let mut out = Results::default();
        // [all, during, outside] for session, then the same for access.
        let mut series: Vec<Series> = (0..6).map(|_| Series::new()).collect();
        let mut rng = Rng(0x5EED_0001);
        while !stop.load(Ordering::Relaxed) {
            for access in [false, true] {
                let p0 = compaction.map(|c| c.load(Ordering::Acquire));
                let t0 = Instant::now();
                let ok = if access {
                    let tok = &p.access_tokens[rng.below(p.access_tokens.len())];
                    p.engine.verify_access_token(tok).is_ok()
                } else {
                    let tok = &p.session_tokens[rng.below(p.session_tokens.len())];
                    p.engine.verify_session_token(tok).is_ok()
                };
                let took = t0.elapsed();
                let k = usize::from(access) * 3;
                series[k].record_ns(took, ok);
                if let (Some(p0), Some(c)) = (p0, compaction) {
                    let during = compacting(p0) || c.load(Ordering::Acquire) != p0;
                    series[k + if during { 1 } else { 2 }].record_ns(took, ok);
                }
            }
        }
        let names = [
            format!("{phase}/verify_session"),
            format!("{phase}_during_compaction/verify_session"),
            format!("{phase}_outside_compaction/verify_session"),
            format!("{phase}/verify_access"),
            format!("{phase}_during_compaction/verify_access"),
            format!("{phase}_outside_compaction/verify_access"),
        ];
        for (name, s) in names.into_iter().zip(series) {
            if !s.hist.is_empty() {
                out.0.insert(name, s);
            }
        }
        out
    }

    /// Odd while a compaction runs; bumped at its start and at its end.
    fn compacting(phase: u64) -> bool {
        phase % 2 == 1
    }

    /// One thread writing: every write waits for its own `fdatasync`.
    fn writer(p: &Population, stop: &AtomicBool, phase: &AtomicU64) -> Results {
        let mut out = Results::default();
        let mut rng = Rng(0x5EED_0002);
        let mut issued: Vec<(String, u64)> = Vec::new();
        let mut created = 0u64;
        let mut n = 0usize;
        while !stop.load(Ordering::Relaxed) {
            let mut op = n % WRITES.len();
            n += 1;
            if op == 2 && issued.is_empty() {
                op = 1;
            }
            // Inputs are chosen before the clock starts; writes go to users outside the
            // verified sample, so every verify must succeed.
            let someone = user_id(p.sample + rng.below(p.users - p.sample));
            let p0 = phase.load(Ordering::Acquire);
            let t0 = Instant::now();
            let ok = match op {
                0 => {
                    created += 1;
                    let id = format!("load-{created}");
                    p.engine.create_user(NewUser::new(id, "n")).is_ok()
                }
                1 => match p.engine.issue_access_token(&someone, None) {
                    Ok(t) => {
                        issued.push((someone, t.info.id));
                        true
                    }
                    Err(_) => false,
                },
                2 => {
                    let (id, token) = issued.pop().expect("checked above");
                    p.engine.revoke_access_token(&id, token).is_ok()
                }
                _ => p.engine.revoke_sessions(&someone).is_ok(),
            };
            let p1 = phase.load(Ordering::Acquire);
            let when = if compacting(p0) || p1 != p0 {
                "during_compaction"
            } else {
                "outside_compaction"
            };
            out.get(&format!("{when}/{}", WRITES[op])).record(t0, ok);
            out.get(&format!("{when}/all_writes")).record(t0, ok);
        }
        out
    }

    fn loadavg() -> String {
        std::fs::read_to_string("/proc/loadavg")
            .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|_| "n/a".into())
    }

    fn ms(ns: u64) -> f64 {
        ns as f64 / 1e6
    }

    pub(super) fn run(o: &Options) -> Result<bool, String> {
        let p = populate(o)?;
        let load_before = loadavg();
        println!(
            "tessera-load: scenario=mixed-compaction backend=durable users={} tokens/user={} \
             idle={:.1?} duration={:.1?} compact-gap={:.1?} load average {load_before}",
            o.users, o.tokens_per_user, o.idle, o.duration, o.compact_gap
        );
        let mut results = Results::default();

        // Phase 1: the verifier alone.
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            let v = s.spawn(|| verifier(&p, "idle", &stop, None));
            std::thread::sleep(o.idle);
            stop.store(true, Ordering::Relaxed);
            results.absorb(v.join().expect("verifier panicked"));
        });

        // Phase 2: verifier, writer and compactions together.
        let stop = AtomicBool::new(false);
        let phase = AtomicU64::new(0);
        let compactions: Mutex<Vec<Duration>> = Mutex::new(Vec::new());
        let compaction_errors = AtomicU64::new(0);
        let started = Instant::now();
        std::thread::scope(|s| {
            let v = s.spawn(|| verifier(&p, "load", &stop, Some(&phase)));
            let w = s.spawn(|| writer(&p, &stop, &phase));
            let c = s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    phase.fetch_add(1, Ordering::AcqRel);
                    let t0 = Instant::now();
                    let r = p.engine.compact();
                    let took = t0.elapsed();
                    phase.fetch_add(1, Ordering::AcqRel);
                    match r {
                        Ok(()) => compactions.lock().expect("no panic").push(took),
                        Err(e) => {
                            eprintln!("compact: {e}");
                            compaction_errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    let until = Instant::now() + o.compact_gap;
                    while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
            });
            let mut bar = Progress::new("load");
            while started.elapsed() < o.duration {
                let done = compactions.lock().expect("no panic").len();
                bar.show(
                    started.elapsed().as_secs_f64() / o.duration.as_secs_f64(),
                    &format!("{done} compactions"),
                );
                std::thread::sleep(Duration::from_millis(200).min(o.duration));
            }
            stop.store(true, Ordering::Relaxed);
            results.absorb(v.join().expect("verifier panicked"));
            results.absorb(w.join().expect("writer panicked"));
            c.join().expect("compactor panicked");
            bar.done("");
        });
        let load_after = loadavg();
        let compactions = compactions.into_inner().expect("no panic");

        println!(
            "{:<44} {:>8} {:>10} {:>10} {:>10} {:>10} {:>7}",
            "phase/op", "count", "p50 µs", "p99 µs", "p99.9 µs", "max µs", "errors"
        );
        for (name, s) in &results.0 {
            let h = &s.hist;
            println!(
                "{name:<44} {:>8} {:>10} {:>10} {:>10} {:>10} {:>7}",
                h.len(),
                us(h.value_at_quantile(0.5)),
                us(h.value_at_quantile(0.99)),
                us(h.value_at_quantile(0.999)),
                us(h.max()),
                s.errors
            );
        }
        let mut sorted = compactions.clone();
        sorted.sort();
        let median = sorted.get(sorted.len() / 2).copied().unwrap_or_default();
        let longest = sorted.last().copied().unwrap_or_default();
        println!(
            "compactions under load: {} (median {:.2} s, longest {:.2} s), {} failed; load \
             average {load_before} before, {load_after} after",
            compactions.len(),
            median.as_secs_f64(),
            longest.as_secs_f64(),
            compaction_errors.load(Ordering::Relaxed)
        );

        // The targets, as scripts/bench-report.py judges them from the JSON.
        let q = |name: &str, quantile: f64| {
            results
                .0
                .get(name)
                .filter(|s| !s.hist.is_empty())
                .map(|s| s.hist.value_at_quantile(quantile))
        };
        let verdict = |ok: bool| if ok { "met" } else { "NOT MET" };
        match q("during_compaction/all_writes", 0.999) {
            Some(v) => println!(
                "target: write p99.9 during compaction {:.2} ms ≤ {:.0} ms: {}",
                ms(v),
                ms(WRITE_P999_DURING_COMPACTION_NS),
                verdict(v <= WRITE_P999_DURING_COMPACTION_NS)
            ),
            None => println!("target: no write overlapped a compaction (run longer)"),
        }
        for op in ["verify_session", "verify_access"] {
            if let (Some(idle), Some(load)) = (
                q(&format!("idle/{op}"), 0.5),
                q(&format!("load/{op}"), 0.999),
            ) {
                let limit = VERIFY_P999_OVER_IDLE_P50 * idle as f64;
                println!(
                    "target: {op} p99.9 under load {} µs ≤ {VERIFY_P999_OVER_IDLE_P50}× idle p50 \
                     ({} µs) = {:.2} µs: {} ({:.1}×)",
                    us(load),
                    us(idle),
                    limit / 1e3,
                    verdict(load as f64 <= limit),
                    load as f64 / idle as f64
                );
            }
        }

        if let Some(path) = &o.json {
            let ops: serde_json::Map<String, serde_json::Value> = results
                .0
                .iter()
                .map(|(name, s)| {
                    let h = &s.hist;
                    let v = serde_json::json!({
                        "count": h.len(),
                        "p50_ns": h.value_at_quantile(0.5),
                        "p99_ns": h.value_at_quantile(0.99),
                        "p999_ns": h.value_at_quantile(0.999),
                        "max_ns": h.max(),
                        "errors": s.errors,
                    });
                    (name.clone(), v)
                })
                .collect();
            let doc = serde_json::json!({
                "scenario": "mixed-compaction",
                "users": o.users,
                "tokens_per_user": o.tokens_per_user,
                "idle_s": o.idle.as_secs_f64(),
                "duration_s": o.duration.as_secs_f64(),
                "compact_gap_s": o.compact_gap.as_secs_f64(),
                "load_average_before": load_before,
                "load_average_after": load_after,
                "compactions": compactions.len(),
                "compaction_median_s": median.as_secs_f64(),
                "compaction_longest_s": longest.as_secs_f64(),
                "targets": {
                    "write_p999_during_compaction_ns": WRITE_P999_DURING_COMPACTION_NS,
                    "verify_p999_over_idle_p50": VERIFY_P999_OVER_IDLE_P50,
                },
                "ops": ops,
            });
            if let Some(parent) = path.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            let text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
            std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
            println!("results written to {}", path.display());
        }
        drop(p);
        let errors: u64 = results.0.values().map(|s| s.errors).sum();
        Ok(errors == 0 && compaction_errors.load(Ordering::Relaxed) == 0)
    }
}
