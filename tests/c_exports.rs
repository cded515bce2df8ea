//! The shared library exports `tessera_*` symbols and nothing else, and exactly the functions
//! the committed header declares.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

/// `libtessera.so` of the profile this test was built with (`target/<profile>/`).
///
/// `cargo test` builds the library only as an rlib for the tests, so the cdylib may be
/// missing or stale: build it first (a no-op when it is fresh).
fn shared_library() -> PathBuf {
    let mut build = Command::new(env!("CARGO"));
    build.args(["build", "--lib", "--quiet"]);
    if !cfg!(debug_assertions) {
        build.arg("--release");
    }
    let status = build
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("running cargo build failed");
    assert!(status.success(), "cargo build --lib failed");
    // The test binary lives in target/<profile>/deps/.
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    for candidate in [
        profile_dir.join("libtessera.so"),
        profile_dir.join("deps/libtessera.so"),
    ] {
        if candidate.exists() {
            return candidate;
        }
    }
    panic!(
        "libtessera.so not found in {}; `cargo test` builds the cdylib with the library",
        profile_dir.display()
    );
}

fn exported_symbols() -> BTreeSet<String> {
    let lib = shared_library();
    let out = Command::new("nm")
        .args(["-D", "--defined-only", "--format=posix"])
        .arg(&lib)
        .output()
        .expect("running nm (binutils) failed");
    assert!(
        out.status.success(),
        "nm failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        // Versioned names look like `sym@@VERS`.
        .map(|s| s.split('@').next().unwrap().to_owned())
        .collect()
}

#[test]
fn shared_library_exports_only_prefixed_symbols() {
    let symbols = exported_symbols();
    assert!(!symbols.is_empty());
    let bad: Vec<&String> = symbols
        .iter()
        .filter(|s| !s.starts_with("tessera_"))
        .collect();
    assert!(
        bad.is_empty(),
        "exported symbols without the tessera_ prefix: {bad:?}"
    );
}

#[test]
fn exports_match_the_header_declarations() {
    let header =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/include/tessera.h")).unwrap();
    // Declarations are one per line at column 0: `<type> tessera_name(...`.
    let declared: BTreeSet<String> = header
        .lines()
        .filter(|l| !l.starts_with(' ') && !l.starts_with('#') && !l.starts_with('*'))
        .filter_map(|l| {
            let open = l.find('(')?;
            let name = l[..open].rsplit([' ', '*']).next()?;
            name.starts_with("tessera_").then(|| name.to_owned())
        })
        .collect();
    let exported = exported_symbols();
    let undeclared: Vec<_> = exported.difference(&declared).collect();
    let missing: Vec<_> = declared.difference(&exported).collect();
    assert!(
        undeclared.is_empty(),
        "exported but not in tessera.h: {undeclared:?}"
    );
    assert!(
        missing.is_empty(),
        "declared in tessera.h but not exported: {missing:?}"
    );
}
