//! Images on disk: from a stored manifest to a chain of committed snapshots (the one
//! place that joins the blob store, layer application and snapshots), and flattening
//! an image into one directory for export.

pub mod ocidir;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Deserialize;

use crate::layer::{self, ApplyMode, ApplyOptions, Compression, DevicePolicy, Limits};
use crate::oci::Digest;
use crate::snapshot::{self, Overlay, Snapshotter};
use crate::store::BlobReader;

pub use ocidir::OciDir;

/// Manifests and configs larger than this are refused (SECURITY-TESTS B23).
const MAX_JSON: u64 = 4 << 20;

/// Errors of image unpacking.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("reading blob {digest}: {source}")]
    Blob {
        digest: Digest,
        #[source]
        source: std::io::Error,
    },
    #[error("blob {digest} is not a valid {what}: {reason}")]
    Invalid {
        digest: Digest,
        what: &'static str,
        reason: String,
    },
    #[error("image {digest} has {layers} layers but its config lists {diff_ids} diff IDs")]
    LayerCount {
        digest: Digest,
        layers: usize,
        diff_ids: usize,
    },
    #[error("index {digest} has no manifest for {os}/{arch}")]
    NoPlatform {
        digest: Digest,
        os: String,
        arch: String,
    },
    #[error(transparent)]
    Layer(#[from] layer::LayerError),
    #[error(transparent)]
    Snapshot(#[from] snapshot::SnapshotError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: Digest,
    #[serde(default)]
    pub size: i64,
    #[serde(default)]
    pub platform: Option<Platform>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
}

#[derive(Debug, Deserialize)]
struct ManifestOrIndex {
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
}

#[derive(Debug, Deserialize)]
struct Config {
    rootfs: RootFs,
}

#[derive(Debug, Deserialize)]
struct RootFs {
    diff_ids: Vec<Digest>,
}

/// An image manifest resolved to its layers and their diff IDs.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub manifest: Digest,
    pub config: Digest,
    pub layers: Vec<Descriptor>,
    pub diff_ids: Vec<Digest>,
}

impl Resolved {
    /// The chain ID of the whole image (`None` for an image without layers).
    pub fn chain_id(&self) -> Option<Digest> {
        crate::oci::chain_id(&self.diff_ids)
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(
    blobs: &dyn BlobReader,
    digest: &Digest,
    what: &'static str,
) -> Result<T, ImageError> {
    let f = blobs.open_blob(digest).map_err(|source| ImageError::Blob {
        digest: digest.clone(),
        source,
    })?;
    let mut data = Vec::new();
    f.take(MAX_JSON + 1)
        .read_to_end(&mut data)
        .map_err(|source| ImageError::Blob {
            digest: digest.clone(),
            source,
        })?;
    if data.len() as u64 > MAX_JSON {
        return Err(ImageError::Invalid {
            digest: digest.clone(),
            what,
            reason: format!("larger than {MAX_JSON} bytes"),
        });
    }
    serde_json::from_slice(&data).map_err(|e| ImageError::Invalid {
        digest: digest.clone(),
        what,
        reason: e.to_string(),
    })
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// Read a manifest (following an index to this host's platform) and its config.
pub fn resolve(blobs: &dyn BlobReader, manifest: &Digest) -> Result<Resolved, ImageError> {
    let mut digest = manifest.clone();
    for _ in 0..2 {
        let m: ManifestOrIndex = read_json(blobs, &digest, "manifest")?;
        if let Some(list) = m.manifests {
            let pick = list.iter().find(|d| {
                d.platform
                    .as_ref()
                    .map(|p| p.os == "linux" && p.architecture == go_arch())
                    .unwrap_or(false)
            });
            digest = pick
                .ok_or_else(|| ImageError::NoPlatform {
                    digest: digest.clone(),
                    os: "linux".into(),
                    arch: go_arch().into(),
                })?
                .digest
                .clone();
            continue;
        }
        let invalid = |reason: &str| ImageError::Invalid {
            digest: digest.clone(),
            what: "manifest",
            reason: reason.into(),
        };
        let config = m.config.ok_or_else(|| invalid("no config"))?;
        let layers = m.layers.ok_or_else(|| invalid("no layers"))?;
        let cfg: Config = read_json(blobs, &config.digest, "image config")?;
        if cfg.rootfs.diff_ids.len() != layers.len() {
            return Err(ImageError::LayerCount {
                digest,
                layers: layers.len(),
                diff_ids: cfg.rootfs.diff_ids.len(),
            });
        }
        return Ok(Resolved {
            manifest: digest,
            config: config.digest,
            layers,
            diff_ids: cfg.rootfs.diff_ids,
        });
    }
    Err(ImageError::Invalid {
        digest,
        what: "manifest",
        reason: "an index nested in an index".into(),
    })
}

/// Options for [`unpack_with`].
#[derive(Debug, Clone)]
pub struct UnpackOptions {
    pub limits: Limits,
    /// Hardlink identical files into the store's dedup pool after unpacking.
    pub dedup: bool,
    /// Only files at least this large are deduplicated.
    pub dedup_min_size: u64,
    /// Layers unpacked at the same time.
    pub parallel: usize,
    /// How new layers are stored.
    pub format: LayerFormat,
}

/// How a layer is kept on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerFormat {
    /// Extracted into a directory (one inode per entry).
    Files,
    /// Converted into one EROFS image file, mounted when used (Linux 6.12+).
    Erofs,
}

impl Default for UnpackOptions {
    fn default() -> UnpackOptions {
        UnpackOptions {
            limits: Limits::default(),
            dedup: true,
            dedup_min_size: snapshot::dedup::DEFAULT_MIN_SIZE,
            parallel: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
                .clamp(1, 8),
            format: LayerFormat::Files,
        }
    }
}

/// What an unpack did.
#[derive(Debug, Clone)]
pub struct Unpacked {
    pub resolved: Resolved,
    /// The top chain ID, `None` for an image without layers.
    pub chain_id: Option<Digest>,
    /// Layers actually extracted (the others were already there).
    pub layers_unpacked: usize,
    pub dedup: snapshot::DedupStats,
}

/// Unpack the image `manifest` (read through `blobs`) into the overlay snapshots of
/// the store at `root`. This is what `imgctl pull` calls after storing an image.
pub fn unpack(
    blobs: &dyn BlobReader,
    manifest: &Digest,
    root: &Path,
) -> Result<Unpacked, ImageError> {
    unpack_with(blobs, manifest, root, &UnpackOptions::default())
}

/// [`unpack`] with options. Layers are independent in overlay form, so every missing
/// layer is extracted at once (up to `parallel`), each verified against its diff ID
/// before it is published; the chain is then committed bottom-up.
pub fn unpack_with(
    blobs: &dyn BlobReader,
    manifest: &Digest,
    root: &Path,
    opts: &UnpackOptions,
) -> Result<Unpacked, ImageError> {
    let resolved = resolve(blobs, manifest)?;
    let snaps = Overlay::open(root)?;
    // Leftovers of an unpack that was killed (never visible as layers) go first.
    snaps.cleanup()?;
    let work: Vec<(usize, &Descriptor, &Digest)> = resolved
        .layers
        .iter()
        .zip(&resolved.diff_ids)
        .enumerate()
        .map(|(i, (l, d))| (i, l, d))
        .collect();
    let next = Mutex::new(0usize);
    let results: Mutex<Vec<Result<(bool, snapshot::DedupStats), ImageError>>> =
        Mutex::new(Vec::new());
    let threads = opts.parallel.max(1).min(work.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = {
                    let Ok(mut n) = next.lock() else { return };
                    let i = *n;
                    *n += 1;
                    i
                };
                let Some((_, desc, diff_id)) = work.get(i) else {
                    return;
                };
                let r = unpack_layer(blobs, &snaps, desc, diff_id, opts);
                let failed = r.is_err();
                if let Ok(mut v) = results.lock() {
                    v.push(r);
                }
                if failed {
                    // Stop handing out more layers.
                    if let Ok(mut n) = next.lock() {
                        *n = usize::MAX / 2;
                    }
                    return;
                }
            });
        }
    });
    let mut unpacked = 0;
    let mut dedup = snapshot::DedupStats::default();
    for r in results.into_inner().unwrap_or_default() {
        let (did, st) = r?;
        unpacked += usize::from(did);
        dedup.files += st.files;
        dedup.linked += st.linked;
        dedup.bytes_saved += st.bytes_saved;
    }
    let mut parent: Option<Digest> = None;
    for d in &resolved.diff_ids {
        parent = Some(snaps.commit_chain(parent.as_ref(), d)?);
    }
    Ok(Unpacked {
        chain_id: parent,
        resolved,
        layers_unpacked: unpacked,
        dedup,
    })
}

fn unpack_layer(
    blobs: &dyn BlobReader,
    snaps: &Overlay,
    desc: &Descriptor,
    diff_id: &Digest,
    opts: &UnpackOptions,
) -> Result<(bool, snapshot::DedupStats), ImageError> {
    let compression = Compression::from_media_type(&desc.media_type)?;
    let mut stats = snapshot::DedupStats::default();
    let pool = snaps.pool_dir();
    let did = snaps.ensure_layer(diff_id, &mut |dir: &Path| {
        let blob = std::io::BufReader::with_capacity(1 << 20, blobs.open_blob(&desc.digest)?);
        let mut ao = ApplyOptions::new(ApplyMode::Overlay, desc.digest.to_string());
        ao.limits = opts.limits;
        ao.expected_diff_id = Some(diff_id.clone());
        if opts.format == LayerFormat::Erofs {
            let image = dir
                .parent()
                .ok_or("layer directory without a parent")?
                .join(snapshot::overlay::EROFS_IMAGE);
            // Device nodes cost no privilege inside an image.
            ao.devices = DevicePolicy::Create;
            layer::write_erofs(blob, compression, &image, &ao)?;
            return Ok(());
        }
        layer::apply(blob, compression, dir, &ao)?;
        if opts.dedup {
            stats = snapshot::dedup::dedup_dir(&pool, dir, opts.dedup_min_size)?;
        }
        Ok(())
    })?;
    Ok((did, stats))
}

/// Apply every layer of an image, flattened, onto the directory `target` (which
/// should be empty): whiteouts delete. For export and hosts without overlayfs.
pub fn flatten_into(
    blobs: &dyn BlobReader,
    manifest: &Digest,
    target: &Path,
    limits: Limits,
) -> Result<Resolved, ImageError> {
    let resolved = resolve(blobs, manifest)?;
    for (desc, diff_id) in resolved.layers.iter().zip(&resolved.diff_ids) {
        let compression = Compression::from_media_type(&desc.media_type)?;
        let blob = blobs
            .open_blob(&desc.digest)
            .map_err(|source| ImageError::Blob {
                digest: desc.digest.clone(),
                source,
            })?;
        let mut ao = ApplyOptions::new(ApplyMode::Flatten, desc.digest.to_string());
        ao.limits = limits;
        ao.expected_diff_id = Some(diff_id.clone());
        layer::apply(
            std::io::BufReader::with_capacity(1 << 20, blob),
            compression,
            target,
            &ao,
        )?;
    }
    Ok(resolved)
}
