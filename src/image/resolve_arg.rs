//! An image argument resolved once: `oci:DIR[:TAG]` (an OCI image layout) or a
//! name, reference or ID in the store, to its blob reader, verified manifest and
//! config. (The same logic as `cli/image_ref.rs`, below the CLI so library callers
//! such as `report` can use it; meant to be folded into one image resolver.)

use std::io::Read;
use std::path::Path;

use super::{resolve, ImageError, OciDir, Resolved};
use crate::oci::{Digest, ImageConfig};
use crate::store::{BlobReader, Store, StoreError, MAX_CONFIG_SIZE};

/// Why an image argument could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ResolveArgError {
    #[error("no such image: {name} (pull it first: imgctl pull {name}; `imgctl images` lists the store)")]
    NotFound { name: String },
    #[error("image {name}: {source}")]
    Layout {
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("image {name}: {source}")]
    Store {
        name: String,
        #[source]
        source: StoreError,
    },
    #[error("image {name}: {source}")]
    Image {
        name: String,
        #[source]
        source: ImageError,
    },
    #[error("image config {digest}: {reason}")]
    Config { digest: Digest, reason: String },
}

/// A local image: where its blobs are, its manifest (resolved to this platform) and
/// its config.
pub struct LocalImage {
    pub blobs: Box<dyn BlobReader>,
    pub resolved: Resolved,
    pub config: ImageConfig,
    /// True for store blobs (digests verified when committed); an OCI layout's blobs
    /// are not verified yet.
    pub verified_blobs: bool,
}

/// True when `arg` names an OCI layout (`oci:DIR[:TAG]`).
pub fn is_oci_dir(arg: &str) -> bool {
    OciDir::parse_ref(arg).is_some()
}

/// Resolve `arg` against the OCI layout it names or the store at `root`.
pub fn open_local(root: &Path, arg: &str) -> Result<LocalImage, ResolveArgError> {
    let name = arg.to_string();
    let (blobs, manifest, verified): (Box<dyn BlobReader>, Digest, bool) =
        if let Some((dir, tag)) = OciDir::parse_ref(arg) {
            let layout = |source| ResolveArgError::Layout {
                name: name.clone(),
                source,
            };
            let oci = OciDir::open(&dir).map_err(layout)?;
            let m = oci.manifest_for(tag.as_deref()).map_err(layout)?;
            (Box::new(oci), m, false)
        } else {
            let store = Store::open(root).map_err(|source| ResolveArgError::Store {
                name: name.clone(),
                source,
            })?;
            let found = match store.find_image(arg) {
                Ok(f) => f,
                Err(StoreError::ImageNotFound { .. }) => {
                    return Err(ResolveArgError::NotFound { name })
                }
                Err(source) => return Err(ResolveArgError::Store { name, source }),
            };
            (Box::new(store), found.descriptor.digest, true)
        };
    let resolved = resolve(blobs.as_ref(), &manifest).map_err(|source| ResolveArgError::Image {
        name: name.clone(),
        source,
    })?;
    let config = read_config(blobs.as_ref(), &resolved.config)?;
    Ok(LocalImage {
        blobs,
        resolved,
        config,
        verified_blobs: verified,
    })
}

/// Read, verify and parse an image config blob.
pub fn read_config(
    blobs: &dyn BlobReader,
    digest: &Digest,
) -> Result<ImageConfig, ResolveArgError> {
    let bad = |reason: String| ResolveArgError::Config {
        digest: digest.clone(),
        reason,
    };
    let f = blobs.open_blob(digest).map_err(|e| bad(e.to_string()))?;
    let mut data = Vec::new();
    f.take(MAX_CONFIG_SIZE + 1)
        .read_to_end(&mut data)
        .map_err(|e| bad(e.to_string()))?;
    if data.len() as u64 > MAX_CONFIG_SIZE {
        return Err(bad(format!("larger than {MAX_CONFIG_SIZE} bytes")));
    }
    if &Digest::of(&data) != digest {
        return Err(bad("content does not match its digest".into()));
    }
    serde_json::from_slice(&data).map_err(|e| bad(format!("not a valid image config: {e}")))
}
