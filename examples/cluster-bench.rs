//! Cluster benchmark harness: Tessera's cluster mode (`Engine::open_postgres`) against a real
//! PostgreSQL, each measurement beside a baseline taken in the same run.
//!
//! ```text
//! cargo run --release --example cluster-bench -- SUBCOMMAND [OPTIONS]
//!
//! Subcommands:
//!   create        create_user throughput on 1, 2 and 4 node PROCESSES against a raw loop
//!                 (`INSERT INTO bench_raw(id, body) VALUES ($1,$2)`, autocommit, one prepared
//!                 statement, same client crate) on as many processes; raw and cluster runs
//!                 alternate (raw, cluster, cluster, raw, ...) so load changes hit both
//!   propagation   node A (this process) revokes sessions; node B (another process) drains its
//!                 events in a loop and stamps each `sessions_revoked` arrival (CLOCK_REALTIME);
//!                 latency = B's arrival - the moment A's call returned
//!   verify        session and access verify on a cluster node vs an embedded durable engine
//!                 holding the same users (both filled by `import_from`), interleaved batches
//!   cold-start    N users with one access token each, imported (COPY) into a fresh database;
//!                 then `Engine::open_postgres` of a fresh node process, timed
//!   write-path    one writer, SQL only: what a create costs per round trip, and prototypes
//!                 of the write transaction with fewer round trips, interleaved with the real
//!                 engine and the raw INSERT
//!   all           every subcommand above, in that order (with --quick: the smoke test)
//!
//! Options (all subcommands):
//!   --dsn DSN            the database server (libpq key=value or URL); default $TESSERA_PG_DSN.
//!                        Each run creates its own database on that server and drops it after
//!   --admin-dsn DSN      where CREATE/DROP DATABASE run; default $TESSERA_PG_ADMIN_DSN, else
//!                        --dsn with dbname=postgres
//!   --quick              smoke mode: seconds per subcommand
//!   --keep               leave the databases behind (printed), to profile or inspect them
//! create:       --nodes 1,2,4   --duration SECONDS (per run, default 5)   --rounds R (3)
//! propagation:  --revocations N (10000)   --pool USERS (100)   --drain-every-us US (100;
//!               0 = spin)
//! verify:       --users N (100000)   --rounds R (400)   --batch-us US (500: batch length)
//! cold-start:   --users N[,N...] (1000000; with several sizes, also the line through the
//!               last two, extrapolated to 1M and labelled so)   --opens R (3: fresh-node
//!               loads, each a new process)
//! write-path:   --rounds R (5)   --batch N (200 writes per variant per round)
//! ```
//!
//! Without a DSN it exits with status 2 and says so. scripts/bench-smoke.sh runs
//! `all --quick` under scripts/with-postgres.sh, and exits non-zero when any operation that
//! must succeed fails (a create, a revocation, a verify, a load that misses users).
//! Node processes are this binary re-run with the hidden subcommand `__node`.

#[path = "../tests/support/pg.rs"]
mod pg;

use std::io::{BufRead, BufReader, Lines, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use postgres::{Client, NoTls};
use tessera::{Engine, EventKind, NewUser};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

// ----- options ---------------------------------------------------------------------------

struct Opts {
    sub: String,
    dsn: Option<String>,
    admin_dsn: Option<String>,
    quick: bool,
    nodes: Vec<usize>,
    duration: Option<f64>,
    rounds: Option<usize>,
    revocations: Option<usize>,
    pool: Option<usize>,
    drain_every_us: u64,
    /// `--users`: one count, or several (comma-separated) for `cold-start`.
    users: Vec<usize>,
    batch_us: f64,
    opens: Option<usize>,
    batch: Option<usize>,
    /// Hidden node options.
    prefix: String,
    expect: usize,
    check_token: Option<String>,
    /// Leave the databases behind (to profile or inspect them).
    keep: bool,
}

const USAGE: &str = "usage: cluster-bench create|propagation|verify|cold-start|write-path|all \
[--dsn DSN] [--admin-dsn DSN] [--quick] [--nodes 1,2,4] [--duration S] [--rounds R] \
[--revocations N] [--pool N] [--drain-every-us US] [--users N] [--batch-us US] [--opens R] \
[--batch N]   (see the top of examples/cluster-bench.rs)";

fn parse_args(args: Vec<String>) -> Res<Opts> {
    let mut it = args.into_iter();
    let sub = it.next().ok_or(USAGE)?;
    let mut o = Opts {
        sub,
        dsn: None,
        admin_dsn: None,
        quick: false,
        nodes: vec![1, 2, 4],
        duration: None,
        rounds: None,
        revocations: None,
        pool: None,
        drain_every_us: 100,
        users: Vec::new(),
        batch_us: 500.0,
        opens: None,
        batch: None,
        prefix: String::new(),
        expect: 0,
        check_token: None,
        keep: false,
    };
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--dsn" => o.dsn = Some(value()?),
            "--admin-dsn" => o.admin_dsn = Some(value()?),
            "--quick" => o.quick = true,
            "--keep" => o.keep = true,
            "--nodes" => {
                o.nodes = value()?
                    .split(',')
                    .map(num)
                    .collect::<Result<Vec<_>, _>>()?;
            }
            "--duration" => o.duration = Some(value()?.parse()?),
            "--rounds" => o.rounds = Some(num(&value()?)?),
            "--revocations" => o.revocations = Some(num(&value()?)?),
            "--pool" => o.pool = Some(num(&value()?)?),
            "--drain-every-us" => o.drain_every_us = num(&value()?)? as u64,
            "--users" => {
                o.users = value()?
                    .split(',')
                    .map(num)
                    .collect::<Result<Vec<_>, _>>()?;
            }
            "--batch-us" => o.batch_us = value()?.parse()?,
            "--opens" => o.opens = Some(num(&value()?)?),
            "--batch" => o.batch = Some(num(&value()?)?),
            "--prefix" => o.prefix = value()?,
            "--expect" => o.expect = num(&value()?)?,
            "--check-token" => o.check_token = Some(value()?),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}").into()),
        }
    }
    if o.nodes.is_empty() || o.nodes.iter().any(|&k| k == 0 || k > 1024) {
        return Err("--nodes needs counts from 1 to 1024".into());
    }
    Ok(o)
}

fn num(s: &str) -> Result<usize, String> {
    s.replace('_', "")
        .parse()
        .map_err(|e| format!("{s:?}: {e}"))
}

// ----- small helpers ---------------------------------------------------------------------

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// CLOCK_REALTIME in nanoseconds: comparable between two processes on one machine.
fn realtime_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

/// User + system CPU time of this process, from /proc/self/stat (clock ticks of 10 ms).
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, s)| s).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("histogram bounds")
}

/// Median, 25th and 75th percentile of `v` (sorted in place).
fn quartiles(v: &mut [f64]) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    (q(0.5), q(0.25), q(0.75))
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "NOT MET"
    }
}

fn connect(dsn: &str) -> Res<Client> {
    Ok(Client::connect(dsn, NoTls)?)
}

// ----- databases -------------------------------------------------------------------------

/// A database created for one run on the server of `--dsn`, dropped when this is dropped.
struct Db {
    admin: String,
    name: String,
    dsn: String,
    keep: bool,
}

impl Db {
    fn create(o: &Opts, tag: &str) -> Res<Db> {
        let base = o.dsn.clone().ok_or("no DSN")?;
        let admin = o
            .admin_dsn
            .clone()
            .unwrap_or_else(|| pg::with_dbname(&base, "postgres"));
        let name = format!("tessera_bench_{tag}_{}", std::process::id());
        let mut c = connect(&admin)?;
        c.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\""))?;
        c.batch_execute(&format!("CREATE DATABASE \"{name}\""))?;
        let dsn = pg::with_dbname(&base, &name);
        Ok(Db {
            admin,
            name,
            dsn,
            keep: o.keep,
        })
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if self.keep {
            println!("  kept database: {}", self.dsn);
            return;
        }
        // FORCE (PostgreSQL 13+) ends the node followers that may still be polling.
        let dropped = connect(&self.admin).and_then(|mut c| {
            c.batch_execute(&format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.name
            ))
            .map_err(Into::into)
        });
        if let Err(e) = dropped {
            eprintln!("cluster-bench: could not drop database {}: {e}", self.name);
        }
    }
}

/// One line about the server: version and the durability settings every number depends on.
fn server_note(dsn: &str) -> Res<String> {
    let mut c = connect(dsn)?;
    let mut show = |what: &str| -> Res<String> {
        Ok(c.query_one(&format!("SHOW {what}"), &[])?
            .get::<_, String>(0))
    };
    Ok(format!(
        "PostgreSQL {} (fsync={}, synchronous_commit={}, wal_sync_method={}, shared_buffers={})",
        show("server_version")?,
        show("fsync")?,
        show("synchronous_commit")?,
        show("wal_sync_method")?,
        show("shared_buffers")?
    ))
}

// ----- node processes --------------------------------------------------------------------

struct Node {
    child: Child,
    stdin: Option<ChildStdin>,
    out: Lines<BufReader<ChildStdout>>,
}

impl Node {
    fn spawn(args: &[String]) -> Res<Node> {
        let mut child = Command::new(std::env::current_exe()?)
            .arg("__node")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdin = child.stdin.take();
        let out = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
        Ok(Node { child, stdin, out })
    }

    fn line(&mut self) -> Res<String> {
        match self.out.next() {
            Some(l) => Ok(l?),
            None => {
                let status = self.child.wait()?;
                Err(format!("a node process ended early ({status}); see its stderr above").into())
            }
        }
    }

    fn expect(&mut self, word: &str) -> Res<Vec<String>> {
        let l = self.line()?;
        let parts: Vec<String> = l.split_whitespace().map(str::to_owned).collect();
        if parts.first().map(String::as_str) != Some(word) {
            return Err(format!("a node said {l:?}, expected {word}").into());
        }
        Ok(parts[1..].to_vec())
    }

    fn say(&mut self, line: &str) -> Res<()> {
        let stdin = self.stdin.as_mut().ok_or("node stdin closed")?;
        writeln!(stdin, "{line}")?;
        stdin.flush()?;
        Ok(())
    }

    fn finish(mut self) -> Res<()> {
        drop(self.stdin.take());
        let status = self.child.wait()?;
        if !status.success() {
            return Err(format!("a node process failed ({status})").into());
        }
        Ok(())
    }
}

/// Node side: reads one line from the parent (the start signal).
fn wait_for_go() -> Res<()> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    if line.trim() != "go" {
        return Err(format!("expected go, got {line:?}").into());
    }
    Ok(())
}

fn say(line: &str) -> Res<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

/// What one writer node did.
struct NodeRun {
    ops: u64,
    secs: f64,
    p50_us: f64,
    p99_us: f64,
}

impl NodeRun {
    fn rate(&self) -> f64 {
        self.ops as f64 / self.secs
    }
}

/// The hidden subcommand: one node process.
fn node(args: Vec<String>) -> Res<()> {
    let kind = args.first().cloned().ok_or("__node needs a kind")?;
    let o = parse_args(args)?;
    let dsn = o.dsn.clone().ok_or("__node needs --dsn")?;
    let duration = Duration::from_secs_f64(o.duration.unwrap_or(1.0));
    match kind.as_str() {
        "create" | "raw" => {
            // Set up first (open the engine and load the state, or connect and prepare), say
            // ready, and start on the parent's go, so all nodes of a run overlap fully.
            let mut h = histogram();
            let mut ops = 0u64;
            let elapsed = if kind == "create" {
                let e = Engine::open_postgres(&dsn)?;
                say("ready")?;
                wait_for_go()?;
                let start = Instant::now();
                while start.elapsed() < duration {
                    let t = Instant::now();
                    e.create_user(NewUser::new(format!("{}-{ops}", o.prefix), "Bench"))?;
                    h.record(t.elapsed().as_nanos() as u64)?;
                    ops += 1;
                }
                start.elapsed()
            } else {
                let mut c = connect(&dsn)?;
                let st = c.prepare("INSERT INTO bench_raw(id, body) VALUES ($1,$2)")?;
                let base: i64 = o.prefix.parse::<i64>()? << 32;
                let body = vec![0xa5u8; 64];
                say("ready")?;
                wait_for_go()?;
                let start = Instant::now();
                while start.elapsed() < duration {
                    let t = Instant::now();
                    c.execute(&st, &[&(base + ops as i64), &body])?;
                    h.record(t.elapsed().as_nanos() as u64)?;
                    ops += 1;
                }
                start.elapsed()
            };
            say(&format!(
                "done {ops} {} {} {}",
                elapsed.as_secs_f64(),
                h.value_at_quantile(0.5) as f64 / 1e3,
                h.value_at_quantile(0.99) as f64 / 1e3
            ))
        }
        "watch" => {
            // Node B of `propagation`: stamps every sessions_revoked event as it drains it.
            let e = Engine::open_postgres(&dsn)?;
            say("ready")?;
            let idle = Duration::from_secs(if o.quick { 5 } else { 10 });
            let every = Duration::from_micros(o.drain_every_us);
            let mut seen: Vec<(i128, String)> = Vec::with_capacity(o.expect);
            let mut last = Instant::now();
            while seen.len() < o.expect {
                let events = e.drain_events(4096);
                let now = realtime_ns();
                if events.is_empty() {
                    if last.elapsed() > idle {
                        break;
                    }
                    if every.is_zero() {
                        std::thread::yield_now();
                    } else {
                        std::thread::sleep(every);
                    }
                    continue;
                }
                last = Instant::now();
                for ev in events {
                    if ev.kind == EventKind::SessionsRevoked {
                        seen.push((now, ev.user_id.unwrap_or_default()));
                    }
                }
            }
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            writeln!(out, "done {} {}", seen.len(), e.dropped_events())?;
            for (t, user) in &seen {
                writeln!(out, "{t} {user}")?;
            }
            out.flush()?;
            Ok(())
        }
        "open" => {
            // A fresh node of `cold-start`: the load is what is timed.
            let cpu0 = cpu_secs();
            let t = Instant::now();
            let e = Engine::open_postgres(&dsn)?;
            let wall = t.elapsed().as_secs_f64();
            let cpu = cpu_secs() - cpu0;
            if let Some(token) = &o.check_token {
                e.verify_access_token(token)?;
            }
            say(&format!(
                "done {wall} {cpu} {} {:.0}",
                e.user_count(),
                rss_mib()
            ))
        }
        other => Err(format!("unknown node kind {other:?}").into()),
    }
}

// ----- create ----------------------------------------------------------------------------

/// Starts `k` nodes of `kind` at once and returns what each did.
fn run_nodes(dsn: &str, kind: &str, k: usize, tag: &str, secs: f64) -> Res<Vec<NodeRun>> {
    let mut nodes = Vec::with_capacity(k);
    for i in 0..k {
        // Raw nodes take ids from (tag * 1024 + i) << 32 on; cluster nodes name users
        // cTAGnI-0, cTAGnI-1, ...
        let prefix = if kind == "raw" {
            (tag.parse::<i64>()? * 1024 + i as i64).to_string()
        } else {
            format!("c{tag}n{i}")
        };
        nodes.push(Node::spawn(&[
            kind.to_owned(),
            "--dsn".into(),
            dsn.to_owned(),
            "--prefix".into(),
            prefix,
            "--duration".into(),
            secs.to_string(),
        ])?);
    }
    for n in &mut nodes {
        n.expect("ready")?;
    }
    for n in &mut nodes {
        n.say("go")?;
    }
    let mut runs = Vec::with_capacity(k);
    for n in &mut nodes {
        let f = n.expect("done")?;
        let field = |i: usize| -> Res<f64> { Ok(f.get(i).ok_or("short done line")?.parse()?) };
        runs.push(NodeRun {
            ops: field(0)? as u64,
            secs: field(1)?,
            p50_us: field(2)?,
            p99_us: field(3)?,
        });
    }
    for n in nodes {
        n.finish()?;
    }
    Ok(runs)
}

fn describe(runs: &[NodeRun]) -> String {
    let per: Vec<String> = runs.iter().map(|r| format!("{:.0}", r.rate())).collect();
    let agg: f64 = runs.iter().map(NodeRun::rate).sum();
    let p50 = runs.iter().map(|r| r.p50_us).sum::<f64>() / runs.len() as f64;
    let p99 = runs.iter().map(|r| r.p99_us).fold(0.0, f64::max);
    format!(
        "per node [{}] ops/s, aggregate {agg:.0} ops/s, p50 {:.2} ms, p99 {:.2} ms",
        per.join(", "),
        p50 / 1e3,
        p99 / 1e3
    )
}

fn create(o: &Opts) -> Res<bool> {
    let secs = o.duration.unwrap_or(if o.quick { 0.3 } else { 5.0 });
    let rounds = o.rounds.unwrap_or(if o.quick { 1 } else { 3 });
    let db = Db::create(o, "create")?;
    // The cluster schema, then the raw table beside it, in the same database.
    drop(Engine::open_postgres(&db.dsn)?);
    connect(&db.dsn)?
        .batch_execute("CREATE TABLE bench_raw (id bigint PRIMARY KEY, body bytea NOT NULL)")?;
    println!(
        "== create: {rounds} round(s) per node count, {secs} s per run, nodes {:?}",
        o.nodes
    );
    let mut ok = true;
    let mut tag = 0i64;
    let mut summary = Vec::new();
    for &k in &o.nodes {
        let mut ratios = Vec::new();
        let (mut raw_rates, mut cl_rates) = (Vec::new(), Vec::new());
        for r in 0..rounds {
            // Alternate which goes first, so a trend in the load does not favour one side.
            let order = if r % 2 == 0 {
                ["raw", "create"]
            } else {
                ["create", "raw"]
            };
            let (mut raw, mut cl) = (0.0, 0.0);
            for kind in order {
                tag += 1;
                let runs = run_nodes(&db.dsn, kind, k, &tag.to_string(), secs)?;
                let per_node = runs.iter().map(NodeRun::rate).sum::<f64>() / k as f64;
                println!(
                    "  {k} node(s) round {r} {:<7} {} (load {})",
                    if kind == "raw" { "raw" } else { "cluster" },
                    describe(&runs),
                    loadavg()
                );
                if kind == "raw" {
                    raw = per_node;
                } else {
                    cl = per_node;
                }
            }
            ratios.push(cl / raw);
            raw_rates.push(raw);
            cl_rates.push(cl);
        }
        let (m, lo, hi) = quartiles(&mut ratios.clone());
        let (raw_m, _, _) = quartiles(&mut raw_rates);
        let (cl_m, _, _) = quartiles(&mut cl_rates);
        let min = ratios.iter().copied().fold(f64::MAX, f64::min);
        let max = ratios.iter().copied().fold(0.0, f64::max);
        println!(
            "  {k} node(s): per node cluster {cl_m:.0} ops/s vs raw {raw_m:.0} ops/s; \
             aggregate cluster {:.0} vs raw {:.0}; ratio cluster/raw per node {m:.2}x \
             (IQR {lo:.2}..{hi:.2}, range {min:.2}..{max:.2}, {rounds} rounds): goal >= 0.8x {}",
            cl_m * k as f64,
            raw_m * k as f64,
            verdict(m >= 0.8)
        );
        summary.push((k, cl_m, raw_m, m));
        ok &= cl_m > 0.0 && raw_m > 0.0;
    }
    println!("  summary (medians over rounds):");
    println!("  nodes  cluster/node  raw/node  cluster agg  raw agg  ratio");
    for (k, c, r, m) in summary {
        println!(
            "  {k:>5}  {c:>12.0}  {r:>8.0}  {:>11.0}  {:>7.0}  {m:.2}x",
            c * k as f64,
            r * k as f64
        );
    }
    Ok(ok)
}

// ----- propagation -----------------------------------------------------------------------

fn propagation(o: &Opts) -> Res<bool> {
    let n = o.revocations.unwrap_or(if o.quick { 300 } else { 10_000 });
    let pool = o.pool.unwrap_or(if o.quick { 20 } else { 100 }).max(1);
    let db = Db::create(o, "propagation")?;
    let a = Engine::open_postgres(&db.dsn)?;
    let users: Vec<String> = (0..pool).map(|i| format!("prop-{i}")).collect();
    let mem = Engine::in_memory()?;
    for u in &users {
        mem.create_user(NewUser::new(u.clone(), "Bench"))?;
    }
    a.import_from(&mem)?;
    drop(mem);
    let mut args = vec![
        "watch".to_owned(),
        "--dsn".into(),
        db.dsn.clone(),
        "--expect".into(),
        n.to_string(),
        "--drain-every-us".into(),
        o.drain_every_us.to_string(),
    ];
    if o.quick {
        args.push("--quick".into());
    }
    let mut b = Node::spawn(&args)?;
    b.expect("ready")?;
    println!(
        "== propagation: {n} session revocations on node A over {pool} users; node B (pid {}) \
         drains events every {} us (load {})",
        b.child.id(),
        o.drain_every_us,
        loadavg()
    );
    let mut sent: Vec<(i128, usize)> = Vec::with_capacity(n);
    let mut call = histogram();
    let start = Instant::now();
    for i in 0..n {
        let t = Instant::now();
        a.revoke_sessions(&users[i % pool])?;
        let returned = realtime_ns();
        call.record(t.elapsed().as_nanos() as u64)?;
        sent.push((returned, i % pool));
        if i % 1024 == 0 {
            a.drain_events(usize::MAX); // A's own events: not measured, keep its queue small
        }
    }
    let took = start.elapsed().as_secs_f64();
    let head = b.expect("done")?;
    let got: usize = head.first().ok_or("short done")?.parse()?;
    let dropped: u64 = head.get(1).ok_or("short done")?.parse()?;
    let mut arrivals = Vec::with_capacity(got);
    for _ in 0..got {
        let l = b.line()?;
        let (t, user) = l.split_once(' ').ok_or("bad arrival line")?;
        arrivals.push((t.parse::<i128>()?, user.to_owned()));
    }
    b.finish()?;
    // B applies the log in A's commit order, so the i-th event is the i-th revocation; check.
    let mut lat = histogram();
    let mut negative = 0u64;
    let mut mismatched = 0u64;
    for (i, (arrived, user)) in arrivals.iter().enumerate() {
        let (returned, u) = sent[i];
        if *user != users[u] {
            mismatched += 1;
            continue;
        }
        let d = arrived - returned;
        if d < 0 {
            negative += 1;
        }
        lat.record(d.max(1) as u64)?;
    }
    let missing = n - got;
    let ms = |v: u64| v as f64 / 1e6;
    println!(
        "  A: {n} revocations in {took:.1} s ({:.0}/s), call p50 {:.2} ms p99 {:.2} ms",
        n as f64 / took,
        ms(call.value_at_quantile(0.5)),
        ms(call.value_at_quantile(0.99))
    );
    println!(
        "  B saw {got} of {n} (missing {missing}, out of order {mismatched}, B's dropped events \
         {dropped}); {negative} arrived before A's call had returned (counted as 0)"
    );
    println!(
        "  propagation A return -> B event: p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} \
         ms, mean {:.2} ms (load {})",
        ms(lat.value_at_quantile(0.5)),
        ms(lat.value_at_quantile(0.99)),
        ms(lat.value_at_quantile(0.999)),
        ms(lat.max()),
        lat.mean() / 1e6,
        loadavg()
    );
    let complete = missing == 0 && mismatched == 0 && !lat.is_empty();
    let p99_ok = complete && ms(lat.value_at_quantile(0.99)) <= 50.0;
    let max_ok = complete && ms(lat.max()) <= 1000.0;
    println!(
        "  goal p99 <= 50 ms: {}; goal max <= 1 s: {}",
        verdict(p99_ok),
        verdict(max_ok)
    );
    Ok(complete)
}

// ----- verify ----------------------------------------------------------------------------

/// SplitMix64, for a reproducible random walk over users.
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Times `batch` calls of `f` on the indices of `idx`; returns ns per call and failures.
fn timed(idx: &[usize], mut f: impl FnMut(usize) -> bool) -> (f64, u64) {
    let mut failed = 0;
    let t = Instant::now();
    for &i in idx {
        if !std::hint::black_box(f(i)) {
            failed += 1;
        }
    }
    (t.elapsed().as_nanos() as f64 / idx.len() as f64, failed)
}

fn verify(o: &Opts) -> Res<bool> {
    let n = o
        .users
        .first()
        .copied()
        .unwrap_or(if o.quick { 2_000 } else { 100_000 });
    let rounds = o.rounds.unwrap_or(if o.quick { 20 } else { 400 });
    let db = Db::create(o, "verify")?;
    let dir = std::env::temp_dir().join(format!("cluster-bench-verify-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let result = (|| -> Res<bool> {
        let t = Instant::now();
        let mem = Engine::in_memory()?;
        let mut sessions = Vec::with_capacity(n);
        let mut access = Vec::with_capacity(n);
        for i in 0..n {
            let id = format!("v-{i}");
            mem.create_user(NewUser::new(id.clone(), "Bench"))?;
            sessions.push(mem.issue_session_token(&id, None)?.as_str().to_owned());
            access.push(mem.issue_access_token(&id, None)?.token.as_str().to_owned());
        }
        let fill = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let cluster = Engine::open_postgres(&db.dsn)?;
        cluster.import_from(&mem)?;
        let into_cluster = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let embedded = Engine::open(&dir)?;
        embedded.import_from(&mem)?;
        let into_embedded = t.elapsed().as_secs_f64();
        drop(mem);
        println!(
            "== verify: {n} users with a session and an access token each (filled {fill:.1} s; \
             import into the cluster {into_cluster:.1} s, into the embedded engine \
             {into_embedded:.1} s); {rounds} paired rounds (load {})",
            loadavg()
        );
        // Batch length: ~batch_us of the embedded engine's session verify.
        let probe = Instant::now();
        let mut k = 0;
        while probe.elapsed() < Duration::from_millis(50) {
            embedded.verify_session_token(&sessions[k % n])?;
            k += 1;
        }
        let per_call_ns = 50e6 / k as f64;
        let batch = ((o.batch_us * 1e3 / per_call_ns) as usize).clamp(10, n);
        let mut rng = Mix(0x7e55e7a);
        let walk: Vec<usize> = (0..n.max(65_536))
            .map(|_| (rng.next() % n as u64) as usize)
            .collect();
        let mut all_ok = true;
        let session = |e: &Engine, i: usize| e.verify_session_token(&sessions[i]).is_ok();
        let access_ok = |e: &Engine, i: usize| e.verify_access_token(&access[i]).is_ok();
        type Check<'a> = &'a dyn Fn(&Engine, usize) -> bool;
        let cases: [(&str, Check, bool); 4] = [
            ("session verify, hot", &session, true),
            ("session verify, cold", &session, false),
            ("access verify, hot", &access_ok, true),
            ("access verify, cold", &access_ok, false),
        ];
        for (name, f, hot) in cases {
            let hot_idx = vec![n / 2; batch];
            let (mut ratios, mut c_ns, mut e_ns) = (Vec::new(), Vec::new(), Vec::new());
            let mut failed = 0;
            for r in 0..=rounds {
                let idx: &[usize] = if hot {
                    &hot_idx
                } else {
                    let start = (r * batch) % (walk.len() - batch);
                    &walk[start..start + batch]
                };
                let ((c, fc), (e, fe)) = if r % 2 == 0 {
                    let c = timed(idx, |i| f(&cluster, i));
                    (c, timed(idx, |i| f(&embedded, i)))
                } else {
                    let e = timed(idx, |i| f(&embedded, i));
                    (timed(idx, |i| f(&cluster, i)), e)
                };
                failed += fc + fe;
                if r == 0 {
                    continue; // warm-up round
                }
                ratios.push(c / e);
                c_ns.push(c);
                e_ns.push(e);
            }
            let (m, lo, hi) = quartiles(&mut ratios);
            let (cm, _, _) = quartiles(&mut c_ns);
            let (em, _, _) = quartiles(&mut e_ns);
            println!(
                "  {name:<21} cluster/embedded {m:.3}x (IQR {lo:.3}..{hi:.3}); medians {cm:.0} \
                 ns vs {em:.0} ns; batch {batch}; failed verifies {failed}: goal <= 1.05x {}",
                verdict(m <= 1.05)
            );
            all_ok &= failed == 0;
        }
        println!("  (load {})", loadavg());
        drop(cluster);
        drop(embedded);
        Ok(all_ok)
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

// ----- cold start ------------------------------------------------------------------------

fn cold_start(o: &Opts) -> Res<bool> {
    let sizes = if o.users.is_empty() {
        vec![if o.quick { 2_000 } else { 1_000_000 }]
    } else {
        o.users.clone()
    };
    let mut ok = true;
    let mut points = Vec::new();
    for &n in &sizes {
        let (fine, median) = cold_start_one(o, n)?;
        ok &= fine;
        points.push((n as f64, median));
        let verdict_1m = if n == 1_000_000 {
            verdict(median <= 10.0)
        } else {
            "not judged (not 1M users)"
        };
        println!("  median load {median:.2} s for {n} users: goal <= 10 s at 1M: {verdict_1m}");
    }
    if let [.., (n1, t1), (n2, t2)] = points[..] {
        if n1 != n2 && !sizes.contains(&1_000_000) {
            let slope = (t2 - t1) / (n2 - n1);
            let at_1m = t2 + slope * (1e6 - n2);
            println!(
                "  EXTRAPOLATED, not measured: the line through the last two sizes gives \
                 {:.1} us per user and {at_1m:.1} s at 1M users: goal <= 10 s at 1M {}",
                slope * 1e6,
                verdict(at_1m <= 10.0)
            );
        }
    }
    Ok(ok)
}

/// One cold start at `n` users; returns whether it loaded everything, and the median load.
fn cold_start_one(o: &Opts, n: usize) -> Res<(bool, f64)> {
    let opens = o.opens.unwrap_or(if o.quick { 1 } else { 3 }).max(1);
    let db = Db::create(o, &format!("coldstart{n}"))?;
    println!(
        "== cold-start: {n} users, one access token each (load {})",
        loadavg()
    );
    let t = Instant::now();
    let mem = Engine::in_memory()?;
    let mut check = String::new();
    for i in 0..n {
        let id = format!("cold-{i}");
        mem.create_user(NewUser::new(id.clone(), "Bench"))?;
        let token = mem.issue_access_token(&id, None)?;
        if i == n / 2 {
            check = token.token.as_str().to_owned();
        }
    }
    let fill = t.elapsed().as_secs_f64();
    let importer = Engine::open_postgres(&db.dsn)?;
    let t = Instant::now();
    let cpu0 = cpu_secs();
    let imported = importer.import_from(&mem)?;
    let import = t.elapsed().as_secs_f64();
    let import_cpu = cpu_secs() - cpu0;
    drop(importer);
    drop(mem);
    let size: i64 = connect(&db.dsn)?
        .query_one("SELECT pg_database_size(current_database())", &[])?
        .get(0);
    println!(
        "  in-memory fill {fill:.1} s; import_from (COPY, one transaction) {import:.1} s wall, \
         {import_cpu:.1} s CPU in this process; {imported} users; database {:.0} MiB (load {})",
        size as f64 / 1048576.0,
        loadavg()
    );
    let mut ok = imported == n;
    let mut walls = Vec::new();
    for r in 0..opens {
        let mut node = Node::spawn(&[
            "open".into(),
            "--dsn".into(),
            db.dsn.clone(),
            "--check-token".into(),
            check.clone(),
        ])?;
        let f = node.expect("done")?;
        node.finish()?;
        let field = |i: usize| -> Res<f64> { Ok(f.get(i).ok_or("short done line")?.parse()?) };
        let (wall, cpu, users, rss) = (field(0)?, field(1)?, field(2)? as usize, field(3)?);
        println!(
            "  open {r}: Engine::open_postgres of a fresh node process {wall:.2} s wall, {cpu:.2} \
             s CPU in the node, {users} users loaded, RSS {rss:.0} MiB (load {})",
            loadavg()
        );
        ok &= users == n;
        walls.push(wall);
    }
    let (m, _, _) = quartiles(&mut walls);
    Ok((ok, m))
}

// ----- write path prototypes -------------------------------------------------------------

/// The variants `write-path` measures, each one create of a user, and its round trips.
const VARIANTS: [(&str, &str); 7] = [
    (
        "raw",
        "INSERT INTO bench_raw autocommit, prepared once: 1 round trip",
    ),
    (
        "engine",
        "Engine::create_user on a cluster node (the real thing)",
    ),
    (
        "sql-now",
        "the engine's statements for a create, each prepared per call as \
         Client::execute(&str) does: 16 round trips",
    ),
    (
        "sql-prepared",
        "the same statements, each prepared once per connection: 9 round trips",
    ),
    (
        "cte-3rt",
        "simple query 'BEGIN; SELECT pos ... FOR UPDATE', one prepared CTE statement (log, \
         user, head, notify), COMMIT: 3 round trips",
    ),
    (
        "cte-2rt",
        "'BEGIN; SELECT pos ... FOR UPDATE', then the CTE with quoted literals and COMMIT in \
         one simple query: 2 round trips",
    ),
    (
        "cas-1rt",
        "autocommit compare-and-set CTE: the head moves only WHERE pos = the expected head, \
         and the log, user and notify hang off that row: 1 round trip (a conflict would \
         mean catch up and decide again)",
    ),
];

struct Proto {
    c: Client,
    next_handle: i64,
    head: i64,
    lock_st: postgres::Statement,
    prepared: Vec<postgres::Statement>,
    cte: postgres::Statement,
    cas: postgres::Statement,
}

const SQL_NOW: [&str; 6] = [
    "INSERT INTO tessera_log (pos, kind, payload) VALUES ($1, $2, $3)",
    "INSERT INTO tessera_users (handle, user_id, nickname, profile_url, is_active, \
     session_epoch, token_required, created_at_ms, record) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    "DELETE FROM tessera_discovery_keys WHERE handle = $1",
    "UPDATE tessera_head SET next_handle = GREATEST(next_handle, $1::bigint + 1)",
    "UPDATE tessera_head SET pos = $1",
    "SELECT pg_notify($1, $2)",
];

const CTE: &str = "WITH l AS (INSERT INTO tessera_log (pos, kind, payload) \
           VALUES ($1::bigint, 1, $2::bytea)), \
     u AS (INSERT INTO tessera_users (handle, user_id, nickname, profile_url, is_active, \
           session_epoch, token_required, created_at_ms, record) \
           VALUES ($3::bigint, $4::text, $5::text, NULL, true, 0, false, $6::bigint, \
           $7::bytea)), \
     h AS (UPDATE tessera_head SET pos = $1::bigint, \
           next_handle = GREATEST(next_handle, $3::bigint + 1)) \
     SELECT pg_notify('tessera_log', $1::bigint::text)";

const CAS: &str = "WITH h AS (UPDATE tessera_head SET pos = pos + 1, \
           next_handle = GREATEST(next_handle, $3::bigint + 1) WHERE pos = $1::bigint \
           RETURNING pos), \
     l AS (INSERT INTO tessera_log (pos, kind, payload) SELECT pos, 1, $2::bytea FROM h), \
     u AS (INSERT INTO tessera_users (handle, user_id, nickname, profile_url, is_active, \
           session_epoch, token_required, created_at_ms, record) \
           SELECT $3::bigint, $4::text, $5::text, NULL, true, 0, false, $6::bigint, \
           $7::bytea FROM h) \
     SELECT pos, pg_notify('tessera_log', pos::text) FROM h";

impl Proto {
    fn new(dsn: &str) -> Res<Proto> {
        let mut c = connect(dsn)?;
        let head: i64 = c.query_one("SELECT pos FROM tessera_head", &[])?.get(0);
        let next_handle: i64 = c
            .query_one("SELECT next_handle FROM tessera_head", &[])?
            .get(0);
        let prepared = SQL_NOW
            .iter()
            .map(|s| c.prepare(s))
            .collect::<Result<Vec<_>, _>>()?;
        let lock_st = c.prepare("SELECT pos FROM tessera_head FOR UPDATE")?;
        let cte = c.prepare(CTE)?;
        let cas = c.prepare(CAS)?;
        Ok(Proto {
            c,
            next_handle,
            head,
            lock_st,
            prepared,
            cte,
            cas,
        })
    }

    fn lock(&mut self) -> Res<i64> {
        let mut pos = None;
        for m in self
            .c
            .simple_query("BEGIN; SELECT pos FROM tessera_head FOR UPDATE")?
        {
            if let postgres::SimpleQueryMessage::Row(row) = m {
                pos = row.get(0).map(str::parse::<i64>).transpose()?;
            }
        }
        pos.ok_or_else(|| "no head row".into())
    }

    /// One create of a user through `variant` (not "raw" or "engine").
    fn create(&mut self, variant: &str, id: &str) -> Res<()> {
        let handle = self.next_handle;
        let payload = vec![0x11u8; 48]; // a postcard-encoded UserCreated is about this long
        let record = vec![0x22u8; 40];
        let created = 1_790_000_000_000i64;
        match variant {
            "sql-now" | "sql-prepared" => {
                let c = &mut self.c;
                c.batch_execute("BEGIN")?;
                let head: i64 = if variant == "sql-now" {
                    c.query_one("SELECT pos FROM tessera_head FOR UPDATE", &[])?
                } else {
                    c.query_one(&self.lock_st, &[])?
                }
                .get(0);
                let pos = head + 1;
                let notify = pos.to_string();
                let none: Option<&str> = None;
                let params: [&[&(dyn postgres::types::ToSql + Sync)]; 6] = [
                    &[&pos, &1i16, &payload],
                    &[
                        &handle, &id, &"Bench", &none, &true, &0i64, &false, &created, &record,
                    ],
                    &[&handle],
                    &[&handle],
                    &[&pos],
                    &[&"tessera_log", &notify],
                ];
                for (i, p) in params.iter().enumerate() {
                    if variant == "sql-now" {
                        c.execute(SQL_NOW[i], p)?;
                    } else {
                        c.execute(&self.prepared[i], p)?;
                    }
                }
                c.batch_execute("COMMIT")?;
                self.head = pos;
            }
            "cte-3rt" => {
                let pos = self.lock()? + 1;
                self.c.execute(
                    &self.cte,
                    &[&pos, &payload, &handle, &id, &"Bench", &created, &record],
                )?;
                self.c.batch_execute("COMMIT")?;
                self.head = pos;
            }
            "cte-2rt" => {
                let pos = self.lock()? + 1;
                let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
                let text = |s: &str| format!("'{}'", s.replace('\'', "''"));
                let sql = format!(
                    "WITH l AS (INSERT INTO tessera_log (pos, kind, payload) \
                     VALUES ({pos}, 1, '\\x{}'::bytea)), \
                     u AS (INSERT INTO tessera_users (handle, user_id, nickname, profile_url, \
                     is_active, session_epoch, token_required, created_at_ms, record) \
                     VALUES ({handle}, {}, {}, NULL, true, 0, false, {created}, \
                     '\\x{}'::bytea)), \
                     h AS (UPDATE tessera_head SET pos = {pos}, \
                     next_handle = GREATEST(next_handle, {handle} + 1)) \
                     SELECT pg_notify('tessera_log', '{pos}'); COMMIT",
                    hex(&payload),
                    text(id),
                    text("Bench"),
                    hex(&record)
                );
                if let Err(e) = self.c.simple_query(&sql) {
                    let _ = self.c.batch_execute("ROLLBACK");
                    return Err(e.into());
                }
                self.head = pos;
            }
            "cas-1rt" => {
                let rows = self.c.query(
                    &self.cas,
                    &[
                        &self.head, &payload, &handle, &id, &"Bench", &created, &record,
                    ],
                )?;
                let row = rows
                    .first()
                    .ok_or("head moved (a conflict): not expected here")?;
                self.head = row.get(0);
            }
            other => return Err(format!("unknown variant {other}").into()),
        }
        self.next_handle += 1;
        Ok(())
    }
}

fn write_path(o: &Opts) -> Res<bool> {
    let rounds = o.rounds.unwrap_or(if o.quick { 1 } else { 5 });
    let batch = o.batch.unwrap_or(if o.quick { 20 } else { 200 });
    // The engine writes in one database, the SQL prototypes in a second with the same schema
    // (no engine reads their log, whose payloads are stand-ins), the raw loop in the second.
    let db_engine = Db::create(o, "wpengine")?;
    let db_proto = Db::create(o, "wpproto")?;
    drop(Engine::open_postgres(&db_proto.dsn)?);
    let engine = Engine::open_postgres(&db_engine.dsn)?;
    let mut proto = Proto::new(&db_proto.dsn)?;
    let mut raw = connect(&db_proto.dsn)?;
    raw.batch_execute("CREATE TABLE bench_raw (id bigint PRIMARY KEY, body bytea NOT NULL)")?;
    let raw_st = raw.prepare("INSERT INTO bench_raw(id, body) VALUES ($1,$2)")?;
    let body = vec![0xa5u8; 64];
    let mut rtt = histogram();
    let ping = raw.prepare("SELECT 1")?;
    for _ in 0..200 {
        let t = Instant::now();
        raw.query_one(&ping, &[])?;
        rtt.record(t.elapsed().as_nanos() as u64)?;
    }
    println!(
        "== write-path: one writer, {rounds} round(s) of {batch} creates per variant, order \
         rotated each round; a prepared SELECT 1 round trip: p50 {:.0} us (load {})",
        rtt.value_at_quantile(0.5) as f64 / 1e3,
        loadavg()
    );
    let mut per: Vec<Vec<f64>> = vec![Vec::new(); VARIANTS.len()];
    let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); VARIANTS.len()];
    let mut seq = 0i64;
    for r in 0..rounds {
        let mut this = vec![0.0; VARIANTS.len()];
        for j in 0..VARIANTS.len() {
            let v = (j + r) % VARIANTS.len();
            let name = VARIANTS[v].0;
            let t = Instant::now();
            for _ in 0..batch {
                seq += 1;
                let id = format!("wp-{name}-{seq}");
                match name {
                    "raw" => {
                        raw.execute(&raw_st, &[&seq, &body])?;
                    }
                    "engine" => {
                        engine.create_user(NewUser::new(id, "Bench"))?;
                    }
                    _ => proto.create(name, &id)?,
                }
            }
            this[v] = t.elapsed().as_secs_f64() * 1e6 / batch as f64;
        }
        for v in 0..VARIANTS.len() {
            per[v].push(this[v]);
            ratios[v].push(this[v] / this[0]);
        }
    }
    println!("  variant        us/create  creates/s  time/raw   what");
    for (v, (name, what)) in VARIANTS.iter().enumerate() {
        let (us, _, _) = quartiles(&mut per[v]);
        let (ratio, _, _) = quartiles(&mut ratios[v]);
        println!(
            "  {name:<13} {us:>10.0}  {:>9.0}  {ratio:>7.2}x   {what}",
            1e6 / us
        );
    }
    println!("  (load {})", loadavg());
    Ok(true)
}

// ----- main ------------------------------------------------------------------------------

fn run(o: &Opts) -> Res<bool> {
    let mut ok = true;
    let subs: Vec<&str> = if o.sub == "all" {
        vec![
            "create",
            "propagation",
            "verify",
            "cold-start",
            "write-path",
        ]
    } else {
        vec![o.sub.as_str()]
    };
    for sub in subs {
        let t = Instant::now();
        ok &= match sub {
            "create" => create(o)?,
            "propagation" => propagation(o)?,
            "verify" => verify(o)?,
            "cold-start" => cold_start(o)?,
            "write-path" => write_path(o)?,
            other => return Err(format!("unknown subcommand {other:?}\n{USAGE}").into()),
        };
        println!("  ({sub} took {:.1} s)", t.elapsed().as_secs_f64());
    }
    Ok(ok)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("__node") {
        if let Err(e) = node(args[1..].to_vec()) {
            eprintln!("cluster-bench node: {e}");
            std::process::exit(1);
        }
        return;
    }
    let mut o = match parse_args(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("cluster-bench: {e}");
            std::process::exit(2);
        }
    };
    if o.dsn.is_none() {
        o.dsn = std::env::var("TESSERA_PG_DSN")
            .ok()
            .filter(|s| !s.trim().is_empty());
    }
    if o.admin_dsn.is_none() {
        o.admin_dsn = std::env::var("TESSERA_PG_ADMIN_DSN")
            .ok()
            .filter(|s| !s.trim().is_empty());
    }
    let Some(dsn) = o.dsn.clone() else {
        eprintln!(
            "cluster-bench: no database: give --dsn, or set TESSERA_PG_DSN \
             (scripts/with-postgres.sh starts a throwaway server and sets it)"
        );
        std::process::exit(2);
    };
    match server_note(&dsn) {
        Ok(note) => println!(
            "cluster-bench {}{}: {note}; {} CPUs; load {}",
            o.sub,
            if o.quick {
                " --quick (smoke mode: a test that everything runs, not a measurement)"
            } else {
                ""
            },
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            loadavg()
        ),
        Err(e) => {
            eprintln!("cluster-bench: cannot reach PostgreSQL at {dsn:?}: {e}");
            std::process::exit(1);
        }
    }
    match run(&o) {
        Ok(true) => {}
        Ok(false) => {
            eprintln!("cluster-bench: an operation that must succeed failed (see above)");
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("cluster-bench: {e}");
            std::process::exit(1);
        }
    }
}
