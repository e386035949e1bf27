//! `imgctl ps`: list containers (running ones; all with `-a`).

use std::io::Write;
use std::process::ExitCode;

use super::template::Template;
use super::Globals;
use crate::container::{control, inspect};

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  imgctl ps\n  imgctl ps -a --filter status=exited\n  imgctl ps -q --filter label=app=web"
)]
pub struct Args {
    /// Show all containers (default: only running ones).
    #[arg(short, long)]
    pub all: bool,
    /// Only print container IDs.
    #[arg(short, long)]
    pub quiet: bool,
    /// Do not truncate IDs and commands.
    #[arg(long)]
    pub no_trunc: bool,
    /// Filter: status=, name=, id=, label=KEY[=VALUE], ancestor=, exited=, health= (repeatable; all must match).
    #[arg(short, long, value_name = "KEY=VALUE")]
    pub filter: Vec<String>,
    /// Show the latest created container (implies -a).
    #[arg(short = 'l', long)]
    pub latest: bool,
    /// Show the N last created containers (implies -a).
    #[arg(short = 'n', long, value_name = "N")]
    pub last: Option<usize>,
    /// Format: table (default), json, or a Go template (`{{.ID}} {{.Names}}`, `table {{.ID}}\t{{.Status}}`).
    #[arg(long)]
    pub format: Option<String>,
}

/// Docker's column titles.
pub const HEADERS: &[(&str, &str)] = &[
    ("ID", "CONTAINER ID"),
    ("Image", "IMAGE"),
    ("Command", "COMMAND"),
    ("CreatedAt", "CREATED AT"),
    ("RunningFor", "CREATED"),
    ("Status", "STATUS"),
    ("State", "STATE"),
    ("Names", "NAMES"),
    ("Ports", "PORTS"),
    ("Labels", "LABELS"),
    ("Size", "SIZE"),
    ("Mounts", "MOUNTS"),
    ("Networks", "NETWORKS"),
];

const DEFAULT: &str =
    "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}";

pub fn run(g: &Globals, a: Args) -> anyhow::Result<ExitCode> {
    let filters: Vec<(String, String)> = a
        .filter
        .iter()
        .map(|f| match f.split_once('=') {
            Some((k, v)) => Ok((k.to_string(), v.to_string())),
            None => {
                anyhow::bail!("invalid --filter {f:?}: expected KEY=VALUE (e.g. status=running)")
            }
        })
        .collect::<Result<_, _>>()?;
    let all = a.all
        || a.latest
        || a.last.is_some()
        || filters.iter().any(|(k, _)| k == "status" || k == "exited");
    let mut list = Vec::new();
    for s in control::list(&g.root, all) {
        let mut keep = true;
        for (k, v) in &filters {
            keep &= inspect::matches(&s, k, v)?;
        }
        if keep {
            list.push(s);
        }
    }
    if a.latest {
        list.truncate(1);
    }
    if let Some(n) = a.last {
        list.truncate(n);
    }
    let now = crate::container::state::now();
    let rows: Vec<serde_json::Value> = list
        .iter()
        .map(|s| {
            let mut r = inspect::ps_row(s, now);
            if a.no_trunc {
                r["ID"] = serde_json::Value::String(s.state.id.clone());
            } else if let Some(c) = r["Command"].as_str() {
                let c = if c.chars().count() > 20 {
                    format!("{}…", c.chars().take(19).collect::<String>())
                } else {
                    c.to_string()
                };
                r["Command"] = serde_json::Value::String(format!("\"{c}\""));
            }
            r
        })
        .collect();
    let mut out = std::io::stdout().lock();
    if a.quiet {
        for r in &rows {
            writeln!(out, "{}", r["ID"].as_str().unwrap_or(""))?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let format = match a.format.as_deref() {
        None | Some("table") => DEFAULT,
        Some("json") => "{{json .}}",
        Some(f) => f,
    };
    let t = Template::parse(format)?;
    out.write_all(t.render_all(&rows, HEADERS)?.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}
