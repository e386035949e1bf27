//! Push = an image (or a build-cache artifact) from the store to a registry. The
//! registry client does the uploads ([`crate::registry::Client::push`]); this module
//! picks the manifest to send (`--format`), names the blobs and holds a store lease
//! so `prune` cannot collect them meanwhile. It also fetches single manifests and
//! blobs for the build cache's import.

use std::path::Path;
use std::sync::Arc;

use super::pull::{client, runtime};
use super::ImageError;
use crate::oci::{parse_manifest, AnyManifest, Descriptor, Digest, MediaType, Reference};
use crate::registry::{PushOptions, Upload};
use crate::store::{media_type_of, Store, ANNOTATION_SOURCE_DIGEST, MAX_MANIFEST_SIZE};

pub use crate::registry::{PushEvent, PushProgress, Pushed};

/// Which manifest schema to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PushFormat {
    /// As stored; an image pulled as Docker schema 2 goes back with its original
    /// manifest (so the digest the registry had is kept).
    #[default]
    Keep,
    /// OCI image manifest.
    Oci,
    /// Docker image manifest v2, schema 2 (gzip layers only).
    Docker,
}

impl std::str::FromStr for PushFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<PushFormat, String> {
        match s {
            "oci" => Ok(PushFormat::Oci),
            "v2s2" | "docker" => Ok(PushFormat::Docker),
            "" | "keep" => Ok(PushFormat::Keep),
            _ => Err(format!("unknown manifest format {s:?} (oci or v2s2)")),
        }
    }
}

/// What to push and how.
#[derive(Debug, Clone)]
pub struct PushRequest {
    /// The image in the store: a name or an ID.
    pub image: String,
    /// Where to (default: the image's own name, which must name a registry).
    pub dest: Option<Reference>,
    pub format: PushFormat,
    /// `PATCH` chunks of this many bytes (resumable) instead of one `PUT` per blob.
    pub chunk_size: Option<u64>,
    pub max_concurrent_uploads: usize,
}

impl PushRequest {
    pub fn new(image: &str) -> PushRequest {
        PushRequest {
            image: image.to_string(),
            dest: None,
            format: PushFormat::Keep,
            chunk_size: None,
            max_concurrent_uploads: 3,
        }
    }
}

fn store_err(name: &str) -> impl Fn(crate::store::StoreError) -> ImageError + '_ {
    move |source| match source {
        crate::store::StoreError::ImageNotFound { .. } => ImageError::NotFound {
            name: name.to_string(),
        },
        source => ImageError::Store {
            name: name.to_string(),
            source,
        },
    }
}

fn reg_err(what: String) -> impl FnOnce(crate::registry::RegistryError) -> ImageError {
    move |source| ImageError::Registry { what, source }
}

/// The manifest (media type, bytes) to send for the stored image `desc`.
fn manifest_to_send(
    store: &Store,
    desc: &Descriptor,
    format: PushFormat,
    name: &str,
) -> Result<(MediaType, Vec<u8>), ImageError> {
    let stored = store
        .read_blob(&desc.digest, MAX_MANIFEST_SIZE)
        .map_err(store_err(name))?;
    let stored_type = media_type_of(&stored).unwrap_or_else(|| desc.media_type.clone());
    // The original Docker manifest of an image pulled as schema 2, when kept.
    let original = desc
        .annotation(ANNOTATION_SOURCE_DIGEST)
        .and_then(|d| d.parse::<Digest>().ok())
        .and_then(|d| store.read_blob(&d, MAX_MANIFEST_SIZE).ok())
        .filter(|b| media_type_of(b) == Some(MediaType::DockerManifest));
    let invalid = |reason: String| ImageError::Invalid {
        digest: desc.digest.clone(),
        what: "manifest to push",
        reason,
    };
    Ok(match (format, stored_type) {
        (PushFormat::Keep, _) if original.is_some() => {
            (MediaType::DockerManifest, original.unwrap_or_default())
        }
        (PushFormat::Keep, t) => (t, stored),
        (PushFormat::Oci, MediaType::DockerManifest) => (
            MediaType::OciManifest,
            crate::oci::docker_to_oci(&stored)
                .map_err(|e| invalid(format!("cannot convert layer type {e} to OCI")))?,
        ),
        (PushFormat::Oci, t) => (t, stored),
        (PushFormat::Docker, MediaType::DockerManifest) => (MediaType::DockerManifest, stored),
        (PushFormat::Docker, _) => match original {
            Some(o) => (MediaType::DockerManifest, o),
            None => (
                MediaType::DockerManifest,
                crate::oci::oci_to_docker(&stored).map_err(|e| {
                    invalid(format!(
                        "Docker schema 2 has no media type for {e} (push with --format oci)"
                    ))
                })?,
            ),
        },
    })
}

/// Push the image `req.image` from the store at `root`. Returns the destination and
/// what the push did.
pub fn push(
    root: &Path,
    req: &PushRequest,
    progress: Arc<dyn PushProgress>,
) -> Result<(Reference, Pushed), ImageError> {
    let store = Store::open_existing(root).map_err(store_err(&req.image))?;
    let found = store
        .find_image(&req.image)
        .map_err(store_err(&req.image))?;
    let dest = match &req.dest {
        Some(d) => d.clone(),
        None => {
            // Only a name goes to its registry: an image found by ID needs one.
            let named = Reference::parse(&req.image)
                .ok()
                .filter(|r| found.names.iter().any(|n| *n == r.to_string()));
            named.ok_or_else(|| ImageError::Invalid {
                digest: found.descriptor.digest.clone(),
                what: "push destination",
                reason: format!(
                    "{} is not an image name; name the destination: imgctl push {} REGISTRY/REPOSITORY[:TAG]",
                    req.image, req.image
                ),
            })?
        }
    };
    let _lease = store.lease().map_err(store_err(&req.image))?;
    let (media_type, manifest) =
        manifest_to_send(&store, &found.descriptor, req.format, &req.image)?;
    let m = match parse_manifest(&media_type, &manifest) {
        Ok(AnyManifest::Image(m)) => m,
        Ok(AnyManifest::Index(_)) => {
            return Err(ImageError::Invalid {
                digest: found.descriptor.digest.clone(),
                what: "image manifest",
                reason: "an index cannot be pushed as one image".into(),
            })
        }
        Err(e) => {
            return Err(ImageError::Invalid {
                digest: found.descriptor.digest.clone(),
                what: "image manifest",
                reason: e.to_string(),
            })
        }
    };
    let mut blobs = vec![m.config.clone()];
    blobs.extend(m.layers.iter().cloned());
    let upload = Upload {
        media_type,
        manifest,
        blobs,
    };
    let opts = PushOptions {
        max_concurrent_uploads: req.max_concurrent_uploads.max(1),
        chunk_size: req.chunk_size,
        state_dir: Some(root.join("uploads")),
        mount: true,
    };
    let pushed = run_push(&store, &dest, &upload, &opts, progress)?;
    Ok((dest, pushed))
}

fn run_push(
    store: &Store,
    dest: &Reference,
    upload: &Upload,
    opts: &PushOptions,
    progress: Arc<dyn PushProgress>,
) -> Result<Pushed, ImageError> {
    let client = client()?;
    let rt = runtime()?;
    rt.block_on(client.push(store, dest, upload, opts, progress))
        .map_err(reg_err(format!("push {dest}")))
}

/// Push an artifact (a manifest whose blobs are in the store at `root`) to `dest`,
/// e.g. the build cache. Returns the manifest digest.
pub fn push_artifact(
    root: &Path,
    dest: &Reference,
    media_type: MediaType,
    manifest: Vec<u8>,
    blobs: Vec<Descriptor>,
    progress: Arc<dyn PushProgress>,
) -> Result<Pushed, ImageError> {
    let store = Store::open(root).map_err(store_err(&dest.to_string()))?;
    let _lease = store.lease().map_err(store_err(&dest.to_string()))?;
    let upload = Upload {
        media_type,
        manifest,
        blobs,
    };
    let opts = PushOptions {
        state_dir: Some(root.join("uploads")),
        ..PushOptions::default()
    };
    run_push(&store, dest, &upload, &opts, progress)
}

/// Fetch the manifest `reference` names (verified against its digest header, or the
/// digest in the reference), without storing it: (media type, bytes, digest).
pub fn fetch_manifest(reference: &Reference) -> Result<(MediaType, Vec<u8>, Digest), ImageError> {
    let client = client()?;
    let rt = runtime()?;
    rt.block_on(client.fetch_manifest(
        reference.registry(),
        reference.repository(),
        &reference.manifest_selector(),
        reference.digest(),
    ))
    .map_err(reg_err(format!("fetch {reference}")))
}

/// Download `blobs` of `reference`'s repository into the store at `root` (each
/// verified; those already there are skipped). Returns the bytes fetched.
pub fn fetch_blobs(
    root: &Path,
    reference: &Reference,
    blobs: &[Descriptor],
) -> Result<u64, ImageError> {
    let store = Store::open(root).map_err(store_err(&reference.to_string()))?;
    let client = client()?;
    let rt = runtime()?;
    rt.block_on(async {
        let mut total = 0;
        for b in blobs {
            total += client
                .fetch_blob(&store, reference.registry(), reference.repository(), b, &())
                .await?;
            let _ = store.add_blob_source(
                &b.digest,
                &format!("{}/{}", reference.registry(), reference.repository()),
            );
        }
        Ok(total)
    })
    .map_err(reg_err(format!("fetch blobs of {reference}")))
}
