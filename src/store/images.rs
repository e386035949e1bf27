//! Image names in `index.json`: listing, resolving a name or ID, tagging, untagging.

use std::collections::BTreeMap;

use super::{Result, Store, StoreError, ANNOTATION_SOURCE_DIGEST, MAX_MANIFEST_SIZE};
use crate::oci::{
    parse_manifest, AnyManifest, Descriptor, Digest, Manifest, MediaType, Platform, Reference,
    ANNOTATION_REF_NAME,
};

/// One entry of the index: a name and the manifest it points at.
#[derive(Debug, Clone)]
pub struct ImageRecord {
    /// The `org.opencontainers.image.ref.name` annotation (empty when absent).
    pub name: String,
    /// `name` parsed as a reference, when it is one.
    pub reference: Option<Reference>,
    pub descriptor: Descriptor,
}

/// An image found by name or ID.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub descriptor: Descriptor,
    pub manifest: Manifest,
    /// Every index name pointing at the same manifest.
    pub names: Vec<String>,
}

impl Store {
    /// Every named image in index order.
    pub fn image_records(&self) -> Result<Vec<ImageRecord>> {
        Ok(self
            .index()?
            .manifests
            .into_iter()
            .map(|d| {
                let name = d.annotation(ANNOTATION_REF_NAME).unwrap_or("").to_string();
                ImageRecord {
                    reference: Reference::parse(&name).ok(),
                    name,
                    descriptor: d,
                }
            })
            .collect())
    }

    /// Read and verify an image manifest blob.
    pub fn read_manifest(&self, desc: &Descriptor) -> Result<Manifest> {
        let body = self.read_blob(&desc.digest, MAX_MANIFEST_SIZE)?;
        match parse_manifest(&desc.media_type, &body) {
            Ok(AnyManifest::Image(m)) => Ok(m),
            Ok(AnyManifest::Index(_)) => Err(StoreError::Corrupt {
                path: self.blob_path(&desc.digest),
                detail: "expected an image manifest, found an index".into(),
            }),
            Err(e) => Err(StoreError::Corrupt {
                path: self.blob_path(&desc.digest),
                detail: e.to_string(),
            }),
        }
    }

    /// Find an image by reference (normalised like Docker: `nginx` finds
    /// `docker.io/library/nginx:latest`), exact index name, or ID prefix (config
    /// digest, as Docker's image ID, or manifest digest; `sha256:` optional), or a
    /// digest-pinned reference ([`Self::find_by_digest`]).
    pub fn find_image(&self, query: &str) -> Result<Resolved> {
        let records = self.image_records()?;
        let parsed = Reference::parse(query).ok();
        let wanted = parsed.as_ref().map(|r| r.to_string());
        let by_name: Vec<&ImageRecord> = records
            .iter()
            .filter(|r| Some(&r.name) == wanted.as_ref() || r.name == query)
            .collect();
        let pinned = parsed.as_ref().and_then(|r| r.digest().map(|d| (r, d)));
        let chosen: Descriptor = if let Some(r) = by_name.first() {
            r.descriptor.clone()
        } else if let Some((reference, digest)) = pinned {
            self.find_by_digest(&records, reference, digest)?
                .ok_or(StoreError::ImageNotFound { name: query.into() })?
        } else {
            let hex = query.strip_prefix("sha256:").unwrap_or(query);
            let is_hex = !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit());
            if !is_hex || hex.len() < 4 {
                return Err(StoreError::ImageNotFound { name: query.into() });
            }
            let mut hits: BTreeMap<Digest, Descriptor> = BTreeMap::new();
            for r in &records {
                let m = self.read_manifest(&r.descriptor)?;
                if r.descriptor.digest.hex().starts_with(hex)
                    || m.config.digest.hex().starts_with(hex)
                {
                    hits.insert(r.descriptor.digest.clone(), r.descriptor.clone());
                }
            }
            match hits.len() {
                0 => return Err(StoreError::ImageNotFound { name: query.into() }),
                1 => hits
                    .into_values()
                    .next()
                    .ok_or(StoreError::ImageNotFound { name: query.into() })?,
                n => {
                    return Err(StoreError::Ambiguous {
                        name: query.into(),
                        count: n,
                    })
                }
            }
        };
        let names = records
            .iter()
            .filter(|r| r.descriptor.digest == chosen.digest && !r.name.is_empty())
            .map(|r| r.name.clone())
            .collect();
        let manifest = self.read_manifest(&chosen)?;
        Ok(Resolved {
            descriptor: chosen,
            manifest,
            names,
        })
    }

    /// The image a digest-pinned reference (`name@sha256:…`, `name:tag@sha256:…`)
    /// names, by digest only (Docker's rule: the tag is ignored), among the names of
    /// the same repository. The digest may be the stored manifest's, the one the
    /// registry served for a name (its `ANNOTATION_SOURCE_DIGEST`: the original Docker
    /// manifest stored converted to OCI, or the index a platform was chosen from), or
    /// a Docker manifest kept in the store whose OCI conversion is the stored manifest
    /// (a Docker platform manifest of an index). A digest known only under another
    /// repository is not found (the registry is asked instead).
    fn find_by_digest(
        &self,
        records: &[ImageRecord],
        reference: &Reference,
        digest: &Digest,
    ) -> Result<Option<Descriptor>> {
        let mut stored = vec![digest.clone()];
        // Any other blob of that digest (a layer, too big to be a manifest) is
        // simply not a Docker manifest.
        if let Ok(body) = self.read_blob(digest, MAX_MANIFEST_SIZE) {
            if super::media_type_of(&body) == Some(MediaType::DockerManifest) {
                if let Ok(oci) = crate::oci::docker_to_oci(&body) {
                    stored.push(Digest::of(&oci));
                }
            }
        }
        let repo = reference.name();
        let hits: Vec<&Descriptor> = records
            .iter()
            .filter(|r| r.reference.as_ref().is_some_and(|n| n.name() == repo))
            .map(|r| &r.descriptor)
            .filter(|d| {
                stored.contains(&d.digest)
                    || d.annotation(ANNOTATION_SOURCE_DIGEST) == Some(digest.to_string().as_str())
            })
            .collect();
        // An index pulled for several platforms: this host's first.
        let host = Platform::host();
        let pick = hits
            .iter()
            .find(|d| d.platform.as_ref().is_some_and(|p| host.matches(p)))
            .or(hits.first());
        Ok(pick.map(|d| (*d).clone()))
    }

    /// Point `name` at `desc` (replacing what it pointed at). The manifest and
    /// everything it references must already be committed.
    pub fn set_image(
        &self,
        name: &Reference,
        mut desc: Descriptor,
        source_digest: Option<&Digest>,
    ) -> Result<()> {
        let mut ann = desc.annotations.take().unwrap_or_default();
        ann.retain(|k, _| k != ANNOTATION_SOURCE_DIGEST);
        ann.insert(ANNOTATION_REF_NAME.to_string(), name.to_string());
        if let Some(i) = source_digest {
            ann.insert(ANNOTATION_SOURCE_DIGEST.to_string(), i.to_string());
        }
        desc.annotations = Some(ann);
        let full = name.to_string();
        self.update_index(|index| {
            index
                .manifests
                .retain(|d| d.annotation(ANNOTATION_REF_NAME) != Some(full.as_str()));
            index.manifests.push(desc);
            Ok(())
        })
    }

    /// Remove the index entry called `name` (exact). Returns the removed descriptor.
    pub fn remove_name(&self, name: &str) -> Result<Option<Descriptor>> {
        self.update_index(|index| {
            let pos = index
                .manifests
                .iter()
                .position(|d| d.annotation(ANNOTATION_REF_NAME) == Some(name));
            Ok(pos.map(|p| index.manifests.remove(p)))
        })
    }
}
