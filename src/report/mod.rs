//! Image size reports (`imgctl size`): per-layer compressed and uncompressed bytes,
//! entry and file counts, the history line that made each layer; dive's
//! `inefficientBytes` and `efficiencyScore` exactly as dive 0.13.1 computes them;
//! imgctl's complete wasted bytes; the largest files and directories; a comparison
//! with a base image; CI rules (thresholds and dive's `.dive-ci`), and renderers
//! (table, JSON, Markdown, JUnit). See docs/size.md.
//!
//! Layers are read as streams (decompressed and listed, never extracted) from the
//! store, an OCI layout or straight from a registry, several at once; memory is one
//! small record per tar entry.

mod compare;
mod dive;
mod probe;
mod render;
mod rules;
mod scan;
mod source;
mod waste;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use compare::{compare, Comparison};
pub use dive::{efficiency, DiveFigures, Inefficiency};
pub use probe::{probe, ProbeReport, ProbeRequest};
pub use render::{human, render_junit, render_markdown, render_table};
pub use rules::{evaluate, parse_amount, parse_dive_bytes, Amount, Rule, RuleResult, Rules};
pub use scan::{Entry, Kind};
pub use waste::{Largest, Reason, Waste};

use crate::oci::{Digest, Platform};

/// Version of the JSON report (`schemas/size-report.schema.json`).
pub const SCHEMA_VERSION: u32 = 1;

/// Errors of size analysis.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Resolve(#[from] crate::image::ImageError),
    #[error(transparent)]
    Remote(crate::registry::RegistryError),
    #[error("{reference}: {source}")]
    Registry {
        reference: String,
        #[source]
        source: crate::registry::RegistryError,
    },
    #[error("{reference}: not in the store and not a registry reference ({detail}); pull it, or name the registry: docker://REFERENCE")]
    BadReference { reference: String, detail: String },
    #[error("layer {layer}: {source}")]
    Layer {
        layer: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    LayerFormat(crate::layer::LayerError),
    #[error("layer {layer}: uncompressed content hashes to {found}, the config says {expected}")]
    DiffId {
        layer: String,
        expected: Digest,
        found: Digest,
    },
    #[error("image {reference}: {detail}")]
    Invalid { reference: String, detail: String },
    #[error("rules file {path}: line {line}: {detail}")]
    RulesFile {
        path: PathBuf,
        line: usize,
        detail: String,
    },
    #[error("rules file {path}: {source}")]
    RulesRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {detail}")]
    BadThreshold { what: String, detail: String },
    #[error("cannot start the analysis: {0}")]
    Runtime(std::io::Error),
}

/// How to analyse.
#[derive(Debug, Clone)]
pub struct SizeOptions {
    /// Store root (for names and IDs).
    pub root: PathBuf,
    /// How many of the largest files and directories to list.
    pub top: usize,
    /// Platform chosen from a multi-platform registry image.
    pub platform: Platform,
    /// Layers read at once.
    pub jobs: usize,
}

impl SizeOptions {
    pub fn new(root: PathBuf) -> SizeOptions {
        SizeOptions {
            root,
            top: 10,
            platform: Platform::host(),
            jobs: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
                .min(4),
        }
    }
}

/// Progress of an analysis (called from the reading threads).
pub trait Progress: Sync {
    /// Compressed bytes of layer `index` read so far.
    fn bytes(&self, _index: usize, _read: u64, _size: u64) {}
    /// Layer `index` is done; `done` of `total` layers are.
    fn layer_done(&self, _layer: &LayerReport, _done: usize, _total: usize) {}
}

impl Progress for () {}

/// Where the image came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageInfo {
    /// The argument as given.
    pub reference: String,
    /// `store`, `oci-layout` or `registry`.
    pub source: String,
    pub manifest: Digest,
    pub config: Digest,
    pub os: String,
    pub architecture: String,
}

/// One layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerReport {
    pub index: usize,
    pub digest: Digest,
    pub diff_id: Digest,
    pub media_type: String,
    pub compressed_bytes: u64,
    /// Bytes of the uncompressed tar stream.
    pub uncompressed_bytes: u64,
    /// Tar entries (PAX and GNU long-name records not counted).
    pub entries: u64,
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    /// Devices and FIFOs.
    pub others: u64,
    pub whiteouts: u64,
    pub opaque_dirs: u64,
    /// Content bytes of the regular files.
    pub file_bytes: u64,
    /// The history line that made the layer (the Buildfile instruction).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// Index of that entry in the config's history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_index: Option<usize>,
}

/// A history entry that made no layer (ENV, CMD, LABEL...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmptyLayer {
    pub history_index: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
}

/// Totals over the image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    pub layers: usize,
    pub empty_layers: usize,
    pub compressed_bytes: u64,
    pub uncompressed_bytes: u64,
    pub entries: u64,
    pub files: u64,
    pub file_bytes: u64,
    /// Regular files in the final filesystem and their bytes.
    pub visible_files: u64,
    pub visible_bytes: u64,
}

/// dive's figures, named as dive's `--json` names them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiveReport {
    pub size_bytes: u64,
    pub user_size_bytes: u64,
    pub inefficient_bytes: u64,
    pub efficiency_score: f64,
    /// `inefficient_bytes / user_size_bytes`, a ratio (dive's highestUserWastedPercent);
    /// null when there are no user bytes.
    pub user_wasted_ratio: Option<f64>,
    pub inefficient_files: Vec<DiveFile>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiveFile {
    pub path: String,
    pub count: usize,
    pub size_bytes: u64,
}

/// imgctl's complete wasted bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WasteReport {
    pub bytes: u64,
    /// Of `totals.file_bytes`, 0-100.
    pub percent: f64,
    pub items: Vec<Waste>,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SizeReport {
    pub schema_version: u32,
    pub image: ImageInfo,
    pub totals: Totals,
    pub layers: Vec<LayerReport>,
    pub empty_layers: Vec<EmptyLayer>,
    pub dive: DiveReport,
    pub wasted: WasteReport,
    pub largest_files: Vec<Largest>,
    pub largest_dirs: Vec<Largest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compare: Option<Comparison>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<Vec<RuleResult>>,
    /// `--probe`: start-up time and peak memory of a command run in the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<ProbeReport>,
}

impl SizeReport {
    /// True when no rule failed.
    pub fn passed(&self) -> bool {
        self.rules
            .as_ref()
            .is_none_or(|r| r.iter().all(|x| x.passed))
    }
}

/// A report with the flattened filesystem kept for comparisons.
pub struct Analysis {
    pub report: SizeReport,
    flattened: waste::Flattened,
}

/// Analyse `image` (a store name or ID, `oci:DIR[:TAG]`, or a registry reference).
pub fn analyze(
    image: &str,
    opts: &SizeOptions,
    progress: &dyn Progress,
) -> Result<Analysis, ReportError> {
    let opened = source::open(image, opts)?;
    let scanned = source::scan_layers(&opened, opts.jobs, progress)?;
    Ok(build(image, &opened, scanned, opts.top))
}

fn count(l: &scan::Scanned, k: Kind) -> u64 {
    l.entries.iter().filter(|e| e.kind == k).count() as u64
}

/// The figures of one layer. History entries that made a layer (not
/// `empty_layer`) belong to the layers in order, as dive pairs them.
fn layer_summary(img: &source::Opened, i: usize, s: &scan::Scanned) -> LayerReport {
    let hist = img
        .config
        .history
        .iter()
        .enumerate()
        .filter(|(_, h)| !h.empty_layer)
        .nth(i);
    let d = &img.layers[i];
    LayerReport {
        index: i,
        digest: d.digest.clone(),
        diff_id: img.config.rootfs.diff_ids[i].clone(),
        media_type: d.media_type.clone(),
        compressed_bytes: s.compressed,
        uncompressed_bytes: s.uncompressed,
        entries: s.entries.len() as u64,
        files: count(s, Kind::File),
        dirs: count(s, Kind::Dir),
        symlinks: count(s, Kind::Symlink),
        hardlinks: count(s, Kind::Hardlink),
        others: count(s, Kind::Device) + count(s, Kind::Fifo),
        whiteouts: count(s, Kind::Whiteout),
        opaque_dirs: count(s, Kind::Opaque),
        file_bytes: s
            .entries
            .iter()
            .filter(|e| e.kind == Kind::File)
            .map(|e| e.size)
            .sum(),
        created_by: hist.and_then(|(_, h)| h.created_by.clone()),
        history_index: hist.map(|(i, _)| i),
    }
}

fn build(
    reference: &str,
    img: &source::Opened,
    scanned: Vec<scan::Scanned>,
    top: usize,
) -> Analysis {
    let empty_layers: Vec<EmptyLayer> = img
        .config
        .history
        .iter()
        .enumerate()
        .filter(|(_, h)| h.empty_layer)
        .map(|(i, h)| EmptyLayer {
            history_index: i,
            created_by: h.created_by.clone(),
        })
        .collect();
    let layers: Vec<LayerReport> = scanned
        .iter()
        .enumerate()
        .map(|(i, s)| layer_summary(img, i, s))
        .collect();
    let entry_lists: Vec<&[Entry]> = scanned.iter().map(|s| s.entries.as_slice()).collect();
    // dive's figures and imgctl's own are independent walks of the same entries:
    // one on each core.
    let (d, (flattened, (largest_files, largest_dirs))) = std::thread::scope(|s| {
        let dive = s.spawn(|| dive::efficiency(&entry_lists));
        let flattened = waste::flatten(&entry_lists);
        let largest = waste::largest(&flattened, top);
        let d = dive.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
        (d, (flattened, largest))
    });
    let file_bytes: u64 = layers.iter().map(|l| l.file_bytes).sum();
    let visible: Vec<&waste::Visible> = flattened
        .paths
        .values()
        .filter(|v| v.kind == Kind::File)
        .collect();
    let totals = Totals {
        layers: layers.len(),
        empty_layers: empty_layers.len(),
        compressed_bytes: layers.iter().map(|l| l.compressed_bytes).sum(),
        uncompressed_bytes: layers.iter().map(|l| l.uncompressed_bytes).sum(),
        entries: layers.iter().map(|l| l.entries).sum(),
        files: layers.iter().map(|l| l.files).sum(),
        file_bytes,
        visible_files: visible.len() as u64,
        visible_bytes: visible.iter().map(|v| v.size).sum(),
    };
    let wasted_bytes: u64 = flattened.waste.iter().map(|w| w.bytes).sum();
    let report = SizeReport {
        schema_version: SCHEMA_VERSION,
        image: ImageInfo {
            reference: reference.to_string(),
            source: img.kind.to_string(),
            manifest: img.manifest.clone(),
            config: img.config_digest.clone(),
            os: img.config.os.clone(),
            architecture: img.config.architecture.clone(),
        },
        totals,
        layers,
        empty_layers,
        dive: DiveReport {
            size_bytes: d.size_bytes,
            user_size_bytes: d.user_size_bytes,
            inefficient_bytes: d.inefficient_bytes,
            efficiency_score: d.efficiency_score,
            user_wasted_ratio: (d.user_size_bytes > 0).then_some(d.user_wasted_percent),
            inefficient_files: d
                .inefficiencies
                .iter()
                .map(|i| DiveFile {
                    path: i.path.clone(),
                    count: i.count,
                    size_bytes: i.size_bytes,
                })
                .collect(),
        },
        wasted: WasteReport {
            bytes: wasted_bytes,
            percent: if file_bytes == 0 {
                0.0
            } else {
                wasted_bytes as f64 * 100.0 / file_bytes as f64
            },
            items: flattened.waste.clone(),
        },
        largest_files,
        largest_dirs,
        compare: None,
        rules: None,
        probe: None,
    };
    Analysis { report, flattened }
}

/// What `imgctl size` asks for.
#[derive(Debug, Clone)]
pub struct SizeRequest {
    pub image: String,
    pub compare: Option<String>,
    pub rules: Rules,
    pub opts: SizeOptions,
    /// `--probe`: run a command in the image and add its figures.
    pub probe: Option<ProbeRequest>,
}

/// Analyse an image, compare it with a base if asked, and judge the rules.
pub fn size(req: &SizeRequest, progress: &dyn Progress) -> Result<SizeReport, ReportError> {
    if req.rules.needs_compare() && req.compare.is_none() {
        return Err(ReportError::BadThreshold {
            what: "max-growth".into(),
            detail: "needs a base image: add --compare BASE".into(),
        });
    }
    let new = analyze(&req.image, &req.opts, progress)?;
    let mut report = match &req.compare {
        Some(b) => {
            let base = analyze(b, &req.opts, progress)?;
            let c = compare(&base, &new, req.opts.top);
            let mut r = new.report;
            r.compare = Some(c);
            r
        }
        None => new.report,
    };
    if let Some(p) = &req.probe {
        report.probe = Some(probe(&req.opts.root, &req.image, p)?);
    }
    if !req.rules.is_empty() {
        report.rules = Some(evaluate(&report, &req.rules));
    }
    Ok(report)
}
