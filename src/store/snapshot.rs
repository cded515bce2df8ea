//! Snapshot files: a complete image of the state as framed records, written to a temporary
//! file, synced, and renamed into place, so a snapshot with its final name is always whole.
//!
//! Layout: file header, records, then a 24-byte footer (`TSRAEND\0`, record count u64 LE,
//! CRC-32 of the previous 16 bytes, 4 bytes that must be zero). The footer makes a snapshot that was cut
//! short by a copy tool or a full disk detectable even though the rename protocol already
//! rules out a crash leaving one behind.

use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::atomic_file::{create_private, sync_dir, temp_path_for};
use super::frame::{
    corrupt_error, encode_frame, encode_header, locate, parse_header, scan_frames, FileKind,
    ScanEnd, HEADER_LEN,
};
use crate::error::{Error, ErrorKind, Result};

const FOOTER_MAGIC: &[u8; 8] = b"TSRAEND\0";
const FOOTER_LEN: u64 = 24;

/// A snapshot is synced every this many bytes while it is written. On ext4 (data=ordered) a
/// journal `fdatasync` commits the file system's journal, which first writes out the data
/// blocks allocated since the last commit — including the snapshot's. Syncing the snapshot in
/// small steps keeps that backlog, and so the delay it adds to a concurrent write, to a few
/// milliseconds; one sync at the end of a 135 MB snapshot held concurrent writes for 100–270
/// ms.
const SYNC_EVERY: u64 = 2 << 20;

/// Writes one snapshot; nothing is visible under the final name until [`finish`] succeeds, and
/// dropping an unfinished writer removes its temporary file.
///
/// [`finish`]: SnapshotWriter::finish
pub(crate) struct SnapshotWriter {
    out: Option<BufWriter<File>>,
    tmp: PathBuf,
    path: PathBuf,
    records: u64,
    frame: Vec<u8>,
    /// Bytes written since the last intermediate sync.
    unsynced: u64,
}

impl SnapshotWriter {
    /// Starts the snapshot of `generation` that will be named `path`.
    pub(crate) fn create(path: PathBuf, generation: u64) -> Result<SnapshotWriter> {
        let tmp = temp_path_for(&path);
        let file = create_private(&tmp)
            .map_err(|e| Error::io(&format!("creating {}", tmp.display()), e))?;
        let mut w = SnapshotWriter {
            out: Some(BufWriter::with_capacity(1 << 20, file)),
            tmp,
            path,
            records: 0,
            frame: Vec::new(),
            unsynced: 0,
        };
        w.write_bytes(&encode_header(FileKind::Snapshot, generation))?;
        Ok(w)
    }

    fn write_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        let out = self.out.as_mut().expect("writer used after finish");
        out.write_all(bytes)
            .map_err(|e| Error::io(&format!("writing {}", self.tmp.display()), e))?;
        self.unsynced += bytes.len() as u64;
        if self.unsynced >= SYNC_EVERY {
            self.unsynced = 0;
            out.flush()
                .and_then(|()| out.get_ref().sync_data())
                .map_err(|e| Error::io(&format!("syncing {}", self.tmp.display()), e))?;
        }
        Ok(())
    }

    /// Appends one record.
    pub(crate) fn write(&mut self, record: &[u8]) -> Result<()> {
        let mut frame = std::mem::take(&mut self.frame);
        frame.clear();
        encode_frame(&mut frame, record)?;
        let r = self.write_bytes(&frame);
        self.frame = frame;
        self.records += 1;
        r
    }

    /// Writes the footer, syncs, renames into place and syncs the directory. Returns the size
    /// of the finished file.
    pub(crate) fn finish(mut self) -> Result<u64> {
        let mut footer = [0u8; FOOTER_LEN as usize];
        footer[..8].copy_from_slice(FOOTER_MAGIC);
        footer[8..16].copy_from_slice(&self.records.to_le_bytes());
        let crc = crc32fast::hash(&footer[..16]);
        footer[16..20].copy_from_slice(&crc.to_le_bytes());
        self.write_bytes(&footer)?;
        let out = self.out.take().expect("finish called once");
        let io_err = |what: &str, e| Error::io(&format!("{what} {}", self.tmp.display()), e);
        let file = out
            .into_inner()
            .map_err(|e| io_err("writing", e.into_error()))?;
        file.sync_all().map_err(|e| io_err("syncing", e))?;
        let len = file
            .metadata()
            .map_err(|e| io_err("reading metadata of", e))?
            .len();
        drop(file);
        fs::rename(&self.tmp, &self.path).map_err(|e| io_err("renaming", e))?;
        sync_dir(self.path.parent().unwrap_or(Path::new(".")))?;
        Ok(len)
    }
}

impl Drop for SnapshotWriter {
    fn drop(&mut self) {
        if self.out.is_some() {
            self.out = None;
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// How a snapshot read ended.
#[derive(Debug)]
pub(crate) struct SnapshotRead {
    /// The generation in the header.
    pub(crate) generation: u64,
    /// Size of the file.
    pub(crate) bytes: u64,
}

/// Reads the snapshot at `path`, calling `f` for each record in order. Any damage is an error
/// ([`ErrorKind::Corrupt`] naming the offset); in `salvage` mode the records before the damage
/// are delivered first and the error is returned as `Ok((read, Some(error)))`.
pub(crate) fn read_snapshot(
    path: &Path,
    salvage: bool,
    mut f: impl FnMut(&[u8]) -> Result<()>,
) -> Result<(SnapshotRead, Option<Error>)> {
    let io_err = |e| Error::io(&format!("reading {}", path.display()), e);
    let file = File::open(path).map_err(io_err)?;
    let len = file.metadata().map_err(io_err)?.len();
    let mut r = BufReader::with_capacity(1 << 20, file);
    let mut header = Vec::with_capacity(HEADER_LEN);
    (&mut r)
        .take(HEADER_LEN as u64)
        .read_to_end(&mut header)
        .map_err(io_err)?;
    let generation = parse_header(path, FileKind::Snapshot, &header)?;
    let read = SnapshotRead {
        generation,
        bytes: len,
    };
    let truncated = || {
        Error::new(
            ErrorKind::Corrupt,
            format!("{}: snapshot is truncated (no footer)", path.display()),
        )
    };
    let footer_start = len
        .checked_sub(FOOTER_LEN)
        .filter(|&s| s >= HEADER_LEN as u64);
    let Some(footer_start) = footer_start else {
        return salvage_or(salvage, read, truncated());
    };
    r.seek(SeekFrom::Start(footer_start)).map_err(io_err)?;
    let mut footer = [0u8; FOOTER_LEN as usize];
    r.read_exact(&mut footer).map_err(io_err)?;
    let footer_ok = &footer[..8] == FOOTER_MAGIC
        && footer[16..20] == crc32fast::hash(&footer[..16]).to_le_bytes()
        && footer[20..] == [0; 4];
    let mut count = 0u64;
    let end = scan_frames(
        &mut r,
        HEADER_LEN as u64,
        if footer_ok { footer_start } else { len },
        |offset, rec| {
            count += 1;
            f(rec).map_err(|e| locate(e, path, offset))
        },
        path,
    )?;
    let damage = match end {
        ScanEnd::Clean if footer_ok => {
            let expected = u64::from_le_bytes(footer[8..16].try_into().expect("8 bytes"));
            if expected == count {
                return Ok((read, None));
            }
            Error::new(
                ErrorKind::Corrupt,
                format!(
                    "{}: snapshot footer counts {expected} records, found {count}",
                    path.display()
                ),
            )
        }
        ScanEnd::Clean | ScanEnd::Torn { .. } => truncated(),
        ScanEnd::Corrupt { offset, reason } => corrupt_error(path, offset, reason),
    };
    salvage_or(salvage, read, damage)
}

fn salvage_or(
    salvage: bool,
    read: SnapshotRead,
    err: Error,
) -> Result<(SnapshotRead, Option<Error>)> {
    if salvage {
        Ok((read, Some(err)))
    } else {
        Err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::atomic_file::test_dir::TestDir;

    fn read_all(path: &Path, salvage: bool) -> Result<(Vec<Vec<u8>>, Option<Error>)> {
        let mut got = Vec::new();
        let (_, err) = read_snapshot(path, salvage, |r| {
            got.push(r.to_vec());
            Ok(())
        })?;
        Ok((got, err))
    }

    #[test]
    fn snapshot_round_trips_and_rejects_any_damage() {
        let dir = TestDir::new("snap");
        let path = dir.path().join("snap");
        let mut w = SnapshotWriter::create(path.clone(), 3).unwrap();
        for i in 0..10u32 {
            w.write(&i.to_le_bytes().repeat(i as usize)).unwrap();
        }
        let len = w.finish().unwrap();
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "temporary file left behind"
        );
        let (got, err) = read_all(&path, false).unwrap();
        assert!(err.is_none());
        assert_eq!(got.len(), 10);
        assert_eq!(got[3], 3u32.to_le_bytes().repeat(3));

        let good = fs::read(&path).unwrap();
        assert_eq!(good.len() as u64, len);
        // Truncation anywhere, even at a record boundary, is an error: snapshots are never torn.
        for cut in [len - 1, len - FOOTER_LEN, HEADER_LEN as u64 + 3] {
            fs::write(&path, &good[..cut as usize]).unwrap();
            assert_eq!(
                read_all(&path, false).unwrap_err().kind(),
                ErrorKind::Corrupt,
                "cut {cut}"
            );
        }
        for i in HEADER_LEN..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x10;
            fs::write(&path, &bad).unwrap();
            assert_eq!(
                read_all(&path, false).unwrap_err().kind(),
                ErrorKind::Corrupt,
                "flip {i}"
            );
        }
        // Salvage delivers the records before the damage and says where it stopped.
        let mut bad = good.clone();
        bad[HEADER_LEN + 60] ^= 0x10;
        fs::write(&path, &bad).unwrap();
        let (got, err) = read_all(&path, true).unwrap();
        assert!(!got.is_empty() && got.len() < 10);
        assert!(err.unwrap().message().contains("byte offset"));
    }

    #[test]
    fn an_unfinished_snapshot_leaves_nothing() {
        let dir = TestDir::new("snap-drop");
        let mut w = SnapshotWriter::create(dir.path().join("snap"), 1).unwrap();
        w.write(b"x").unwrap();
        drop(w);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
