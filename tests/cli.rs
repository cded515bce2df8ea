//! The `tessera` command, run as a subprocess on temporary data directories: every command
//! family, `--json` output parsed, error codes and exit statuses, secrets printed once, the
//! 100,000-user JSON Lines round trip (byte-identical), imports from Sendbird, CometChat and
//! MirrorFly with good and bad records and `--dry-run`, and cluster mode when
//! `TESSERA_PG_DSN` is set (skipped without it, except with `CI=true`).

#[path = "support/pg.rs"]
mod pg;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("tessera-cli-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `tessera ARGS` with `stdin`, never against an ambient cluster.
fn run_in(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(args)
        .env_remove("TESSERA_PG_DSN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tessera");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

/// `tessera --data DIR ARGS`.
fn at(dir: &Path, args: &[&str]) -> Output {
    at_in(dir, args, b"")
}

fn at_in(dir: &Path, args: &[&str], stdin: &[u8]) -> Output {
    let mut all = vec!["--data", dir.to_str().unwrap()];
    all.extend_from_slice(args);
    run_in(&all, stdin)
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// Asserts success and returns stdout.
fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status,
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// Asserts success and parses stdout as one JSON document.
fn ok_json(o: Output) -> Value {
    let text = ok(o);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Asserts the exit status and the stderr error line of a failure.
fn fails(o: &Output, code: i32, kind: &str) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        stdout(o),
        stderr(o)
    );
    assert!(
        stderr(o).contains(&format!("tessera: error[{code} {kind}]: ")),
        "stderr: {}",
        stderr(o)
    );
}

#[test]
fn users_commands_tables_json_and_error_codes() {
    let t = TempDir::new("users");
    let d = t.path("data");
    let table = ok(at(
        &d,
        &[
            "users",
            "create",
            "alice",
            "--nickname",
            "Alice",
            "--tag",
            "beta",
            "--metadata",
            r#"{"team":"blue","@private":{"pin":"1"}}"#,
            "--email",
            "alice@example.com",
        ],
    ));
    assert!(
        table.contains("alice@example.com") && table.contains('│'),
        "{table}"
    );
    for (id, nick) in [("bob", "Bob"), ("carol", "Carol"), ("dave", "Dave")] {
        ok(at(&d, &["users", "create", id, "--nickname", nick]));
    }
    let u = ok_json(at(&d, &["--json", "users", "get", "alice"]));
    assert_eq!(u["nickname"], "Alice");
    assert_eq!(u["metadata"]["@private"]["pin"], "1");
    assert_eq!(u["tags"], json!(["beta"]));
    let by_handle = ok_json(at(&d, &["--json", "users", "get", "--handle", "1"]));
    assert_eq!(by_handle["user_id"], "alice");

    let u = ok_json(at(
        &d,
        &[
            "--json",
            "users",
            "update",
            "alice",
            "--nickname",
            "Al",
            "--clear",
            "email",
            "--clear",
            "tags",
        ],
    ));
    assert_eq!(
        (u["nickname"].clone(), u["email"].clone()),
        (json!("Al"), Value::Null)
    );
    assert_eq!(u["tags"], json!([]));
    // A field both set and cleared, and an update that changes nothing, are refused.
    fails(
        &at(
            &d,
            &[
                "users", "update", "alice", "--email", "a@b.co", "--clear", "email",
            ],
        ),
        1,
        "InvalidArgument",
    );
    fails(&at(&d, &["users", "update", "alice"]), 1, "InvalidArgument");

    // Filters and cursor, as in the API.
    let page = ok_json(at(&d, &["--json", "users", "list", "--limit", "2"]));
    let ids: Vec<&str> = page["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["alice", "bob"]);
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    let page = ok_json(at(
        &d,
        &[
            "--json", "users", "list", "--limit", "2", "--cursor", &cursor,
        ],
    ));
    assert_eq!(page["users"][0]["user_id"], "carol");
    assert_eq!(page["next_cursor"], Value::Null);
    let all = ok_json(at(
        &d,
        &["--json", "users", "list", "--limit", "1", "--all"],
    ));
    assert_eq!(all["users"].as_array().unwrap().len(), 4);
    let blue = ok_json(at(
        &d,
        &["--json", "users", "list", "--metadata", "team=blue"],
    ));
    assert_eq!(blue["users"].as_array().unwrap().len(), 1);
    let private = ok_json(at(
        &d,
        &["--json", "users", "list", "--metadata", "@private=x"],
    ));
    assert_eq!(private["users"], json!([]));
    let prefix = ok_json(at(
        &d,
        &["--json", "users", "list", "--nickname-prefix", "Ca"],
    ));
    assert_eq!(prefix["users"][0]["user_id"], "carol");
    fails(
        &at(&d, &["users", "list", "--limit", "101"]),
        1,
        "InvalidArgument",
    );
    fails(
        &at(&d, &["users", "list", "--cursor", "!!"]),
        1,
        "InvalidArgument",
    );
    let human = ok(at(&d, &["users", "list", "--limit", "3"]));
    assert!(human.contains("more: --cursor"), "{human}");

    let u = ok_json(at(&d, &["--json", "users", "deactivate", "bob"]));
    assert_eq!(u["is_active"], false);
    let inactive = ok_json(at(&d, &["--json", "users", "list", "--active", "false"]));
    assert_eq!(inactive["users"][0]["user_id"], "bob");
    ok(at(&d, &["users", "reactivate", "bob"]));
    ok(at(&d, &["users", "delete", "dave"]));

    // Error codes on stderr, and the exit status is the code.
    fails(&at(&d, &["users", "get", "dave"]), 4, "UserNotFound");
    fails(&at(&d, &["users", "create", "bob"]), 3, "UserAlreadyExists");
    fails(&at(&d, &["users", "create", "a/b"]), 2, "InvalidUserId");
    let long = "n".repeat(81);
    fails(
        &at(&d, &["users", "create", "eve", "--nickname", &long]),
        6,
        "FieldTooLong",
    );
    ok(at(
        &d,
        &["users", "create", "eve", "--nickname", &long[..80]],
    ));
    // --json errors are JSON on stderr.
    let o = at(&d, &["--json", "users", "get", "nobody"]);
    assert_eq!(o.status.code(), Some(4));
    let e: Value = serde_json::from_str(stderr(&o).trim()).unwrap();
    assert_eq!(e["error"]["code"], 4);
    assert_eq!(e["error"]["kind"], "UserNotFound");
    // Usage errors exit 64, which no error code takes; --help exits 0.
    let o = at(&d, &["users", "frobnicate"]);
    assert_eq!(o.status.code(), Some(64), "{}", stderr(&o));
    for reserved in [64, 65] {
        assert_eq!(tessera::ErrorKind::from_code(reserved), None);
    }
    assert!(tessera::ErrorKind::ALL
        .iter()
        .all(|k| (1..=125).contains(&k.code())));
    assert_eq!(run_in(&["--help"], b"").status.code(), Some(0));
    // A read-only command does not create a missing data directory.
    let missing = t.path("missing");
    fails(&at(&missing, &["users", "list"]), 50, "Io");
    assert!(!missing.exists());
}

#[test]
fn tokens_and_keys_print_secrets_once_and_verify_explains() {
    let t = TempDir::new("tokens");
    let d = t.path("data");
    ok(at(&d, &["users", "create", "alice"]));
    ok(at(&d, &["users", "create", "bob"]));

    // Issued: the token alone on stdout (the notes go to stderr).
    let access = ok(at(
        &d,
        &["tokens", "issue-access", "alice", "--label", "phone"],
    ));
    let access = access.trim().to_owned();
    assert!(
        access.starts_with("tsat_") && access.len() == 65,
        "{access}"
    );
    let issued = ok_json(at(
        &d,
        &[
            "--json",
            "tokens",
            "issue-session",
            "bob",
            "--expires-in",
            "2h",
        ],
    ));
    let session = issued["token"].as_str().unwrap().to_owned();
    let exp = issued["expires_at_ms"].as_i64().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!(
        (now + 7_190_000..=now + 7_201_000).contains(&exp),
        "{exp} vs {now}"
    );

    // No other command prints a token or a key.
    let mut printed = String::new();
    for args in [
        &["tokens", "list", "alice"][..],
        &["--json", "tokens", "list", "alice"],
        &["tokens", "verify", "-"],
        &["--json", "tokens", "verify"],
        &["keys", "list"],
        &["--json", "keys", "list"],
        &["stats"],
        &["users", "export"],
        &["--json", "users", "get", "alice"],
    ] {
        for stdin in [access.as_bytes(), session.as_bytes()] {
            let o = at_in(&d, args, stdin);
            printed.push_str(&stdout(&o));
            printed.push_str(&stderr(&o));
        }
    }
    assert!(
        !printed.contains(&access[5..30]),
        "an access token was printed"
    );
    assert!(
        !printed.contains(&session[session.len() - 43..]),
        "a session token was printed"
    );
    let keys = ok_json(at(&d, &["--json", "keys", "list"]));
    assert_eq!(
        keys["keys"][0]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["active", "created_at_ms", "key_id"]
    );

    let listed = ok_json(at(&d, &["--json", "tokens", "list", "alice"]));
    assert_eq!(listed["access_tokens"][0]["label"], "phone");
    let token_id = listed["access_tokens"][0]["token_id"].as_u64().unwrap();

    // verify: valid → 0; each failure names its step and exits with verification's code.
    let v = ok_json(at_in(
        &d,
        &["--json", "tokens", "verify"],
        access.as_bytes(),
    ));
    assert_eq!(
        (v["valid"].clone(), v["user_id"].clone()),
        (json!(true), json!("alice"))
    );
    let v = ok_json(at(&d, &["--json", "tokens", "verify", &session]));
    assert_eq!(v["finding"], "valid");
    let mut typo = access.clone().into_bytes();
    typo[30] = if typo[30] == b'a' { b'b' } else { b'a' };
    let o = at_in(&d, &["--json", "tokens", "verify"], &typo);
    assert_eq!(o.status.code(), Some(20));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["finding"], "checksum");
    let o = at_in(&d, &["tokens", "verify"], b"not-a-token");
    assert_eq!(o.status.code(), Some(20));
    assert!(
        stdout(&o).contains("wrong length: 11 characters"),
        "{}",
        stdout(&o)
    );

    ok(at(
        &d,
        &["tokens", "revoke", "alice", &token_id.to_string()],
    ));
    let o = at_in(&d, &["tokens", "verify"], access.as_bytes());
    fails(&o, 20, "InvalidToken");
    fails(
        &at(&d, &["tokens", "revoke", "alice", &token_id.to_string()]),
        25,
        "TokenNotFound",
    );
    ok(at(&d, &["tokens", "revoke-all", "bob"]));
    let o = at_in(&d, &["tokens", "verify"], session.as_bytes());
    fails(&o, 22, "TokenRevoked");
    assert!(
        stdout(&o).contains("it carries epoch 0; the user's sessions were revoked at epoch 1"),
        "{}",
        stdout(&o)
    );

    // Keys: rotate, retire the old one, its tokens are revoked; the active key cannot go.
    let s2 = ok(at(&d, &["tokens", "issue-session", "bob"]));
    let k = ok_json(at(&d, &["--json", "keys", "rotate"]));
    assert_eq!(
        (k["key_id"].clone(), k["active"].clone()),
        (json!("2"), json!(true))
    );
    fails(&at(&d, &["keys", "retire", "2"]), 31, "KeyActive");
    fails(&at(&d, &["keys", "retire", "9"]), 30, "KeyNotFound");
    ok(at(&d, &["keys", "retire", "1"]));
    let v: Value = serde_json::from_str(&stdout(&at_in(
        &d,
        &["--json", "tokens", "verify"],
        s2.trim().as_bytes(),
    )))
    .unwrap();
    assert_eq!(
        (v["finding"].clone(), v["code"].clone()),
        (json!("key_retired"), json!(22))
    );
    let s3 = ok(at(&d, &["tokens", "issue-session", "alice"]));
    ok(at(&d, &["tokens", "revoke-all", "--all-users"]));
    fails(
        &at_in(&d, &["tokens", "verify"], s3.trim().as_bytes()),
        22,
        "TokenRevoked",
    );
    fails(
        &at(
            &d,
            &["tokens", "issue-session", "alice", "--expires-at", "1"],
        ),
        23,
        "InvalidExpiry",
    );
    fails(
        &at(&d, &["tokens", "issue-access", "nobody"]),
        4,
        "UserNotFound",
    );
}

/// A user line in `users export`'s exact format (the fields, their order, the empty ones
/// left out), varied so that every field appears.
fn canonical_line(i: u64) -> String {
    let mut m = serde_json::Map::new();
    m.insert("user_id".into(), json!(format!("user-{i:06}")));
    m.insert("nickname".into(), json!(format!("Nick {i} ✓")));
    if i.is_multiple_of(3) {
        m.insert(
            "profile_url".into(),
            json!(format!("https://img.example/{i}.png")),
        );
    }
    if i.is_multiple_of(2) {
        m.insert(
            "metadata".into(),
            json!({"@private": {"pin": i}, "f": 0.1 + i as f64 / 7.0, "tier": "gold", "z": [1, "two", null]}),
        );
    }
    if i.is_multiple_of(5) {
        m.insert("tags".into(), json!(["a", format!("t{}", i % 11)]));
    }
    if i.is_multiple_of(7) {
        m.insert("role".into(), json!("admin"));
        m.insert("status_message".into(), json!("away \"quoted\" \\ back"));
        m.insert("link".into(), json!(format!("https://example.com/u/{i}")));
        m.insert("email".into(), json!(format!("u{i}@example.com")));
        m.insert("mobile_number".into(), json!(format!("+1555{i:07}")));
    }
    if i.is_multiple_of(13) {
        m.insert("discovery_keys".into(), json!([format!("dk-{i}")]));
    }
    m.insert("is_active".into(), json!(!i.is_multiple_of(17)));
    m.insert("created_at_ms".into(), json!(1_600_000_000_000 + i * 1000));
    // Keys in the export's order, whatever order serde_json's map keeps.
    let order = [
        "user_id",
        "nickname",
        "profile_url",
        "metadata",
        "tags",
        "role",
        "status_message",
        "link",
        "email",
        "mobile_number",
        "discovery_keys",
        "is_active",
        "created_at_ms",
    ];
    let parts: Vec<String> = order
        .iter()
        .filter_map(|k| m.get(*k).map(|v| format!("{}:{}", json!(k), v)))
        .collect();
    format!("{{{}}}", parts.join(","))
}

#[test]
fn a_hundred_thousand_users_round_trip_byte_identical() {
    const USERS: u64 = 100_000;
    let t = TempDir::new("roundtrip");
    let mut input = String::with_capacity(30 << 20);
    for i in 1..=USERS {
        input.push_str(&canonical_line(i));
        input.push('\n');
    }
    let file = t.path("in.jsonl");
    std::fs::write(&file, &input).unwrap();
    let started = std::time::Instant::now();
    let (a, b) = (t.path("a"), t.path("b"));
    let report = ok_json(at(
        &a,
        &["--json", "users", "import", file.to_str().unwrap()],
    ));
    assert_eq!(report["imported"], USERS);
    assert_eq!(report["rejected"], json!([]));
    let first = t.path("a.jsonl");
    ok(at(&a, &["users", "export", first.to_str().unwrap()]));
    let first = std::fs::read(&first).unwrap();
    if let Some((got, want)) = String::from_utf8_lossy(&first)
        .lines()
        .zip(input.lines())
        .find(|(a, b)| a != b)
    {
        panic!("export differs from the canonical input:\n got: {got}\nwant: {want}");
    }
    assert_eq!(first.len(), input.len());
    // Into a second store, out again through stdout: the same bytes.
    ok(at(
        &b,
        &["users", "import", t.path("a.jsonl").to_str().unwrap()],
    ));
    let second = at(&b, &["users", "export"]);
    assert!(second.status.success());
    assert!(second.stdout == first, "second export differs");
    eprintln!(
        "100k round trip (2 imports, 2 exports): {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // An uploaded image's engine URL is left out (its bytes are not in the file).
    {
        let engine = tessera::Engine::open(&b).unwrap();
        let png = b"\x89PNG\r\n\x1a\n0000".to_vec();
        let u = engine.set_profile_image("user-000003", &png).unwrap();
        assert!(u.profile_url.unwrap().starts_with("tessera://images/"));
    }
    let third = at(&b, &["users", "export"]);
    let line = String::from_utf8(third.stdout)
        .unwrap()
        .lines()
        .nth(2)
        .unwrap()
        .to_owned();
    assert_eq!(
        line,
        r#"{"user_id":"user-000003","nickname":"Nick 3 ✓","is_active":true,"created_at_ms":1600000003000}"#
    );
    let u = ok_json(at(&b, &["--json", "users", "get", "user-000017"]));
    assert_eq!(
        (u["is_active"].clone(), u["created_at_ms"].clone()),
        (json!(false), json!(1_600_000_017_000i64))
    );
}

#[test]
fn json_lines_import_reports_bad_lines_and_dry_run_writes_nothing() {
    let t = TempDir::new("jsonl");
    let d = t.path("data");
    ok(at(&d, &["users", "create", "taken"]));
    let file = t.path("in.jsonl");
    std::fs::write(
        &file,
        [
            r#"{"user_id":"ok1","nickname":"One"}"#,
            "",
            r#"{"user_id":"taken"}"#,
            r#"{"user_id":"bad","nickname":7}"#,
            r#"{"user_id":"x","colour":"red"}"#,
            "not json",
            r#"{"user_id":"old","created_at_ms":-1}"#,
            r#"{"user_id":"ok2","email":"nope"}"#,
            r#"{"user_id":"ok3","is_active":false,"created_at_ms":0}"#,
        ]
        .join("\n"),
    )
    .unwrap();
    let snapshot = |dir: &Path| -> Vec<(PathBuf, Vec<u8>)> {
        let mut v: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let p = e.unwrap().path();
                let bytes = std::fs::read(&p).unwrap_or_default();
                (p, bytes)
            })
            .collect();
        v.sort();
        v
    };
    let before = snapshot(&d);
    let o = at(
        &d,
        &[
            "--json",
            "users",
            "import",
            "--dry-run",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(65), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(r#"{"error":{"code":65,"kind":"Rejected""#),
        "{}",
        stderr(&o)
    );
    let dry: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(snapshot(&d), before, "a dry run changed the data directory");
    let lines = |r: &Value| -> Vec<(u64, u64)> {
        r["rejected"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| (x["line"].as_u64().unwrap(), x["code"].as_u64().unwrap()))
            .collect()
    };
    let want = vec![(3, 3), (4, 1), (5, 1), (6, 1), (7, 7), (8, 7)];
    assert_eq!(lines(&dry), want);
    assert_eq!(
        (dry["dry_run"].clone(), dry["imported"].clone()),
        (json!(true), json!(2))
    );
    // A dry run into a directory that does not exist leaves it absent.
    let absent = t.path("absent");
    let o = at(
        &absent,
        &["users", "import", "--dry-run", file.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(65));
    assert!(!absent.exists());

    let o = at(&d, &["--json", "users", "import", file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(65));
    let real: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(lines(&real), want);
    assert_eq!(real["imported"], 2);
    let u = ok_json(at(&d, &["--json", "users", "get", "ok3"]));
    assert_eq!(
        (u["is_active"].clone(), u["created_at_ms"].clone()),
        (json!(false), json!(0))
    );
    let human = at(
        &d,
        &["users", "import", "--dry-run", file.to_str().unwrap()],
    );
    assert!(
        stdout(&human).contains("would import 0, rejected 8"),
        "{}",
        stdout(&human)
    );
}

fn sendbird() -> String {
    json!({"users": [
        {"user_id": "sb-1", "nickname": "Ann", "profile_url": "https://sb.example/a.png",
         "metadata": {"city": "Oslo"}, "is_active": true, "is_online": false,
         "last_seen_at": 1700000000000i64, "created_at": 1542123432,
         "access_token": "SECRET-SB-ACCESS-7f3a", "discovery_keys": ["ann@example.com"]},
        {"user_id": "sb-2", "nickname": "Ben", "profile_url": "", "metadata": {},
         "is_active": false, "created_at": 1704067200000i64},
        {"nickname": "no id"},
        {"user_id": "sb-4", "nickname": "x".repeat(81)},
        {"user_id": "sb-5", "metadata": "flat"},
        {"user_id": "sb-1", "nickname": "again"}
    ], "next": "abc"})
    .to_string()
}

fn cometchat() -> String {
    // Two pages, one after the other, as a script paging the API would save them.
    let p1 = json!({"data": [
        {"uid": "cc-1", "name": "Barry Allen", "avatar": "https://cc.example/1.webp",
         "link": "https://cometchat.com", "role": "manager", "statusMessage": "running",
         "metadata": {"@private": {"email": "b@example.com"}, "gender": "m"},
         "tags": ["Engineer", "manager"], "createdAt": 1638354015, "status": "offline",
         "authToken": "cc-1_SECRET-CC-TOKEN-99"},
        {"uid": "cc-2", "name": "Iris", "deactivatedAt": 1638354999},
        {"uid": "cc 3", "name": "space in id"}
    ], "meta": {"pagination": {"total": 4}}});
    let p2 = json!({"data": [
        {"uid": "cc-4", "name": "Wally", "tags": "not-a-list"}
    ]});
    format!("{p1}\n{p2}\n")
}

fn mirrorfly() -> String {
    // One user object per line, one line broken.
    [
        json!({"userIdentifier": "mf-1", "nickname": "Sam", "mobileNumber": "919876543210",
               "email": "sam@example.com", "profileUrl": "", "deviceType": "android",
               "deviceToken": "fcm-token-1", "deviceOsVersion": "14", "mode": 0,
               "password": "SECRET-MF-PASSWORD", "token": "SECRET-MF-TOKEN"})
        .to_string(),
        json!({"userId": "mf-2", "nickName": "Kim", "isAdminBlocked": true}).to_string(),
        "{\"userId\": \"mf-3\", ".to_owned(),
        json!({"username": "mf-4", "deviceToken": "t", "deviceType": "tv"}).to_string(),
        json!({"userIdentifier": "mf-5", "mobileNumber": "12ab"}).to_string(),
    ]
    .join("\n")
}

/// (record, code) of each rejection.
fn rejections(r: &Value) -> Vec<(u64, u64)> {
    r["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| (x["record"].as_u64().unwrap(), x["code"].as_u64().unwrap()))
        .collect()
}

#[test]
fn import_from_hosted_platforms_maps_good_records_and_reports_bad_ones() {
    let t = TempDir::new("from");
    for (platform, input, imported, rejected) in [
        (
            "sendbird",
            sendbird(),
            2,
            vec![(3, 2), (4, 6), (5, 7), (6, 3)],
        ),
        ("cometchat", cometchat(), 2, vec![(3, 2), (4, 7)]),
        ("mirrorfly", mirrorfly(), 2, vec![(3, 1), (4, 1), (5, 7)]),
    ] {
        let d = t.path(platform);
        let file = t.path(&format!("{platform}.json"));
        std::fs::write(&file, &input).unwrap();
        let f = file.to_str().unwrap();
        let o = at(
            &d,
            &[
                "--json",
                "users",
                "import",
                "--from",
                platform,
                "--dry-run",
                f,
            ],
        );
        assert_eq!(o.status.code(), Some(65), "{platform}: {}", stderr(&o));
        assert!(!d.exists(), "{platform}: the dry run wrote");
        let dry: Value = serde_json::from_str(&stdout(&o)).unwrap();
        assert_eq!(rejections(&dry), rejected, "{platform}: {dry}");
        let o = at(&d, &["--json", "users", "import", "--from", platform, f]);
        assert_eq!(o.status.code(), Some(65), "{platform}: {}", stderr(&o));
        let real: Value = serde_json::from_str(&stdout(&o)).unwrap();
        assert_eq!(rejections(&real), rejected, "{platform}: {real}");
        assert_eq!(real["imported"], imported, "{platform}");
        // The old platform's credentials are counted, never imported nor printed.
        let human = at(&d, &["users", "import", "--from", platform, "--dry-run", f]);
        let all = format!(
            "{}{}{}{}",
            stdout(&o),
            stderr(&o),
            stdout(&human),
            stderr(&human)
        );
        assert!(
            !all.contains("SECRET"),
            "{platform}: a credential was printed"
        );
        assert!(stdout(&human).contains("rejected"), "{}", stdout(&human));
        let export = ok(at(&d, &["users", "export"]));
        assert!(
            !export.contains("SECRET"),
            "{platform}: a credential was imported"
        );
    }
    let sb = t.path("sendbird");
    let u = ok_json(at(&sb, &["--json", "users", "get", "sb-1"]));
    assert_eq!(u["profile_url"], "https://sb.example/a.png");
    assert_eq!(u["metadata"], json!({"city": "Oslo"}));
    assert_eq!(u["discovery_keys"], json!(["ann@example.com"]));
    assert_eq!(u["created_at_ms"], 1_542_123_432_000i64);
    let u = ok_json(at(&sb, &["--json", "users", "get", "sb-2"]));
    assert_eq!(
        (u["is_active"].clone(), u["profile_url"].clone()),
        (json!(false), Value::Null)
    );
    assert_eq!(u["created_at_ms"], 1_704_067_200_000i64);

    let cc = t.path("cometchat");
    let u = ok_json(at(&cc, &["--json", "users", "get", "cc-1"]));
    assert_eq!(u["nickname"], "Barry Allen");
    assert_eq!(u["metadata"]["@private"]["email"], "b@example.com");
    assert_eq!(u["tags"], json!(["Engineer", "manager"]));
    assert_eq!(
        (u["role"].clone(), u["status_message"].clone()),
        (json!("manager"), json!("running"))
    );
    assert_eq!(u["link"], "https://cometchat.com");
    assert_eq!(u["created_at_ms"], 1_638_354_015_000i64);
    // @private stays out of filters, as in CometChat.
    let l = ok_json(at(
        &cc,
        &["--json", "users", "list", "--metadata", "gender=m"],
    ));
    assert_eq!(l["users"].as_array().unwrap().len(), 1);
    assert_eq!(
        ok_json(at(&cc, &["--json", "users", "get", "cc-2"]))["is_active"],
        false
    );

    let mf = t.path("mirrorfly");
    let u = ok_json(at(&mf, &["--json", "users", "get", "mf-1"]));
    assert_eq!(
        (u["mobile_number"].clone(), u["email"].clone()),
        (json!("919876543210"), json!("sam@example.com"))
    );
    assert_eq!(u["profile_url"], Value::Null);
    assert_eq!(
        ok_json(at(&mf, &["--json", "users", "get", "mf-2"]))["is_active"],
        false
    );
}

#[test]
fn backup_restore_compact_stats_demo_and_bench() {
    let t = TempDir::new("backup");
    let d = t.path("data");
    ok(at(&d, &["users", "create", "alice", "--nickname", "Alice"]));
    let access = ok(at(&d, &["tokens", "issue-access", "alice"]));
    let session = ok(at(&d, &["tokens", "issue-session", "alice"]));
    let stats = ok_json(at(&d, &["--json", "stats"]));
    assert_eq!(
        (stats["users"].clone(), stats["signing_keys"].clone()),
        (json!(1), json!(1))
    );

    let b = t.path("backup");
    let r = ok_json(at(&d, &["--json", "backup", b.to_str().unwrap()]));
    assert_eq!(r["users"], 1);
    fails(
        &at(&d, &["backup", b.to_str().unwrap()]),
        1,
        "InvalidArgument",
    );
    // The restored store verifies the tokens issued before the backup.
    let r2 = t.path("restored");
    ok(at(&r2, &["restore", b.to_str().unwrap()]));
    ok(at_in(&r2, &["tokens", "verify"], access.trim().as_bytes()));
    ok(at_in(&r2, &["tokens", "verify"], session.trim().as_bytes()));
    fails(
        &at(&r2, &["restore", b.to_str().unwrap()]),
        1,
        "InvalidArgument",
    );
    let nothing = t.path("no-backup");
    fails(
        &at(&t.path("r3"), &["restore", nothing.to_str().unwrap()]),
        50,
        "Io",
    );
    assert!(!t.path("r3").exists());

    let c = ok_json(at(&d, &["--json", "compact"]));
    assert_eq!(c["compacted"], true);
    assert_eq!(
        ok_json(at(&d, &["--json", "users", "get", "alice"]))["nickname"],
        "Alice"
    );

    let demo = ok_json(run_in(&["--json", "demo"], b""));
    let steps = demo["steps"].to_string();
    assert!(steps.contains("old session is refused"), "{steps}");
    assert!(steps.contains("reopened: 2 users"), "{steps}");
    let bench = ok_json(run_in(
        &[
            "--json",
            "bench",
            "--users",
            "200",
            "--seconds",
            "0.3",
            "--threads",
            "2",
        ],
        b"",
    ));
    assert_eq!(bench["failures"], 0);
    assert_eq!(bench["ops"].as_array().unwrap().len(), 6);
    assert!(bench["ops_per_sec"].as_f64().unwrap() > 0.0);
}

#[test]
fn cluster_mode_users_tokens_and_restore() {
    let Some(dsn) = pg::fresh_database("cli_cluster") else {
        pg::skip("cluster_mode_users_tokens_and_restore");
        return;
    };
    let pgv = |args: &[&str]| {
        let mut all = vec!["--pg", dsn.as_str()];
        all.extend_from_slice(args);
        run_in(&all, b"")
    };
    // Restore a data directory into the empty cluster, then work on it.
    let t = TempDir::new("cluster");
    let d = t.path("data");
    ok(at(&d, &["users", "create", "alice"]));
    let access = ok(at(&d, &["tokens", "issue-access", "alice"]));
    let b = t.path("backup");
    ok(at(&d, &["backup", b.to_str().unwrap()]));
    ok(pgv(&["restore", b.to_str().unwrap()]));
    fails(
        &pgv(&["restore", b.to_str().unwrap()]),
        1,
        "InvalidArgument",
    );
    let v = ok_json(run_in(
        &["--pg", &dsn, "--json", "tokens", "verify", access.trim()],
        b"",
    ));
    assert_eq!(v["user_id"], "alice");
    ok(pgv(&["users", "create", "bob"]));
    let l = ok_json(pgv(&["--json", "users", "list"]));
    assert_eq!(l["users"].as_array().unwrap().len(), 2);
    // TESSERA_PG_DSN alone selects the cluster.
    let o = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["--json", "users", "get", "bob"])
        .env("TESSERA_PG_DSN", &dsn)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // A cluster backs up into a data directory.
    let back = t.path("from-cluster");
    ok(pgv(&["backup", back.to_str().unwrap()]));
    assert_eq!(ok_json(at(&back, &["--json", "stats"]))["users"], 2);
}

#[test]
fn config_file_applies_the_servers_limits_and_id_rules() {
    let t = TempDir::new("config");
    let d = t.path("data");
    let cfg = t.path("tessera.json");
    std::fs::write(
        &cfg,
        r#"{"user_id_case":"lowercase","nickname_max_chars":5}"#,
    )
    .unwrap();
    let with = |args: &[&str]| {
        let mut all = vec!["--config", cfg.to_str().unwrap()];
        all.extend_from_slice(args);
        at(&d, &all)
    };
    // The server's id rule: ids are folded to lower case, on create and on lookup.
    let created = ok_json(with(&[
        "--json",
        "users",
        "create",
        "Alice",
        "--nickname",
        "Al",
    ]));
    assert_eq!(created["user_id"], "alice", "{created}");
    assert_eq!(
        ok_json(with(&["--json", "users", "get", "ALICE"]))["user_id"],
        "alice"
    );
    // Its limits, at the edge: 5 characters pass, 6 fail and change nothing.
    ok(with(&["users", "update", "alice", "--nickname", "Alice"]));
    fails(
        &with(&["users", "update", "alice", "--nickname", "Alices"]),
        6,
        "FieldTooLong",
    );
    // Without the file, the defaults: a 6-character nickname is fine, and "ALICE" is
    // another id than "alice".
    ok(at(
        &d,
        &["users", "update", "alice", "--nickname", "Alices"],
    ));
    fails(&at(&d, &["users", "get", "ALICE"]), 4, "UserNotFound");
    // A document the C ABI would refuse is refused the same way, before anything opens.
    std::fs::write(&cfg, r#"{"nickname_max_chars":5,"no_such_field":1}"#).unwrap();
    let bad = with(&["users", "list"]);
    fails(&bad, 1, "InvalidArgument");
    assert!(stderr(&bad).contains("--config"), "{}", stderr(&bad));
    std::fs::write(&cfg, r#"{"access_tokens_per_user":0}"#).unwrap();
    fails(&with(&["users", "list"]), 1, "InvalidArgument");
    let missing = t.path("missing.json");
    fails(
        &at(
            &d,
            &["--config", missing.to_str().unwrap(), "users", "list"],
        ),
        50,
        "Io",
    );
}
