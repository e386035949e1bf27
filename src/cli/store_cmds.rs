//! `imgctl df` and `imgctl prune` (also `system df`, `system prune`, `image prune`,
//! `container prune`): disk usage with what a prune would reclaim per kind, and
//! garbage collection of blobs, unpacked layers, chains, the dedup pool, partial
//! downloads, stale snapshots and (on request) stopped containers and unused images.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::Context;

use super::images::{human_size, print_table, Format};
use super::{Exit, Globals};
use crate::container::gc as cgc;
use crate::container::gc::ItemKind;
use crate::image::catalog;

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  imgctl df\n  imgctl df --format json")]
pub struct DfArgs {
    /// Output format (`json` follows schemas/df.schema.json).
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(clap::Args, Debug, Default)]
#[command(
    after_help = "Examples:\n  imgctl prune\n  imgctl prune -a -f\n  imgctl prune --dry-run --keep-storage 10GB"
)]
pub struct PruneArgs {
    /// Also remove the build cache (step results and RUN --mount=type=cache dirs).
    #[arg(long)]
    pub build_cache: bool,
    /// Also remove every image no container uses (not only what no image uses).
    #[arg(short, long)]
    pub all: bool,
    /// Do not ask for confirmation (asked only on a terminal).
    #[arg(short, long)]
    pub force: bool,
    /// List what would be removed, with sizes, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Keep unreferenced unpacked layers, least recently used removed first, while
    /// the store fits in SIZE (e.g. 500m, 2g; powers of 1024).
    #[arg(long, value_name = "SIZE")]
    pub keep_storage: Option<String>,
    /// Output format (`json` follows schemas/prune.schema.json).
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Set by `system prune`: stopped containers go first.
    #[arg(skip)]
    pub containers: bool,
    /// Set by `container prune`: only stopped containers.
    #[arg(skip)]
    pub containers_only: bool,
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
    reclaimable: Reclaimable,
    pool_files: u64,
    pool_bytes: u64,
}

/// What `prune` would free, per kind (bytes and counts).
#[derive(serde::Serialize, Default)]
struct Reclaimable {
    blobs: u64,
    blob_bytes: u64,
    ingest_bytes: u64,
    layers: u64,
    layer_bytes: u64,
    chains: u64,
    pool_files: u64,
    pool_bytes: u64,
    active_snapshots: u64,
    active_bytes: u64,
    temp_bytes: u64,
}

pub fn df(g: &Globals, a: DfArgs) -> anyhow::Result<ExitCode> {
    let (u, l) = catalog::disk_usage(&g.root)?;
    let bc = crate::build::cache::Cache::usage(&g.root);
    let gc = cgc::reclaimable(&g.root)?;
    let (pool_files, pool_bytes) = cgc::pool_usage(&g.root)?;
    let (layers_n, layer_b) = gc.count(ItemKind::Layer);
    let (chains_n, _) = gc.count(ItemKind::Chain);
    let (pool_n, pool_b) = gc.count(ItemKind::Pool);
    let (active_n, active_b) = gc.count(ItemKind::Active);
    let (_, temp_b) = gc.count(ItemKind::Temp);
    let r = Reclaimable {
        blobs: (u.blobs - u.referenced_blobs.min(u.blobs)) as u64,
        blob_bytes: u.blob_bytes - u.referenced_bytes.min(u.blob_bytes),
        ingest_bytes: u.ingest_bytes,
        layers: layers_n as u64,
        layer_bytes: layer_b,
        chains: chains_n as u64,
        pool_files: pool_n as u64,
        pool_bytes: pool_b,
        active_snapshots: active_n as u64,
        active_bytes: active_b,
        temp_bytes: temp_b,
    };
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
            reclaimable: r,
            pool_files,
            pool_bytes,
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
            human_size(r.blob_bytes),
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
            human_size(r.layer_bytes + r.temp_bytes),
        ],
        [
            "Dedup pool".to_string(),
            pool_files.to_string(),
            human_size(pool_bytes),
            human_size(r.pool_bytes),
        ],
        [
            "Snapshots (containers, views)".to_string(),
            "-".to_string(),
            "-".to_string(),
            human_size(r.active_bytes),
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

/// `prune --format json` (schemas/prune.schema.json).
#[derive(serde::Serialize)]
struct PruneJson {
    dry_run: bool,
    containers: Vec<cgc::RemovedContainer>,
    untagged: Vec<String>,
    items: Vec<PruneItem>,
    total_bytes: u64,
}

#[derive(serde::Serialize)]
struct PruneItem {
    kind: &'static str,
    id: String,
    bytes: u64,
}

fn kind_name(k: ItemKind) -> &'static str {
    match k {
        ItemKind::Active => "snapshot",
        ItemKind::Chain => "chain",
        ItemKind::Layer => "layer",
        ItemKind::Pool => "pool-file",
        ItemKind::Temp => "temp",
    }
}

/// Ask on a terminal (Docker's wording); true to go on. Off a terminal, go on.
fn confirm(what: &str) -> anyhow::Result<bool> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Ok(true);
    }
    eprint!("WARNING! This will remove:\n{what}\nAre you sure you want to continue? [y/N] ");
    let mut line = String::new();
    stdin.lock().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes" | "Yes"))
}

pub fn prune(g: &Globals, a: PruneArgs) -> anyhow::Result<ExitCode> {
    let keep_storage = match &a.keep_storage {
        Some(s) => Some(
            u64::try_from(crate::container::parse::bytes("--keep-storage", s)?)
                .context("--keep-storage")?,
        ),
        None => None,
    };
    if !a.force && !a.dry_run {
        let mut what = String::new();
        if a.containers || a.containers_only {
            what.push_str("  - all stopped containers\n");
        }
        if !a.containers_only {
            what.push_str(if a.all {
                "  - all images without at least one container associated to them\n"
            } else {
                "  - all blobs, unpacked layers and snapshots no image or container uses\n"
            });
            if a.build_cache {
                what.push_str("  - all build cache\n");
            }
        }
        if !confirm(what.trim_end())? {
            return Err(Exit {
                code: 1,
                message: Some("prune cancelled; nothing was removed".into()),
            }
            .into());
        }
    }
    let mut out = std::io::stdout().lock();
    if a.containers_only {
        let removed = cgc::prune_containers(&g.root, a.dry_run)?;
        let verb = if a.dry_run { "Would delete" } else { "Deleted" };
        let mut total = 0;
        if !removed.is_empty() {
            writeln!(out, "{verb} Containers:")?;
        }
        for c in &removed {
            writeln!(out, "{}", c.id)?;
            total += c.bytes;
        }
        writeln!(out, "\nTotal reclaimed space: {}", human_size(total))?;
        return Ok(ExitCode::SUCCESS);
    }
    if a.build_cache && !a.dry_run {
        let bc = crate::build::cache::Cache::prune(&g.root).context("prune the build cache")?;
        writeln!(
            out,
            "Deleted build cache: {} entries, {} cache mounts ({})",
            bc.entries,
            bc.mounts,
            human_size(bc.bytes)
        )?;
    }
    let opts = cgc::PruneOptions {
        dry_run: a.dry_run,
        keep_storage,
        containers: a.containers,
        all_images: a.all,
    };
    let pruned = cgc::prune(&g.root, &opts)?;
    let copies = if a.dry_run {
        Default::default()
    } else {
        crate::container::shifted::prune(&g.root)?
    };
    let mut items: Vec<PruneItem> = pruned
        .store
        .blobs
        .iter()
        .map(|(d, size)| PruneItem {
            kind: "blob",
            id: d.to_string(),
            bytes: *size,
        })
        .collect();
    for (kind, bytes) in [
        ("partial-downloads", pruned.store.ingest_bytes),
        ("tmp", pruned.store.tmp_bytes),
    ] {
        if bytes > 0 {
            items.push(PruneItem {
                kind,
                id: String::new(),
                bytes,
            });
        }
    }
    items.extend(pruned.store.snapshots.items.iter().map(|i| PruneItem {
        kind: kind_name(i.kind),
        id: i.id.clone(),
        bytes: i.bytes,
    }));
    let total = pruned.store.bytes() + pruned.containers.iter().map(|c| c.bytes).sum::<u64>();
    if a.format == Format::Json {
        let j = PruneJson {
            dry_run: a.dry_run,
            containers: pruned.containers,
            untagged: pruned.untagged,
            items,
            total_bytes: total,
        };
        serde_json::to_writer_pretty(&mut out, &j)?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    let verb = if a.dry_run { "Would delete" } else { "Deleted" };
    for c in &pruned.containers {
        writeln!(out, "{verb} container: {}", c.id)?;
    }
    for n in &pruned.untagged {
        writeln!(
            out,
            "{}: {n}",
            if a.dry_run { "Would untag" } else { "Untagged" }
        )?;
    }
    if copies.removed > 0 {
        writeln!(
            out,
            "Deleted user-namespace rootfs copies: {}",
            copies.removed
        )?;
    }
    let (pool_n, pool_b) = items
        .iter()
        .filter(|i| i.kind == "pool-file")
        .fold((0, 0), |(n, b), i| (n + 1, b + i.bytes));
    for i in &items {
        match i.kind {
            "pool-file" => {}
            "blob" => writeln!(out, "{verb}: {}", i.id)?,
            k if i.id.is_empty() => writeln!(out, "{verb} {k}: {}", human_size(i.bytes))?,
            k => writeln!(out, "{verb} {k}: {} ({})", i.id, human_size(i.bytes))?,
        }
    }
    if pool_n > 0 {
        // Their bytes count with the layers that held their last other link.
        writeln!(
            out,
            "{verb} {pool_n} dedup-pool files ({} not counted above)",
            human_size(pool_b)
        )?;
    }
    writeln!(
        out,
        "Total {} space: {}",
        if a.dry_run {
            "reclaimable"
        } else {
            "reclaimed"
        },
        human_size(total)
    )?;
    Ok(ExitCode::SUCCESS)
}
