//! `tessera tokens ...` and `tessera keys ...`. A token's text is printed once, by the
//! command that issues it; `verify` explains a verdict without echoing the token, and no
//! command prints key material.

use std::io::Read;
use std::time::Duration;

use clap::Subcommand;
use serde_json::json;
use tessera::{ErrorKind, TokenDiagnosis, TokenFinding};

use crate::failure::{self, Failure};
use crate::output::{self, Out};
use crate::store::{Access, Target};

#[derive(Subcommand, Debug)]
pub enum TokensCommand {
    /// Issue a permanent access token (printed once; only its digest is kept).
    IssueAccess {
        user_id: String,
        /// A label (device, app).
        #[arg(long)]
        label: Option<String>,
    },
    /// Issue a session token (printed once).
    IssueSession {
        user_id: String,
        /// Lifetime, e.g. `90m`, `12h`, `30d` (default: the configured 7 days).
        #[arg(long, value_parser = humantime::parse_duration, conflicts_with = "expires_at")]
        expires_in: Option<Duration>,
        /// Expiry, milliseconds since the Unix epoch.
        #[arg(long, allow_negative_numbers = true)]
        expires_at: Option<i64>,
    },
    /// List a user's live access tokens: ids, labels, times (never the tokens).
    List { user_id: String },
    /// Revoke one access token of a user.
    Revoke { user_id: String, token_id: u64 },
    /// Revoke every access token and every session of a user, or with --all-users every
    /// session token of every user (all signing keys are replaced).
    RevokeAll {
        #[arg(required_unless_present = "all_users", conflicts_with = "all_users")]
        user_id: Option<String>,
        /// Only the access tokens.
        #[arg(long, conflicts_with_all = ["sessions_only", "all_users"])]
        access_only: bool,
        /// Only the sessions.
        #[arg(long, conflicts_with = "all_users")]
        sessions_only: bool,
        /// Every session token of every user (emergency).
        #[arg(long)]
        all_users: bool,
    },
    /// Explain why a token verifies or not (format, checksum, unknown key, expiry, revocation),
    /// without printing it. Reads the token from stdin unless given (an argument is visible
    /// to other local users in the process list). Exit status: 0 when valid, else the code
    /// verification returns.
    Verify {
        /// The token; `-` or absent reads one line from stdin.
        token: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// The live signing keys: id, creation time, which one signs (never the key material).
    List,
    /// Add a new signing key; it signs new session tokens, older keys keep verifying.
    Rotate,
    /// Retire a key: session tokens it signed stop verifying (revoked).
    Retire { key_id: String },
}

pub fn run(cmd: TokensCommand, target: &Target, out: &Out) -> Result<(), Failure> {
    match cmd {
        TokensCommand::IssueAccess { user_id, label } => {
            let engine = target.open(Access::Write)?;
            let issued = engine.issue_access_token(&user_id, label.as_deref())?;
            if out.json {
                return out.json(&json!({
                    "user_id": user_id,
                    "token": issued.token.as_str(),
                    "token_id": issued.info.id,
                    "label": issued.info.label,
                    "created_at_ms": issued.info.created_at_ms,
                    "evicted": issued.evicted,
                }));
            }
            out.line(issued.token.as_str())?;
            eprintln!(
                "access token {} of {user_id:?}: shown once, only its digest is kept",
                issued.info.id
            );
            for id in issued.evicted {
                eprintln!("token {id} was revoked to stay within the per-user limit");
            }
            Ok(())
        }
        TokensCommand::IssueSession {
            user_id,
            expires_in,
            expires_at,
        } => {
            let engine = target.open(Access::Write)?;
            let at = match (expires_in, expires_at) {
                (Some(d), _) => Some(
                    i64::try_from(d.as_millis())
                        .ok()
                        .and_then(|ms| output::now_ms().checked_add(ms))
                        .ok_or_else(|| failure::invalid("--expires-in is too long"))?,
                ),
                (None, at) => at,
            };
            let token = engine.issue_session_token(&user_id, at)?;
            if out.json {
                return out.json(&json!({
                    "user_id": user_id,
                    "token": token.as_str(),
                    "expires_at_ms": token.expires_at_ms(),
                }));
            }
            out.line(token.as_str())?;
            eprintln!(
                "session token of {user_id:?}, expires {}: shown once",
                output::utc(token.expires_at_ms())
            );
            Ok(())
        }
        TokensCommand::List { user_id } => {
            let engine = target.open(Access::Read)?;
            let tokens = engine.list_access_tokens(&user_id)?;
            if out.json {
                let list: Vec<_> = tokens
                    .iter()
                    .map(|t| json!({"token_id": t.id, "label": t.label, "created_at_ms": t.created_at_ms}))
                    .collect();
                return out.json(&json!({"user_id": user_id, "access_tokens": list}));
            }
            let rows = tokens
                .iter()
                .map(|t| {
                    vec![
                        t.id.to_string(),
                        t.label.clone().unwrap_or_default(),
                        output::utc(t.created_at_ms),
                    ]
                })
                .collect();
            out.table(&["token_id", "label", "created"], rows)?;
            out.line(&format!(
                "{} live access tokens of {user_id:?}",
                tokens.len()
            ))
        }
        TokensCommand::Revoke { user_id, token_id } => {
            let engine = target.open(Access::Write)?;
            engine.revoke_access_token(&user_id, token_id)?;
            if out.json {
                return out.json(&json!({"user_id": user_id, "revoked": token_id}));
            }
            out.line(&format!("revoked access token {token_id} of {user_id:?}"))
        }
        TokensCommand::RevokeAll {
            user_id,
            access_only,
            sessions_only,
            all_users,
        } => {
            let engine = target.open(Access::Write)?;
            let Some(user_id) = user_id.filter(|_| !all_users) else {
                engine.revoke_all_sessions()?;
                if out.json {
                    return out.json(&json!({"all_sessions_revoked": true}));
                }
                return out.line("every session token of every user is revoked (new signing key)");
            };
            // Sessions first: the user is checked by it, and an access-token count of 0 is
            // not an error.
            if !access_only {
                engine.revoke_sessions(&user_id)?;
            }
            let access = if sessions_only {
                0
            } else {
                engine.revoke_all_access_tokens(&user_id)?
            };
            if out.json {
                return out.json(&json!({"user_id": user_id, "access_tokens_revoked": access,
                    "sessions_revoked": !access_only}));
            }
            out.line(&format!(
                "{user_id:?}: {access} access tokens revoked{}",
                if access_only {
                    ""
                } else {
                    ", every session revoked"
                }
            ))
        }
        TokensCommand::Verify { token } => verify(token, target, out),
    }
}

fn read_token(token: Option<String>) -> Result<String, Failure> {
    match token {
        Some(t) if t != "-" => Ok(t),
        _ => {
            let mut s = String::new();
            std::io::stdin()
                .lock()
                .take(64 * 1024)
                .read_to_string(&mut s)
                .map_err(|e| failure::io("reading the token from stdin", e))?;
            Ok(s.lines().next().unwrap_or("").trim().to_owned())
        }
    }
}

fn verify(token: Option<String>, target: &Target, out: &Out) -> Result<(), Failure> {
    let token = read_token(token)?;
    let engine = target.open(Access::Read)?;
    let d = engine.diagnose_token(&token);
    drop(token);
    print_diagnosis(&d, out)?;
    match d.error {
        None => Ok(()),
        Some(kind) => Err(tessera::Error::new(kind, d.finding.to_string()).into()),
    }
}

fn print_diagnosis(d: &TokenDiagnosis, out: &Out) -> Result<(), Failure> {
    let verdict = match d.error {
        None => "valid".to_owned(),
        Some(k) => format!("refused: {k} (code {})", k.code()),
    };
    if out.json {
        return out.json(&json!({
            "format": d.format.as_str(),
            "valid": d.error.is_none(),
            "code": d.error.map_or(0, ErrorKind::code),
            "kind": d.error.map(|k| format!("{k:?}")),
            "finding": finding_name(&d.finding),
            "reason": d.finding.to_string(),
            "user_id": d.user_id,
            "handle": d.handle,
            "token_id": d.token_id,
            "key_id": d.key_id,
            "issued_at_ms": d.issued_at_ms,
            "expires_at_ms": d.expires_at_ms,
        }));
    }
    let mut rows = vec![
        ("format", d.format.as_str().to_owned()),
        ("verdict", verdict),
        ("why", d.finding.to_string()),
    ];
    if let Some(u) = &d.user_id {
        rows.push(("user", u.clone()));
    }
    if let Some(h) = d.handle {
        rows.push(("handle", h.to_string()));
    }
    if let Some(t) = d.token_id {
        rows.push(("token id", t.to_string()));
    }
    if let Some(k) = &d.key_id {
        rows.push(("key", k.clone()));
    }
    if let Some(t) = d.issued_at_ms {
        rows.push(("issued", output::utc(t)));
    }
    if let Some(t) = d.expires_at_ms {
        rows.push(("expires", output::utc(t)));
    }
    out.fields(rows)
}

/// A stable name for each finding, for scripts.
fn finding_name(f: &TokenFinding) -> &'static str {
    match f {
        TokenFinding::Valid => "valid",
        TokenFinding::Length { .. } => "length",
        TokenFinding::Structure => "structure",
        TokenFinding::Header => "header",
        TokenFinding::Checksum => "checksum",
        TokenFinding::Body => "body",
        TokenFinding::UnknownKey { .. } => "unknown_key",
        TokenFinding::Signature { .. } => "signature",
        TokenFinding::Claims => "claims",
        TokenFinding::NoSuchUser { .. } => "no_such_user",
        TokenFinding::NotLive => "not_live",
        TokenFinding::Expired { .. } => "expired",
        TokenFinding::KeyRetired { .. } => "key_retired",
        TokenFinding::SessionsRevoked { .. } => "sessions_revoked",
        TokenFinding::UserDeleted { .. } => "user_deleted",
        TokenFinding::Deactivated => "deactivated",
        TokenFinding::Unavailable => "unavailable",
        _ => "other",
    }
}

pub fn run_keys(cmd: KeysCommand, target: &Target, out: &Out) -> Result<(), Failure> {
    match cmd {
        KeysCommand::List => {
            let engine = target.open(Access::Read)?;
            let keys = engine.keys();
            if out.json {
                let list: Vec<_> = keys
                    .iter()
                    .map(|k| json!({"key_id": k.key_id.to_string(), "created_at_ms": k.created_at_ms, "active": k.active}))
                    .collect();
                return out.json(&json!({ "keys": list }));
            }
            let rows = keys
                .iter()
                .map(|k| {
                    vec![
                        k.key_id.to_string(),
                        output::utc(k.created_at_ms),
                        if k.active {
                            "signs new tokens"
                        } else {
                            "verifies"
                        }
                        .to_owned(),
                    ]
                })
                .collect();
            out.table(&["key_id", "created", "state"], rows)
        }
        KeysCommand::Rotate => {
            let engine = target.open(Access::Write)?;
            let k = engine.rotate_key()?;
            if out.json {
                return out.json(&json!({"key_id": k.key_id.to_string(), "created_at_ms": k.created_at_ms, "active": k.active}));
            }
            out.line(&format!("key {} now signs new session tokens", k.key_id))
        }
        KeysCommand::Retire { key_id } => {
            let engine = target.open(Access::Write)?;
            engine.retire_key(&key_id)?;
            if out.json {
                return out.json(&json!({ "retired": key_id }));
            }
            out.line(&format!(
                "key {key_id:?} retired: the session tokens it signed are revoked"
            ))
        }
    }
}
