//! The byte layout shared by every store file: a versioned file header, then records framed as
//! `length u32 LE | CRC-32 u32 LE | payload`, and the scan that tells a torn tail from damage.
//!
//! The length word holds the payload length in its low 24 bits and a check byte of those bits
//! in its high 8. Without it, a bit flip that made a middle record's length point past the end
//! of the file would look exactly like a torn final write and every later record would be cut
//! off silently; with it, a damaged length is recognised as damage. The CRC covers the length
//! word as well as the payload.

use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use crate::error::{Error, ErrorKind, Result};

/// Journal format 1: records framed one after another (still read, never written).
pub(crate) const JOURNAL_VERSION_RECORDS: u32 = 1;
/// Journal format 2: a prelude with the file's salt, then one checksummed batch per group
/// commit ([`crate::store::batch`]). What this build writes.
pub(crate) const JOURNAL_VERSION_BATCHES: u32 = 2;
/// The format version of snapshots and the key file, written and read by this build.
pub(crate) const FORMAT_VERSION: u32 = 1;
/// Bytes of the file header: magic (8), version (4), generation (8), CRC-32 of the first 20 (4).
pub(crate) const HEADER_LEN: usize = 24;
/// Bytes in front of every record payload: length (4) and CRC-32 (4).
pub(crate) const FRAME_HEADER_LEN: usize = 8;
/// Largest record payload (what fits in 24 bits). Profile images live in their own files, so a
/// record is a user or a token digest — kilobytes.
pub(crate) const MAX_RECORD_LEN: usize = (1 << 24) - 1;

/// The check byte stored in the top 8 bits of a length word: every single-bit change of the
/// length or of the check byte itself makes it disagree.
fn length_check(len: u32) -> u32 {
    let [b0, b1, b2, _] = len.to_le_bytes();
    u32::from(0xA5 ^ b0 ^ b1 ^ b2)
}

/// What a store file holds; each kind has its own magic so a snapshot is never replayed as a
/// journal by mistake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FileKind {
    /// Append-only log of records since the last snapshot.
    Journal,
    /// A complete image of the state, ending with a [`crate::store::snapshot`] footer.
    Snapshot,
    /// The signing key ring.
    KeyRing,
}

impl FileKind {
    const ALL: [FileKind; 3] = [FileKind::Journal, FileKind::Snapshot, FileKind::KeyRing];

    pub(crate) fn magic(self) -> &'static [u8; 8] {
        match self {
            FileKind::Journal => b"TSRAJRNL",
            FileKind::Snapshot => b"TSRASNAP",
            FileKind::KeyRing => b"TSRAKEYS",
        }
    }

    /// The format version this build writes for files of this kind; it reads every version
    /// from 1 up to it.
    pub(crate) fn current_version(self) -> u32 {
        match self {
            FileKind::Journal => JOURNAL_VERSION_BATCHES,
            FileKind::Snapshot | FileKind::KeyRing => FORMAT_VERSION,
        }
    }

    fn name(self) -> &'static str {
        match self {
            FileKind::Journal => "journal",
            FileKind::Snapshot => "snapshot",
            FileKind::KeyRing => "key ring",
        }
    }
}

/// The header that starts every store file, naming the version this build writes.
pub(crate) fn encode_header(kind: FileKind, generation: u64) -> [u8; HEADER_LEN] {
    encode_header_version(kind, kind.current_version(), generation)
}

/// The header of a file of `kind` in format `version` (tests write older versions with it).
pub(crate) fn encode_header_version(
    kind: FileKind,
    version: u32,
    generation: u64,
) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(kind.magic());
    h[8..12].copy_from_slice(&version.to_le_bytes());
    h[12..20].copy_from_slice(&generation.to_le_bytes());
    let crc = crc32fast::hash(&h[..20]);
    h[20..24].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Checks the header of a file expected to be of `kind` and returns its generation.
pub(crate) fn parse_header(path: &Path, kind: FileKind, bytes: &[u8]) -> Result<u64> {
    parse_header_version(path, kind, bytes).map(|(generation, _)| generation)
}

/// Checks the header of a file expected to be of `kind` and returns its generation and format
/// version (1 up to [`FileKind::current_version`]).
///
/// Only an intact header — the right magic, a matching checksum — that names a newer format
/// version is [`ErrorKind::UnsupportedFormat`]; every other defect (a file shorter than a
/// header, a wrong magic, a flipped bit anywhere, a version that never existed) is
/// [`ErrorKind::Corrupt`]. The checksum is checked before the version so that a bit flip in
/// the version field is reported as the damage it is. That is why every format version, now
/// and later, starts with this same 24-byte header: what a later version changes comes after
/// it.
pub(crate) fn parse_header_version(
    path: &Path,
    kind: FileKind,
    bytes: &[u8],
) -> Result<(u64, u32)> {
    let corrupt =
        |what: String| Error::new(ErrorKind::Corrupt, format!("{}: {what}", path.display()));
    let magic = &bytes[..bytes.len().min(8)];
    if magic != &kind.magic()[..magic.len()] {
        if let Some(other) = FileKind::ALL.iter().find(|k| k.magic() == magic) {
            return Err(corrupt(format!(
                "expected a Tessera {} file but found a {} file",
                kind.name(),
                other.name()
            )));
        }
        return Err(corrupt(format!(
            "not a Tessera {} file, or its header is damaged (starts with bytes {}; expected \
             {:?})",
            kind.name(),
            hex(magic),
            String::from_utf8_lossy(kind.magic())
        )));
    }
    if bytes.len() < HEADER_LEN {
        return Err(corrupt(format!(
            "cut short: the file is {} bytes; a {} header alone is {HEADER_LEN}",
            bytes.len(),
            kind.name()
        )));
    }
    let stored = u32::from_le_bytes(bytes[20..24].try_into().expect("4 bytes"));
    if stored != crc32fast::hash(&bytes[..20]) {
        return Err(corrupt(format!(
            "{} header checksum mismatch (damaged header)",
            kind.name()
        )));
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    let current = kind.current_version();
    if version > current {
        return Err(Error::new(
            ErrorKind::UnsupportedFormat,
            format!(
                "{}: {} format version {version}, written by a later release; this build of \
                 Tessera reads versions up to {current}",
                path.display(),
                kind.name()
            ),
        ));
    }
    if version == 0 {
        return Err(corrupt(format!(
            "{} format version 0 does not exist (the first is 1)",
            kind.name()
        )));
    }
    let generation = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
    Ok((generation, version))
}

/// Appends one framed record to `out`, its payload written by `write` straight into `out` (no
/// intermediate buffer). On error `out` is left as it was.
pub(crate) fn encode_frame_with(
    out: &mut Vec<u8>,
    write: impl FnOnce(&mut Vec<u8>) -> Result<()>,
) -> Result<()> {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_HEADER_LEN]);
    let written = write(out);
    let len = out.len() - start - FRAME_HEADER_LEN;
    if let Err(e) = written {
        out.truncate(start);
        return Err(e);
    }
    if len > MAX_RECORD_LEN {
        out.truncate(start);
        return Err(Error::new(
            ErrorKind::Internal,
            format!("a store record of {len} bytes exceeds the {MAX_RECORD_LEN}-byte limit"),
        ));
    }
    let len = len as u32;
    let word = (len | (length_check(len) << 24)).to_le_bytes();
    let mut crc = crc32fast::Hasher::new();
    crc.update(&word);
    crc.update(&out[start + FRAME_HEADER_LEN..]);
    out[start..start + 4].copy_from_slice(&word);
    out[start + 4..start + 8].copy_from_slice(&crc.finalize().to_le_bytes());
    Ok(())
}

/// Appends one framed record to `out`.
pub(crate) fn encode_frame(out: &mut Vec<u8>, payload: &[u8]) -> Result<()> {
    if payload.len() > MAX_RECORD_LEN {
        return Err(Error::new(
            ErrorKind::Internal,
            format!(
                "a store record of {} bytes exceeds the {MAX_RECORD_LEN}-byte limit",
                payload.len()
            ),
        ));
    }
    let len = payload.len() as u32;
    let len = (len | (length_check(len) << 24)).to_le_bytes();
    let mut crc = crc32fast::Hasher::new();
    crc.update(&len);
    crc.update(payload);
    out.reserve(FRAME_HEADER_LEN + payload.len());
    out.extend_from_slice(&len);
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(payload);
    Ok(())
}

/// How a scan of framed records ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ScanEnd {
    /// Every byte up to the end belonged to a valid record.
    Clean,
    /// The records stop at `offset` with a torn write: a short frame, a bad checksum on the
    /// frame that ends exactly at the end of the file, or a tail of nothing but zero bytes (a
    /// file system may extend a file before the data reaches the disk).
    Torn {
        /// Byte offset (from the start of the file) of the first byte that is not a record.
        offset: u64,
    },
    /// A damaged record with more data after it: never a crash artefact, so never cut off.
    Corrupt {
        /// Byte offset of the damaged record's frame.
        offset: u64,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// Reads records framed from `start` up to `end` (absolute offsets in `r`), calling `f` with
/// the offset and payload of each valid record in order, and stops at the first invalid one.
///
/// A frame is torn when it is short, or when its checksum fails and it ends exactly at `end`;
/// every other damage followed by non-zero data is [`ScanEnd::Corrupt`].
pub(crate) fn scan_frames<R: Read + Seek>(
    r: &mut R,
    start: u64,
    end: u64,
    mut f: impl FnMut(u64, &[u8]) -> Result<()>,
    path: &Path,
) -> Result<ScanEnd> {
    let io_err = |e: io::Error| Error::io(&format!("reading {}", path.display()), e);
    r.seek(SeekFrom::Start(start)).map_err(io_err)?;
    let mut offset = start;
    let mut payload = Vec::new();
    loop {
        if offset == end {
            return Ok(ScanEnd::Clean);
        }
        let remaining = end - offset;
        if remaining < FRAME_HEADER_LEN as u64 {
            return Ok(ScanEnd::Torn { offset });
        }
        let mut head = [0u8; FRAME_HEADER_LEN];
        r.read_exact(&mut head).map_err(io_err)?;
        let word = u32::from_le_bytes(head[..4].try_into().expect("4 bytes"));
        let stored_crc = u32::from_le_bytes(head[4..].try_into().expect("4 bytes"));
        let len = word & 0x00FF_FFFF;
        if word >> 24 != length_check(len) {
            return classify_damage(r, offset, end, "damaged record length", path);
        }
        let frame_end = offset + FRAME_HEADER_LEN as u64 + u64::from(len);
        if frame_end > end {
            return Ok(ScanEnd::Torn { offset });
        }
        payload.resize(len as usize, 0);
        r.read_exact(&mut payload).map_err(io_err)?;
        let mut crc = crc32fast::Hasher::new();
        crc.update(&head[..4]);
        crc.update(&payload);
        if crc.finalize() != stored_crc {
            if frame_end == end {
                return Ok(ScanEnd::Torn { offset });
            }
            return classify_damage(r, offset, end, "checksum mismatch", path);
        }
        f(offset, &payload)?;
        offset = frame_end;
    }
}

/// A bad frame at `offset` is a torn tail only when everything from it to the end is zeros.
fn classify_damage<R: Read + Seek>(
    r: &mut R,
    offset: u64,
    end: u64,
    reason: &'static str,
    path: &Path,
) -> Result<ScanEnd> {
    let io_err = |e: io::Error| Error::io(&format!("reading {}", path.display()), e);
    r.seek(SeekFrom::Start(offset)).map_err(io_err)?;
    let mut rest = r.take(end - offset);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = rest.read(&mut buf).map_err(io_err)?;
        if n == 0 {
            return Ok(ScanEnd::Torn { offset });
        }
        if buf[..n].iter().any(|&b| b != 0) {
            return Ok(ScanEnd::Corrupt { offset, reason });
        }
    }
}

/// The error for a [`ScanEnd::Corrupt`] result.
pub(crate) fn corrupt_error(path: &Path, offset: u64, reason: &str) -> Error {
    Error::new(
        ErrorKind::Corrupt,
        format!(
            "{}: record at byte offset {offset} is damaged ({reason}); a read-only salvage open \
             can load the records before it",
            path.display()
        ),
    )
}

/// Adds the file and offset to an error the engine raised while applying the record there (a
/// record that passed its checksum but does not decode, or refers to a missing user).
pub(crate) fn locate(err: Error, path: &Path, offset: u64) -> Error {
    if err.kind() != ErrorKind::Corrupt {
        return err;
    }
    Error::new(
        ErrorKind::Corrupt,
        format!(
            "{}: record at byte offset {offset}: {}",
            path.display(),
            err.message()
        ),
    )
}

/// Lowercase hex, for file names of content-addressed blobs and for messages about magic bytes.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn frames(payloads: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in payloads {
            encode_frame(&mut out, p).unwrap();
        }
        out
    }

    fn scan(bytes: &[u8]) -> (Vec<(u64, Vec<u8>)>, ScanEnd) {
        let mut got = Vec::new();
        let end = scan_frames(
            &mut Cursor::new(bytes),
            0,
            bytes.len() as u64,
            |o, p| {
                got.push((o, p.to_vec()));
                Ok(())
            },
            Path::new("test"),
        )
        .unwrap();
        (got, end)
    }

    #[test]
    fn header_round_trips_and_names_what_it_found() {
        let h = encode_header(FileKind::Journal, 7);
        assert_eq!(
            parse_header(Path::new("j"), FileKind::Journal, &h).unwrap(),
            7
        );

        let e = parse_header(Path::new("j"), FileKind::Snapshot, &h).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupt);
        assert!(e.message().contains("found a journal file"), "{e}");

        let e = parse_header(
            Path::new("j"),
            FileKind::Journal,
            b"SQLite format 3\0xxxxxxxx",
        )
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupt);
        assert!(e.message().contains("53514c6974652066"), "{e}");

        let mut bad = h;
        bad[15] ^= 1;
        let e = parse_header(Path::new("j"), FileKind::Journal, &bad).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupt);
    }

    /// A header with `version`, its checksum intact, as the release writing that version does.
    fn header_with_version(version: u32) -> [u8; HEADER_LEN] {
        encode_header_version(FileKind::Journal, version, 7)
    }

    fn header_error(bytes: &[u8]) -> Error {
        parse_header(Path::new("j"), FileKind::Journal, bytes).unwrap_err()
    }

    #[test]
    fn only_an_intact_header_of_a_newer_version_is_unsupported_every_defect_is_corrupt() {
        let h = encode_header(FileKind::Journal, 7);
        // Cut anywhere inside the header, down to an empty file.
        for len in 0..HEADER_LEN {
            let e = header_error(&h[..len]);
            assert_eq!(e.kind(), ErrorKind::Corrupt, "cut to {len} bytes: {e}");
        }
        // Every single bit of the magic, and of the version.
        for byte in (0..8).chain(8..12) {
            for bit in 0..8 {
                let mut b = h;
                b[byte] ^= 1 << bit;
                let e = header_error(&b);
                assert_eq!(e.kind(), ErrorKind::Corrupt, "flip {byte}.{bit}: {e}");
            }
        }
        // An intact header naming the next version, or the largest: a later release's file.
        let current = FileKind::Journal.current_version();
        for version in [current + 1, u32::MAX] {
            let e = header_error(&header_with_version(version));
            assert_eq!(e.kind(), ErrorKind::UnsupportedFormat, "version {version}");
            assert!(e.message().contains(&format!("version {version}")), "{e}");
        }
        // An intact header naming a version that never existed is not from any release.
        let e = header_error(&header_with_version(0));
        assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
        // Every version from 1 to the one this build writes is read, and named.
        for version in 1..=current {
            assert_eq!(
                parse_header_version(
                    Path::new("j"),
                    FileKind::Journal,
                    &header_with_version(version)
                )
                .unwrap(),
                (7, version)
            );
        }
        // Snapshots and key files stay at format 1: a 2 there is a later release's.
        for kind in [FileKind::Snapshot, FileKind::KeyRing] {
            assert_eq!(kind.current_version(), FORMAT_VERSION);
            let h = encode_header_version(kind, FORMAT_VERSION + 1, 7);
            let e = parse_header(Path::new("s"), kind, &h).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::UnsupportedFormat, "{kind:?}");
        }
    }

    #[test]
    fn clean_scan_returns_every_record_with_offsets() {
        let bytes = frames(&[b"a", b"", b"hello"]);
        let (got, end) = scan(&bytes);
        assert_eq!(end, ScanEnd::Clean);
        assert_eq!(
            got,
            vec![(0, b"a".to_vec()), (9, vec![]), (17, b"hello".to_vec())]
        );
    }

    #[test]
    fn every_truncation_of_the_last_record_is_a_torn_tail() {
        let bytes = frames(&[b"first", b"second", b"the last record"]);
        let last = 13 + 14;
        for cut in last..bytes.len() {
            let (got, end) = scan(&bytes[..cut]);
            assert_eq!(got.len(), 2, "cut at {cut}");
            if cut == last {
                assert_eq!(end, ScanEnd::Clean);
            } else {
                assert_eq!(
                    end,
                    ScanEnd::Torn {
                        offset: last as u64
                    },
                    "cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn every_single_bit_flip_is_caught_and_only_the_last_record_is_torn() {
        let bytes = frames(&[b"first", b"second", b"third"]);
        let starts = [0usize, 13, 27];
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                let (got, end) = scan(&b);
                let rec = starts.iter().rposition(|&s| s <= i).unwrap();
                let offset = starts[rec] as u64;
                assert_eq!(got.len(), rec, "flip at {i}.{bit}");
                // Payload and checksum damage on the final record is what a torn write leaves;
                // a length word that fails its check byte is damage wherever it is.
                if rec == 2 && i >= starts[2] + 4 {
                    assert_eq!(end, ScanEnd::Torn { offset }, "flip at {i}.{bit}");
                } else {
                    assert!(
                        matches!(end, ScanEnd::Corrupt { offset: o, .. } if o == offset),
                        "flip at {i}.{bit}: {end:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_zero_filled_tail_is_torn() {
        let mut bytes = frames(&[b"first"]);
        bytes.extend_from_slice(&[0u8; 100]);
        let (got, end) = scan(&bytes);
        assert_eq!(got.len(), 1);
        assert_eq!(end, ScanEnd::Torn { offset: 13 });
    }

    #[test]
    fn oversized_length_with_data_after_is_corrupt() {
        let mut bytes = frames(&[b"first"]);
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        bytes.extend_from_slice(&[1u8; 100]);
        let (_, end) = scan(&bytes);
        assert!(
            matches!(end, ScanEnd::Corrupt { offset: 13, .. }),
            "{end:?}"
        );
    }
}
