//! cargo-fuzz target; the body and its properties are in fuzz/harness/store_open.rs, which
//! tests/fuzz_corpora.rs also runs over the committed corpus on stable.
#![no_main]

#[path = "../harness/common.rs"]
mod common;
#[path = "../harness/store_open.rs"]
mod store_open;

libfuzzer_sys::fuzz_target!(|data: &[u8]| store_open::run(data));
