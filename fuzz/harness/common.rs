//! Shared by the fuzz harnesses: fixtures and scratch directories.
//!
//! Every harness module is compiled twice: into its cargo-fuzz target (fuzz/fuzz_targets/) and
//! into `tests/fuzz_corpora.rs`, which replays the committed corpora under `cargo test`.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

/// A key file written by the engine (three keys, key 3 active). Test-only secrets.
pub const KEYS: &[u8] = include_bytes!("../fixtures/keys");
/// Journal generation 1 of a directory with users, devices and tokens.
pub const JOURNAL_1: &[u8] = include_bytes!("../fixtures/journal-0000000000000001.tsj");
/// Snapshot generation 2 (after a compaction of that directory).
pub const SNAPSHOT_2: &[u8] = include_bytes!("../fixtures/snapshot-0000000000000002.tss");
/// Journal generation 2: the changes made after that compaction.
pub const JOURNAL_2: &[u8] = include_bytes!("../fixtures/journal-0000000000000002.tsj");

/// The fixed time every harness engine reads (2023-11-14T22:13:20Z).
pub const NOW_MS: i64 = 1_700_000_000_000;
pub const DAY_MS: i64 = 86_400_000;

/// A fresh, empty scratch directory, removed on drop. On tmpfs when there is one: the store
/// harness opens a data directory per input, and a disk's fsync would dominate.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(what: &str) -> Scratch {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let shm = std::path::Path::new("/dev/shm");
        let base = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = base.join(format!("tessera-fuzz-{what}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Applies edits to `base`, driven by `ops` three bytes at a time: `(kind, position, byte)`
/// replaces, inserts or deletes one byte. Lets the fuzzer work near a valid token it could not
/// produce itself (the fixture engines issue them at start-up).
pub fn mutate(base: &[u8], ops: &[u8]) -> Vec<u8> {
    let mut out = base.to_vec();
    for op in ops.chunks_exact(3) {
        let pos = usize::from(op[1]);
        match op[0] % 4 {
            0 if !out.is_empty() => {
                let at = pos % out.len();
                out[at] = op[2];
            }
            1 => {
                let at = pos % (out.len() + 1);
                out.insert(at, op[2]);
            }
            2 if !out.is_empty() => {
                let at = pos % out.len();
                out.remove(at);
            }
            3 if !out.is_empty() => {
                let at = pos % out.len();
                out[at] ^= op[2];
            }
            _ => {}
        }
    }
    out
}
