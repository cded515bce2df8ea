//! Journal format 2: the unit of durability is the group-commit *batch*, not the record.
//!
//! ```text
//! file header  24  magic "TSRAJRNL", version 2, generation, CRC-32  (frame::encode_header)
//! prelude      16  salt u64 | zero u32 | CRC-32 of the file's bytes 0..36
//! batch …          one per group-commit write, synced before the next is written:
//!   marker      4  "TSBT"
//!   header CRC  4  CRC-32 of (salt, the batch's own file offset, header bytes 8..40)
//!   sequence    8  1 for the file's first batch, then one more per batch
//!   length      8  payload bytes
//!   records     8  records in the payload (at least 1)
//!   payload CRC 4  CRC-32 of the payload
//!   zero        4
//!   payload        the records, each framed as in format 1 (`frame::encode_frame`)
//! ```
//!
//! All integers little-endian. The salt is random per file, so bytes a disk leaves behind from
//! an older journal (or any other file) never validate here; binding the header checksum to
//! the batch's offset means a valid batch can only be read where it was written. A batch's
//! records are delivered only when its header and payload checksums both hold (and its
//! records then frame exactly, counted): a batch is applied whole or not at all.
//!
//! Why this tells a torn write from damage. The journal writes one batch per write call and
//! syncs it before writing the next, so only the *last* batch in a file can be unsynced, and
//! a disk may persist any subset of its pages (zeros or stale bytes in the rest) when the
//! power fails. So the scan stops at the first batch that does not validate and looks for the
//! header of a later batch anywhere after it: a header that validates for this file's salt at
//! the offset where it lies, with a higher sequence number, was written by this journal after
//! the damaged batch — so after that batch was synced. Then data that was acknowledged is
//! damaged, and that is [`ErrorKind::Corrupt`] (even when the later batch is itself torn). If
//! there is none, the damaged batch is the last thing written and is cut as a torn tail. The
//! headers check themselves (salt and offset, not a chain through the previous batch), which
//! is what lets a later batch be recognised after a damaged header whose length cannot be
//! trusted.
//!
//! The one case this cannot tell apart: damage to the last synced batch when nothing of a
//! later batch's header reached the disk looks exactly like a torn write and is cut as one
//! (and reported).

use std::io::{self, Cursor, Read, Seek, SeekFrom};
use std::path::Path;

use ring::rand::{SecureRandom, SystemRandom};

use super::frame::{scan_frames, ScanEnd, HEADER_LEN};
use crate::error::{Error, ErrorKind, Result};

/// Bytes of the journal prelude that follows the file header in format 2.
pub(crate) const PRELUDE_LEN: usize = 16;
/// Offset of a format-2 journal's first batch.
pub(crate) const BATCHES_START: u64 = (HEADER_LEN + PRELUDE_LEN) as u64;
/// Bytes of a batch header.
pub(crate) const BATCH_HEADER_LEN: usize = 40;
const MARKER: [u8; 4] = *b"TSBT";
/// How much of a file the search for a later valid batch reads at a time.
const SEARCH_CHUNK: usize = 1 << 20;

/// Where the next batch of a journal goes and what seals it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BatchCursor {
    /// The file's salt, from its prelude.
    pub(crate) salt: u64,
    /// Sequence number of the next batch.
    pub(crate) seq: u64,
    /// File offset of the next batch.
    pub(crate) offset: u64,
}

impl BatchCursor {
    /// Before the first batch of a file with `salt`.
    pub(crate) fn start(salt: u64) -> BatchCursor {
        BatchCursor {
            salt,
            seq: 1,
            offset: BATCHES_START,
        }
    }
}

/// A fresh random salt for a new journal file.
pub(crate) fn new_salt() -> Result<u64> {
    let mut b = [0u8; 8];
    SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| Error::new(ErrorKind::Internal, "system random source failed"))?;
    Ok(u64::from_le_bytes(b))
}

/// The prelude that follows `header` in a format-2 journal.
pub(crate) fn encode_prelude(header: &[u8; HEADER_LEN], salt: u64) -> [u8; PRELUDE_LEN] {
    let mut p = [0u8; PRELUDE_LEN];
    p[..8].copy_from_slice(&salt.to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(header);
    crc.update(&p[..12]);
    p[12..].copy_from_slice(&crc.finalize().to_le_bytes());
    p
}

/// Checks the prelude after an already checked `header` and returns the file's salt. The
/// prelude is written and synced with the header before the file gets its name, so any defect
/// is damage.
pub(crate) fn parse_prelude(path: &Path, header: &[u8], prelude: &[u8]) -> Result<u64> {
    let corrupt =
        |what: &str| Error::new(ErrorKind::Corrupt, format!("{}: {what}", path.display()));
    if prelude.len() < PRELUDE_LEN {
        return Err(corrupt(&format!(
            "cut short: the file is {} bytes; a journal header and prelude are {BATCHES_START}",
            header.len() + prelude.len()
        )));
    }
    let mut crc = crc32fast::Hasher::new();
    crc.update(header);
    crc.update(&prelude[..12]);
    if prelude[12..16] != crc.finalize().to_le_bytes() || prelude[8..12] != [0; 4] {
        return Err(corrupt(
            "journal prelude checksum mismatch (damaged header)",
        ));
    }
    Ok(u64::from_le_bytes(
        prelude[..8].try_into().expect("8 bytes"),
    ))
}

/// Room for the header at the front of an empty batch buffer; records are framed after it.
pub(crate) fn begin_batch(buf: &mut Vec<u8>) {
    debug_assert!(buf.is_empty());
    buf.extend_from_slice(&[0; BATCH_HEADER_LEN]);
}

/// Fills in the header of `batch` (the room [`begin_batch`] left, then `records` framed
/// records) for the place `at`.
pub(crate) fn seal_batch(batch: &mut [u8], at: BatchCursor, records: u64) {
    let (head, payload) = batch.split_at_mut(BATCH_HEADER_LEN);
    head[..4].copy_from_slice(&MARKER);
    head[8..16].copy_from_slice(&at.seq.to_le_bytes());
    head[16..24].copy_from_slice(&(payload.len() as u64).to_le_bytes());
    head[24..32].copy_from_slice(&records.to_le_bytes());
    head[32..36].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
    head[36..40].copy_from_slice(&[0; 4]);
    let crc = header_crc(at.salt, at.offset, &head[8..]);
    head[4..8].copy_from_slice(&crc.to_le_bytes());
}

fn header_crc(salt: u64, offset: u64, rest: &[u8]) -> u32 {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&salt.to_le_bytes());
    crc.update(&offset.to_le_bytes());
    crc.update(rest);
    crc.finalize()
}

#[derive(Clone, Copy, Debug)]
struct BatchHeader {
    seq: u64,
    len: u64,
    records: u64,
    payload_crc: u32,
}

/// The header in `bytes` if this journal (`salt`) wrote it at `offset`.
fn parse_batch_header(bytes: &[u8], salt: u64, offset: u64) -> Option<BatchHeader> {
    let field = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    let stored = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
    if bytes[..4] != MARKER
        || stored != header_crc(salt, offset, &bytes[8..BATCH_HEADER_LEN])
        || bytes[36..40] != [0; 4]
    {
        return None;
    }
    Some(BatchHeader {
        seq: field(8),
        len: field(16),
        records: field(24),
        payload_crc: u32::from_le_bytes(bytes[32..36].try_into().expect("4 bytes")),
    })
}

/// How a scan of a format-2 journal ended.
#[derive(Debug)]
pub(crate) enum BatchEnd {
    /// Every byte belonged to a valid batch.
    Clean,
    /// The batch at `offset` does not validate and nothing valid follows it: the last write,
    /// never synced (or never fully), cut as a torn tail.
    Torn {
        /// File offset of the first byte not in a valid batch.
        offset: u64,
        /// Records that batch held according to its header when the header is intact, else 1
        /// (a lower bound).
        records: u64,
    },
    /// Damage to data that was synced: a batch that does not validate with the intact header
    /// of a later batch after it, or a batch whose checksums hold but whose records do not
    /// frame.
    Corrupt(Error),
}

/// The end of a scan, and where the next batch goes (after the last valid one).
#[derive(Debug)]
pub(crate) struct BatchScan {
    pub(crate) end: BatchEnd,
    pub(crate) next: BatchCursor,
}

/// Why a batch does not validate.
struct Damage {
    reason: &'static str,
    /// The record count of an intact header.
    records: Option<u64>,
}

/// Reads the batches of a format-2 journal of `len` bytes with `salt`, calling `apply` with
/// the file offset and payload of each record of each valid batch in order, and stops at the
/// first batch that does not validate.
pub(crate) fn scan_batches<R: Read + Seek>(
    r: &mut R,
    len: u64,
    salt: u64,
    path: &Path,
    mut apply: impl FnMut(u64, &[u8]) -> Result<()>,
) -> Result<BatchScan> {
    let io_err = |e: io::Error| Error::io(&format!("reading {}", path.display()), e);
    r.seek(SeekFrom::Start(BATCHES_START)).map_err(io_err)?;
    let mut at = BatchCursor::start(salt);
    let mut payload = Vec::new();
    loop {
        if at.offset >= len {
            return Ok(BatchScan {
                end: BatchEnd::Clean,
                next: at,
            });
        }
        let header = match read_batch(r, at, len, &mut payload, path)? {
            Ok(header) => header,
            Err(damage) => {
                let end = classify(r, at, len, damage, path)?;
                return Ok(BatchScan { end, next: at });
            }
        };
        let payload_start = at.offset + BATCH_HEADER_LEN as u64;
        let mut count = 0u64;
        let framed = scan_frames(
            &mut Cursor::new(&payload[..]),
            0,
            header.len,
            |o, rec| {
                count += 1;
                apply(payload_start + o, rec)
            },
            path,
        )?;
        let bad_records = match framed {
            ScanEnd::Clean if count == header.records => None,
            ScanEnd::Clean => Some((
                at.offset,
                format!(
                    "its header counts {} records, it holds {count}",
                    header.records
                ),
            )),
            ScanEnd::Torn { offset } | ScanEnd::Corrupt { offset, .. } => Some((
                payload_start + offset,
                "a record in it does not frame".to_string(),
            )),
        };
        if let Some((offset, what)) = bad_records {
            return Ok(BatchScan {
                end: BatchEnd::Corrupt(Error::new(
                    ErrorKind::Corrupt,
                    format!(
                        "{}: record at byte offset {offset} is damaged: batch {} at byte offset \
                         {} passes its checksums but {what}; a read-only salvage open can load \
                         the records before it",
                        path.display(),
                        at.seq,
                        at.offset
                    ),
                )),
                next: at,
            });
        }
        at = BatchCursor {
            salt,
            seq: at.seq + 1,
            offset: payload_start + header.len,
        };
    }
}

/// Reads and checks the batch expected at `at` (the reader is positioned there), leaving its
/// payload in `payload`.
fn read_batch<R: Read>(
    r: &mut R,
    at: BatchCursor,
    len: u64,
    payload: &mut Vec<u8>,
    path: &Path,
) -> Result<std::result::Result<BatchHeader, Damage>> {
    let io_err = |e: io::Error| Error::io(&format!("reading {}", path.display()), e);
    let remaining = len - at.offset;
    if remaining < BATCH_HEADER_LEN as u64 {
        return Ok(Err(Damage {
            reason: "cut short inside its header",
            records: None,
        }));
    }
    let mut head = [0u8; BATCH_HEADER_LEN];
    r.read_exact(&mut head).map_err(io_err)?;
    let Some(header) = parse_batch_header(&head, at.salt, at.offset) else {
        return Ok(Err(Damage {
            reason: "damaged or missing header",
            records: None,
        }));
    };
    if header.seq != at.seq || header.records == 0 {
        return Ok(Err(Damage {
            reason: "header out of sequence",
            records: None,
        }));
    }
    let damage = |reason| {
        Ok(Err(Damage {
            reason,
            records: Some(header.records),
        }))
    };
    if header.len > remaining - BATCH_HEADER_LEN as u64 {
        return damage("cut short");
    }
    // Bounded by the file's length, checked just above.
    payload.resize(header.len as usize, 0);
    r.read_exact(payload).map_err(io_err)?;
    if crc32fast::hash(payload) != header.payload_crc {
        return damage("payload checksum mismatch");
    }
    Ok(Ok(header))
}

/// A batch at `at` that does not validate is a torn tail unless a later batch follows it.
fn classify<R: Read + Seek>(
    r: &mut R,
    at: BatchCursor,
    len: u64,
    damage: Damage,
    path: &Path,
) -> Result<BatchEnd> {
    let Some((later, later_seq)) = find_later_batch(r, at, len, path)? else {
        return Ok(BatchEnd::Torn {
            offset: at.offset,
            records: damage.records.unwrap_or(1),
        });
    };
    Ok(BatchEnd::Corrupt(Error::new(
        ErrorKind::Corrupt,
        format!(
            "{}: batch {} at byte offset {} is damaged ({}), yet batch {later_seq} follows at \
             byte offset {later}: synced data, not a torn final write; a read-only salvage open \
             can load the records before it",
            path.display(),
            at.seq,
            at.offset,
            damage.reason
        ),
    )))
}

/// The offset and sequence number of the first batch header after the batch expected at
/// `at` (before `end`) that validates for the salt at the offset where it lies and has a
/// higher sequence number: a batch the journal began only after syncing the one at `at`.
fn find_later_batch<R: Read + Seek>(
    r: &mut R,
    at: BatchCursor,
    end: u64,
    path: &Path,
) -> Result<Option<(u64, u64)>> {
    let io_err = |e: io::Error| Error::io(&format!("reading {}", path.display()), e);
    let mut buf = Vec::new();
    let mut pos = at.offset + 1;
    while end.saturating_sub(pos) >= BATCH_HEADER_LEN as u64 {
        let n = (end - pos).min(SEARCH_CHUNK as u64) as usize;
        buf.resize(n, 0);
        r.seek(SeekFrom::Start(pos)).map_err(io_err)?;
        r.read_exact(&mut buf).map_err(io_err)?;
        let mut i = 0;
        // Headers starting in the last BATCH_HEADER_LEN - 1 bytes are looked at in the next
        // chunk, which overlaps this one by that much.
        while let Some(k) = buf[i..].windows(MARKER.len()).position(|w| w == MARKER) {
            let c = i + k;
            if c + BATCH_HEADER_LEN > n {
                break;
            }
            let offset = pos + c as u64;
            match parse_batch_header(&buf[c..c + BATCH_HEADER_LEN], at.salt, offset) {
                Some(h) if h.seq > at.seq => return Ok(Some((offset, h.seq))),
                _ => i = c + 1,
            }
        }
        if pos + n as u64 == end {
            break;
        }
        pos += (n - (BATCH_HEADER_LEN - 1)) as u64;
    }
    Ok(None)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::frame::{encode_frame, encode_header, FileKind};

    /// A format-2 journal file with `salt` holding `batches`.
    pub(crate) fn journal_bytes(salt: u64, batches: &[&[&[u8]]]) -> Vec<u8> {
        let header = encode_header(FileKind::Journal, 1);
        let mut out = header.to_vec();
        out.extend_from_slice(&encode_prelude(&header, salt));
        let mut at = BatchCursor::start(salt);
        for records in batches {
            let mut batch = Vec::new();
            begin_batch(&mut batch);
            for rec in *records {
                encode_frame(&mut batch, rec).unwrap();
            }
            seal_batch(&mut batch, at, records.len() as u64);
            out.extend_from_slice(&batch);
            at.seq += 1;
            at.offset += batch.len() as u64;
        }
        out
    }

    /// The file offsets of the batches in a format-2 journal, found by their lengths (the
    /// checksums are not checked).
    pub(crate) fn batch_offsets(bytes: &[u8]) -> Vec<usize> {
        let mut at = BATCHES_START as usize;
        let mut out = Vec::new();
        while at + BATCH_HEADER_LEN <= bytes.len() {
            out.push(at);
            let len = u64::from_le_bytes(bytes[at + 16..at + 24].try_into().unwrap());
            at += BATCH_HEADER_LEN + len as usize;
        }
        out
    }

    fn scan_all(bytes: &[u8], salt: u64) -> (Vec<Vec<u8>>, BatchScan) {
        let mut got = Vec::new();
        let scan = scan_batches(
            &mut Cursor::new(bytes),
            bytes.len() as u64,
            salt,
            Path::new("j"),
            |_, rec| {
                got.push(rec.to_vec());
                Ok(())
            },
        )
        .unwrap();
        (got, scan)
    }

    const SALT: u64 = 0x5eed_0000_1234_5678;

    #[test]
    fn batches_round_trip_and_the_next_one_goes_after_the_last() {
        let bytes = journal_bytes(SALT, &[&[b"a", b"bb"], &[b""], &[b"ccc"]]);
        let (got, scan) = scan_all(&bytes, SALT);
        assert!(matches!(scan.end, BatchEnd::Clean), "{:?}", scan.end);
        assert_eq!(got, [&b"a"[..], b"bb", b"", b"ccc"]);
        assert_eq!(scan.next.seq, 4);
        assert_eq!(scan.next.offset, bytes.len() as u64);
    }

    #[test]
    fn a_prelude_is_checked() {
        let header = encode_header(FileKind::Journal, 1);
        let p = encode_prelude(&header, SALT);
        assert_eq!(parse_prelude(Path::new("j"), &header, &p).unwrap(), SALT);
        for i in 0..PRELUDE_LEN {
            let mut bad = p;
            bad[i] ^= 4;
            let e = parse_prelude(Path::new("j"), &header, &bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Corrupt);
        }
        let e = parse_prelude(Path::new("j"), &header, &p[..7]).unwrap_err();
        assert!(e.message().contains("cut short"), "{e}");
    }

    #[test]
    fn another_salt_validates_nothing() {
        let bytes = journal_bytes(SALT, &[&[b"a"]]);
        let (got, scan) = scan_all(&bytes, SALT + 1);
        assert!(got.is_empty());
        assert!(
            matches!(
                scan.end,
                BatchEnd::Torn {
                    offset: BATCHES_START,
                    records: 1
                }
            ),
            "{:?}",
            scan.end
        );
    }

    #[test]
    fn every_flipped_bit_of_the_last_batch_is_torn_and_of_an_earlier_one_corrupt() {
        let bytes = journal_bytes(SALT, &[&[b"first", b"second"], &[b"third"], &[b"4", b"5"]]);
        let starts = [
            BATCHES_START as usize,
            40 + 40 + 13 + 14,
            40 + 40 + 27 + 40 + 13,
        ];
        for i in BATCHES_START as usize..bytes.len() {
            for bit in [0, 3, 7] {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                let (got, scan) = scan_all(&b, SALT);
                let batch = starts.iter().rposition(|&s| s <= i).unwrap();
                let kept = [0, 2, 3][batch];
                assert_eq!(got.len(), kept, "flip {i}.{bit}");
                match (batch, scan.end) {
                    (2, BatchEnd::Torn { offset, records }) => {
                        assert_eq!(offset, starts[2] as u64);
                        // A flip in the payload leaves the header's count readable.
                        let want = if i >= starts[2] + BATCH_HEADER_LEN {
                            2
                        } else {
                            1
                        };
                        assert_eq!(records, want, "flip {i}.{bit}");
                    }
                    (0 | 1, BatchEnd::Corrupt(e)) => {
                        assert_eq!(e.kind(), ErrorKind::Corrupt);
                        let at = format!("byte offset {}", starts[batch]);
                        assert!(e.message().contains(&at), "flip {i}.{bit}: {e}");
                    }
                    (_, end) => panic!("flip {i}.{bit}: {end:?}"),
                }
            }
        }
    }

    #[test]
    fn a_later_batch_is_found_across_search_chunks() {
        // One batch bigger than a search chunk, damaged in its header, with a batch after it
        // whose header straddles a chunk boundary of the search.
        for pad in [0, 12, 13, 14, 15, BATCH_HEADER_LEN + 1] {
            let big = vec![7u8; SEARCH_CHUNK - 100 + pad];
            let bytes = journal_bytes(SALT, &[&[&big], &[b"after"]]);
            let mut b = bytes.clone();
            b[BATCHES_START as usize] ^= 1;
            let (got, scan) = scan_all(&b, SALT);
            assert!(got.is_empty());
            assert!(matches!(scan.end, BatchEnd::Corrupt(_)), "pad {pad}");
            // The later batch torn too, its header intact: still proof the first was synced.
            b.truncate(b.len() - 1);
            let (_, scan) = scan_all(&b, SALT);
            assert!(matches!(scan.end, BatchEnd::Corrupt(_)), "pad {pad}");
            // Without its header, nothing shows the first batch was synced: a torn tail.
            let second = batch_offsets(&bytes)[1];
            b.truncate(second + BATCH_HEADER_LEN - 1);
            let (_, scan) = scan_all(&b, SALT);
            assert!(matches!(scan.end, BatchEnd::Torn { .. }), "pad {pad}");
        }
    }

    #[test]
    fn a_batch_whose_checksums_hold_but_whose_records_do_not_frame_is_corrupt() {
        let mut batch = Vec::new();
        begin_batch(&mut batch);
        batch.extend_from_slice(b"not a frame");
        seal_batch(&mut batch, BatchCursor::start(SALT), 1);
        let mut bytes = journal_bytes(SALT, &[]);
        bytes.extend_from_slice(&batch);
        let (_, scan) = scan_all(&bytes, SALT);
        let BatchEnd::Corrupt(e) = scan.end else {
            panic!("{:?}", scan.end)
        };
        assert!(e.message().contains("passes its checksums"), "{e}");
        // So is a count that disagrees with the records.
        let bytes = {
            let mut b = journal_bytes(SALT, &[]);
            let mut batch = Vec::new();
            begin_batch(&mut batch);
            encode_frame(&mut batch, b"x").unwrap();
            seal_batch(&mut batch, BatchCursor::start(SALT), 2);
            b.extend_from_slice(&batch);
            b
        };
        let (_, scan) = scan_all(&bytes, SALT);
        assert!(matches!(scan.end, BatchEnd::Corrupt(_)), "{:?}", scan.end);
    }
}
