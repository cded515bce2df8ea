//! How long writers wait while a backup is taken: `Engine::backup_to` on a durable engine
//! (journal switch, then a file copy with no lock) against copying the state through
//! `import_from` (what in-memory and cluster engines do, and the alternative for durable
//! ones), in the same run, on the same engine.
//!
//! ```text
//! cargo run --release --example backup_pause -- [USERS] [DIR]     # default 1000000, ./target
//! ```
//!
//! Builds a durable engine of USERS users (in relaxed sync mode, so the probe below measures
//! the writer mutex rather than the disk), compacts it (the usual shape: a snapshot and a short
//! journal), then, while one thread updates users as fast as it can and records each call's
//! latency, takes each kind of backup three times. Prints, per backup, its wall time, the
//! writes that completed during it and the longest write call that overlapped it; and the
//! same for a 500 ms window with no backup running, as the baseline.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tessera::{Engine, NewUser, SyncMode, UserPatch};

fn main() -> tessera::Result<()> {
    let mut args = std::env::args().skip(1);
    let users: u64 = args.next().map_or(1_000_000, |a| a.parse().expect("USERS"));
    let base = PathBuf::from(args.next().unwrap_or_else(|| "target".into()))
        .join(format!("backup-pause-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let relaxed = || Engine::builder().sync_mode(SyncMode::Relaxed(Duration::from_millis(10)));

    let engine = relaxed().open(base.join("data"))?;
    let t = Instant::now();
    for i in 0..users {
        let mut new = NewUser::new(format!("user-{i}"), "a nickname");
        new.tags = vec!["t".into()];
        engine.create_user(new)?;
    }
    engine.compact()?;
    println!("{users} users built and compacted in {:.1?}", t.elapsed());

    // The probe: one writer, every call's (start, end).
    let calls = Arc::new(Mutex::new(Vec::<(Instant, Instant)>::with_capacity(
        1 << 22,
    )));
    let stop = Arc::new(AtomicBool::new(false));
    let probe = {
        let (engine, calls, stop) = (engine.clone(), calls.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let s = Instant::now();
                // Updates, not creations: the state stays the size being measured.
                let patch = UserPatch {
                    nickname: Some(format!("n{i}")),
                    ..Default::default()
                };
                engine
                    .update_user(&format!("user-{}", i % 1000), &patch)
                    .unwrap();
                let e = Instant::now();
                calls.lock().unwrap().push((s, e));
                i += 1;
            }
        })
    };
    std::thread::sleep(Duration::from_millis(500));

    let report = |what: &str, begin: Instant, end: Instant| {
        let calls = calls.lock().unwrap();
        let during = calls
            .iter()
            .filter(|&&(s, e)| s >= begin && e <= end)
            .count();
        let longest = calls
            .iter()
            .filter(|&&(s, e)| e >= begin && s <= end)
            .map(|&(s, e)| e - s)
            .max()
            .unwrap_or_default();
        println!(
            "{what:<28} took {:>8.1?}; {during:>7} writes completed during it; \
             longest overlapping write {longest:>8.2?}",
            end - begin
        );
    };
    for round in 0..3 {
        // The same probe with no backup running, for comparison.
        let begin = Instant::now();
        std::thread::sleep(Duration::from_millis(500));
        report("no backup (500 ms window)", begin, Instant::now());

        let to = base.join(format!("files-{round}"));
        let begin = Instant::now();
        let stats = engine.backup_to(&to)?;
        let end = Instant::now();
        report("backup_to (file copy)", begin, end);
        assert!(stats.users as u64 >= users);
        std::thread::sleep(Duration::from_millis(300));

        let to = base.join(format!("import-{round}"));
        let begin = Instant::now();
        {
            let copy = Engine::open(&to)?;
            copy.import_from(&engine)?;
        }
        let end = Instant::now();
        report("open + import_from", begin, end);
        std::thread::sleep(Duration::from_millis(300));
    }
    stop.store(true, Ordering::Relaxed);
    probe.join().unwrap();
    drop(engine);
    std::fs::remove_dir_all(&base).unwrap();
    Ok(())
}
