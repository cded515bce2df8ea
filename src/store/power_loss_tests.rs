//! Power-loss simulation. The final group-commit batch of a journal has been written but its
//! `fdatasync` has not completed when the power fails: the disk may have persisted any subset
//! of the batch's 4 KiB pages, in any order, and the file's length may or may not have grown
//! with them. A page it did not persist holds zeros, stale bytes of an earlier journal whose
//! blocks the file reuses, or garbage. Whatever it left, open must succeed on its own (no
//! salvage, no operator) with exactly the records of the synced batches — and the final
//! batch's only when all of it arrived — and report what it cut.
//!
//! `TESSERA_POWER_LOSS_CASES` sets the number of cases (default 2 000 in a debug build and
//! 20 000 in a release build), `TESSERA_POWER_LOSS_SEED` the seed. docs/RELIABILITY.md has
//! the command for the release run.

use super::atomic_file::test_dir::TestDir;
use super::batch::{BATCHES_START, BATCH_HEADER_LEN};
use super::*;

const PAGE: usize = 4096;

/// splitmix64: deterministic, so a failing case can be replayed from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.fill(&mut v);
        v
    }

    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i + 1));
        }
    }
}

fn env_or(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a number")),
        Err(_) => default,
    }
}

type Batches = Vec<Vec<Vec<u8>>>;

/// A journal whose last batch the power failure catches.
struct Scenario {
    name: &'static str,
    /// The journal as it is once every batch reached the disk.
    full: Vec<u8>,
    /// Where the final batch starts: every byte before it was synced.
    synced_len: usize,
    synced_records: Vec<Vec<u8>>,
    final_records: Vec<Vec<u8>>,
    /// An earlier journal whose blocks the disk may still hold: the same batches of records of
    /// the same sizes — so its batch headers sit at the same offsets, with the same sequence
    /// numbers, lengths and counts — but other bytes and another salt.
    stale: Vec<u8>,
}

/// Writes `batches` through the store, one group commit each, and returns the journal's bytes
/// and where its last batch starts.
fn write_journal(batches: &Batches) -> (Vec<u8>, usize) {
    let dir = TestDir::in_memory("power-loss-build");
    let path = dir.path().join(journal_name(1));
    let (store, _) = Store::open(dir.path(), false, |_, _| Ok(())).unwrap();
    let mut last_start = 0;
    for batch in batches {
        last_start = fs::metadata(&path).unwrap().len() as usize;
        let tickets: Vec<Ticket> = batch.iter().map(|r| store.append(r).unwrap()).collect();
        store.wait(*tickets.last().unwrap()).unwrap();
    }
    assert_eq!(
        store.stats().syncs,
        batches.len() as u64,
        "one write per batch"
    );
    drop(store);
    (fs::read(&path).unwrap(), last_start)
}

/// Random records for the synced batches: `count` batches of 1 to 3 records of up to 400
/// bytes, then (with `align`) one batch of one record sized so that the final batch starts at
/// `align` bytes into a page.
fn synced_batches(rng: &mut Rng, count: usize, align: Option<usize>) -> Batches {
    let mut batches: Batches = Vec::new();
    for _ in 0..count {
        let records = 1 + rng.below(3);
        batches.push(
            (0..records)
                .map(|_| {
                    let len = rng.below(401);
                    rng.bytes(len)
                })
                .collect(),
        );
    }
    if let Some(align) = align {
        let frames: usize = batches
            .iter()
            .map(|b| BATCH_HEADER_LEN + b.iter().map(|r| 8 + r.len()).sum::<usize>())
            .sum();
        let at = BATCHES_START as usize + frames + BATCH_HEADER_LEN + 8;
        let pad = (align + 2 * PAGE - at % PAGE) % PAGE;
        batches.push(vec![rng.bytes(pad)]);
    }
    batches
}

fn scenario(
    rng: &mut Rng,
    name: &'static str,
    synced: usize,
    align: Option<usize>,
    final_sizes: &[usize],
) -> Scenario {
    let mut batches = synced_batches(rng, synced, align);
    batches.push(final_sizes.iter().map(|&n| rng.bytes(n)).collect());
    let (full, synced_len) = write_journal(&batches);
    if let Some(align) = align {
        assert_eq!(synced_len % PAGE, align, "{name}: alignment");
    }
    let final_records = batches.pop().unwrap();
    let synced_records = batches.iter().flatten().cloned().collect();
    // The stale journal: same shapes, other bytes.
    let mut shapes = batches;
    shapes.push(final_records.clone());
    for r in shapes.iter_mut().flatten() {
        rng.fill(r);
    }
    let (stale, stale_last) = write_journal(&shapes);
    assert_eq!(
        (stale.len(), stale_last),
        (full.len(), synced_len),
        "{name}: the stale journal has the same layout"
    );
    assert_ne!(stale[synced_len..], full[synced_len..]);
    Scenario {
        name,
        full,
        synced_len,
        synced_records,
        final_records,
        stale,
    }
}

fn scenarios(rng: &mut Rng) -> Vec<Scenario> {
    vec![
        scenario(rng, "small", 3, None, &[700, 2500, 1800, 3000, 90]),
        scenario(rng, "page-aligned", 2, Some(0), &[3000, 3000, 3000, 3000]),
        scenario(
            rng,
            "header-straddles-pages",
            2,
            Some(PAGE - 20),
            &[1000; 6],
        ),
        scenario(
            rng,
            "header-ends-a-page",
            1,
            Some(PAGE - BATCH_HEADER_LEN),
            &[5000, 200],
        ),
        scenario(rng, "one-big-record", 5, None, &[14_000]),
        scenario(
            rng,
            "many-small-records",
            1,
            None,
            &(0..60).map(|i| (i * 37) % 300).collect::<Vec<_>>(),
        ),
        scenario(rng, "first-batch-of-the-file", 0, None, &[2000, 2000, 2000]),
        scenario(rng, "within-one-page", 4, Some(1000), &[100, 200]),
    ]
}

/// What a page the disk did not persist holds.
#[derive(Clone, Copy)]
enum Leftover {
    Zeros,
    Stale,
    Garbage,
}

#[derive(Default, Debug)]
struct Tally {
    cases: u64,
    /// The whole final batch arrived and was kept.
    whole: u64,
    /// The file never grew: the final batch left nothing.
    never_grew: u64,
    /// Torn, with the batch header intact (its record count reported).
    torn_header_intact: u64,
    /// Torn, with the batch header lost.
    torn_header_lost: u64,
    /// Cases whose file length stopped at a page boundary inside the batch.
    short_length: u64,
    pages_left_stale: u64,
    pages_left_zero: u64,
    pages_left_garbage: u64,
}

fn open_journal(dir: &Path) -> Result<(Store, Vec<Vec<u8>>, Recovery)> {
    let mut got = Vec::new();
    let (store, rec) = Store::open(dir, false, |o, r| {
        assert_eq!(o, Origin::Journal);
        got.push(r.to_vec());
        Ok(())
    })?;
    Ok((store, got, rec))
}

/// One simulated power failure during the final batch of `s`, checked.
fn run_case(s: &Scenario, rng: &mut Rng, dir: &Path, case: u64, tally: &mut Tally) {
    let f = s.synced_len;
    let full_len = s.full.len();
    let first_page = f / PAGE;
    let last_page = (full_len - 1) / PAGE;
    // The file's length: grown fully (most cases), not at all, or to a page boundary inside
    // the batch.
    let boundaries: Vec<usize> = (first_page + 1..=last_page)
        .map(|p| p * PAGE)
        .filter(|&b| b > f && b < full_len)
        .collect();
    let len = match rng.below(10) {
        0 => f,
        1 | 2 if !boundaries.is_empty() => boundaries[rng.below(boundaries.len())],
        _ => full_len,
    };
    // The order the disk would have written the batch's pages in, and how far it got.
    let mut order: Vec<usize> = (first_page..=last_page).collect();
    rng.shuffle(&mut order);
    let persisted = &order[..rng.below(order.len() + 1)];
    let mut image = s.full[..len].to_vec();
    for page in first_page..=last_page {
        if persisted.contains(&page) {
            continue;
        }
        // The synced bytes at the start of the batch's first page were synced before.
        let (lo, hi) = ((page * PAGE).max(f), ((page + 1) * PAGE).min(len));
        if lo >= hi {
            continue;
        }
        match [Leftover::Zeros, Leftover::Stale, Leftover::Garbage][rng.below(3)] {
            Leftover::Zeros => {
                image[lo..hi].fill(0);
                tally.pages_left_zero += 1;
            }
            Leftover::Stale => {
                image[lo..hi].copy_from_slice(&s.stale[lo..hi]);
                tally.pages_left_stale += 1;
            }
            Leftover::Garbage => {
                rng.fill(&mut image[lo..hi]);
                tally.pages_left_garbage += 1;
            }
        }
    }
    let path = dir.join(journal_name(1));
    fs::write(&path, &image).unwrap();

    let what = format!(
        "case {case} ({}): length {len} of {full_len}, batch at {f}, persisted pages {persisted:?} \
         of {first_page}..={last_page}",
        s.name
    );
    let (store, got, rec) = match open_journal(dir) {
        Ok(opened) => opened,
        Err(e) => panic!("{what}: open failed: {e}"),
    };
    let whole = len == full_len && image[f..] == s.full[f..];
    let mut want = s.synced_records.clone();
    if whole {
        want.extend(s.final_records.iter().cloned());
    }
    assert!(
        got == want,
        "{what}: {} records, want {}",
        got.len(),
        want.len()
    );
    let header_intact = len >= f + BATCH_HEADER_LEN
        && image[f..f + BATCH_HEADER_LEN] == s.full[f..f + BATCH_HEADER_LEN];
    let want_torn = if whole || len == f {
        (0, 0)
    } else if header_intact {
        ((len - f) as u64, s.final_records.len() as u64)
    } else {
        ((len - f) as u64, 1)
    };
    assert_eq!((rec.torn_bytes, rec.torn_records), want_torn, "{what}");
    let stats = store.stats();
    assert_eq!(
        (stats.torn_tail_bytes, stats.torn_tail_records),
        want_torn,
        "{what}"
    );
    let kept = if whole { full_len } else { f };
    assert_eq!(fs::metadata(&path).unwrap().len(), kept as u64, "{what}");
    tally.cases += 1;
    match (whole, len == f, header_intact) {
        (true, _, _) => tally.whole += 1,
        (_, true, _) => tally.never_grew += 1,
        (_, _, true) => tally.torn_header_intact += 1,
        _ => tally.torn_header_lost += 1,
    }
    if len != f && len != full_len {
        tally.short_length += 1;
    }
    // Now and then, check that the journal goes on after the cut.
    if case.is_multiple_of(32) {
        store
            .wait(store.append(b"after the power came back").unwrap())
            .unwrap();
        drop(store);
        let (_, again, rec) = open_journal(dir).unwrap_or_else(|e| panic!("{what}: reopen: {e}"));
        assert_eq!(rec.torn_bytes, 0, "{what}");
        assert_eq!(again.len(), want.len() + 1, "{what}");
        assert_eq!(
            again.last().unwrap(),
            b"after the power came back",
            "{what}"
        );
    }
}

#[test]
fn power_loss_during_the_final_batch_recovers_without_an_operator() {
    let default_cases = if cfg!(debug_assertions) {
        2_000
    } else {
        20_000
    };
    let cases = env_or("TESSERA_POWER_LOSS_CASES", default_cases);
    let seed = env_or("TESSERA_POWER_LOSS_SEED", 0x7e55_e7a0_0011);
    let mut rng = Rng(seed);
    let started = std::time::Instant::now();
    let scenarios = scenarios(&mut rng);
    let dir = TestDir::in_memory("power-loss");
    drop(open_journal(dir.path()).unwrap());
    let mut tally = Tally::default();
    for case in 0..cases {
        let s = &scenarios[rng.below(scenarios.len())];
        run_case(s, &mut rng, dir.path(), case, &mut tally);
    }
    // Every kind of outcome was reached, not just the easy ones.
    assert!(
        tally.whole > 0
            && tally.never_grew > 0
            && tally.torn_header_intact > 0
            && tally.torn_header_lost > 0
            && tally.short_length > 0,
        "{tally:?}"
    );
    eprintln!(
        "power loss: {cases} cases (seed {seed:#x}) in {:.1?}: {tally:?}",
        started.elapsed()
    );
}
