//! `pull`: resolve a reference (mirrors first), choose a platform from an index,
//! download config and layers in parallel into the store's ingest (resuming partial
//! downloads with Range), verify every digest, then publish the manifest and the name.
//!
//! Order of visibility: blobs are committed before the manifests that reference
//! them, and the name in `index.json` is written last, so a crash at any point
//! leaves only unreferenced (prunable) blobs or resumable partial files.

use std::sync::Arc;

use futures_util::StreamExt;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, CONTENT_RANGE, CONTENT_TYPE, RANGE};
use reqwest::StatusCode;

use super::client::{read_limited, root_cause, status_error, Client};
use super::RegistryError;
use crate::oci::{
    parse_manifest, AnyManifest, Descriptor, Digest, ImageConfig, Manifest, MediaType, Platform,
    Reference,
};
use crate::store::{IngestStart, Store, StoreError, MAX_CONFIG_SIZE, MAX_MANIFEST_SIZE};

/// What the caller chose.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// Platform to pick from an index (default: this host).
    pub platform: Platform,
    /// Blobs downloaded at once (at least 1).
    pub max_concurrent_downloads: usize,
    /// The platform was asked for explicitly: a single-platform image for another
    /// platform is then an error (by default it is accepted, as Docker does).
    pub require_platform: bool,
    /// Where to send [`Notice`]s while the pull runs, so a consumer (the image
    /// unpacker) can start on each blob as soon as it is committed, while others are
    /// still downloading. Send errors (a consumer that stopped) are ignored.
    pub notify: Option<std::sync::mpsc::Sender<Notice>>,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            platform: Platform::host(),
            max_concurrent_downloads: 3,
            require_platform: false,
            notify: None,
        }
    }
}

/// Progress events, for bars or plain log lines.
#[derive(Debug, Clone)]
pub enum Event {
    /// The reference resolved to a manifest on `endpoint`.
    Resolved {
        reference: String,
        endpoint: String,
        digest: Digest,
    },
    /// A blob is already in the store.
    Exists { digest: Digest, size: u64 },
    /// Another process is downloading this blob; waiting for it.
    Waiting { digest: Digest },
    /// Download starts (or resumes at `offset`).
    Start {
        digest: Digest,
        size: u64,
        offset: u64,
    },
    /// `written` bytes of `digest` are on disk (including a resumed prefix).
    Bytes { digest: Digest, written: u64 },
    /// A transfer failed and will be retried from `offset`.
    Retry {
        digest: Digest,
        offset: u64,
        error: String,
    },
    /// Verified and committed.
    Done { digest: Digest },
}

/// What a pull tells [`PullOptions::notify`] as it goes.
#[derive(Debug, Clone)]
pub enum Notice {
    /// The platform manifest whose blobs are about to be fetched (sent again if an
    /// endpoint fails and the next one is tried).
    Manifest(Box<Manifest>),
    /// This blob is verified and committed in the store (or already was).
    Committed(Digest),
}

/// Receives [`Event`]s. Called from download tasks: must be cheap and thread-safe.
pub trait Progress: Send + Sync {
    fn event(&self, e: &Event);
}

/// A progress sink that ignores everything.
impl Progress for () {
    fn event(&self, _e: &Event) {}
}

/// The result of a pull.
#[derive(Debug, Clone)]
pub struct PulledImage {
    /// The name it was stored under (the normalised reference asked for).
    pub reference: Reference,
    /// The host it came from (a mirror or the registry).
    pub endpoint: String,
    /// Descriptor of the platform manifest, as written to `index.json`.
    pub descriptor: Descriptor,
    pub manifest: Manifest,
    pub config: ImageConfig,
    /// The index it was chosen from, if the reference named one.
    pub index_digest: Option<Digest>,
    /// What the registry serves for the reference when it differs from
    /// `descriptor.digest` (an index, or a Docker manifest stored converted).
    pub source_digest: Option<Digest>,
    /// Bytes fetched from the network for blobs (resumed prefixes excluded).
    pub downloaded: u64,
}

impl PulledImage {
    /// The digest the registry served for the reference, the one a user pins with
    /// `NAME@DIGEST`: the index for multi-platform images, the original Docker
    /// manifest when it was stored converted to OCI, else the stored manifest's.
    pub fn repo_digest(&self) -> &Digest {
        self.source_digest
            .as_ref()
            .unwrap_or(&self.descriptor.digest)
    }
}

fn scope(repository: &str) -> String {
    format!("repository:{repository}:pull")
}

fn block<T>(f: impl FnOnce() -> T) -> T {
    // Filesystem work on the runtime's blocking pool (multi-thread runtime only).
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

impl Client {
    /// Fetch a manifest or index, bounded and verified. `expected` is the digest it
    /// must hash to (pull by digest); without it, a `Docker-Content-Digest` header
    /// must agree with the content.
    pub async fn fetch_manifest(
        &self,
        host: &str,
        repository: &str,
        selector: &str,
        expected: Option<&Digest>,
    ) -> Result<(MediaType, Vec<u8>, Digest), RegistryError> {
        let mut h = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(&MediaType::manifest_accept()) {
            h.insert(ACCEPT, v);
        }
        let path = format!("/v2/{repository}/manifests/{selector}");
        let resp = self.get(host, &path, &scope(repository), h).await?;
        if !resp.status().is_success() {
            let err = status_error(resp, host, repository, Some(selector)).await;
            if let RegistryError::ManifestUnknown { .. } = err {
                if !selector.starts_with("sha256:") {
                    return Err(self
                        .explain_unknown_tag(host, repository, selector, err)
                        .await);
                }
            }
            return Err(err);
        }
        let served = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(MediaType::parse)
            .unwrap_or(MediaType::Other(String::new()));
        let header_digest = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<Digest>().ok());
        let what = format!("{host}/{repository}:{selector}");
        let body = read_limited(resp, MAX_MANIFEST_SIZE, &format!("manifest {what}")).await?;
        let found = Digest::of(&body);
        if let Some(want) = expected.or(header_digest.as_ref()) {
            if &found != want {
                return Err(RegistryError::ManifestDigest {
                    what,
                    expected: want.clone(),
                    found,
                });
            }
        }
        Ok((served, body, found))
    }

    /// A tag was not found: tell an unknown repository apart (some registries answer
    /// MANIFEST_UNKNOWN for both) and list the tags that exist.
    async fn explain_unknown_tag(
        &self,
        host: &str,
        repository: &str,
        selector: &str,
        err: RegistryError,
    ) -> RegistryError {
        let path = format!("/v2/{repository}/tags/list");
        let Ok(resp) = self
            .get(host, &path, &scope(repository), HeaderMap::new())
            .await
        else {
            return err;
        };
        if !resp.status().is_success() {
            return match status_error(resp, host, repository, None).await {
                e @ RegistryError::RepositoryUnknown { .. } => e,
                _ => err,
            };
        }
        let Ok(body) = read_limited(resp, super::MAX_SMALL_BODY, "tag list").await else {
            return err;
        };
        let tags: Vec<String> = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("tags")?.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect();
        if tags.is_empty() {
            return RegistryError::RepositoryUnknown {
                registry: host.into(),
                repository: repository.into(),
            };
        }
        let mut shown: Vec<String> = tags.iter().take(10).cloned().collect();
        if tags.len() > 10 {
            shown.push(format!("... {} more", tags.len() - 10));
        }
        RegistryError::ManifestUnknown {
            registry: host.into(),
            repository: repository.into(),
            selector: selector.into(),
            hint: format!(" (tags: {})", shown.join(", ")),
        }
    }

    /// Pull `reference` into `store`.
    pub async fn pull(
        &self,
        store: &Store,
        reference: &Reference,
        opts: &PullOptions,
        progress: Arc<dyn Progress>,
    ) -> Result<PulledImage, RegistryError> {
        self.each_endpoint(reference, |ep| {
            let progress = progress.clone();
            async move { self.pull_from(store, reference, &ep, opts, progress).await }
        })
        .await
    }

    /// Try `attempt` on each endpoint of `reference`'s registry (its mirrors first, the
    /// registry itself last): the first success wins; a failed mirror is logged and the
    /// next one tried; when all fail, the first error is the one reported.
    pub(crate) async fn each_endpoint<T, F, Fut>(
        &self,
        reference: &Reference,
        mut attempt: F,
    ) -> Result<T, RegistryError>
    where
        F: FnMut(String) -> Fut,
        Fut: std::future::Future<Output = Result<T, RegistryError>>,
    {
        let endpoints = self.config().endpoints(reference.registry());
        let mut first_err = None;
        for ep in endpoints {
            match attempt(ep.clone()).await {
                Ok(p) => return Ok(p),
                Err(e) if ep != reference.registry() => {
                    tracing::warn!(mirror = %ep, error = %e, "mirror failed; trying the next endpoint");
                    first_err.get_or_insert(e);
                }
                Err(e) => return Err(first_err.unwrap_or(e)),
            }
        }
        Err(first_err.unwrap_or(RegistryError::Unreachable {
            registry: reference.registry().to_string(),
            detail: "no endpoint".into(),
        }))
    }

    async fn pull_from(
        &self,
        store: &Store,
        reference: &Reference,
        host: &str,
        opts: &PullOptions,
        progress: Arc<dyn Progress>,
    ) -> Result<PulledImage, RegistryError> {
        let repo = reference.repository();
        let selector = reference.manifest_selector();
        let (served, body, digest) = self
            .fetch_manifest(host, repo, &selector, reference.digest())
            .await?;
        let what = reference.to_string();
        let parsed = parse_manifest(&served, &body).map_err(|source| RegistryError::Manifest {
            what: what.clone(),
            source,
        })?;
        progress.event(&Event::Resolved {
            reference: what.clone(),
            endpoint: host.to_string(),
            digest: digest.clone(),
        });
        let (index, mtype, mbody, mdigest, manifest) = match parsed {
            AnyManifest::Image(m) => (None, served_or_declared(&served, &m), body, digest, m),
            AnyManifest::Index(idx) => {
                let chosen = choose_platform(&idx.manifests, &opts.platform).ok_or_else(|| {
                    RegistryError::NoPlatform {
                        wanted: opts.platform.to_string(),
                        reference: what.clone(),
                        available: available(&idx.manifests),
                    }
                })?;
                let (cserved, cbody, cdigest) = self
                    .fetch_manifest(host, repo, &chosen.digest.to_string(), Some(&chosen.digest))
                    .await?;
                if cbody.len() as u64 != chosen.size {
                    return Err(RegistryError::Download {
                        digest: chosen.digest.clone(),
                        detail: format!(
                            "manifest is {} bytes, index says {}",
                            cbody.len(),
                            chosen.size
                        ),
                    });
                }
                let cserved = match cserved {
                    MediaType::Other(_) => chosen.media_type.clone(),
                    m => m,
                };
                let m = match parse_manifest(&cserved, &cbody) {
                    Ok(AnyManifest::Image(m)) => m,
                    Ok(AnyManifest::Index(_)) => {
                        return Err(RegistryError::UnsupportedMediaType {
                            reference: what,
                            what: "nested index",
                            media_type: cserved.to_string(),
                        })
                    }
                    Err(source) => return Err(RegistryError::Manifest { what, source }),
                };
                (
                    Some((served, body, digest)),
                    served_or_declared(&cserved, &m),
                    cbody,
                    cdigest,
                    m,
                )
            }
        };
        if !matches!(
            manifest.config.media_type,
            MediaType::OciConfig | MediaType::DockerConfig
        ) {
            return Err(RegistryError::UnsupportedMediaType {
                reference: what,
                what: "config",
                media_type: manifest.config.media_type.to_string(),
            });
        }
        if manifest.config.size > MAX_CONFIG_SIZE {
            return Err(RegistryError::TooLarge {
                what: format!("config {}", manifest.config.digest),
                limit: MAX_CONFIG_SIZE,
            });
        }

        // Hold a lease so a concurrent `prune` cannot collect what we commit before
        // the name points at it.
        let store_c = store.clone();
        let _lease = block(move || store_c.lease())?;

        if let Some(tx) = &opts.notify {
            let _ = tx.send(Notice::Manifest(Box::new(manifest.clone())));
        }
        let mut blobs: Vec<Descriptor> = vec![manifest.config.clone()];
        for l in &manifest.layers {
            if !blobs.iter().any(|b| b.digest == l.digest) {
                blobs.push(l.clone());
            }
        }
        let digests: Vec<Digest> = blobs.iter().map(|b| b.digest.clone()).collect();
        let downloaded = self
            .fetch_blobs(store, host, repo, blobs, opts, progress)
            .await?;
        {
            // Where each blob lives, so a push to another repository of this
            // registry can mount it instead of uploading (best effort).
            let (s, source) = (store.clone(), format!("{host}/{repo}"));
            block(move || {
                for d in &digests {
                    if let Err(e) = s.add_blob_source(d, &source) {
                        tracing::debug!(error = %e, "recording the blob source failed");
                    }
                }
            });
        }

        let config_bytes = {
            let s = store.clone();
            let d = manifest.config.digest.clone();
            block(move || s.read_blob(&d, MAX_CONFIG_SIZE))?
        };
        let config: ImageConfig =
            serde_json::from_slice(&config_bytes).map_err(|e| RegistryError::Config {
                digest: manifest.config.digest.clone(),
                detail: format!("not a valid image config: {e}"),
            })?;
        let image_platform = Platform {
            architecture: config.architecture.clone(),
            os: config.os.clone(),
            variant: config.variant.clone(),
            ..Platform::default()
        };
        if index.is_none() && opts.require_platform && !opts.platform.matches(&image_platform) {
            return Err(RegistryError::NoPlatform {
                wanted: opts.platform.to_string(),
                reference: what,
                available: image_platform.to_string(),
            });
        }
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(RegistryError::Config {
                digest: manifest.config.digest.clone(),
                detail: format!(
                    "{} diff IDs for {} layers",
                    config.rootfs.diff_ids.len(),
                    manifest.layers.len()
                ),
            });
        }

        // An OCI layout lists OCI manifests only (skopeo and umoci skip anything
        // else), so a Docker schema 2 manifest is stored converted, as `skopeo copy
        // docker://... oci:...` does; the verified original is kept and recorded as the
        // source digest.
        let (mtype, mbody, mdigest, original) = if mtype == MediaType::DockerManifest {
            let oci = crate::oci::docker_to_oci(&mbody).map_err(|detail| {
                RegistryError::UnsupportedMediaType {
                    reference: what.clone(),
                    what: "layer",
                    media_type: detail,
                }
            })?;
            let d = Digest::of(&oci);
            (MediaType::OciManifest, oci, d, Some((mbody, mdigest)))
        } else {
            (mtype, mbody, mdigest, None)
        };
        let mut desc = Descriptor::new(mtype, mdigest.clone(), mbody.len() as u64);
        desc.platform = Some(image_platform);
        let index_digest = index.as_ref().map(|(_, _, d)| d.clone());
        let source_digest = index_digest
            .clone()
            .or_else(|| original.as_ref().map(|(_, d)| d.clone()));
        {
            let s = store.clone();
            let name = reference.clone();
            let desc = desc.clone();
            let source = source_digest.clone();
            block(move || -> Result<(), StoreError> {
                s.write_blob(&mbody)?;
                if let Some((obody, _)) = &original {
                    s.write_blob(obody)?;
                }
                if let Some((_, ibody, _)) = &index {
                    s.write_blob(ibody)?;
                }
                s.set_image(&name, desc, source.as_ref())
            })?;
        }
        Ok(PulledImage {
            reference: reference.clone(),
            endpoint: host.to_string(),
            descriptor: desc,
            manifest,
            config,
            index_digest,
            source_digest,
            downloaded,
        })
    }

    async fn fetch_blobs(
        &self,
        store: &Store,
        host: &str,
        repo: &str,
        blobs: Vec<Descriptor>,
        opts: &PullOptions,
        progress: Arc<dyn Progress>,
    ) -> Result<u64, RegistryError> {
        let notify = opts.notify.clone();
        let sem = Arc::new(tokio::sync::Semaphore::new(
            opts.max_concurrent_downloads.max(1),
        ));
        // Set by a failing download before it gives up its permit, so no queued
        // download starts after the pull has already failed.
        let failed_flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut set = tokio::task::JoinSet::new();
        for desc in blobs {
            let notify = notify.clone();
            let (c, s, h, r, p, sem, flag) = (
                self.clone(),
                store.clone(),
                host.to_string(),
                repo.to_string(),
                progress.clone(),
                sem.clone(),
                failed_flag.clone(),
            );
            set.spawn(async move {
                let _permit = sem.acquire_owned().await;
                if flag.load(std::sync::atomic::Ordering::SeqCst) {
                    return Ok(0);
                }
                let res = c.fetch_blob(&s, &h, &r, &desc, p.as_ref()).await;
                match (&res, &notify) {
                    (Ok(_), Some(tx)) => {
                        let _ = tx.send(Notice::Committed(desc.digest.clone()));
                    }
                    (Ok(_), None) => {}
                    (Err(_), _) => flag.store(true, std::sync::atomic::Ordering::SeqCst),
                }
                res
            });
        }
        let mut total = 0;
        let mut failed = None;
        while let Some(res) = set.join_next().await {
            match res {
                Ok(Ok(n)) => total += n,
                Ok(Err(e)) => {
                    failed = Some(e);
                    break;
                }
                Err(e) => {
                    failed = Some(RegistryError::Task {
                        detail: e.to_string(),
                    });
                    break;
                }
            }
        }
        match failed {
            None => Ok(total),
            Some(e) => {
                // Stop the other downloads and wait for them, so none is still
                // running (mid-write or on a timer) when the runtime shuts down.
                // Their partial files stay in ingest/ for a resume.
                set.shutdown().await;
                Err(e)
            }
        }
    }

    /// Download one blob into the store unless present; resumes a partial download.
    /// Returns the bytes fetched from the network.
    pub async fn fetch_blob(
        &self,
        store: &Store,
        host: &str,
        repo: &str,
        desc: &Descriptor,
        progress: &dyn Progress,
    ) -> Result<u64, RegistryError> {
        let digest = &desc.digest;
        let size = desc.size;
        let path = format!("/v2/{repo}/blobs/{digest}");
        let mut failures = 0u32;
        let mut fetched = 0u64;
        let mut waiting_reported = false;
        loop {
            let start = {
                let s = store.clone();
                let d = digest.clone();
                block(move || s.try_ingest(&d, Some(size)))?
            };
            let mut w = match start {
                IngestStart::Present => {
                    progress.event(&Event::Exists {
                        digest: digest.clone(),
                        size,
                    });
                    return Ok(fetched);
                }
                IngestStart::Busy => {
                    if !waiting_reported {
                        progress.event(&Event::Waiting {
                            digest: digest.clone(),
                        });
                        waiting_reported = true;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
                IngestStart::Writer(w) => w,
            };
            let offset = w.offset();
            progress.event(&Event::Start {
                digest: digest.clone(),
                size,
                offset,
            });
            let attempt: Result<(), RegistryError> = async {
                if offset < size {
                    let mut h = HeaderMap::new();
                    if offset > 0 {
                        if let Ok(v) = HeaderValue::from_str(&format!("bytes={offset}-")) {
                            h.insert(RANGE, v);
                        }
                    }
                    let resp = self.get(host, &path, &scope(repo), h).await?;
                    match resp.status() {
                        StatusCode::PARTIAL_CONTENT if offset > 0 => {
                            let cr = resp
                                .headers()
                                .get(CONTENT_RANGE)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("");
                            if !cr.starts_with(&format!("bytes {offset}-")) {
                                block(|| w.restart())?;
                                return Err(RegistryError::Download {
                                    digest: digest.clone(),
                                    detail: format!("unexpected Content-Range {cr:?}; restarting"),
                                });
                            }
                        }
                        StatusCode::OK => {
                            if offset > 0 {
                                // The server ignored Range: start again from 0.
                                block(|| w.restart())?;
                            }
                        }
                        _ => {
                            return Err(
                                status_error(resp, host, repo, Some(&digest.to_string())).await
                            )
                        }
                    }
                    let stall = self.retry().stall_timeout;
                    let mut stream = resp.bytes_stream();
                    loop {
                        let next = tokio::time::timeout(stall, stream.next()).await;
                        match next {
                            Ok(Some(Ok(chunk))) => {
                                block(|| w.write_all(&chunk))?;
                                fetched += chunk.len() as u64;
                                progress.event(&Event::Bytes {
                                    digest: digest.clone(),
                                    written: w.offset(),
                                });
                            }
                            Ok(Some(Err(e))) => {
                                // Reset, truncated body, decode error: resumable.
                                return Err(RegistryError::Download {
                                    digest: digest.clone(),
                                    detail: format!("transfer interrupted: {}", root_cause(&e)),
                                });
                            }
                            Ok(None) => break,
                            Err(_) => {
                                return Err(RegistryError::Download {
                                    digest: digest.clone(),
                                    detail: format!("no data for {}s", stall.as_secs()),
                                })
                            }
                        }
                    }
                }
                Ok(())
            }
            .await;
            let retryable = match &attempt {
                Ok(()) => false,
                Err(e) => e.is_retryable() || matches!(e, RegistryError::Download { .. }),
            };
            match attempt {
                Ok(()) => match block(|| w.commit()) {
                    Ok(()) => {
                        progress.event(&Event::Done {
                            digest: digest.clone(),
                        });
                        return Ok(fetched);
                    }
                    // Short body: keep the prefix and resume.
                    Err(StoreError::SizeMismatch { found, .. }) if found < size => {
                        failures += 1;
                        if failures >= self.retry().attempts {
                            return Err(RegistryError::Download {
                                digest: digest.clone(),
                                detail: format!("connection closed after {found} of {size} bytes"),
                            });
                        }
                        progress.event(&Event::Retry {
                            digest: digest.clone(),
                            offset: found,
                            error: "short read".into(),
                        });
                    }
                    Err(StoreError::DigestMismatch { expected, found }) => {
                        return Err(RegistryError::Download {
                            digest: digest.clone(),
                            detail: format!(
                                "content does not match its digest (got {found}, expected {expected}); nothing was stored"
                            ),
                        })
                    }
                    Err(e) => return Err(e.into()),
                },
                Err(e) if retryable && failures + 1 < self.retry().attempts => {
                    failures += 1;
                    let _ = block(|| w.flush());
                    progress.event(&Event::Retry {
                        digest: digest.clone(),
                        offset: w.offset(),
                        error: e.to_string(),
                    });
                    drop(w);
                }
                Err(RegistryError::Store(StoreError::TooLarge { limit, .. })) => {
                    block(move || w.discard());
                    return Err(RegistryError::Download {
                        digest: digest.clone(),
                        detail: format!("registry sent more than the {limit} bytes the manifest declares"),
                    });
                }
                Err(e) => {
                    let _ = block(|| w.flush());
                    return Err(e);
                }
            }
            tokio::time::sleep(self.retry().delay(failures)).await;
        }
    }
}

/// The media type to record: what the registry served, else the document's own.
fn served_or_declared(served: &MediaType, m: &Manifest) -> MediaType {
    match served {
        MediaType::OciManifest | MediaType::DockerManifest => served.clone(),
        _ => m.media_type.clone().unwrap_or(MediaType::OciManifest),
    }
}

/// The first image manifest in `manifests` for `wanted`; attestation entries
/// (`unknown/unknown`) never match.
pub fn choose_platform<'a>(
    manifests: &'a [Descriptor],
    wanted: &Platform,
) -> Option<&'a Descriptor> {
    manifests
        .iter()
        .filter(|d| d.media_type.is_manifest())
        .find(|d| d.platform.as_ref().is_some_and(|p| wanted.matches(p)))
}

fn available(manifests: &[Descriptor]) -> String {
    let v: Vec<String> = manifests
        .iter()
        .filter_map(|d| d.platform.as_ref())
        .filter(|p| p.os != "unknown")
        .map(|p| p.to_string())
        .collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}
