//! Commit a new image from a parent image and changes — "image in, image out".
//!
//! An [`Image`] is a parent's config and layer descriptors held in memory. Callers
//! change its runtime config ([`Image::config_mut`]), add layers made from an upper
//! directory ([`write_layer`] then [`Image::push_layer`]) or history-only steps
//! ([`Image::push_empty`]), and [`commit`] writes the config and manifest blobs to
//! the store (verified, atomic) and optionally tags the result. Nothing is visible
//! under a name until the blobs it references are committed.

use std::collections::BTreeMap;
use std::path::Path;

use crate::layer::{self, DiffOptions};
use crate::oci::{
    Descriptor, Digest, History, ImageConfig, Manifest, MediaType, Reference, RunConfig,
};
use crate::store::{Store, StoreError, MAX_CONFIG_SIZE, MAX_MANIFEST_SIZE};

/// Errors of committing an image.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Layer(#[from] layer::LayerError),
    #[error("image {digest}: {reason}")]
    Invalid { digest: Digest, reason: String },
    #[error("encode image JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// An image being built: config + layers, in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    pub config: ImageConfig,
    pub layers: Vec<Descriptor>,
}

/// A committed image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub manifest: Digest,
    pub manifest_size: u64,
    pub config: Digest,
}

impl Committed {
    /// The descriptor an index entry for this image holds.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor::new(
            MediaType::OciManifest,
            self.manifest.clone(),
            self.manifest_size,
        )
    }
}

impl Image {
    /// The empty image (`FROM scratch`) for `os`/`architecture`.
    pub fn scratch(os: &str, architecture: &str, variant: Option<&str>) -> Image {
        Image {
            config: ImageConfig {
                architecture: architecture.to_string(),
                os: os.to_string(),
                variant: variant.map(str::to_string),
                rootfs: crate::oci::RootFs {
                    kind: "layers".into(),
                    diff_ids: Vec::new(),
                },
                ..Default::default()
            },
            layers: Vec::new(),
        }
    }

    /// Load a stored image (manifest digest; an index is followed to this host's
    /// platform), verifying every blob read.
    pub fn load(store: &Store, manifest: &Digest) -> Result<Image, CommitError> {
        let resolved = super::resolve(store, manifest).map_err(|e| CommitError::Invalid {
            digest: manifest.clone(),
            reason: e.to_string(),
        })?;
        let mbody = store.read_blob(&resolved.manifest, MAX_MANIFEST_SIZE)?;
        let m: Manifest = serde_json::from_slice(&mbody).map_err(|e| CommitError::Invalid {
            digest: resolved.manifest.clone(),
            reason: format!("manifest: {e}"),
        })?;
        let cbody = store.read_blob(&m.config.digest, MAX_CONFIG_SIZE)?;
        let config: ImageConfig =
            serde_json::from_slice(&cbody).map_err(|e| CommitError::Invalid {
                digest: m.config.digest.clone(),
                reason: format!("config: {e}"),
            })?;
        if config.rootfs.diff_ids.len() != m.layers.len() {
            return Err(CommitError::Invalid {
                digest: resolved.manifest,
                reason: format!(
                    "{} layers but {} diff IDs",
                    m.layers.len(),
                    config.rootfs.diff_ids.len()
                ),
            });
        }
        // Docker media types become OCI ones in the new manifest.
        let layers = m
            .layers
            .into_iter()
            .map(|mut l| {
                l.media_type = crate::oci::oci_layer_type(&l.media_type);
                l
            })
            .collect();
        Ok(Image { config, layers })
    }

    /// The runtime config (`Env`, `Cmd`, `WorkingDir`, ...), created empty when the
    /// image has none.
    pub fn config_mut(&mut self) -> &mut RunConfig {
        self.config.config.get_or_insert_with(RunConfig::default)
    }

    /// The runtime config as the typed value the runtime takes.
    pub fn runtime_config(&self) -> Option<RunConfig> {
        self.config.config.clone()
    }

    /// Diff IDs of the layers, bottom first.
    pub fn diff_ids(&self) -> &[Digest] {
        &self.config.rootfs.diff_ids
    }

    /// Add a layer and its history entry.
    pub fn push_layer(&mut self, layer: NewLayer, mut history: History) {
        history.empty_layer = false;
        self.layers.push(layer.descriptor);
        self.config.rootfs.diff_ids.push(layer.diff_id);
        self.config.history.push(history);
    }

    /// Add a history entry for a step that changed only the config.
    pub fn push_empty(&mut self, mut history: History) {
        history.empty_layer = true;
        self.config.history.push(history);
    }
}

/// A layer written to the store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewLayer {
    pub descriptor: Descriptor,
    pub diff_id: Digest,
}

/// Write the contents of `dir` (an overlay upper dir or a plain tree, per `opts`) as
/// a layer blob in the store through [`Store::blob_writer`]. The size report's index
/// of the layer is recorded beside it (`cache/size`, [`layer::index`]), made from the
/// tar stream as it is written, so a report of the new image reads no blob.
pub fn write_layer(store: &Store, dir: &Path, opts: &DiffOptions) -> Result<NewLayer, CommitError> {
    let mut w = store.blob_writer()?;
    let (out, listing) = layer::write_layer_indexed(dir, &mut w, opts)?;
    let (digest, size) = w.complete(Some(&out.digest))?;
    if let Some(l) = &listing {
        layer::index::save(store.root(), &digest, l);
    }
    Ok(NewLayer {
        descriptor: Descriptor::new(MediaType::parse(out.media_type), digest, size),
        diff_id: out.diff_id,
    })
}

/// Write `image`'s config and manifest to the store; tag it `tags` (each replacing
/// what it pointed at). `annotations` go on the manifest.
pub fn commit(
    store: &Store,
    image: &Image,
    annotations: Option<BTreeMap<String, String>>,
    tags: &[Reference],
) -> Result<Committed, CommitError> {
    let config = serde_json::to_vec(&image.config)?;
    let config_digest = store.write_blob(&config)?;
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(MediaType::OciManifest),
        config: Descriptor::new(
            MediaType::parse("application/vnd.oci.image.config.v1+json"),
            config_digest.clone(),
            config.len() as u64,
        ),
        layers: image.layers.clone(),
        annotations,
        extra: BTreeMap::new(),
    };
    let body = serde_json::to_vec(&manifest)?;
    let digest = store.write_blob(&body)?;
    let committed = Committed {
        manifest: digest,
        manifest_size: body.len() as u64,
        config: config_digest,
    };
    for t in tags {
        store.set_image(t, committed.descriptor(), None)?;
    }
    Ok(committed)
}

/// RFC 3339 UTC (`1970-01-01T00:00:00Z`) for seconds since the epoch.
pub fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn commit_writes_config_and_manifest_and_tags() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let tree = tempfile::tempdir().unwrap();
        std::fs::write(tree.path().join("hello"), b"hi\n").unwrap();
        let opts = DiffOptions {
            source_date_epoch: Some(0),
            whiteouts: layer::WhiteoutFormat::None,
            ..Default::default()
        };
        let l = write_layer(&store, tree.path(), &opts).unwrap();
        assert!(store.has_blob(&l.descriptor.digest));
        // The size report's index of the new layer is recorded with it.
        let idx = layer::index::load(store.root(), &l.descriptor.digest).unwrap();
        assert_eq!(idx.diff_id.as_ref(), Some(&l.diff_id));
        let names: Vec<&str> = idx.entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["hello"]);
        assert_eq!(idx.entries[0].content, Some(blake3::hash(b"hi\n").into()));
        let mut img = Image::scratch("linux", "amd64", None);
        img.config_mut().cmd = Some(vec!["/hello".into()]);
        img.push_layer(
            l.clone(),
            History {
                created_by: Some("COPY hello /".into()),
                ..Default::default()
            },
        );
        img.push_empty(History {
            created_by: Some("CMD [\"/hello\"]".into()),
            ..Default::default()
        });
        let tag: Reference = "example.test/app:1".parse().unwrap();
        let c = commit(&store, &img, None, std::slice::from_ref(&tag)).unwrap();
        let found = store.find_image("example.test/app:1").unwrap();
        assert_eq!(found.descriptor.digest, c.manifest);
        let back = Image::load(&store, &c.manifest).unwrap();
        assert_eq!(back, img);
        assert!(back.config.history[1].empty_layer);
        // Same input, same digests.
        let again = commit(&store, &img, None, &[]).unwrap();
        assert_eq!(again, c);
    }
}
