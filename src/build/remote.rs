//! The build cache outside the store: `--cache-to` exports the cache records of a
//! build, `--cache-from` imports them, through a registry or a local OCI layout, so
//! machines that share a registry share their builds (BuildKit's `type=registry`
//! and `type=local` caches).
//!
//! The cache is an OCI artifact (image-spec 1.1 `artifactType`):
//!
//! ```text
//! manifest  application/vnd.oci.image.manifest.v1+json
//!   artifactType  application/vnd.imgctl.buildcache.v1+json
//!   config        application/vnd.imgctl.buildcache.records.v1+json   the records
//!   layers        every layer blob a record names (so the registry keeps them)
//! records   {"schemaVersion": 1, "records": [{"key", "layer", "diff_id", "created"}]}
//! ```
//!
//! A record maps a step's cache key (see [`super::cache`]: the parent's key, the
//! instruction, the digest of its inputs) to what the step produced: a layer blob
//! and its diff ID, or nothing. Config-only steps need no record: their keys follow
//! from the previous one. On import, a step whose key has a record is a cache hit:
//! only its layer blob is downloaded (verified against its digest), nothing runs.
//! Keys cover every input, and the blob is verified, so a record cannot make a
//! step produce content other than what a build with the same inputs produced
//! (SECURITY-TESTS item 50); a record whose diff ID lies is caught when the layer
//! is unpacked (diff ID check).
//!
//! `mode=min` exports the records of the final stage (and the stages it is based
//! on); `mode=max` those of every stage built.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::cache::Entry;
use super::BuildError;
use crate::oci::{Descriptor, Digest, MediaType, Reference};
use crate::store::Store;

/// `artifactType` of a build cache manifest.
pub const ARTIFACT_TYPE: &str = "application/vnd.imgctl.buildcache.v1+json";
/// Media type of the records blob (the manifest's config).
pub const RECORDS_TYPE: &str = "application/vnd.imgctl.buildcache.records.v1+json";
/// The records blob is small; refuse more.
const MAX_RECORDS_SIZE: u64 = 16 << 20;

/// Where a cache lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheRef {
    /// `type=registry,ref=REGISTRY/REPOSITORY:TAG`
    Registry(Reference),
    /// `type=local,dest=DIR` / `type=local,src=DIR`: an OCI layout directory.
    Local(PathBuf),
}

impl std::fmt::Display for CacheRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CacheRef::Registry(r) => write!(f, "{r}"),
            CacheRef::Local(p) => write!(f, "{}", p.display()),
        }
    }
}

/// Which steps `--cache-to` exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheMode {
    /// The final stage's steps (and those of the stages it is based on).
    #[default]
    Min,
    /// Every stage's steps.
    Max,
}

/// `--cache-to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheExport {
    pub to: CacheRef,
    pub mode: CacheMode,
}

fn fields(flag: &str, s: &str) -> Result<BTreeMap<String, String>, String> {
    let mut m = BTreeMap::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("invalid {flag} {s:?}: {part:?} is not KEY=VALUE"))?;
        m.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(m)
}

fn reference(flag: &str, s: &str, r: &str) -> Result<Reference, String> {
    Reference::parse(r).map_err(|e| format!("invalid {flag} {s:?}: ref={r}: {e}"))
}

impl CacheExport {
    /// `type=registry,ref=R[,mode=min|max]` or `type=local,dest=DIR[,mode=...]`.
    pub fn parse(s: &str) -> Result<CacheExport, String> {
        let flag = "--cache-to";
        let f = fields(flag, s)?;
        let mode = match f.get("mode").map(String::as_str) {
            None | Some("min") => CacheMode::Min,
            Some("max") => CacheMode::Max,
            Some(m) => return Err(format!("invalid {flag} {s:?}: mode={m} (min or max)")),
        };
        for k in f.keys() {
            if !matches!(
                k.as_str(),
                "type" | "ref" | "dest" | "mode" | "oci-mediatypes" | "image-manifest"
            ) {
                return Err(format!("invalid {flag} {s:?}: unknown key {k:?}"));
            }
        }
        let to = match (f.get("type").map(String::as_str), f.get("ref"), f.get("dest")) {
            (Some("registry"), Some(r), _) => CacheRef::Registry(reference(flag, s, r)?),
            (Some("local"), _, Some(d)) => CacheRef::Local(PathBuf::from(d)),
            _ => {
                return Err(format!(
                    "invalid {flag} {s:?}: expected type=registry,ref=REGISTRY/REPO:TAG or type=local,dest=DIR"
                ))
            }
        };
        Ok(CacheExport { to, mode })
    }
}

impl CacheRef {
    /// `--cache-from`: `type=registry,ref=R`, `type=local,src=DIR`, or a bare reference.
    pub fn parse_from(s: &str) -> Result<CacheRef, String> {
        let flag = "--cache-from";
        if !s.contains('=') {
            return Ok(CacheRef::Registry(reference(flag, s, s)?));
        }
        let f = fields(flag, s)?;
        match (f.get("type").map(String::as_str), f.get("ref"), f.get("src")) {
            (Some("registry"), Some(r), _) => Ok(CacheRef::Registry(reference(flag, s, r)?)),
            (Some("local"), _, Some(d)) => Ok(CacheRef::Local(PathBuf::from(d))),
            _ => Err(format!(
                "invalid {flag} {s:?}: expected type=registry,ref=REGISTRY/REPO:TAG or type=local,src=DIR"
            )),
        }
    }
}

/// One exported step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub key: String,
    pub layer: Option<Descriptor>,
    pub diff_id: Option<Digest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
}

/// The records blob.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Records {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    pub records: Vec<Record>,
}

impl Record {
    fn entry(&self) -> Entry {
        Entry {
            layer: self.layer.clone(),
            diff_id: self.diff_id.clone(),
            created: self.created.clone(),
        }
    }

    /// A record is usable when it names a layer and its diff ID together (or
    /// neither), and the key is a hex key (it becomes no path, but keep it tidy).
    fn valid(&self) -> bool {
        self.layer.is_some() == self.diff_id.is_some()
            && self.key.len() == 64
            && self.key.bytes().all(|b| b.is_ascii_hexdigit())
    }
}

/// A cache artifact: (manifest, records blob, the blobs the manifest names).
type Artifact = (Vec<u8>, Vec<u8>, Vec<Descriptor>);

/// The artifact manifest and records blob for `records` (deterministic: sorted by
/// key, layers in first-use order).
pub fn artifact(records: &[Record]) -> Result<Artifact, BuildError> {
    let mut sorted: Vec<Record> = records.to_vec();
    sorted.sort_by(|a, b| a.key.cmp(&b.key));
    sorted.dedup_by(|a, b| a.key == b.key);
    let body = serde_json::to_vec(&Records {
        schema_version: 1,
        records: sorted.clone(),
    })
    .map_err(|e| BuildError::Other(format!("cache records: {e}")))?;
    let mut layers: Vec<Descriptor> = Vec::new();
    for r in &sorted {
        if let Some(l) = &r.layer {
            if !layers.iter().any(|x| x.digest == l.digest) {
                let mut d = Descriptor::new(l.media_type.clone(), l.digest.clone(), l.size);
                d.annotations = None;
                layers.push(d);
            }
        }
    }
    let config = Descriptor::new(
        MediaType::Other(RECORDS_TYPE.into()),
        Digest::of(&body),
        body.len() as u64,
    );
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MediaType::OciManifest.as_str(),
        "artifactType": ARTIFACT_TYPE,
        "config": config,
        "layers": layers,
    });
    let mbody = serde_json::to_vec(&manifest)
        .map_err(|e| BuildError::Other(format!("cache manifest: {e}")))?;
    let mut blobs = vec![config];
    blobs.extend(layers);
    Ok((mbody, body, blobs))
}

/// Parse and check a cache manifest; returns its records descriptor.
fn records_descriptor(what: &str, manifest: &[u8]) -> Result<Descriptor, BuildError> {
    let v: serde_json::Value = serde_json::from_slice(manifest)
        .map_err(|e| BuildError::Other(format!("cache {what}: not a manifest: {e}")))?;
    let is_cache = v["artifactType"].as_str() == Some(ARTIFACT_TYPE)
        || v["config"]["mediaType"].as_str() == Some(RECORDS_TYPE);
    if !is_cache {
        return Err(BuildError::Other(format!(
            "cache {what}: not an imgctl build cache (artifactType {})",
            v["artifactType"].as_str().unwrap_or("none")
        )));
    }
    serde_json::from_value(v["config"].clone())
        .map_err(|e| BuildError::Other(format!("cache {what}: bad config descriptor: {e}")))
}

fn parse_records(what: &str, body: &[u8]) -> Result<Vec<Record>, BuildError> {
    let r: Records = serde_json::from_slice(body)
        .map_err(|e| BuildError::Other(format!("cache {what}: bad records: {e}")))?;
    if r.schema_version != 1 {
        return Err(BuildError::Other(format!(
            "cache {what}: records schema version {} (this imgctl reads 1)",
            r.schema_version
        )));
    }
    Ok(r.records.into_iter().filter(Record::valid).collect())
}

/// Records imported by `--cache-from`, and where their blobs come from.
pub struct Imported {
    source: CacheRef,
    records: HashMap<String, Entry>,
}

impl Imported {
    /// Read the cache at `source` (its manifest and records only; layers are
    /// fetched on a hit). A cache that does not exist yet is empty, with a warning
    /// for the caller to show.
    pub fn load(
        root: &Path,
        store: &Store,
        source: &CacheRef,
    ) -> Result<(Imported, Option<String>), BuildError> {
        let what = source.to_string();
        let empty = || {
            Ok((
                Imported {
                    source: source.clone(),
                    records: HashMap::new(),
                },
                Some(format!("cache {what} not found: nothing imported")),
            ))
        };
        let records_desc = match source {
            CacheRef::Registry(r) => match crate::image::push::fetch_manifest(r) {
                Ok((_, body, _)) => records_descriptor(&what, &body)?,
                Err(crate::image::ImageError::Registry {
                    source:
                        crate::registry::RegistryError::ManifestUnknown { .. }
                        | crate::registry::RegistryError::RepositoryUnknown { .. },
                    ..
                }) => return empty(),
                Err(e) => return Err(BuildError::Other(format!("cache {what}: {e}"))),
            },
            CacheRef::Local(dir) => {
                let index = dir.join("index.json");
                let idx: crate::oci::Index = match fs::read(&index) {
                    Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                        BuildError::Other(format!("cache {}: {e}", index.display()))
                    })?,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return empty(),
                    Err(e) => return Err(BuildError::io(&index, e)),
                };
                let desc = idx.manifests.first().cloned().ok_or_else(|| {
                    BuildError::Other(format!("cache {}: no manifest", index.display()))
                })?;
                let body = read_layout_blob(dir, &desc.digest, crate::oci::MAX_MANIFEST_SIZE)?;
                records_descriptor(&what, &body)?
            }
        };
        if records_desc.size > MAX_RECORDS_SIZE {
            return Err(BuildError::Other(format!(
                "cache {what}: records are larger than {MAX_RECORDS_SIZE} bytes"
            )));
        }
        let body = match source {
            CacheRef::Registry(r) => {
                // Into the store (verified); unreferenced, so `prune` drops it.
                crate::image::push::fetch_blobs(root, r, std::slice::from_ref(&records_desc))
                    .map_err(|e| BuildError::Other(format!("cache {what}: {e}")))?;
                store
                    .read_blob(&records_desc.digest, MAX_RECORDS_SIZE)
                    .map_err(|e| BuildError::Other(format!("cache {what}: {e}")))?
            }
            CacheRef::Local(dir) => read_layout_blob(dir, &records_desc.digest, MAX_RECORDS_SIZE)?,
        };
        let records = parse_records(&what, &body)?
            .into_iter()
            .map(|r| (r.key.clone(), r.entry()))
            .collect();
        Ok((
            Imported {
                source: source.clone(),
                records,
            },
            None,
        ))
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The entry for `key`, its layer blob brought into `store` (verified).
    pub fn hit(&self, root: &Path, store: &Store, key: &str) -> Result<Option<Entry>, BuildError> {
        let Some(e) = self.records.get(key) else {
            return Ok(None);
        };
        if let Some(l) = &e.layer {
            if !store.has_blob(&l.digest) {
                match &self.source {
                    CacheRef::Registry(r) => {
                        crate::image::push::fetch_blobs(root, r, std::slice::from_ref(l))
                            .map_err(|e| BuildError::Other(format!("cache {r}: {e}")))?;
                    }
                    CacheRef::Local(dir) => copy_in(store, dir, l)?,
                }
            }
        }
        Ok(Some(e.clone()))
    }
}

fn layout_blob_path(dir: &Path, digest: &Digest) -> PathBuf {
    dir.join("blobs")
        .join(digest.algorithm())
        .join(digest.hex())
}

/// A small blob of an OCI layout, verified.
fn read_layout_blob(dir: &Path, digest: &Digest, limit: u64) -> Result<Vec<u8>, BuildError> {
    let p = layout_blob_path(dir, digest);
    let m = fs::metadata(&p).map_err(|e| BuildError::io(&p, e))?;
    if m.len() > limit {
        return Err(BuildError::Other(format!(
            "{}: larger than {limit} bytes",
            p.display()
        )));
    }
    let b = fs::read(&p).map_err(|e| BuildError::io(&p, e))?;
    if Digest::of(&b) != *digest {
        return Err(BuildError::Other(format!(
            "{}: content does not match its digest",
            p.display()
        )));
    }
    Ok(b)
}

/// Copy a layer blob from a layout into the store, verified by the store's writer.
fn copy_in(store: &Store, dir: &Path, desc: &Descriptor) -> Result<(), BuildError> {
    let p = layout_blob_path(dir, &desc.digest);
    let mut f = fs::File::open(&p).map_err(|e| BuildError::io(&p, e))?;
    let Some(mut w) = store
        .ingest_blocking(&desc.digest, Some(desc.size))
        .map_err(|e| BuildError::Other(format!("cache {}: {e}", dir.display())))?
    else {
        return Ok(());
    };
    w.restart()
        .map_err(|e| BuildError::Other(format!("cache {}: {e}", dir.display())))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = std::io::Read::read(&mut f, &mut buf).map_err(|e| BuildError::io(&p, e))?;
        if n == 0 {
            break;
        }
        w.write_all(&buf[..n])
            .map_err(|e| BuildError::Other(format!("cache {}: {e}", dir.display())))?;
    }
    w.commit()
        .map_err(|e| BuildError::Other(format!("cache {}: {e}", p.display())))
}

/// Write the cache artifact for `records` to `target`. Returns the manifest digest.
pub fn export(
    root: &Path,
    store: &Store,
    records: &[Record],
    target: &CacheRef,
) -> Result<Digest, BuildError> {
    let (manifest, body, blobs) = artifact(records)?;
    store
        .write_blob(&body)
        .map_err(|e| BuildError::Other(format!("cache records: {e}")))?;
    match target {
        CacheRef::Registry(r) => {
            let pushed = crate::image::push::push_artifact(
                root,
                r,
                MediaType::OciManifest,
                manifest,
                blobs,
                Arc::new(()),
            )
            .map_err(|e| BuildError::Other(format!("cache {r}: {e}")))?;
            Ok(pushed.digest)
        }
        CacheRef::Local(dir) => write_layout(store, dir, &manifest, &blobs),
    }
}

/// An OCI layout at `dir` holding the cache manifest (tagged `latest`) and its blobs.
fn write_layout(
    store: &Store,
    dir: &Path,
    manifest: &[u8],
    blobs: &[Descriptor],
) -> Result<Digest, BuildError> {
    let sha = dir.join("blobs").join("sha256");
    fs::create_dir_all(&sha).map_err(|e| BuildError::io(&sha, e))?;
    for b in blobs {
        let dst = layout_blob_path(dir, &b.digest);
        if dst.exists() {
            continue;
        }
        let src = store.blob_path(&b.digest);
        let tmp = dst.with_extension("tmp");
        fs::copy(&src, &tmp).map_err(|e| BuildError::io(&src, e))?;
        fs::rename(&tmp, &dst).map_err(|e| BuildError::io(&dst, e))?;
    }
    let digest = Digest::of(manifest);
    let mpath = layout_blob_path(dir, &digest);
    crate::store::write_atomic(&mpath, manifest, 0o644).map_err(|e| BuildError::io(&mpath, e))?;
    let mut desc = Descriptor::new(
        MediaType::OciManifest,
        digest.clone(),
        manifest.len() as u64,
    );
    desc.extra
        .insert("artifactType".into(), ARTIFACT_TYPE.into());
    let mut ann = BTreeMap::new();
    ann.insert(
        crate::oci::ANNOTATION_REF_NAME.to_string(),
        "latest".to_string(),
    );
    desc.annotations = Some(ann);
    let mut index = crate::oci::Index::empty();
    index.manifests.push(desc);
    let body = serde_json::to_vec_pretty(&index).map_err(|e| BuildError::Other(e.to_string()))?;
    let layout = dir.join("oci-layout");
    crate::store::write_atomic(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#, 0o644)
        .map_err(|e| BuildError::io(&layout, e))?;
    let ip = dir.join("index.json");
    crate::store::write_atomic(&ip, &body, 0o644).map_err(|e| BuildError::io(&ip, e))?;
    Ok(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(k: char, layer: Option<&[u8]>) -> Record {
        Record {
            key: std::iter::repeat_n(k, 64).collect(),
            layer: layer
                .map(|b| Descriptor::new(MediaType::OciLayerGzip, Digest::of(b), b.len() as u64)),
            diff_id: layer.map(|b| Digest::of(&[b, b"x"].concat())),
            created: Some("2024-01-01T00:00:00Z".into()),
        }
    }

    #[test]
    fn cache_flags_parse_like_buildkit() {
        let e = CacheExport::parse("type=registry,ref=127.0.0.1:5000/cache:main,mode=max").unwrap();
        assert_eq!(e.mode, CacheMode::Max);
        assert!(matches!(e.to, CacheRef::Registry(ref r) if r.repository() == "cache"));
        let e = CacheExport::parse("type=local,dest=/tmp/c").unwrap();
        assert_eq!(
            (e.to, e.mode),
            (CacheRef::Local("/tmp/c".into()), CacheMode::Min)
        );
        assert!(CacheExport::parse("type=registry").is_err());
        assert!(CacheExport::parse("type=registry,ref=x,mode=all").is_err());
        assert!(CacheExport::parse("type=gha,url=x").is_err());
        assert_eq!(
            CacheRef::parse_from("type=local,src=/c").unwrap(),
            CacheRef::Local("/c".into())
        );
        assert!(matches!(
            CacheRef::parse_from("127.0.0.1:5000/cache:main").unwrap(),
            CacheRef::Registry(_)
        ));
        assert!(CacheRef::parse_from("type=local,dest=/c").is_err());
    }

    #[test]
    fn artifact_is_deterministic_and_round_trips() {
        let a = rec('a', Some(b"one"));
        let b = rec('b', None);
        let c = rec('c', Some(b"one"));
        let (m1, r1, blobs) = artifact(&[c.clone(), a.clone(), b.clone()]).unwrap();
        let (m2, r2, _) = artifact(&[a.clone(), b.clone(), c.clone(), a.clone()]).unwrap();
        assert_eq!((m1.clone(), r1.clone()), (m2, r2));
        // config + one layer (shared by two records)
        assert_eq!(blobs.len(), 2);
        let d = records_descriptor("t", &m1).unwrap();
        assert_eq!(d.digest, Digest::of(&r1));
        let back = parse_records("t", &r1).unwrap();
        assert_eq!(back, vec![a, b, c]);
        let v: serde_json::Value = serde_json::from_slice(&m1).unwrap();
        assert_eq!(v["artifactType"], ARTIFACT_TYPE);
        // Not a cache: refused.
        assert!(records_descriptor("t", br#"{"config":{"mediaType":"x"}}"#).is_err());
        // A record with a layer but no diff ID, or a bad key, is dropped.
        let mut bad = rec('d', Some(b"two"));
        bad.diff_id = None;
        let mut badkey = rec('e', None);
        badkey.key = "../x".into();
        let (_, r, _) = artifact(&[bad, badkey]).unwrap();
        assert!(parse_records("t", &r).unwrap().is_empty());
    }
}
