//! `tessera`: the command-line tool for a Tessera data directory or cluster.
//!
//! Users, tokens, signing keys, statistics, backup and restore, compaction, a demo and a small
//! load bench, with tables for people and `--json` for scripts. Every failure goes to stderr
//! with its stable error code (docs/ERRORS.md), and the exit status is that code. Secrets are
//! printed once, by the two commands that issue them; nothing else prints a token or a key.
//!
//! Built with the `cli` feature: `cargo install --path . --features cli`.

mod bench;
mod demo;
mod failure;
mod migrate;
mod output;
mod store;
mod tokens;
mod users;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use failure::Failure;
use output::Out;
use store::Target;

/// Manage a Tessera identity store: users, tokens, signing keys, backups.
#[derive(Parser, Debug)]
#[command(name = "tessera", version, about, long_about = None)]
#[command(
    after_help = "Exit status: 0 on success, otherwise the error's stable code \
    (docs/ERRORS.md): 4 user not found, 20 invalid token, ...; 64 a usage error; 65 an import \
    with records it could not take. Errors go to stderr as `tessera: error[CODE Kind]: message`."
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug)]
struct Global {
    /// Data directory of an embedded store. Default ./tessera-data, or the cluster of
    /// TESSERA_PG_DSN when that is set and neither --data nor --pg is given.
    #[arg(long, global = true, value_name = "DIR", conflicts_with = "pg")]
    data: Option<PathBuf>,
    /// PostgreSQL connection string of a cluster (cluster mode).
    #[arg(long, global = true, value_name = "DSN")]
    pg: Option<String>,
    /// Configuration file: the JSON document the server passes to tessera_engine_open
    /// (limits, user-id rules, sync_mode, cluster options). Default: the defaults.
    #[arg(long, global = true, value_name = "FILE", env = "TESSERA_CONFIG")]
    config: Option<PathBuf>,
    /// Print JSON (one document per command) instead of tables.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create, read, change, list, import and export users.
    #[command(subcommand)]
    Users(Box<users::UsersCommand>),
    /// Issue, list, revoke and check access and session tokens.
    #[command(subcommand)]
    Tokens(tokens::TokensCommand),
    /// List, rotate and retire session-token signing keys (never shows key material).
    #[command(subcommand)]
    Keys(tokens::KeysCommand),
    /// Counts and journal statistics of the store.
    Stats,
    /// Copy the whole store (users, tokens, keys, images) into a new data directory, at one
    /// instant.
    Backup {
        /// The new backup directory; must not exist or be empty.
        dir: PathBuf,
    },
    /// Restore a backup into an empty data directory (--data) or an empty cluster (--pg).
    Restore {
        /// A directory written by `tessera backup`.
        backup: PathBuf,
    },
    /// Write a snapshot and start a fresh journal, so the next open replays less.
    Compact,
    /// Run the quickstart's main job (users, tokens, login, revocation, events) on a temporary
    /// store that is removed afterwards.
    Demo,
    /// A small load harness: mixed verify/issue/create/revoke traffic from several threads,
    /// with throughput and latency percentiles per operation.
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are not errors; everything else is a usage error, whose
            // status (64) no error code can take (clap's own 2 is InvalidUserId here).
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { failure::USAGE } else { 0 });
        }
    };
    let out = Out::new(cli.global.json);
    match run(cli, &out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            f.report(&out);
            ExitCode::from(f.exit_status())
        }
    }
}

fn run(cli: Cli, out: &Out) -> Result<(), Failure> {
    store::load_settings(cli.global.config.as_deref())?;
    let target = Target::choose(cli.global.data, cli.global.pg);
    match cli.command {
        Command::Users(c) => users::run(*c, &target, out),
        Command::Tokens(c) => tokens::run(c, &target, out),
        Command::Keys(c) => tokens::run_keys(c, &target, out),
        Command::Stats => store::stats(&target, out),
        Command::Backup { dir } => store::backup(&target, &dir, out),
        Command::Restore { backup } => store::restore(&backup, &target, out),
        Command::Compact => store::compact(&target, out),
        Command::Demo => demo::run(out),
        Command::Bench(args) => bench::run(args, out),
    }
}
