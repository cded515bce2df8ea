//! Every JSON document the C ABI accepts, through the C functions, on a live in-memory engine
//! made per input (so each input is reproducible alone).
//!
//! Input: the first byte picks the entry point, the rest is the document, passed as raw
//! bytes (not necessarily UTF-8, as a C caller could). Properties: never `TESSERA_PANIC`;
//! a failed write changes nothing; a successful one reads back exactly as the call returned it.

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
            let h = Handle::new();
            let mut out = null_mut();
            match check(unsafe { tessera_user_create(h.0, p, len, &mut out) }) {
                tessera_status::TESSERA_OK => {
                    let user = unsafe { take(out) };
                    assert_eq!(h.count(), 3);
                    assert_eq!(h.get(&user_id_of(&user)).as_deref(), Some(&*user));
                }
                _ => {
                    assert!(out.is_null());
                    assert_eq!(h.count(), 2);
                }
            }
        }
        1 => {
            let h = Handle::new();
            let before = h.get("base");
            let (mut out, mut created) = (null_mut(), false);
            match check(unsafe { tessera_user_upsert(h.0, p, len, &mut created, &mut out) }) {
                tessera_status::TESSERA_OK => {
                    let user = unsafe { take(out) };
                    assert_eq!(h.count(), if created { 3 } else { 2 });
                    assert_eq!(h.get(&user_id_of(&user)).as_deref(), Some(&*user));
                }
                _ => {
                    assert!(out.is_null());
                    assert_eq!(h.count(), 2);
                    assert_eq!(h.get("base"), before);
                }
            }
        }
        2 => {
            let h = Handle::new();
            let before = h.get("base");
            let mut out = null_mut();
            match check(unsafe { tessera_user_update(h.0, ptr(b"base"), 4, p, len, &mut out) }) {
                tessera_status::TESSERA_OK => {
                    let user = unsafe { take(out) };
                    assert_eq!(h.get("base").as_deref(), Some(&*user));
                }
                _ => {
                    assert!(out.is_null());
                    assert_eq!(h.get("base"), before);
                }
            }
        }
        3 => {
            let h = Handle::new();
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
        }
        4 => {
            let h = Handle::new();
            let before = h.devices("base");
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
                assert_eq!(h.devices("base"), before);
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
