//! Moving in: the user objects of Sendbird, CometChat and MirrorFly list-users responses mapped
//! onto Tessera users (the table is docs/MIGRATING.md), and the import both this and the JSON
//! Lines import share — every record that cannot be taken is reported with its reason.

use std::collections::BTreeMap;

use clap::ValueEnum;
use serde_json::{json, Map, Value};
use tessera::{DeviceType, Engine, ErrorKind, NewDevice, NewUser, PushMode};

use crate::failure::{self, Failure};
use crate::output::{self, Out};
use crate::store::{self, Access, Target};

/// A hosted platform whose list-users output `users import --from` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Platform {
    Sendbird,
    Cometchat,
    Mirrorfly,
}

/// A record ready to import.
#[derive(Debug)]
pub struct Candidate {
    /// Its number in the input (line for JSON Lines, record otherwise), from 1.
    pub record: usize,
    pub new: NewUser,
    pub created_at_ms: Option<i64>,
    pub active: bool,
    pub devices: Vec<NewDevice>,
}

/// A record not imported, and why.
#[derive(Debug)]
pub struct Rejection {
    record: usize,
    user_id: Option<String>,
    kind: ErrorKind,
    reason: String,
}

/// What an import did, or with --dry-run would do.
#[derive(Debug)]
pub struct Report {
    dry_run: bool,
    unit: &'static str,
    pub records: usize,
    imported: usize,
    pub rejected: Vec<Rejection>,
    /// Fields of the input with no Tessera equivalent: name → records carrying it.
    ignored: BTreeMap<String, usize>,
    /// Credentials of the old platform, never imported nor printed: name → records.
    secrets: BTreeMap<String, usize>,
}

impl Report {
    pub fn new(dry_run: bool, unit: &'static str) -> Report {
        Report {
            dry_run,
            unit,
            records: 0,
            imported: 0,
            rejected: Vec::new(),
            ignored: BTreeMap::new(),
            secrets: BTreeMap::new(),
        }
    }

    pub fn reject(
        &mut self,
        record: usize,
        user_id: Option<String>,
        kind: ErrorKind,
        reason: String,
    ) {
        self.rejected.push(Rejection {
            record,
            user_id,
            kind,
            reason,
        });
    }

    pub fn print(&mut self, out: &Out) -> Result<(), Failure> {
        self.rejected.sort_by_key(|r| r.record);
        if out.json {
            let rejected: Vec<Value> = self
                .rejected
                .iter()
                .map(|r| {
                    json!({self.unit: r.record, "user_id": r.user_id, "code": r.kind.code(),
                        "kind": format!("{:?}", r.kind), "reason": r.reason})
                })
                .collect();
            return out.json(&json!({
                "dry_run": self.dry_run,
                "records": self.records,
                "imported": self.imported,
                "rejected": rejected,
                "ignored_fields": self.ignored,
                "secrets_not_imported": self.secrets,
            }));
        }
        let verb = if self.dry_run {
            "would import"
        } else {
            "imported"
        };
        out.line(&format!(
            "{} records: {verb} {}, rejected {}{}",
            self.records,
            self.imported,
            self.rejected.len(),
            if self.dry_run {
                " (dry run: nothing written)"
            } else {
                ""
            }
        ))?;
        if !self.rejected.is_empty() {
            let rows = self
                .rejected
                .iter()
                .map(|r| {
                    vec![
                        r.record.to_string(),
                        r.user_id.clone().unwrap_or_default(),
                        format!("{} {:?}", r.kind.code(), r.kind),
                        r.reason.clone(),
                    ]
                })
                .collect();
            out.table(&[self.unit, "user_id", "code", "reason"], rows)?;
        }
        let counts = |m: &BTreeMap<String, usize>| {
            m.iter()
                .map(|(k, n)| format!("{k} ({n})"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if !self.secrets.is_empty() {
            out.line(&format!(
                "not imported, credentials of the old platform (issue Tessera tokens instead): {}",
                counts(&self.secrets)
            ))?;
        }
        if !self.ignored.is_empty() {
            out.line(&format!(
                "left out, no Tessera equivalent: {}",
                counts(&self.ignored)
            ))?;
        }
        Ok(())
    }
}

// ----- reading --------------------------------------------------------------------------

/// The user objects in `input`: a list-users response (`{"users": [...]}`, `{"data": [...]}`),
/// several of them one after another (pages), a JSON array of users, or one user per line.
pub fn read_platform(
    platform: Platform,
    input: &[u8],
    report: &mut Report,
) -> Result<Vec<Candidate>, Failure> {
    let values: Vec<(usize, Result<Value, String>)> =
        match serde_json::Deserializer::from_slice(input)
            .into_iter::<Value>()
            .collect::<Result<Vec<Value>, _>>()
        {
            Ok(values) => values.into_iter().map(|v| (0, Ok(v))).collect(),
            // Not a sequence of JSON documents: judge it line by line, so one broken line is
            // one rejected record.
            Err(_) => input
                .split(|&b| b == b'\n')
                .enumerate()
                .filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace))
                .map(|(i, l)| {
                    let v = serde_json::from_slice::<Value>(l).map_err(|e| e.to_string());
                    (i + 1, v)
                })
                .collect(),
        };
    let mut records = Vec::new();
    for (line, v) in values {
        match v {
            Ok(v) => records.extend(records_of(v).into_iter().map(Ok)),
            Err(e) => records.push(Err(format!("line {line} is not JSON: {e}"))),
        }
    }
    if records.is_empty() {
        return Err(failure::invalid("the input holds no user record"));
    }
    let mut candidates = Vec::new();
    for (i, r) in records.into_iter().enumerate() {
        let record = i + 1;
        let obj = match r {
            Ok(Value::Object(obj)) => obj,
            Ok(other) => {
                report.reject(
                    record,
                    None,
                    ErrorKind::InvalidArgument,
                    format!("not a user object but {}", type_name(&other)),
                );
                continue;
            }
            Err(e) => {
                report.reject(record, None, ErrorKind::InvalidArgument, e);
                continue;
            }
        };
        let fields = Fields::of(platform);
        for k in obj.keys() {
            if fields.secrets.contains(&k.as_str()) {
                *report.secrets.entry(k.clone()).or_default() += 1;
            } else if !fields.mapped.contains(&k.as_str()) {
                *report.ignored.entry(k.clone()).or_default() += 1;
            }
        }
        match map(platform, &obj) {
            Ok(mut c) => {
                c.record = record;
                candidates.push(c);
            }
            Err(e) => report.reject(record, e.user_id, e.kind, e.reason),
        }
    }
    Ok(candidates)
}

fn records_of(v: Value) -> Vec<Value> {
    match v {
        Value::Array(items) => items,
        Value::Object(mut obj) => {
            for key in ["users", "data"] {
                match obj.get_mut(key) {
                    Some(Value::Array(items)) => return std::mem::take(items),
                    Some(Value::Object(inner)) => {
                        for key in ["users", "data"] {
                            if let Some(Value::Array(items)) = inner.get_mut(key) {
                                return std::mem::take(items);
                            }
                        }
                    }
                    _ => {}
                }
            }
            vec![Value::Object(obj)]
        }
        other => vec![other],
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

// ----- mapping --------------------------------------------------------------------------

/// The field names of one platform's user object.
struct Fields {
    /// Read into the Tessera user.
    mapped: &'static [&'static str],
    /// Credentials: never imported, never printed, counted in the report.
    secrets: &'static [&'static str],
}

impl Fields {
    fn of(p: Platform) -> Fields {
        match p {
            Platform::Sendbird => Fields {
                mapped: &[
                    "user_id",
                    "nickname",
                    "profile_url",
                    "metadata",
                    "discovery_keys",
                    "is_active",
                    "created_at",
                ],
                secrets: &["access_token", "session_tokens"],
            },
            Platform::Cometchat => Fields {
                mapped: &[
                    "uid",
                    "name",
                    "avatar",
                    "link",
                    "role",
                    "statusMessage",
                    "metadata",
                    "tags",
                    "createdAt",
                    "deactivatedAt",
                ],
                secrets: &["authToken"],
            },
            Platform::Mirrorfly => Fields {
                mapped: &[
                    "userIdentifier",
                    "userId",
                    "username",
                    "nickname",
                    "nickName",
                    "name",
                    "profileUrl",
                    "image",
                    "email",
                    "emailId",
                    "mobileNumber",
                    "metaData",
                    "metadata",
                    "isAdminBlocked",
                    "deviceType",
                    "deviceToken",
                    "voipDeviceToken",
                    "deviceOsVersion",
                    "mode",
                ],
                secrets: &["password", "token", "licenseKey"],
            },
        }
    }
}

/// Why a record could not be mapped.
struct Unmapped {
    user_id: Option<String>,
    kind: ErrorKind,
    reason: String,
}

/// Reads typed fields of one record, failing with the field's name and the type found.
struct Rec<'a>(&'a Map<String, Value>);

impl Rec<'_> {
    /// A string field; absent, null and "" are all "not set" (MirrorFly sends "" for unset).
    fn text(&self, name: &str) -> Result<Option<String>, String> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(format!("{name} is {}, not a string", type_name(other))),
        }
    }

    /// The first of several names that is set.
    fn first_text(&self, names: &[&str]) -> Result<Option<String>, String> {
        for n in names {
            if let Some(v) = self.text(n)? {
                return Ok(Some(v));
            }
        }
        Ok(None)
    }

    fn strings(&self, name: &str) -> Result<Vec<String>, String> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(format!(
                        "{name} holds {}, not only strings",
                        type_name(other)
                    )),
                })
                .collect(),
            Some(other) => Err(format!("{name} is {}, not a list", type_name(other))),
        }
    }

    fn object(&self, names: &[&str]) -> Result<Map<String, Value>, String> {
        for name in names {
            match self.0.get(*name) {
                None | Some(Value::Null) => {}
                Some(Value::Object(m)) => return Ok(m.clone()),
                Some(other) => {
                    return Err(format!("{name} is {}, not an object", type_name(other)))
                }
            }
        }
        Ok(Map::new())
    }

    fn flag(&self, name: &str) -> Result<Option<bool>, String> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(format!("{name} is {}, not a boolean", type_name(other))),
        }
    }

    /// A whole number, or a string of digits (MirrorFly sends times as strings).
    fn int(&self, name: &str) -> Result<Option<i64>, String> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .map(Some)
                .ok_or_else(|| format!("{name} is {n}, not a whole number")),
            Some(Value::String(s)) => s
                .parse::<i64>()
                .map(Some)
                .map_err(|_| format!("{name} is {s:?}, not a whole number")),
            Some(other) => Err(format!("{name} is {}, not a number", type_name(other))),
        }
    }
}

/// Unix seconds to milliseconds (refusing what would not fit).
fn seconds(name: &str, s: i64) -> Result<i64, String> {
    s.checked_mul(1000)
        .filter(|ms| *ms >= 0)
        .ok_or_else(|| format!("{name} is {s}, not a time"))
}

fn map(platform: Platform, obj: &Map<String, Value>) -> Result<Candidate, Unmapped> {
    let rec = Rec(obj);
    let id_fields: &[&str] = match platform {
        Platform::Sendbird => &["user_id"],
        Platform::Cometchat => &["uid"],
        Platform::Mirrorfly => &["userIdentifier", "userId", "username"],
    };
    let user_id = rec.first_text(id_fields).ok().flatten();
    let shape = |reason: String| Unmapped {
        user_id: user_id.clone(),
        kind: ErrorKind::InvalidField,
        reason,
    };
    let Some(id) = rec.first_text(id_fields).map_err(shape)? else {
        return Err(Unmapped {
            user_id: None,
            kind: ErrorKind::InvalidUserId,
            reason: format!("no user id ({})", id_fields.join(" / ")),
        });
    };
    let mut c = Candidate {
        record: 0,
        new: NewUser::new(id, ""),
        created_at_ms: None,
        active: true,
        devices: Vec::new(),
    };
    let n = &mut c.new;
    match platform {
        Platform::Sendbird => {
            n.nickname = rec.text("nickname").map_err(shape)?.unwrap_or_default();
            n.profile_url = rec.text("profile_url").map_err(shape)?;
            n.metadata = rec.object(&["metadata"]).map_err(shape)?;
            n.discovery_keys = rec.strings("discovery_keys").map_err(shape)?;
            c.active = rec.flag("is_active").map_err(shape)?.unwrap_or(true);
            // Sendbird documents created_at in Unix seconds in some places and milliseconds
            // in others: below 10^11 (year 5138 in seconds, 1973 in ms) it is seconds.
            c.created_at_ms = match rec.int("created_at").map_err(shape)? {
                Some(t) if (0..100_000_000_000).contains(&t) => {
                    Some(seconds("created_at", t).map_err(shape)?)
                }
                Some(t) if t >= 0 => Some(t),
                Some(t) => return Err(shape(format!("created_at is {t}, not a time"))),
                None => None,
            };
        }
        Platform::Cometchat => {
            n.nickname = rec.text("name").map_err(shape)?.unwrap_or_default();
            n.profile_url = rec.text("avatar").map_err(shape)?;
            n.link = rec.text("link").map_err(shape)?;
            n.role = rec.text("role").map_err(shape)?;
            n.status_message = rec.text("statusMessage").map_err(shape)?;
            n.metadata = rec.object(&["metadata"]).map_err(shape)?;
            n.tags = rec.strings("tags").map_err(shape)?;
            c.created_at_ms = match rec.int("createdAt").map_err(shape)? {
                Some(t) => Some(seconds("createdAt", t).map_err(shape)?),
                None => None,
            };
            c.active = rec.int("deactivatedAt").map_err(shape)?.is_none();
        }
        Platform::Mirrorfly => {
            n.nickname = rec
                .first_text(&["nickname", "nickName", "name"])
                .map_err(shape)?
                .unwrap_or_default();
            n.profile_url = rec.first_text(&["profileUrl", "image"]).map_err(shape)?;
            n.email = rec.first_text(&["email", "emailId"]).map_err(shape)?;
            n.mobile_number = rec.text("mobileNumber").map_err(shape)?;
            n.metadata = rec.object(&["metaData", "metadata"]).map_err(shape)?;
            c.active = !rec.flag("isAdminBlocked").map_err(shape)?.unwrap_or(false);
            if let Some(push_token) = rec.text("deviceToken").map_err(shape)? {
                let device_type = match rec.text("deviceType").map_err(shape)?.as_deref() {
                    Some("web") => DeviceType::Web,
                    Some("ios") => DeviceType::Ios,
                    Some("android") => DeviceType::Android,
                    other => {
                        return Err(Unmapped {
                            user_id: user_id.clone(),
                            kind: ErrorKind::InvalidArgument,
                            reason: format!(
                                "deviceType is {other:?}; a device needs web, ios or android"
                            ),
                        })
                    }
                };
                let mode = match rec.int("mode").map_err(shape)? {
                    None | Some(0) => PushMode::Production,
                    Some(1) => PushMode::Sandbox,
                    Some(m) => {
                        return Err(Unmapped {
                            user_id: user_id.clone(),
                            kind: ErrorKind::InvalidArgument,
                            reason: format!("mode is {m}; 0 (production) or 1 (sandbox)"),
                        })
                    }
                };
                let mut d = NewDevice::new(device_type, push_token);
                d.voip_push_token = rec.text("voipDeviceToken").map_err(shape)?;
                d.os_version = rec.text("deviceOsVersion").map_err(shape)?;
                d.mode = mode;
                c.devices.push(d);
            }
        }
    }
    Ok(c)
}

// ----- importing ------------------------------------------------------------------------

/// Creates one candidate in `engine`, with its devices; a device refused takes the user back
/// out, so a record is imported whole or not at all.
fn insert(engine: &Engine, c: &Candidate) -> tessera::Result<()> {
    match (c.created_at_ms, c.active) {
        (None, true) => drop(engine.create_user(c.new.clone())?),
        (at, active) => {
            drop(engine.import_user(c.new.clone(), at.unwrap_or_else(output::now_ms), active)?)
        }
    }
    for d in &c.devices {
        if let Err(e) = engine.add_device(&c.new.user_id, d.clone()) {
            let _ = engine.delete_user(&c.new.user_id);
            return Err(e);
        }
    }
    Ok(())
}

/// Imports the candidates into `target`, or with `dry_run` only checks them: against each
/// other and every rule (in a scratch in-memory engine), and against the ids and discovery
/// keys the target already holds (opened read-only; an absent data directory holds none).
pub fn apply(
    candidates: Vec<Candidate>,
    target: &Target,
    dry_run: bool,
    report: &mut Report,
) -> Result<(), Failure> {
    let pb = output::bar(candidates.len() as u64, "importing");
    let result = if dry_run {
        check(&candidates, target, report, &pb)
    } else {
        write(&candidates, target, report, &pb)
    };
    pb.finish_and_clear();
    result
}

fn write(
    candidates: &[Candidate],
    target: &Target,
    report: &mut Report,
    pb: &indicatif::ProgressBar,
) -> Result<(), Failure> {
    let engine = target.open(Access::Bulk)?;
    for c in candidates {
        match insert(&engine, c) {
            Ok(()) => report.imported += 1,
            Err(e) if matches!(e.kind(), ErrorKind::Io | ErrorKind::Unavailable) => {
                // The store itself failed: stop rather than reject every record after.
                return Err(e.into());
            }
            Err(e) => report.reject(
                c.record,
                Some(c.new.user_id.clone()),
                e.kind(),
                e.message().to_owned(),
            ),
        }
        pb.inc(1);
    }
    store::finish_bulk(&engine)
}

fn check(
    candidates: &[Candidate],
    target: &Target,
    report: &mut Report,
    pb: &indicatif::ProgressBar,
) -> Result<(), Failure> {
    let scratch = Engine::in_memory()?;
    let existing = match target {
        Target::Dir(d) if !d.exists() => None,
        _ => Some(target.open(Access::Read)?),
    };
    for c in candidates {
        let mut verdict = insert(&scratch, c).map_err(|e| (e.kind(), e.message().to_owned()));
        if let (Ok(()), Some(t)) = (&verdict, &existing) {
            if t.get_user(&c.new.user_id).is_ok() {
                verdict = Err((
                    ErrorKind::UserAlreadyExists,
                    format!("user {:?} already exists", c.new.user_id),
                ));
            } else if let Some(k) = c
                .new
                .discovery_keys
                .iter()
                .find(|k| t.find_user_by_discovery_key(k).is_ok())
            {
                verdict = Err((
                    ErrorKind::DiscoveryKeyTaken,
                    format!("discovery key {k:?} belongs to another user"),
                ));
            }
        }
        match verdict {
            Ok(()) => report.imported += 1,
            Err((kind, reason)) => {
                report.reject(c.record, Some(c.new.user_id.clone()), kind, reason)
            }
        }
        pb.inc(1);
    }
    Ok(())
}
