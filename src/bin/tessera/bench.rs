//! `tessera bench`: a small, self-contained load harness. T threads run a weighted mix of
//! session/access verification, issue, create and revoke against a fresh engine (in memory,
//! or a temporary data directory) and each operation's latency goes into an HDR histogram.
//!
//! It is the quick check an operator can run anywhere the tool is installed. The project's
//! reference harness, whose numbers docs/BENCHMARKS.md records, is examples/tessera-load.rs
//! (more backends, memory per user, a scaling run); this one keeps only its mixed run, with
//! the same default weights.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use clap::Args;
use hdrhistogram::Histogram;
use serde_json::json;
use tessera::{Engine, NewUser};

use crate::failure::{self, Failure};
use crate::output::{self, Out};

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Worker threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Users created before the run, each with one access and one session token.
    #[arg(long, default_value_t = 10_000)]
    users: u64,
    /// Length of the mixed run, in seconds.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Run on a temporary data directory (every write synced) instead of in memory.
    #[arg(long)]
    durable: bool,
}

#[derive(Clone, Copy)]
enum Op {
    VerifySession,
    VerifyAccess,
    IssueSession,
    IssueAccess,
    CreateUser,
    RevokeSessions,
}

/// examples/tessera-load.rs's default mix, in percent.
const MIX: [(Op, u32, &str); 6] = [
    (Op::VerifySession, 60, "verify_session"),
    (Op::VerifyAccess, 25, "verify_access"),
    (Op::IssueSession, 5, "issue_session"),
    (Op::IssueAccess, 4, "issue_access"),
    (Op::CreateUser, 3, "create_user"),
    (Op::RevokeSessions, 3, "revoke_sessions"),
];

/// xorshift64*: a per-thread generator for picking operations and users (not for secrets).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn histogram() -> Result<Histogram<u64>, Failure> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3)
        .map_err(|e| failure::invalid(format!("histogram: {e}")))
}

pub fn run(args: BenchArgs, out: &Out) -> Result<(), Failure> {
    if args.threads == 0 || args.users == 0 || !(args.seconds > 0.0 && args.seconds <= 3600.0) {
        return Err(failure::invalid(
            "--threads and --users must be at least 1, --seconds within (0, 3600]",
        ));
    }
    let dir = std::env::temp_dir().join(format!(
        "tessera-bench-{}-{}",
        std::process::id(),
        output::now_ms()
    ));
    let engine = if args.durable {
        Engine::open(&dir)?
    } else {
        Engine::in_memory()?
    };
    let result = bench(&engine, &args, out);
    drop(engine);
    if args.durable {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

fn bench(engine: &Engine, args: &BenchArgs, out: &Out) -> Result<(), Failure> {
    let pb = output::bar(args.users, "creating users");
    let mut sessions = Vec::with_capacity(args.users as usize);
    let mut access = Vec::with_capacity(args.users as usize);
    for i in 0..args.users {
        let id = format!("u{i}");
        engine.create_user(NewUser::new(id.as_str(), "bench"))?;
        sessions.push(engine.issue_session_token(&id, None)?);
        access.push(engine.issue_access_token(&id, None)?.token);
        pb.inc(1);
    }
    pb.finish_and_clear();
    let next_user = AtomicU64::new(args.users);
    let failures = AtomicU64::new(0);
    let run_for = Duration::from_secs_f64(args.seconds);
    let start = Barrier::new(args.threads);
    let spin = output::spinner("running the mix");
    let began = Instant::now();
    let per_thread: Vec<Result<Vec<Histogram<u64>>, Failure>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..args.threads)
            .map(|t| {
                let (sessions, access, next_user, failures, start) =
                    (&sessions, &access, &next_user, &failures, &start);
                s.spawn(move || {
                    let mut hs = Vec::new();
                    for _ in MIX {
                        hs.push(histogram()?);
                    }
                    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (t as u64 + 1));
                    start.wait();
                    let began = Instant::now();
                    while began.elapsed() < run_for {
                        let mut pick = (rng.next() % 100) as u32;
                        let (slot, op) = MIX
                            .iter()
                            .enumerate()
                            .find_map(|(i, (op, w, _))| {
                                if pick < *w {
                                    Some((i, *op))
                                } else {
                                    pick -= w;
                                    None
                                }
                            })
                            .unwrap_or((0, Op::VerifySession));
                        let u = (rng.next() % args.users) as usize;
                        let t0 = Instant::now();
                        let ok = match op {
                            Op::VerifySession => {
                                // A revoked token is a valid outcome of the mix.
                                let r = engine.verify_session_token(sessions[u].as_str());
                                r.is_ok()
                                    || r.is_err_and(|e| {
                                        e.kind() == tessera::ErrorKind::TokenRevoked
                                    })
                            }
                            Op::VerifyAccess => {
                                // The mix's own issues evict a user's oldest token after 10.
                                let r = engine.verify_access_token(access[u].as_str());
                                r.is_ok()
                                    || r.is_err_and(|e| {
                                        e.kind() == tessera::ErrorKind::InvalidToken
                                    })
                            }
                            Op::IssueSession => {
                                engine.issue_session_token(&format!("u{u}"), None).is_ok()
                            }
                            Op::IssueAccess => {
                                engine.issue_access_token(&format!("u{u}"), None).is_ok()
                            }
                            Op::CreateUser => {
                                let n = next_user.fetch_add(1, Ordering::Relaxed);
                                engine
                                    .create_user(NewUser::new(format!("u{n}"), "bench"))
                                    .is_ok()
                            }
                            Op::RevokeSessions => engine.revoke_sessions(&format!("u{u}")).is_ok(),
                        };
                        let ns = t0.elapsed().as_nanos().min(60_000_000_000) as u64;
                        hs[slot].saturating_record(ns.max(1));
                        if !ok {
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok(hs)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(failure::invalid("a bench thread panicked")))
            })
            .collect()
    });
    let elapsed = began.elapsed().as_secs_f64();
    spin.finish_and_clear();
    let mut merged = Vec::new();
    for _ in MIX {
        merged.push(histogram()?);
    }
    for hs in per_thread {
        for (m, h) in merged.iter_mut().zip(hs?) {
            m.add(&h)
                .map_err(|e| failure::invalid(format!("histogram: {e}")))?;
        }
    }
    let failed = failures.load(Ordering::Relaxed);
    let total: u64 = merged.iter().map(Histogram::len).sum();
    let us = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    if out.json {
        let ops: Vec<_> = MIX
            .iter()
            .zip(&merged)
            .map(|((_, _, name), h)| {
                json!({"op": name, "count": h.len(), "per_sec": h.len() as f64 / elapsed,
                    "p50_us": us(h, 0.5), "p99_us": us(h, 0.99), "p999_us": us(h, 0.999)})
            })
            .collect();
        out.json(
            &json!({"threads": args.threads, "users": args.users, "durable": args.durable,
            "seconds": elapsed, "ops_per_sec": total as f64 / elapsed, "failures": failed,
            "ops": ops}),
        )?;
    } else {
        let rows = MIX
            .iter()
            .zip(&merged)
            .map(|((_, _, name), h)| {
                vec![
                    (*name).to_owned(),
                    h.len().to_string(),
                    format!("{:.0}", h.len() as f64 / elapsed),
                    format!("{:.1}", us(h, 0.5)),
                    format!("{:.1}", us(h, 0.99)),
                    format!("{:.1}", us(h, 0.999)),
                ]
            })
            .collect();
        out.table(
            &["op", "count", "ops/s", "p50 µs", "p99 µs", "p99.9 µs"],
            rows,
        )?;
        out.line(&format!(
            "{total} operations in {elapsed:.2} s on {} threads ({}, {} users): {:.0} ops/s",
            args.threads,
            if args.durable { "durable" } else { "in memory" },
            args.users,
            total as f64 / elapsed
        ))?;
    }
    if failed > 0 {
        return Err(failure::invalid(format!(
            "{failed} operations that must succeed failed"
        )));
    }
    Ok(())
}
