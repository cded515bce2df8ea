//! Online backup of a data directory: the files that hold the state at one instant, copied
//! while the store keeps going.
//!
//! [`Store::begin_backup`], called with the engine's writer mutex held, syncs the journal and
//! continues in a new generation, exactly as a compaction starts — but writes no snapshot. The
//! state at that instant is then the newest snapshot plus the journals up to the one just
//! switched out, and none of those files is written again: the journal goes on in the new
//! generation. [`BackupSource::copy_into`] copies them (with the key ring the engine held at
//! that instant and the profile images) without any engine lock, so readers and writers go on
//! meanwhile. The caller keeps compaction from deleting them until the copy is done.
//!
//! A journal generation without a snapshot of its own is what a crash between a compaction's
//! switch and its snapshot leaves, so the copy is a data directory like any other.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::atomic_file::{create_private, sync_dir};
use super::blobs::IMAGES_DIR;
use super::frame::hex;
use super::key_file::{write_key_file, KEY_FILE};
use super::{
    create_journal, journal_name, parse_generation, snapshot_name, Store, JOURNAL_PREFIX,
    JOURNAL_SUFFIX, SNAPSHOT_PREFIX, SNAPSHOT_SUFFIX,
};
use crate::error::{Error, ErrorKind, Result};

/// The files holding the state at the instant of [`Store::begin_backup`].
#[derive(Debug)]
pub(crate) struct BackupSource {
    dir: PathBuf,
    /// The newest snapshot, if any.
    snapshot: Option<String>,
    /// The journals from the snapshot's generation (or 1) up to the one switched out.
    journals: Vec<String>,
}

/// What [`BackupSource::copy_into`] wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Copied {
    /// Files written (snapshot, journals, key file, images).
    pub(crate) files: u64,
    /// Bytes written.
    pub(crate) bytes: u64,
}

impl Store {
    /// Whether this is a read-only salvage open (no journal to switch).
    pub(crate) fn is_read_only(&self) -> bool {
        self.journal.is_none()
    }

    /// Syncs the journal and continues in a new generation, and returns the files that hold
    /// the state at this instant. Call with the engine's writer mutex held, so that no record
    /// is appended in between, and keep compaction away until the copy is done: it deletes
    /// what a new snapshot makes obsolete.
    pub(crate) fn begin_backup(&self) -> Result<BackupSource> {
        let journal = self.journal()?;
        let mut generation = self.generation.lock();
        let current = *generation;
        let next = current + 1;
        journal.sync_all()?;
        let (file, salt) = create_journal(&self.dir, next)?;
        journal.switch_to(
            std::sync::Arc::new(file),
            self.dir.join(journal_name(next)),
            salt,
            // create_journal already synced the directory.
            None,
        )?;
        *generation = next;
        drop(generation);
        self.backup_source(current)
    }

    /// The files of a read-only (salvage) open, which nothing can change while it holds its
    /// shared lock (a writer needs the exclusive one): the state it loaded, as long as the
    /// open stopped at no damage (the caller checks). A torn tail is copied as it is; the
    /// copy's own first open cuts it, as this store's would.
    pub(crate) fn read_only_backup_source(&self) -> Result<BackupSource> {
        let current = *self.generation.lock();
        self.backup_source(current)
    }

    /// The newest snapshot up to generation `current` and the journals from it to `current`.
    fn backup_source(&self, current: u64) -> Result<BackupSource> {
        let mut snapshots = Vec::new();
        let mut journals = Vec::new();
        let entries = fs::read_dir(&self.dir)
            .map_err(|e| Error::io(&format!("listing {}", self.dir.display()), e))?;
        for entry in entries {
            let entry =
                entry.map_err(|e| Error::io(&format!("listing {}", self.dir.display()), e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(g) = parse_generation(name, SNAPSHOT_PREFIX, SNAPSHOT_SUFFIX) {
                snapshots.push(g);
            } else if let Some(g) = parse_generation(name, JOURNAL_PREFIX, JOURNAL_SUFFIX) {
                journals.push(g);
            }
        }
        // A snapshot newer than the switched-out journal cannot exist while compaction is kept
        // away; skipping one anyway keeps the copy at the instant of the switch.
        let base = snapshots.into_iter().filter(|&g| g <= current).max();
        let first = base.unwrap_or(1);
        journals.retain(|&g| g >= first && g <= current);
        journals.sort_unstable();
        // The same rule as open: journals run without a gap from the snapshot's generation to
        // the one switched out. A copy missing one would not open (or would lose records).
        if journals.len() as u64 != current + 1 - first
            || journals.iter().zip(first..).any(|(&g, want)| g != want)
        {
            return Err(Error::new(
                ErrorKind::Corrupt,
                format!(
                    "{}: the journals {} to {} are not all there",
                    self.dir.display(),
                    journal_name(first),
                    journal_name(current)
                ),
            ));
        }
        Ok(BackupSource {
            dir: self.dir.clone(),
            snapshot: base.map(snapshot_name),
            journals: journals.into_iter().map(journal_name).collect(),
        })
    }
}

impl BackupSource {
    /// Copies the state into the empty directory `to`: the snapshot and journals, a key file
    /// holding `key_ring` (the ring the engine held at the switch), and every stored profile
    /// image, each verified against its address. Every file and directory written is synced
    /// before this returns. `blobs` lists the stored image addresses (taken after the switch:
    /// an image is stored before the record naming it is appended, so every image the copied
    /// records name is listed; later ones are harmless extras).
    pub(crate) fn copy_into(
        &self,
        to: &Path,
        key_ring: &[u8],
        blobs: &[[u8; 32]],
        read_blob: impl Fn(&[u8; 32]) -> Result<Option<Vec<u8>>>,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Copied> {
        let mut copied = Copied::default();
        // What is expected: the store's files, and the images as they are on disk now.
        let size = |p: PathBuf| fs::metadata(p).map_or(0, |m| m.len());
        let total = self
            .snapshot
            .iter()
            .chain(&self.journals)
            .map(|name| size(self.dir.join(name)))
            .chain(
                blobs
                    .iter()
                    .map(|sha| size(self.dir.join(IMAGES_DIR).join(hex(sha)))),
            )
            .fold(key_ring.len() as u64, u64::saturating_add);
        progress(0, total);
        for name in self.snapshot.iter().chain(&self.journals) {
            copied.bytes += copy_file(&self.dir.join(name), &to.join(name))?;
            copied.files += 1;
            progress(copied.bytes, total.max(copied.bytes));
        }
        write_key_file(&to.join(KEY_FILE), key_ring)?;
        copied.files += 1;
        copied.bytes += fs::metadata(to.join(KEY_FILE))
            .map_err(|e| Error::io(&format!("reading {}", to.join(KEY_FILE).display()), e))?
            .len();
        progress(copied.bytes, total.max(copied.bytes));
        let images = to.join(IMAGES_DIR);
        fs::create_dir(&images)
            .map_err(|e| Error::io(&format!("creating {}", images.display()), e))?;
        for sha in blobs {
            // Gone since it was listed: an image no record of the copy names (compaction is
            // kept away, so a named one cannot be collected).
            let Some(bytes) = read_blob(sha)? else {
                continue;
            };
            let path = images.join(hex(sha));
            write_synced(&path, &bytes)?;
            copied.files += 1;
            copied.bytes += bytes.len() as u64;
            progress(copied.bytes, total.max(copied.bytes));
        }
        sync_dir(&images)?;
        sync_dir(to)?;
        Ok(copied)
    }
}

/// Copies `from` to the new file `to` (mode 0600) and syncs it; returns the bytes copied.
fn copy_file(from: &Path, to: &Path) -> Result<u64> {
    let mut src =
        File::open(from).map_err(|e| Error::io(&format!("opening {}", from.display()), e))?;
    let mut dst =
        create_private(to).map_err(|e| Error::io(&format!("creating {}", to.display()), e))?;
    // std::io::copy uses copy_file_range on Linux: no bytes through user space.
    let bytes = io::copy(&mut src, &mut dst).map_err(|e| {
        Error::io(
            &format!("copying {} to {}", from.display(), to.display()),
            e,
        )
    })?;
    dst.sync_all()
        .map_err(|e| Error::io(&format!("syncing {}", to.display()), e))?;
    Ok(bytes)
}

/// Writes the new file `path` (mode 0600) and syncs it.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f =
        create_private(path).map_err(|e| Error::io(&format!("creating {}", path.display()), e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io(&format!("writing {}", path.display()), e))
}

/// Makes the entries of `dir` durable (after a rename into it).
pub(crate) fn sync_dir_of(dir: &Path) -> Result<()> {
    sync_dir(dir)
}

/// Syncs every file and directory under `dir` (one level of subdirectories, as a data
/// directory has), then `dir` itself.
pub(crate) fn sync_tree(dir: &Path) -> Result<()> {
    let entries =
        fs::read_dir(dir).map_err(|e| Error::io(&format!("listing {}", dir.display()), e))?;
    for entry in entries {
        let path = entry
            .map_err(|e| Error::io(&format!("listing {}", dir.display()), e))?
            .path();
        if path.is_dir() {
            sync_tree(&path)?;
        } else {
            File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(|e| Error::io(&format!("syncing {}", path.display()), e))?;
        }
    }
    sync_dir(dir)
}
