//! The module layering of docs/ARCHITECTURE.md, checked: a module may refer to
//! `crate::X` only where X has a lower rank than itself (or is itself), and `cli`
//! only parses and renders: it may use the joining modules (rank 3 and up), the
//! pure vocabularies `oci` and `buildfile`, and nothing that touches the store,
//! layers, snapshots, registries or the sandbox directly.

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
        ("report", 5),
        ("build", 5),
        ("cli", 6),
    ]
    .into_iter()
    .collect()
}

/// What `cli` may name: the modules that join the pieces, and pure vocabularies.
const CLI_MAY_USE: &[&str] = &["image", "container", "build", "report", "oci", "buildfile"];

/// The layering violations in one file of module `module` (rank `own`).
fn check_file(module: &str, own: u8, rel: &str, text: &str) -> Vec<String> {
    let ranks = ranks();
    let mut violations = Vec::new();
    for name in crate_refs(text) {
        if name == module {
            continue;
        }
        match ranks.get(name.as_str()) {
            Some(&r) if r < own => {
                if module == "cli" && !CLI_MAY_USE.contains(&name.as_str()) {
                    violations.push(format!(
                        "{rel}: `cli` uses `crate::{name}` directly; call a joining module \
                         ({}) instead",
                        CLI_MAY_USE.join(", ")
                    ));
                }
            }
            Some(&r) => violations.push(format!(
                "{rel}: `{module}` (rank {own}) uses `crate::{name}` (rank {r})"
            )),
            None => violations.push(format!("{rel}: unknown module crate::{name}")),
        }
    }
    violations
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
        violations.extend(check_file(&module, own, &rel.display().to_string(), &text));
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

#[test]
fn the_checker_rejects_cli_reaching_below_the_joining_modules() {
    let cli = ranks()["cli"];
    for below in ["store", "layer", "snapshot", "registry", "sandbox", "sys"] {
        let text = format!("use crate::{below}::Something;\n");
        let v = check_file("cli", cli, "cli/x.rs", &text);
        assert_eq!(v.len(), 1, "{below}: {v:?}");
        assert!(v[0].contains("directly"), "{v:?}");
    }
    for ok in CLI_MAY_USE {
        let text = format!("use crate::{ok}::Something;\n");
        assert!(check_file("cli", cli, "cli/x.rs", &text).is_empty(), "{ok}");
    }
    // Other modules keep the plain rank rule.
    assert!(check_file("image", 3, "image/x.rs", "use crate::store::Store;").is_empty());
    assert_eq!(
        check_file("store", 1, "store/x.rs", "use crate::image::X;").len(),
        1
    );
}
