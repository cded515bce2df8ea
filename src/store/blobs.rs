//! Content-addressed blob files (`images/<sha256 hex>`): profile images live beside the journal,
//! not inside it, so a 5 MiB upload does not bloat every snapshot.
//!
//! A blob is written to a temporary file, synced, renamed into place and the directory synced
//! *before* the journal record that points at it is appended; after a crash there may be a blob
//! that nothing points at (harmless, collectable), never a record pointing at a missing blob.
//!
//! Each write has a temporary name of its own (`<sha256 hex>.<pid>.<counter>.tmp`), so two
//! uploads of the same image never share one. Temporary files are removed only by the debris
//! sweep of open: compaction runs while uploads are in flight and must never delete the file
//! an upload is about to rename.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use super::atomic_file::{create_private, sync_dir, temp_path_for, TMP_SUFFIX};
use super::frame::hex;
use crate::error::{Error, ErrorKind, Result};

/// Name of the blob directory inside the data directory.
pub(crate) const IMAGES_DIR: &str = "images";

/// The blob directory of one data directory.
#[derive(Debug)]
pub(crate) struct BlobStore {
    dir: PathBuf,
}

impl BlobStore {
    /// Uses `<data_dir>/images`, creating it (durably) unless `read_only`.
    pub(crate) fn open(data_dir: &Path, read_only: bool) -> Result<BlobStore> {
        let dir = data_dir.join(IMAGES_DIR);
        if !read_only && !dir.is_dir() {
            fs::create_dir_all(&dir)
                .map_err(|e| Error::io(&format!("creating {}", dir.display()), e))?;
            sync_dir(data_dir)?;
        }
        Ok(BlobStore { dir })
    }

    fn path(&self, sha256: &[u8; 32]) -> PathBuf {
        self.dir.join(hex(sha256))
    }

    /// Stores `bytes` under `sha256` durably. Storing the same blob again does nothing: a file
    /// with the final name was complete and synced before its rename.
    pub(crate) fn put(&self, sha256: &[u8; 32], bytes: &[u8]) -> Result<()> {
        let path = self.path(sha256);
        if let Ok(meta) = fs::metadata(&path) {
            if meta.len() == bytes.len() as u64 {
                // Refresh its time so that collection (which spares recent blobs) cannot
                // remove it between now and the append of the record that refers to it.
                return fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .and_then(|f| f.set_modified(SystemTime::now()))
                    .map_err(|e| Error::io(&format!("touching {}", path.display()), e));
            }
        }
        let tmp = temp_path_for(&path);
        let io_err = |what: &str, e: io::Error| Error::io(&format!("{what} {}", tmp.display()), e);
        let result = (|| {
            let mut f = create_private(&tmp).map_err(|e| io_err("creating", e))?;
            f.write_all(bytes).map_err(|e| io_err("writing", e))?;
            f.sync_all().map_err(|e| io_err("syncing", e))?;
            fs::rename(&tmp, &path).map_err(|e| io_err("renaming", e))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result?;
        sync_dir(&self.dir)
    }

    /// The blob stored under `sha256`, checked against its address so a damaged file is
    /// reported rather than served.
    pub(crate) fn get(&self, sha256: &[u8; 32]) -> Result<Option<Vec<u8>>> {
        let path = self.path(sha256);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&format!("reading {}", path.display()), e)),
        };
        if Sha256::digest(&bytes).as_slice() != sha256 {
            return Err(Error::new(
                ErrorKind::Corrupt,
                format!(
                    "{}: contents do not match the file's SHA-256 name",
                    path.display()
                ),
            ));
        }
        Ok(Some(bytes))
    }

    /// Removes the blob if it was last written before `cutoff` (a blob written later may belong
    /// to a write whose record is not yet appended). Returns whether it was removed.
    pub(crate) fn remove_if_older(&self, sha256: &[u8; 32], cutoff: SystemTime) -> Result<bool> {
        let path = self.path(sha256);
        let modified = match fs::metadata(&path).and_then(|m| m.modified()) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(Error::io(&format!("reading {}", path.display()), e)),
        };
        if modified >= cutoff {
            return Ok(false);
        }
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io(&format!("removing {}", path.display()), e)),
        }
    }

    /// Every stored blob address. Never touches a temporary file: one may belong to a
    /// [`BlobStore::put`] in flight on another thread.
    pub(crate) fn list(&self) -> Result<Vec<[u8; 32]>> {
        let mut out = Vec::new();
        self.for_each_entry(|name, _| {
            if let Some(sha) = parse_hex32(name) {
                out.push(sha);
            }
        })?;
        Ok(out)
    }

    /// Removes the temporary files of writes a crash interrupted. Only for open, which holds
    /// the directory lock exclusively and has not handed the store out yet, so no write of
    /// this data directory can be in flight: at any later time a temporary file may be the
    /// one a concurrent [`BlobStore::put`] is about to rename.
    pub(crate) fn remove_debris(&self) -> Result<()> {
        self.for_each_entry(|name, path| {
            if name.ends_with(TMP_SUFFIX) {
                let _ = fs::remove_file(path);
            }
        })
    }

    fn for_each_entry(&self, mut f: impl FnMut(&str, &Path)) -> Result<()> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io(&format!("listing {}", self.dir.display()), e)),
        };
        for entry in entries {
            let entry =
                entry.map_err(|e| Error::io(&format!("listing {}", self.dir.display()), e))?;
            if let Some(name) = entry.file_name().to_str() {
                f(name, &entry.path());
            }
        }
        Ok(())
    }
}

fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::atomic_file::test_dir::TestDir;

    fn sha(bytes: &[u8]) -> [u8; 32] {
        Sha256::digest(bytes).into()
    }

    #[test]
    fn put_is_idempotent_get_verifies_and_only_the_debris_sweep_removes_temporaries() {
        let dir = TestDir::new("blobs");
        let blobs = BlobStore::open(dir.path(), false).unwrap();
        let img = b"\x89PNG not really".to_vec();
        let h = sha(&img);
        assert_eq!(blobs.get(&h).unwrap(), None);
        blobs.put(&h, &img).unwrap();
        blobs.put(&h, &img).unwrap();
        assert_eq!(blobs.get(&h).unwrap(), Some(img.clone()));
        let file = dir.path().join(IMAGES_DIR).join(hex(&h));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&file).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }

        // Listing leaves temporary files alone (one may be a write in flight); only the
        // debris sweep of open removes them.
        fs::write(dir.path().join(IMAGES_DIR).join("x.1.2.tmp"), b"debris").unwrap();
        assert_eq!(blobs.list().unwrap(), vec![h]);
        assert_eq!(
            fs::read_dir(dir.path().join(IMAGES_DIR)).unwrap().count(),
            2
        );
        blobs.remove_debris().unwrap();
        assert_eq!(blobs.list().unwrap(), vec![h]);
        assert_eq!(
            fs::read_dir(dir.path().join(IMAGES_DIR)).unwrap().count(),
            1
        );

        // Collection spares blobs written after the cutoff.
        let before = SystemTime::now() - std::time::Duration::from_secs(60);
        assert!(!blobs.remove_if_older(&h, before).unwrap());
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(blobs.remove_if_older(&h, SystemTime::now()).unwrap());
        assert_eq!(blobs.get(&h).unwrap(), None);
        blobs.put(&h, &img).unwrap();

        fs::write(&file, b"\x89PNG not reallY").unwrap();
        assert_eq!(blobs.get(&h).unwrap_err().kind(), ErrorKind::Corrupt);
    }
}
