//! The one place the CLI turns an image argument into blobs and a manifest:
//! `oci:DIR[:TAG]` names an OCI image layout directory; anything else is a name,
//! reference or ID looked up in the store (`nginx` finds `docker.io/library/nginx:latest`).

use std::io::Read;

use anyhow::Context;

use super::Globals;
use crate::image::{self, OciDir};
use crate::oci::Digest;
use crate::store::{BlobReader, Store, StoreError};

/// Image configs larger than this are refused (the same limit the registry applies).
const MAX_CONFIG: u64 = 4 << 20;

/// Resolve an image argument to a blob reader and its manifest digest.
pub(super) fn resolve_image(
    g: &Globals,
    name: &str,
) -> anyhow::Result<(Box<dyn BlobReader>, Digest)> {
    if let Some((dir, tag)) = OciDir::parse_ref(name) {
        let oci = OciDir::open(&dir).with_context(|| format!("image {name}"))?;
        let manifest = oci
            .manifest_for(tag.as_deref())
            .with_context(|| format!("image {name}"))?;
        return Ok((Box::new(oci), manifest));
    }
    let store = Store::open_existing(&g.root)
        .with_context(|| format!("image {name}: open store {}", g.root.display()))?;
    let found = match store.find_image(name) {
        Ok(f) => f,
        Err(StoreError::ImageNotFound { .. }) => anyhow::bail!(
            "no such image: {name} (pull it first: imgctl pull {name}; `imgctl images` lists the store)"
        ),
        Err(e) => return Err(anyhow::Error::new(e).context(format!("image {name}"))),
    };
    Ok((Box::new(store), found.descriptor.digest))
}

/// The image's runtime configuration (ENTRYPOINT, CMD, ENV, USER, WORKDIR…), if any.
pub(super) fn image_config(
    blobs: &dyn BlobReader,
    manifest: &Digest,
) -> anyhow::Result<Option<oci_spec::image::Config>> {
    let resolved = image::resolve(blobs, manifest)?;
    let file = blobs
        .open_blob(&resolved.config)
        .with_context(|| format!("image config {}", resolved.config))?;
    let mut data = Vec::new();
    file.take(MAX_CONFIG + 1)
        .read_to_end(&mut data)
        .with_context(|| format!("read image config {}", resolved.config))?;
    if data.len() as u64 > MAX_CONFIG {
        anyhow::bail!(
            "image config {} is larger than {MAX_CONFIG} bytes",
            resolved.config
        );
    }
    if Digest::of(&data) != resolved.config {
        anyhow::bail!(
            "image config {} does not match its digest; pull the image again",
            resolved.config
        );
    }
    let config: oci_spec::image::ImageConfiguration = serde_json::from_slice(&data)
        .with_context(|| format!("parse image config {}", resolved.config))?;
    Ok(config.config().clone())
}
