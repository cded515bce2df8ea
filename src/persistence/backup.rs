//! Online backup ([`Engine::backup_to`]): a consistent copy of a live engine, written while
//! readers and writers go on, that opens as a normal data directory.
//!
//! The copy is built in a temporary directory beside the target, synced, and renamed into
//! place as the last step, so the target either does not exist (or is still the empty
//! directory it was) or holds a complete backup: a crash or failure midway never leaves
//! anything at the target that looks like one.
//!
//! How the state is copied depends on the persistence (see docs/DESIGN.md, "Backup"):
//! - a durable engine switches its journal to a new generation under the writer mutex (a sync
//!   and a file creation) and then copies the snapshot and journals that hold the state at
//!   that instant, without any engine lock; writers are paused only for the switch;
//! - a salvage (read-only) engine whose open found no damage copies its files as they are
//!   (nothing can write them while it holds the shared lock);
//! - an in-memory or cluster engine, or a salvage open that stopped at damage, has no files
//!   holding its state: a new data directory is opened in the temporary directory and
//!   [`Engine::import_from`] copies the state into it (a copy-on-write cut; writers go on).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::engine::Engine;
use crate::error::{Error, ErrorKind, Result};

/// What [`Engine::backup_to`] wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackupStats {
    /// Users in the backup: the engine's user count at the instant it was taken.
    pub users: usize,
    /// Files written (journals and snapshot, the key file, profile images).
    pub files: u64,
    /// Bytes written, in all those files.
    pub bytes: u64,
}

/// How far a backup is ([`Engine::backup_to_with_progress`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackupProgress {
    /// Bytes written into the copy so far.
    pub bytes_copied: u64,
    /// Bytes the copy is expected to hold (never less than `bytes_copied`).
    pub bytes_expected: u64,
}

/// Temporary directories of backups, beside their targets: `.<target name>.backup-<pid>-<n>.tmp`.
/// A crash leaves one behind; it is never opened by anything and can be deleted.
const TMP_MARK: &str = ".backup-";

impl Engine {
    /// Writes a consistent copy of this engine's state into `dir`, which must not exist or be
    /// an empty directory; its parent is created if missing. Readers and writers go on while
    /// the copy is written. The copy is the state at one instant during the call — every
    /// write acknowledged before the call started is in it, none started after it returned
    /// is — with the signing keys and profile images; [`Engine::open`] opens it like any
    /// data directory.
    ///
    /// A durable engine pauses writers only to sync its journal and start a new one; then
    /// the files are copied with no engine lock held (a compaction asked for meanwhile waits
    /// for the copy). A salvage (read-only) engine whose open found no damage copies its
    /// files as they are. An in-memory or cluster engine, or a salvage open that stopped at
    /// damage, is copied through [`Engine::import_from`] into a new data directory (the state
    /// it holds at one instant, read while writers go on).
    ///
    /// The copy is built in a temporary directory beside `dir` (`.<name>.backup-*.tmp`),
    /// synced, and renamed to `dir` last, so a crash or an error never leaves a partial
    /// backup at `dir`. Errors: [`ErrorKind::InvalidArgument`] when `dir` is empty, names no
    /// directory entry (`/`, `..`), exists and is not an empty directory, or is filled by
    /// someone else before the copy is renamed into it; [`ErrorKind::Io`] when a file
    /// cannot be written; [`ErrorKind::Corrupt`] when a profile image or journal of the engine
    /// is damaged. On error nothing is left behind.
    ///
    /// ```
    /// use tessera::{Engine, NewUser};
    /// let base = std::env::temp_dir().join(format!("tessera-backup-doc-{}", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&base);
    /// let engine = Engine::open(base.join("data"))?;
    /// engine.create_user(NewUser::new("alice", "Alice"))?;
    /// let stats = engine.backup_to(base.join("backup"))?;
    /// assert_eq!(stats.users, 1);
    /// let copy = Engine::open(base.join("backup"))?;
    /// assert_eq!(copy.get_user("alice")?.nickname, "Alice");
    /// # drop((engine, copy)); std::fs::remove_dir_all(&base).unwrap();
    /// # Ok::<(), tessera::Error>(())
    /// ```
    pub fn backup_to(&self, dir: impl AsRef<Path>) -> Result<BackupStats> {
        self.backup_to_with_progress(dir, |_| {})
    }

    /// [`Engine::backup_to`], reporting as it goes: `progress` gets the bytes copied so far
    /// and the bytes expected (the store's files and images as they were when the copy
    /// started), for a progress bar with a rate and an ETA. A durable engine reports after
    /// each file; an engine copied through [`Engine::import_from`] (in memory, cluster, or a
    /// salvage open that stopped at damage) only once, at the end. It runs on the calling
    /// thread, and the copy goes on once it returns.
    pub fn backup_to_with_progress(
        &self,
        dir: impl AsRef<Path>,
        mut progress: impl FnMut(BackupProgress),
    ) -> Result<BackupStats> {
        let target = dir.as_ref();
        let name = target_name(target)?;
        check_target(target)?;
        let parent = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&parent)
            .map_err(|e| Error::io(&format!("creating {}", parent.display()), e))?;
        let tmp = parent.join(tmp_name(name));
        create_private_dir(&tmp)?;
        let mut report = |copied, expected| {
            progress(BackupProgress {
                bytes_copied: copied,
                bytes_expected: expected,
            })
        };
        let result = self.backup_into(&tmp, &mut report).and_then(|stats| {
            #[cfg(feature = "fault-injection")]
            crate::fault::before_backup_rename(target);
            publish(&tmp, target, &parent)?;
            Ok(stats)
        });
        if result.is_err() {
            let _ = fs::remove_dir_all(&tmp);
        }
        result
    }

    /// Fills the empty directory `tmp` with the state.
    fn backup_into(&self, tmp: &Path, progress: &mut dyn FnMut(u64, u64)) -> Result<BackupStats> {
        if let Some(stats) = self.persistence().backup_files(self, tmp, progress)? {
            return Ok(stats);
        }
        let users = {
            let copy = Engine::builder().config(self.config().clone()).open(tmp)?;
            copy.import_from(self)?
            // Dropped here: the copy's lock is released and its files are closed.
        };
        let _ = fs::remove_file(tmp.join("LOCK"));
        let (files, bytes) = count_files(tmp)?;
        crate::store::sync_tree(tmp)?;
        progress(bytes, bytes);
        Ok(BackupStats {
            users,
            files,
            bytes,
        })
    }
}

/// The target's last component, for the temporary directory's name.
fn target_name(target: &Path) -> Result<&std::ffi::OsStr> {
    if target.as_os_str().is_empty() {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            "backup dir is empty",
        ));
    }
    target.file_name().ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidArgument,
            format!(
                "backup dir {} names no directory entry to create",
                target.display()
            ),
        )
    })
}

/// The target must not exist, or be an empty directory (not a symlink to one).
fn check_target(target: &Path) -> Result<()> {
    let not_empty = || {
        Error::new(
            ErrorKind::InvalidArgument,
            format!(
                "backup dir {} exists and is not an empty directory",
                target.display()
            ),
        )
    };
    match fs::symlink_metadata(target) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(&format!("reading {}", target.display()), e)),
        Ok(m) if !m.is_dir() => Err(not_empty()),
        Ok(_) => {
            let mut entries = fs::read_dir(target)
                .map_err(|e| Error::io(&format!("listing {}", target.display()), e))?;
            match entries.next() {
                None => Ok(()),
                Some(_) => Err(not_empty()),
            }
        }
    }
}

fn tmp_name(name: &std::ffi::OsStr) -> std::ffi::OsString {
    static N: AtomicU64 = AtomicU64::new(0);
    let mut s = std::ffi::OsString::from(".");
    s.push(name);
    s.push(format!(
        "{TMP_MARK}{}-{}.tmp",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    s
}

/// A new directory readable by the owner only: a backup holds the signing keys.
fn create_private_dir(path: &Path) -> Result<()> {
    let mut b = fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(path)
        .map_err(|e| Error::io(&format!("creating {}", path.display()), e))
}

/// Renames the finished copy to `target` (replacing it if it is an empty directory) and
/// makes the rename durable.
fn publish(tmp: &Path, target: &Path, parent: &Path) -> Result<()> {
    if let Err(e) = fs::rename(tmp, target) {
        // Someone created the target, or put something in it, since it was checked.
        let kind = if matches!(
            e.kind(),
            std::io::ErrorKind::DirectoryNotEmpty
                | std::io::ErrorKind::AlreadyExists
                | std::io::ErrorKind::NotADirectory
        ) {
            ErrorKind::InvalidArgument
        } else {
            ErrorKind::Io
        };
        return Err(Error::new(
            kind,
            format!(
                "renaming the finished backup {} to {}: {e}",
                tmp.display(),
                target.display()
            ),
        ));
    }
    crate::store::sync_dir_of(parent)
}

/// Regular files under `dir` (one level of subdirectories: `images/`), and their bytes.
fn count_files(dir: &Path) -> Result<(u64, u64)> {
    let (mut files, mut bytes) = (0, 0);
    let entries =
        fs::read_dir(dir).map_err(|e| Error::io(&format!("listing {}", dir.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(&format!("listing {}", dir.display()), e))?;
        let meta = entry
            .metadata()
            .map_err(|e| Error::io(&format!("reading {}", entry.path().display()), e))?;
        if meta.is_dir() {
            let (f, b) = count_files(&entry.path())?;
            files += f;
            bytes += b;
        } else {
            files += 1;
            bytes += meta.len();
        }
    }
    Ok((files, bytes))
}
