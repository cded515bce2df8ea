//! Failure messages of the C ABI name arguments as `include/tessera.h` does.
//!
//! A message such as "out_len is NULL" is useless to a caller whose parameter is called
//! `out_token_len`. The functions in `src/ffi/` name arguments through macros that take the
//! name from a parameter (`str_in!(token, token_len)`), or, rarely, through a string literal
//! given to a naming helper (`null_buffer("evicted_buf", cap)`). This test reads `src/ffi/`
//! with syn and the header as text, and checks every such name:
//! - it is a parameter of the Rust function that uses it (not a local variable);
//! - if that function is exported, the header declares it with a parameter of that name;
//! - if it is a helper, every exported function that reaches it has a parameter of that name.
//!
//! It also checks that every function documents its required pointers (those it rejects with
//! `TESSERA_NULL_POINTER` whenever they are NULL, the engine handle first of all) in one
//! standard sentence of its header comment.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use syn::punctuated::Punctuated;
use syn::visit::Visit;
use syn::{Expr, ExprCall, ExprLit, FnArg, Lit, Macro, Pat, Token};

/// Macros that check a pointer is not NULL, with the position of that pointer: a NULL there
/// always fails with `TESSERA_NULL_POINTER`.
const REQUIRED_MACROS: &[(&str, usize)] = &[("non_null", 0), ("text_out", 2)];

/// Macros that name an argument after a parameter, with the positions of the named arguments.
const NAMING_MACROS: &[(&str, &[usize])] = &[
    ("str_in", &[0]),
    ("opt_str_in", &[0]),
    ("json_in", &[0]),
    ("bytes_in_max", &[0]),
    ("non_null", &[0]),
    ("text_out", &[0, 2]),
];

/// Functions whose string-literal arguments are argument names in failure messages.
const NAMING_FNS: &[&str] = &[
    "null",
    "null_buffer",
    "str_in",
    "opt_str_in",
    "json_in",
    "bytes_in",
    "bytes_in_max",
    "non_null",
];

fn header_text() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("include/tessera.h");
    std::fs::read_to_string(path).unwrap()
}

/// The comment right before each function's declaration, as one line of prose.
fn header_docs() -> BTreeMap<String, String> {
    let text = header_text();
    let mut docs = BTreeMap::new();
    for name in header_functions().keys() {
        // The declaration starts a line; comment lines start with a space or a slash.
        let mut offset = 0;
        let mut decl = None;
        for line in text.split_inclusive('\n') {
            if !line.starts_with([' ', '/']) && line.contains(&format!("{name}(")) {
                decl = Some(offset);
                break;
            }
            offset += line.len();
        }
        let decl = decl.unwrap_or_else(|| panic!("{name} is not declared"));
        let end = text[..decl]
            .rfind("*/")
            .expect("a comment before every function");
        let start = text[..end].rfind("/**").expect("a doc comment");
        let prose: Vec<&str> = text[start + 3..end]
            .lines()
            .map(|l| l.trim().trim_start_matches('*').trim())
            .filter(|l| !l.is_empty())
            .collect();
        docs.insert(name.clone(), prose.join(" "));
    }
    docs
}

/// Every function declared in the header, with its parameter names.
fn header_functions() -> BTreeMap<String, Vec<String>> {
    let text = header_text();
    // Drop comments: they hold prose with parentheses.
    let mut code = String::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find("/*") {
        code.push_str(&rest[..start]);
        let end = rest[start..].find("*/").expect("unterminated comment") + start + 2;
        rest = &rest[end..];
    }
    code.push_str(rest);
    let mut functions = BTreeMap::new();
    let mut at = 0;
    while let Some(found) = code[at..].find("tessera_") {
        let start = at + found;
        let name_end = start
            + code[start..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap();
        at = name_end;
        let before = code[..start].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        if !code[name_end..].starts_with('(') {
            continue;
        }
        let close = name_end + code[name_end..].find(')').unwrap();
        if !code[close + 1..].trim_start().starts_with(';') {
            continue;
        }
        let params = code[name_end + 1..close].trim();
        let names = if params == "void" || params.is_empty() {
            Vec::new()
        } else {
            params
                .split(',')
                .map(|p| {
                    let p = p.split('[').next().unwrap();
                    let last = p
                        .rsplit(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .find(|w| !w.is_empty())
                        .unwrap();
                    last.to_owned()
                })
                .collect()
        };
        functions.insert(code[start..name_end].to_owned(), names);
    }
    assert!(
        functions.len() > 40,
        "parsed too few prototypes: {functions:?}"
    );
    functions
}

/// One function of `src/ffi/`: its parameters, the names it puts in messages, what it calls.
#[derive(Default, Debug)]
struct FnInfo {
    exported: bool,
    params: BTreeSet<String>,
    names: Vec<String>,
    /// The pointers it always rejects when NULL (a subset of `names`).
    required: Vec<String>,
    /// Paths of the functions it calls, as written (`self::engine`, `ConfigJson::parse`).
    calls: BTreeSet<String>,
}

/// Collects names and calls inside one function body, looking into `ffi_boundary!` bodies.
#[derive(Default)]
struct BodyVisitor {
    names: Vec<String>,
    required: Vec<String>,
    calls: BTreeSet<String>,
}

fn path_string(path: &syn::Path) -> String {
    path.segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect::<Vec<_>>()
        .join("::")
}

fn macro_args(mac: &Macro) -> Option<Punctuated<Expr, Token![,]>> {
    mac.parse_body_with(Punctuated::<Expr, Token![,]>::parse_terminated)
        .ok()
}

impl<'ast> Visit<'ast> for BodyVisitor {
    fn visit_macro(&mut self, mac: &'ast Macro) {
        let name = mac.path.segments.last().unwrap().ident.to_string();
        if let Some((_, positions)) = NAMING_MACROS.iter().find(|(m, _)| *m == name) {
            let args = macro_args(mac).expect("naming macro arguments parse");
            if let Some((_, i)) = REQUIRED_MACROS.iter().find(|(m, _)| *m == name) {
                if let Some(Expr::Path(p)) = args.iter().nth(*i) {
                    self.required.push(path_string(&p.path));
                }
            }
            for &i in *positions {
                match args.iter().nth(i) {
                    Some(Expr::Path(p)) => self.names.push(path_string(&p.path)),
                    other => panic!("{name}! argument {i} is not a parameter: {other:?}"),
                }
            }
            return;
        }
        if name == "ffi_boundary" {
            for arg in macro_args(mac).expect("ffi_boundary! body parses") {
                self.visit_expr(&arg);
            }
        }
    }

    fn visit_expr_call(&mut self, call: &'ast ExprCall) {
        if let Expr::Path(p) = &*call.func {
            let path = path_string(&p.path);
            let last = p.path.segments.last().unwrap().ident.to_string();
            if NAMING_FNS.contains(&last.as_str()) {
                for arg in &call.args {
                    if let Expr::Lit(ExprLit {
                        lit: Lit::Str(s), ..
                    }) = arg
                    {
                        self.names.push(s.value());
                    }
                }
            }
            self.calls.insert(path);
        }
        syn::visit::visit_expr_call(self, call);
    }
}

fn params_of(sig: &syn::Signature) -> BTreeSet<String> {
    sig.inputs
        .iter()
        .filter_map(|a| match a {
            FnArg::Typed(t) => match &*t.pat {
                Pat::Ident(i) => Some(i.ident.to_string()),
                _ => None,
            },
            FnArg::Receiver(_) => None,
        })
        .collect()
}

fn is_test_only(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && a.parse_args::<syn::Meta>()
                .is_ok_and(|m| m.path().is_ident("test"))
    })
}

fn analyse(sig: &syn::Signature, block: &syn::Block, exported: bool) -> FnInfo {
    let mut v = BodyVisitor::default();
    v.visit_block(block);
    FnInfo {
        exported,
        params: params_of(sig),
        names: v.names,
        required: v.required,
        calls: v.calls,
    }
}

/// Every non-test function of `src/ffi/`, keyed by `name` or `Type::name`.
fn ffi_functions() -> BTreeMap<String, FnInfo> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/ffi");
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let file = syn::parse_file(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for item in &file.items {
            match item {
                syn::Item::Fn(f) if !is_test_only(&f.attrs) => {
                    let exported = f.sig.abi.is_some();
                    let key = f.sig.ident.to_string();
                    out.insert(key, analyse(&f.sig, &f.block, exported));
                }
                syn::Item::Impl(imp) if !is_test_only(&imp.attrs) => {
                    let syn::Type::Path(ty) = &*imp.self_ty else {
                        continue;
                    };
                    let ty = ty.path.segments.last().unwrap().ident.to_string();
                    for it in &imp.items {
                        if let syn::ImplItem::Fn(f) = it {
                            let key = format!("{ty}::{}", f.sig.ident);
                            out.insert(key, analyse(&f.sig, &f.block, false));
                        }
                    }
                }
                _ => {}
            }
        }
    }
    out
}

/// Whether the call path `call` (as written) refers to the function keyed `key`.
fn calls(call: &str, key: &str) -> bool {
    call == key || call.ends_with(&format!("::{key}"))
}

/// The exported functions that reach `key`, directly or through other helpers.
fn exported_callers(
    fns: &BTreeMap<String, FnInfo>,
    key: &str,
    seen: &mut BTreeSet<String>,
) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    if !seen.insert(key.to_owned()) {
        return out;
    }
    for (caller, info) in fns {
        if info.calls.iter().any(|c| calls(c, key)) {
            if info.exported {
                out.insert(caller.clone());
            } else {
                out.extend(exported_callers(fns, caller, seen));
            }
        }
    }
    out
}

#[test]
fn every_argument_named_in_a_message_is_a_header_parameter() {
    let header = header_functions();
    let fns = ffi_functions();
    let mut problems = Vec::new();
    let mut checked = 0;
    for (key, info) in &fns {
        for name in &info.names {
            if !info.params.contains(name) {
                problems.push(format!("{key}: names `{name}`, which is not its parameter"));
            }
            let reached_from: Vec<String> = if info.exported {
                vec![key.clone()]
            } else {
                exported_callers(&fns, key, &mut BTreeSet::new())
                    .into_iter()
                    .collect()
            };
            if reached_from.is_empty() {
                problems.push(format!(
                    "{key}: names `{name}` but no C function reaches it"
                ));
            }
            for f in reached_from {
                checked += 1;
                match header.get(&f) {
                    None => problems.push(format!("{f} is not declared in the header")),
                    Some(params) if !params.contains(name) => {
                        let via = if f == *key {
                            String::new()
                        } else {
                            format!(" (via {key})")
                        };
                        problems.push(format!(
                            "{f}{via}: a message names `{name}`; the header's parameters are \
                             {params:?}"
                        ))
                    }
                    Some(_) => {}
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The scan must have found the argument checks (every function's `engine`, `user_id`, ...),
    // or it proves nothing.
    assert!(checked > 80, "only {checked} (function, name) pairs found");
}

/// The pointers `key` always rejects when NULL: its own checks and those of the helpers it
/// calls with the same-named argument (`engine(engine)`).
fn required_pointers(fns: &BTreeMap<String, FnInfo>, key: &str) -> BTreeSet<String> {
    let info = &fns[key];
    let mut out: BTreeSet<String> = info.required.iter().cloned().collect();
    for (helper, h) in fns {
        if !h.exported && helper != key && info.calls.iter().any(|c| calls(c, helper)) {
            out.extend(required_pointers(fns, helper));
        }
    }
    out
}

/// "`a`", "`a` or `b`", "`a`, `b` or `c`".
fn english_list(names: &[&String]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    match quoted.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

#[test]
fn every_function_documents_its_required_pointers() {
    let header = header_functions();
    let docs = header_docs();
    let fns = ffi_functions();
    let preamble = header_text();
    assert!(
        preamble.contains("A NULL engine handle, or any other required pointer, fails with"),
        "the header's preamble must state the NULL rule once for all functions"
    );
    let mut problems = Vec::new();
    let mut with_engine = 0;
    for (name, params) in &header {
        let Some(info) = fns.get(name) else {
            problems.push(format!("{name}: not found in src/ffi"));
            continue;
        };
        assert!(info.exported, "{name}");
        let required = required_pointers(&fns, name);
        if params.iter().any(|p| p == "engine") && name != "tessera_engine_free" {
            with_engine += 1;
            if !required.contains("engine") {
                problems.push(format!("{name}: does not reject a NULL engine"));
            }
        }
        // In parameter order, as a reader scans the signature.
        let ordered: Vec<&String> = params.iter().filter(|p| required.contains(*p)).collect();
        let doc = &docs[name];
        if ordered.is_empty() {
            if doc.contains("`TESSERA_NULL_POINTER` if") {
                problems.push(format!(
                    "{name}: documents required pointers it does not have"
                ));
            }
            continue;
        }
        let sentence = format!(
            "Fails with `TESSERA_NULL_POINTER` if {} is NULL.",
            english_list(&ordered)
        );
        if !doc.contains(&sentence) {
            problems.push(format!("{name}: its comment lacks \"{sentence}\""));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(
        with_engine > 30,
        "only {with_engine} functions take an engine"
    );
}
