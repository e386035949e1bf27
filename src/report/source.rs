//! Where layers come from: the store, an OCI layout, or a registry (streamed, never
//! written anywhere), and reading them several at a time.

use std::io::{self, Read};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::scan::{self, Checks, Scanned, Tick};
use super::{Progress, ReportError, SizeOptions};
use crate::image::{self, ImageError, OciDir};
use crate::layer::index;
use crate::layer::Compression;
use crate::oci::{Digest, ImageConfig, Reference};
use crate::registry::{Client, DockerConfig, RegistryConfig, RetryPolicy};

/// A layer to read.
#[derive(Debug, Clone)]
pub struct LayerDesc {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
}

enum Blobs {
    Local {
        image: Box<image::ResolvedImage>,
        verified: bool,
    },
    Remote {
        client: Client,
        rt: tokio::runtime::Runtime,
        host: String,
        repository: String,
    },
}

/// An image resolved to its config and layer descriptors.
pub struct Opened {
    pub kind: &'static str,
    pub manifest: Digest,
    pub config_digest: Digest,
    pub config: ImageConfig,
    pub layers: Vec<LayerDesc>,
    blobs: Blobs,
}

/// `docker://REF` always names a registry; other arguments are looked up in the
/// store first, and fall back to a registry only when they name one explicitly
/// (a first component with a `.` or `:`, or `localhost`).
fn registry_ref(arg: &str) -> Option<&str> {
    if let Some(r) = arg.strip_prefix("docker://") {
        return Some(r);
    }
    let first = arg.split('/').next()?;
    (arg.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost"))
        .then_some(arg)
}

pub fn open(arg: &str, opts: &SizeOptions) -> Result<Opened, ReportError> {
    if OciDir::parse_ref(arg).is_some() {
        return open_local(&opts.root, arg, "oci-layout");
    }
    let remote = registry_ref(arg);
    if !arg.starts_with("docker://") {
        // Only an existing store is consulted: a registry image is analysed with
        // the store left untouched.
        if remote.is_none() || opts.root.join("index.json").is_file() {
            match open_local(&opts.root, arg, "store") {
                Err(ReportError::Resolve(ImageError::NotFound { .. })) if remote.is_some() => {}
                other => return other,
            }
        }
    }
    let Some(r) = remote else {
        return Err(ReportError::Resolve(ImageError::NotFound {
            name: arg.to_string(),
        }));
    };
    open_remote(arg, r, opts)
}

fn open_local(root: &Path, arg: &str, kind: &'static str) -> Result<Opened, ReportError> {
    let img = image::resolve_image(root, arg)?;
    let layers = img
        .image
        .manifest
        .layers
        .iter()
        .map(|d| LayerDesc {
            digest: d.digest.clone(),
            media_type: d.media_type.to_string(),
            size: d.size,
        })
        .collect();
    // Store blobs were verified when committed; a layout's are checked as read.
    let verified = img.store().is_some();
    Ok(Opened {
        kind,
        manifest: img.image.digest.clone(),
        config_digest: img.image.manifest.config.digest.clone(),
        config: img.image.config.clone(),
        layers,
        blobs: Blobs::Local {
            image: Box::new(img),
            verified,
        },
    })
}

fn open_remote(arg: &str, r: &str, opts: &SizeOptions) -> Result<Opened, ReportError> {
    let reference = Reference::parse(r).map_err(|e| ReportError::BadReference {
        reference: arg.into(),
        detail: e.to_string(),
    })?;
    let reg = ReportError::Remote;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(ReportError::Runtime)?;
    let client = Client::new(
        RegistryConfig::load().map_err(reg)?,
        DockerConfig::default_location(),
        RetryPolicy::default(),
    );
    let remote = rt
        .block_on(client.resolve_remote(&reference, &opts.platform))
        .map_err(reg)?;
    let config: ImageConfig =
        serde_json::from_slice(&remote.config).map_err(|e| ReportError::Invalid {
            reference: arg.into(),
            detail: format!("config {}: {e}", remote.manifest.config.digest),
        })?;
    if config.rootfs.diff_ids.len() != remote.manifest.layers.len() {
        return Err(ReportError::Invalid {
            reference: arg.into(),
            detail: "the config's diff IDs do not match the manifest's layers".into(),
        });
    }
    let layers = remote
        .manifest
        .layers
        .iter()
        .map(|d| LayerDesc {
            digest: d.digest.clone(),
            media_type: d.media_type.to_string(),
            size: d.size,
        })
        .collect();
    Ok(Opened {
        kind: "registry",
        manifest: remote.manifest_digest.clone(),
        config_digest: remote.manifest.config.digest.clone(),
        config,
        layers,
        blobs: Blobs::Remote {
            client,
            rt,
            host: remote.host,
            repository: remote.repository,
        },
    })
}

/// A response body read chunk by chunk on the caller's thread.
struct Body {
    handle: tokio::runtime::Handle,
    resp: reqwest::Response,
    chunk: Option<Box<dyn AsRef<[u8]> + Send>>,
    pos: usize,
}

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(c) = &self.chunk {
                let data = (**c).as_ref();
                if self.pos < data.len() {
                    let n = buf.len().min(data.len() - self.pos);
                    buf[..n].copy_from_slice(&data[self.pos..self.pos + n]);
                    self.pos += n;
                    return Ok(n);
                }
            }
            let next = self
                .handle
                .block_on(self.resp.chunk())
                .map_err(io::Error::other)?;
            match next {
                Some(b) => {
                    self.chunk = Some(Box::new(b));
                    self.pos = 0;
                }
                None => return Ok(0),
            }
        }
    }
}

struct TickTo<'a>(&'a dyn Progress, &'a [LayerDesc]);

impl Tick for TickTo<'_> {
    fn bytes(&self, layer: usize, read: u64) {
        self.0.bytes(layer, read, self.1[layer].size);
    }
}

fn scan_one(img: &Opened, i: usize, tick: &TickTo<'_>) -> Result<Scanned, ReportError> {
    let d = &img.layers[i];
    let name = d.digest.to_string();
    let compression =
        Compression::from_media_type(&d.media_type).map_err(ReportError::LayerFormat)?;
    let io_err = |source: io::Error| ReportError::Layer {
        layer: name.clone(),
        source,
    };
    let s = match &img.blobs {
        Blobs::Local { image, verified } => {
            // Store images: the layer index recorded when the layer entered the
            // store (pull, build, load) or by an earlier report, if any.
            let cache = image.store().map(|st| st.root().to_path_buf());
            let need_diff_id = || !(*verified && unpacked(image, &img.config.rootfs.diff_ids[i]));
            if let Some(hit) = cache.as_deref().and_then(|r| index::load(r, &d.digest)) {
                // An index with its diff ID (every one the unpackers record) needs no
                // look at the snapshots.
                if hit.diff_id.is_some() || !need_diff_id() {
                    tick.bytes(i, d.size);
                    return check_diff_id(img, i, name, with_size(hit, d.size));
                }
            }
            let need_diff_id = need_diff_id();
            let f = image.blobs().open_blob(&d.digest).map_err(io_err)?;
            let checks = Checks {
                blob: (!verified).then(|| d.digest.clone()),
                // A layer the store unpacked had its diff ID checked then.
                diff_id: need_diff_id,
            };
            let s = scan::scan(f, compression, &name, checks, Some((tick, i)))?;
            let s = check_diff_id(img, i, name, with_size(s, d.size))?;
            if let Some(root) = &cache {
                index::save(root, &d.digest, &s);
            }
            return Ok(s);
        }
        Blobs::Remote {
            client,
            rt,
            host,
            repository,
        } => {
            let resp = rt
                .block_on(client.blob_response(host, repository, &d.digest))
                .map_err(|source| ReportError::Registry {
                    reference: name.clone(),
                    source,
                })?;
            let body = Body {
                handle: rt.handle().clone(),
                resp,
                chunk: None,
                pos: 0,
            };
            let checks = Checks {
                blob: Some(d.digest.clone()),
                diff_id: true,
            };
            scan::scan(body, compression, &name, checks, Some((tick, i)))?
        }
    };
    check_diff_id(img, i, name, with_size(s, d.size))
}

fn with_size(mut s: Scanned, compressed: u64) -> Scanned {
    s.compressed = compressed;
    s
}

/// `s` when its diff ID (if computed) is the one layer `i` of the config names.
fn check_diff_id(img: &Opened, i: usize, name: String, s: Scanned) -> Result<Scanned, ReportError> {
    let expected = &img.config.rootfs.diff_ids[i];
    match &s.diff_id {
        Some(found) if found != expected => Err(ReportError::DiffId {
            layer: name,
            expected: expected.clone(),
            found: found.clone(),
        }),
        _ => Ok(s),
    }
}

/// Whether the store holds layer `diff_id` unpacked (files or EROFS), i.e. checked
/// its diff ID when it unpacked it.
fn unpacked(image: &image::ResolvedImage, diff_id: &Digest) -> bool {
    let Some(store) = image.store() else {
        return false;
    };
    match crate::snapshot::Overlay::open(store.root()) {
        Ok(o) => o.layer_dir(diff_id).is_dir() || o.erofs_image(diff_id).is_file(),
        Err(_) => false,
    }
}

/// Read every layer, `jobs` at a time; results in layer order.
pub fn scan_layers(
    img: &Opened,
    jobs: usize,
    progress: &dyn Progress,
) -> Result<Vec<Scanned>, ReportError> {
    let n = img.layers.len();
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<Scanned, ReportError>>>> =
        Mutex::new((0..n).map(|_| None).collect());
    let tick = TickTo(progress, &img.layers);
    std::thread::scope(|s| {
        for _ in 0..jobs.clamp(1, n.max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= n {
                    break;
                }
                let r = scan_one(img, i, &tick);
                let failed = r.is_err();
                if let Ok(sc) = &r {
                    let fin = done.fetch_add(1, Ordering::SeqCst) + 1;
                    let layer = super::layer_summary(img, i, sc);
                    progress.layer_done(&layer, fin, n);
                }
                if let Ok(mut g) = results.lock() {
                    g[i] = Some(r);
                }
                if failed {
                    // Stop handing out layers; the first error is reported.
                    next.store(n, Ordering::SeqCst);
                    break;
                }
            });
        }
    });
    let results = results.into_inner().map_err(|_| ReportError::Invalid {
        reference: img.manifest.to_string(),
        detail: "a reading thread panicked".into(),
    })?;
    let mut out = Vec::with_capacity(n);
    let mut first_err = None;
    for r in results {
        match r {
            Some(Ok(s)) => out.push(s),
            Some(Err(e)) => {
                first_err.get_or_insert(e);
            }
            None => {}
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    Ok(out)
}
