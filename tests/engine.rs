//! Integration tests of the public Rust API: every rule of the core engine at its edges.

use std::collections::HashSet;
use std::sync::Arc;
use tessera::*;

const T0: i64 = 1_763_000_000_000; // 2025-11-13, ms

fn engine_with(config: Config) -> (Engine, ManualClock) {
    let clock = ManualClock::new(T0);
    let e = Engine::builder()
        .config(config)
        .clock(clock.clone())
        .in_memory()
        .unwrap();
    (e, clock)
}

fn engine() -> (Engine, ManualClock) {
    engine_with(Config::default())
}

fn kind<T: std::fmt::Debug>(r: Result<T>) -> ErrorKind {
    r.unwrap_err().kind()
}

fn png() -> Vec<u8> {
    let mut v = b"\x89PNG\r\n\x1a\n".to_vec();
    v.extend_from_slice(&[0, 0, 0, 13, b'I', b'H', b'D', b'R']);
    v
}

#[test]
fn create_get_update_delete() {
    let (e, _) = engine();
    let mut new = NewUser::new("alice", "Alice");
    new.tags = vec!["eng".into()];
    new.email = Some("alice@example.com".into());
    let u = e.create_user(new.clone()).unwrap();
    assert_eq!(u.user_id, "alice");
    assert_eq!(u.created_at_ms, T0);
    assert!(u.is_active);
    assert_eq!(e.get_user("alice").unwrap(), u);
    assert_eq!(
        kind(e.create_user(new.clone())),
        ErrorKind::UserAlreadyExists
    );

    let up = e.upsert_user(NewUser::new("alice", "Other")).unwrap();
    assert!(!up.created);
    assert_eq!(
        up.user.nickname, "Alice",
        "upsert returns the existing user unchanged"
    );
    assert!(e.upsert_user(NewUser::new("bob", "Bob")).unwrap().created);

    let patch = UserPatch {
        nickname: Some("Al 🚀".into()),
        email: Some(None),
        ..Default::default()
    };
    let u2 = e.update_user("alice", &patch).unwrap();
    assert_eq!(u2.nickname, "Al 🚀");
    assert_eq!(u2.email, None);
    assert_eq!(u2.tags, vec!["eng".to_string()], "untouched fields stay");

    // A bad patch changes nothing.
    let bad = UserPatch {
        nickname: Some("ok".into()),
        link: Some(Some("ftp://x".into())),
        ..Default::default()
    };
    assert_eq!(kind(e.update_user("alice", &bad)), ErrorKind::InvalidField);
    assert_eq!(e.get_user("alice").unwrap(), u2);

    e.delete_user("alice").unwrap();
    assert_eq!(kind(e.get_user("alice")), ErrorKind::UserNotFound);
    assert_eq!(kind(e.delete_user("alice")), ErrorKind::UserNotFound);
    assert_eq!(
        kind(e.update_user("alice", &patch)),
        ErrorKind::UserNotFound
    );
    assert_eq!(e.user_count(), 1);
}

#[test]
fn invalid_input_changes_nothing() {
    let (e, _) = engine();
    assert_eq!(
        kind(e.create_user(NewUser::new("a/b", "x"))),
        ErrorKind::InvalidUserId
    );
    assert_eq!(
        kind(e.create_user(NewUser::new("a".repeat(81), "x"))),
        ErrorKind::InvalidUserId
    );
    assert_eq!(
        kind(e.create_user(NewUser::new("ok", "n".repeat(81)))),
        ErrorKind::FieldTooLong
    );
    let mut new = NewUser::new("ok", "n");
    new.tags = (0..26).map(|i| i.to_string()).collect();
    assert_eq!(kind(e.create_user(new)), ErrorKind::TooManyItems);
    assert_eq!(e.user_count(), 0);
    assert!(e
        .create_user(NewUser::new("a".repeat(80), "n".repeat(80)))
        .is_ok());
}

#[test]
fn lowercase_policy_applies_on_create_and_lookup() {
    let (e, _) = engine_with(Config {
        user_id_case: UserIdCase::Lowercase,
        ..Config::default()
    });
    assert_eq!(
        e.create_user(NewUser::new("Alice", "A")).unwrap().user_id,
        "alice"
    );
    assert_eq!(e.get_user("ALICE").unwrap().user_id, "alice");
    assert_eq!(
        kind(e.create_user(NewUser::new("aLiCe", "A"))),
        ErrorKind::UserAlreadyExists
    );
    let t = e.issue_session_token("ALICE", None).unwrap();
    assert_eq!(
        e.authenticate("Alice", Some(t.as_str())).unwrap().user_id,
        "alice"
    );
}

#[test]
fn strict_policy_rejects_non_ascii_ids() {
    let (e, _) = engine_with(Config {
        user_id_policy: UserIdPolicy::Strict,
        ..Config::default()
    });
    assert!(e.create_user(NewUser::new("ok_id-1", "")).is_ok());
    assert_eq!(
        kind(e.create_user(NewUser::new("no.dots", ""))),
        ErrorKind::InvalidUserId
    );
}

#[test]
fn list_pagination_and_filters() {
    let (e, _) = engine();
    for i in 0..250 {
        let mut n = NewUser::new(
            format!("u{i:03}"),
            format!("{}{i}", if i % 2 == 0 { "even" } else { "odd" }),
        );
        if i % 10 == 0 {
            n.tags = vec!["tenth".into()];
        }
        n.metadata
            .insert("team".into(), (if i < 5 { "red" } else { "blue" }).into());
        n.metadata.insert(
            PRIVATE_METADATA_KEY.into(),
            serde_json::json!({"team": "red"}),
        );
        e.create_user(n).unwrap();
    }
    e.deactivate_user("u001").unwrap();
    e.delete_user("u002").unwrap();

    // Full walk: stable order, no duplicates, nothing missed.
    let mut seen = Vec::new();
    let mut q = UserQuery {
        limit: 100,
        ..Default::default()
    };
    loop {
        let page = e.list_users(&q).unwrap();
        seen.extend(page.users.iter().map(|u| u.user_id.clone()));
        match page.next_cursor {
            Some(c) => q.cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen.len(), 249);
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted, "creation order");

    let count = |q: UserQuery| {
        let mut n = 0;
        let mut q = q;
        loop {
            let p = e.list_users(&q).unwrap();
            n += p.users.len();
            match p.next_cursor {
                Some(c) => q.cursor = Some(c),
                None => return n,
            }
        }
    };
    assert_eq!(
        count(UserQuery {
            tag: Some("tenth".into()),
            ..Default::default()
        }),
        25
    );
    assert_eq!(
        count(UserQuery {
            nickname_prefix: Some("even".into()),
            ..Default::default()
        }),
        124
    );
    assert_eq!(
        count(UserQuery {
            active: Some(false),
            ..Default::default()
        }),
        1
    );
    assert_eq!(
        count(UserQuery {
            metadata_key: Some("team".into()),
            metadata_value: Some("red".into()),
            ..Default::default()
        }),
        4,
        "u000..u004 minus deleted u002; the @private copy never matches"
    );
    let ids = UserQuery {
        user_ids: Some(vec![
            "u010".into(),
            "u003".into(),
            "nobody".into(),
            "u003".into(),
        ]),
        limit: 1,
        ..Default::default()
    };
    let p1 = e.list_users(&ids).unwrap();
    assert_eq!(p1.users[0].user_id, "u003");
    let p2 = e
        .list_users(&UserQuery {
            cursor: p1.next_cursor,
            ..ids.clone()
        })
        .unwrap();
    assert_eq!(p2.users[0].user_id, "u010");
    assert!(p2.next_cursor.is_none());

    // Limit edges.
    assert_eq!(
        e.list_users(&UserQuery {
            limit: 100,
            ..Default::default()
        })
        .unwrap()
        .users
        .len(),
        100
    );
    assert_eq!(
        e.list_users(&UserQuery {
            limit: 1,
            ..Default::default()
        })
        .unwrap()
        .users
        .len(),
        1
    );
    assert_eq!(
        kind(e.list_users(&UserQuery {
            limit: 0,
            ..Default::default()
        })),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        kind(e.list_users(&UserQuery {
            limit: 101,
            ..Default::default()
        })),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        kind(e.list_users(&UserQuery {
            cursor: Some("not a cursor".into()),
            ..Default::default()
        })),
        ErrorKind::InvalidArgument
    );
}

/// docs/SECURITY.md, "Memory bounds": one user query names at most 100 ids.
#[test]
fn a_user_query_names_at_most_100_ids() {
    let (e, _) = engine();
    e.create_user(NewUser::new("u0", "")).unwrap();
    let ids = |n: usize| UserQuery {
        user_ids: Some((0..n).map(|i| format!("u{i}")).collect()),
        limit: 100,
        ..Default::default()
    };
    assert_eq!(e.list_users(&ids(100)).unwrap().users.len(), 1);
    assert_eq!(kind(e.list_users(&ids(101))), ErrorKind::InvalidArgument);
}

#[test]
fn discovery_keys_are_unique_across_users() {
    let (e, _) = engine();
    let mut a = NewUser::new("a", "A");
    a.discovery_keys = vec!["phone:+15550001".into(), "mail:a@x.io".into()];
    e.create_user(a).unwrap();
    let mut b = NewUser::new("b", "B");
    b.discovery_keys = vec!["phone:+15550001".into()];
    assert_eq!(kind(e.create_user(b)), ErrorKind::DiscoveryKeyTaken);
    assert!(e.get_user("b").is_err());
    assert_eq!(
        e.find_user_by_discovery_key("mail:a@x.io").unwrap().user_id,
        "a"
    );
    // Releasing a key by update lets another user take it.
    e.update_user(
        "a",
        &UserPatch {
            discovery_keys: Some(vec![]),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        kind(e.find_user_by_discovery_key("phone:+15550001")),
        ErrorKind::UserNotFound
    );
    let mut b = NewUser::new("b", "B");
    b.discovery_keys = vec!["phone:+15550001".into()];
    e.create_user(b).unwrap();
    assert_eq!(
        e.find_user_by_discovery_key("phone:+15550001")
            .unwrap()
            .user_id,
        "b"
    );
    e.delete_user("b").unwrap();
    assert!(e.find_user_by_discovery_key("phone:+15550001").is_err());
}

#[test]
fn devices_per_type_limit_evicts_oldest_and_push_tokens_move() {
    let (e, clock) = engine();
    e.create_user(NewUser::new("a", "")).unwrap();
    e.create_user(NewUser::new("b", "")).unwrap();
    for i in 0..20 {
        clock.advance(1);
        let added = e
            .add_device("a", NewDevice::new(DeviceType::Ios, format!("ios{i}")))
            .unwrap();
        assert!(added.evicted.is_none());
    }
    e.add_device("a", NewDevice::new(DeviceType::Android, "and0"))
        .unwrap();
    let added = e
        .add_device("a", NewDevice::new(DeviceType::Ios, "ios20"))
        .unwrap();
    assert_eq!(added.evicted.unwrap().push_token, "ios0");
    let devs = e.list_devices("a").unwrap();
    assert_eq!(
        devs.iter()
            .filter(|d| d.device_type == DeviceType::Ios)
            .count(),
        20
    );
    assert_eq!(
        kind(e.find_user_by_push_token("ios0")),
        ErrorKind::DeviceNotFound
    );
    // Re-registering refreshes, it does not evict.
    assert!(e
        .add_device("a", NewDevice::new(DeviceType::Ios, "ios5"))
        .unwrap()
        .evicted
        .is_none());
    assert_eq!(e.list_devices("a").unwrap().len(), 21);
    // The push token moves to b.
    e.add_device("b", NewDevice::new(DeviceType::Android, "and0"))
        .unwrap();
    assert_eq!(e.find_user_by_push_token("and0").unwrap().user_id, "b");
    assert!(e
        .list_devices("a")
        .unwrap()
        .iter()
        .all(|d| d.push_token != "and0"));
    assert_eq!(e.remove_device("b", "and0").unwrap().push_token, "and0");
    assert_eq!(
        kind(e.remove_device("b", "and0")),
        ErrorKind::DeviceNotFound
    );
    assert_eq!(
        kind(e.find_user_by_push_token("and0")),
        ErrorKind::DeviceNotFound
    );
}

#[test]
fn profile_image_upload() {
    let (e, _) = engine_with(Config {
        profile_image_max_bytes: 1024,
        ..Config::default()
    });
    e.create_user(NewUser::new("a", "")).unwrap();
    let mut img = png();
    img.resize(1024, 7);
    let u = e.set_profile_image("a", &img).unwrap();
    let url = u.profile_url.unwrap();
    assert!(
        url.starts_with("tessera://images/") && url.ends_with(".png"),
        "{url}"
    );
    let hex = &url["tessera://images/".len()..url.len() - 4];
    let stored = e.profile_image(hex).unwrap();
    assert_eq!(stored.bytes, img);
    assert_eq!(stored.format, ImageFormat::Png);
    img.push(0);
    assert_eq!(
        kind(e.set_profile_image("a", &img)),
        ErrorKind::ImageTooLarge
    );
    assert_eq!(
        kind(e.set_profile_image("a", b"GIF89a....")),
        ErrorKind::InvalidImage
    );
    assert_eq!(
        e.get_user("a").unwrap().profile_url.unwrap(),
        url,
        "unchanged by failures"
    );
    let jpeg = [0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3];
    assert!(e
        .set_profile_image("a", &jpeg)
        .unwrap()
        .profile_url
        .unwrap()
        .ends_with(".jpg"));
    assert_eq!(kind(e.profile_image("00")), ErrorKind::ImageNotFound);
}

#[test]
fn access_token_limit_evicts_oldest_atomically() {
    let (e, _) = engine();
    e.create_user(NewUser::new("a", "")).unwrap();
    let mut issued = Vec::new();
    for i in 0..10 {
        let t = e.issue_access_token("a", Some(&format!("dev{i}"))).unwrap();
        assert!(t.evicted.is_empty());
        issued.push(t);
    }
    let eleventh = e.issue_access_token("a", None).unwrap();
    assert_eq!(eleventh.evicted, vec![issued[0].info.id]);
    assert_eq!(
        kind(e.verify_access_token(issued[0].token.as_str())),
        ErrorKind::InvalidToken
    );
    for t in &issued[1..] {
        assert_eq!(
            e.verify_access_token(t.token.as_str()).unwrap().token_id,
            t.info.id
        );
    }
    let list = e.list_access_tokens("a").unwrap();
    assert_eq!(list.len(), 10);
    assert_eq!(list[0].label.as_deref(), Some("dev1"));
    let ev = e.drain_events(100);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].kind, EventKind::AccessTokenEvicted);
    assert_eq!(ev[0].token_id, Some(issued[0].info.id));

    e.revoke_access_token("a", issued[1].info.id).unwrap();
    assert!(e.verify_access_token(issued[1].token.as_str()).is_err());
    assert_eq!(
        kind(e.revoke_access_token("a", issued[1].info.id)),
        ErrorKind::TokenNotFound
    );
    assert_eq!(e.revoke_all_access_tokens("a").unwrap(), 9);
    assert!(e.verify_access_token(eleventh.token.as_str()).is_err());
    assert_eq!(e.revoke_all_access_tokens("a").unwrap(), 0);
    let kinds: Vec<_> = e.drain_events(10).iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        vec![
            EventKind::AccessTokenRevoked,
            EventKind::AccessTokensRevoked
        ]
    );
}

#[test]
fn access_token_limit_is_configurable_and_labels_are_bounded() {
    let (e, _) = engine_with(Config {
        access_tokens_per_user: 1,
        ..Config::default()
    });
    e.create_user(NewUser::new("a", "")).unwrap();
    let t1 = e.issue_access_token("a", None).unwrap();
    let t2 = e.issue_access_token("a", None).unwrap();
    assert_eq!(t2.evicted, vec![t1.info.id]);
    assert!(e.issue_access_token("a", Some(&"l".repeat(100))).is_ok());
    assert_eq!(
        kind(e.issue_access_token("a", Some(&"l".repeat(101)))),
        ErrorKind::FieldTooLong
    );
    assert!(Engine::builder()
        .config(Config {
            access_tokens_per_user: 101,
            ..Config::default()
        })
        .in_memory()
        .is_err());
}

#[test]
fn deleted_user_tokens_never_reach_a_recreated_user() {
    let (e, _) = engine();
    e.create_user(NewUser::new("a", "")).unwrap();
    let access = e.issue_access_token("a", None).unwrap();
    let session = e.issue_session_token("a", None).unwrap();
    e.delete_user("a").unwrap();
    e.create_user(NewUser::new("a", "")).unwrap();
    assert_eq!(
        kind(e.verify_access_token(access.token.as_str())),
        ErrorKind::InvalidToken
    );
    // Genuine, and its user is gone: revoked, never "not found" (which would hint at ids).
    assert_eq!(
        kind(e.verify_session_token(session.as_str())),
        ErrorKind::TokenRevoked
    );
    assert_eq!(
        kind(e.authenticate("a", Some(session.as_str()))),
        ErrorKind::TokenRevoked
    );
    assert_eq!(e.drain_events(10)[0].kind, EventKind::UserDeleted);
}

/// docs/ERRORS.md, "One failure, one error kind": every way a token can fail, with the one
/// kind it gets from `verify_*` and from `authenticate` — for its own user, for another
/// user, and for an id nobody has (the same answer: a token error never tells whether an id
/// exists). Each case starts from a fresh engine with users "a" (the token's) and "b".
#[test]
fn every_token_failure_has_one_error_kind() {
    type Make = fn(&Engine, &ManualClock) -> String;
    use ErrorKind::*;
    fn session(e: &Engine) -> String {
        e.issue_session_token("a", Some(T0 + 60_000))
            .unwrap()
            .as_str()
            .to_owned()
    }
    fn access(e: &Engine) -> String {
        e.issue_access_token("a", None)
            .unwrap()
            .token
            .as_str()
            .to_owned()
    }
    fn stranger() -> Engine {
        let e = Engine::in_memory().unwrap();
        e.create_user(NewUser::new("a", "")).unwrap();
        e
    }
    let expired: Make = |e, c| {
        let t = session(e);
        c.set(T0 + 60_000 + Config::default().clock_skew_ms);
        t
    };
    let cases: Vec<(&str, Make, Option<ErrorKind>)> = vec![
        ("valid session", |e, _| session(e), None),
        ("valid access", |e, _| access(e), None),
        ("garbage", |_, _| "garbage".into(), Some(InvalidToken)),
        (
            "session, tampered signature",
            |e, _| {
                let mut t = session(e);
                let last = t.pop().unwrap();
                t.push(if last == 'A' { 'B' } else { 'A' });
                t
            },
            Some(InvalidToken),
        ),
        (
            "session, signed by another engine's key 1",
            |_, _| {
                stranger()
                    .issue_session_token("a", None)
                    .unwrap()
                    .as_str()
                    .into()
            },
            Some(InvalidToken),
        ),
        (
            "session, key id never issued here",
            |_, _| {
                let other = stranger();
                for _ in 0..4 {
                    other.rotate_key().unwrap();
                }
                other
                    .issue_session_token("a", None)
                    .unwrap()
                    .as_str()
                    .into()
            },
            Some(InvalidToken),
        ),
        ("session, expired", expired, Some(TokenExpired)),
        (
            "session, expired and revoked",
            |e, c| {
                let t = session(e);
                e.revoke_sessions("a").unwrap();
                c.set(T0 + 3_600_000);
                t
            },
            Some(TokenExpired),
        ),
        (
            "session, user's sessions revoked",
            |e, _| {
                let t = session(e);
                e.revoke_sessions("a").unwrap();
                t
            },
            Some(TokenRevoked),
        ),
        (
            "session, key retired",
            |e, _| {
                let t = session(e);
                e.rotate_key().unwrap();
                e.retire_key("1").unwrap();
                t
            },
            Some(TokenRevoked),
        ),
        (
            "session, all sessions revoked",
            |e, _| {
                let t = session(e);
                e.revoke_all_sessions().unwrap();
                t
            },
            Some(TokenRevoked),
        ),
        (
            "session, user deleted",
            |e, _| {
                let t = session(e);
                e.delete_user("a").unwrap();
                t
            },
            Some(TokenRevoked),
        ),
        (
            "session, user deleted and the id re-created",
            |e, _| {
                let t = session(e);
                e.delete_user("a").unwrap();
                e.create_user(NewUser::new("a", "")).unwrap();
                t
            },
            Some(TokenRevoked),
        ),
        (
            "session, user deactivated",
            |e, _| {
                let t = session(e);
                e.deactivate_user("a").unwrap();
                t
            },
            Some(UserDeactivated),
        ),
        (
            "session, revoked and deactivated",
            |e, _| {
                let t = session(e);
                e.revoke_sessions("a").unwrap();
                e.deactivate_user("a").unwrap();
                t
            },
            Some(TokenRevoked),
        ),
        // Access tokens are not signed, only looked up: a revoked one is indistinguishable
        // from one never issued, so every such failure is InvalidToken.
        (
            "access, revoked",
            |e, _| {
                let t = access(e);
                e.revoke_all_access_tokens("a").unwrap();
                t
            },
            Some(InvalidToken),
        ),
        (
            "access, user deleted and the id re-created",
            |e, _| {
                let t = access(e);
                e.delete_user("a").unwrap();
                e.create_user(NewUser::new("a", "")).unwrap();
                t
            },
            Some(InvalidToken),
        ),
        (
            "access, user deactivated",
            |e, _| {
                let t = access(e);
                e.deactivate_user("a").unwrap();
                t
            },
            Some(UserDeactivated),
        ),
    ];
    for (name, make, want) in cases {
        let (e, clock) = engine();
        e.create_user(NewUser::new("a", "")).unwrap();
        e.create_user(NewUser::new("b", "")).unwrap();
        let token = make(&e, &clock);
        let verified = if token.starts_with(ACCESS_TOKEN_PREFIX) {
            e.verify_access_token(&token).map(|_| ())
        } else {
            e.verify_session_token(&token).map(|_| ())
        };
        assert_eq!(verified.err().map(|e| e.kind()), want, "{name}: verify");
        let own = e.authenticate("a", Some(&token));
        assert_eq!(own.err().map(|e| e.kind()), want, "{name}: authenticate a");
        for other in ["b", "nobody"] {
            let got = e.authenticate(other, Some(&token)).unwrap_err().kind();
            assert_eq!(
                got,
                want.unwrap_or(InvalidToken),
                "{name}: authenticate {other}"
            );
        }
    }
}

#[test]
fn session_token_expiry_default_custom_and_bounds() {
    let (e, clock) = engine();
    e.create_user(NewUser::new("a", "")).unwrap();
    let t = e.issue_session_token("a", None).unwrap();
    assert_eq!(t.expires_at_ms(), T0 + 7 * DAY_MS);
    let v = e.verify_session_token(t.as_str()).unwrap();
    assert_eq!(v.user_id, "a");
    assert_eq!(v.issued_at_ms, T0);
    assert_eq!(v.expires_at_ms, T0 + 7 * DAY_MS);
    assert_eq!(v.key_id.as_str(), "1");

    // Expiry with the 5 s leeway (the bound itself: session_expiry_bound_is_exclusive).
    clock.set(T0 + 7 * DAY_MS + 4_999);
    assert!(e.verify_session_token(t.as_str()).is_ok());
    clock.advance(1);
    assert_eq!(
        kind(e.verify_session_token(t.as_str())),
        ErrorKind::TokenExpired
    );

    clock.set(T0);
    let custom = e.issue_session_token("a", Some(T0 + 60_000)).unwrap();
    assert_eq!(custom.expires_at_ms(), T0 + 60_000);
    assert_eq!(
        kind(e.issue_session_token("a", Some(T0))),
        ErrorKind::InvalidExpiry
    );
    assert_eq!(
        kind(e.issue_session_token("a", Some(T0 - 1))),
        ErrorKind::InvalidExpiry
    );
    let max = Config::default().session_max_ttl_ms;
    assert!(e.issue_session_token("a", Some(T0 + max)).is_ok());
    assert_eq!(
        kind(e.issue_session_token("a", Some(T0 + max + 1))),
        ErrorKind::InvalidExpiry
    );
}

#[test]
fn session_expiry_bound_is_exclusive() {
    // RFC 7519 §4.1.4: a token MUST NOT be accepted on or after `exp` (+ the leeway).
    for leeway in [0, 1, 5_000, 3_600_000] {
        let (e, clock) = engine_with(Config {
            clock_skew_ms: leeway,
            ..Config::default()
        });
        e.create_user(NewUser::new("a", "")).unwrap();
        let exp = T0 + 60_000;
        let t = e.issue_session_token("a", Some(exp)).unwrap();
        assert_eq!(t.expires_at_ms(), exp);
        clock.set(exp + leeway - 1);
        assert!(
            e.verify_session_token(t.as_str()).is_ok(),
            "leeway {leeway}"
        );
        assert!(e.authenticate("a", Some(t.as_str())).is_ok());
        clock.set(exp + leeway);
        assert_eq!(
            kind(e.verify_session_token(t.as_str())),
            ErrorKind::TokenExpired,
            "leeway {leeway}"
        );
        assert_eq!(
            kind(e.authenticate("a", Some(t.as_str()))),
            ErrorKind::TokenExpired
        );
    }
}

#[test]
fn session_expiry_arithmetic_is_checked_at_every_extreme() {
    let (e, clock) = engine();
    e.create_user(NewUser::new("a", "")).unwrap();
    let mut refused = vec![
        i64::MAX,
        i64::MAX - 999,
        i64::MAX / 1000,
        i64::MAX / 1000 * 1000,
        0,
        -1,
        -999,
        -1_000,
        -1_001,
        i64::MIN / 1000,
        i64::MIN / 1000 * 1000,
        T0,
        T0 - 1,
        T0 + 999,           // rounds down to T0
        10_000_000_000_000, // after 9 999 999 999 s, the largest `exp` a token can hold
    ];
    refused.extend((0..=1_000).map(|d| i64::MIN + d));
    for exp in refused {
        assert_eq!(
            kind(e.issue_session_token("a", Some(exp))),
            ErrorKind::InvalidExpiry,
            "{exp}"
        );
    }
    assert_eq!(
        e.issue_session_token("a", Some(T0 + 1_000))
            .unwrap()
            .expires_at_ms(),
        T0 + 1_000
    );

    // The latest expiry a token can carry, 9 999 999 999 s (the year 2286), is the edge.
    let last = 9_999_999_999_000;
    let (far, far_clock) = engine_with(Config {
        session_max_ttl_ms: 100 * 365 * DAY_MS,
        ..Config::default()
    });
    far.create_user(NewUser::new("a", "")).unwrap();
    far_clock.set(last - DAY_MS);
    let t = far.issue_session_token("a", Some(last + 999)).unwrap();
    assert_eq!(t.expires_at_ms(), last);
    assert_eq!(
        far.verify_session_token(t.as_str()).unwrap().expires_at_ms,
        last
    );
    assert_eq!(
        kind(far.issue_session_token("a", Some(last + 1_000))),
        ErrorKind::InvalidExpiry
    );
    // The default lifetime would end past it.
    assert_eq!(
        kind(far.issue_session_token("a", None)),
        ErrorKind::InvalidExpiry
    );

    // A clock at the ends of time: nothing panics or wraps.
    let token = e.issue_session_token("a", None).unwrap();
    for now in [i64::MAX, i64::MAX - 1, last + 1_000] {
        clock.set(now);
        assert_eq!(
            kind(e.issue_session_token("a", None)),
            ErrorKind::InvalidExpiry
        );
        assert_eq!(
            kind(e.issue_session_token("a", Some(i64::MAX))),
            ErrorKind::InvalidExpiry
        );
        assert_eq!(
            kind(e.verify_session_token(token.as_str())),
            ErrorKind::TokenExpired
        );
    }
    // A clock before 1970 reads as the epoch itself.
    for now in [i64::MIN, i64::MIN + 1, -1] {
        clock.set(now);
        let t = e.issue_session_token("a", Some(1_000)).unwrap();
        assert_eq!(t.expires_at_ms(), 1_000);
        let v = e.verify_session_token(t.as_str()).unwrap();
        assert_eq!((v.issued_at_ms, v.expires_at_ms), (0, 1_000));
        assert_eq!(
            kind(e.issue_session_token("a", Some(0))),
            ErrorKind::InvalidExpiry
        );
        assert_eq!(
            kind(e.issue_session_token("a", Some(i64::MIN))),
            ErrorKind::InvalidExpiry
        );
    }
}

/// docs/SECURITY.md, "Clock jumps": expiry is judged against the wall clock at every verify
/// (nothing is latched), `iat` is never checked, and neither revocation nor an access token
/// depends on the time.
#[test]
fn clock_jumps_move_expiry_but_never_revocation() {
    let (e, clock) = engine();
    e.create_user(NewUser::new("a", "")).unwrap();
    let leeway = Config::default().clock_skew_ms;
    let exp = T0 + 60_000;
    let t = e.issue_session_token("a", Some(exp)).unwrap();
    let access = e.issue_access_token("a", None).unwrap();

    // Forward past exp + leeway: expired. Back again: valid again.
    clock.set(exp + leeway);
    assert_eq!(
        kind(e.verify_session_token(t.as_str())),
        ErrorKind::TokenExpired
    );
    clock.set(T0);
    assert!(e.verify_session_token(t.as_str()).is_ok());

    // A day back: the token's `iat` lies in the future, and it still verifies.
    clock.set(T0 - DAY_MS);
    assert_eq!(e.verify_session_token(t.as_str()).unwrap().issued_at_ms, T0);

    // Issued while the clock ran a day ahead: the lifetime counts from that clock, so once the
    // clock is put right the token lives a day longer than configured.
    clock.set(T0 + DAY_MS);
    let ahead = e.issue_session_token("a", None).unwrap();
    assert_eq!(ahead.expires_at_ms(), T0 + 8 * DAY_MS);
    clock.set(T0 + 8 * DAY_MS + leeway - 1);
    assert!(e.verify_session_token(ahead.as_str()).is_ok());

    // Revocation is an epoch, not a time: whatever the clock says, revoked stays revoked.
    clock.set(T0);
    e.revoke_sessions("a").unwrap();
    for now in [T0 - DAY_MS, T0, exp - 1] {
        clock.set(now);
        for s in [&t, &ahead] {
            assert_eq!(
                kind(e.verify_session_token(s.as_str())),
                ErrorKind::TokenRevoked,
                "{now}"
            );
        }
    }
    // Access tokens carry no time: every clock, one before 1970 included, accepts them.
    for now in [i64::MIN, 0, T0, T0 + 100 * 365 * DAY_MS, i64::MAX] {
        clock.set(now);
        assert_eq!(
            e.verify_access_token(access.token.as_str())
                .unwrap()
                .user_id,
            "a"
        );
    }
}

/// docs/SECURITY.md, "Secrets in errors": a refused token's error message never repeats the
/// token or any 12 characters of it, so logging errors (or `tessera_last_error_message`)
/// leaks no credential.
#[test]
fn token_errors_never_echo_the_token() {
    let (e, clock) = engine();
    e.create_user(NewUser::new("a", "")).unwrap();
    // Every refusal of `token`: its error (kind, message, Display, Debug) has no 12
    // consecutive characters of it.
    let check = |e: &Engine, token: &str| {
        let errors = [
            if token.starts_with(ACCESS_TOKEN_PREFIX) {
                e.verify_access_token(token).map(|_| ())
            } else {
                e.verify_session_token(token).map(|_| ())
            },
            e.authenticate("a", Some(token)).map(|_| ()),
            e.authenticate("b", Some(token)).map(|_| ()),
        ];
        for err in errors {
            let err = err.unwrap_err();
            let shown = format!("{err} {err:?} {}", err.message());
            for part in token.as_bytes().windows(12) {
                let part = std::str::from_utf8(part).unwrap();
                assert!(
                    !shown.contains(part),
                    "{:?} repeats {part:?} of the token: {shown}",
                    err.kind()
                );
            }
        }
    };
    let flip = |t: &str, at: usize| {
        let mut b = t.as_bytes().to_vec();
        b[at] = if b[at] == b'A' { b'B' } else { b'A' };
        String::from_utf8(b).unwrap()
    };
    let session = |e: &Engine| {
        e.issue_session_token("a", Some(T0 + 60_000))
            .unwrap()
            .as_str()
            .to_owned()
    };
    let access = |e: &Engine| {
        e.issue_access_token("a", None)
            .unwrap()
            .token
            .as_str()
            .to_owned()
    };

    let s = session(&e);
    check(&e, &flip(&s, s.len() - 1)); // forged
    let a = access(&e);
    check(&e, &flip(&a, 30)); // checksum
    e.revoke_all_access_tokens("a").unwrap();
    check(&e, &a); // revoked access token
    e.revoke_sessions("a").unwrap();
    check(&e, &s); // revoked session
    let (a, s) = (access(&e), session(&e));
    e.deactivate_user("a").unwrap();
    check(&e, &a); // deactivated user
    check(&e, &s);
    e.reactivate_user("a").unwrap();
    clock.set(T0 + 3_600_000);
    check(&e, &s); // expired
}

#[test]
fn session_revocation_is_exact_within_a_millisecond_and_spares_access_tokens() {
    let (e, _) = engine();
    e.create_user(NewUser::new("a", "")).unwrap();
    let access = e.issue_access_token("a", None).unwrap();
    // The clock never moves: everything happens in the same millisecond.
    let before = e.issue_session_token("a", None).unwrap();
    e.revoke_sessions("a").unwrap();
    let after = e.issue_session_token("a", None).unwrap();
    assert_eq!(
        kind(e.verify_session_token(before.as_str())),
        ErrorKind::TokenRevoked
    );
    assert!(e.verify_session_token(after.as_str()).is_ok());
    assert!(e.verify_access_token(access.token.as_str()).is_ok());
    assert_eq!(e.drain_events(10)[0].kind, EventKind::SessionsRevoked);
}

#[test]
fn key_rotation_retirement_and_emergency_revocation() {
    let (e, _) = engine();
    e.create_user(NewUser::new("a", "")).unwrap();
    let t1 = e.issue_session_token("a", None).unwrap();
    let k2 = e.rotate_key().unwrap();
    assert_eq!(k2.key_id.as_str(), "2");
    assert!(k2.active);
    let t2 = e.issue_session_token("a", None).unwrap();
    assert_eq!(
        e.verify_session_token(t1.as_str()).unwrap().key_id.as_str(),
        "1"
    );
    assert_eq!(
        e.verify_session_token(t2.as_str()).unwrap().key_id.as_str(),
        "2"
    );
    assert_eq!(kind(e.retire_key("2")), ErrorKind::KeyActive);
    assert_eq!(kind(e.retire_key("zz")), ErrorKind::KeyNotFound);
    assert_eq!(kind(e.retire_key("not a kid")), ErrorKind::KeyNotFound);
    e.retire_key("1").unwrap();
    assert_eq!(
        kind(e.verify_session_token(t1.as_str())),
        ErrorKind::TokenRevoked
    );
    assert!(e.verify_session_token(t2.as_str()).is_ok());
    let ev = e.drain_events(10);
    assert_eq!(
        (ev[0].kind, ev[0].key_id.as_deref()),
        (EventKind::KeyRetired, Some("1"))
    );

    e.revoke_all_sessions().unwrap();
    assert_eq!(
        kind(e.verify_session_token(t2.as_str())),
        ErrorKind::TokenRevoked
    );
    assert_eq!(
        kind(e.verify_session_token(t1.as_str())),
        ErrorKind::TokenRevoked
    );
    let t3 = e.issue_session_token("a", None).unwrap();
    assert!(e.verify_session_token(t3.as_str()).is_ok());
    assert_eq!(e.keys().len(), 1);
    let kinds: Vec<_> = e.drain_events(10).iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        vec![EventKind::KeyRetired, EventKind::AllSessionsRevoked]
    );
}

/// What a service holding an exported key sees: jsonwebtoken verifies the token, and its
/// `sub` resolves, through `get_user_by_handle`, to the user it was issued to.
fn external_subject(e: &Engine, token: &str) -> User {
    #[derive(serde::Deserialize)]
    struct Claims {
        sub: String,
        iat: i64,
        exp: i64,
    }
    let kid = jsonwebtoken::decode_header(token).unwrap().kid.unwrap();
    let secret = e.export_key(&kid).unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    v.validate_exp = false; // the test clock is in the past of the library's wall clock
    v.required_spec_claims = ["exp", "sub"].iter().map(|c| c.to_string()).collect();
    let d = jsonwebtoken::decode::<Claims>(
        token,
        &jsonwebtoken::DecodingKey::from_secret(secret.as_bytes()),
        &v,
    )
    .unwrap();
    let verified = e.verify_session_token(token).unwrap();
    assert_eq!(
        (d.claims.iat * 1000, d.claims.exp * 1000),
        (verified.issued_at_ms, verified.expires_at_ms)
    );
    e.get_user_by_handle(d.claims.sub.parse().unwrap()).unwrap()
}

#[test]
fn exported_key_verifies_session_tokens_with_a_standard_jwt_library() {
    let (e, _) = engine();
    e.create_user(NewUser::new("a", "")).unwrap();
    let t = e.issue_session_token("a", None).unwrap();
    let secret = e.export_key("1").unwrap();
    assert_eq!(format!("{secret:?}"), "KeySecret(<redacted>)");
    let a = external_subject(&e, t.as_str());
    assert_eq!((a.user_id.as_str(), a.handle), ("a", 1));
    assert_eq!(a, e.get_user("a").unwrap());
    assert_eq!(kind(e.export_key("2")), ErrorKind::KeyNotFound);
    assert_eq!(kind(e.export_key("")), ErrorKind::KeyNotFound);
}

/// docs/SECURITY.md, "What one stolen credential allows": whoever holds a live key's secret
/// signs, with any JWT library, tokens Tessera accepts for every user — with any expiry up to
/// the year 2286, however short `session_max_ttl_ms` is — needing only the user's small
/// revocation epoch, until that key is retired. Rotating alone does not stop them.
#[test]
fn an_exported_key_mints_tokens_for_every_user_until_it_is_retired() {
    let (e, _) = engine();
    let a = e.create_user(NewUser::new("a", "")).unwrap();
    let b = e.create_user(NewUser::new("b", "")).unwrap();
    e.revoke_sessions("b").unwrap(); // b's epoch is now 1
    let secret = e.export_key("1").unwrap();
    #[derive(serde::Serialize)]
    struct Claims {
        sub: String,
        rv: u32,
        iat: i64,
        exp: i64,
    }
    let forever = 9_999_999_999; // seconds: the last second a token can carry
    let mint = |handle: u64, rv: u32| {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        header.typ = None;
        header.kid = Some("1".into());
        let claims = Claims {
            sub: handle.to_string(),
            rv,
            iat: T0 / 1000,
            exp: forever,
        };
        let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    };
    let for_b = mint(b.handle, 1);
    let v = e.verify_session_token(&for_b).unwrap();
    assert_eq!((v.user_id.as_str(), v.expires_at_ms), ("b", forever * 1000));
    assert!(e.authenticate("b", Some(&for_b)).is_ok());
    assert_eq!(
        kind(e.verify_session_token(&mint(b.handle, 0))),
        ErrorKind::TokenRevoked,
        "a stale epoch is refused"
    );
    let for_a = mint(a.handle, 0);
    assert_eq!(e.verify_session_token(&for_a).unwrap().user_id, "a");
    e.rotate_key().unwrap();
    assert!(e.verify_session_token(&for_b).is_ok());
    e.retire_key("1").unwrap();
    for t in [&for_a, &for_b] {
        assert_eq!(kind(e.verify_session_token(t)), ErrorKind::TokenRevoked);
    }
}

#[test]
fn session_token_subjects_resolve_to_their_users() {
    let (e, _) = engine_with(Config {
        user_id_max_chars: 191,
        ..Config::default()
    });
    let long = "é".repeat(191);
    let ids = ["a", "bob", "Zoë", long.as_str(), "x-1_2"];
    for id in ids {
        e.create_user(NewUser::new(id, "")).unwrap();
    }
    e.rotate_key().unwrap();
    for (i, id) in ids.iter().enumerate() {
        let u = e.get_user(id).unwrap();
        assert_eq!(u.handle, i as u64 + 1);
        assert_eq!(e.get_user_by_handle(u.handle).unwrap(), u);
        let t = e.issue_session_token(id, None).unwrap();
        let len = t.as_str().len();
        assert!(
            (SESSION_TOKEN_MIN_LEN..=SESSION_TOKEN_MAX_LEN).contains(&len),
            "{len}"
        );
        assert_eq!(external_subject(&e, t.as_str()), u);
    }
    // The handle names one user forever: after a delete it finds nobody, even when the id is
    // taken again (the new user gets a new handle).
    let old = e.get_user("bob").unwrap();
    let t = e.issue_session_token("bob", None).unwrap();
    e.delete_user("bob").unwrap();
    let new = e.create_user(NewUser::new("bob", "")).unwrap();
    assert_ne!(new.handle, old.handle);
    assert_eq!(
        kind(e.get_user_by_handle(old.handle)),
        ErrorKind::UserNotFound
    );
    assert_eq!(
        external_subject(&e, e.issue_session_token("bob", None).unwrap().as_str()),
        new
    );
    assert!(e.verify_session_token(t.as_str()).is_err());
    for nobody in [0, 999, u64::MAX, u64::MAX / 64, 1 << 63] {
        assert_eq!(kind(e.get_user_by_handle(nobody)), ErrorKind::UserNotFound);
    }
    // Every way of reading a user reports the same handle.
    let page = e.list_users(&UserQuery::default()).unwrap();
    for u in &page.users {
        assert_eq!(e.get_user_by_handle(u.handle).unwrap(), *u);
    }
}

#[test]
fn deactivated_users_cannot_use_or_get_tokens_until_reactivated() {
    let (e, _) = engine();
    e.create_user(NewUser::new("a", "")).unwrap();
    let s = e.issue_session_token("a", None).unwrap();
    let a = e.issue_access_token("a", None).unwrap();
    e.deactivate_user("a").unwrap();
    assert_eq!(
        kind(e.verify_session_token(s.as_str())),
        ErrorKind::UserDeactivated
    );
    assert_eq!(
        kind(e.verify_access_token(a.token.as_str())),
        ErrorKind::UserDeactivated
    );
    assert_eq!(
        kind(e.issue_session_token("a", None)),
        ErrorKind::UserDeactivated
    );
    assert_eq!(
        kind(e.issue_access_token("a", None)),
        ErrorKind::UserDeactivated
    );
    assert_eq!(
        kind(e.authenticate("a", Some(s.as_str()))),
        ErrorKind::UserDeactivated
    );
    assert_eq!(e.drain_events(10)[0].kind, EventKind::UserDeactivated);
    e.reactivate_user("a").unwrap();
    assert!(e.verify_session_token(s.as_str()).is_ok());
    assert!(e.verify_access_token(a.token.as_str()).is_ok());
}

#[test]
fn authenticate_follows_sendbirds_rule() {
    let (strict, _) = engine();
    strict.create_user(NewUser::new("a", "")).unwrap();
    assert_eq!(
        kind(strict.authenticate("a", None)),
        ErrorKind::TokenRequired
    );

    let (e, _) = engine_with(Config {
        allow_id_only_login: true,
        ..Config::default()
    });
    e.create_user(NewUser::new("a", "")).unwrap();
    e.create_user(NewUser::new("b", "")).unwrap();
    assert_eq!(
        e.authenticate("a", None).unwrap().method,
        AuthMethod::UserIdOnly
    );
    let s = e.issue_session_token("a", None).unwrap();
    assert_eq!(kind(e.authenticate("a", None)), ErrorKind::TokenRequired);
    assert!(matches!(
        e.authenticate("a", Some(s.as_str())).unwrap().method,
        AuthMethod::SessionToken { .. }
    ));
    // Another user's genuine token is not a credential for b.
    assert_eq!(
        kind(e.authenticate("b", Some(s.as_str()))),
        ErrorKind::InvalidToken
    );
    let t = e.issue_access_token("b", None).unwrap();
    assert_eq!(
        e.authenticate("b", Some(t.token.as_str())).unwrap().method,
        AuthMethod::AccessToken {
            token_id: t.info.id
        }
    );
    assert_eq!(kind(e.authenticate("b", None)), ErrorKind::TokenRequired);
    assert_eq!(
        kind(e.authenticate("b", Some("garbage"))),
        ErrorKind::InvalidToken
    );
    assert_eq!(
        kind(e.authenticate("nobody", None)),
        ErrorKind::UserNotFound
    );
}

#[test]
fn secrets_never_appear_in_debug_output() {
    let (e, _) = engine();
    e.create_user(NewUser::new("a", "")).unwrap();
    let s = e.issue_session_token("a", None).unwrap();
    let a = e.issue_access_token("a", None).unwrap();
    let shown = format!("{e:?} {s:?} {a:?} {:?}", e.keys());
    assert!(!shown.contains(s.as_str()));
    assert!(!shown.contains(a.token.as_str()));
    assert!(!shown.contains(&a.token.as_str()[5..20]));
}

#[test]
fn event_queue_is_bounded() {
    let (e, _) = engine_with(Config {
        event_queue_capacity: 3,
        ..Config::default()
    });
    e.create_user(NewUser::new("a", "")).unwrap();
    for _ in 0..5 {
        e.revoke_sessions("a").unwrap();
    }
    assert_eq!(e.dropped_events(), 2);
    assert_eq!(e.drain_events(100).len(), 3);
}

#[test]
fn hammer_issue_verify_revoke_from_many_threads() {
    let (e, _) = engine_with(Config {
        access_tokens_per_user: 3,
        ..Config::default()
    });
    let users: Vec<String> = (0..8).map(|i| format!("user{i}")).collect();
    for u in &users {
        e.create_user(NewUser::new(u.as_str(), "")).unwrap();
    }
    let users = Arc::new(users);
    let threads: Vec<_> = (0..6)
        .map(|t| {
            let e = e.clone();
            let users = users.clone();
            std::thread::spawn(move || {
                for i in 0..300 {
                    let u = &users[(t + i) % users.len()];
                    let a = e.issue_access_token(u, None).unwrap();
                    // Never more than N valid, at any moment another thread may look.
                    assert!(e.list_access_tokens(u).unwrap().len() <= 3);
                    let s = e.issue_session_token(u, None).unwrap();
                    if i % 7 == 0 {
                        e.revoke_sessions(u).unwrap();
                        // Revocation returned: the token issued before it never verifies.
                        assert_eq!(
                            e.verify_session_token(s.as_str()).unwrap_err().kind(),
                            ErrorKind::TokenRevoked
                        );
                    }
                    if i % 5 == 0 {
                        e.revoke_access_token(u, a.info.id).ok();
                        assert!(e.verify_access_token(a.token.as_str()).is_err());
                    } else if let Ok(v) = e.verify_access_token(a.token.as_str()) {
                        assert_eq!(&v.user_id, u);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let mut ids = HashSet::new();
    for u in users.iter() {
        let list = e.list_access_tokens(u).unwrap();
        assert!(list.len() <= 3);
        for t in list {
            assert!(ids.insert(t.id), "token ids are unique");
        }
    }
}

mod props {
    use super::*;
    use proptest::prelude::*;

    fn user_id() -> impl Strategy<Value = String> {
        prop_oneof![
            "[A-Za-z0-9_-]{1,80}",
            proptest::collection::vec(
                prop_oneof![Just('é'), Just('😀'), Just('中'), Just('a'), Just('Ω')],
                1..=80
            )
            .prop_map(|v| v.into_iter().collect::<String>()),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn engine_session_tokens_stay_within_length_bounds(
            id in user_id(),
            ttl in 1_000i64..=365 * DAY_MS,
            revocations in 0usize..3,
            rotations in 0usize..3,
        ) {
            let (e, _) = engine();
            e.create_user(NewUser::new(id.as_str(), "")).unwrap();
            for _ in 0..revocations { e.revoke_sessions(&id).unwrap(); }
            for _ in 0..rotations { e.rotate_key().unwrap(); }
            let t = e.issue_session_token(&id, Some(T0 + ttl)).unwrap();
            let len = t.as_str().len();
            prop_assert!((SESSION_TOKEN_MIN_LEN..=SESSION_TOKEN_MAX_LEN).contains(&len), "{len}");
            prop_assert_eq!(e.verify_session_token(t.as_str()).unwrap().user_id, id.as_str());
            prop_assert_eq!(e.get_user_by_handle(1).unwrap().user_id, id);
        }

        #[test]
        fn arbitrary_input_is_invalid_never_a_panic(s in ".{0,300}", prefix in prop_oneof![Just(""), Just("tsat_"), Just("eyJhbGciOiJIUzI1NiIsImtpZCI6IjEifQ.")]) {
            let (e, _) = engine();
            e.create_user(NewUser::new("a", "")).unwrap();
            let input = format!("{prefix}{s}");
            prop_assert_eq!(e.verify_session_token(&input).unwrap_err().kind(), ErrorKind::InvalidToken);
            prop_assert_eq!(e.verify_access_token(&input).unwrap_err().kind(), ErrorKind::InvalidToken);
            prop_assert_eq!(e.authenticate("a", Some(&input)).unwrap_err().kind(), ErrorKind::InvalidToken);
            // Any id either passes the policy or is refused with a typed error.
            match e.create_user(NewUser::new(s.as_str(), "")) {
                Ok(u) => prop_assert_eq!(e.get_user(&u.user_id).unwrap(), u),
                Err(err) => prop_assert!(matches!(err.kind(), ErrorKind::InvalidUserId | ErrorKind::UserAlreadyExists)),
            }
        }

        #[test]
        fn flipping_any_character_of_an_engine_token_fails(pos in 0usize..200, c in proptest::char::range('!', '~')) {
            let (e, _) = engine();
            e.create_user(NewUser::new("a", "")).unwrap();
            let t = e.issue_session_token("a", None).unwrap();
            let s = t.as_str();
            let pos = pos % s.len();
            prop_assume!(s.as_bytes()[pos] != c as u8);
            let mut b = s.as_bytes().to_vec();
            b[pos] = c as u8;
            let err = e.verify_session_token(&String::from_utf8(b).unwrap()).unwrap_err();
            prop_assert_eq!(err.kind(), ErrorKind::InvalidToken);
        }
    }
}

#[test]
fn exported_limits_hold_at_their_edges() {
    assert_eq!(
        Config::default().access_tokens_per_user,
        ACCESS_TOKENS_PER_USER_DEFAULT
    );
    let valid = |c: Config| Engine::builder().config(c).in_memory().map(|_| ());
    let cap = |n| Config {
        access_tokens_per_user: n,
        ..Config::default()
    };
    assert!(valid(cap(ACCESS_TOKENS_PER_USER_LIMIT)).is_ok());
    assert_eq!(
        kind(valid(cap(ACCESS_TOKENS_PER_USER_LIMIT + 1))),
        ErrorKind::InvalidArgument
    );
    let ids = |n| Config {
        user_id_max_chars: n,
        ..Config::default()
    };
    assert_eq!(
        kind(valid(ids(USER_ID_MAX_CHARS_LIMIT + 1))),
        ErrorKind::InvalidArgument
    );
    let (e, _) = engine_with(ids(USER_ID_MAX_CHARS_LIMIT));
    let longest = "é".repeat(USER_ID_MAX_CHARS_LIMIT);
    e.create_user(NewUser::new(&longest, "")).unwrap();
    assert_eq!(
        kind(e.create_user(NewUser::new(format!("{longest}é"), ""))),
        ErrorKind::InvalidUserId
    );
    let s = e.issue_session_token(&longest, None).unwrap();
    assert!((SESSION_TOKEN_MIN_LEN..=SESSION_TOKEN_MAX_LEN).contains(&s.as_str().len()));
    // Public, so callers can tell how often a user's sessions can be revoked.
    let _: u32 = SESSION_EPOCH_MAX;
}

/// A scratch data directory, removed when dropped.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("tessera-it-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn durable_with_cap(dir: &TempDir, cap: usize) -> Engine {
    let mut attempts = 0;
    loop {
        let r = Engine::builder()
            .config(Config {
                access_tokens_per_user: cap,
                ..Config::default()
            })
            .open(&dir.0);
        match r {
            // A background compaction may hold the directory a moment after the drop.
            Err(e) if e.kind() == ErrorKind::Locked && attempts < 500 => {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            r => return r.unwrap(),
        }
    }
}

#[test]
fn a_lowered_access_token_limit_evicts_down_to_it_on_the_next_issue() {
    let dir = TempDir::new("lowered-cap");
    let old: Vec<IssuedAccessToken> = {
        let e = durable_with_cap(&dir, 5);
        e.create_user(NewUser::new("u", "")).unwrap();
        (0..5)
            .map(|_| e.issue_access_token("u", None).unwrap())
            .collect()
    };
    let e = durable_with_cap(&dir, 2);
    // Lowering the limit alone revokes nothing: the next issue does.
    assert_eq!(e.list_access_tokens("u").unwrap().len(), 5);
    let new = e.issue_access_token("u", None).unwrap();
    let ids = |ts: &[IssuedAccessToken]| ts.iter().map(|t| t.info.id).collect::<Vec<_>>();
    assert_eq!(new.evicted, ids(&old[..4]), "the 4 oldest, oldest first");
    let events = e.drain_events(100);
    assert_eq!(events.len(), 4);
    for (ev, t) in events.iter().zip(&old) {
        assert_eq!(ev.kind, EventKind::AccessTokenEvicted);
        assert_eq!(
            (ev.user_id.as_deref(), ev.token_id),
            (Some("u"), Some(t.info.id))
        );
    }
    let valid = |e: &Engine| {
        old.iter()
            .chain([&new])
            .filter(|t| e.verify_access_token(t.token.as_str()).is_ok())
            .map(|t| t.info.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(valid(&e), vec![old[4].info.id, new.info.id]);
    // The next issue evicts one, as always; and the eviction survives a reopen.
    let next = e.issue_access_token("u", None).unwrap();
    assert_eq!(next.evicted, vec![old[4].info.id]);
    drop(e);
    let e = durable_with_cap(&dir, 2);
    let listed: Vec<u64> = e
        .list_access_tokens("u")
        .unwrap()
        .iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(listed, vec![new.info.id, next.info.id]);
}

#[test]
fn a_limit_of_one_after_a_hundred_evicts_all_of_them() {
    let dir = TempDir::new("cap-100-to-1");
    let old: Vec<u64> = {
        let e = durable_with_cap(&dir, ACCESS_TOKENS_PER_USER_LIMIT);
        e.create_user(NewUser::new("u", "")).unwrap();
        (0..ACCESS_TOKENS_PER_USER_LIMIT)
            .map(|_| e.issue_access_token("u", None).unwrap().info.id)
            .collect()
    };
    let e = durable_with_cap(&dir, 1);
    let new = e.issue_access_token("u", None).unwrap();
    assert_eq!(new.evicted, old);
    assert_eq!(e.drain_events(1000).len(), ACCESS_TOKENS_PER_USER_LIMIT);
    let listed: Vec<u64> = e
        .list_access_tokens("u")
        .unwrap()
        .iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(listed, vec![new.info.id]);
}

#[test]
fn import_user_keeps_creation_time_and_state_and_checks_its_edges() {
    let (e, _clock) = engine();
    let full = NewUser {
        tags: vec!["t".into()],
        ..NewUser::new("old", "Old")
    };
    let u = e.import_user(full.clone(), 0, true).unwrap();
    assert_eq!((u.created_at_ms, u.is_active), (0, true));
    let u = e
        .import_user(NewUser::new("max", ""), i64::MAX, false)
        .unwrap();
    assert_eq!((u.created_at_ms, u.is_active), (i64::MAX, false));
    assert_eq!(e.get_user("max").unwrap().created_at_ms, i64::MAX);
    // A deactivated import is deactivated: no token for it, no event (no credential existed).
    assert_eq!(
        kind(e.issue_session_token("max", None)),
        ErrorKind::UserDeactivated
    );
    assert!(e.drain_events(10).is_empty());
    for bad in [-1, i64::MIN] {
        assert_eq!(
            kind(e.import_user(NewUser::new("neg", ""), bad, true)),
            ErrorKind::InvalidField
        );
    }
    assert_eq!(kind(e.get_user("neg")), ErrorKind::UserNotFound);
    // Every create rule still applies.
    assert_eq!(
        kind(e.import_user(full, 5, true)),
        ErrorKind::UserAlreadyExists
    );
    assert_eq!(
        kind(e.import_user(NewUser::new("long", "n".repeat(81)), 5, true)),
        ErrorKind::FieldTooLong
    );
    assert_eq!(e.user_count(), 2);
}
