//! `tessera users ...`: one user at a time, lists with the API's filters and cursor, and
//! JSON Lines import and export.

use std::io::{BufRead, BufWriter, Read, Write};
use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use tessera::{Engine, NewUser, User, UserPatch, UserQuery};

use crate::failure::{self, Failure};
use crate::migrate::{self, Candidate, Platform};
use crate::output::{self, Out};
use crate::store::{Access, Target};

#[derive(Subcommand, Debug)]
pub enum UsersCommand {
    /// Create a user.
    Create {
        /// The new user's id.
        user_id: String,
        #[command(flatten)]
        fields: Fields,
    },
    /// Show a user, by id or by handle (the `sub` of its session tokens).
    Get {
        /// The user's id.
        #[arg(required_unless_present = "handle")]
        user_id: Option<String>,
        /// Look the user up by handle instead.
        #[arg(long, conflicts_with = "user_id")]
        handle: Option<u64>,
    },
    /// Change some fields of a user; the others stay as they are.
    Update {
        user_id: String,
        #[command(flatten)]
        fields: Fields,
        /// Clear a field (repeatable).
        #[arg(long, value_enum, value_name = "FIELD")]
        clear: Vec<Clearable>,
    },
    /// Delete a user and revoke everything it held.
    Delete { user_id: String },
    /// Deactivate a user: its tokens stop verifying until it is reactivated.
    Deactivate { user_id: String },
    /// Reactivate a deactivated user.
    Reactivate { user_id: String },
    /// List users in creation order, one page at a time (or --all).
    List(ListArgs),
    /// Import users from a JSON Lines file (`users export`'s format), or with --from, from
    /// the user lists of Sendbird, CometChat or MirrorFly. Every record that cannot be
    /// imported is reported with its reason; the others are imported.
    Import {
        /// The file; `-` reads stdin.
        file: PathBuf,
        /// Read a hosted platform's list-users output instead (docs/MIGRATING.md).
        #[arg(long, value_enum)]
        from: Option<Platform>,
        /// Check every record and print the report, writing nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Export every user as JSON Lines, one user per line in creation order (no tokens, no
    /// devices; see the README).
    Export {
        /// Output file; stdout when absent or `-`.
        file: Option<PathBuf>,
    },
}

/// The user fields settable from the command line.
#[derive(Args, Debug, Default)]
pub struct Fields {
    #[arg(long)]
    nickname: Option<String>,
    #[arg(long)]
    profile_url: Option<String>,
    /// A JSON object (replaces the whole metadata).
    #[arg(long, value_name = "JSON")]
    metadata: Option<String>,
    /// A tag (repeatable; replaces all tags).
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
    #[arg(long)]
    role: Option<String>,
    #[arg(long)]
    status_message: Option<String>,
    #[arg(long)]
    link: Option<String>,
    #[arg(long)]
    email: Option<String>,
    #[arg(long)]
    mobile_number: Option<String>,
    /// A discovery key (repeatable; replaces all discovery keys).
    #[arg(long = "discovery-key", value_name = "KEY")]
    discovery_keys: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Clearable {
    ProfileUrl,
    Metadata,
    Tags,
    Role,
    StatusMessage,
    Link,
    Email,
    MobileNumber,
    DiscoveryKeys,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Page size, 1..=100.
    #[arg(long, default_value_t = 20)]
    limit: usize,
    /// The next_cursor of the previous page.
    #[arg(long)]
    cursor: Option<String>,
    /// Only these ids (repeatable, at most 100).
    #[arg(long = "user-id", value_name = "ID")]
    user_ids: Vec<String>,
    /// Only nicknames starting with this.
    #[arg(long)]
    nickname_prefix: Option<String>,
    /// Only users whose public metadata has KEY=VALUE.
    #[arg(long, value_name = "KEY=VALUE")]
    metadata: Option<String>,
    /// Only users with this tag.
    #[arg(long)]
    tag: Option<String>,
    /// Only active (true) or deactivated (false) users.
    #[arg(long)]
    active: Option<bool>,
    /// Follow the cursor to the end instead of printing one page.
    #[arg(long, conflicts_with = "cursor")]
    all: bool,
}

pub fn run(cmd: UsersCommand, target: &Target, out: &Out) -> Result<(), Failure> {
    match cmd {
        UsersCommand::Create { user_id, fields } => {
            let engine = target.open(Access::Write)?;
            let new = fields.into_new_user(user_id)?;
            let user = engine.create_user(new)?;
            out.user(&user)
        }
        UsersCommand::Get { user_id, handle } => {
            let engine = target.open(Access::Read)?;
            let user = match (user_id, handle) {
                (_, Some(h)) => engine.get_user_by_handle(h)?,
                (Some(id), None) => engine.get_user(&id)?,
                (None, None) => return Err(failure::invalid("give a user id or --handle")),
            };
            out.user(&user)
        }
        UsersCommand::Update {
            user_id,
            fields,
            clear,
        } => {
            let engine = target.open(Access::Write)?;
            let patch = fields.into_patch(&clear)?;
            let user = engine.update_user(&user_id, &patch)?;
            out.user(&user)
        }
        UsersCommand::Delete { user_id } => {
            let engine = target.open(Access::Write)?;
            engine.delete_user(&user_id)?;
            done(out, "deleted", &user_id)
        }
        UsersCommand::Deactivate { user_id } => {
            let engine = target.open(Access::Write)?;
            let user = engine.deactivate_user(&user_id)?;
            out.user(&user)
        }
        UsersCommand::Reactivate { user_id } => {
            let engine = target.open(Access::Write)?;
            let user = engine.reactivate_user(&user_id)?;
            out.user(&user)
        }
        UsersCommand::List(args) => list(args, target, out),
        UsersCommand::Import {
            file,
            from,
            dry_run,
        } => import(&file, from, dry_run, target, out),
        UsersCommand::Export { file } => export(file, target, out),
    }
}

fn done(out: &Out, what: &str, user_id: &str) -> Result<(), Failure> {
    if out.json {
        return out.json(&json!({ what: user_id }));
    }
    out.line(&format!("{what} {user_id:?}"))
}

fn parse_metadata(text: &str) -> Result<Map<String, Value>, Failure> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(failure::invalid("--metadata must be a JSON object")),
        Err(e) => Err(failure::invalid(format!("--metadata is not JSON: {e}"))),
    }
}

impl Fields {
    fn into_new_user(self, user_id: String) -> Result<NewUser, Failure> {
        Ok(NewUser {
            user_id,
            nickname: self.nickname.unwrap_or_default(),
            profile_url: self.profile_url,
            metadata: match &self.metadata {
                Some(m) => parse_metadata(m)?,
                None => Map::new(),
            },
            tags: self.tags,
            role: self.role,
            status_message: self.status_message,
            link: self.link,
            email: self.email,
            mobile_number: self.mobile_number,
            discovery_keys: self.discovery_keys,
        })
    }

    fn into_patch(self, clear: &[Clearable]) -> Result<UserPatch, Failure> {
        let cleared = |c: Clearable| clear.contains(&c);
        let set_or_clear = |v: Option<String>, c: Clearable| -> Result<_, Failure> {
            match (v, cleared(c)) {
                (Some(_), true) => Err(failure::invalid(format!("{c:?} is both set and cleared"))),
                (Some(v), false) => Ok(Some(Some(v))),
                (None, true) => Ok(Some(None)),
                (None, false) => Ok(None),
            }
        };
        let list = |v: Vec<String>, c: Clearable| -> Result<_, Failure> {
            match (v.is_empty(), cleared(c)) {
                (false, true) => Err(failure::invalid(format!("{c:?} is both set and cleared"))),
                (false, false) => Ok(Some(v)),
                (true, true) => Ok(Some(Vec::new())),
                (true, false) => Ok(None),
            }
        };
        let metadata = match (&self.metadata, cleared(Clearable::Metadata)) {
            (Some(_), true) => return Err(failure::invalid("Metadata is both set and cleared")),
            (Some(m), false) => Some(parse_metadata(m)?),
            (None, true) => Some(Map::new()),
            (None, false) => None,
        };
        let patch = UserPatch {
            nickname: self.nickname,
            profile_url: set_or_clear(self.profile_url, Clearable::ProfileUrl)?,
            metadata,
            tags: list(self.tags, Clearable::Tags)?,
            role: set_or_clear(self.role, Clearable::Role)?,
            status_message: set_or_clear(self.status_message, Clearable::StatusMessage)?,
            link: set_or_clear(self.link, Clearable::Link)?,
            email: set_or_clear(self.email, Clearable::Email)?,
            mobile_number: set_or_clear(self.mobile_number, Clearable::MobileNumber)?,
            discovery_keys: list(self.discovery_keys, Clearable::DiscoveryKeys)?,
        };
        if patch == UserPatch::default() {
            return Err(failure::invalid(
                "nothing to change: give a field or --clear",
            ));
        }
        Ok(patch)
    }
}

fn list(args: ListArgs, target: &Target, out: &Out) -> Result<(), Failure> {
    let (metadata_key, metadata_value) = match &args.metadata {
        Some(kv) => {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| failure::invalid("--metadata takes KEY=VALUE"))?;
            (Some(k.to_owned()), Some(v.to_owned()))
        }
        None => (None, None),
    };
    let mut query = UserQuery {
        limit: args.limit,
        cursor: args.cursor,
        user_ids: (!args.user_ids.is_empty()).then_some(args.user_ids),
        nickname_prefix: args.nickname_prefix,
        metadata_key,
        metadata_value,
        tag: args.tag,
        active: args.active,
    };
    let engine = target.open(Access::Read)?;
    let mut users = Vec::new();
    let next = loop {
        let page = engine.list_users(&query)?;
        users.extend(page.users);
        match (args.all, page.next_cursor) {
            (true, Some(c)) => query.cursor = Some(c),
            (_, next) => break next,
        }
    };
    if out.json {
        let list: Vec<Value> = users.iter().map(output::user_json).collect();
        return out.json(&json!({"users": list, "next_cursor": next}));
    }
    let rows = users
        .iter()
        .map(|u| {
            vec![
                u.user_id.clone(),
                u.nickname.clone(),
                if u.is_active { "yes" } else { "no" }.to_owned(),
                output::utc(u.created_at_ms),
                u.tags.join(", "),
            ]
        })
        .collect();
    out.table(&["user_id", "nickname", "active", "created", "tags"], rows)?;
    match next {
        Some(c) => out.line(&format!(
            "{} users; more: --cursor {c} (or --all)",
            users.len()
        )),
        None => out.line(&format!("{} users", users.len())),
    }
}

// ----- JSON Lines ------------------------------------------------------------------------

/// One line of `users export`: every field `import` restores, in this order, empty optional
/// fields left out. `handle` is not in it (it is local to a store; the importing store assigns
/// its own), nor are tokens (secrets: only digests are kept), devices (push registrations,
/// which apps renew) or uploaded profile images; `tessera backup` copies all of those.
#[derive(Serialize, Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct Line {
    user_id: String,
    #[serde(default)]
    nickname: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    profile_url: Option<String>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    metadata: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status_message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    link: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mobile_number: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    discovery_keys: Vec<String>,
    #[serde(default = "yes")]
    is_active: bool,
    /// Absent in a hand-written line: the import time is used.
    #[serde(default)]
    created_at_ms: Option<i64>,
}

fn yes() -> bool {
    true
}

impl Line {
    /// The line of `u`. A profile URL naming an uploaded image (`image_base`, the engine's
    /// `tessera://images/`) is left out: the image's bytes are not in the file, and no other
    /// store would accept the URL (a profile URL must be http or https).
    fn of(u: User, image_base: &str) -> Line {
        Line {
            user_id: u.user_id,
            nickname: u.nickname,
            profile_url: u.profile_url.filter(|url| !url.starts_with(image_base)),
            metadata: u.metadata,
            tags: u.tags,
            role: u.role,
            status_message: u.status_message,
            link: u.link,
            email: u.email,
            mobile_number: u.mobile_number,
            discovery_keys: u.discovery_keys,
            is_active: u.is_active,
            created_at_ms: Some(u.created_at_ms),
        }
    }

    fn into_candidate(self, record: usize) -> Candidate {
        Candidate {
            record,
            new: NewUser {
                user_id: self.user_id,
                nickname: self.nickname,
                profile_url: self.profile_url,
                metadata: self.metadata,
                tags: self.tags,
                role: self.role,
                status_message: self.status_message,
                link: self.link,
                email: self.email,
                mobile_number: self.mobile_number,
                discovery_keys: self.discovery_keys,
            },
            created_at_ms: self.created_at_ms,
            active: self.is_active,
            devices: Vec::new(),
        }
    }
}

fn export(file: Option<PathBuf>, target: &Target, out: &Out) -> Result<(), Failure> {
    let engine = target.open(Access::Read)?;
    let to_stdout = file.as_ref().is_none_or(|f| f.as_os_str() == "-");
    let sink: Box<dyn Write> = match &file {
        Some(f) if !to_stdout => {
            Box::new(std::fs::File::create(f).map_err(|e| failure::io(f.display(), e))?)
        }
        _ => Box::new(std::io::stdout().lock()),
    };
    let mut w = BufWriter::with_capacity(1 << 16, sink);
    let pb = output::bar(engine.user_count() as u64, "exporting");
    let n = write_lines(&engine, &mut w, &pb);
    pb.finish_and_clear();
    let n = n?;
    w.flush()
        .map_err(|e| failure::io("writing the export", e))?;
    drop(w);
    if to_stdout {
        // The users are the output; the count goes to stderr for people only.
        if !out.json {
            eprintln!("exported {n} users");
        }
        return Ok(());
    }
    if out.json {
        return out.json(&json!({"exported": n}));
    }
    out.line(&format!("exported {n} users"))
}

fn write_lines(
    engine: &Engine,
    w: &mut impl Write,
    pb: &indicatif::ProgressBar,
) -> Result<u64, Failure> {
    let mut query = UserQuery {
        limit: 100,
        ..UserQuery::default()
    };
    let mut n = 0u64;
    let base = engine.config().image_url_base.clone();
    loop {
        let page = engine.list_users(&query)?;
        for u in page.users {
            serde_json::to_writer(&mut *w, &Line::of(u, &base))
                .map_err(|e| failure::io("writing the export", e.into()))?;
            w.write_all(b"\n")
                .map_err(|e| failure::io("writing the export", e))?;
            n += 1;
        }
        pb.set_position(n);
        match page.next_cursor {
            Some(c) => query.cursor = Some(c),
            None => return Ok(n),
        }
    }
}

fn read_input(file: &PathBuf) -> Result<Vec<u8>, Failure> {
    let mut buf = Vec::new();
    if file.as_os_str() == "-" {
        std::io::stdin()
            .lock()
            .read_to_end(&mut buf)
            .map_err(|e| failure::io("reading stdin", e))?;
    } else {
        buf = std::fs::read(file).map_err(|e| failure::io(file.display(), e))?;
    }
    Ok(buf)
}

fn import(
    file: &PathBuf,
    from: Option<Platform>,
    dry_run: bool,
    target: &Target,
    out: &Out,
) -> Result<(), Failure> {
    let input = read_input(file)?;
    let unit = if from.is_some() { "record" } else { "line" };
    let mut report = migrate::Report::new(dry_run, unit);
    let candidates = match from {
        Some(platform) => migrate::read_platform(platform, &input, &mut report)?,
        None => read_lines(&input, &mut report)?,
    };
    report.records = candidates.len() + report.rejected.len();
    migrate::apply(candidates, target, dry_run, &mut report)?;
    report.print(out)?;
    if report.rejected.is_empty() {
        Ok(())
    } else {
        Err(Failure::rejected(report.rejected.len()))
    }
}

/// Parses `users export`'s format: one user object per line (blank lines skipped). A line that
/// does not parse is reported, by line number, with the reason.
fn read_lines(input: &[u8], report: &mut migrate::Report) -> Result<Vec<Candidate>, Failure> {
    let mut candidates = Vec::new();
    for (i, line) in input.lines().enumerate() {
        let line =
            line.map_err(|e| failure::invalid(format!("line {}: not UTF-8 text ({e})", i + 1)))?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Line>(&line) {
            Ok(l) => candidates.push(l.into_candidate(i + 1)),
            Err(e) => {
                let user_id = serde_json::from_str::<Value>(&line)
                    .ok()
                    .and_then(|v| v.get("user_id")?.as_str().map(str::to_owned));
                report.reject(
                    i + 1,
                    user_id,
                    tessera::ErrorKind::InvalidArgument,
                    format!("not a user line: {e}"),
                );
            }
        }
    }
    Ok(candidates)
}
