//! Fault injection for crash tests (cargo feature `fault-injection`, off by default; the test
//! suite turns it on through a dev-dependency on this crate). Holds the journal's group commit
//! just before it writes a batch, so a test can kill the process at the worst instant: a
//! mutation applied in memory, its record not yet in the file. Holds a compaction at one of
//! its stages ([`CompactionStage`]), so a test can write meanwhile and kill the process there.
//! Also holds a backup just before it publishes its finished copy.
//!
//! Not part of the supported API: nothing here exists in a default build.

use parking_lot::{Condvar, Mutex};
use std::path::{Path, PathBuf};

#[derive(Default)]
struct Latch {
    held: bool,
    /// Leaders waiting in [`before_journal_write`].
    waiting: usize,
}

static LATCH: Mutex<Latch> = Mutex::new(Latch {
    held: false,
    waiting: 0,
});
static CHANGED: Condvar = Condvar::new();
static COMMITS: Mutex<Latch> = Mutex::new(Latch {
    held: false,
    waiting: 0,
});
static COMMITS_CHANGED: Condvar = Condvar::new();

/// From now on, every journal batch stops before it is written, until [`release_syncs`].
pub fn hold_syncs() {
    LATCH.lock().held = true;
}

/// Lets held batches go on to be written and synced.
pub fn release_syncs() {
    LATCH.lock().held = false;
    CHANGED.notify_all();
}

/// How many journal batches are stopped right now. Once this is nonzero for a write call, its
/// mutation is applied in memory and its record is not in the file.
pub fn held_batches() -> usize {
    LATCH.lock().waiting
}

/// Called by the journal's leader before it writes a batch (with no lock held).
pub(crate) fn before_journal_write() {
    wait_while_held(&LATCH, &CHANGED);
}

/// From now on, every cluster write stops just before its `COMMIT` (its log entry inserted,
/// the head row locked), until [`release_cluster_commits`]: a deliberately delayed commit.
pub fn hold_cluster_commits() {
    COMMITS.lock().held = true;
}

/// Lets held cluster commits go on.
pub fn release_cluster_commits() {
    COMMITS.lock().held = false;
    COMMITS_CHANGED.notify_all();
}

/// How many cluster writes are stopped before their commit right now.
pub fn held_cluster_commits() -> usize {
    COMMITS.lock().waiting
}

/// Called by a cluster write just before it commits.
#[allow(dead_code)] // without the postgres feature
pub(crate) fn before_cluster_commit() {
    wait_while_held(&COMMITS, &COMMITS_CHANGED);
}

fn wait_while_held(latch: &Mutex<Latch>, changed: &Condvar) {
    let mut latch = latch.lock();
    if !latch.held {
        return;
    }
    latch.waiting += 1;
    while latch.held {
        changed.wait(&mut latch);
    }
    latch.waiting -= 1;
}

/// Targets whose backups stop just before the rename that publishes them, and how many are
/// stopped there now.
static BACKUPS: Mutex<(Vec<std::path::PathBuf>, usize)> = Mutex::new((Vec::new(), 0));
static BACKUPS_CHANGED: Condvar = Condvar::new();

/// From now on, a backup into `target` (the path exactly as passed to `Engine::backup_to`)
/// stops once its copy is complete and synced, just before it is renamed into place, until
/// [`release_backup_into`]: the worst instant for a crash. Backups into other targets go on.
pub fn hold_backup_into(target: &std::path::Path) {
    BACKUPS.lock().0.push(target.to_path_buf());
}

/// Lets a held backup into `target` go on to its rename.
pub fn release_backup_into(target: &std::path::Path) {
    BACKUPS.lock().0.retain(|t| t != target);
    BACKUPS_CHANGED.notify_all();
}

/// How many backups are stopped before their rename right now.
pub fn held_backups() -> usize {
    BACKUPS.lock().1
}

/// Called by a backup into `target` just before it renames the finished copy into place.
pub(crate) fn before_backup_rename(target: &std::path::Path) {
    let mut held = BACKUPS.lock();
    if !held.0.iter().any(|t| t == target) {
        return;
    }
    held.1 += 1;
    while held.0.iter().any(|t| t == target) {
        BACKUPS_CHANGED.wait(&mut held);
    }
    held.1 -= 1;
}

/// The instants of a compaction a test can stop it at ([`hold_compaction`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompactionStage {
    /// The new journal has taken over and the copy of the state is cut, the writer mutex is
    /// released, nothing is copied yet.
    Switched,
    /// Half of the users' handles are copied into the snapshot's temporary file.
    MidCopy,
    /// The snapshot is durable under its final name; the files it supersedes are still
    /// there.
    SnapshotRenamed,
}

struct StageLatch {
    /// Compactions of this data directory stop at this stage.
    held: Option<(PathBuf, CompactionStage)>,
    /// Where a compaction is stopped right now.
    waiting_at: Option<CompactionStage>,
}

static STAGE: Mutex<StageLatch> = Mutex::new(StageLatch {
    held: None,
    waiting_at: None,
});
static STAGE_CHANGED: Condvar = Condvar::new();

/// From now on, every compaction of the data directory `dir` stops when it reaches `stage`,
/// until [`release_compaction`]. Replaces an earlier hold: a compaction stopped at another
/// stage goes on (to stop at this one, if it is later).
pub fn hold_compaction(dir: &Path, stage: CompactionStage) {
    STAGE.lock().held = Some((dir.to_path_buf(), stage));
    STAGE_CHANGED.notify_all();
}

/// Lets held compactions go on.
pub fn release_compaction() {
    STAGE.lock().held = None;
    STAGE_CHANGED.notify_all();
}

/// The stage a compaction is stopped at right now, if any.
pub fn compaction_waiting_at() -> Option<CompactionStage> {
    STAGE.lock().waiting_at
}

/// Called by a compaction of `dir` when it reaches `stage` (with no lock held).
pub(crate) fn at_compaction_stage(dir: &Path, stage: CompactionStage) {
    let mut latch = STAGE.lock();
    let held = |l: &StageLatch| matches!(&l.held, Some((d, s)) if d == dir && *s == stage);
    if !held(&latch) {
        return;
    }
    latch.waiting_at = Some(stage);
    while held(&latch) {
        STAGE_CHANGED.wait(&mut latch);
    }
    latch.waiting_at = None;
}
