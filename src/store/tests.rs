//! Directory-level tests: recovery, torn tails, damage, locking, compaction crash points.

use super::atomic_file::test_dir::TestDir;
use super::*;

type Records = Vec<(Origin, Vec<u8>)>;

fn open(dir: &Path, salvage: bool) -> Result<(Store, Records, Recovery)> {
    let mut got = Vec::new();
    let (store, rec) = Store::open(dir, salvage, |o, r| {
        got.push((o, r.to_vec()));
        Ok(())
    })?;
    Ok((store, got, rec))
}

fn write(store: &Store, records: &[&[u8]]) {
    for r in records {
        let t = store.append(r).unwrap();
        store.wait(t).unwrap();
    }
}

fn journal_records(got: &Records) -> Vec<Vec<u8>> {
    got.iter()
        .filter(|(o, _)| *o == Origin::Journal)
        .map(|(_, r)| r.clone())
        .collect()
}

fn file_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn records_survive_reopen_in_order() {
    let dir = TestDir::new("reopen");
    let data = dir.path().join("data");
    let (store, got, _) = open(&data, false).unwrap();
    assert!(got.is_empty());
    write(&store, &[b"a", b"bb", b""]);
    drop(store);
    let (store, got, rec) = open(&data, false).unwrap();
    assert_eq!(
        journal_records(&got),
        vec![b"a".to_vec(), b"bb".to_vec(), vec![]]
    );
    assert_eq!(rec.torn_bytes, 0);
    write(&store, &[b"c"]);
    drop(store);
    let (_, got, _) = open(&data, false).unwrap();
    assert_eq!(got.len(), 4);
    assert_eq!(
        file_names(&data),
        vec!["LOCK", "images", "journal-0000000000000001.tsj"]
    );
}

#[test]
fn truncating_the_last_record_anywhere_keeps_every_earlier_record() {
    let dir = TestDir::new("torn");
    let data = dir.path().join("data");
    let (store, _, _) = open(&data, false).unwrap();
    write(
        &store,
        &[
            b"first record",
            b"second record",
            b"the last record, torn by a crash",
        ],
    );
    drop(store);
    let path = data.join(journal_name(1));
    let full = fs::read(&path).unwrap();
    // Each write call was its own batch: the last one is its header and one framed record.
    let last_start = full.len() - (batch::BATCH_HEADER_LEN + 8 + 32);
    for cut in last_start..full.len() {
        fs::write(&path, &full[..cut]).unwrap();
        let (store, got, rec) = open(&data, false).unwrap();
        assert_eq!(
            journal_records(&got),
            vec![b"first record".to_vec(), b"second record".to_vec()],
            "cut at {cut}"
        );
        assert_eq!(rec.torn_bytes, (cut - last_start) as u64);
        assert_eq!(rec.torn_records, u64::from(cut > last_start));
        let stats = store.stats();
        assert_eq!(
            (stats.torn_tail_bytes, stats.torn_tail_records),
            (rec.torn_bytes, rec.torn_records)
        );
        assert_eq!(
            fs::metadata(&path).unwrap().len(),
            last_start as u64,
            "torn tail cut off"
        );
        // The journal goes on cleanly after the cut.
        write(&store, &[b"after"]);
        drop(store);
        let (_, got, _) = open(&data, false).unwrap();
        assert_eq!(journal_records(&got)[2], b"after".to_vec(), "cut at {cut}");
    }
}

#[test]
fn a_zero_filled_tail_is_cut_and_counted_as_one_record() {
    let dir = TestDir::new("zero-tail");
    let (store, _, _) = open(dir.path(), false).unwrap();
    write(&store, &[b"kept"]);
    drop(store);
    let path = dir.path().join(journal_name(1));
    let clean = fs::metadata(&path).unwrap().len();
    // A file system may extend the file before the data of an unsynced write reaches it.
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    std::io::Write::write_all(&mut f, &[0u8; 300]).unwrap();
    drop(f);
    let (store, got, rec) = open(dir.path(), false).unwrap();
    assert_eq!(journal_records(&got), vec![b"kept".to_vec()]);
    assert_eq!((rec.torn_bytes, rec.torn_records), (300, 1));
    let stats = store.stats();
    assert_eq!((stats.torn_tail_bytes, stats.torn_tail_records), (300, 1));
    assert_eq!(fs::metadata(&path).unwrap().len(), clean);
}

#[test]
fn damage_in_the_middle_is_reported_with_file_and_offset_and_salvage_reads_before_it() {
    let dir = TestDir::new("corrupt");
    let data = dir.path().join("data");
    let (store, _, _) = open(&data, false).unwrap();
    write(&store, &[b"one", b"two", b"three"]);
    drop(store);
    let path = data.join(journal_name(1));
    let mut bytes = fs::read(&path).unwrap();
    // One batch per write call; a valid batch ("three") follows the damaged one.
    let second = batch::tests::batch_offsets(&bytes)[1];
    bytes[second + batch::BATCH_HEADER_LEN + 9] ^= 0xff; // a payload byte of "two"
    fs::write(&path, &bytes).unwrap();

    let e = open(&data, false).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt);
    assert!(e.message().contains(&journal_name(1)), "{e}");
    assert!(
        e.message().contains(&format!("byte offset {second}")),
        "{e}"
    );
    assert_eq!(
        fs::read(&path).unwrap(),
        bytes,
        "a failed open changes nothing"
    );

    let (store, got, rec) = open(&data, true).unwrap();
    assert_eq!(journal_records(&got), vec![b"one".to_vec()]);
    assert_eq!(rec.salvage_stopped_at.unwrap().kind(), ErrorKind::Corrupt);
    assert!(store.is_read_only());
    assert_eq!(store.append(b"x").unwrap_err().kind(), ErrorKind::ReadOnly);
    assert_eq!(
        store.put_blob(&[0; 32], b"x").unwrap_err().kind(),
        ErrorKind::ReadOnly
    );
    // A salvage reader excludes writers but not other salvage readers.
    assert_eq!(open(&data, false).unwrap_err().kind(), ErrorKind::Locked);
    open(&data, true).unwrap();
    drop(store);
    assert_eq!(fs::read(&path).unwrap(), bytes, "salvage changes nothing");
}

#[test]
fn a_second_open_is_locked() {
    let dir = TestDir::new("locked");
    let (store, _, _) = open(dir.path(), false).unwrap();
    let e = open(dir.path(), false).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Locked);
    assert!(
        e.message().contains(&dir.path().display().to_string()),
        "{e}"
    );
    drop(store);
    open(dir.path(), false).unwrap();
}

#[test]
fn unknown_versions_are_refused_by_name() {
    let dir = TestDir::new("version");
    drop(open(dir.path(), false).unwrap());
    let path = dir.path().join(journal_name(1));
    let mut bytes = fs::read(&path).unwrap();
    // A later release's journal: an intact header (checksum and all) naming version 3.
    bytes[8..12].copy_from_slice(&(frame::JOURNAL_VERSION_BATCHES + 1).to_le_bytes());
    let crc = crc32fast::hash(&bytes[..20]);
    bytes[20..24].copy_from_slice(&crc.to_le_bytes());
    fs::write(&path, &bytes).unwrap();
    let e = open(dir.path(), false).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::UnsupportedFormat);
    assert!(e.message().contains("version 3"), "{e}");
    assert_eq!(
        fs::read(&path).unwrap(),
        bytes,
        "a refused open changes nothing"
    );
}

#[test]
fn a_damaged_or_cut_header_is_corrupt_not_an_unknown_version() {
    let dir = TestDir::new("header-damage");
    drop(open(dir.path(), false).unwrap());
    let path = dir.path().join(journal_name(1));
    let intact = fs::read(&path).unwrap();
    for len in 0..HEADER_LEN {
        fs::write(&path, &intact[..len]).unwrap();
        let e = open(dir.path(), false).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupt, "cut to {len} bytes: {e}");
        assert!(e.message().contains(&journal_name(1)), "{e}");
    }
    // Every bit of the magic and of the version.
    for byte in 0..12 {
        for bit in 0..8 {
            let mut b = intact.clone();
            b[byte] ^= 1 << bit;
            fs::write(&path, &b).unwrap();
            let e = open(dir.path(), false).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Corrupt, "flip {byte}.{bit}: {e}");
        }
    }
    fs::write(&path, &intact).unwrap();
    open(dir.path(), false).unwrap();
}

fn compact(store: &Store, entries: &[&[u8]]) -> Compaction {
    let mut c = store
        .begin_compaction()
        .unwrap()
        .expect("no compaction running");
    assert!(
        store.begin_compaction().unwrap().is_none(),
        "one compaction at a time"
    );
    for e in entries {
        c.write(e).unwrap();
    }
    c
}

#[test]
fn compaction_replaces_old_files_and_reopens_to_snapshot_plus_journal() {
    let dir = TestDir::new("compact");
    let (store, _, _) = open(dir.path(), false).unwrap();
    write(&store, &[b"j1", b"j2"]);
    let c = compact(&store, &[b"state"]);
    // Writers go on while the snapshot is being written; their records land in journal 2.
    write(&store, &[b"j3"]);
    let bytes = c.finish().unwrap();
    store.compaction_finished(bytes);
    write(&store, &[b"j4"]);
    drop(store);
    assert_eq!(
        file_names(dir.path()),
        vec![
            "LOCK",
            "images",
            "journal-0000000000000002.tsj",
            "snapshot-0000000000000002.tss"
        ]
    );
    let (_, got, rec) = open(dir.path(), false).unwrap();
    assert_eq!(rec.snapshot_generation, Some(2));
    assert_eq!(
        got,
        vec![
            (Origin::Snapshot, b"state".to_vec()),
            (Origin::Journal, b"j3".to_vec()),
            (Origin::Journal, b"j4".to_vec())
        ]
    );
}

#[test]
fn crash_after_rotation_before_the_snapshot_keeps_everything() {
    let dir = TestDir::new("crash-rotate");
    let (store, _, _) = open(dir.path(), false).unwrap();
    write(&store, &[b"j1"]);
    let c = compact(&store, &[b"half a snapshot"]);
    write(&store, &[b"j2"]);
    // The crash: the snapshot is never renamed. Leave a temporary file as a killed process would.
    std::mem::forget(c);
    drop(store);
    assert!(file_names(dir.path())
        .iter()
        .any(|n| n.ends_with(TMP_SUFFIX)));
    let (store, got, rec) = open(dir.path(), false).unwrap();
    assert_eq!(rec.snapshot_generation, None);
    assert_eq!(journal_records(&got), vec![b"j1".to_vec(), b"j2".to_vec()]);
    assert!(
        !file_names(dir.path())
            .iter()
            .any(|n| n.ends_with(TMP_SUFFIX)),
        "debris removed"
    );
    // The next compaction still works and supersedes both journals.
    let c = compact(&store, &[b"state"]);
    c.finish().unwrap();
    drop(store);
    let (_, got, _) = open(dir.path(), false).unwrap();
    assert_eq!(got, vec![(Origin::Snapshot, b"state".to_vec())]);
}

#[test]
fn crash_after_the_snapshot_rename_before_cleanup_uses_the_new_snapshot() {
    let dir = TestDir::new("crash-cleanup");
    let (store, _, _) = open(dir.path(), false).unwrap();
    write(&store, &[b"j1"]);
    compact(&store, &[b"s2"]).finish().unwrap();
    write(&store, &[b"j2"]);
    compact(&store, &[b"s3"]).finish_without_cleanup().unwrap();
    write(&store, &[b"j3"]);
    drop(store);
    assert_eq!(file_names(dir.path()).len(), 6);
    let (_, got, rec) = open(dir.path(), false).unwrap();
    assert_eq!(rec.snapshot_generation, Some(3));
    assert_eq!(
        got,
        vec![
            (Origin::Snapshot, b"s3".to_vec()),
            (Origin::Journal, b"j3".to_vec())
        ]
    );
    assert_eq!(
        file_names(dir.path()),
        vec![
            "LOCK",
            "images",
            "journal-0000000000000003.tsj",
            "snapshot-0000000000000003.tss"
        ]
    );
}

#[test]
fn a_missing_or_torn_older_journal_is_corruption_not_silence() {
    let dir = TestDir::new("gap");
    let (store, _, _) = open(dir.path(), false).unwrap();
    write(&store, &[b"j1"]);
    let c = compact(&store, &[]);
    write(&store, &[b"j2"]);
    drop(c); // abandoned: journals 1 and 2 remain, no snapshot
    drop(store);
    let j1 = dir.path().join(journal_name(1));
    let bytes = fs::read(&j1).unwrap();
    fs::write(&j1, &bytes[..bytes.len() - 1]).unwrap();
    let e = open(dir.path(), false).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt);
    assert!(e.message().contains("newer journal"), "{e}");
    fs::remove_file(&j1).unwrap();
    let e = open(dir.path(), false).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt);
    assert!(e.message().contains("no snapshot"), "{e}");
}

#[test]
fn real_files_share_syncs_between_writers() {
    for threads in [2usize, 8] {
        let dir = TestDir::new("group");
        let (store, _, _) = open(dir.path(), false).unwrap();
        let writer = Mutex::new(());
        std::thread::scope(|s| {
            for t in 0..threads {
                let (store, writer) = (&store, &writer);
                s.spawn(move || {
                    for i in 0..40 {
                        let ticket = {
                            let _g = writer.lock();
                            store.append(format!("{t}/{i}").as_bytes()).unwrap()
                        };
                        store.wait(ticket).unwrap();
                    }
                });
            }
        });
        let s = store.stats();
        assert_eq!(s.records_synced, threads as u64 * 40);
        assert!(s.records_synced > s.syncs, "{threads} threads: {s:?}");
        drop(store);
        let (_, got, _) = open(dir.path(), false).unwrap();
        assert_eq!(got.len(), threads * 40);
    }
}

#[test]
fn key_ring_and_blobs_live_in_the_data_directory() {
    let dir = TestDir::new("keys-blobs");
    let (store, _, _) = open(dir.path(), false).unwrap();
    assert!(store.read_key_ring().unwrap().is_none());
    store.write_key_ring(b"ring").unwrap();
    let sha: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(b"img").into();
    store.put_blob(&sha, b"img").unwrap();
    drop(store);
    let (store, _, _) = open(dir.path(), true).unwrap();
    assert_eq!(&store.read_key_ring().unwrap().unwrap()[..], b"ring");
    assert_eq!(store.get_blob(&sha).unwrap().unwrap(), b"img");
    assert_eq!(store.blob_addresses().unwrap(), vec![sha]);
}

/// Each inner slice is one group commit (one batch).
fn write_batches(store: &Store, batches: &[&[&[u8]]]) {
    for batch in batches {
        let tickets: Vec<Ticket> = batch.iter().map(|r| store.append(r).unwrap()).collect();
        store.wait(*tickets.last().unwrap()).unwrap();
    }
}

#[test]
fn damage_to_a_synced_batch_is_corrupt_wherever_it_is_even_with_a_torn_final_batch() {
    let dir = TestDir::new("synced-damage");
    let (store, _, _) = open(dir.path(), false).unwrap();
    write_batches(
        &store,
        &[
            &[b"one", b"two"],
            &[b"three"],
            &[b"four", b"five"],
            &[b"six"],
        ],
    );
    drop(store);
    let path = dir.path().join(journal_name(1));
    let intact = fs::read(&path).unwrap();
    let starts = batch::tests::batch_offsets(&intact);
    let kept_before = [0, 2, 3];
    // Every byte of every batch but the last: a valid batch follows, so it was synced.
    for k in 0..starts.len() - 1 {
        for i in starts[k]..starts[k + 1] {
            let mut bytes = intact.clone();
            bytes[i] ^= 1 << (i % 8);
            // The final batch may be torn as well: it does not hide the damage before it.
            if i % 3 == 0 {
                bytes.truncate(bytes.len() - 2);
            }
            fs::write(&path, &bytes).unwrap();
            let e = open(dir.path(), false).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Corrupt, "flip at {i}: {e}");
            assert!(e.message().contains(&journal_name(1)), "{e}");
            assert!(
                e.message().contains(&format!("byte offset {}", starts[k])),
                "flip at {i}: {e}"
            );
            assert_eq!(
                fs::read(&path).unwrap(),
                bytes,
                "a failed open changes nothing"
            );
            if i == starts[k] + batch::BATCH_HEADER_LEN {
                let (_, got, rec) = open(dir.path(), true).unwrap();
                assert_eq!(got.len(), kept_before[k], "salvage loads what precedes it");
                assert_eq!(rec.salvage_stopped_at.unwrap().kind(), ErrorKind::Corrupt);
            }
        }
    }
    // A whole synced page lost (zeros, as a misdirected write leaves it) is damage too.
    let mut bytes = intact.clone();
    bytes[starts[1]..starts[2]].fill(0);
    fs::write(&path, &bytes).unwrap();
    assert_eq!(
        open(dir.path(), false).unwrap_err().kind(),
        ErrorKind::Corrupt
    );
    fs::write(&path, &intact).unwrap();
    let (_, got, rec) = open(dir.path(), false).unwrap();
    assert_eq!((got.len(), rec.torn_bytes), (6, 0));
}

#[test]
fn a_synced_record_whose_length_points_past_the_end_is_corrupt_not_a_torn_tail() {
    // Damage that rewrites a record's length word consistently (its check byte too) so that
    // it reaches past the end of the file: record framing alone takes it for the torn final
    // record and silently drops every later write; the batch checksum does not.
    let dir = TestDir::new("synced-length");
    let (store, _, _) = open(dir.path(), false).unwrap();
    write(
        &store,
        &[b"kept", b"the damaged one", b"acknowledged after it"],
    );
    drop(store);
    let path = dir.path().join(journal_name(1));
    let mut bytes = fs::read(&path).unwrap();
    let payload = bytes
        .windows(15)
        .position(|w| w == b"the damaged one")
        .unwrap();
    // Length 0xFF_FFFF, check byte 0xA5 ^ 0xFF ^ 0xFF ^ 0xFF.
    bytes[payload - 8..payload - 4].copy_from_slice(&0x5AFF_FFFFu32.to_le_bytes());
    fs::write(&path, &bytes).unwrap();
    let e = open(dir.path(), false).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    assert_eq!(fs::read(&path).unwrap(), bytes);
}

/// A journal as the previous release wrote it, byte for byte: format 1, generation 1, records
/// "first", "second", "third, torn" framed one after another with no batches.
const FORMAT_1_JOURNAL: &str = "545352414a524e4c010000000100000000000000851cc824050000a04559d1e1\
                                6669727374060000a308610a9f7365636f6e640b0000aeba681dd474686972\
                                642c20746f726e";

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn a_journal_of_the_previous_format_opens_as_before_and_writing_goes_on_in_batches() {
    let golden = unhex(FORMAT_1_JOURNAL);
    let records = [
        b"first".to_vec(),
        b"second".to_vec(),
        b"third, torn".to_vec(),
    ];
    let last_start = golden.len() - (8 + 11);
    let fresh = || {
        let dir = TestDir::new("format-1");
        fs::write(dir.path().join(journal_name(1)), &golden).unwrap();
        dir
    };

    // Intact: every record, nothing cut, and the file untouched.
    let dir = fresh();
    let (store, got, rec) = open(dir.path(), false).unwrap();
    assert_eq!(journal_records(&got), records);
    assert_eq!((rec.torn_bytes, rec.torn_records), (0, 0));
    let old = dir.path().join(journal_name(1));
    assert_eq!(
        fs::read(&old).unwrap(),
        golden,
        "a format-1 journal is only read"
    );
    // New writes go to a new journal in the current format.
    write(&store, &[b"fourth"]);
    drop(store);
    let new = fs::read(dir.path().join(journal_name(2))).unwrap();
    let (_, version) = parse_header_version(&old, FileKind::Journal, &new).unwrap();
    assert_eq!(version, JOURNAL_VERSION_BATCHES);
    let (store, got, _) = open(dir.path(), false).unwrap();
    let mut all = records.to_vec();
    all.push(b"fourth".to_vec());
    assert_eq!(journal_records(&got), all);
    // A compaction supersedes both.
    compact(&store, &[b"state"]).finish().unwrap();
    drop(store);
    assert_eq!(
        file_names(dir.path()),
        vec![
            "LOCK",
            "images",
            "journal-0000000000000003.tsj",
            "snapshot-0000000000000003.tss"
        ]
    );

    // Torn anywhere in its last record: cut as before (one record counted), then continued.
    for cut in last_start + 1..golden.len() {
        let dir = fresh();
        fs::write(dir.path().join(journal_name(1)), &golden[..cut]).unwrap();
        let (store, got, rec) = open(dir.path(), false).unwrap();
        assert_eq!(journal_records(&got), records[..2], "cut at {cut}");
        assert_eq!(
            (rec.torn_bytes, rec.torn_records),
            ((cut - last_start) as u64, 1)
        );
        let old = dir.path().join(journal_name(1));
        assert_eq!(fs::metadata(&old).unwrap().len(), last_start as u64);
        write(&store, &[b"after"]);
        drop(store);
        let (_, got, rec) = open(dir.path(), false).unwrap();
        assert_eq!(rec.torn_bytes, 0);
        assert_eq!(journal_records(&got).len(), 3, "cut at {cut}");
    }

    // Damage before its last record: Corrupt at the record's offset, as before.
    let dir = fresh();
    let mut bytes = golden.clone();
    bytes[HEADER_LEN + 13 + 9] ^= 0xff; // a payload byte of "second"
    fs::write(dir.path().join(journal_name(1)), &bytes).unwrap();
    let e = open(dir.path(), false).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt);
    assert!(
        e.message()
            .contains(&format!("byte offset {}", HEADER_LEN + 13)),
        "{e}"
    );
    let (_, got, rec) = open(dir.path(), true).unwrap();
    assert_eq!(journal_records(&got), records[..1]);
    assert!(rec.salvage_stopped_at.is_some());
}

/// A superseded file is shrunk in steps of `SHRINK_STEP` before it is deleted: one step is
/// left whole, and a longer file is cut down to what remains past its last whole step (that
/// remainder, at most one step, is left to the deletion).
#[test]
fn superseded_files_are_shrunk_step_by_step() {
    let dir = TestDir::new("shrink");
    for (len, left) in [
        (0, 0),
        (SHRINK_STEP, SHRINK_STEP),
        (SHRINK_STEP + 1, 1),
        (3 * SHRINK_STEP + 7, 7),
    ] {
        let path = dir.path().join("old");
        let f = File::create(&path).unwrap();
        f.set_len(len).unwrap();
        drop(f);
        shrink(&path).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().len(), left, "{len}");
    }
    shrink(&dir.path().join("never there")).unwrap();
}
