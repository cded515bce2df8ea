//! Files that appear whole or not at all: write a private temporary file, sync it, rename it
//! into place, sync the directory. Every store file is created with mode 0600 because journals
//! and snapshots hold user records and token digests, and the key file holds signing keys.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

/// Suffix of temporary files; anything ending in it is debris of a crash and removed on open.
pub(crate) const TMP_SUFFIX: &str = ".tmp";

/// Creates a new file readable and writable by the owner only. Fails if it exists.
pub(crate) fn create_private(path: &Path) -> io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)
}

/// Makes a rename or a file creation in `dir` durable. Without this, a power loss can forget
/// that the file exists even though its contents were synced.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(&format!("syncing directory {}", dir.display()), e))
}

/// A temporary path beside `path` that no other writer in this process or another uses.
pub(crate) fn temp_path_for(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.{n}{TMP_SUFFIX}", std::process::id()));
    path.with_file_name(name)
}

/// Atomically replaces (or creates) `path` with `bytes`, durably, with mode 0600.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_path_for(path);
    let io_err = |what: &str, e| Error::io(&format!("{what} {}", tmp.display()), e);
    let result = (|| {
        let mut f = create_private(&tmp).map_err(|e| io_err("creating", e))?;
        f.write_all(bytes).map_err(|e| io_err("writing", e))?;
        f.sync_all().map_err(|e| io_err("syncing", e))?;
        fs::rename(&tmp, path).map_err(|e| {
            Error::io(
                &format!("renaming {} to {}", tmp.display(), path.display()),
                e,
            )
        })
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

#[cfg(test)]
pub(crate) mod test_dir {
    //! Scratch directories for tests, removed on drop (no `tempfile` dependency needed).
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU64, Ordering};

    pub(crate) struct TestDir(PathBuf);

    impl TestDir {
        pub(crate) fn new(name: &str) -> TestDir {
            TestDir::under(&std::env::temp_dir(), name)
        }

        /// In memory (`/dev/shm`) where there is one, so a test that opens a store thousands
        /// of times does not wait for the disk's syncs; the system temp dir elsewhere.
        pub(crate) fn in_memory(name: &str) -> TestDir {
            let shm = Path::new("/dev/shm");
            if shm.is_dir() {
                TestDir::under(shm, name)
            } else {
                TestDir::new(name)
            }
        }

        fn under(base: &Path, name: &str) -> TestDir {
            static N: AtomicU64 = AtomicU64::new(0);
            let path = base.join(format!(
                "tessera-test-{}-{}-{name}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).unwrap();
            TestDir(path)
        }

        pub(crate) fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TestDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_dir::TestDir;
    use super::*;

    #[test]
    fn atomic_write_replaces_leaves_no_temp_and_is_private() {
        let dir = TestDir::new("atomic");
        let p = dir.path().join("f");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("f")]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
    }
}
