//! Garbage collection of the whole store: blobs no image references, partial
//! downloads and interrupted writes (the store's part), then snapshots no image and
//! no live container or view uses (the snapshotter's part, `snapshot::gc`).
//!
//! Everything runs under the store's exclusive GC lock, which waits for every
//! [`crate::store::Lease`]: pulls, builds and mounts hold one from before they write
//! a blob or a layer until the thing they made is referenced (a name for blobs, a
//! chain plus a prepared snapshot for layers), so a prune racing them never deletes
//! what they are about to use.

use std::path::Path;

use super::ImageError;
use crate::oci::{parse_manifest, AnyManifest, Descriptor, Digest};
use crate::snapshot::gc::{self, GcOptions, GcReport};
use crate::snapshot::Overlay;
use crate::store::{Store, StoreError, MAX_MANIFEST_SIZE};

/// What `prune` may do.
#[derive(Debug, Clone, Copy, Default)]
pub struct PruneOptions {
    /// Only report what would be removed.
    pub dry_run: bool,
    /// Keep unreferenced unpacked layers (least recently used go first) while the
    /// store stays within this many bytes.
    pub keep_storage: Option<u64>,
}

/// What a prune removed (or would remove).
#[derive(Debug, Clone, Default)]
pub struct PruneReport {
    /// Blobs no image references.
    pub blobs: Vec<(Digest, u64)>,
    /// Partial downloads no process was writing.
    pub ingest_bytes: u64,
    /// Temporary files of interrupted atomic writes.
    pub tmp_bytes: u64,
    /// Snapshots: stale active ones, chains, layers, pool files, temporary layers.
    pub snapshots: GcReport,
}

impl PruneReport {
    /// Every byte freed.
    pub fn bytes(&self) -> u64 {
        self.blobs.iter().map(|b| b.1).sum::<u64>()
            + self.ingest_bytes
            + self.tmp_bytes
            + self.snapshots.bytes()
    }
}

fn store_err(what: &str) -> impl FnOnce(StoreError) -> ImageError + '_ {
    move |source| ImageError::Store {
        name: what.to_string(),
        source,
    }
}

/// The chain IDs of every image manifest the index reaches whose config is in the
/// store (every platform of an index, not only this host's). An image that cannot
/// be read protects no chain: unpacked layers are a cache rebuilt from blobs.
pub fn image_chains(store: &Store) -> Result<Vec<Digest>, ImageError> {
    let index = store.index().map_err(store_err("index.json"))?;
    let mut todo: Vec<Descriptor> = index.manifests;
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    while let Some(desc) = todo.pop() {
        if !seen.insert(desc.digest.clone()) || !store.has_blob(&desc.digest) {
            continue;
        }
        let Ok(body) = store.read_blob(&desc.digest, MAX_MANIFEST_SIZE) else {
            tracing::warn!(
                "prune: manifest {} unreadable; its layers are not kept",
                desc.digest
            );
            continue;
        };
        match parse_manifest(&desc.media_type, &body) {
            Ok(AnyManifest::Index(i)) => todo.extend(i.manifests),
            Ok(AnyManifest::Image(m)) => {
                if !store.has_blob(&m.config.digest) {
                    continue;
                }
                match super::read_config(store, &m.config.digest) {
                    Ok(c) => out.extend(crate::oci::chain_id(&c.rootfs.diff_ids)),
                    Err(e) => tracing::warn!("prune: {e}; its layers are not kept"),
                }
            }
            Err(e) => tracing::warn!("prune: manifest {}: {e}", desc.digest),
        }
    }
    Ok(out)
}

/// Prune the store at `root`. `live(key)` says whether an active snapshot or view
/// still has an owner (containers know; see `container::gc`).
pub fn prune(
    root: &Path,
    opts: &PruneOptions,
    live: &dyn Fn(&str) -> bool,
) -> Result<PruneReport, ImageError> {
    let store = Store::open_existing(root).map_err(store_err("open store"))?;
    if !root.join("oci-layout").exists() {
        return Ok(PruneReport::default());
    }
    let lock = store.gc_lock().map_err(store_err("GC lock"))?;
    let blobs = store
        .prune_locked(&lock, opts.dry_run)
        .map_err(store_err("prune"))?;
    let mut report = PruneReport {
        ingest_bytes: blobs.ingest_removed,
        tmp_bytes: blobs.tmp_removed,
        blobs: blobs.removed,
        ..PruneReport::default()
    };
    if !root.join("snapshots").is_dir() {
        return Ok(report);
    }
    let roots = image_chains(&store)?;
    let snaps = Overlay::open(root)?;
    let other_bytes = match opts.keep_storage {
        Some(_) => {
            let u = store.usage().map_err(store_err("measure store"))?;
            let gone: u64 = report.blobs.iter().map(|b| b.1).sum();
            (u.blob_bytes + u.ingest_bytes).saturating_sub(if opts.dry_run { gone } else { 0 })
        }
        None => 0,
    };
    report.snapshots = gc::collect(
        &snaps,
        &roots,
        live,
        &GcOptions {
            dry_run: opts.dry_run,
            keep_storage: opts.keep_storage,
            other_bytes,
        },
    )?;
    Ok(report)
}

/// What `prune` would free in `snapshots/`, per kind, without the GC lock (for
/// `df`; a pull running meanwhile may make it stale).
pub fn reclaimable_snapshots(
    root: &Path,
    live: &dyn Fn(&str) -> bool,
) -> Result<GcReport, ImageError> {
    if !root.join("snapshots").is_dir() || !root.join("oci-layout").exists() {
        return Ok(GcReport::default());
    }
    let store = Store::open_existing(root).map_err(store_err("open store"))?;
    let roots = image_chains(&store)?;
    let snaps = Overlay::open(root)?;
    Ok(gc::reclaimable(&snaps, &roots, live)?)
}
