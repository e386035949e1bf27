//! Integration tests: `imgctl buildfile parse|check` on the golden files under
//! `testdata/buildfile/<case>/` (expected.json = `parse --json`, expected-check.json =
//! `check --format json`) and the negative set under `testdata/buildfile/negative/<case>/`
//! (expected-stderr.txt = what `check` prints). Every JSON printed is validated against
//! its schema in `schemas/`. `IMGCTL_BLESS=1` rewrites the expected files after a
//! deliberate change; review the diff before committing.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{fails, imgctl_bin, ok, output, tempdir};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn cases(sub: &str) -> Vec<PathBuf> {
    let dir = repo().join("testdata/buildfile").join(sub);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.join("Buildfile").is_file())
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no cases under {}", dir.display());
    v
}

fn schema(name: &str) -> jsonschema::Validator {
    let path = repo().join("schemas").join(name);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let v: serde_json::Value = serde_json::from_str(&text).expect("schema is JSON");
    jsonschema::validator_for(&v).unwrap_or_else(|e| panic!("{name} is not a valid schema: {e}"))
}

fn assert_valid(validator: &jsonschema::Validator, doc: &serde_json::Value, what: &str) {
    let errs: Vec<String> = validator
        .iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(
        errs.is_empty(),
        "{what} does not match its schema:\n{}",
        errs.join("\n")
    );
}

/// An imgctl command run inside `dir` (relative `-f Buildfile` keeps paths stable).
fn cmd(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(imgctl_bin());
    c.current_dir(dir)
        .args(args)
        .env("IMGCTL_ROOT", dir.join(".no-store"));
    c
}

fn bless() -> bool {
    std::env::var("IMGCTL_BLESS").is_ok_and(|v| v == "1")
}

fn compare(path: &Path, actual: &str) {
    if bless() {
        std::fs::write(path, actual).expect("write expected file");
        return;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "read {}: {e} (run with IMGCTL_BLESS=1 to create it)",
            path.display()
        )
    });
    assert_eq!(actual, expected, "output differs from {}", path.display());
}

#[test]
fn golden_parse_json_matches_and_validates() {
    let v = schema("buildfile-ast.schema.json");
    for dir in cases("") {
        let out = ok(&mut cmd(
            &dir,
            &["buildfile", "parse", "-f", "Buildfile", "--json"],
        ));
        let doc: serde_json::Value = serde_json::from_str(&out).expect("parse --json prints JSON");
        assert_valid(&v, &doc, &format!("parse --json of {}", dir.display()));
        assert_eq!(doc["file"], "Buildfile");
        compare(&dir.join("expected.json"), &out);
    }
}

#[test]
fn golden_check_json_matches_and_validates() {
    let v = schema("buildfile-check.schema.json");
    for dir in cases("") {
        let o = output(&mut cmd(
            &dir,
            &["buildfile", "check", "-f", "Buildfile", "--format", "json"],
        ));
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        let doc: serde_json::Value =
            serde_json::from_str(&out).expect("check --format json prints JSON");
        assert_valid(
            &v,
            &doc,
            &format!("check --format json of {}", dir.display()),
        );
        assert_eq!(
            doc["errors"].as_array().map(Vec::len),
            Some(0),
            "{}: {out}",
            dir.display()
        );
        compare(&dir.join("expected-check.json"), &out);
    }
}

#[test]
fn negative_cases_fail_with_located_errors() {
    let v = schema("buildfile-check.schema.json");
    for dir in cases("negative") {
        let (code, stderr) = fails(&mut cmd(&dir, &["buildfile", "check", "-f", "Buildfile"]));
        assert_eq!(code, 1, "{}: {stderr}", dir.display());
        assert!(
            stderr.starts_with("imgctl: Buildfile"),
            "{}: {stderr}",
            dir.display()
        );
        compare(&dir.join("expected-stderr.txt"), &stderr);

        let o = output(&mut cmd(
            &dir,
            &["buildfile", "check", "-f", "Buildfile", "--format", "json"],
        ));
        assert_eq!(o.status.code(), Some(1));
        let doc: serde_json::Value =
            serde_json::from_slice(&o.stdout).expect("JSON even for an invalid file");
        assert_valid(
            &v,
            &doc,
            &format!("check --format json of {}", dir.display()),
        );
        assert!(!doc["errors"].as_array().expect("errors array").is_empty());
    }
}

#[test]
fn parse_error_shows_file_line_column_caret_and_hint() {
    let dir = repo().join("testdata/buildfile/negative/unknown-instruction");
    let (code, stderr) = fails(&mut cmd(
        &dir,
        &["buildfile", "parse", "-f", "Buildfile", "--json"],
    ));
    assert_eq!(code, 1);
    assert_eq!(stderr, "imgctl: Buildfile:3:1: unknown instruction RUNN (did you mean RUN?)\n 3 | RUNN make\n   | ^\n");
    let dir = repo().join("testdata/buildfile/negative/unknown-flag");
    let (_, stderr) = fails(&mut cmd(&dir, &["buildfile", "parse", "-f", "Buildfile"]));
    assert!(
        stderr.contains("Buildfile:3:6: unknown flag --form for COPY (did you mean --from?)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("\n 3 |      --form=build /a /b\n   |      ^"),
        "{stderr}"
    );
}

#[test]
fn check_strict_and_check_directive_set_the_exit_code() {
    let lint = repo().join("testdata/buildfile/lint-warnings");
    let out = ok(&mut cmd(&lint, &["buildfile", "check", "-f", "Buildfile"]));
    assert!(out.contains("Buildfile:7: JSONArgsRecommended: "), "{out}");
    assert!(out.contains("Buildfile:15: NoEmptyContinuation: "), "{out}");
    let (code, _) = fails(&mut cmd(
        &lint,
        &["buildfile", "check", "-f", "Buildfile", "--strict"],
    ));
    assert_eq!(code, 1);
    let basic = repo().join("testdata/buildfile/basic");
    let out = ok(&mut cmd(
        &basic,
        &["buildfile", "check", "-f", "Buildfile", "--strict"],
    ));
    assert_eq!(out, "Buildfile: no warnings\n");

    let t = tempdir();
    std::fs::write(
        t.path().join("Buildfile"),
        "# check=error=true\nFROM a\nCMD run\n",
    )
    .expect("write");
    let (code, _) = fails(&mut cmd(t.path(), &["buildfile", "check"]));
    assert_eq!(code, 1);
    std::fs::write(
        t.path().join("Buildfile"),
        "# check=skip=JSONArgsRecommended;error=true\nFROM a\nCMD run\n",
    )
    .expect("write");
    ok(&mut cmd(t.path(), &["buildfile", "check"]));
}

#[test]
fn check_target_prunes_stages_and_build_args_expand() {
    let v = schema("buildfile-check.schema.json");
    let dir = repo().join("testdata/buildfile/multistage");
    let out = ok(&mut cmd(
        &dir,
        &["buildfile", "check", "-f", "Buildfile", "--target", "test"],
    ));
    assert!(
        out.contains("Buildfile: target test builds build, test\n"),
        "{out}"
    );
    let out = ok(&mut cmd(
        &dir,
        &[
            "buildfile",
            "check",
            "-f",
            "Buildfile",
            "--target",
            "final",
            "--format",
            "json",
        ],
    ));
    let doc: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_valid(&v, &doc, "check --target --format json");
    let names: Vec<&str> = doc["plan"]
        .as_array()
        .expect("plan")
        .iter()
        .map(|s| s["name"].as_str().unwrap_or(""))
        .collect();
    // "test" is not needed by "final" and is left out.
    assert_eq!(names, ["build", "final"]);

    let (code, stderr) = fails(&mut cmd(
        &dir,
        &["buildfile", "check", "-f", "Buildfile", "--target", "tset"],
    ));
    assert_eq!(code, 1);
    assert_eq!(
        stderr,
        "imgctl: Buildfile: target stage \"tset\" could not be found (did you mean test?)\n"
    );

    let neg = repo().join("testdata/buildfile/negative/unset-required");
    fails(&mut cmd(&neg, &["buildfile", "check", "-f", "Buildfile"]));
    ok(&mut cmd(
        &neg,
        &[
            "buildfile",
            "check",
            "-f",
            "Buildfile",
            "--build-arg",
            "VERSION=3.20",
        ],
    ));
    let (code, _) = fails(&mut cmd(
        &neg,
        &["buildfile", "check", "--build-arg", "novalue"],
    ));
    assert_eq!(code, 125);
}

#[test]
fn parse_text_output_lists_instructions_with_lines() {
    let dir = repo().join("testdata/buildfile/heredocs");
    let out = ok(&mut cmd(&dir, &["buildfile", "parse", "-f", "Buildfile"]));
    assert!(
        out.starts_with(
            "   1      # syntax=docker/dockerfile:1\n# stage 0\n        2 FROM alpine\n"
        ),
        "{out}"
    );
    assert!(out.contains("# stage 0\n"), "{out}");
    assert!(out.contains("      3-6 RUN <<EOF\n"), "{out}");
    assert!(
        out.contains("    15-18 RUN --mount=type=cache,target=/var/cache <<SCRIPT\n"),
        "{out}"
    );
}

#[test]
fn default_file_stdin_and_missing_file() {
    let t = tempdir();
    std::fs::write(t.path().join("Dockerfile"), "FROM from-dockerfile\n").expect("write");
    let out = ok(&mut cmd(t.path(), &["buildfile", "parse", "--json"]));
    assert!(out.contains("\"image\": \"from-dockerfile\""), "{out}");
    std::fs::write(t.path().join("Buildfile"), "FROM from-buildfile\n").expect("write");
    let out = ok(&mut cmd(t.path(), &["buildfile", "parse", "--json"]));
    assert!(out.contains("\"image\": \"from-buildfile\""), "{out}");

    let mut c = cmd(t.path(), &["buildfile", "parse", "-f", "-", "--json"]);
    c.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = c.spawn().expect("spawn imgctl");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(b"FROM piped\n").expect("write stdin");
    }
    let o = child.wait_with_output().expect("wait");
    assert!(o.status.success());
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(doc["file"], "<stdin>");
    assert_eq!(doc["instructions"][0]["command"]["image"], "piped");

    let (code, stderr) = fails(&mut cmd(
        t.path(),
        &["buildfile", "parse", "-f", "nope/Buildfile"],
    ));
    assert_eq!(code, 125);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("imgctl: read Buildfile nope/Buildfile"),
        "{stderr}"
    );
}

#[test]
fn schema_rejects_a_tampered_tree() {
    // Guards the schema test itself: a document that breaks the contract must fail.
    let v = schema("buildfile-ast.schema.json");
    let dir = repo().join("testdata/buildfile/basic");
    let out = ok(&mut cmd(
        &dir,
        &["buildfile", "parse", "-f", "Buildfile", "--json"],
    ));
    let mut doc: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert!(v.is_valid(&doc));
    doc["instructions"][0]["command"]["kind"] = serde_json::Value::from("form");
    assert!(!v.is_valid(&doc));
    let mut doc: serde_json::Value = serde_json::from_str(&out).expect("json");
    doc["instructions"][1]["lines"]["start"] = serde_json::Value::from(0);
    assert!(!v.is_valid(&doc));
}

#[test]
fn golden_files_round_trip_through_the_printer() {
    use imgctl::buildfile::{parse, print, Buildfile, Command, LineRange};
    fn strip(mut bf: Buildfile) -> Buildfile {
        let z = LineRange { start: 0, end: 0 };
        bf.directives.iter_mut().for_each(|d| d.line = 0);
        for i in &mut bf.instructions {
            i.lines = z;
            if let Command::Onbuild { trigger } = &mut i.command {
                trigger.lines = z;
            }
        }
        bf.stages.iter_mut().for_each(|s| s.lines = z);
        bf
    }
    for dir in cases("") {
        let text = std::fs::read_to_string(dir.join("Buildfile")).expect("read");
        let a = parse("Buildfile", &text).expect("golden file parses");
        let printed = print(&a);
        let b = parse("Buildfile", &printed).unwrap_or_else(|e| {
            panic!(
                "{}: reprint does not parse: {}\n{printed}",
                dir.display(),
                e.render()
            )
        });
        assert_eq!(strip(a), strip(b), "{}:\n{printed}", dir.display());
    }
}
