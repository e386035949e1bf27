//! Registry client for the OCI distribution API (tokio + reqwest): auth (anonymous
//! and credentialed bearer tokens cached per scope, HTTP basic, Docker's credential
//! file and helpers), mirrors and insecure hosts, redirects without leaking the
//! registry's `Authorization` header to another origin, retries with backoff, and a
//! streaming, resumable, verified blob download that writes only through the store's
//! ingest API.

mod auth;
mod client;
mod config;
mod credentials;
mod pull;
mod push;
mod stream;

use std::path::PathBuf;

use crate::oci::{Digest, ManifestError};
use crate::store::StoreError;

pub use auth::{parse_challenge, Challenge};
pub use client::{BodyFn, Client, RetryPolicy};
pub use config::{host_without_port, Entry, RegistryConfig, MIRROR_ENV};
pub use credentials::{Credentials, DockerConfig};
pub use pull::{Event, Notice, Progress, PullOptions, PulledImage};
pub use push::{PushEvent, PushOptions, PushProgress, Pushed, Upload, UploadState};
pub use stream::RemoteImage;

/// The largest token or error body read from a registry (SECURITY-TESTS item 23).
pub const MAX_SMALL_BODY: u64 = 1024 * 1024;

/// Errors of the registry client. Each names the registry, repository or digest it
/// concerns.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot reach registry {registry}: {detail}")]
    Unreachable { registry: String, detail: String },
    #[error("{registry}: HTTPS failed ({detail}); to trust a private CA put its certificate in {ca_dirs}")]
    Tls {
        registry: String,
        detail: String,
        ca_dirs: String,
    },
    #[error("{url}: {source}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url}: unexpected HTTP status {status}{detail}")]
    Status {
        url: String,
        status: u16,
        detail: String,
    },
    #[error("{registry}: authentication required (run `imgctl login {registry}`)")]
    AuthRequired { registry: String },
    #[error("{registry}: unauthorized: wrong username or password, or no access ({detail})")]
    Unauthorized { registry: String, detail: String },
    #[error("{registry}: repository {repository} not found")]
    RepositoryUnknown {
        registry: String,
        repository: String,
    },
    #[error("{registry}/{repository}: manifest {selector} not found{hint}")]
    ManifestUnknown {
        registry: String,
        repository: String,
        selector: String,
        /// e.g. " (tags: v1, latest)"; may be empty.
        hint: String,
    },
    #[error("{registry}/{repository}: blob {digest} not found")]
    BlobUnknown {
        registry: String,
        repository: String,
        digest: Digest,
    },
    #[error("bad WWW-Authenticate header {header:?}: {detail}")]
    Challenge { header: String, detail: String },
    #[error("token service {realm}: {detail}")]
    Token { realm: String, detail: String },
    #[error("{what} is larger than the {limit}-byte limit")]
    TooLarge { what: String, limit: u64 },
    #[error("manifest {what}: {source}")]
    Manifest {
        what: String,
        #[source]
        source: ManifestError,
    },
    #[error("manifest digest mismatch for {what}: expected {expected}, got {found}")]
    ManifestDigest {
        what: String,
        expected: Digest,
        found: Digest,
    },
    #[error("no image for platform {wanted} in {reference} (available: {available})")]
    NoPlatform {
        wanted: String,
        reference: String,
        available: String,
    },
    #[error("{reference}: unsupported {what} media type {media_type:?}")]
    UnsupportedMediaType {
        reference: String,
        what: &'static str,
        media_type: String,
    },
    #[error("image config {digest}: {detail}")]
    Config { digest: Digest, detail: String },
    #[error("{path}: {detail}")]
    ConfigFile { path: PathBuf, detail: String },
    #[error("credentials in {path}: {detail}")]
    Credentials { path: PathBuf, detail: String },
    #[error("credential helper docker-credential-{helper}: {detail}")]
    Helper { helper: String, detail: String },
    #[error("blob {digest}: {detail}")]
    Download { digest: Digest, detail: String },
    #[error("download task failed: {detail}")]
    Task { detail: String },
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

impl RegistryError {
    /// Transport failures, timeouts, 5xx and 429 are worth another attempt; 4xx and
    /// digest mismatches are not (SECURITY-TESTS item 27).
    fn is_retryable(&self) -> bool {
        match self {
            RegistryError::Http { source, .. } => {
                source.is_timeout()
                    || source.is_connect()
                    || source.is_request()
                    || source.is_body()
            }
            RegistryError::Status { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}
