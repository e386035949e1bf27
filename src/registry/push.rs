//! `push`: upload the blobs of a manifest the registry lacks, then the manifest
//! (distribution spec, "Pushing blobs" and "Pushing manifests").
//!
//! Per blob, in order of cost:
//! 1. `HEAD /v2/<repo>/blobs/<digest>`: the registry has it -> nothing to send.
//! 2. A cross-repository mount, `POST /v2/<repo>/blobs/uploads/?mount=<d>&from=<other>`,
//!    when the store knows the blob lives in another repository of the same
//!    registry ([`Store::blob_sources`]): 201 is a mount; 202 means the registry
//!    declined and opened an upload session instead, which is then used.
//! 3. A resumed upload: with `--chunk-size`, the session's location is kept under
//!    the store's `uploads/` after every chunk; the next push asks the registry how
//!    much it holds (`GET <location>`, `Range: 0-N`) and continues from there. A
//!    registry that no longer knows the session (or, like distribution, refuses a
//!    session whose state is older than its data) gets a fresh upload.
//! 4. An upload: one `PUT <location>?digest=` with the whole blob (monolithic), or
//!    `PATCH` chunks with `Content-Range` and a closing empty `PUT`.
//!
//! Blobs go up in parallel (bounded); the manifest goes last, so a registry never
//! holds a manifest whose blobs are missing. Tokens are asked with the scope
//! `repository:<repo>:pull,push` (plus `repository:<other>:pull` for a mount).

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use reqwest::header::{HeaderMap, HeaderValue, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE};
use reqwest::{Method, StatusCode, Url};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;

use super::client::{status_error, Client};
use super::RegistryError;
use crate::oci::{Descriptor, Digest, MediaType, Reference};
use crate::store::{Store, StoreError};

/// What the caller chose.
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// Blobs uploaded at once (at least 1).
    pub max_concurrent_uploads: usize,
    /// Upload in `PATCH` chunks of this many bytes (resumable); `None`: one `PUT`.
    pub chunk_size: Option<u64>,
    /// Where upload sessions are remembered for a resume (the store's `uploads/`).
    pub state_dir: Option<PathBuf>,
    /// Try cross-repository mounts from the repositories the store knows.
    pub mount: bool,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            max_concurrent_uploads: 3,
            chunk_size: None,
            state_dir: None,
            mount: true,
        }
    }
}

/// Progress events of a push.
#[derive(Debug, Clone)]
pub enum PushEvent {
    /// The registry already has the blob.
    Exists { digest: Digest, size: u64 },
    /// The registry mounted the blob from another repository.
    Mounted { digest: Digest, from: String },
    /// Upload starts (or resumes at `offset`).
    Start {
        digest: Digest,
        size: u64,
        offset: u64,
    },
    /// `sent` bytes of `digest` are with the registry (or on their way).
    Bytes { digest: Digest, sent: u64 },
    /// An attempt failed and the blob is tried again.
    Retry { digest: Digest, error: String },
    /// The registry verified and committed the blob.
    Done { digest: Digest },
    /// The manifest is pushed.
    Manifest {
        reference: String,
        digest: Digest,
        size: u64,
    },
}

/// Receives [`PushEvent`]s; called from upload tasks, so cheap and thread-safe.
pub trait PushProgress: Send + Sync {
    fn event(&self, e: &PushEvent);
}

impl PushProgress for () {
    fn event(&self, _e: &PushEvent) {}
}

/// What to push: a manifest (an image's or an artifact's) and the blobs it names,
/// all in the store.
#[derive(Debug, Clone)]
pub struct Upload {
    pub media_type: MediaType,
    pub manifest: Vec<u8>,
    /// Config and layers (each pushed once).
    pub blobs: Vec<Descriptor>,
}

/// What a push did.
#[derive(Debug, Clone)]
pub struct Pushed {
    pub digest: Digest,
    pub size: u64,
    /// Blob bytes sent to the registry (resumed prefixes excluded).
    pub uploaded_bytes: u64,
    pub blobs_uploaded: usize,
    pub blobs_existing: usize,
    pub blobs_mounted: usize,
}

/// A remembered upload session (`uploads/<key>.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UploadState {
    pub registry: String,
    pub repository: String,
    pub digest: Digest,
    /// The last `Location` the registry gave for the session.
    pub location: String,
    /// Bytes the registry acknowledged.
    pub offset: u64,
}

enum Outcome {
    Existed,
    Mounted,
    Uploaded(u64),
}

fn push_scope(repository: &str) -> String {
    format!("repository:{repository}:pull,push")
}

fn header(name: reqwest::header::HeaderName, v: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(v) {
        h.insert(name, v);
    }
    h
}

fn location_of(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// `Range: 0-N` (or `bytes=0-N`) -> the offset after it, N+1.
fn range_end(resp: &reqwest::Response) -> Option<u64> {
    let r = resp.headers().get("range")?.to_str().ok()?;
    let r = r.trim().trim_start_matches("bytes=");
    let (_, end) = r.split_once('-')?;
    end.trim().parse::<u64>().ok().map(|e| e + 1)
}

/// The absolute URL of an upload `location` (registries answer absolute or
/// relative), with `digest=` added for the closing PUT.
fn upload_url(
    base: &str,
    location: &str,
    digest: Option<&Digest>,
) -> Result<String, RegistryError> {
    let bad = |e: String| RegistryError::Status {
        url: location.to_string(),
        status: 0,
        detail: format!(": bad upload location: {e}"),
    };
    let mut u = Url::parse(&format!("{base}/"))
        .and_then(|b| b.join(location))
        .map_err(|e| bad(e.to_string()))?;
    if let Some(d) = digest {
        u.query_pairs_mut().append_pair("digest", &d.to_string());
    }
    Ok(u.to_string())
}

fn state_file(dir: &Path, host: &str, repo: &str, digest: &Digest) -> PathBuf {
    let key = Digest::of(format!("{host}/{repo}@{digest}").as_bytes());
    dir.join(format!("{}.json", key.hex()))
}

fn load_state(path: &Path) -> Option<UploadState> {
    let data = std::fs::read(path).ok()?;
    serde_json::from_slice(&data).ok()
}

/// Write `st` at `path`, its temp file in the store's `tmp/` (`tmp_dir`, cleaned by
/// `prune`), so a push killed mid-write leaves only whole states in `uploads/`.
fn save_state(tmp_dir: &Path, path: &Path, st: &UploadState) {
    let Some(dir) = path.parent() else { return };
    if crate::store::fsutil::mkdir_private(dir).is_err()
        || crate::store::fsutil::mkdir_private(tmp_dir).is_err()
    {
        return;
    }
    if let Ok(data) = serde_json::to_vec(st) {
        // Best effort: a lost state only costs a fresh upload.
        let _ = crate::store::write_atomic_via(tmp_dir, path, &data, 0o600);
    }
}

/// A streaming body reading the blob file from `offset`, announcing bytes as read.
fn file_body(
    path: &Path,
    digest: &Digest,
    progress: Arc<dyn PushProgress>,
) -> Result<reqwest::Body, RegistryError> {
    let f = std::fs::File::open(path).map_err(|source| {
        RegistryError::Store(StoreError::Io {
            op: "open blob",
            path: path.to_path_buf(),
            source,
        })
    })?;
    let f = tokio::fs::File::from_std(f);
    let digest = digest.clone();
    let stream = futures_util::stream::unfold(Some((f, 0u64)), move |st| {
        let digest = digest.clone();
        let progress = progress.clone();
        async move {
            let (mut f, sent) = st?;
            let mut buf = vec![0u8; 256 * 1024];
            match f.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    let sent = sent + n as u64;
                    progress.event(&PushEvent::Bytes { digest, sent });
                    Some((Ok::<Vec<u8>, std::io::Error>(buf), Some((f, sent))))
                }
                Err(e) => Some((Err(e), None)),
            }
        }
    });
    Ok(reqwest::Body::wrap_stream(stream))
}

/// Read `len` bytes of `path` at `offset`.
fn read_chunk(path: &Path, offset: u64, len: u64) -> Result<Vec<u8>, RegistryError> {
    let io = |source| {
        RegistryError::Store(StoreError::Io {
            op: "read blob",
            path: path.to_path_buf(),
            source,
        })
    };
    let mut f = std::fs::File::open(path).map_err(io)?;
    f.seek(SeekFrom::Start(offset)).map_err(io)?;
    let mut buf = Vec::with_capacity(len as usize);
    f.take(len).read_to_end(&mut buf).map_err(io)?;
    if buf.len() as u64 != len {
        return Err(RegistryError::Store(StoreError::SizeMismatch {
            digest: Digest::of(b""),
            expected: offset + len,
            found: offset + buf.len() as u64,
        }));
    }
    Ok(buf)
}

impl Client {
    /// Push `upload` to `dest` (its registry itself, never a mirror): missing blobs
    /// first, in parallel, then the manifest by `dest`'s tag or digest.
    pub async fn push(
        &self,
        store: &Store,
        dest: &Reference,
        upload: &Upload,
        opts: &PushOptions,
        progress: Arc<dyn PushProgress>,
    ) -> Result<Pushed, RegistryError> {
        let host = dest.registry().to_string();
        let repo = dest.repository().to_string();
        let mut blobs: Vec<Descriptor> = Vec::new();
        for b in &upload.blobs {
            if !blobs.iter().any(|x| x.digest == b.digest) {
                blobs.push(b.clone());
            }
        }
        let sem = Arc::new(tokio::sync::Semaphore::new(
            opts.max_concurrent_uploads.max(1),
        ));
        let failed_flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut set = tokio::task::JoinSet::new();
        for desc in blobs {
            let (c, s, h, r, o, p, sem, flag) = (
                self.clone(),
                store.clone(),
                host.clone(),
                repo.clone(),
                opts.clone(),
                progress.clone(),
                sem.clone(),
                failed_flag.clone(),
            );
            set.spawn(async move {
                let _permit = sem.acquire_owned().await;
                if flag.load(std::sync::atomic::Ordering::SeqCst) {
                    return Ok(None);
                }
                let res = c.push_blob(&s, &h, &r, &desc, &o, p).await;
                if res.is_err() {
                    flag.store(true, std::sync::atomic::Ordering::SeqCst);
                }
                res.map(Some)
            });
        }
        let mut out = Pushed {
            digest: Digest::of(&upload.manifest),
            size: upload.manifest.len() as u64,
            uploaded_bytes: 0,
            blobs_uploaded: 0,
            blobs_existing: 0,
            blobs_mounted: 0,
        };
        let mut failed = None;
        while let Some(res) = set.join_next().await {
            match res {
                Ok(Ok(Some(Outcome::Existed))) => out.blobs_existing += 1,
                Ok(Ok(Some(Outcome::Mounted))) => out.blobs_mounted += 1,
                Ok(Ok(Some(Outcome::Uploaded(n)))) => {
                    out.blobs_uploaded += 1;
                    out.uploaded_bytes += n;
                }
                Ok(Ok(None)) => {}
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
        if let Some(e) = failed {
            set.shutdown().await;
            return Err(e);
        }
        let digest = self
            .put_manifest(&host, &repo, &dest.manifest_selector(), upload)
            .await?;
        progress.event(&PushEvent::Manifest {
            reference: dest.to_string(),
            digest: digest.clone(),
            size: upload.manifest.len() as u64,
        });
        out.digest = digest;
        Ok(out)
    }

    /// PUT the manifest; the registry's `Docker-Content-Digest` must agree.
    async fn put_manifest(
        &self,
        host: &str,
        repo: &str,
        selector: &str,
        upload: &Upload,
    ) -> Result<Digest, RegistryError> {
        let digest = Digest::of(&upload.manifest);
        let path = format!("/v2/{repo}/manifests/{selector}");
        let body = upload.manifest.clone();
        let make = move || Ok(reqwest::Body::from(body.clone()));
        let resp = self
            .send(
                host,
                Method::PUT,
                &path,
                &push_scope(repo),
                header(CONTENT_TYPE, upload.media_type.as_str()),
                Some(&make),
                true,
            )
            .await?;
        if resp.status() != StatusCode::CREATED && !resp.status().is_success() {
            return Err(status_error(resp, host, repo, None).await);
        }
        let served = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<Digest>().ok());
        if let Some(s) = served {
            if s != digest {
                return Err(RegistryError::ManifestDigest {
                    what: format!("{host}/{repo}:{selector} (as stored by the registry)"),
                    expected: digest,
                    found: s,
                });
            }
        }
        Ok(digest)
    }

    /// Does the registry hold `digest` in `repo`?
    pub async fn blob_exists(
        &self,
        host: &str,
        repo: &str,
        digest: &Digest,
    ) -> Result<bool, RegistryError> {
        let path = format!("/v2/{repo}/blobs/{digest}");
        let resp = self
            .send(
                host,
                Method::HEAD,
                &path,
                &push_scope(repo),
                HeaderMap::new(),
                None,
                true,
            )
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(status_error(resp, host, repo, None).await),
        }
    }

    async fn push_blob(
        &self,
        store: &Store,
        host: &str,
        repo: &str,
        desc: &Descriptor,
        opts: &PushOptions,
        progress: Arc<dyn PushProgress>,
    ) -> Result<Outcome, RegistryError> {
        let digest = &desc.digest;
        if self.blob_exists(host, repo, digest).await? {
            progress.event(&PushEvent::Exists {
                digest: digest.clone(),
                size: desc.size,
            });
            self.remember(store, host, repo, digest);
            return Ok(Outcome::Existed);
        }
        let size = match store.blob_size(digest)? {
            Some(s) => s,
            None => {
                return Err(StoreError::BlobMissing {
                    digest: digest.clone(),
                }
                .into())
            }
        };
        let state_path = opts
            .state_dir
            .as_ref()
            .map(|d| state_file(d, host, repo, digest));
        let mut failures = 0u32;
        loop {
            let res = self
                .upload_once(
                    store,
                    host,
                    repo,
                    digest,
                    size,
                    opts,
                    state_path.as_deref(),
                    &progress,
                )
                .await;
            match res {
                Ok(o) => {
                    if let Some(p) = &state_path {
                        let _ = std::fs::remove_file(p);
                    }
                    self.remember(store, host, repo, digest);
                    match &o {
                        Outcome::Mounted => {}
                        _ => progress.event(&PushEvent::Done {
                            digest: digest.clone(),
                        }),
                    }
                    return Ok(o);
                }
                Err(e) if is_transient(&e) && failures + 1 < self.retry().attempts => {
                    failures += 1;
                    progress.event(&PushEvent::Retry {
                        digest: digest.clone(),
                        error: e.to_string(),
                    });
                    tokio::time::sleep(self.retry().delay(failures)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Record that `repo` now holds `digest` (best effort).
    fn remember(&self, store: &Store, host: &str, repo: &str, digest: &Digest) {
        if let Err(e) = store.add_blob_source(digest, &format!("{host}/{repo}")) {
            tracing::debug!(error = %e, "recording the blob source failed");
        }
    }

    /// One attempt: mount, resume or start a session, then send the bytes.
    #[allow(clippy::too_many_arguments)]
    async fn upload_once(
        &self,
        store: &Store,
        host: &str,
        repo: &str,
        digest: &Digest,
        size: u64,
        opts: &PushOptions,
        state_path: Option<&Path>,
        progress: &Arc<dyn PushProgress>,
    ) -> Result<Outcome, RegistryError> {
        let base = self.base_url(host).await?;
        let scope = push_scope(repo);
        let mut session: Option<(String, u64)> = None;
        // A remembered session: ask the registry how far it got.
        if let Some(st) = state_path.and_then(load_state) {
            match self.upload_status(host, repo, &st.location).await {
                Ok(Some((loc, offset))) if offset <= size => {
                    tracing::debug!(%digest, offset, "resuming upload");
                    session = Some((loc, offset));
                }
                Ok(_) | Err(_) => {
                    tracing::debug!(%digest, "remembered upload session is gone; starting again");
                    if let Some(p) = state_path {
                        let _ = std::fs::remove_file(p);
                    }
                }
            }
        }
        if session.is_none() && opts.mount {
            let sources = store.blob_sources(digest).unwrap_or_default();
            let from = sources.iter().rev().find_map(|s| {
                let (h, r) = s.split_once('/')?;
                (h == host && r != repo).then(|| r.to_string())
            });
            if let Some(from) = from {
                let path = format!("/v2/{repo}/blobs/uploads/?mount={digest}&from={from}");
                let mscope = format!("{scope} repository:{from}:pull");
                let resp = self
                    .send(
                        host,
                        Method::POST,
                        &path,
                        &mscope,
                        HeaderMap::new(),
                        None,
                        true,
                    )
                    .await;
                match resp {
                    Ok(r) if r.status() == StatusCode::CREATED => {
                        progress.event(&PushEvent::Mounted {
                            digest: digest.clone(),
                            from: format!("{host}/{from}"),
                        });
                        return Ok(Outcome::Mounted);
                    }
                    Ok(r) if r.status() == StatusCode::ACCEPTED => {
                        // Declined (blob gone from there, or no access): the
                        // session it opened takes the upload.
                        session = location_of(&r).map(|l| (l, 0));
                    }
                    Ok(r) => {
                        tracing::debug!(status = %r.status(), "mount refused; uploading");
                    }
                    Err(e) => tracing::debug!(error = %e, "mount failed; uploading"),
                }
            }
        }
        let (mut location, mut offset) = match session {
            Some(s) => s,
            None => {
                let path = format!("/v2/{repo}/blobs/uploads/");
                let resp = self
                    .send(
                        host,
                        Method::POST,
                        &path,
                        &scope,
                        HeaderMap::new(),
                        None,
                        true,
                    )
                    .await?;
                if resp.status() != StatusCode::ACCEPTED {
                    return Err(status_error(resp, host, repo, None).await);
                }
                let loc = location_of(&resp).ok_or_else(|| RegistryError::Status {
                    url: format!("{base}{path}"),
                    status: 202,
                    detail: ": no Location for the upload".into(),
                })?;
                (loc, 0)
            }
        };
        progress.event(&PushEvent::Start {
            digest: digest.clone(),
            size,
            offset,
        });
        let blob_path = store.blob_path(digest);
        let resumed_at = offset;
        let state_tmp = store.root().join("tmp");
        let remember = |location: &str, offset: u64| {
            if let Some(p) = state_path {
                save_state(
                    &state_tmp,
                    p,
                    &UploadState {
                        registry: host.to_string(),
                        repository: repo.to_string(),
                        digest: digest.clone(),
                        location: location.to_string(),
                        offset,
                    },
                );
            }
        };
        if opts.chunk_size.is_none() && offset == 0 {
            // Monolithic: the whole blob in the closing PUT.
            let url = upload_url(&base, &location, Some(digest))?;
            let (p, d, pr) = (blob_path.clone(), digest.clone(), progress.clone());
            let make = move || file_body(&p, &d, pr.clone());
            let mut h = header(CONTENT_TYPE, "application/octet-stream");
            h.extend(header(CONTENT_LENGTH, &size.to_string()));
            let resp = self
                .send(host, Method::PUT, &url, &scope, h, Some(&make), false)
                .await?;
            if resp.status() != StatusCode::CREATED {
                return Err(status_error(resp, host, repo, None).await);
            }
            return Ok(Outcome::Uploaded(size));
        }
        remember(&location, offset);
        let chunk = opts.chunk_size.unwrap_or(size).max(1);
        while offset < size {
            let len = chunk.min(size - offset);
            let data = {
                let p = blob_path.clone();
                tokio::task::spawn_blocking(move || read_chunk(&p, offset, len))
                    .await
                    .map_err(|e| RegistryError::Task {
                        detail: e.to_string(),
                    })??
            };
            let url = upload_url(&base, &location, None)?;
            let mut h = header(CONTENT_TYPE, "application/octet-stream");
            h.extend(header(
                CONTENT_RANGE,
                &format!("{}-{}", offset, offset + len - 1),
            ));
            h.extend(header(CONTENT_LENGTH, &len.to_string()));
            let make = move || Ok(reqwest::Body::from(data.clone()));
            let resp = self
                .send(host, Method::PATCH, &url, &scope, h, Some(&make), false)
                .await?;
            if resp.status() != StatusCode::ACCEPTED {
                return Err(status_error(resp, host, repo, None).await);
            }
            let acked = range_end(&resp).unwrap_or(offset + len);
            if acked != offset + len {
                return Err(RegistryError::Status {
                    url,
                    status: 202,
                    detail: format!(
                        ": registry holds {acked} bytes after a chunk ending at {}",
                        offset + len
                    ),
                });
            }
            if let Some(l) = location_of(&resp) {
                location = l;
            }
            offset = acked;
            remember(&location, offset);
            progress.event(&PushEvent::Bytes {
                digest: digest.clone(),
                sent: offset,
            });
        }
        let url = upload_url(&base, &location, Some(digest))?;
        let mut h = header(CONTENT_LENGTH, "0");
        h.extend(header(CONTENT_TYPE, "application/octet-stream"));
        let make = || Ok(reqwest::Body::from(Vec::new()));
        let resp = self
            .send(host, Method::PUT, &url, &scope, h, Some(&make), false)
            .await?;
        if resp.status() != StatusCode::CREATED {
            return Err(status_error(resp, host, repo, None).await);
        }
        Ok(Outcome::Uploaded(size - resumed_at))
    }

    /// `GET <location>`: the session's current location and offset, `None` when the
    /// registry no longer knows it.
    async fn upload_status(
        &self,
        host: &str,
        repo: &str,
        location: &str,
    ) -> Result<Option<(String, u64)>, RegistryError> {
        let base = self.base_url(host).await?;
        let url = upload_url(&base, location, None)?;
        let resp = self
            .send(
                host,
                Method::GET,
                &url,
                &push_scope(repo),
                HeaderMap::new(),
                None,
                true,
            )
            .await?;
        if resp.status() != StatusCode::NO_CONTENT && resp.status() != StatusCode::OK {
            return Ok(None);
        }
        let offset = range_end(&resp).unwrap_or(0);
        let loc = location_of(&resp).unwrap_or_else(|| location.to_string());
        Ok(Some((loc, offset)))
    }
}

/// Failures worth another attempt of the whole blob: transport errors, 5xx, and a
/// session the registry lost or refused mid-way (404/416 on the upload URL).
fn is_transient(e: &RegistryError) -> bool {
    match e {
        RegistryError::Http { .. } => true,
        RegistryError::Status { status, .. } => {
            *status >= 500 || *status == 429 || *status == 404 || *status == 416 || *status == 202
        }
        RegistryError::BlobUnknown { .. } => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_urls_keep_the_registry_state_and_add_the_digest() {
        let d = Digest::of(b"x");
        let u = upload_url(
            "http://127.0.0.1:5000",
            "/v2/a/blobs/uploads/u1?_state=abc%3D",
            Some(&d),
        )
        .unwrap();
        assert_eq!(
            u,
            format!(
                "http://127.0.0.1:5000/v2/a/blobs/uploads/u1?_state=abc%3D&digest=sha256%3A{}",
                d.hex()
            )
        );
        let abs = upload_url("http://h:1", "http://h:1/v2/a/blobs/uploads/u2", None).unwrap();
        assert_eq!(abs, "http://h:1/v2/a/blobs/uploads/u2");
    }

    #[test]
    fn state_files_are_per_registry_repository_and_blob() {
        let d = Digest::of(b"x");
        let dir = Path::new("/s");
        assert_ne!(state_file(dir, "h", "a", &d), state_file(dir, "h", "b", &d));
        assert_ne!(state_file(dir, "h", "a", &d), state_file(dir, "g", "a", &d));
        assert_eq!(state_file(dir, "h", "a", &d), state_file(dir, "h", "a", &d));
    }
}
