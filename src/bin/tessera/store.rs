//! Which store a command works on, how it is opened, and the whole-store commands: stats,
//! backup, restore, compact.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;
use std::sync::OnceLock;

use tessera::{ConfigDocument, Engine, Error, ErrorKind, SyncMode};

use crate::failure::{self, Failure};
use crate::output::{self, Out};

/// The `--config` document, read once at start-up; every open uses it.
static SETTINGS: OnceLock<ConfigDocument> = OnceLock::new();

/// Reads `--config FILE`: the JSON document a C or Python server passes as `config_json`
/// ([`tessera::parse_config_document`]), so the tool applies the server's own limits, id
/// rules, sync mode and cluster options. Without it, the defaults.
pub fn load_settings(path: Option<&Path>) -> Result<(), Failure> {
    let doc = match path {
        Some(p) => {
            let bytes = std::fs::read(p)
                .map_err(|e| failure::io(format!("reading --config {}", p.display()), e))?;
            tessera::parse_config_document(&bytes).map_err(|e| {
                Failure::from(Error::new(
                    e.kind(),
                    format!("--config {}: {}", p.display(), e.message()),
                ))
            })?
        }
        None => tessera::parse_config_document(b"{}")?,
    };
    let _ = SETTINGS.set(doc);
    Ok(())
}

fn settings() -> &'static ConfigDocument {
    SETTINGS.get_or_init(|| tessera::parse_config_document(b"{}").expect("the empty document"))
}

/// The store named on the command line.
#[derive(Clone, Debug)]
pub enum Target {
    /// An embedded data directory.
    Dir(PathBuf),
    /// A PostgreSQL cluster, by connection string (never printed: it may hold a password).
    Pg(String),
}

/// How a command uses the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Reads only: a data directory is opened read-only (shared lock, nothing written), and
    /// must exist.
    Read,
    /// Writes, each synced before the command goes on.
    Write,
    /// Many writes (imports): synced in the background and all at once at the end
    /// ([`finish_bulk`]), so an import costs one sync, not one per user.
    Bulk,
}

impl Target {
    /// `--data` wins, then `--pg`, then `TESSERA_PG_DSN`, then `./tessera-data`.
    pub fn choose(data: Option<PathBuf>, pg: Option<String>) -> Target {
        if let Some(d) = data {
            return Target::Dir(d);
        }
        if let Some(p) = pg {
            return Target::Pg(p);
        }
        match std::env::var("TESSERA_PG_DSN") {
            Ok(dsn) if !dsn.trim().is_empty() => Target::Pg(dsn),
            _ => Target::Dir(PathBuf::from("tessera-data")),
        }
    }

    /// A name for messages.
    pub fn describe(&self) -> String {
        match self {
            Target::Dir(d) => d.display().to_string(),
            Target::Pg(_) => "the cluster".to_owned(),
        }
    }

    pub fn open(&self, access: Access) -> Result<Engine, Failure> {
        match self {
            Target::Dir(dir) => open_dir(dir, access),
            Target::Pg(dsn) => open_pg(dsn),
        }
    }
}

fn open_dir(dir: &Path, access: Access) -> Result<Engine, Failure> {
    match access {
        Access::Read => {
            if !dir.is_dir() {
                return Err(Failure::from(Error::new(
                    ErrorKind::Io,
                    format!("no data directory at {}", dir.display()),
                )));
            }
            // A salvage open is the read-only one: shared lock, nothing changed on disk. Damage
            // it would skip is an error here, not a silently shorter answer.
            let (engine, damage) = Engine::builder()
                .config(settings().config.clone())
                .open_salvage(dir)?;
            match damage {
                Some(e) => Err(Failure::from(e)),
                None => Ok(engine),
            }
        }
        Access::Write => Ok(Engine::builder()
            .config(settings().config.clone())
            .sync_mode(settings().sync_mode)
            .open(dir)?),
        Access::Bulk => Ok(Engine::builder()
            .config(settings().config.clone())
            .sync_mode(SyncMode::Relaxed(Duration::from_millis(200)))
            .open(dir)?),
    }
}

#[cfg(feature = "postgres")]
fn open_pg(dsn: &str) -> Result<Engine, Failure> {
    let s = settings();
    Ok(Engine::builder()
        .config(s.config.clone())
        .open_postgres(dsn, s.cluster.clone())?)
}

#[cfg(not(feature = "postgres"))]
fn open_pg(_dsn: &str) -> Result<Engine, Failure> {
    Err(Failure::from(Error::new(
        ErrorKind::InvalidArgument,
        "this build has no cluster mode (built without the `postgres` feature)",
    )))
}

/// Makes a bulk-written store durable and compact: one sync and a fresh snapshot (the journal
/// of a large import would otherwise be replayed at every open).
pub fn finish_bulk(engine: &Engine) -> Result<(), Failure> {
    engine.compact().map_err(Failure::from)
}

pub fn stats(target: &Target, out: &Out) -> Result<(), Failure> {
    let engine = target.open(Access::Read)?;
    let s = engine.store_stats();
    let keys = engine.keys();
    let (bytes, files) = match target {
        Target::Dir(d) => dir_size(d),
        Target::Pg(_) => (0, 0),
    };
    if out.json {
        return out.json(&json!({
            "users": engine.user_count(),
            "signing_keys": keys.len(),
            "active_key": keys.iter().find(|k| k.active).map(|k| k.key_id.to_string()),
            "store": {
                "records_synced": s.records_synced,
                "syncs": s.syncs,
                "bytes_written": s.bytes_written,
                "torn_tail_bytes": s.torn_tail_bytes,
                "torn_tail_records": s.torn_tail_records,
            },
            "disk_bytes": bytes,
            "disk_files": files,
        }));
    }
    let mut rows = vec![
        ("store", target.describe()),
        ("users", engine.user_count().to_string()),
        ("signing keys", keys.len().to_string()),
        (
            "active key",
            keys.iter()
                .find(|k| k.active)
                .map(|k| k.key_id.to_string())
                .unwrap_or_default(),
        ),
        (
            "torn tail cut at open",
            format!("{} bytes", s.torn_tail_bytes),
        ),
    ];
    if matches!(target, Target::Dir(_)) {
        rows.push(("on disk", format!("{bytes} bytes in {files} files")));
    }
    out.fields(rows)
}

fn dir_size(dir: &Path) -> (u64, u64) {
    let mut bytes = 0;
    let mut files = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => {
                    bytes += m.len();
                    files += 1;
                }
                Err(_) => {}
            }
        }
    }
    (bytes, files)
}

pub fn compact(target: &Target, out: &Out) -> Result<(), Failure> {
    let engine = target.open(Access::Write)?;
    let before = match target {
        Target::Dir(d) => dir_size(d).0,
        Target::Pg(_) => 0,
    };
    let pb = output::spinner("compacting");
    let started = Instant::now();
    let result = engine.compact();
    pb.finish_and_clear();
    result?;
    drop(engine);
    let after = match target {
        Target::Dir(d) => dir_size(d).0,
        Target::Pg(_) => 0,
    };
    if out.json {
        return out.json(
            &json!({"compacted": true, "bytes_before": before, "bytes_after": after,
            "seconds": started.elapsed().as_secs_f64()}),
        );
    }
    out.line(&format!(
        "compacted {} in {:.2} s: {before} -> {after} bytes on disk",
        target.describe(),
        started.elapsed().as_secs_f64()
    ))
}

/// A directory that may be created as a new store: absent, or an empty directory.
fn check_empty_dir(dir: &Path, what: &str) -> Result<(), Failure> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(failure::invalid(format!(
                    "{what} {} is not empty; choose a new directory",
                    dir.display()
                )));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(failure::io(dir.display(), e)),
    }
}

/// Copies `source` into the new data directory `dest` with [`Engine::backup_to`]: built
/// beside it and renamed into place, so an interrupted copy never looks like a store. Shows
/// the bytes copied, the rate and the ETA.
fn copy_store(source: &Engine, dest: &Path, what: &str) -> Result<usize, Failure> {
    let pb = output::byte_bar(what);
    let result = source.backup_to_with_progress(dest, |p| {
        pb.set_length(p.bytes_expected);
        pb.set_position(p.bytes_copied);
    });
    pb.finish_and_clear();
    Ok(result?.users)
}

pub fn backup(target: &Target, dest: &Path, out: &Out) -> Result<(), Failure> {
    check_empty_dir(dest, "backup directory")?;
    let engine = target.open(Access::Read)?;
    let started = Instant::now();
    let users = copy_store(&engine, dest, "backing up")?;
    let secs = started.elapsed().as_secs_f64();
    if out.json {
        return out.json(
            &json!({"backup": dest.display().to_string(), "users": users,
            "seconds": secs}),
        );
    }
    out.line(&format!(
        "backed up {users} users of {} into {} in {secs:.2} s",
        target.describe(),
        dest.display()
    ))
}

pub fn restore(backup: &Path, target: &Target, out: &Out) -> Result<(), Failure> {
    // The backup must open, intact, before anything is written.
    let source = open_dir(backup, Access::Read)?;
    let started = Instant::now();
    let users = match target {
        Target::Dir(dest) => {
            check_empty_dir(dest, "data directory")?;
            copy_store(&source, dest, "restoring")?
        }
        Target::Pg(_) => {
            // One transaction: nothing to count until it commits.
            let pb = output::spinner("restoring");
            let result = target.open(Access::Write).and_then(|cluster| {
                if cluster.user_count() != 0 {
                    return Err(failure::invalid(
                        "the cluster already holds users; restore needs an empty one",
                    ));
                }
                cluster.import_from(&source).map_err(Failure::from)
            });
            pb.finish_and_clear();
            result?
        }
    };
    let secs = started.elapsed().as_secs_f64();
    if out.json {
        return out.json(&json!({"restored": users, "seconds": secs}));
    }
    out.line(&format!(
        "restored {users} users from {} into {} in {secs:.2} s",
        backup.display(),
        target.describe()
    ))
}
