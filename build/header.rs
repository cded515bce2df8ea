//! The generator of `include/tessera.h`, shared by `build.rs` (with
//! `TESSERA_REGENERATE_HEADER=1`) and `tests/c_header.rs` (the staleness test), so the two
//! write the same bytes.
//!
//! cbindgen writes the declarations of `src/ffi/` with `cbindgen.toml`; two groups of
//! `#define`s are added after the includes because cbindgen cannot evaluate them: the version
//! (from `Cargo.toml`) and the limits of `src/ffi/limits.rs`. The test takes the limits from
//! the compiled crate (`tessera::ffi::LIMITS`). A build script runs before the crate is
//! compiled, so it reads them from the source instead ([`limits_from_source`]); a test checks
//! that both give the same list.

use std::collections::HashMap;
use std::path::Path;

/// One `TESSERA_*` limit: name, value, doc lines (as `///` comments hold them, each starting
/// with its space).
pub type Limit = (String, u64, Vec<String>);

/// The version `#define`s for crate version `major.minor.patch`.
pub fn version_macros(version: &str, major: u32, minor: u32, patch: u32) -> String {
    assert!(
        minor < 1000 && patch < 1000,
        "TESSERA_VERSION_NUMBER needs minor, patch < 1000"
    );
    let number = major * 1_000_000 + minor * 1_000 + patch;
    format!(
        "\n/** Version of the Tessera crate this header was generated from (`Cargo.toml`). */\n\
         #define TESSERA_VERSION_STRING \"{version}\"\n\
         /** Major version (X of X.Y.Z). */\n\
         #define TESSERA_VERSION_MAJOR {major}\n\
         /** Minor version (Y of X.Y.Z). */\n\
         #define TESSERA_VERSION_MINOR {minor}\n\
         /** Patch version (Z of X.Y.Z). */\n\
         #define TESSERA_VERSION_PATCH {patch}\n\
         /** X * 1000000 + Y * 1000 + Z; compare with tessera_version_number(). */\n\
         #define TESSERA_VERSION_NUMBER {number}\n",
    )
}

/// The limit `#define`s, each with its doc comment.
pub fn limit_macros(limits: &[Limit]) -> String {
    let mut out = String::new();
    for (name, value, doc) in limits {
        out.push_str("\n/**\n");
        for line in doc {
            out.push_str(&format!(" *{}\n", line.trim_end()));
        }
        out.push_str(&format!(" */\n#define {name} {value}\n"));
    }
    out
}

/// The whole header, for the crate at `root`.
pub fn generate(root: &Path, version_macros: String, limits: &[Limit]) -> String {
    let mut config = cbindgen::Config::from_file(root.join("cbindgen.toml")).unwrap();
    config.after_includes = Some(version_macros + &limit_macros(limits));
    let mut out = Vec::new();
    cbindgen::Builder::new()
        // Only the ffi module: public items of the core (config limits, ...) stay out of C.
        .with_src(root.join("src/ffi/mod.rs"))
        .with_config(config)
        .generate()
        .expect("cbindgen failed")
        .write(&mut out);
    String::from_utf8(out).unwrap()
}

/// The limits declared in `src/ffi/limits.rs` (`limits! { /// doc ... pub const NAME: T =
/// VALUE; ... }`), each VALUE evaluated from the source: an integer literal, or the name of a
/// constant imported with `use crate::<module>::{...}` whose own value is one (or names
/// another constant of its file). Anything else panics: regenerate with the test instead
/// (`TESSERA_BLESS=1 cargo test --test c_header`), which needs no evaluation.
pub fn limits_from_source(root: &Path) -> Vec<Limit> {
    let file = parse(&root.join("src/ffi/limits.rs"));
    // Which module each imported name comes from.
    let mut imported: HashMap<String, String> = HashMap::new();
    for item in &file.items {
        if let syn::Item::Use(u) = item {
            collect_use(&u.tree, &mut Vec::new(), &mut imported);
        }
    }
    let mac = file
        .items
        .iter()
        .find_map(|item| match item {
            syn::Item::Macro(m) if m.mac.path.is_ident("limits") => Some(&m.mac),
            _ => None,
        })
        .expect("src/ffi/limits.rs declares its limits in `limits! { ... }`");
    let consts: Vec<syn::ItemConst> = mac
        .parse_body_with(|input: syn::parse::ParseStream| {
            let mut v = Vec::new();
            while !input.is_empty() {
                v.push(input.parse()?);
            }
            Ok(v)
        })
        .expect("the body of `limits!` is a list of constants");
    let mut files = HashMap::new();
    consts
        .iter()
        .map(|c| {
            let name = c.ident.to_string();
            let value = match &*c.expr {
                syn::Expr::Path(p) if p.path.get_ident().is_some() => {
                    let ident = p.path.get_ident().unwrap().to_string();
                    let module = imported
                        .get(&ident)
                        .unwrap_or_else(|| panic!("{name}: `{ident}` is not imported by a use"));
                    let path = root.join("src").join(format!("{module}.rs"));
                    let file = files.entry(path.clone()).or_insert_with(|| parse(&path));
                    const_value(file, &ident, &path)
                }
                e => int_literal(e).unwrap_or_else(|| panic!("{name}: value is not evaluable")),
            };
            (name, value, doc_lines(&c.attrs))
        })
        .collect()
}

fn parse(path: &Path) -> syn::File {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    syn::parse_file(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

/// `crate::a::b::{C, D}` → C and D from module `a/b`.
fn collect_use(tree: &syn::UseTree, prefix: &mut Vec<String>, out: &mut HashMap<String, String>) {
    match tree {
        syn::UseTree::Path(p) => {
            prefix.push(p.ident.to_string());
            collect_use(&p.tree, prefix, out);
            prefix.pop();
        }
        syn::UseTree::Group(g) => {
            for t in &g.items {
                collect_use(t, prefix, out);
            }
        }
        syn::UseTree::Name(n) if prefix.first().map(String::as_str) == Some("crate") => {
            out.insert(n.ident.to_string(), prefix[1..].join("/"));
        }
        _ => {}
    }
}

/// The value of the constant `ident` of `file`: an integer literal, or another of its
/// constants.
fn const_value(file: &syn::File, ident: &str, path: &Path) -> u64 {
    let c = file
        .items
        .iter()
        .find_map(|item| match item {
            syn::Item::Const(c) if c.ident == ident => Some(c),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{}: no constant {ident}", path.display()));
    match &*c.expr {
        syn::Expr::Path(p) if p.path.get_ident().is_some() => {
            const_value(file, &p.path.get_ident().unwrap().to_string(), path)
        }
        e => int_literal(e)
            .unwrap_or_else(|| panic!("{}: {ident} is not an integer literal", path.display())),
    }
}

fn int_literal(e: &syn::Expr) -> Option<u64> {
    match e {
        syn::Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Int(i),
            ..
        }) => i.base10_parse().ok(),
        _ => None,
    }
}

fn doc_lines(attrs: &[syn::Attribute]) -> Vec<String> {
    attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .filter_map(|a| match &a.meta {
            syn::Meta::NameValue(syn::MetaNameValue {
                value:
                    syn::Expr::Lit(syn::ExprLit {
                        lit: syn::Lit::Str(s),
                        ..
                    }),
                ..
            }) => Some(s.value()),
            _ => None,
        })
        .collect()
}
