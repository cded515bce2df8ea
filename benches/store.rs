//! Durable-store benchmarks (issue 3): what a durable write costs next to the raw
//! `write + fdatasync` it is built on, how many records concurrent writers share per sync, and
//! (in `examples/cold_open.rs`, too big for here) how long a 1 M-user directory takes to open.
//!
//! `cargo bench --bench store` takes about a minute. Data lives under the system temp dir
//! (set `TMPDIR` to measure another disk).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use tessera::{Engine, NewUser};

static DIRS: AtomicU64 = AtomicU64::new(0);

struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new(name: &str) -> ScratchDir {
        let p = std::env::temp_dir().join(format!(
            "tessera-bench-{}-{}-{name}",
            std::process::id(),
            DIRS.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        ScratchDir(p)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Bytes one durable create-user appends to the journal (frame included), measured.
fn create_user_record_bytes() -> usize {
    let dir = ScratchDir::new("probe");
    let e = Engine::open(&dir.0).unwrap();
    e.create_user(NewUser::new("user-0000000001", "user-0000000001"))
        .unwrap();
    e.store_stats().bytes_written as usize
}

fn single_writer(c: &mut Criterion) {
    let mut g = c.benchmark_group("durable_write");
    g.sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));

    let record = vec![0x5au8; create_user_record_bytes()];
    let dir = ScratchDir::new("raw");
    std::fs::create_dir_all(&dir.0).unwrap();
    let mut file: File = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.0.join("raw"))
        .unwrap();
    g.bench_function(format!("raw_write_fdatasync_{}B", record.len()), |b| {
        b.iter(|| {
            file.write_all(&record).unwrap();
            file.sync_data().unwrap();
        })
    });

    let dir = ScratchDir::new("engine");
    let engine = Engine::open(&dir.0).unwrap();
    let mut n = 0u64;
    g.bench_function("create_user_1_thread", |b| {
        b.iter(|| {
            n += 1;
            let id = format!("user-{n:010}");
            engine
                .create_user(NewUser::new(id.as_str(), id.as_str()))
                .unwrap();
        })
    });
    g.finish();
}

fn concurrent_writers(c: &mut Criterion) {
    let mut g = c.benchmark_group("durable_write");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    for threads in [2u64, 8] {
        let dir = ScratchDir::new("threads");
        let engine = Engine::open(&dir.0).unwrap();
        let next = AtomicU64::new(0);
        g.bench_function(format!("create_user_{threads}_threads"), |b| {
            // Time per create, with `threads` writers sharing the work.
            b.iter_custom(|iters| {
                let per_thread = iters.div_ceil(threads);
                let start = Instant::now();
                std::thread::scope(|s| {
                    for _ in 0..threads {
                        s.spawn(|| {
                            for _ in 0..per_thread {
                                let n = next.fetch_add(1, Ordering::Relaxed);
                                let id = format!("user-{n:010}");
                                engine
                                    .create_user(NewUser::new(id.as_str(), id.as_str()))
                                    .unwrap();
                            }
                        });
                    }
                });
                start
                    .elapsed()
                    .mul_f64(iters as f64 / (per_thread * threads) as f64)
            })
        });
        let s = engine.store_stats();
        eprintln!(
            "{threads} writer threads: {} records in {} syncs = {:.2} records per sync",
            s.records_synced,
            s.syncs,
            s.records_synced as f64 / s.syncs.max(1) as f64
        );
    }
    g.finish();
}

/// Durable create-user against raw write+fdatasync, alternating rounds of 200 so that disk
/// noise from other processes (this machine is shared) hits both alike; prints the ratio.
/// Criterion's separate measurements above can land in different noise regimes.
fn interleaved_ratio(_: &mut Criterion) {
    if !std::env::args().any(|a| a == "--bench") {
        return; // `cargo test --benches` runs each bench once; skip the slow probe there
    }
    let dir = ScratchDir::new("ratio");
    std::fs::create_dir_all(&dir.0).unwrap();
    let engine = Engine::open(dir.0.join("engine")).unwrap();
    let record = vec![0x5au8; create_user_record_bytes()];
    let mut raw = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.0.join("raw"))
        .unwrap();
    let (rounds, per_round) = (8u32, 200u32);
    let (mut t_raw, mut t_engine, mut n) = (Duration::ZERO, Duration::ZERO, 0u64);
    for _ in 0..rounds {
        let t = Instant::now();
        for _ in 0..per_round {
            raw.write_all(&record).unwrap();
            raw.sync_data().unwrap();
        }
        t_raw += t.elapsed();
        let t = Instant::now();
        for _ in 0..per_round {
            n += 1;
            let id = format!("user-{n:010}");
            engine
                .create_user(NewUser::new(id.as_str(), id.as_str()))
                .unwrap();
        }
        t_engine += t.elapsed();
    }
    let ops = f64::from(rounds * per_round);
    eprintln!(
        "interleaved, {}-byte records: raw write+fdatasync {:.0}/s, durable create_user {:.0}/s, \
         ratio {:.2}",
        record.len(),
        ops / t_raw.as_secs_f64(),
        ops / t_engine.as_secs_f64(),
        t_raw.as_secs_f64() / t_engine.as_secs_f64()
    );
}

criterion_group!(
    benches,
    single_writer,
    interleaved_ratio,
    concurrent_writers
);
criterion_main!(benches);
