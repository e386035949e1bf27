//! Resolving an image argument ONCE: a name, an ID or `oci:DIR[:TAG]` becomes a
//! [`ResolvedImage`] (where its blobs are, its verified manifest and its typed
//! config), which is then passed down as it is: `run`, `bundle`, `mount` and
//! `export` never look the name up a second time.
//!
//! Every manifest, index and config is read through [`crate::store::read_verified`]
//! (size limit, then digest check) before it is parsed.

use std::path::Path;

use super::{ImageError, OciDir, Resolved};
use crate::oci::{
    parse_image_config, parse_manifest, AnyManifest, Descriptor, Digest, ImageConfig, Manifest,
    MediaType, Platform, RunConfig, MAX_CONFIG_SIZE, MAX_MANIFEST_SIZE,
};
use crate::store::{read_verified, BlobReader, Store, StoreError};

/// A verified image manifest with its verified, typed config.
#[derive(Debug, Clone)]
pub struct ImageManifest {
    /// Digest of the (platform) manifest.
    pub digest: Digest,
    /// Its media type and size: the descriptor an index entry for it holds.
    pub media_type: MediaType,
    pub size: u64,
    pub manifest: Manifest,
    pub config: ImageConfig,
}

impl ImageManifest {
    /// The manifest's layers with their diff IDs, for unpacking.
    pub fn resolved(&self) -> Resolved {
        Resolved {
            manifest: self.digest.clone(),
            config: self.manifest.config.digest.clone(),
            layers: self.manifest.layers.clone(),
            diff_ids: self.config.rootfs.diff_ids.clone(),
        }
    }
}

/// Read and verify the image config `digest`.
pub fn read_config(blobs: &dyn BlobReader, digest: &Digest) -> Result<ImageConfig, ImageError> {
    let body = read_verified(blobs, digest, MAX_CONFIG_SIZE).map_err(|e| read_err(digest, e))?;
    parse_image_config(&body).map_err(|e| ImageError::Invalid {
        digest: digest.clone(),
        what: "image config",
        reason: e.to_string(),
    })
}

fn read_err(digest: &Digest, e: StoreError) -> ImageError {
    ImageError::Store {
        name: digest.to_string(),
        source: e,
    }
}

/// Read the manifest `digest` (served as `served`, or `MediaType::Other("")` when
/// unknown), following an index to `platform`, and its config; the number of
/// layers must match the config's diff IDs.
pub fn read_manifest(
    blobs: &dyn BlobReader,
    digest: &Digest,
    served: &MediaType,
    platform: &Platform,
) -> Result<ImageManifest, ImageError> {
    let mut digest = digest.clone();
    let mut served = served.clone();
    for _ in 0..2 {
        let body =
            read_verified(blobs, &digest, MAX_MANIFEST_SIZE).map_err(|e| read_err(&digest, e))?;
        let parsed = parse_manifest(&served, &body).map_err(|e| ImageError::Invalid {
            digest: digest.clone(),
            what: "manifest",
            reason: e.to_string(),
        })?;
        let manifest = match parsed {
            AnyManifest::Index(index) => {
                let pick: Option<&Descriptor> = index
                    .manifests
                    .iter()
                    .filter(|d| d.media_type.is_manifest())
                    .find(|d| d.platform.as_ref().is_some_and(|p| platform.matches(p)));
                let Some(pick) = pick else {
                    return Err(ImageError::NoPlatform {
                        digest,
                        os: platform.os.clone(),
                        arch: platform.architecture.clone(),
                    });
                };
                digest = pick.digest.clone();
                served = pick.media_type.clone();
                continue;
            }
            AnyManifest::Image(m) => m,
        };
        let media_type = match &served {
            MediaType::Other(s) if s.is_empty() => manifest
                .media_type
                .clone()
                .unwrap_or(MediaType::OciManifest),
            m => m.clone(),
        };
        let desc = Descriptor::new(media_type, digest, body.len() as u64);
        return with_config(blobs, desc, manifest);
    }
    Err(ImageError::Invalid {
        digest,
        what: "manifest",
        reason: "an index nested in an index".into(),
    })
}

fn with_config(
    blobs: &dyn BlobReader,
    desc: Descriptor,
    manifest: Manifest,
) -> Result<ImageManifest, ImageError> {
    let config = read_config(blobs, &manifest.config.digest)?;
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(ImageError::LayerCount {
            digest: desc.digest,
            layers: manifest.layers.len(),
            diff_ids: config.rootfs.diff_ids.len(),
        });
    }
    Ok(ImageManifest {
        digest: desc.digest,
        media_type: desc.media_type,
        size: desc.size,
        manifest,
        config,
    })
}

/// Where a resolved image's blobs are.
#[derive(Debug, Clone)]
enum Source {
    Store(Store),
    Layout(OciDir),
}

/// An image argument resolved once: its blobs, verified manifest and typed config.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    /// The argument as the user gave it (for messages).
    pub name: String,
    /// Every store name pointing at this manifest (empty for `oci:` layouts).
    pub names: Vec<String>,
    /// The index.json descriptor it was found by (store images only).
    pub descriptor: Option<Descriptor>,
    pub image: ImageManifest,
    source: Source,
}

impl ResolvedImage {
    /// Read access to the image's blobs (the store or the OCI layout).
    pub fn blobs(&self) -> &dyn BlobReader {
        match &self.source {
            Source::Store(s) => s,
            Source::Layout(o) => o,
        }
    }

    /// The image's execution defaults (ENTRYPOINT, CMD, ENV, USER, WORKDIR...).
    pub fn run_config(&self) -> Option<&RunConfig> {
        self.image.config.config.as_ref()
    }

    /// The image ID (config digest), as Docker shows it.
    pub fn id(&self) -> &Digest {
        &self.image.manifest.config.digest
    }

    /// Layers and diff IDs for unpacking.
    pub fn resolved(&self) -> Resolved {
        self.image.resolved()
    }

    /// The store this image is in, when it came from one.
    pub fn store(&self) -> Option<&Store> {
        match &self.source {
            Source::Store(s) => Some(s),
            Source::Layout(_) => None,
        }
    }
}

/// Resolve an image argument: `oci:DIR[:TAG]` names an OCI image layout (its index
/// followed to this host's platform); anything else is a name, reference or ID in
/// the store at `root` (`nginx` finds `docker.io/library/nginx:latest`).
pub fn resolve_image(root: &Path, name: &str) -> Result<ResolvedImage, ImageError> {
    if let Some((dir, tag)) = OciDir::parse_ref(name) {
        let io = |source| ImageError::Layout {
            name: name.to_string(),
            source,
        };
        let oci = OciDir::open(&dir).map_err(io)?;
        let desc = oci.descriptor_for(tag.as_deref()).map_err(io)?;
        let image = read_manifest(&oci, &desc.digest, &desc.media_type, &Platform::host())?;
        return Ok(ResolvedImage {
            name: name.to_string(),
            names: Vec::new(),
            descriptor: None,
            image,
            source: Source::Layout(oci),
        });
    }
    let store_err = |source| ImageError::Store {
        name: name.to_string(),
        source,
    };
    // Looking an image up never creates a store.
    let store = Store::open_existing(root).map_err(store_err)?;
    let found = match store.find_image(name) {
        Ok(f) => f,
        Err(StoreError::ImageNotFound { .. }) => {
            return Err(ImageError::NotFound {
                name: name.to_string(),
            })
        }
        Err(e) => return Err(store_err(e)),
    };
    // find_image read the manifest through the verified reader already.
    let image = with_config(&store, found.descriptor.clone(), found.manifest)?;
    Ok(ResolvedImage {
        name: name.to_string(),
        names: found.names,
        descriptor: Some(found.descriptor),
        image,
        source: Source::Store(store),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// A one-layer-less OCI layout with the given config bytes; returns its dir.
    fn layout(config: &[u8], tamper: bool) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let blobs = d.path().join("blobs/sha256");
        fs::create_dir_all(&blobs).unwrap();
        let cd = Digest::of(config);
        let stored: &[u8] = if tamper { b"{\"tampered\":1}" } else { config };
        fs::write(blobs.join(cd.hex()), stored).unwrap();
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":{}}},"layers":[]}}"#,
            config.len()
        );
        let md = Digest::of(m.as_bytes());
        fs::write(blobs.join(md.hex()), &m).unwrap();
        fs::write(
            d.path().join("index.json"),
            format!(
                r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{md}","size":{}}}]}}"#,
                m.len()
            ),
        )
        .unwrap();
        d
    }

    const CONFIG: &[u8] = br#"{"architecture":"amd64","os":"linux","config":{"Cmd":["/bin/sh"],"Healthcheck":{"Test":["NONE"]}},"rootfs":{"type":"layers","diff_ids":[]}}"#;

    #[test]
    fn resolves_an_oci_layout_once_with_a_typed_config() {
        let d = layout(CONFIG, false);
        let r = resolve_image(
            Path::new("/nonexistent"),
            &format!("oci:{}", d.path().display()),
        )
        .unwrap();
        let rc = r.run_config().unwrap();
        assert_eq!(rc.cmd.as_deref(), Some(&["/bin/sh".to_string()][..]));
        // Docker keys imgctl does not act on survive a round trip.
        assert!(rc.extra.contains_key("Healthcheck"));
        assert!(r.store().is_none());
    }

    #[test]
    fn a_config_that_does_not_match_its_digest_is_refused() {
        let d = layout(CONFIG, true);
        let e = resolve_image(
            Path::new("/nonexistent"),
            &format!("oci:{}", d.path().display()),
        )
        .unwrap_err();
        assert!(
            matches!(
                e,
                ImageError::Store {
                    source: StoreError::DigestMismatch { .. },
                    ..
                }
            ),
            "{e}"
        );
    }
}
