//! Arbitrary JSON as a new user and as a patch: either a typed error that changes nothing, or
//! a stored user that reads back identically.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera::{Engine, NewUser, UserPatch};

fuzz_target!(|data: &[u8]| {
    let e = Engine::in_memory().unwrap();
    e.create_user(NewUser::new("base", "")).unwrap();
    if let Ok(new) = serde_json::from_slice::<NewUser>(data) {
        match e.create_user(new) {
            Ok(u) => assert_eq!(e.get_user(&u.user_id).unwrap(), u),
            Err(_) => assert_eq!(e.user_count(), 1),
        }
    }
    if let Ok(patch) = serde_json::from_slice::<UserPatch>(data) {
        let before = e.get_user("base").unwrap();
        match e.update_user("base", &patch) {
            Ok(u) => assert_eq!(e.get_user("base").unwrap(), u),
            Err(_) => assert_eq!(e.get_user("base").unwrap(), before),
        }
    }
});
