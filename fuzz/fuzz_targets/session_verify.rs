//! cargo-fuzz target; the body and its properties are in fuzz/harness/session_verify.rs, which
//! tests/fuzz_corpora.rs also runs over the committed corpus on stable.
#![no_main]

#[path = "../harness/common.rs"]
mod common;
#[path = "../harness/session_verify.rs"]
mod session_verify;

libfuzzer_sys::fuzz_target!(|data: &[u8]| session_verify::run(data));
