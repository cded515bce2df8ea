//! The durable engine end to end: every kind of write survives a reopen, compaction included;
//! no access token is ever written in plaintext; locking and salvage through `Engine`.

use std::fs;
use std::path::Path;

use super::atomic_file::test_dir::TestDir;
use crate::device::{DeviceType, NewDevice};
use crate::engine::Engine;
use crate::error::ErrorKind;
use crate::event::EventKind;
use crate::key_ring::StoredKeyRing;
use crate::mutation::Mutation;
use crate::user::{NewUser, UserPatch};

type State = (Vec<Mutation>, StoredKeyRing);
type Write = Box<dyn Fn(&Engine)>;

fn state(e: &Engine) -> State {
    let mut v = Vec::new();
    e.export(|m| {
        v.push(m.clone());
        Ok(())
    })
    .unwrap();
    (v, e.stored_keys())
}

fn png(n: u8) -> Vec<u8> {
    let mut v = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    v.push(n);
    v
}

/// Every file under `dir`, recursively.
fn all_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            out.extend(all_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn reopen_after_every_kind_of_write_shows_identical_state() {
    let dir = TestDir::new("engine-reopen");
    let writes: Vec<(&str, Write)> = vec![
        (
            "create",
            Box::new(|e| {
                let mut n = NewUser::new("alice", "Alice");
                n.tags = vec!["eng".into()];
                n.email = Some("alice@example.com".into());
                n.discovery_keys = vec!["alice-key".into()];
                n.metadata.insert("team".into(), "blue".into());
                e.create_user(n).unwrap();
            }),
        ),
        (
            "upsert",
            Box::new(|e| {
                e.upsert_user(NewUser::new("bob", "Bob")).unwrap();
            }),
        ),
        (
            "update",
            Box::new(|e| {
                let patch = UserPatch {
                    nickname: Some("Al".into()),
                    role: Some(Some("admin".into())),
                    ..Default::default()
                };
                e.update_user("alice", &patch).unwrap();
            }),
        ),
        (
            "deactivate",
            Box::new(|e| {
                e.deactivate_user("bob").unwrap();
            }),
        ),
        (
            "reactivate",
            Box::new(|e| {
                e.reactivate_user("bob").unwrap();
            }),
        ),
        (
            "profile image",
            Box::new(|e| {
                e.set_profile_image("alice", &png(1)).unwrap();
            }),
        ),
        (
            "add device",
            Box::new(|e| {
                e.add_device("alice", NewDevice::new(DeviceType::Ios, "push-1"))
                    .unwrap();
                e.add_device("bob", NewDevice::new(DeviceType::Android, "push-2"))
                    .unwrap();
            }),
        ),
        (
            "move device",
            Box::new(|e| {
                e.add_device("bob", NewDevice::new(DeviceType::Ios, "push-1"))
                    .unwrap();
            }),
        ),
        (
            "remove device",
            Box::new(|e| {
                e.remove_device("bob", "push-2").unwrap();
            }),
        ),
        (
            "issue access tokens",
            Box::new(|e| {
                e.issue_access_token("alice", Some("phone")).unwrap();
                e.issue_access_token("alice", None).unwrap();
                e.issue_access_token("bob", None).unwrap();
            }),
        ),
        (
            "revoke one access token",
            Box::new(|e| {
                let id = e.list_access_tokens("alice").unwrap()[0].id;
                e.revoke_access_token("alice", id).unwrap();
            }),
        ),
        (
            "revoke all access tokens",
            Box::new(|e| {
                e.revoke_all_access_tokens("bob").unwrap();
            }),
        ),
        (
            "revoke sessions",
            Box::new(|e| {
                e.revoke_sessions("alice").unwrap();
                e.revoke_sessions("alice").unwrap();
            }),
        ),
        (
            "rotate key",
            Box::new(|e| {
                e.rotate_key().unwrap();
            }),
        ),
        (
            "retire key",
            Box::new(|e| {
                let oldest = e.keys()[0].key_id.to_string();
                e.retire_key(&oldest).unwrap();
            }),
        ),
        (
            "revoke all sessions",
            Box::new(|e| {
                e.revoke_all_sessions().unwrap();
            }),
        ),
        (
            "delete",
            Box::new(|e| {
                e.create_user(NewUser::new("carol", "")).unwrap();
                e.delete_user("carol").unwrap();
            }),
        ),
        ("compact", Box::new(|e| e.compact().unwrap())),
        (
            "write after compaction",
            Box::new(|e| {
                e.create_user(NewUser::new("dave", "Dave")).unwrap();
            }),
        ),
    ];
    for (what, write) in &writes {
        let before = {
            let e = Engine::open(dir.path()).unwrap();
            write(&e);
            state(&e)
        };
        let e = Engine::open(dir.path()).unwrap();
        assert_eq!(state(&e), before, "after {what}");
    }

    let e = Engine::open(dir.path()).unwrap();
    // The image file is there and served; the users' indexes are rebuilt.
    let url = e.get_user("alice").unwrap().profile_url.unwrap();
    let hex = url.rsplit('/').next().unwrap().split('.').next().unwrap();
    assert_eq!(e.profile_image(hex).unwrap().bytes, png(1));
    assert_eq!(
        e.find_user_by_discovery_key("alice-key").unwrap().user_id,
        "alice"
    );
    assert_eq!(e.find_user_by_push_token("push-1").unwrap().user_id, "bob");
    // Handles are never reused: carol's was burnt, dave got the next one, and a new user after
    // a restart gets one after that.
    let Mutation::Counters { next_handle, .. } = state(&e).0[0] else {
        panic!("counters first")
    };
    e.create_user(NewUser::new("carol", "again")).unwrap();
    let Mutation::Counters {
        next_handle: after, ..
    } = state(&e).0[0]
    else {
        panic!()
    };
    assert_eq!(after, next_handle + 1);
}

#[test]
fn tokens_issued_before_a_restart_verify_after_it() {
    let dir = TestDir::new("engine-tokens");
    let (access, session) = {
        let e = Engine::open(dir.path()).unwrap();
        e.create_user(NewUser::new("u", "")).unwrap();
        let a = e.issue_access_token("u", None).unwrap();
        let s = e.issue_session_token("u", None).unwrap();
        (a.token, s)
    };
    let e = Engine::open(dir.path()).unwrap();
    assert_eq!(e.verify_access_token(access.as_str()).unwrap().user_id, "u");
    assert_eq!(
        e.verify_session_token(session.as_str()).unwrap().user_id,
        "u"
    );
    e.revoke_sessions("u").unwrap();
    drop(e);
    let e = Engine::open(dir.path()).unwrap();
    assert_eq!(
        e.verify_session_token(session.as_str()).unwrap_err().kind(),
        ErrorKind::TokenRevoked
    );
}

#[test]
fn retired_keys_survive_a_restart_and_older_key_files_still_open() {
    use super::key_file::{read_key_file, write_key_file, KEY_FILE};
    use crate::key_ring::StoredKey;
    use crate::persistence::embedded::decode_key_ring;

    let dir = TestDir::new("engine-retired-keys");
    let (t1, t2) = {
        let e = Engine::open(dir.path()).unwrap();
        e.create_user(NewUser::new("u", "")).unwrap();
        let t1 = e.issue_session_token("u", None).unwrap();
        e.rotate_key().unwrap();
        let t2 = e.issue_session_token("u", None).unwrap();
        e.retire_key("1").unwrap();
        (t1, t2)
    };
    {
        let e = Engine::open(dir.path()).unwrap();
        let kind = |t: &crate::SessionToken| e.verify_session_token(t.as_str()).unwrap_err().kind();
        assert_eq!(kind(&t1), ErrorKind::TokenRevoked);
        assert!(e.verify_session_token(t2.as_str()).is_ok());
        e.revoke_all_sessions().unwrap();
        assert_eq!(kind(&t2), ErrorKind::TokenRevoked);
    }
    let path = dir.path().join(KEY_FILE);
    let bytes = read_key_file(&path).unwrap().unwrap();
    let ring = decode_key_ring(&bytes).unwrap();
    assert_eq!((ring.keys.len(), ring.retired.len()), (1, 2));
    // The release before retired keys were kept reads the live keys of this file...
    let (keys, next): (Vec<StoredKey>, u32) = postcard::from_bytes(&bytes).unwrap();
    assert_eq!((&keys, next), (&ring.keys, ring.next_number));
    // ...and wrote files with only those two fields, which this release still opens.
    let older = postcard::to_stdvec(&(&ring.keys, ring.next_number)).unwrap();
    write_key_file(&path, &older).unwrap();
    let e = Engine::open(dir.path()).unwrap();
    assert_eq!(e.stored_keys().keys, ring.keys);
    assert_eq!(e.stored_keys().retired.len(), 0);
    // Without the retired secrets those tokens cannot be told from forgeries: invalid.
    for t in [&t1, &t2] {
        assert_eq!(
            e.verify_session_token(t.as_str()).unwrap_err().kind(),
            ErrorKind::InvalidToken
        );
    }
    let t3 = e.issue_session_token("u", None).unwrap();
    assert!(e.verify_session_token(t3.as_str()).is_ok());
}

#[test]
fn no_access_token_plaintext_is_written_anywhere() {
    let dir = TestDir::new("engine-plaintext");
    let mut secrets = Vec::new();
    {
        let e = Engine::open(dir.path()).unwrap();
        for i in 0..20 {
            let id = format!("user{i}");
            e.create_user(NewUser::new(id.as_str(), "")).unwrap();
            for _ in 0..2 {
                secrets.push(e.issue_access_token(&id, Some("label")).unwrap().token);
            }
            if i == 10 {
                e.compact().unwrap();
            }
        }
    }
    let files = all_files(dir.path());
    assert!(files.len() >= 4, "{files:?}");
    for f in files {
        let bytes = fs::read(&f).unwrap();
        for t in &secrets {
            let text = t.as_str();
            // The whole token, and its random part alone (any encoding of it would contain
            // 16 consecutive characters of it).
            let random = &text[text.len() - 30..text.len() - 14];
            for needle in [text, random] {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                    "{} contains a plaintext access token",
                    f.display()
                );
            }
        }
    }
}

#[test]
fn a_second_engine_on_the_same_directory_is_locked() {
    let dir = TestDir::new("engine-lock");
    let e = Engine::open(dir.path()).unwrap();
    let err = Engine::open(dir.path()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Locked);
    drop(e);
    Engine::open(dir.path()).unwrap();
}

#[test]
fn damage_fails_the_open_and_salvage_serves_what_precedes_it() {
    let dir = TestDir::new("engine-salvage");
    {
        let e = Engine::open(dir.path()).unwrap();
        for id in ["a", "b", "c"] {
            e.create_user(NewUser::new(id, "")).unwrap();
        }
    }
    let journal = dir.path().join(super::journal_name(1));
    let mut bytes = fs::read(&journal).unwrap();
    // Damage the second batch's payload (one batch per write: "a", "b", "c" in order), with a
    // valid batch after it.
    let second = super::batch::tests::batch_offsets(&bytes)[1];
    bytes[second + super::batch::BATCH_HEADER_LEN + 12] ^= 0x55;
    fs::write(&journal, &bytes).unwrap();

    let err = Engine::open(dir.path()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    assert!(
        err.message().contains(&format!("byte offset {second}")),
        "{err}"
    );

    let (e, stopped) = Engine::open_salvage(dir.path()).unwrap();
    assert_eq!(stopped.unwrap().kind(), ErrorKind::Corrupt);
    assert_eq!(e.user_count(), 1);
    e.get_user("a").unwrap();
    assert_eq!(
        e.create_user(NewUser::new("z", "")).unwrap_err().kind(),
        ErrorKind::ReadOnly
    );
    assert_eq!(e.rotate_key().unwrap_err().kind(), ErrorKind::ReadOnly);
    assert_eq!(
        e.set_profile_image("a", &png(2)).unwrap_err().kind(),
        ErrorKind::ReadOnly
    );
    assert_eq!(e.user_count(), 1, "a refused write changes nothing");
    drop(e);
    assert_eq!(fs::read(&journal).unwrap(), bytes, "salvage writes nothing");
}

#[test]
fn automatic_compaction_runs_in_the_background_and_loses_nothing() {
    let dir = TestDir::new("engine-auto-compact");
    super::set_compaction_min_journal_bytes_for_tests(4096);
    {
        let e = Engine::builder()
            .sync_mode(super::SyncMode::Relaxed(std::time::Duration::from_millis(
                2,
            )))
            .open(dir.path())
            .unwrap();
        for i in 0..400 {
            e.create_user(NewUser::new(format!("user{i}"), "someone"))
                .unwrap();
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !fs::read_dir(dir.path()).unwrap().any(|f| {
            f.unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("snapshot-")
        }) {
            assert!(
                std::time::Instant::now() < deadline,
                "no automatic compaction"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
    // Dropping the engine waited for any compaction still running: no retry needed.
    let e = Engine::open(dir.path()).unwrap();
    assert_eq!(e.user_count(), 400);
}

#[test]
fn a_record_that_passes_its_checksum_but_does_not_apply_is_located() {
    let dir = TestDir::new("engine-undecodable");
    drop(Engine::open(dir.path()).unwrap());
    let offset = {
        let (store, _) = super::Store::open(dir.path(), false, |_, _| Ok(())).unwrap();
        let at = super::batch::BATCHES_START
            + store.journal_bytes()
            + super::batch::BATCH_HEADER_LEN as u64;
        store.wait(store.append(b"\xff\xff\xff").unwrap()).unwrap();
        at
    };
    let err = Engine::open(dir.path()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    assert!(err.message().contains(&super::journal_name(1)), "{err}");
    assert!(
        err.message().contains(&format!("byte offset {offset}")),
        "{err}"
    );
    assert!(err.message().contains("does not decode"), "{err}");
}

#[test]
fn cutting_the_journal_anywhere_in_its_last_record_keeps_every_earlier_user() {
    let dir = TestDir::new("engine-torn");
    {
        let e = Engine::open(dir.path()).unwrap();
        for id in ["a", "b", "c"] {
            e.create_user(NewUser::new(id, "someone")).unwrap();
        }
    }
    let journal = dir.path().join(super::journal_name(1));
    let full = fs::read(&journal).unwrap();
    // Where the last batch (the last write, one record) starts.
    let last = *super::batch::tests::batch_offsets(&full).last().unwrap();
    for cut in last..full.len() {
        fs::write(&journal, &full[..cut]).unwrap();
        let e = Engine::open(dir.path()).unwrap();
        assert_eq!(e.user_count(), 2, "cut at {cut}");
        assert!(e.get_user("c").is_err());
        e.get_user("b").unwrap();
        // The cut is reported, so an operator can tell a torn tail from a clean end.
        let torn = (cut - last) as u64;
        let stats = e.store_stats();
        assert_eq!(
            (stats.torn_tail_bytes, stats.torn_tail_records),
            (torn, u64::from(torn > 0)),
            "cut at {cut}"
        );
        let kinds: Vec<EventKind> = e.drain_events(100).iter().map(|ev| ev.kind).collect();
        let want = if torn > 0 {
            vec![EventKind::StoreTornTail]
        } else {
            vec![]
        };
        assert_eq!(kinds, want, "cut at {cut}");
        drop(e);
        // The tail is gone from the disk: the next open finds a clean end.
        let e = Engine::open(dir.path()).unwrap();
        assert_eq!(e.store_stats().torn_tail_bytes, 0, "cut at {cut}");
        assert!(e.drain_events(100).is_empty(), "cut at {cut}");
    }
    // A salvage open changes nothing on disk, but says what it did not load.
    fs::write(&journal, &full[..full.len() - 1]).unwrap();
    let (e, stopped) = Engine::open_salvage(dir.path()).unwrap();
    assert!(stopped.is_none());
    assert_eq!(e.user_count(), 2);
    let stats = e.store_stats();
    assert_eq!(
        (stats.torn_tail_bytes, stats.torn_tail_records),
        ((full.len() - 1 - last) as u64, 1)
    );
    assert_eq!(e.drain_events(100)[0].kind, EventKind::StoreTornTail);
}

#[test]
fn compaction_collects_images_no_user_refers_to_and_keeps_the_rest() {
    let dir = TestDir::new("engine-blob-gc");
    crate::persistence::embedded::set_blob_grace_for_tests(std::time::Duration::ZERO);
    let e = Engine::open(dir.path()).unwrap();
    e.create_user(NewUser::new("a", "")).unwrap();
    e.create_user(NewUser::new("b", "")).unwrap();
    e.set_profile_image("a", &png(1)).unwrap(); // replaced below: collectable
    e.set_profile_image("a", &png(2)).unwrap();
    e.set_profile_image("b", &png(3)).unwrap(); // b deleted below: collectable
    e.delete_user("b").unwrap();
    let images = dir.path().join(super::blobs::IMAGES_DIR);
    assert_eq!(fs::read_dir(&images).unwrap().count(), 3);
    std::thread::sleep(std::time::Duration::from_millis(20));
    e.compact().unwrap();
    assert_eq!(fs::read_dir(&images).unwrap().count(), 1);
    let url = e.get_user("a").unwrap().profile_url.unwrap();
    let hex = url.rsplit('/').next().unwrap().split('.').next().unwrap();
    assert_eq!(e.profile_image(hex).unwrap().bytes, png(2));

    // With the normal grace period, a just-written unreferenced image is spared.
    crate::persistence::embedded::set_blob_grace_for_tests(std::time::Duration::from_secs(600));
    e.set_profile_image("a", &png(4)).unwrap();
    e.compact().unwrap();
    assert_eq!(fs::read_dir(&images).unwrap().count(), 2);
}

/// A PNG-looking image whose bytes (and so address) are fixed by `tag`.
fn png_tagged(tag: &str) -> Vec<u8> {
    let mut v = png(0);
    v.extend_from_slice(tag.as_bytes());
    v
}

fn image_of(e: &Engine, user: &str) -> Vec<u8> {
    let url = e.get_user(user).unwrap().profile_url.unwrap();
    let hex = url.rsplit('/').next().unwrap().split('.').next().unwrap();
    e.profile_image(hex).unwrap().bytes
}

#[test]
fn uploads_racing_compactions_never_fail_and_every_image_survives() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    const UPLOADERS: usize = 4;
    const UPLOADS: usize = 400;
    const SHARED: usize = 3;
    // Upload `i` of uploader `t`: every other one has content other uploaders store too.
    let upload = |t: usize, i: usize| {
        if i.is_multiple_of(2) {
            png_tagged(&format!("{t}/{i}"))
        } else {
            png_tagged(&format!("shared {}", (i / 2) % SHARED))
        }
    };
    let dir = TestDir::new("engine-upload-race");
    let e = Engine::open(dir.path()).unwrap();
    for t in 0..UPLOADERS {
        e.create_user(NewUser::new(format!("u{t}"), "")).unwrap();
    }
    // Images every uploader stores again below, left over from a user who moved on an hour
    // ago: unreferenced and old, so a racing compaction may collect each of them just as an
    // upload of the same content finds it and refreshes it.
    e.create_user(NewUser::new("old", "")).unwrap();
    for s in 0..SHARED {
        e.set_profile_image("old", &png_tagged(&format!("shared {s}")))
            .unwrap();
    }
    e.set_profile_image("old", &png_tagged("old's last"))
        .unwrap();
    let an_hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    for s in 0..SHARED {
        let sha: [u8; 32] =
            <sha2::Sha256 as sha2::Digest>::digest(png_tagged(&format!("shared {s}"))).into();
        let path = dir
            .path()
            .join(super::blobs::IMAGES_DIR)
            .join(super::frame::hex(&sha));
        fs::OpenOptions::new()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(an_hour_ago)
            .unwrap();
    }

    let stop = AtomicBool::new(false);
    let compactions = AtomicU64::new(0);
    let failures = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                if let Err(err) = e.compact() {
                    failures.lock().unwrap().push(format!("compact: {err}"));
                }
                compactions.fetch_add(1, Ordering::Relaxed);
            }
        });
        let uploaders: Vec<_> = (0..UPLOADERS)
            .map(|t| {
                let (e, failures) = (&e, &failures);
                s.spawn(move || {
                    let user = format!("u{t}");
                    for i in 0..UPLOADS {
                        if let Err(err) = e.set_profile_image(&user, &upload(t, i)) {
                            failures.lock().unwrap().push(format!("{user} #{i}: {err}"));
                        }
                    }
                })
            })
            .collect();
        for u in uploaders {
            u.join().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
    });
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} failures: {failures:?}",
        failures.len()
    );
    assert!(compactions.load(Ordering::Relaxed) > 1);

    drop(e);
    let e = Engine::open(dir.path()).unwrap();
    for t in 0..UPLOADERS {
        assert_eq!(
            image_of(&e, &format!("u{t}")),
            upload(t, UPLOADS - 1),
            "u{t}"
        );
    }
    assert_eq!(image_of(&e, "old"), png_tagged("old's last"));
}

/// The newest snapshot generation in `dir`.
fn newest_snapshot(dir: &Path) -> Option<u64> {
    fs::read_dir(dir)
        .unwrap()
        .filter_map(|f| {
            let name = f.unwrap().file_name().into_string().unwrap();
            super::parse_generation(&name, super::SNAPSHOT_PREFIX, super::SNAPSHOT_SUFFIX)
        })
        .max()
}

#[test]
fn reopening_right_after_a_drop_never_finds_the_directory_locked() {
    const CYCLES: u64 = 1000;
    let dir = TestDir::new("engine-reopen-loop");
    // Every write whose journal has outgrown the snapshot starts a background compaction.
    super::set_compaction_min_journal_bytes_for_tests(0);
    let relaxed = || {
        Engine::builder().sync_mode(super::SyncMode::Relaxed(std::time::Duration::from_secs(60)))
    };
    drop(relaxed().open(dir.path()).unwrap());
    let first = Engine::open(dir.path()).unwrap();
    first.create_user(NewUser::new("u", "")).unwrap();
    drop(first);
    let before = newest_snapshot(dir.path()).unwrap_or(0);
    for cycle in 0..CYCLES {
        let e = relaxed()
            .open(dir.path())
            .unwrap_or_else(|err| panic!("cycle {cycle}: {err}"));
        // Two updates of a long nickname outgrow a snapshot of one user (a snapshot has 48
        // bytes of header and footer, a record 8 of framing): a compaction starts by the
        // second, and the engine is dropped while it runs.
        for i in 0..3 {
            let patch = UserPatch {
                nickname: Some(format!("cycle {cycle}.{i} {}", "n".repeat(60))),
                ..Default::default()
            };
            e.update_user("u", &patch).unwrap();
        }
        drop(e);
    }
    let e = Engine::open(dir.path()).unwrap();
    assert_eq!(
        e.get_user("u").unwrap().nickname,
        format!("cycle {}.2 {}", CYCLES - 1, "n".repeat(60))
    );
    // Every cycle compacted (each compaction is a new generation).
    let after = newest_snapshot(dir.path()).unwrap();
    assert!(after >= before + CYCLES, "{before} -> {after}");
}

/// A journal written before issues could evict several tokens holds the old record form; it
/// must replay exactly as it did (golden bytes: `mutation::tests::OLD_ISSUED`).
#[test]
fn a_journal_record_of_the_old_issue_form_replays() {
    let dir = TestDir::new("engine-old-issue");
    let (first, second) = {
        let e = Engine::open(dir.path()).unwrap();
        e.create_user(NewUser::new("u", "")).unwrap();
        let first = e.issue_access_token("u", None).unwrap();
        let second = e.issue_access_token("u", None).unwrap();
        (first, second)
    };
    // The golden record: user handle 1 gets token 3 and loses token 1.
    assert_eq!((first.info.id, second.info.id), (1, 2));
    {
        let (store, _) = super::Store::open(dir.path(), false, |_, _| Ok(())).unwrap();
        let old = crate::mutation::tests::OLD_ISSUED;
        store.wait(store.append(old).unwrap()).unwrap();
    }
    let e = Engine::open(dir.path()).unwrap();
    let tokens = e.list_access_tokens("u").unwrap();
    let ids: Vec<u64> = tokens.iter().map(|t| t.id).collect();
    assert_eq!(ids, vec![2, 3]);
    assert_eq!(tokens[1].label.as_deref(), Some("phone"));
    assert_eq!(tokens[1].created_at_ms, 1_700_000_000_000);
    assert!(e.verify_access_token(first.token.as_str()).is_err());
    assert!(e.verify_access_token(second.token.as_str()).is_ok());
    // The token-id counter moved past the replayed token.
    assert_eq!(e.issue_access_token("u", None).unwrap().info.id, 4);
}

/// A closed data directory after every kind of secret-bearing write, compaction included:
/// the session tokens issued, every key secret the ring ever held, and one user's e-mail.
fn directory_after_secret_bearing_writes(name: &str) -> (TestDir, Vec<String>, Vec<[u8; 32]>) {
    let dir = TestDir::new(name);
    let mut sessions = Vec::new();
    let mut secrets = Vec::new();
    {
        let e = Engine::open(dir.path()).unwrap();
        for i in 0..6 {
            let id = format!("user{i}");
            let mut n = NewUser::new(id.as_str(), "");
            n.email = Some(format!("{id}@clear.example"));
            e.create_user(n).unwrap();
            e.issue_access_token(&id, None).unwrap();
            sessions.push(
                e.issue_session_token(&id, None)
                    .unwrap()
                    .as_str()
                    .to_owned(),
            );
            if i == 2 {
                e.set_profile_image(&id, &png(7)).unwrap();
                e.compact().unwrap();
            }
            if i % 2 == 1 {
                // The old key is retired after the rotation: its secret stays in the ring.
                let old = e.keys()[0].key_id.to_string();
                secrets.push(*e.export_key(&old).unwrap().as_bytes());
                e.rotate_key().unwrap();
                e.retire_key(&old).unwrap();
            }
        }
        let active = e.keys()[0].key_id.to_string();
        secrets.push(*e.export_key(&active).unwrap().as_bytes());
        e.revoke_sessions("user0").unwrap();
    }
    (dir, sessions, secrets)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// docs/SECURITY.md, "What is stored": user records are in clear (the scan finds them, which
/// also shows it would find a token), session tokens are stored nowhere.
#[test]
fn user_records_are_in_clear_and_no_session_token_is_written_anywhere() {
    let (dir, sessions, _) = directory_after_secret_bearing_writes("engine-no-sessions");
    let files = all_files(dir.path());
    let everything: Vec<Vec<u8>> = files.iter().map(|f| fs::read(f).unwrap()).collect();
    assert!(
        everything
            .iter()
            .any(|b| contains(b, b"user5@clear.example")),
        "user records are expected in clear in {files:?}"
    );
    for (f, bytes) in files.iter().zip(&everything) {
        for t in &sessions {
            // The whole token, and its signature alone (the part only the key can make).
            let signature = &t[t.rfind('.').unwrap() + 1..];
            for needle in [t.as_str(), signature] {
                assert!(
                    !contains(bytes, needle.as_bytes()),
                    "{} contains a session token",
                    f.display()
                );
            }
        }
    }
}

/// docs/SECURITY.md, "Keys": every signing-key secret, live or retired, is in the `keys` file
/// and in no other file, so journals, snapshots and images can be copied without them.
#[test]
fn key_secrets_are_written_only_to_the_key_file() {
    let (dir, _, secrets) = directory_after_secret_bearing_writes("engine-keys-only");
    assert_eq!(secrets.len(), 4, "three retired keys and the active one");
    let key_file = dir.path().join(super::key_file::KEY_FILE);
    for f in all_files(dir.path()) {
        let bytes = fs::read(&f).unwrap();
        for s in &secrets {
            assert_eq!(
                contains(&bytes, s),
                f == key_file,
                "{}: a key secret must be in the key file and nowhere else",
                f.display()
            );
        }
    }
}

/// docs/SECURITY.md, "Trust boundaries": every file Tessera creates in a data directory
/// (journals, snapshots, images, keys, LOCK) is readable and writable by its owner only.
#[cfg(unix)]
#[test]
fn every_file_in_the_data_directory_is_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, _, _) = directory_after_secret_bearing_writes("engine-owner-only");
    let files = all_files(dir.path());
    for name in ["keys", "LOCK", "journal-", "snapshot-", "images"] {
        assert!(
            files.iter().any(|f| f.to_string_lossy().contains(name)),
            "no {name} file in {files:?}"
        );
    }
    for f in files {
        let mode = fs::metadata(&f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "{} has mode {mode:o}", f.display());
    }
}

#[test]
fn minimal_user_records_take_at_least_min_stored_user_bytes() {
    use crate::engine::MIN_STORED_USER_BYTES;
    use crate::user::UserRecord;
    let record = || UserRecord {
        id: "a".into(),
        nickname: "".into(),
        profile_url: None,
        created_at_ms: 0,
        active: false,
        extra: None,
    };
    for m in [
        Mutation::UserCreated {
            handle: 1,
            record: record(),
        },
        Mutation::UserRestored {
            handle: 1,
            record: record(),
            epoch: 0,
            token_required: false,
            tokens: Vec::new(),
            devices: Vec::new(),
        },
    ] {
        let bytes = postcard::to_allocvec(&m).unwrap();
        assert!(
            bytes.len() as u64 >= MIN_STORED_USER_BYTES,
            "{m:?}: {bytes:?}"
        );
    }
}

#[test]
fn a_forged_counter_presizes_only_what_the_replayed_bytes_can_hold() {
    let e = Engine::in_memory().unwrap();
    // 4 KiB of files can hold at most 512 users: a counter claiming 5 billion users must not presize
    // the id index for more (it used to reserve 2^21 users, ~60 MB, for any file).
    e.set_presize_budget(4096);
    e.replay(Mutation::Counters {
        next_handle: 5_000_000_000,
        next_token_id: 1,
    })
    .unwrap();
    e.set_presize_budget(0);
    let capacity = e.id_index_capacity();
    assert!(capacity <= 4 * 4096, "presized for {capacity} users");
    // The counter itself is kept exactly: only the hint is bounded (the next user gets the
    // handle after it).
    assert_eq!(
        e.create_user(NewUser::new("x", "")).unwrap().handle,
        5_000_000_000
    );
    // And a real budget still presizes: 1 M users' worth of bytes reserves ≥ 100 k slots.
    let e = Engine::in_memory().unwrap();
    e.set_presize_budget(100_000 * MIN);
    e.replay(Mutation::Counters {
        next_handle: 100_001,
        next_token_id: 1,
    })
    .unwrap();
    assert!(e.id_index_capacity() >= 100_000);
}

const MIN: u64 = crate::engine::MIN_STORED_USER_BYTES;

/// One writer's step in the race below: a pure function of the writer's generator, so a
/// failing run can be replayed from its seed.
fn racing_write(e: &Engine, rng: &mut u64, writer: usize) {
    let mut next = || {
        *rng = rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) as usize
    };
    // Ids are the writer's own; discovery keys and push tokens come from pools every writer
    // draws from, so they move between users of different writers.
    let id = format!("w{writer}-{}", next() % 40);
    let key = format!("key{}", next() % 30);
    let push = format!("push{}", next() % 30);
    let result = match next() % 12 {
        0 | 1 => {
            let mut n = NewUser::new(id.as_str(), "new");
            n.discovery_keys = vec![key];
            e.create_user(n).map(|_| ())
        }
        2 => e.delete_user(&id),
        3 => {
            let patch = UserPatch {
                nickname: Some(format!("n{}", next() % 1000)),
                discovery_keys: Some(vec![key]),
                ..Default::default()
            };
            e.update_user(&id, &patch).map(|_| ())
        }
        4 | 5 => e.issue_access_token(&id, None).map(|_| ()),
        6 => match e.list_access_tokens(&id) {
            Ok(tokens) if !tokens.is_empty() => {
                let t = tokens[next() % tokens.len()].id;
                e.revoke_access_token(&id, t)
            }
            Ok(_) => Ok(()),
            Err(err) => Err(err),
        },
        7 => e.revoke_all_access_tokens(&id).map(|_| ()),
        8 => e.revoke_sessions(&id),
        9 => e
            .add_device(&id, NewDevice::new(DeviceType::Android, push))
            .map(|_| ()),
        10 => e.remove_device(&id, &push).map(|_| ()),
        _ => match next() % 3 {
            0 => e.deactivate_user(&id).map(|_| ()),
            1 => e.reactivate_user(&id).map(|_| ()),
            _ => e
                .set_profile_image(&id, &png_tagged(&format!("{}", next() % 5)))
                .map(|_| ()),
        },
    };
    if let Err(err) = result {
        // What a racing writer can legitimately be told; anything else is a bug.
        let expected = [
            ErrorKind::UserNotFound,
            ErrorKind::UserAlreadyExists,
            ErrorKind::DiscoveryKeyTaken,
            ErrorKind::DeviceNotFound,
            ErrorKind::TokenNotFound,
            ErrorKind::UserDeactivated,
        ];
        assert!(expected.contains(&err.kind()), "writer {writer}: {err}");
    }
}

/// Writers create, change and delete users, issue and revoke tokens, and move push tokens
/// and discovery keys between users while compactions run back to back, so that writes land
/// before, during and after each copy, on users it has read and users it has not. The
/// directory then reopens to exactly the engine's final state — twice: as left, and after one
/// more compaction. A snapshot holding anything but the state at its journal switch fails
/// this (a record replayed on top of its own effect, or naming a user the snapshot dropped).
#[test]
fn writes_racing_compactions_reopen_to_exactly_the_final_state() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    const WRITERS: usize = 3;
    const COMPACTIONS: usize = 12;
    let dir = TestDir::new("engine-compaction-race");
    let e = Engine::builder()
        .sync_mode(super::SyncMode::Relaxed(std::time::Duration::from_millis(
            1,
        )))
        .open(dir.path())
        .unwrap();
    // Users the writers never touch first, so that each copy takes a while to reach the
    // writers' users, which come next (and are deleted and re-created as the race goes on).
    for i in 0..2000 {
        e.create_user(NewUser::new(format!("still{i}"), "x"))
            .unwrap();
    }
    for w in 0..WRITERS {
        for i in 0..40 {
            e.create_user(NewUser::new(format!("w{w}-{i}"), "first"))
                .unwrap();
        }
    }
    // The writers run until the last compaction has finished, so every snapshot, the last
    // one included (the one a reopen reads), is copied while they write.
    let done = AtomicBool::new(false);
    let steps = AtomicU64::new(0);
    let saved_before = crate::engine::saved_for_tests();
    std::thread::scope(|s| {
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (e, done, steps) = (&e, &done, &steps);
                s.spawn(move || {
                    let mut rng = 0x5EED_0000 + w as u64;
                    while !done.load(Ordering::Relaxed) {
                        racing_write(e, &mut rng, w);
                        steps.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for _ in 0..COMPACTIONS {
            e.compact().unwrap();
        }
        done.store(true, Ordering::Relaxed);
        for w in writers {
            w.join().unwrap();
        }
    });
    let steps = steps.into_inner();
    assert!(steps > 100, "only {steps} writes raced the compactions");
    assert!(
        crate::engine::saved_for_tests() > saved_before,
        "no write ever hit a user a copy had not read yet"
    );
    let want = state(&e);
    drop(e);
    let e = Engine::open(dir.path()).unwrap();
    assert!(state(&e) == want, "reopened state differs");
    e.compact().unwrap();
    drop(e);
    let e = Engine::open(dir.path()).unwrap();
    assert!(state(&e) == want, "state differs after one more compaction");
}

/// A profile image that no user named at the cut of a compaction, named by a record written
/// while the copy runs (pointing at the stored image without uploading it again, so its file
/// time is old), is not collected; an image no one names is.
#[cfg(feature = "fault-injection")]
#[test]
fn an_image_named_while_the_copy_runs_is_not_collected() {
    use crate::fault::CompactionStage;
    use crate::fault::{compaction_waiting_at, hold_compaction, release_compaction};
    let dir = TestDir::new("engine-image-after-cut");
    let e = Engine::open(dir.path()).unwrap();
    e.create_user(NewUser::new("a", "")).unwrap();
    e.create_user(NewUser::new("b", "")).unwrap();
    let sha =
        |tag: &str| -> [u8; 32] { <sha2::Sha256 as sha2::Digest>::digest(png_tagged(tag)).into() };
    for tag in ["named later", "never again", "current"] {
        e.set_profile_image("a", &png_tagged(tag)).unwrap();
    }
    hold_compaction(dir.path(), CompactionStage::Switched);
    std::thread::scope(|s| {
        let compaction = s.spawn(|| {
            crate::persistence::embedded::set_blob_grace_for_tests(std::time::Duration::ZERO);
            e.compact()
        });
        while compaction_waiting_at() != Some(CompactionStage::Switched) {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let url = format!(
            "https://cdn.example/{}.png",
            super::frame::hex(&sha("named later"))
        );
        let patch = UserPatch {
            profile_url: Some(Some(url)),
            ..Default::default()
        };
        e.update_user("b", &patch).unwrap();
        release_compaction();
        compaction.join().unwrap().unwrap();
    });
    let stored = |tag: &str| {
        e.profile_image(&super::frame::hex(&sha(tag)))
            .map(|i| i.bytes)
            .ok()
    };
    assert_eq!(stored("named later"), Some(png_tagged("named later")));
    assert_eq!(stored("current"), Some(png_tagged("current")));
    assert_eq!(stored("never again"), None, "collection ran");
}
