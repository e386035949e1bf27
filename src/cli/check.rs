//! `imgctl check [--repair] [IMAGE…]`: verify blobs against their digests and
//! unpacked layers against their blobs (files) or recorded digests (EROFS images).
//!
//! Exit codes: 0 nothing wrong; 1 problems found (with `--repair`: every one
//! repaired); 2 problems left after `--repair`; 125 the check itself failed.

use std::io::Write;
use std::process::ExitCode;

use super::images::Format;
use super::Globals;
use crate::image::check::{self, CheckOptions};

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Exit status: 0 clean, 1 problems found (all repaired with --repair), 2 \
problems left after --repair, 125 check failed.\n\nExamples:\n  imgctl check\n  imgctl check \
--repair nginx\n  imgctl check --format json | jq '.problems[]'"
)]
pub struct Args {
    /// Only the blobs and layers of these images (names or IDs); all when none.
    pub images: Vec<String>,
    /// Re-create bad layers from their blobs; remove bad blobs and fetch them again.
    #[arg(long)]
    pub repair: bool,
    /// Output format (`json` follows schemas/check.schema.json).
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

pub fn run(g: &Globals, a: Args) -> anyhow::Result<ExitCode> {
    let report = check::check(
        &g.root,
        &CheckOptions {
            repair: a.repair,
            images: a.images,
        },
    )?;
    let code = report.exit_code(a.repair);
    let mut out = std::io::stdout().lock();
    if a.format == Format::Json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
        return Ok(ExitCode::from(code));
    }
    for p in &report.problems {
        let kind = serde_json::to_value(p.kind)?;
        let mut line = format!(
            "{} {}: {}",
            kind.as_str().unwrap_or("item"),
            p.id,
            p.problem
        );
        if !p.images.is_empty() {
            line.push_str(&format!(" [{}]", p.images.join(", ")));
        }
        if let Some(act) = &p.action {
            line.push_str(&format!(" -> {act}"));
        }
        writeln!(out, "{}", line.replace('\n', " "))?;
    }
    let repaired = report.problems.iter().filter(|p| p.repaired).count();
    writeln!(
        out,
        "Checked {} blobs, {} layers, {} chains: {} problem(s){}",
        report.blobs_checked,
        report.layers_checked,
        report.chains_checked,
        report.problems.len(),
        if a.repair {
            format!(", {repaired} repaired")
        } else {
            String::new()
        }
    )?;
    Ok(ExitCode::from(code))
}
