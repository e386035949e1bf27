//! Reading an image from a registry without a store: resolve a reference to one
//! platform's manifest and config (bounded, verified), and open a layer blob as a
//! response body for the caller to stream and verify (used by `imgctl size`).

use reqwest::Response;

use super::client::{read_limited, status_error};
use super::pull::choose_platform;
use super::{Client, RegistryError};
use crate::oci::{
    parse_manifest, AnyManifest, Digest, Manifest, MediaType, Platform, Reference, MAX_CONFIG_SIZE,
};

/// An image as a registry serves it, resolved to one platform.
#[derive(Debug, Clone)]
pub struct RemoteImage {
    /// The endpoint (mirror or registry) that answered.
    pub host: String,
    pub repository: String,
    /// Digest of the platform manifest.
    pub manifest_digest: Digest,
    pub manifest: Manifest,
    /// The config blob, verified against its digest.
    pub config: Vec<u8>,
}

fn scope(repository: &str) -> String {
    format!("repository:{repository}:pull")
}

impl Client {
    /// Resolve `reference` (following an index to `platform`) and fetch its config.
    pub async fn resolve_remote(
        &self,
        reference: &Reference,
        platform: &Platform,
    ) -> Result<RemoteImage, RegistryError> {
        self.each_endpoint(reference, |ep| async move {
            self.resolve_at(reference, &ep, platform).await
        })
        .await
    }

    async fn resolve_at(
        &self,
        reference: &Reference,
        host: &str,
        platform: &Platform,
    ) -> Result<RemoteImage, RegistryError> {
        let repo = reference.repository();
        let what = reference.to_string();
        let (served, body, digest) = self
            .fetch_manifest(
                host,
                repo,
                &reference.manifest_selector(),
                reference.digest(),
            )
            .await?;
        let parsed = parse_manifest(&served, &body).map_err(|source| RegistryError::Manifest {
            what: what.clone(),
            source,
        })?;
        let (manifest, manifest_digest) = match parsed {
            AnyManifest::Image(m) => (m, digest),
            AnyManifest::Index(idx) => {
                let chosen = choose_platform(&idx.manifests, platform).ok_or_else(|| {
                    RegistryError::NoPlatform {
                        wanted: platform.to_string(),
                        reference: what.clone(),
                        available: idx
                            .manifests
                            .iter()
                            .filter_map(|d| d.platform.as_ref().map(|p| p.to_string()))
                            .collect::<Vec<_>>()
                            .join(", "),
                    }
                })?;
                let (cserved, cbody, cdigest) = self
                    .fetch_manifest(host, repo, &chosen.digest.to_string(), Some(&chosen.digest))
                    .await?;
                let cserved = match cserved {
                    MediaType::Other(_) => chosen.media_type.clone(),
                    m => m,
                };
                match parse_manifest(&cserved, &cbody) {
                    Ok(AnyManifest::Image(m)) => (m, cdigest),
                    Ok(AnyManifest::Index(_)) => {
                        return Err(RegistryError::UnsupportedMediaType {
                            reference: what,
                            what: "nested index",
                            media_type: cserved.to_string(),
                        })
                    }
                    Err(source) => return Err(RegistryError::Manifest { what, source }),
                }
            }
        };
        if manifest.config.size > MAX_CONFIG_SIZE {
            return Err(RegistryError::TooLarge {
                what: format!("config {}", manifest.config.digest),
                limit: MAX_CONFIG_SIZE,
            });
        }
        let resp = self
            .blob_response(host, repo, &manifest.config.digest)
            .await?;
        let config = read_limited(
            resp,
            MAX_CONFIG_SIZE,
            &format!("config {}", manifest.config.digest),
        )
        .await?;
        let found = Digest::of(&config);
        if found != manifest.config.digest {
            return Err(RegistryError::Download {
                digest: manifest.config.digest.clone(),
                detail: format!("content hashes to {found}"),
            });
        }
        Ok(RemoteImage {
            host: host.to_string(),
            repository: repo.to_string(),
            manifest_digest,
            manifest,
            config,
        })
    }

    /// GET a blob; a successful response whose body the caller streams and verifies.
    pub async fn blob_response(
        &self,
        host: &str,
        repository: &str,
        digest: &Digest,
    ) -> Result<Response, RegistryError> {
        let path = format!("/v2/{repository}/blobs/{digest}");
        let resp = self
            .get(host, &path, &scope(repository), Default::default())
            .await?;
        if !resp.status().is_success() {
            return Err(status_error(resp, host, repository, None).await);
        }
        Ok(resp)
    }
}
