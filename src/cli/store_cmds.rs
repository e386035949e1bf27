//! `imgctl df` and `imgctl prune`: disk usage and garbage collection of blobs.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;

use super::images::{human_size, open_store, print_table, Format};
use super::Globals;

#[derive(clap::Args, Debug)]
pub struct DfArgs {
    /// Output format (`json` follows schemas/df.schema.json).
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(clap::Args, Debug)]
pub struct PruneArgs {}

pub fn df(g: &Globals, a: DfArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(g)?;
    let u = store.usage().context("measure store")?;
    let mut out = std::io::stdout().lock();
    if a.format == Format::Json {
        serde_json::to_writer_pretty(&mut out, &u)?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    let rows = [
        [
            "Images".to_string(),
            u.images.to_string(),
            human_size(u.referenced_bytes),
            "-".to_string(),
        ],
        [
            "Blobs".to_string(),
            u.blobs.to_string(),
            human_size(u.blob_bytes),
            human_size(u.blob_bytes - u.referenced_bytes.min(u.blob_bytes)),
        ],
        [
            "Partial downloads".to_string(),
            "-".to_string(),
            human_size(u.ingest_bytes),
            human_size(u.ingest_bytes),
        ],
    ];
    print_table(&mut out, &["TYPE", "COUNT", "SIZE", "RECLAIMABLE"], &rows)?;
    Ok(ExitCode::SUCCESS)
}

pub fn prune(g: &Globals, _a: PruneArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(g)?;
    let report = store.prune().context("prune")?;
    let mut out = std::io::stdout().lock();
    let mut total = report.ingest_removed;
    for (d, size) in &report.removed {
        writeln!(out, "Deleted: {d}")?;
        total += size;
    }
    writeln!(out, "Total reclaimed space: {}", human_size(total))?;
    Ok(ExitCode::SUCCESS)
}
