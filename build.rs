//! Build script: the shared library's versioned SONAME, and, when asked, the C header.
//!
//! - On Linux the cdylib is linked with `-soname libtessera.so.<SONAME_MAJOR>`, so programs
//!   linked against it record that name (`NEEDED`) and an installed `libtessera.so.0.1.0`
//!   with its `libtessera.so.0` symlink is what they load (`scripts/install.sh`).
//! - `TESSERA_REGENERATE_HEADER=1 cargo build --features regenerate-header` rewrites
//!   `include/tessera.h` with cbindgen, exactly as `TESSERA_BLESS=1 cargo test --test
//!   c_header` does (both use `build/header.rs`). cbindgen is an optional build dependency
//!   behind that feature so the default build does not compile it; the committed header and
//!   its staleness test (`tests/c_header.rs`) stay the source of truth.

use std::env;

/// The SONAME's number. It must change whenever a release breaks programs linked against the
/// previous one (see `TESSERA_ABI_VERSION` in `src/ffi/version.rs`); adding functions does not.
const SONAME_MAJOR: u32 = 0;

#[cfg(feature = "regenerate-header")]
#[path = "build/header.rs"]
mod header;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=build/header.rs");
    println!("cargo:rerun-if-env-changed=TESSERA_REGENERATE_HEADER");
    if env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libtessera.so.{SONAME_MAJOR}");
    }
    if env::var("TESSERA_REGENERATE_HEADER").as_deref() == Ok("1") {
        regenerate_header();
    }
}

#[cfg(feature = "regenerate-header")]
fn regenerate_header() {
    use std::path::Path;
    let root = env::var("CARGO_MANIFEST_DIR").unwrap();
    let root = Path::new(&root);
    for input in [
        "src/ffi",
        "src/config.rs",
        "src/session_token.rs",
        "cbindgen.toml",
    ] {
        println!("cargo:rerun-if-changed={input}");
    }
    let num = |var: &str| -> u32 { env::var(var).unwrap().parse().unwrap() };
    let version = header::version_macros(
        &env::var("CARGO_PKG_VERSION").unwrap(),
        num("CARGO_PKG_VERSION_MAJOR"),
        num("CARGO_PKG_VERSION_MINOR"),
        num("CARGO_PKG_VERSION_PATCH"),
    );
    let text = header::generate(root, version, &header::limits_from_source(root));
    let path = root.join("include/tessera.h");
    if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
        std::fs::write(&path, text).unwrap();
        println!("cargo:warning=regenerated include/tessera.h");
    }
}

#[cfg(not(feature = "regenerate-header"))]
fn regenerate_header() {
    panic!(
        "TESSERA_REGENERATE_HEADER=1 needs cbindgen, an optional build dependency: \
         run `TESSERA_REGENERATE_HEADER=1 cargo build --features regenerate-header` \
         (or `TESSERA_BLESS=1 cargo test --test c_header`)"
    );
}
