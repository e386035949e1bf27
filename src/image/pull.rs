//! Pull = registry download + pipelined unpack, and the registry account commands
//! (`login`, `logout`). The CLI only renders: it hands in a [`Progress`] sink.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::{unpack_as_committed, unpack_resolved, ImageError, Resolved, UnpackOptions};
use crate::oci::{Platform, Reference};
use crate::registry::{Client, DockerConfig, PullOptions, RegistryConfig, RetryPolicy};
use crate::store::Store;

pub use crate::registry::{Credentials, Event, Progress, PulledImage};

/// What to pull and how.
#[derive(Debug, Clone)]
pub struct PullRequest {
    pub reference: Reference,
    /// Platform to choose from an index; `None`: this host's, and a single-platform
    /// image for another platform is accepted (as Docker does).
    pub platform: Option<Platform>,
    /// Blobs downloaded at once (at least 1).
    pub max_concurrent_downloads: usize,
    /// Extract the layers into snapshots while downloading.
    pub unpack: bool,
}

/// A tokio runtime for network work (a few threads: downloads are I/O bound).
pub(super) fn runtime() -> Result<tokio::runtime::Runtime, ImageError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|source| ImageError::Io {
            path: PathBuf::from("tokio runtime"),
            source,
        })
}

pub(super) fn client() -> Result<Client, ImageError> {
    Ok(Client::new(
        RegistryConfig::load().map_err(|e| ImageError::Registry {
            what: "registry configuration".into(),
            source: e,
        })?,
        DockerConfig::default_location(),
        RetryPolicy::default(),
    ))
}

/// Pull `req.reference` into the store at `root`. With `req.unpack`, download,
/// decompression and extraction are pipelined: the registry client announces each
/// blob as it is committed and [`unpack_as_committed`] extracts that layer on its
/// own threads while other blobs are still downloading. When the pull succeeds the
/// chain is committed bottom-up from the manifest and config the pull already
/// parsed (nothing is read twice); when it fails, layers not yet started are
/// skipped and no chain is committed. Every unpack thread is joined before this
/// returns.
pub fn pull(
    root: &Path,
    req: &PullRequest,
    progress: Arc<dyn Progress>,
) -> Result<PulledImage, ImageError> {
    let store = Store::open(root).map_err(|source| ImageError::Store {
        name: req.reference.to_string(),
        source,
    })?;
    // Held until the chain is committed: a prune meanwhile would see the layers
    // extracted so far as unreferenced.
    let _lease = store.lease().map_err(|source| ImageError::Store {
        name: req.reference.to_string(),
        source,
    })?;
    let client = client()?;
    let mut opts = PullOptions {
        platform: req.platform.clone().unwrap_or_else(Platform::host),
        max_concurrent_downloads: req.max_concurrent_downloads.max(1),
        require_platform: req.platform.is_some(),
        notify: None,
    };
    let rt = runtime()?;
    let pull_err = |e| ImageError::Registry {
        what: format!("pull {}", req.reference),
        source: e,
    };
    if !req.unpack {
        return rt
            .block_on(client.pull(&store, &req.reference, &opts, progress))
            .map_err(pull_err);
    }
    let prior = store.image_records().ok().and_then(|rs| {
        rs.into_iter()
            .find(|r| r.name == req.reference.to_string())
            .map(|r| r.descriptor)
    });
    let (tx, rx) = std::sync::mpsc::channel();
    opts.notify = Some(tx);
    let cancel = AtomicBool::new(false);
    let unpack_opts = UnpackOptions::default();
    let (pulled, early) = std::thread::scope(|s| {
        let worker = s.spawn(|| unpack_as_committed(&store, root, rx, &cancel, &unpack_opts));
        let pulled = rt.block_on(client.pull(&store, &req.reference, &opts, progress));
        if pulled.is_err() {
            cancel.store(true, Ordering::SeqCst);
        }
        // Closing the channel tells the unpacker the pull is over.
        opts.notify = None;
        (pulled, worker.join())
    });
    let pulled = pulled.map_err(pull_err)?;
    let finish = || -> Result<(), ImageError> {
        match early {
            Ok(r) => {
                r?;
            }
            Err(_) => {
                return Err(ImageError::Io {
                    path: PathBuf::from(req.reference.to_string()),
                    source: std::io::Error::other("the unpack thread panicked"),
                })
            }
        }
        if pulled.config.rootfs.diff_ids.len() != pulled.manifest.layers.len() {
            return Err(ImageError::LayerCount {
                digest: pulled.descriptor.digest.clone(),
                layers: pulled.manifest.layers.len(),
                diff_ids: pulled.config.rootfs.diff_ids.len(),
            });
        }
        let resolved = Resolved {
            manifest: pulled.descriptor.digest.clone(),
            config: pulled.manifest.config.digest.clone(),
            layers: pulled.manifest.layers.clone(),
            diff_ids: pulled.config.rootfs.diff_ids.clone(),
        };
        unpack_resolved(&store, resolved, root, &unpack_opts)?;
        Ok(())
    };
    if let Err(e) = finish() {
        // The name must not point at an image that cannot be used (issue 15 item
        // 11): give it back what it named before, or remove it. The partial layer is
        // never published; `prune` reclaims the blobs.
        restore_name(&store, &req.reference, prior, &pulled.descriptor.digest);
        return Err(e);
    }
    Ok(pulled)
}

/// Undo what a pull did to `name` when its unpack failed: point it back at
/// `prior`, or remove it, unless another process changed it meanwhile.
fn restore_name(
    store: &Store,
    name: &Reference,
    prior: Option<crate::oci::Descriptor>,
    pulled: &crate::oci::Digest,
) {
    let full = name.to_string();
    let now = store
        .image_records()
        .ok()
        .and_then(|rs| rs.into_iter().find(|r| r.name == full));
    if now.as_ref().map(|r| &r.descriptor.digest) != Some(pulled) {
        return;
    }
    let r = match prior {
        Some(d) if &d.digest != pulled => {
            let src = d
                .annotation(crate::store::ANNOTATION_SOURCE_DIGEST)
                .and_then(|s| s.parse::<crate::oci::Digest>().ok());
            store.set_image(name, d, src.as_ref())
        }
        Some(_) => Ok(()),
        None => store.remove_name(&full).map(|_| ()),
    };
    if let Err(e) = r {
        tracing::warn!("pull {name} failed and its name could not be restored: {e}");
    }
}

/// Check `creds` against registry `host` and save them in Docker's client config
/// (or its credential helper). Returns where they were saved.
pub fn login(host: &str, creds: Credentials) -> Result<PathBuf, ImageError> {
    let docker = DockerConfig::default_location();
    let client = client()?;
    client.set_credentials(host, creds.clone());
    let rt = runtime()?;
    rt.block_on(client.ping(host))
        .map_err(|e| ImageError::Registry {
            what: format!("login {host}"),
            source: e,
        })?;
    docker
        .store(host, &creds)
        .map_err(|e| ImageError::Registry {
            what: format!("login {host}: save credentials"),
            source: e,
        })?;
    Ok(docker.path().to_path_buf())
}

/// Forget the saved credentials of `host`; false when there were none.
pub fn logout(host: &str) -> Result<bool, ImageError> {
    DockerConfig::default_location()
        .erase(host)
        .map_err(|e| ImageError::Registry {
            what: format!("logout {host}"),
            source: e,
        })
}

/// Fetch one blob of `reference`'s repository into the store (its mirrors first),
/// verified like every download. For `check --repair`.
pub(super) fn fetch_blob(
    store: &Store,
    reference: &Reference,
    desc: &crate::oci::Descriptor,
) -> Result<(), ImageError> {
    let client = client()?;
    let rt = runtime()?;
    let repo = reference.repository().to_string();
    rt.block_on(client.each_endpoint(reference, |host| {
        let (client, repo, desc, store) = (&client, repo.clone(), desc.clone(), store.clone());
        async move {
            client
                .fetch_blob(&store, &host, &repo, &desc, &())
                .await
                .map(|_| ())
        }
    }))
    .map_err(|e| ImageError::Registry {
        what: format!("fetch {} from {}", desc.digest, reference.registry()),
        source: e,
    })
}
