//! The store's images by name: list, tag, untag, repo digests, disk usage and
//! garbage collection (blobs and unpacked layers measured together). What
//! `images`, `inspect`, `history`, `tag`, `rmi`, `df` and `prune` call.

use std::path::Path;

use super::{read_config, ImageError, ResolvedImage};
use crate::oci::{Descriptor, Digest, ImageConfig, Manifest, Reference};
use crate::store::{BlobReader, Store, StoreError, ANNOTATION_SOURCE_DIGEST};

pub use crate::snapshot::LayerUsage;
pub use crate::store::{PruneReport, Usage};

/// One named image of the store with its verified manifest and config.
#[derive(Debug, Clone)]
pub struct ImageInfo {
    /// The full normalised reference it is stored under (may be empty).
    pub name: String,
    pub descriptor: Descriptor,
    pub manifest: Manifest,
    pub config: ImageConfig,
}

/// These commands read or change images already in the store: they never create
/// one (a missing root reads as an empty store).
fn open(root: &Path) -> Result<Store, ImageError> {
    Store::open_existing(root).map_err(|source| ImageError::Store {
        name: root.display().to_string(),
        source,
    })
}

fn store_err(what: &str) -> impl FnOnce(StoreError) -> ImageError + '_ {
    move |source| ImageError::Store {
        name: what.to_string(),
        source,
    }
}

/// Every named image in index order.
pub fn list(root: &Path) -> Result<Vec<ImageInfo>, ImageError> {
    let store = open(root)?;
    let mut out = Vec::new();
    for rec in store.image_records().map_err(store_err("index.json"))? {
        let manifest = store
            .read_manifest(&rec.descriptor)
            .map_err(store_err(&rec.name))?;
        let config = read_config(&store, &manifest.config.digest)?;
        out.push(ImageInfo {
            name: rec.name,
            descriptor: rec.descriptor,
            manifest,
            config,
        });
    }
    Ok(out)
}

/// `images` rows as Docker lists them: a name pinned by digest (`repo@sha256:…`,
/// made by `pull NAME@DIGEST`) is left out when a tagged name of the same
/// repository points at the same manifest (the image is listed once, under its
/// tag, with that digest in the DIGEST column).
pub fn without_pinned_duplicates(list: Vec<ImageInfo>) -> Vec<ImageInfo> {
    let refs: Vec<Option<Reference>> = list
        .iter()
        .map(|i| Reference::parse(&i.name).ok())
        .collect();
    let tagged = |repo: &str, digest: &Digest| {
        list.iter().zip(&refs).any(|(i, r)| {
            r.as_ref()
                .is_some_and(|r| r.tag().is_some() && r.name() == repo)
                && &i.descriptor.digest == digest
        })
    };
    let keep: Vec<bool> = list
        .iter()
        .zip(&refs)
        .map(|(i, r)| match r {
            Some(r) if r.tag().is_none() && r.digest().is_some() => {
                !tagged(&r.name(), &i.descriptor.digest)
            }
            _ => true,
        })
        .collect();
    list.into_iter()
        .zip(keep)
        .filter_map(|(i, k)| k.then_some(i))
        .collect()
}

/// The digest the registry serves for a stored image: the original Docker manifest
/// or index when one was recorded, else the stored manifest's.
pub fn registry_digest(desc: &crate::oci::Descriptor) -> String {
    desc.annotation(ANNOTATION_SOURCE_DIGEST)
        .map(str::to_string)
        .unwrap_or_else(|| desc.digest.to_string())
}

/// `familiar-name@digest` for each name of a store image, the digest being what the
/// registry served for that name (the index or original Docker manifest when
/// recorded on its index entry, else the stored manifest's). Each one resolves
/// back to the image ([`crate::store::Store::find_image`]).
pub fn repo_digests(image: &ResolvedImage) -> Vec<String> {
    let Some(desc) = &image.descriptor else {
        return Vec::new();
    };
    let records = image
        .store()
        .and_then(|s| s.image_records().ok())
        .unwrap_or_default();
    let mut out: Vec<String> = Vec::new();
    for n in &image.names {
        let Ok(rf) = Reference::parse(n) else {
            continue;
        };
        let entry = records
            .iter()
            .find(|r| &r.name == n && r.descriptor.digest == desc.digest)
            .map(|r| &r.descriptor)
            .unwrap_or(desc);
        let s = format!("{}@{}", rf.familiar_name(), registry_digest(entry));
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

/// Give the store image `source` the name `target` (which must carry a tag).
pub fn tag(root: &Path, source: &str, target: &Reference) -> Result<(), ImageError> {
    let store = open(root)?;
    let r = match store.find_image(source) {
        Ok(r) => r,
        Err(StoreError::ImageNotFound { .. }) => {
            return Err(ImageError::NotFound {
                name: source.to_string(),
            })
        }
        Err(e) => return Err(store_err(source)(e)),
    };
    let src_index = r
        .descriptor
        .annotation(ANNOTATION_SOURCE_DIGEST)
        .and_then(|s| s.parse::<Digest>().ok());
    let mut desc = r.descriptor.clone();
    desc.annotations = None;
    store
        .set_image(target, desc, src_index.as_ref())
        .map_err(store_err(&format!("tag {source} {target}")))
}

/// Remove the name `query` (or, for an ID, every name of that image). Returns the
/// names removed; blobs are freed by [`prune`].
pub fn untag(root: &Path, query: &str) -> Result<Vec<String>, ImageError> {
    let store = open(root)?;
    let exact = Reference::parse(query).ok().map(|r| r.to_string());
    let records = store.image_records().map_err(store_err("index.json"))?;
    // `NAME@DIGEST` stands for every name of that repository on the image it pins
    // (its own index entry after `pull NAME@DIGEST` included): afterwards it no
    // longer resolves.
    let pinned_repo = Reference::parse(query)
        .ok()
        .filter(|r| r.digest().is_some())
        .map(|r| r.name());
    let names: Vec<String> = match exact {
        Some(n) if pinned_repo.is_none() && records.iter().any(|r| r.name == n) => vec![n],
        _ => match store.find_image(query) {
            Ok(r) => match &pinned_repo {
                Some(repo) => r
                    .names
                    .into_iter()
                    .filter(|n| Reference::parse(n).is_ok_and(|x| &x.name() == repo))
                    .collect(),
                None => r.names,
            },
            Err(StoreError::ImageNotFound { .. }) => {
                return Err(ImageError::NotFound {
                    name: query.to_string(),
                })
            }
            Err(e) => return Err(store_err(query)(e)),
        },
    };
    let mut removed = Vec::new();
    for n in names {
        if store.remove_name(&n).map_err(store_err(&n))?.is_some() {
            removed.push(n);
        }
    }
    Ok(removed)
}

/// Disk usage of the store: blobs, and unpacked layers with their dedup savings.
pub fn disk_usage(root: &Path) -> Result<(Usage, LayerUsage), ImageError> {
    let store = open(root)?;
    let u = store.usage().map_err(store_err("measure store"))?;
    let l = crate::snapshot::layer_usage(root)?;
    Ok((u, l))
}

/// Remove blobs no image references and idle partial downloads.
pub fn prune(root: &Path) -> Result<PruneReport, ImageError> {
    open(root)?.prune().map_err(store_err("prune"))
}

/// The unpacked size of each of `layers` ([`layer_content_size`]), in order: what
/// `history` shows per layer, as Docker does.
pub fn layer_sizes(root: &Path, layers: &[Descriptor]) -> Result<Vec<u64>, ImageError> {
    let store = open(root)?;
    layers
        .iter()
        .map(|l| layer_content_size(&store, l))
        .collect()
}

/// Unpacked size of a layer blob as Docker shows it: the bytes of the regular files
/// it holds (hard links, directories, symlinks and whiteouts count nothing), read
/// from the decompressed tar. Each layer is read once per call of
/// [`unpacked_sizes`].
fn layer_content_size(store: &Store, layer: &Descriptor) -> Result<u64, ImageError> {
    let blob_err = |source| ImageError::Blob {
        digest: layer.digest.clone(),
        source,
    };
    let f = store.open_blob(&layer.digest).map_err(blob_err)?;
    let compression = crate::layer::Compression::from_media_type(layer.media_type.as_str())?;
    let dec = crate::layer::decoder(f, compression, &layer.digest.to_string())?;
    let mut ar = tar::Archive::new(dec);
    let mut total = 0u64;
    for e in ar.entries().map_err(blob_err)? {
        let e = e.map_err(blob_err)?;
        if e.header().entry_type().is_file() {
            total += e.header().size().map_err(blob_err)?;
        }
    }
    Ok(total)
}

/// The unpacked size of each image (same order as `images`): the sum of its
/// layers' [`layer_content_size`], every distinct layer read once.
pub fn unpacked_sizes(root: &Path, images: &[ImageInfo]) -> Result<Vec<u64>, ImageError> {
    let store = open(root)?;
    let mut seen: std::collections::HashMap<Digest, u64> = Default::default();
    let mut out = Vec::with_capacity(images.len());
    for img in images {
        let mut sum = 0u64;
        for l in &img.manifest.layers {
            let n = match seen.get(&l.digest) {
                Some(n) => *n,
                None => {
                    let n = layer_content_size(&store, l)?;
                    seen.insert(l.digest.clone(), n);
                    n
                }
            };
            sum += n;
        }
        out.push(sum);
    }
    Ok(out)
}
