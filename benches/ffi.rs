//! What the C ABI costs: session-token and access-token verification through the
//! `extern "C"` functions against the Rust API, on the same engine in the same run.
//!
//! `cargo bench --bench ffi`; results are recorded in docs/BENCHMARKS.md.

use std::hint::black_box;
use std::mem::MaybeUninit;

use criterion::{criterion_group, criterion_main, Criterion};
use tessera::ffi::{
    tessera_access_token_verify, tessera_engine, tessera_engine_free,
    tessera_engine_open_in_memory, tessera_session_token_issue_default,
    tessera_session_token_verify, tessera_status, tessera_verified_access_token,
    tessera_verified_session, TESSERA_SESSION_TOKEN_MAX_LEN,
};
use tessera::{Engine, NewUser};

/// An engine opened through the C ABI, and a Rust `Engine` with the same kind of state.
struct Fixture {
    c_engine: *mut tessera_engine,
    c_session: Vec<u8>,
    c_access: String,
    rust: Engine,
    rust_session: String,
    rust_access: String,
}

#[allow(unsafe_code)]
fn fixture() -> Fixture {
    let mut c_engine = std::ptr::null_mut();
    // SAFETY: valid out-pointer.
    assert_eq!(
        unsafe { tessera_engine_open_in_memory(&mut c_engine) },
        tessera_status::TESSERA_OK
    );
    let json = br#"{"user_id": "alice", "nickname": "Alice"}"#;
    let mut buf = vec![0u8; TESSERA_SESSION_TOKEN_MAX_LEN + 1];
    let mut len = 0usize;
    // SAFETY: all pointers valid for the stated lengths.
    unsafe {
        assert_eq!(
            tessera::ffi::tessera_user_create(
                c_engine,
                json.as_ptr().cast(),
                json.len(),
                std::ptr::null_mut()
            ),
            tessera_status::TESSERA_OK
        );
        assert_eq!(
            tessera_session_token_issue_default(
                c_engine,
                b"alice".as_ptr().cast(),
                5,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut len,
                std::ptr::null_mut(),
            ),
            tessera_status::TESSERA_OK
        );
    }
    buf.truncate(len);
    // The access token is issued through the Rust handle of the same engine kind: issuing is
    // not what is measured.
    let rust = Engine::in_memory().unwrap();
    rust.create_user(NewUser::new("alice", "Alice")).unwrap();
    let rust_session = rust.issue_session_token("alice", None).unwrap();
    let rust_access = rust.issue_access_token("alice", None).unwrap();
    let c_access = {
        let mut tok = vec![0u8; 128];
        // SAFETY: valid pointers and lengths.
        unsafe {
            assert_eq!(
                tessera::ffi::tessera_access_token_issue(
                    c_engine,
                    b"alice".as_ptr().cast(),
                    5,
                    std::ptr::null(),
                    0,
                    tok.as_mut_ptr().cast(),
                    tok.len(),
                    &mut len,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    0,
                    std::ptr::null_mut(),
                ),
                tessera_status::TESSERA_OK
            );
        }
        tok.truncate(len);
        String::from_utf8(tok).unwrap()
    };
    Fixture {
        c_engine,
        c_session: buf,
        c_access,
        rust,
        rust_session: rust_session.as_str().to_owned(),
        rust_access: rust_access.token.as_str().to_owned(),
    }
}

#[allow(unsafe_code)]
fn bench_verify(c: &mut Criterion) {
    let f = fixture();
    let mut g = c.benchmark_group("session_verify");
    g.bench_function("rust_api", |b| {
        b.iter(|| {
            f.rust
                .verify_session_token(black_box(&f.rust_session))
                .unwrap()
        })
    });
    g.bench_function("c_abi", |b| {
        let mut out = MaybeUninit::<tessera_verified_session>::uninit();
        b.iter(|| {
            // SAFETY: live engine, valid token slice and out-pointer.
            let st = unsafe {
                tessera_session_token_verify(
                    f.c_engine,
                    black_box(f.c_session.as_ptr().cast()),
                    f.c_session.len(),
                    out.as_mut_ptr(),
                )
            };
            assert_eq!(st, tessera_status::TESSERA_OK);
        })
    });
    g.finish();

    let mut g = c.benchmark_group("access_verify");
    g.bench_function("rust_api", |b| {
        b.iter(|| {
            f.rust
                .verify_access_token(black_box(&f.rust_access))
                .unwrap()
        })
    });
    g.bench_function("c_abi", |b| {
        let mut out = MaybeUninit::<tessera_verified_access_token>::uninit();
        b.iter(|| {
            // SAFETY: live engine, valid token slice and out-pointer.
            let st = unsafe {
                tessera_access_token_verify(
                    f.c_engine,
                    black_box(f.c_access.as_ptr().cast()),
                    f.c_access.len(),
                    out.as_mut_ptr(),
                )
            };
            assert_eq!(st, tessera_status::TESSERA_OK);
        })
    });
    g.finish();
    // SAFETY: opened above, freed once.
    unsafe { tessera_engine_free(f.c_engine) };
}

criterion_group!(benches, bench_verify);
criterion_main!(benches);
