//! Comparing an image with a base (`--compare BASE`): total and per-layer growth,
//! layers shared (same diff ID), and files added, removed and changed in the final
//! filesystems, sorted by the size of their effect.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::scan::Kind;
use super::{Analysis, ImageInfo, LayerReport};

/// How a path differs from the base.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    Added,
    Removed,
    Changed,
}

/// One changed path (regular files; other kinds count with 0 bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileChange {
    pub path: String,
    pub change: Change,
    pub base_bytes: u64,
    pub bytes: u64,
    pub delta: i64,
}

/// A layer only one of the two images has.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerChange {
    pub index: usize,
    pub diff_id: crate::oci::Digest,
    pub compressed_bytes: u64,
    pub uncompressed_bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
}

/// The comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub base: ImageInfo,
    pub base_compressed_bytes: u64,
    pub base_uncompressed_bytes: u64,
    pub compressed_delta: i64,
    pub uncompressed_delta: i64,
    /// Layers of this image whose diff ID the base has too.
    pub layers_shared: usize,
    pub layers_added: Vec<LayerChange>,
    pub layers_removed: Vec<LayerChange>,
    pub files_added: usize,
    pub files_removed: usize,
    pub files_changed: usize,
    /// Largest effect first (at most `top` when built with a limit).
    pub files: Vec<FileChange>,
}

impl Comparison {
    /// Uncompressed growth in percent of the base (0 for an empty base).
    pub fn growth_percent(&self) -> f64 {
        if self.base_uncompressed_bytes == 0 {
            0.0
        } else {
            self.uncompressed_delta as f64 * 100.0 / self.base_uncompressed_bytes as f64
        }
    }
}

fn layer_change(l: &LayerReport) -> LayerChange {
    LayerChange {
        index: l.index,
        diff_id: l.diff_id.clone(),
        compressed_bytes: l.compressed_bytes,
        uncompressed_bytes: l.uncompressed_bytes,
        created_by: l.created_by.clone(),
    }
}

/// Compare `new` with `base`; keep the `top` largest file changes (all counted).
pub fn compare(base: &Analysis, new: &Analysis, top: usize) -> Comparison {
    let (b, n) = (&base.report, &new.report);
    let base_ids: BTreeSet<_> = b.layers.iter().map(|l| &l.diff_id).collect();
    let new_ids: BTreeSet<_> = n.layers.iter().map(|l| &l.diff_id).collect();
    let layers_added: Vec<LayerChange> = n
        .layers
        .iter()
        .filter(|l| !base_ids.contains(&l.diff_id))
        .map(layer_change)
        .collect();
    let layers_removed: Vec<LayerChange> = b
        .layers
        .iter()
        .filter(|l| !new_ids.contains(&l.diff_id))
        .map(layer_change)
        .collect();
    let size = |k: Kind, s: u64| if k == Kind::File { s } else { 0 };
    let mut files = Vec::new();
    let (bp, np) = (&base.flattened.paths, &new.flattened.paths);
    for (p, v) in np {
        match bp.get(p) {
            None => files.push(FileChange {
                path: format!("/{p}"),
                change: Change::Added,
                base_bytes: 0,
                bytes: size(v.kind, v.size),
                delta: size(v.kind, v.size) as i64,
            }),
            Some(o) if o.kind != v.kind || o.size != v.size || o.content != v.content => {
                let (was, now) = (size(o.kind, o.size), size(v.kind, v.size));
                files.push(FileChange {
                    path: format!("/{p}"),
                    change: Change::Changed,
                    base_bytes: was,
                    bytes: now,
                    delta: now as i64 - was as i64,
                })
            }
            Some(_) => {}
        }
    }
    for (p, o) in bp {
        if !np.contains_key(p) {
            files.push(FileChange {
                path: format!("/{p}"),
                change: Change::Removed,
                base_bytes: size(o.kind, o.size),
                bytes: 0,
                delta: -(size(o.kind, o.size) as i64),
            });
        }
    }
    let count = |c: Change| files.iter().filter(|f| f.change == c).count();
    let (files_added, files_removed, files_changed) = (
        count(Change::Added),
        count(Change::Removed),
        count(Change::Changed),
    );
    files.sort_by(|a, b| {
        b.delta
            .unsigned_abs()
            .cmp(&a.delta.unsigned_abs())
            .then_with(|| a.path.cmp(&b.path))
    });
    files.truncate(top);
    Comparison {
        base: b.image.clone(),
        base_compressed_bytes: b.totals.compressed_bytes,
        base_uncompressed_bytes: b.totals.uncompressed_bytes,
        compressed_delta: n.totals.compressed_bytes as i64 - b.totals.compressed_bytes as i64,
        uncompressed_delta: n.totals.uncompressed_bytes as i64 - b.totals.uncompressed_bytes as i64,
        layers_shared: n
            .layers
            .iter()
            .filter(|l| base_ids.contains(&l.diff_id))
            .count(),
        layers_added,
        layers_removed,
        files_added,
        files_removed,
        files_changed,
        files,
    }
}
