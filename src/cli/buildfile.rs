//! `imgctl buildfile parse|check`: print a Buildfile's syntax tree, or lint it.
//!
//! Exit codes: 0 fine; 1 the Buildfile is invalid (a parse, expansion or stage-graph
//! error) or, for `check`, has warnings under `--strict` or `# check=error=true`;
//! 125 imgctl could not run (e.g. the file cannot be read).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use serde::Serialize;

use super::{Exit, Globals};
use crate::buildfile::{self, Buildfile, CheckConfig, Error, Graph, ResolveOptions, Warning};

/// The exit status note of `parse` and `check` (a macro: `concat!` takes literals only).
macro_rules! exit_help {
    () => {
        "Exit status: 0 fine; 1 the Buildfile is invalid (or, for check, has \
warnings under --strict or `# check=error=true`); 125 imgctl failed (e.g. the file cannot be read)."
    };
}

#[derive(clap::Subcommand, Debug)]
#[command(
    after_help = "Examples:\n  imgctl buildfile check -f Dockerfile\n  imgctl buildfile parse --json"
)]
pub enum Cmd {
    /// Parse a Buildfile and print its syntax tree.
    ///
    /// With --json the tree is printed as JSON described by
    /// schemas/buildfile-ast.schema.json; otherwise one line per instruction.
    #[command(after_help = concat!(exit_help!(), "\n\nExamples:\n  imgctl buildfile parse -f Dockerfile\n  imgctl buildfile parse --json -f - < Buildfile"))]
    Parse(ParseArgs),
    /// Lint a Buildfile: parse errors, stage-graph errors and warnings in the spirit of
    /// BuildKit's build checks (rules can be skipped with `# check=skip=Rule,...`).
    #[command(after_help = concat!(exit_help!(), "\n\nExamples:\n  imgctl buildfile check\n  imgctl buildfile check --strict --format json -f Dockerfile\n  imgctl buildfile check --target release --build-arg VERSION=2"))]
    Check(CheckArgs),
}

#[derive(clap::Args, Debug)]
pub struct ParseArgs {
    /// Buildfile to read (`-` for stdin). Default: ./Buildfile, else ./Dockerfile.
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    /// Print the syntax tree as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// Buildfile to read (`-` for stdin). Default: ./Buildfile, else ./Dockerfile.
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    /// Output format; json is described by schemas/buildfile-check.schema.json.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Exit 1 when there is any warning.
    #[arg(long)]
    pub strict: bool,
    /// Check that this stage exists and list the stages it needs, in build order.
    #[arg(long)]
    pub target: Option<String>,
    /// Build argument KEY=VALUE for variable expansion (repeatable).
    #[arg(long = "build-arg", value_name = "KEY=VALUE", value_parser = parse_build_arg)]
    pub build_args: Vec<(String, String)>,
}

fn parse_build_arg(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("\"{s}\" is not KEY=VALUE")),
    }
}

pub fn run(_g: &Globals, c: Cmd) -> anyhow::Result<ExitCode> {
    match c {
        Cmd::Parse(a) => parse(a),
        Cmd::Check(a) => check(a),
    }
}

/// The file to read and the name to show in messages.
fn locate(file: Option<PathBuf>) -> PathBuf {
    match file {
        Some(f) => f,
        None => {
            let b = PathBuf::from("Buildfile");
            if !b.exists() && Path::new("Dockerfile").exists() {
                PathBuf::from("Dockerfile")
            } else {
                b
            }
        }
    }
}

fn read(path: &Path) -> anyhow::Result<(String, Vec<u8>)> {
    if path == Path::new("-") {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("read Buildfile from stdin")?;
        return Ok(("<stdin>".to_string(), buf));
    }
    let bytes = std::fs::read(path).with_context(|| {
        format!(
            "read Buildfile {} (pass the file with -f FILE)",
            path.display()
        )
    })?;
    Ok((path.display().to_string(), bytes))
}

fn invalid(e: &Error) -> anyhow::Error {
    eprintln!("imgctl: {}", e.render());
    Exit {
        code: 1,
        message: None,
    }
    .into()
}

#[derive(Serialize)]
struct ParseOut<'a> {
    file: &'a str,
    #[serde(flatten)]
    buildfile: &'a Buildfile,
}

fn parse(a: ParseArgs) -> anyhow::Result<ExitCode> {
    let path = locate(a.file);
    let (name, bytes) = read(&path)?;
    let bf = buildfile::parse_bytes(&name, &bytes).map_err(|e| invalid(&e))?;
    let mut out = std::io::stdout().lock();
    if a.json {
        let mut doc = serde_json::to_string_pretty(&ParseOut {
            file: &name,
            buildfile: &bf,
        })?;
        doc.push('\n');
        out.write_all(doc.as_bytes())?;
    } else {
        for d in &bf.directives {
            writeln!(out, "{:>4}      # {}={}", d.line, d.name, d.value)?;
        }
        for (i, ins) in bf.instructions.iter().enumerate() {
            if let Some(st) = bf.stages.iter().find(|s| s.from == i) {
                match &st.name {
                    Some(n) => writeln!(out, "# stage {} ({n})", st.index)?,
                    None => writeln!(out, "# stage {}", st.index)?,
                }
            }
            let mut line = String::new();
            buildfile::print_instruction(&mut line, ins, bf.escape);
            let range = if ins.lines.end > ins.lines.start {
                format!("{}-{}", ins.lines.start, ins.lines.end)
            } else {
                ins.lines.start.to_string()
            };
            writeln!(out, "{range:>9} {line}")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `check --format json` output (schemas/buildfile-check.schema.json).
#[derive(Serialize)]
struct CheckOut<'a> {
    file: &'a str,
    warnings: &'a [Warning],
    errors: Vec<ErrorOut>,
    /// With --target: the stages to build, dependencies first.
    #[serde(skip_serializing_if = "Option::is_none")]
    plan: Option<Vec<StageOut>>,
}

#[derive(Serialize)]
struct StageOut {
    index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
}

#[derive(Serialize)]
struct ErrorOut {
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    column: Option<u32>,
}

impl From<&Error> for ErrorOut {
    fn from(e: &Error) -> Self {
        let (line, column) = match e.location() {
            Some(l) => (Some(l.line), Some(l.column)),
            None => (None, None),
        };
        ErrorOut {
            message: e.to_string(),
            line,
            column,
        }
    }
}

fn check(a: CheckArgs) -> anyhow::Result<ExitCode> {
    let path = locate(a.file);
    let (name, bytes) = read(&path)?;
    let text = String::from_utf8_lossy(&bytes);
    let mut errors: Vec<Error> = Vec::new();
    let mut warnings: Vec<Warning> = Vec::new();
    let mut error_on_warning = false;
    let mut plan: Option<Vec<StageOut>> = None;
    match buildfile::parse_bytes(&name, &bytes) {
        Err(e) => errors.push(e),
        Ok(bf) => {
            warnings = buildfile::lint(&bf, &text);
            error_on_warning = CheckConfig::from_buildfile(&bf).error;
            let opts = ResolveOptions {
                build_args: a.build_args.clone(),
                ..ResolveOptions::default()
            };
            match buildfile::resolve(&bf, &name, &text, &opts) {
                Err(e) => errors.push(e),
                Ok(r) => match Graph::new(&r, &name, &text) {
                    Err(e) => errors.push(e),
                    Ok(g) => {
                        if let Some(t) = &a.target {
                            match g.plan(Some(t)) {
                                Ok(order) => {
                                    plan = Some(
                                        order
                                            .into_iter()
                                            .map(|i| StageOut {
                                                index: i,
                                                name: g.nodes[i].name.clone(),
                                            })
                                            .collect(),
                                    )
                                }
                                Err(e) => errors.push(e),
                            }
                        }
                    }
                },
            }
        }
    }
    let mut out = std::io::stdout().lock();
    match a.format {
        Format::Json => {
            let doc = CheckOut {
                file: &name,
                warnings: &warnings,
                errors: errors.iter().map(ErrorOut::from).collect(),
                plan,
            };
            let mut s = serde_json::to_string_pretty(&doc)?;
            s.push('\n');
            out.write_all(s.as_bytes())?;
        }
        Format::Text => {
            let lines: Vec<&str> = text.split('\n').collect();
            for w in &warnings {
                write!(
                    out,
                    "{name}:{}: {}: {}",
                    w.lines.start,
                    w.rule.name(),
                    w.message
                )?;
                if let Some(h) = &w.hint {
                    write!(out, " ({h})")?;
                }
                writeln!(out)?;
                if let Some(src) = lines.get((w.lines.start as usize).saturating_sub(1)) {
                    writeln!(out, " {} | {}", w.lines.start, src.trim_end_matches('\r'))?;
                }
            }
            if let (Some(t), Some(p)) = (&a.target, &plan) {
                let names: Vec<String> = p
                    .iter()
                    .map(|s| {
                        s.name
                            .clone()
                            .unwrap_or_else(|| format!("stage {}", s.index))
                    })
                    .collect();
                writeln!(out, "{name}: target {t} builds {}", names.join(", "))?;
            }
            for e in &errors {
                eprintln!("imgctl: {}", e.render());
            }
            let n = warnings.len();
            if errors.is_empty() {
                match n {
                    0 => writeln!(out, "{name}: no warnings")?,
                    1 => writeln!(out, "{name}: 1 warning")?,
                    _ => writeln!(out, "{name}: {n} warnings")?,
                }
            }
        }
    }
    out.flush()?;
    let fail = !errors.is_empty() || (!warnings.is_empty() && (a.strict || error_on_warning));
    Ok(if fail {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
