//! Images on disk: from a stored manifest to a chain of committed snapshots (the one
//! place that joins the blob store, layer application and snapshots), and flattening
//! an image into one directory for export.

pub mod archive;
mod backend;
pub mod catalog;
pub mod check;
pub mod commit;
mod ensure;
mod export;
pub mod ocidir;
pub mod prune;
mod pull;
pub mod push;
mod resolve;
mod verify;
mod view;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::layer::{self, ApplyMode, ApplyOptions, Compression, DevicePolicy, Limits};
use crate::oci::{Descriptor, Digest, MediaType, Platform};
use crate::snapshot::{self, Overlay, Snapshotter};
use crate::store::BlobReader;

pub use backend::{
    layer_format, set_process_snapshotter, set_store_snapshotter, store_config, Detected,
    StoreConfig,
};
pub use ensure::{resolve_or_pull, PullPolicy};
pub use export::{export_tar, flatten_to_dir};
pub use ocidir::OciDir;
pub use pull::{login, logout, pull, Credentials, Event, Progress, PullRequest, PulledImage};
pub use push::{push, PushEvent, PushFormat, PushProgress, PushRequest, Pushed};
pub use resolve::{read_config, read_manifest, resolve_image, ImageManifest, ResolvedImage};
pub use view::{
    changes, has_view, mount, mount_as, mount_as_with, release, remount, unmount, view_key,
    MountOptions, View,
};

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
    #[error("image {name}: {source}")]
    Layout {
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no such image: {name} (pull it first: imgctl pull {name}; `imgctl images` lists the store)")]
    NotFound { name: String },
    #[error("image {name}: {source}")]
    Store {
        name: String,
        #[source]
        source: crate::store::StoreError,
    },
    #[error("{what}: {source}")]
    Registry {
        what: String,
        #[source]
        source: crate::registry::RegistryError,
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

/// Read a manifest (following an index to this host's platform) and its config,
/// every blob through the verified reader.
pub fn resolve(blobs: &dyn BlobReader, manifest: &Digest) -> Result<Resolved, ImageError> {
    let m = read_manifest(
        blobs,
        manifest,
        &MediaType::Other(String::new()),
        &Platform::host(),
    )?;
    Ok(Resolved {
        manifest: m.digest,
        config: m.manifest.config.digest,
        layers: m.manifest.layers,
        diff_ids: m.config.rootfs.diff_ids,
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
    /// How new layers are stored; `None`: as the store is set up to (see
    /// [`layer_format`]: EROFS where the kernel mounts EROFS files, files otherwise).
    pub format: Option<LayerFormat>,
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
            format: None,
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
    unpack_resolved(blobs, resolve(blobs, manifest)?, root, opts)
}

/// [`unpack_with`] for an image already resolved (see [`ResolvedImage::resolved`]):
/// nothing is read twice.
pub fn unpack_resolved(
    blobs: &dyn BlobReader,
    resolved: Resolved,
    root: &Path,
    opts: &UnpackOptions,
) -> Result<Unpacked, ImageError> {
    let snaps = Overlay::open(root)?;
    // Leftovers of an unpack that was killed (never visible as layers) go first.
    snaps.cleanup()?;
    let opts = &UnpackOptions {
        format: Some(layer_format(root, opts.format)?),
        ..opts.clone()
    };
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
                let r = unpack_layer(blobs, &snaps, desc, diff_id, opts, Some(root));
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

/// What [`unpack_as_committed`] did before the pull finished.
#[derive(Debug, Clone, Default)]
pub struct EarlyUnpack {
    /// Layers extracted (the others were already there or never became ready).
    pub layers_unpacked: usize,
    pub dedup: snapshot::DedupStats,
}

/// One layer ready to extract: both its blob and the config naming its diff ID are
/// committed.
type Job = (Descriptor, Digest);

#[derive(Default)]
struct Queue {
    jobs: std::collections::VecDeque<Job>,
    /// No more jobs will come.
    closed: bool,
}

/// The unpack side of a pipelined pull: extract each layer as soon as its blob is
/// committed, while the registry client is still downloading the others.
///
/// `notices` comes from [`crate::registry::PullOptions::notify`]. Once the manifest
/// and its config are in, every layer whose blob is committed goes to a pool of
/// `opts.parallel` workers calling the same per-layer path as [`unpack_with`]
/// (extract into a temporary directory, verify the diff ID, publish atomically).
/// Overlay layers do not depend on each other, so they are extracted in whatever
/// order their blobs arrive. No chain is committed here: after a successful pull the
/// caller runs [`unpack_with`], which finds these layers present and commits the
/// chain bottom-up, so a failed pull never leaves a committed chain behind.
///
/// Returns when `notices` is closed (the pull is over) and every started layer is
/// finished; all threads it starts are joined before it returns. When `cancel` is
/// set (the pull failed), layers not yet started are skipped. The first layer error
/// is returned.
pub fn unpack_as_committed(
    blobs: &dyn BlobReader,
    root: &Path,
    notices: std::sync::mpsc::Receiver<crate::registry::Notice>,
    cancel: &std::sync::atomic::AtomicBool,
    opts: &UnpackOptions,
) -> Result<EarlyUnpack, ImageError> {
    use crate::registry::Notice;
    use std::collections::HashSet;
    use std::sync::atomic::Ordering;

    let snaps = Overlay::open(root)?;
    snaps.cleanup()?;
    let opts = &UnpackOptions {
        format: Some(layer_format(root, opts.format)?),
        ..opts.clone()
    };
    let queue = Mutex::new(Queue::default());
    let ready = std::sync::Condvar::new();
    let failed = std::sync::atomic::AtomicBool::new(false);
    let first_error: Mutex<Option<ImageError>> = Mutex::new(None);
    let done = Mutex::new(EarlyUnpack::default());
    let close = || {
        if let Ok(mut q) = queue.lock() {
            q.closed = true;
        }
        ready.notify_all();
    };

    std::thread::scope(|s| {
        for _ in 0..opts.parallel.max(1) {
            s.spawn(|| loop {
                let job = {
                    let Ok(mut q) = queue.lock() else { return };
                    loop {
                        if cancel.load(Ordering::SeqCst) || failed.load(Ordering::SeqCst) {
                            return;
                        }
                        if let Some(j) = q.jobs.pop_front() {
                            break j;
                        }
                        if q.closed {
                            return;
                        }
                        q = match ready.wait(q) {
                            Ok(q) => q,
                            Err(_) => return,
                        };
                    }
                };
                let (desc, diff_id) = job;
                tracing::debug!(layer = %desc.digest, "blob committed; extracting while the pull goes on");
                match unpack_layer(blobs, &snaps, &desc, &diff_id, opts, Some(root)) {
                    Ok((did, st)) => {
                        if let Ok(mut d) = done.lock() {
                            d.layers_unpacked += usize::from(did);
                            d.dedup.files += st.files;
                            d.dedup.linked += st.linked;
                            d.dedup.bytes_saved += st.bytes_saved;
                        }
                    }
                    Err(e) => {
                        failed.store(true, Ordering::SeqCst);
                        if let Ok(mut f) = first_error.lock() {
                            f.get_or_insert(e);
                        }
                        ready.notify_all();
                        return;
                    }
                }
            });
        }

        // The dispatcher: match committed blobs with the manifest's layers.
        let mut layers: Vec<Descriptor> = Vec::new();
        let mut config: Option<Digest> = None;
        let mut diff_ids: Option<Vec<Digest>> = None;
        let mut committed: HashSet<Digest> = HashSet::new();
        let mut queued: HashSet<Digest> = HashSet::new();
        for notice in notices.iter() {
            if cancel.load(Ordering::SeqCst) || failed.load(Ordering::SeqCst) {
                break;
            }
            match notice {
                Notice::Manifest(m) => {
                    config = Some(m.config.digest.clone());
                    layers = m.layers.clone();
                    diff_ids = None;
                }
                Notice::Committed(d) => {
                    committed.insert(d);
                }
            }
            if diff_ids.is_none() {
                if let Some(c) = config.as_ref().filter(|c| committed.contains(*c)) {
                    // A config that does not parse or does not match the layers is
                    // reported by the pull itself (and by the final unpack); here it
                    // only means nothing is started early.
                    diff_ids = read_config(blobs, c)
                        .ok()
                        .map(|cfg| cfg.rootfs.diff_ids)
                        .filter(|ids| ids.len() == layers.len());
                }
            }
            let Some(ids) = &diff_ids else { continue };
            let mut new = Vec::new();
            for (l, id) in layers.iter().zip(ids) {
                if committed.contains(&l.digest) && !queued.contains(id) {
                    queued.insert(id.clone());
                    new.push((l.clone(), id.clone()));
                }
            }
            if !new.is_empty() {
                if let Ok(mut q) = queue.lock() {
                    q.jobs.extend(new);
                }
                ready.notify_all();
            }
        }
        close();
    });
    if let Some(e) = first_error.into_inner().ok().flatten() {
        return Err(e);
    }
    Ok(done.into_inner().unwrap_or_default())
}

/// Unpack one layer unless the store has it. With `index_root` (the store root), the
/// size report's listing of the layer, made while it streams, is recorded there
/// (`cache/size`, [`layer::index`]) so the first report does not read the blob.
fn unpack_layer(
    blobs: &dyn BlobReader,
    snaps: &Overlay,
    desc: &Descriptor,
    diff_id: &Digest,
    opts: &UnpackOptions,
    index_root: Option<&Path>,
) -> Result<(bool, snapshot::DedupStats), ImageError> {
    let compression = Compression::from_media_type(desc.media_type.as_str())?;
    let mut stats = snapshot::DedupStats::default();
    let mut listing = None;
    let pool = snaps.pool_dir();
    let did = snaps.ensure_layer(diff_id, &mut |dir: &Path| {
        let blob = std::io::BufReader::with_capacity(1 << 20, blobs.open_blob(&desc.digest)?);
        let mut ao = ApplyOptions::new(ApplyMode::Overlay, desc.digest.to_string());
        ao.limits = opts.limits;
        ao.expected_diff_id = Some(diff_id.clone());
        ao.index = index_root.is_some();
        if opts.format == Some(LayerFormat::Erofs) {
            let image = dir
                .parent()
                .ok_or("layer directory without a parent")?
                .join(snapshot::overlay::EROFS_IMAGE);
            // Device nodes cost no privilege inside an image.
            ao.devices = DevicePolicy::Create;
            listing = layer::write_erofs(blob, compression, &image, &ao)?.index;
            return Ok(());
        }
        if opts.dedup {
            // Files are pooled as they are written (layer::apply's `pool`).
            ao.dedup = Some(layer::PoolDedup {
                pool: pool.clone(),
                min_size: opts.dedup_min_size,
            });
        }
        let applied = layer::apply(blob, compression, dir, &ao)?;
        listing = applied.index;
        let p = applied.pooled;
        stats = snapshot::DedupStats {
            files: p.files,
            linked: p.linked,
            bytes_saved: p.bytes_saved,
        };
        Ok(())
    })?;
    if let (Some(root), Some(l)) = (index_root, &listing) {
        layer::index::save(root, &desc.digest, l);
    }
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
    flatten_resolved(blobs, &resolved, target, limits, true)?;
    Ok(resolved)
}

/// Apply the layers of `resolved`, flattened, onto `target`. With `root_metadata`
/// false a layer's `./` entry never changes `target` itself (a directory the user
/// named keeps the owner and mode it was created with).
pub fn flatten_resolved(
    blobs: &dyn BlobReader,
    resolved: &Resolved,
    target: &Path,
    limits: Limits,
    root_metadata: bool,
) -> Result<(), ImageError> {
    for (desc, diff_id) in resolved.layers.iter().zip(&resolved.diff_ids) {
        let compression = Compression::from_media_type(desc.media_type.as_str())?;
        let blob = blobs
            .open_blob(&desc.digest)
            .map_err(|source| ImageError::Blob {
                digest: desc.digest.clone(),
                source,
            })?;
        let mut ao = ApplyOptions::new(ApplyMode::Flatten, desc.digest.to_string());
        ao.limits = limits;
        ao.expected_diff_id = Some(diff_id.clone());
        ao.root_metadata = root_metadata;
        layer::apply(
            std::io::BufReader::with_capacity(1 << 20, blob),
            compression,
            target,
            &ao,
        )?;
    }
    Ok(())
}
