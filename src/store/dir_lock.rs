//! One process per data directory: an advisory lock on `<dir>/LOCK`.
//!
//! `File::try_lock` is `flock(2)` on Unix. Its lock belongs to the open file description, so a
//! second open inside the same process conflicts just like one from another process, and the
//! kernel drops it when the process dies — a crash never leaves a stale lock behind.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;

use crate::error::{Error, ErrorKind, Result};

/// Name of the lock file inside the data directory.
pub(crate) const LOCK_FILE: &str = "LOCK";

/// Holds the lock until dropped.
#[derive(Debug)]
pub(crate) struct DirLock {
    _file: File,
}

impl DirLock {
    /// Takes the exclusive lock for a read-write open.
    pub(crate) fn exclusive(dir: &Path) -> Result<DirLock> {
        let path = dir.join(LOCK_FILE);
        let mut opts = OpenOptions::new();
        opts.read(true).write(true).create(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let file = opts
            .open(&path)
            .map_err(|e| Error::io(&format!("opening lock file {}", path.display()), e))?;
        match file.try_lock() {
            Ok(()) => Ok(DirLock { _file: file }),
            Err(e) => Err(lock_error(dir, e)),
        }
    }

    /// Takes a shared lock for a read-only (salvage) open, so salvage never reads a directory
    /// that a writer is changing, while several salvage readers may coexist. A directory
    /// without a lock file (never opened read-write) needs no lock.
    pub(crate) fn shared(dir: &Path) -> Result<Option<DirLock>> {
        let path = dir.join(LOCK_FILE);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(Error::io(
                    &format!("opening lock file {}", path.display()),
                    e,
                ))
            }
        };
        match file.try_lock_shared() {
            Ok(()) => Ok(Some(DirLock { _file: file })),
            Err(e) => Err(lock_error(dir, e)),
        }
    }
}

fn lock_error(dir: &Path, e: TryLockError) -> Error {
    match e {
        TryLockError::WouldBlock => Error::new(
            ErrorKind::Locked,
            format!(
                "data directory {} is in use by another engine (in this or another process); \
                 close it first",
                dir.display()
            ),
        ),
        TryLockError::Error(e) => Error::io(&format!("locking {}", dir.display()), e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::atomic_file::test_dir::TestDir;

    #[test]
    fn second_lock_is_refused_until_the_first_is_dropped() {
        let dir = TestDir::new("lock");
        let first = DirLock::exclusive(dir.path()).unwrap();
        let e = DirLock::exclusive(dir.path()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Locked);
        assert!(e.message().contains("in use"), "{e}");
        assert_eq!(
            DirLock::shared(dir.path()).unwrap_err().kind(),
            ErrorKind::Locked
        );
        drop(first);
        let shared = DirLock::shared(dir.path()).unwrap();
        assert!(shared.is_some());
        assert!(DirLock::shared(dir.path()).unwrap().is_some());
        assert_eq!(
            DirLock::exclusive(dir.path()).unwrap_err().kind(),
            ErrorKind::Locked
        );
        drop(shared);
        DirLock::exclusive(dir.path()).unwrap();
    }
}
