//! What commands print: tables (comfy-table) for people, one JSON document for scripts, and
//! progress bars (indicatif) on stderr, drawn only when stderr is a terminal.

use std::io::Write;
use std::time::Duration;

use comfy_table::{presets, ContentArrangement, Table};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use tessera::User;

use crate::failure::{self, Failure};

/// The output mode of this run.
pub struct Out {
    pub json: bool,
}

impl Out {
    pub fn new(json: bool) -> Out {
        Out { json }
    }

    /// Prints one JSON document on stdout.
    pub fn json(&self, doc: &Value) -> Result<(), Failure> {
        self.line(&doc.to_string())
    }

    /// Prints a line on stdout; a closed stdout is an I/O failure, not a panic.
    pub fn line(&self, text: &str) -> Result<(), Failure> {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{text}")
            .and_then(|()| stdout.flush())
            .map_err(|e| failure::io("writing to stdout", e))
    }

    /// Prints a table with a header row.
    pub fn table(&self, header: &[&str], rows: Vec<Vec<String>>) -> Result<(), Failure> {
        let mut t = Table::new();
        t.load_preset(presets::UTF8_FULL_CONDENSED)
            .set_content_arrangement(ContentArrangement::Dynamic)
            .set_header(header.to_vec());
        for r in rows {
            t.add_row(r);
        }
        self.line(&t.to_string())
    }

    /// Prints field/value pairs as a two-column table.
    pub fn fields(&self, rows: Vec<(&str, String)>) -> Result<(), Failure> {
        let mut t = Table::new();
        t.load_preset(presets::UTF8_FULL_CONDENSED)
            .set_content_arrangement(ContentArrangement::Dynamic);
        for (k, v) in rows {
            t.add_row(vec![k.to_owned(), v]);
        }
        self.line(&t.to_string())
    }

    /// Prints a user as field/value rows, or as its JSON object.
    pub fn user(&self, u: &User) -> Result<(), Failure> {
        if self.json {
            return self.json(&user_json(u));
        }
        let opt = |v: &Option<String>| v.clone().unwrap_or_default();
        let mut rows = vec![
            ("user_id", u.user_id.clone()),
            ("nickname", u.nickname.clone()),
            ("active", u.is_active.to_string()),
            ("handle", u.handle.to_string()),
            ("created", utc(u.created_at_ms)),
        ];
        for (k, v) in [
            ("profile_url", &u.profile_url),
            ("role", &u.role),
            ("status_message", &u.status_message),
            ("link", &u.link),
            ("email", &u.email),
            ("mobile_number", &u.mobile_number),
        ] {
            if v.is_some() {
                rows.push((k, opt(v)));
            }
        }
        if !u.tags.is_empty() {
            rows.push(("tags", u.tags.join(", ")));
        }
        if !u.discovery_keys.is_empty() {
            rows.push(("discovery_keys", u.discovery_keys.join(", ")));
        }
        if !u.metadata.is_empty() {
            rows.push(("metadata", Value::Object(u.metadata.clone()).to_string()));
        }
        self.fields(rows)
    }
}

/// A user as JSON: every field of [`User`], keys in sorted order.
pub fn user_json(u: &User) -> Value {
    serde_json::to_value(u).unwrap_or(Value::Null)
}

/// A progress bar with rate and ETA on stderr (hidden when stderr is not a terminal).
pub fn bar(total: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(total);
    let style = ProgressStyle::with_template(
        "{msg} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec}, ETA {eta})",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    pb.set_style(style);
    pb.set_message(what.to_owned());
    pb
}

/// A progress bar in bytes with rate and ETA on stderr (hidden when stderr is not a terminal).
pub fn byte_bar(what: &str) -> ProgressBar {
    let pb = ProgressBar::new(0);
    let style = ProgressStyle::with_template(
        "{msg} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, ETA {eta})",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    pb.set_style(style);
    pb.set_message(what.to_owned());
    pb
}

/// A spinner with elapsed time, for one long step whose progress cannot be counted.
pub fn spinner(what: &str) -> ProgressBar {
    let pb = ProgressBar::new_spinner();
    let style = ProgressStyle::with_template("{spinner} {msg} [{elapsed_precise}]")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    pb.set_style(style);
    pb.set_message(what.to_owned());
    pb.enable_steady_tick(Duration::from_millis(100));
    pb
}

/// Times are printed as the library's diagnoses print them.
pub use tessera::utc_rfc3339 as utc;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
