//! Arbitrary bytes as session and access tokens: never a panic, always a typed error, and
//! never accepted (the engine's only key is random, so no forged input can verify).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use tessera::{Engine, ErrorKind, NewUser};

fn engine() -> &'static Engine {
    static E: OnceLock<Engine> = OnceLock::new();
    E.get_or_init(|| {
        let e = Engine::in_memory().unwrap();
        e.create_user(NewUser::new("a", "")).unwrap();
        e.issue_access_token("a", None).unwrap();
        e
    })
}

fuzz_target!(|data: &[u8]| {
    let e = engine();
    let text = String::from_utf8_lossy(data);
    assert_eq!(
        e.verify_session_token(&text).unwrap_err().kind(),
        ErrorKind::InvalidToken
    );
    assert_eq!(
        e.verify_access_token(&text).unwrap_err().kind(),
        ErrorKind::InvalidToken
    );
    assert!(e.authenticate("a", Some(&text)).is_err());
});
