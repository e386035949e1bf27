//! The module layering of docs/ARCHITECTURE.md, checked: a module may refer to
//! `crate::X` only where X has a lower rank than itself (or is itself).

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

fn ranks() -> BTreeMap<&'static str, u8> {
    [
        ("oci", 0),
        ("sys", 0),
        ("buildfile", 0),
        ("store", 1),
        ("sandbox", 1),
        ("layer", 2),
        ("snapshot", 2),
        ("registry", 2),
        ("network", 2),
        ("image", 3),
        ("container", 4),
        ("report", 4),
        ("build", 5),
        ("cli", 6),
    ]
    .into_iter()
    .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in fs::read_dir(dir).expect("read src dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every `crate::NAME` mentioned in `text` (in `use` lines and in paths).
fn crate_refs(text: &str) -> Vec<String> {
    let mut refs = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        let before = rest[..i].chars().last();
        rest = &rest[i + "crate::".len()..];
        // `$crate::` in macros and `some_crate::` paths are not ours.
        if matches!(before, Some(c) if c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            refs.push(name);
        }
    }
    refs
}

#[test]
fn modules_only_use_lower_ranks() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let ranks = ranks();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut violations = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(&src).expect("under src");
        let first = rel.components().next().expect("component");
        let module = first
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if module == "lib" || module == "main" {
            continue;
        }
        let Some(&own) = ranks.get(module.as_str()) else {
            violations.push(format!(
                "{}: module `{module}` has no rank in the table",
                rel.display()
            ));
            continue;
        };
        let text = fs::read_to_string(file).expect("read source");
        for name in crate_refs(&text) {
            if name == module {
                continue;
            }
            match ranks.get(name.as_str()) {
                Some(&r) if r < own => {}
                Some(&r) => violations.push(format!(
                    "{}: `{module}` (rank {own}) uses `crate::{name}` (rank {r})",
                    rel.display()
                )),
                None => violations.push(format!("{}: unknown module crate::{name}", rel.display())),
            }
        }
    }
    assert!(
        violations.is_empty(),
        "layering violations:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_checker_sees_references() {
    let refs = crate_refs("use crate::store::Store;\nlet x = crate::oci::Digest::of(b\"\");\n$crate::foo; my_crate::bar");
    assert_eq!(refs, vec!["store".to_string(), "oci".to_string()]);
}
