//! The store's open path fed arbitrary file contents: a data directory is written with one
//! fuzzed file among valid fixture files, then opened read-only (`open_salvage`) and
//! read-write (`open`).
//!
//! Input: the first byte picks the file (bits 0-1), how the rest becomes its contents (bits
//! 2-3) and, for a journal, its format (bit 4: 1 records, 2 batches); see [`FILES`] and
//! [`build`]. Properties: never a panic, only errors; whatever `open`
//! accepts, `open_salvage` accepts too; and a directory `open` accepted still opens after a
//! write, with that write in it.

use std::path::Path;

use tessera::{Engine, ManualClock, NewUser};

use super::common::{Scratch, JOURNAL_1, JOURNAL_2, KEYS, NOW_MS, SNAPSHOT_2};

/// The fuzzed file, by bits 0-1 of the first byte, and the header's generation.
pub const FILES: [(&str, u64); 4] = [
    ("journal-0000000000000001.tsj", 1),
    ("snapshot-0000000000000002.tss", 2),
    ("keys", 0),
    ("journal-0000000000000002.tsj", 2),
];

const MAGIC: [&[u8; 8]; 4] = [b"TSRAJRNL", b"TSRASNAP", b"TSRAKEYS", b"TSRAJRNL"];

/// Frames `payload` as the store does: length word (24-bit length, check byte on top), CRC-32
/// of that word and the payload, the payload.
pub fn frame(out: &mut Vec<u8>, payload: &[u8]) {
    let len = payload.len() as u32 & 0x00ff_ffff;
    let [b0, b1, b2, _] = len.to_le_bytes();
    let word = (len | (u32::from(0xa5 ^ b0 ^ b1 ^ b2) << 24)).to_le_bytes();
    let mut crc = crc32fast::Hasher::new();
    crc.update(&word);
    crc.update(payload);
    out.extend_from_slice(&word);
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(payload);
}

/// The salt of the format-2 journals the harness builds.
const SALT: u64 = 0x5eed_5a17_00ff_f022;
const PRELUDE_LEN: usize = 16;
const BATCH_HEADER_LEN: usize = 40;

/// A valid header for file `which` in format `version`.
pub fn header(which: usize, version: u32) -> Vec<u8> {
    let mut h = MAGIC[which].to_vec();
    h.extend_from_slice(&version.to_le_bytes());
    h.extend_from_slice(&FILES[which].1.to_le_bytes());
    let crc = crc32fast::hash(&h);
    h.extend_from_slice(&crc.to_le_bytes());
    h
}

/// Splits `body` into batches of records, each record `len u16 LE | payload` (a short last
/// one takes what is left); bit 15 of `len` ends the batch: the inverse of [`records_to_body`].
/// A file in format 1 (records only) ignores the batches.
fn split_records(mut body: &[u8]) -> Vec<Vec<&[u8]>> {
    let mut out = vec![Vec::new()];
    while body.len() >= 2 {
        let word = u16::from_le_bytes([body[0], body[1]]);
        let rest = &body[2..];
        let n = usize::from(word & 0x7fff).min(rest.len());
        out.last_mut().unwrap().push(&rest[..n]);
        if word & 0x8000 != 0 {
            out.push(Vec::new());
        }
        body = &rest[n..];
    }
    out.retain(|b| !b.is_empty());
    out
}

#[allow(dead_code)] // seeds and tests only
/// Encodes batches of payloads as [`split_records`] reads them (for building seeds).
pub fn records_to_body(batches: &[Vec<&[u8]>]) -> Vec<u8> {
    let mut out = Vec::new();
    for batch in batches {
        for (i, p) in batch.iter().enumerate() {
            let end = if i + 1 == batch.len() { 0x8000 } else { 0 };
            out.extend_from_slice(&(p.len() as u16 | end).to_le_bytes());
            out.extend_from_slice(p);
        }
    }
    out
}

#[allow(dead_code)] // seeds and tests only
fn frame_payloads(mut bytes: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while bytes.len() >= 8 {
        let len = (u32::from_le_bytes(bytes[..4].try_into().unwrap()) & 0x00ff_ffff) as usize;
        if 8 + len > bytes.len() {
            break;
        }
        out.push(&bytes[8..8 + len]);
        bytes = &bytes[8 + len..];
    }
    out
}

#[allow(dead_code)] // seeds and tests only
/// The record payloads of a store file, by batch (one batch unless it is a format-2 journal),
/// and its format version (for building seeds from fixture files).
pub fn payloads(file: &[u8]) -> (Vec<Vec<&[u8]>>, u32) {
    let version = u32::from_le_bytes(file[8..12].try_into().unwrap());
    if &file[..8] != b"TSRAJRNL" || version == 1 {
        return (vec![frame_payloads(&file[24..])], version);
    }
    let mut batches = Vec::new();
    let mut at = 24 + PRELUDE_LEN;
    while at + BATCH_HEADER_LEN <= file.len() {
        let len = u64::from_le_bytes(file[at + 16..at + 24].try_into().unwrap()) as usize;
        let start = at + BATCH_HEADER_LEN;
        if start + len > file.len() {
            break;
        }
        batches.push(frame_payloads(&file[start..start + len]));
        at = start + len;
    }
    (batches, version)
}

/// The fuzzed file's contents. Envelope (bits 2-3 of `sel`): 0 the bytes as they are; 1 a
/// valid header (and for a format-2 journal a valid prelude), then the bytes; 2 a valid
/// header, then the bytes split into records each framed with a valid checksum — in a format-2
/// journal, into batches with valid headers — and, for a snapshot, a valid footer; 3 as 2 with
/// the last byte cut off (torn).
pub fn build(which: usize, sel: u8, body: &[u8]) -> Vec<u8> {
    let envelope = (sel >> 2) & 3;
    if envelope == 0 {
        return body.to_vec();
    }
    let batched = matches!(which, 0 | 3) && sel & 0x10 != 0;
    let mut out = header(which, if batched { 2 } else { 1 });
    if batched {
        out.extend_from_slice(&SALT.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
    }
    if envelope == 1 {
        out.extend_from_slice(body);
        return out;
    }
    let batches = split_records(body);
    let records: usize = batches.iter().map(Vec::len).sum();
    if batched {
        for (seq, batch) in (1u64..).zip(&batches) {
            let mut payload = Vec::new();
            for r in batch {
                frame(&mut payload, r);
            }
            let offset = out.len() as u64;
            let mut head = Vec::with_capacity(BATCH_HEADER_LEN);
            head.extend_from_slice(b"TSBT");
            head.extend_from_slice(&[0; 4]);
            head.extend_from_slice(&seq.to_le_bytes());
            head.extend_from_slice(&(payload.len() as u64).to_le_bytes());
            head.extend_from_slice(&(batch.len() as u64).to_le_bytes());
            head.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
            head.extend_from_slice(&[0; 4]);
            let mut crc = crc32fast::Hasher::new();
            crc.update(&SALT.to_le_bytes());
            crc.update(&offset.to_le_bytes());
            crc.update(&head[8..]);
            head[4..8].copy_from_slice(&crc.finalize().to_le_bytes());
            out.extend_from_slice(&head);
            out.extend_from_slice(&payload);
        }
    } else {
        for r in batches.iter().flatten() {
            frame(&mut out, r);
        }
    }
    if which == 1 {
        let mut footer = b"TSRAEND\0".to_vec();
        footer.extend_from_slice(&(records as u64).to_le_bytes());
        let crc = crc32fast::hash(&footer);
        footer.extend_from_slice(&crc.to_le_bytes());
        footer.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&footer);
    }
    if envelope == 3 {
        out.pop();
    }
    out
}

fn write_dir(dir: &Path, which: usize, contents: &[u8]) {
    let (name, _) = FILES[which];
    std::fs::write(dir.join(name), contents).unwrap();
    let others: &[(&str, &[u8])] = match which {
        0 => &[("keys", KEYS)],
        1 => &[("keys", KEYS), (FILES[3].0, JOURNAL_2)],
        2 => &[(FILES[0].0, JOURNAL_1)],
        _ => &[("keys", KEYS), (FILES[1].0, SNAPSHOT_2)],
    };
    for (name, bytes) in others {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

fn builder() -> tessera::EngineBuilder {
    Engine::builder().clock(ManualClock::new(NOW_MS))
}

pub fn run(data: &[u8]) {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let which = usize::from(sel & 3);
    let dir = Scratch::new("store");
    write_dir(&dir.0, which, &build(which, sel, body));

    let salvaged = builder()
        .open_salvage(&dir.0)
        .map(|(e, damage)| (e.user_count(), damage));
    let opened = builder().open(&dir.0);
    let Ok(e) = opened else { return };
    let (salvaged_users, damage) = match salvaged {
        Ok(s) => s,
        Err(err) => panic!("open accepted what open_salvage refused: {err}"),
    };
    assert!(
        damage.is_none(),
        "open accepted what salvage calls damage: {damage:?}"
    );
    let users = e.user_count();
    assert_eq!(users, salvaged_users);
    let probe = e.create_user(NewUser::new("fuzz-probe", "probe")).is_ok();
    drop(e);
    let e = builder()
        .open(&dir.0)
        .unwrap_or_else(|err| panic!("reopen after a write failed: {err}"));
    assert_eq!(e.user_count(), users + usize::from(probe));
    if probe {
        assert_eq!(e.get_user("fuzz-probe").unwrap().nickname, "probe");
    }
}
