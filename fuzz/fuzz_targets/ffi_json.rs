//! cargo-fuzz target; the body and its properties are in fuzz/harness/ffi_json.rs, which
//! tests/fuzz_corpora.rs also runs over the committed corpus on stable.
#![no_main]

#[path = "../harness/common.rs"]
mod common;
#[path = "../harness/ffi_json.rs"]
mod ffi_json;

libfuzzer_sys::fuzz_target!(|data: &[u8]| ffi_json::run(data));
