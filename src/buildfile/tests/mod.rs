//! Unit tests, written from Docker's documented Dockerfile behaviour.
//!
//! Shared helpers here; the tests by area: [`lines`] (directives, logical lines,
//! heredocs), [`instructions`] (each instruction and parse errors), [`expand`]
//! (ARG/ENV expansion and the stage graph), [`lint_print`] (linter and printer),
//! [`prop`] (printer round trip on generated Buildfiles) and [`regressions`].

use super::*;

mod expand;
mod instructions;
mod lines;
mod lint_print;
mod prop;
mod regressions;

pub(super) fn p(text: &str) -> Buildfile {
    match parse("Buildfile", text) {
        Ok(b) => b,
        Err(e) => panic!("parse failed: {}", e.render()),
    }
}

pub(super) fn perr(text: &str) -> Error {
    match parse("Buildfile", text) {
        Ok(b) => panic!("expected an error, got {b:#?}"),
        Err(e) => e,
    }
}

pub(super) fn msg(text: &str) -> String {
    perr(text).to_string()
}

pub(super) fn c(bf: &Buildfile, i: usize) -> &Command {
    &bf.instructions[i].command
}

pub(super) fn shell(s: &str) -> CmdLine {
    CmdLine::Shell {
        text: s.to_string(),
    }
}

/// A shell-form RUN with no flags.
pub(super) fn run_sh(s: &str) -> Command {
    Command::Run {
        command: shell(s),
        mounts: vec![],
        network: None,
        security: None,
    }
}

pub(super) fn exec(v: &[&str]) -> CmdLine {
    CmdLine::Exec {
        args: v.iter().map(|s| s.to_string()).collect(),
    }
}

pub(super) fn resolved(text: &str, args: &[(&str, &str)]) -> Resolved {
    let bf = p(text);
    let opts = ResolveOptions {
        build_args: args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        target_platform: Platform::parse("linux/arm64/v8").unwrap(),
        build_platform: Platform::parse("linux/amd64").unwrap(),
    };
    match resolve(&bf, "Buildfile", text, &opts) {
        Ok(r) => r,
        Err(e) => panic!("resolve failed: {}", e.render()),
    }
}

pub(super) fn env_of(st: &ResolvedStage, pos: usize, k: &str) -> Option<String> {
    st.env_at(pos)
        .iter()
        .find(|(n, _)| n == k)
        .map(|(_, v)| v.clone())
}

/// Several stages: a dependency chain, an unused stage and `--from` references.
pub(super) const MULTI: &str = concat!(
    "FROM golang AS build\nRUN make\n",
    "FROM alpine AS unused\nRUN echo never\n",
    "FROM build AS test\nRUN go test\n",
    "FROM scratch AS final\nCOPY --from=build /out /app\nCOPY --from=nginx:latest /etc/nginx /etc/nginx\nRUN --mount=from=test,target=/t true\n",
);

pub(super) fn strip_lines(mut bf: Buildfile) -> Buildfile {
    let z = LineRange { start: 0, end: 0 };
    for d in &mut bf.directives {
        d.line = 0;
    }
    for i in &mut bf.instructions {
        i.lines = z;
        if let Command::Onbuild { trigger } = &mut i.command {
            trigger.lines = z;
        }
    }
    for s in &mut bf.stages {
        s.lines = z;
    }
    bf
}

pub(super) fn ast_schema() -> &'static jsonschema::Validator {
    static V: std::sync::OnceLock<jsonschema::Validator> = std::sync::OnceLock::new();
    V.get_or_init(|| {
        let schema: serde_json::Value =
            serde_json::from_str(include_str!("../../../schemas/buildfile-ast.schema.json"))
                .expect("schema is JSON");
        jsonschema::validator_for(&schema).expect("schema compiles")
    })
}

/// The JSON `imgctl buildfile parse --json` would print for `bf` matches the schema.
pub(super) fn check_schema(bf: &Buildfile) -> Result<(), String> {
    let mut doc = serde_json::to_value(bf).map_err(|e| e.to_string())?;
    doc["file"] = serde_json::Value::from("Buildfile");
    let errs: Vec<String> = ast_schema()
        .iter_errors(&doc)
        .map(|e| format!("{e} at {}", e.instance_path))
        .collect();
    if errs.is_empty() {
        Ok(())
    } else {
        Err(format!("schema violations: {}\n{doc:#}", errs.join("; ")))
    }
}

pub(super) fn round_trip(text: &str) -> Result<(), String> {
    let Ok(a) = parse("Buildfile", text) else {
        return Ok(());
    };
    check_schema(&a)?;
    let printed = print(&a);
    let b = parse("Buildfile", &printed)
        .map_err(|e| format!("reparse failed: {}\n---\n{printed}", e.render()))?;
    if strip_lines(a.clone()) != strip_lines(b.clone()) {
        return Err(format!(
            "AST changed.\ninput:\n{text}\nprinted:\n{printed}\nbefore: {a:#?}\nafter: {b:#?}"
        ));
    }
    Ok(())
}
