//! cargo-fuzz target; the body and its properties are in fuzz/harness/access_parse.rs, which
//! tests/fuzz_corpora.rs also runs over the committed corpus on stable.
#![no_main]

#[path = "../harness/access_parse.rs"]
mod access_parse;
#[path = "../harness/common.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| access_parse::run(data));
