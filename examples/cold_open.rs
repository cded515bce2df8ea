//! Cold open of a big data directory (issue 3 target: 1 M users with 2 access tokens each
//! open in ≤ 2 s; issue 13: 10 M users in ≤ 10 s). Builds the users through the public API in
//! an in-memory engine and copies them into the directory with `Engine::import_from` (issuing
//! each token on a durable engine would wait for its own fdatasync — token issue waits for
//! the real sync in every mode — i.e. hours for millions of tokens), then times
//! `Engine::open` twice: as left by the import (snapshot and/or journal, whatever the store
//! wrote), and right after `compact()` (snapshot only).
//!
//! `cargo run --release --example cold_open [USERS]` (default 1000000; needs ~1.2 GB of RAM per
//! million users while building, ~0.45 GB per million to open, and ~0.2 GB of disk per
//! million). The page cache is warm for the second open of the same files, as after a process
//! restart; dropping it needs root (`echo 3 > /proc/sys/vm/drop_caches`), which
//! `--drop-caches` does before each open when permitted.

use std::time::{Duration, Instant};
use tessera::{Engine, NewUser, SyncMode};

fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

/// CPU seconds (user + system) this process has used, from `/proc/self/stat` (Linux): less
/// sensitive than wall time to other processes competing for the machine's cores.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn timed_open(dir: &std::path::Path, drop_caches: bool, users: usize, what: &str) {
    if drop_caches {
        let _ = std::process::Command::new("sync").status();
        if std::fs::write("/proc/sys/vm/drop_caches", "3").is_err() {
            eprintln!("(cannot drop caches; measuring with a warm page cache)");
        }
    }
    let (t, cpu) = (Instant::now(), cpu_seconds());
    let engine = Engine::open(dir).unwrap();
    let (took, cpu) = (t.elapsed(), cpu_seconds() - cpu);
    assert_eq!(engine.user_count(), users);
    println!(
        "open {what}: {:.2} s wall, {cpu:.2} s CPU ({} MB on disk)",
        took.as_secs_f64(),
        dir_bytes(dir) / 1_000_000
    );
}

fn main() {
    let users: usize = std::env::args()
        .nth(1)
        .filter(|a| !a.starts_with("--"))
        .map(|s| s.parse().unwrap())
        .unwrap_or(1_000_000);
    let drop_caches = std::env::args().any(|a| a == "--drop-caches");
    let dir = std::env::temp_dir().join(format!("tessera-cold-open-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);

    let t = Instant::now();
    {
        let source = Engine::in_memory().unwrap();
        for i in 0..users {
            let id = format!("user{i:08}");
            source
                .create_user(NewUser::new(id.as_str(), "A. User"))
                .unwrap();
            source.issue_access_token(&id, Some("phone")).unwrap();
            source.issue_access_token(&id, None).unwrap();
        }
        let built = t.elapsed();
        let engine = Engine::builder()
            .sync_mode(SyncMode::Relaxed(Duration::from_millis(50)))
            .open(&dir)
            .unwrap();
        assert_eq!(engine.import_from(&source).unwrap(), users);
        println!(
            "built {users} users with 2 access tokens each in {:.1} s, imported in {:.1} s",
            built.as_secs_f64(),
            (t.elapsed() - built).as_secs_f64()
        );
    }
    timed_open(
        &dir,
        drop_caches,
        users,
        "after import (as the store left it)",
    );
    {
        let engine = Engine::open(&dir).unwrap();
        let t = Instant::now();
        engine.compact().unwrap();
        println!("compact: {:.2} s", t.elapsed().as_secs_f64());
    }
    timed_open(&dir, drop_caches, users, "after compact (snapshot only)");
    if std::env::args().any(|a| a == "--keep") {
        println!("kept {}", dir.display());
    } else {
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
