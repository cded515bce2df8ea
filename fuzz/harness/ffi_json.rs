//! Every JSON document the C ABI accepts, through the C functions, on a live in-memory engine
//! in its starting state (so each input is reproducible alone).
//!
//! Input: the first byte picks the entry point, the rest is the document, passed as raw
//! bytes (not necessarily UTF-8, as a C caller could). Properties: never `TESSERA_PANIC`;
//! a failed call changes nothing — the whole state (user count, each user as JSON with its
//! devices) is compared with the starting state's; a successful one reads back exactly as it returned.
//!
//! Building the engine was a fifth of each execution, and most inputs fail, so an engine
//! whose call failed — and whose whole state was just checked to be the starting state — is
//! kept for the next input; one a call changed is dropped.

use std::ffi::c_char;
use std::ptr::null_mut;

use tessera::ffi::*;
use tessera::{NewUser, UserPatch};

const BASE_USER: &str = r#"{"user_id":"base","nickname":"Base","metadata":{"team":"red"},"tags":["a","b"],"discovery_keys":["base@example.com"]}"#;
const OTHER_USER: &str = r#"{"user_id":"other","nickname":"Other","tags":["b"]}"#;
const BASE_DEVICE: &str = r#"{"device_type":"ios","push_token":"push-base"}"#;
/// Fails to parse as a connection string, so `tessera_engine_open_postgres` parses and checks
/// the whole configuration (cluster options included) and then fails without any network.
const BAD_CONNINFO: &str = "tessera-fuzz: not a conninfo";

/// The entry points, by first byte (modulo their number).
pub const ENTRY_POINTS: [&str; 8] = [
    "tessera_user_create",
    "tessera_user_upsert",
    "tessera_user_update",
    "tessera_user_list",
    "tessera_device_add",
    "tessera_engine_open_in_memory_with_config",
    "tessera_engine_open_postgres",
    "rust NewUser/UserPatch",
];

extern "C" {
    // In the header, not re-exported by `tessera::ffi`: reached as a C caller reaches it.
    fn tessera_engine_open_postgres(
        conninfo: *const c_char,
        conninfo_len: usize,
        config_json: *const c_char,
        config_len: usize,
        out_engine: *mut *mut std::ffi::c_void,
    ) -> tessera_status;
}

fn ptr(s: &[u8]) -> *const c_char {
    s.as_ptr().cast()
}

fn check(st: tessera_status) -> tessera_status {
    assert!(st != tessera_status::TESSERA_PANIC, "TESSERA_PANIC");
    st
}

/// Takes a library string: its text, and frees it.
unsafe fn take(s: *mut tessera_string) -> String {
    assert!(!s.is_null());
    let text = unsafe {
        std::slice::from_raw_parts(tessera_string_ptr(s).cast::<u8>(), tessera_string_len(s))
    };
    let text = String::from_utf8(text.to_vec()).expect("library strings are UTF-8");
    unsafe { tessera_string_free(s) };
    text
}

struct Handle(*mut tessera_engine);

thread_local! {
    /// An engine in the starting state, kept from the last input whose call failed.
    static SPARE: std::cell::RefCell<Option<Handle>> = const { std::cell::RefCell::new(None) };
    /// [`Handle::dump`] of the engine [`fresh`] last returned, in its starting state (its
    /// users' creation times are its own).
    static START: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// An engine in the starting state: the spare one, or a new one.
fn fresh() -> Handle {
    if let Some(h) = SPARE.with(|s| s.borrow_mut().take()) {
        return h;
    }
    let h = Handle::new();
    let start = h.dump();
    START.with(|s| *s.borrow_mut() = start);
    h
}

/// After a failed call: the whole state must still be the starting state (the property), and
/// then the engine can serve the next input.
fn unchanged_and_kept(h: Handle) {
    START.with(|s| assert_eq!(h.dump(), *s.borrow(), "a failed call changed the state"));
    SPARE.with(|s| *s.borrow_mut() = Some(h));
}

impl Drop for Handle {
    fn drop(&mut self) {
        unsafe { tessera_engine_free(self.0) };
    }
}

impl Handle {
    fn new() -> Handle {
        let mut e = null_mut();
        assert_eq!(
            unsafe { tessera_engine_open_in_memory(&mut e) },
            tessera_status::TESSERA_OK
        );
        let h = Handle(e);
        for user in [BASE_USER, OTHER_USER] {
            let st =
                unsafe { tessera_user_create(h.0, ptr(user.as_bytes()), user.len(), null_mut()) };
            assert_eq!(st, tessera_status::TESSERA_OK);
        }
        let st = unsafe {
            tessera_device_add(
                h.0,
                ptr(b"base"),
                4,
                ptr(BASE_DEVICE.as_bytes()),
                BASE_DEVICE.len(),
                null_mut(),
            )
        };
        assert_eq!(st, tessera_status::TESSERA_OK);
        h
    }

    fn count(&self) -> usize {
        let mut n = 0;
        assert_eq!(
            unsafe { tessera_engine_user_count(self.0, &mut n) },
            tessera_status::TESSERA_OK
        );
        n
    }

    /// The user as JSON, or `None` when there is none.
    fn get(&self, id: &str) -> Option<String> {
        let mut out = null_mut();
        match check(unsafe { tessera_user_get(self.0, ptr(id.as_bytes()), id.len(), &mut out) }) {
            tessera_status::TESSERA_OK => Some(unsafe { take(out) }),
            _ => {
                assert!(out.is_null());
                None
            }
        }
    }

    /// The whole state: the number of users, and each of the two users (JSON) with its
    /// devices. A failed call that created a user changes the count; one that changed either
    /// user changes its JSON or devices.
    fn dump(&self) -> String {
        let mut all = self.count().to_string();
        for id in ["base", "other"] {
            all.push_str(&self.get(id).unwrap_or_default());
            all.push_str(&self.devices(id));
        }
        all
    }

    fn devices(&self, id: &str) -> String {
        let mut out = null_mut();
        let st = unsafe { tessera_device_list(self.0, ptr(id.as_bytes()), id.len(), &mut out) };
        assert_eq!(st, tessera_status::TESSERA_OK);
        unsafe { take(out) }
    }
}

fn user_id_of(json: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(json).expect("output is JSON");
    v["user_id"].as_str().expect("user_id").to_owned()
}

pub fn run(data: &[u8]) {
    let Some((&which, doc)) = data.split_first() else {
        return;
    };
    let (p, len) = (ptr(doc), doc.len());
    match usize::from(which) % ENTRY_POINTS.len() {
        0 => {
            let h = fresh();
            let mut out = null_mut();
            match check(unsafe { tessera_user_create(h.0, p, len, &mut out) }) {
                tessera_status::TESSERA_OK => {
                    let user = unsafe { take(out) };
                    assert_eq!(h.count(), 3);
                    assert_eq!(h.get(&user_id_of(&user)).as_deref(), Some(&*user));
                }
                _ => {
                    assert!(out.is_null());
                    unchanged_and_kept(h);
                }
            }
        }
        1 => {
            let h = fresh();
            let (mut out, mut created) = (null_mut(), false);
            match check(unsafe { tessera_user_upsert(h.0, p, len, &mut created, &mut out) }) {
                tessera_status::TESSERA_OK => {
                    let user = unsafe { take(out) };
                    assert_eq!(h.count(), if created { 3 } else { 2 });
                    assert_eq!(h.get(&user_id_of(&user)).as_deref(), Some(&*user));
                }
                _ => {
                    assert!(out.is_null());
                    unchanged_and_kept(h);
                }
            }
        }
        2 => {
            let h = fresh();
            let mut out = null_mut();
            match check(unsafe { tessera_user_update(h.0, ptr(b"base"), 4, p, len, &mut out) }) {
                tessera_status::TESSERA_OK => {
                    let user = unsafe { take(out) };
                    assert_eq!(h.get("base").as_deref(), Some(&*user));
                }
                _ => {
                    assert!(out.is_null());
                    unchanged_and_kept(h);
                }
            }
        }
        3 => {
            // A read: whether it succeeds or not, it changes nothing.
            let h = fresh();
            let mut out = null_mut();
            if check(unsafe { tessera_user_list(h.0, p, len, &mut out) })
                == tessera_status::TESSERA_OK
            {
                let page: serde_json::Value = serde_json::from_str(&unsafe { take(out) }).unwrap();
                assert!(page["users"].as_array().unwrap().len() <= 2);
                assert!(page["next_cursor"].is_null() || page["next_cursor"].is_string());
            } else {
                assert!(out.is_null());
            }
            unchanged_and_kept(h);
        }
        4 => {
            let h = fresh();
            let mut out = null_mut();
            let st = check(unsafe { tessera_device_add(h.0, ptr(b"base"), 4, p, len, &mut out) });
            if st == tessera_status::TESSERA_OK {
                let added: serde_json::Value = serde_json::from_str(&unsafe { take(out) }).unwrap();
                let token = added["device"]["push_token"].as_str().unwrap();
                let now: serde_json::Value = serde_json::from_str(&h.devices("base")).unwrap();
                assert!(now
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|d| d["push_token"].as_str() == Some(token)));
            } else {
                assert!(out.is_null());
                unchanged_and_kept(h);
            }
        }
        5 => {
            let mut e = null_mut();
            if check(unsafe { tessera_engine_open_in_memory_with_config(p, len, &mut e) })
                == tessera_status::TESSERA_OK
            {
                let h = Handle(e);
                let st = unsafe {
                    tessera_user_create(
                        h.0,
                        ptr(OTHER_USER.as_bytes()),
                        OTHER_USER.len(),
                        null_mut(),
                    )
                };
                check(st);
            } else {
                assert!(e.is_null());
            }
        }
        6 => {
            let mut e: *mut std::ffi::c_void = null_mut();
            let st = check(unsafe {
                tessera_engine_open_postgres(
                    ptr(BAD_CONNINFO.as_bytes()),
                    BAD_CONNINFO.len(),
                    p,
                    len,
                    &mut e,
                )
            });
            assert_ne!(st, tessera_status::TESSERA_OK);
            assert!(e.is_null());
        }
        _ => rust_api(doc),
    }
}

/// The Rust API with the serde forms the C ABI also reads: a typed error that changes
/// nothing, or a stored user that reads back identically.
fn rust_api(doc: &[u8]) {
    let e = tessera::Engine::in_memory().unwrap();
    e.create_user(NewUser::new("base", "")).unwrap();
    if let Ok(new) = serde_json::from_slice::<NewUser>(doc) {
        match e.create_user(new) {
            Ok(u) => assert_eq!(e.get_user(&u.user_id).unwrap(), u),
            Err(_) => assert_eq!(e.user_count(), 1),
        }
    }
    if let Ok(patch) = serde_json::from_slice::<UserPatch>(doc) {
        let before = e.get_user("base").unwrap();
        match e.update_user("base", &patch) {
            Ok(u) => assert_eq!(e.get_user("base").unwrap(), u),
            Err(_) => assert_eq!(e.get_user("base").unwrap(), before),
        }
    }
}
