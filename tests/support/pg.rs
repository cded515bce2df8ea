//! Test support for PostgreSQL cluster-mode tests (std only). An integration test includes it
//! with `#[path = "support/pg.rs"] mod pg;`.
//!
//! The cluster comes from `scripts/with-postgres.sh`, which starts a throwaway server and
//! exports `TESSERA_PG_DSN`, `TESSERA_PG_ADMIN_DSN`, `TESSERA_PG_BIN`, `TESSERA_PG_CTL` and
//! friends (`scripts/test-all.sh` runs `cargo test` under it). Without it, [`dsn`] and
//! [`fresh_database`] return `None` and the test should return early after an `eprintln!`
//! saying it skipped ([`skip`] prints one), except with `CI=true`, where they panic: in CI the
//! cluster tests must run.
//!
//! [`pause`], [`resume`] and [`restart`] act on the whole server, so they disturb every test
//! using it at that moment: keep tests that call them in one test binary and serialize them
//! there (a `static Mutex`), and use [`paused`] so that a failing assertion cannot leave the
//! server stopped for every later test.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// `TESSERA_PG_DSN` (libpq key=value form), or `None` when the tests run without
/// `scripts/with-postgres.sh`. Panics when it is unset and `CI=true`.
pub fn dsn() -> Option<String> {
    match std::env::var("TESSERA_PG_DSN") {
        Ok(dsn) if !dsn.trim().is_empty() => Some(dsn),
        _ if std::env::var("CI").as_deref() == Ok("true") => panic!(
            "TESSERA_PG_DSN is not set, but CI=true: cluster tests must run in CI; \
             run them through scripts/with-postgres.sh (e.g. scripts/with-postgres.sh cargo test)"
        ),
        _ => None,
    }
}

/// Prints the note a test prints when it skips for lack of a cluster.
pub fn skip(test: &str) {
    eprintln!(
        "{test}: skipped, TESSERA_PG_DSN is not set \
         (run it through scripts/with-postgres.sh to test against PostgreSQL)"
    );
}

/// The DSN of the maintenance database (`postgres`): `TESSERA_PG_ADMIN_DSN`, else
/// `TESSERA_PG_DSN` with `dbname=postgres`.
pub fn admin_dsn() -> Option<String> {
    match std::env::var("TESSERA_PG_ADMIN_DSN") {
        Ok(admin) if !admin.trim().is_empty() => Some(admin),
        _ => dsn().map(|dsn| with_dbname(&dsn, "postgres")),
    }
}

/// Creates a new, empty database named after `tag`, the process id and a counter, and returns
/// its DSN, so that tests running in parallel (threads or processes) do not share state.
/// `None` without a cluster (see [`dsn`]). The database is left behind: the cluster is thrown
/// away at the end of the run.
pub fn fresh_database(tag: &str) -> Option<String> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let base = dsn()?;
    let admin = admin_dsn()?;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let suffix = format!("_{}_{n}", std::process::id());
    let mut name: String = tag
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        name.insert(0, 't');
    }
    // PostgreSQL truncates names to 63 bytes; keep the unique suffix.
    name.truncate(63 - suffix.len());
    name.push_str(&suffix);
    // A database of this name can only be a leftover of a dead process with the same pid
    // (when an outer cluster is reused across runs).
    psql(&admin, &format!("DROP DATABASE IF EXISTS \"{name}\""));
    psql(&admin, &format!("CREATE DATABASE \"{name}\""));
    Some(with_dbname(&base, &name))
}

/// `dsn` with its database replaced by `dbname` (key=value or postgres:// URI form).
pub fn with_dbname(dsn: &str, dbname: &str) -> String {
    let dsn = dsn.trim();
    if let Some(rest) = dsn
        .strip_prefix("postgres://")
        .or_else(|| dsn.strip_prefix("postgresql://"))
    {
        let scheme = &dsn[..dsn.len() - rest.len()];
        let (before_query, query) = match rest.find('?') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let authority = before_query.split('/').next().unwrap_or("");
        return format!("{scheme}{authority}/{dbname}{query}");
    }
    let mut parts: Vec<String> = dsn
        .split_whitespace()
        .filter(|part| !part.starts_with("dbname="))
        .map(str::to_owned)
        .collect();
    parts.push(format!("dbname={dbname}"));
    parts.join(" ")
}

/// The database a DSN names (key=value or URI form).
pub fn dbname_of(dsn: &str) -> String {
    let dsn = dsn.trim();
    if let Some(rest) = dsn
        .strip_prefix("postgres://")
        .or_else(|| dsn.strip_prefix("postgresql://"))
    {
        let path = rest.split('?').next().unwrap_or("");
        return path
            .split_once('/')
            .map(|(_, db)| db.to_owned())
            .unwrap_or_default();
    }
    dsn.split_whitespace()
        .find_map(|part| part.strip_prefix("dbname="))
        .map(|db| db.trim_matches('\'').to_owned())
        .unwrap_or_else(|| panic!("no dbname= in DSN {dsn:?}"))
}

/// The psql binary: `$TESSERA_PG_BIN/psql` when it exists, else `psql` on PATH.
pub fn psql_bin() -> PathBuf {
    if let Ok(bin) = std::env::var("TESSERA_PG_BIN") {
        let psql = PathBuf::from(bin).join("psql");
        if psql.is_file() {
            return psql;
        }
    }
    PathBuf::from("psql")
}

/// Runs `sql` through `psql -X -A -t -v ON_ERROR_STOP=1` against `dsn` and returns its
/// trimmed output (unaligned, tuples only: one row a line, columns separated by `|`).
/// Panics, with psql's stderr, when psql fails.
pub fn psql(dsn: &str, sql: &str) -> String {
    let out = Command::new(psql_bin())
        .args([
            "-X",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            dsn,
            "-c",
            sql,
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", psql_bin().display()));
    if !out.status.success() {
        panic!(
            "psql failed ({}) on {dsn:?}\nSQL: {sql}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Quotes a string as an SQL literal.
pub fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Runs `$TESSERA_PG_CTL action`.
fn try_ctl(action: &str) -> Result<(), String> {
    let ctl = std::env::var("TESSERA_PG_CTL").map_err(|_| {
        "TESSERA_PG_CTL is not set: run the tests through scripts/with-postgres.sh".to_owned()
    })?;
    let out: Output = Command::new(&ctl)
        .arg(action)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {ctl}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{ctl} {action} failed ({})\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

fn ctl(action: &str) {
    if let Err(e) = try_ctl(action) {
        panic!("{e}");
    }
}

/// Freezes the server (SIGSTOP to the postmaster and all its processes): new connections and
/// running queries hang, as in a network partition. TCP connects still complete, since the
/// kernel accepts them, so clients hang on the first reply. See also [`paused`].
pub fn pause() {
    ctl("pause");
}

/// Unfreezes the server after [`pause`].
pub fn resume() {
    ctl("resume");
}

/// `pg_ctl restart -m fast` (resuming a paused server first); returns once the server
/// accepts connections again. Every open connection is closed.
pub fn restart() {
    ctl("restart");
}

/// Pauses the server until the guard is dropped, also when the test panics.
#[must_use = "the server resumes when the guard is dropped"]
pub struct Paused(());

/// [`pause`] now, [`resume`] when the returned guard is dropped.
pub fn paused() -> Paused {
    pause();
    Paused(())
}

impl Drop for Paused {
    fn drop(&mut self) {
        if let Err(e) = try_ctl("resume") {
            if std::thread::panicking() {
                eprintln!("{e}"); // no second panic while unwinding
            } else {
                panic!("{e}");
            }
        }
    }
}

/// Terminates the server processes serving the database of `dsn_of_db` (except the one
/// running this query), only those whose `application_name` is LIKE the pattern when one is
/// given. Runs on the admin DSN; returns how many were terminated.
pub fn terminate_backends(dsn_of_db: &str, application_name_like: Option<&str>) -> usize {
    let admin = admin_dsn().expect("terminate_backends needs a cluster (TESSERA_PG_DSN)");
    let mut sql = format!(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = {} AND pid <> pg_backend_pid()",
        literal(&dbname_of(dsn_of_db))
    );
    if let Some(pattern) = application_name_like {
        sql.push_str(&format!(" AND application_name LIKE {}", literal(pattern)));
    }
    let count = psql(&admin, &sql);
    count
        .parse()
        .unwrap_or_else(|_| panic!("unexpected output of {sql:?}: {count:?}"))
}
