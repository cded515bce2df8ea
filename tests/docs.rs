//! The documented error table must list every error kind with its real code.

use tessera::ErrorKind;

#[test]
fn error_table_matches_error_kinds() {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/ERRORS.md")).unwrap();
    let rows: Vec<(u32, String)> = doc
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let code = cells.get(1)?.parse().ok()?;
            Some((code, cells.get(2)?.to_string()))
        })
        .filter(|(code, _)| *code != 0)
        .collect();
    assert_eq!(rows.len(), ErrorKind::ALL.len(), "one row per kind");
    for &kind in ErrorKind::ALL {
        let name = format!("{kind:?}");
        assert!(
            rows.contains(&(kind.code(), name.clone())),
            "docs/ERRORS.md lacks `| {} | {name} |`",
            kind.code()
        );
    }
}

/// docs/SECURITY.md backs every claim with a link whose text names a test and whose target is
/// the file holding it: a Rust `#[test]` function, a C `static void test_…` or a Python
/// `def test_…`. A renamed or deleted test breaks this, not silently the document.
#[test]
fn security_doc_links_name_real_tests() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("docs/SECURITY.md")).unwrap();
    let mut checked = 0;
    for (at, _) in doc.match_indices("[`") {
        let rest = &doc[at + 2..];
        let Some((name, rest)) = rest.split_once("`](") else {
            continue;
        };
        let Some((target, _)) = rest.split_once(')') else {
            continue;
        };
        if !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            continue;
        }
        let path = root.join("docs").join(target);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("[`{name}`]({target}): {}: {e}", path.display()));
        let lines: Vec<&str> = text.lines().collect();
        let found = if target.ends_with(".rs") {
            let decl = format!("fn {name}(");
            lines.iter().enumerate().any(|(i, l)| {
                l.trim_start().starts_with(&decl)
                    && lines[..i]
                        .iter()
                        .rev()
                        .map(|l| l.trim())
                        .take_while(|l| l.starts_with("#[") || l.starts_with("//"))
                        .any(|l| l == "#[test]")
            })
        } else if target.ends_with(".c") {
            name.starts_with("test_") && text.contains(&format!("static void {name}("))
        } else if target.ends_with(".py") {
            name.starts_with("test_") && text.contains(&format!("def {name}("))
        } else {
            false
        };
        assert!(
            found,
            "docs/SECURITY.md links [`{name}`]({target}), which has no such test"
        );
        checked += 1;
    }
    assert!(checked >= 50, "only {checked} test links found");
}
