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
