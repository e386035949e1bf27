//! `imgctl df` and `imgctl prune`: disk usage (blobs, unpacked layers, bytes saved by
//! file-level dedup) and garbage collection of blobs.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;

use super::images::{human_size, print_table, Format};
use super::Globals;
use crate::image::catalog;

#[derive(clap::Args, Debug)]
pub struct DfArgs {
    /// Output format (`json` follows schemas/df.schema.json).
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(clap::Args, Debug)]
pub struct PruneArgs {
    /// Also remove the build cache (step results and RUN --mount=type=cache dirs).
    #[arg(long)]
    pub build_cache: bool,
}

/// `df --format json` (schemas/df.schema.json): blobs, then unpacked layers.
#[derive(serde::Serialize)]
struct DfJson {
    #[serde(flatten)]
    blobs: catalog::Usage,
    layers: u64,
    layer_logical_bytes: u64,
    layer_on_disk_bytes: u64,
    dedup_saved_bytes: u64,
    build_cache_entries: u64,
    build_cache_mounts: u64,
    build_cache_bytes: u64,
}

pub fn df(g: &Globals, a: DfArgs) -> anyhow::Result<ExitCode> {
    let (u, l) = catalog::disk_usage(&g.root)?;
    let bc = crate::build::cache::Cache::usage(&g.root);
    let mut out = std::io::stdout().lock();
    if a.format == Format::Json {
        let j = DfJson {
            blobs: u,
            layers: l.layers,
            layer_logical_bytes: l.logical_bytes,
            layer_on_disk_bytes: l.on_disk_bytes,
            dedup_saved_bytes: l.saved_bytes,
            build_cache_entries: bc.entries,
            build_cache_mounts: bc.mounts,
            build_cache_bytes: bc.bytes,
        };
        serde_json::to_writer_pretty(&mut out, &j)?;
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
        [
            "Unpacked layers".to_string(),
            l.layers.to_string(),
            human_size(l.on_disk_bytes),
            "-".to_string(),
        ],
        [
            "Build cache".to_string(),
            (bc.entries + bc.mounts).to_string(),
            human_size(bc.bytes),
            human_size(bc.bytes),
        ],
    ];
    print_table(&mut out, &["TYPE", "COUNT", "SIZE", "RECLAIMABLE"], &rows)?;
    writeln!(
        out,
        "\nLayer files: {} logical, {} on disk, {} saved by file-level dedup",
        human_size(l.logical_bytes),
        human_size(l.on_disk_bytes),
        human_size(l.saved_bytes)
    )?;
    Ok(ExitCode::SUCCESS)
}

pub fn prune(g: &Globals, a: PruneArgs) -> anyhow::Result<ExitCode> {
    if a.build_cache {
        let bc = crate::build::cache::Cache::prune(&g.root).context("prune the build cache")?;
        println!(
            "Deleted build cache: {} entries, {} cache mounts ({})",
            bc.entries,
            bc.mounts,
            human_size(bc.bytes)
        );
    }
    let report = catalog::prune(&g.root)?;
    let copies = crate::container::shifted::prune(&g.root)?;
    let mut out = std::io::stdout().lock();
    if copies.removed > 0 {
        writeln!(
            out,
            "Deleted user-namespace rootfs copies: {}",
            copies.removed
        )?;
    }
    let mut total = report.ingest_removed;
    for (d, size) in &report.removed {
        writeln!(out, "Deleted: {d}")?;
        total += size;
    }
    writeln!(out, "Total reclaimed space: {}", human_size(total))?;
    Ok(ExitCode::SUCCESS)
}
