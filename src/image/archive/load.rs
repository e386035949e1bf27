//! `imgctl load`: a docker-archive or OCI archive (told by content, compressed or
//! not) into the store, streamed once, nothing visible before everything checked.
//!
//! 1. ingest: each tar entry is checked (no absolute names, no `..`, regular files,
//!    directories and in-archive links only, at most [`MAX_ENTRIES`]); the small
//!    top-level documents (`manifest.json`, `index.json`, `oci-layout`,
//!    `repositories`) are read into memory up to 4 MiB; every other file is written
//!    through [`Store::blob_writer`] and sealed (hashed, not visible). A gzip or
//!    zstd entry is decompressed on a second thread while it is written, giving its
//!    diff ID. An entry under `blobs/sha256/` must hash to its name.
//! 2. plan: `manifest.json` (Docker) or `index.json` (OCI) names the images; every
//!    manifest and config is read back through a digest check and parsed, every
//!    blob they name must be in the archive, every layer's diff ID must equal the
//!    config's, every name must be a valid reference.
//! 3. publish: the blobs the images use are renamed into `blobs/`, new manifests
//!    written, then the names tagged. A failure in 1 or 2 drops every temp file: the
//!    store is as before (SECURITY-TESTS B21/B24, C35).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read};
use std::path::Path;
use std::sync::mpsc::sync_channel;
use std::thread::Scope;

use serde::Deserialize;

use super::input::{self, ChannelReader};
use super::listing;
use super::{blob_path, ArchiveError, ANNOTATION_CONTAINERD_NAME, MAX_ENTRIES};
use crate::layer::index::Listing;
use crate::layer::{self, Compression};
use crate::oci::{
    docker_to_oci, parse_image_config, parse_manifest, AnyManifest, Descriptor, Digest, Index,
    Manifest, MediaType, Platform, Reference, ANNOTATION_REF_NAME, MAX_CONFIG_SIZE,
    MAX_MANIFEST_SIZE,
};
use crate::store::{SealedBlob, Store};

/// Top-level documents read into memory (bounded) instead of stored as blobs.
const META: [&str; 4] = ["manifest.json", "index.json", "oci-layout", "repositories"];
const CHUNK: usize = 256 * 1024;

/// An image the archive held, now in the store.
#[derive(Debug, Clone)]
pub struct LoadedImage {
    /// Names it was tagged with (none for an image the archive did not name).
    pub names: Vec<Reference>,
    /// The image ID (config digest).
    pub id: Digest,
    /// The manifest digest in the store.
    pub manifest: Digest,
}

/// What is known of one file entry after it streamed through.
#[derive(Debug, Clone)]
struct FileInfo {
    digest: Digest,
    size: u64,
    compression: Compression,
    /// The digest of the uncompressed content (the blob digest when uncompressed);
    /// why it could not be decompressed otherwise (an error only when the entry
    /// turns out to be a layer).
    diff_id: Result<Digest, String>,
    /// The size report's listing, when the entry is a layer tar.
    index: Option<Listing>,
}

#[derive(Default)]
struct Ingested {
    files: BTreeMap<String, FileInfo>,
    /// In-archive links: name -> target name.
    links: BTreeMap<String, String>,
    meta: BTreeMap<String, Vec<u8>>,
    /// Content not yet in the store, by digest.
    sealed: BTreeMap<Digest, SealedBlob>,
}

/// Load the archive read from `input` into the store at `root` (created when
/// missing). Returns the images in archive order.
pub fn load(root: &Path, input: impl Read + Send) -> Result<Vec<LoadedImage>, ArchiveError> {
    let store = Store::open(root)?;
    // Sealed blobs hold no lease of their own: this one keeps prune away from
    // tmp/ until everything is published.
    let _lease = store.lease()?;
    let ingested = std::thread::scope(|s| -> Result<Ingested, ArchiveError> {
        let (_, reader) = input::open(s, input).map_err(ArchiveError::io("read archive"))?;
        ingest(&store, s, reader)
    })?;
    let plans = plan(&store, &ingested)?;
    publish(&store, ingested, plans)
}

/// A checked tar entry name: relative, no `..`, `.` and empty components dropped.
pub(super) fn normalize(raw: &[u8]) -> Result<String, String> {
    let s = std::str::from_utf8(raw).map_err(|_| "the name is not UTF-8".to_string())?;
    if s.starts_with('/') {
        return Err("absolute name (path escapes the archive)".into());
    }
    let mut parts = Vec::new();
    for c in s.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err("\"..\" in the name (path escapes the archive)".into()),
            c => parts.push(c),
        }
    }
    Ok(parts.join("/"))
}

/// Where a link entry points, inside the archive. Symlink targets are relative to
/// the link's directory, hardlink targets to the archive root.
fn link_target(name: &str, target: &[u8], hard: bool) -> Result<String, String> {
    let t = std::str::from_utf8(target).map_err(|_| "link target is not UTF-8".to_string())?;
    if t.starts_with('/') {
        return Err(format!(
            "link target {t:?} is absolute (path escapes the archive)"
        ));
    }
    let mut parts: Vec<&str> = if hard {
        Vec::new()
    } else {
        let mut p: Vec<&str> = name.split('/').collect();
        p.pop();
        p
    };
    for c in t.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(format!(
                        "link target {t:?} leaves the archive (path escapes the archive)"
                    ));
                }
            }
            c => parts.push(c),
        }
    }
    Ok(parts.join("/"))
}

/// Fill `buf` from `r` (short only at end of input).
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

fn ingest<'scope>(
    store: &Store,
    scope: &'scope Scope<'scope, '_>,
    reader: Box<dyn Read + 'scope>,
) -> Result<Ingested, ArchiveError> {
    let mut out = Ingested::default();
    let mut ar = tar::Archive::new(reader);
    let read_err = ArchiveError::io("read archive (truncated, or not a tar?)");
    let entries = match ar.entries() {
        Ok(e) => e,
        Err(e) => return Err(read_err(e)),
    };
    let mut count = 0usize;
    for entry in entries {
        let mut e = entry.map_err(ArchiveError::io("read archive (truncated, or not a tar?)"))?;
        count += 1;
        if count > MAX_ENTRIES {
            return Err(ArchiveError::TooManyEntries { limit: MAX_ENTRIES });
        }
        let raw = e.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let bad = |reason: String| ArchiveError::Entry {
            entry: shown.clone(),
            reason,
        };
        let name = normalize(&raw).map_err(bad)?;
        let kind = e.header().entry_type();
        if kind.is_dir() {
            continue;
        }
        if name.is_empty() {
            return Err(bad("names the archive root".into()));
        }
        if out.files.contains_key(&name)
            || out.links.contains_key(&name)
            || out.meta.contains_key(&name)
        {
            return Err(bad("duplicate entry".into()));
        }
        if kind.is_symlink() || kind.is_hard_link() {
            let target = e
                .link_name_bytes()
                .map(|t| t.into_owned())
                .unwrap_or_default();
            let t = link_target(&name, &target, kind.is_hard_link()).map_err(bad)?;
            out.links.insert(name, t);
            continue;
        }
        if !(kind.is_file() || kind == tar::EntryType::Continuous) {
            return Err(bad(format!(
                "unsupported entry type {:?} (an image archive holds files, directories and links)",
                kind
            )));
        }
        if META.contains(&name.as_str()) {
            let mut body = Vec::new();
            (&mut e)
                .take(MAX_MANIFEST_SIZE + 1)
                .read_to_end(&mut body)
                .map_err(ArchiveError::io(format!("read {name}")))?;
            if body.len() as u64 > MAX_MANIFEST_SIZE {
                return Err(bad(format!(
                    "larger than the {MAX_MANIFEST_SIZE}-byte limit for metadata"
                )));
            }
            out.meta.insert(name, body);
            continue;
        }
        let (info, sealed) = store_entry(store, scope, &mut e, &name)?;
        if let Some(hex) = name.strip_prefix("blobs/sha256/") {
            let named = Digest::from_hex(hex)
                .map_err(|_| bad("not a sha256 digest under blobs/sha256/".into()))?;
            if named != info.digest {
                return Err(ArchiveError::Digest {
                    what: format!("archive entry {name}"),
                    expected: named,
                    found: info.digest,
                });
            }
        }
        if !out.sealed.contains_key(&info.digest) && !store.has_blob(&info.digest) {
            out.sealed.insert(info.digest.clone(), sealed);
        }
        out.files.insert(name, info);
    }
    Ok(out)
}

/// Stream one entry into a sealed blob; a compressed one is hashed uncompressed
/// on a second thread at the same time.
fn store_entry<'scope>(
    store: &Store,
    scope: &'scope Scope<'scope, '_>,
    e: &mut impl Read,
    name: &str,
) -> Result<(FileInfo, SealedBlob), ArchiveError> {
    use std::io::Write;
    let mut w = store.blob_writer()?;
    let mut compression = Compression::None;
    let mut worker = None;
    let mut tx = None;
    let mut first = true;
    loop {
        let mut chunk = vec![0u8; CHUNK];
        let n = read_full(e, &mut chunk).map_err(ArchiveError::io(format!("read {name}")))?;
        if n == 0 {
            break;
        }
        chunk.truncate(n);
        if first {
            first = false;
            compression = Compression::sniff(&chunk);
            let (t, rx) = sync_channel(16);
            tx = Some(t);
            worker =
                Some(scope.spawn(move || listing::inspect(ChannelReader::new(rx), compression)));
        }
        w.write_all(&chunk)
            .map_err(ArchiveError::io(format!("store {name}")))?;
        if let Some(t) = &tx {
            // A decoder that stopped (corrupt stream) reports at join; an
            // uncompressed entry that is no tar needs no more copies.
            if t.send(Ok(chunk)).is_err() {
                tx = None;
            }
        }
    }
    let sealed = w.seal(None)?;
    drop(tx);
    let (diff_id, index) = match worker {
        None => (Ok(None), None),
        Some(h) => match h.join() {
            Ok(i) => (i.diff_id, i.index),
            Err(_) => (Err("the decompression thread panicked".into()), None),
        },
    };
    let digest = sealed.digest().clone();
    let diff_id = diff_id.map(|d| d.unwrap_or_else(|| digest.clone()));
    let index = index.map(|mut l| {
        l.diff_id = diff_id.as_ref().ok().cloned();
        l
    });
    Ok((
        FileInfo {
            digest,
            size: sealed.len(),
            compression,
            diff_id,
            index,
        },
        sealed,
    ))
}

/// One image to publish.
#[derive(Debug)]
struct Plan {
    /// How messages name it.
    label: String,
    names: Vec<Reference>,
    config: Digest,
    descriptor: Descriptor,
    /// A manifest to write (made from manifest.json, or converted from Docker's).
    new_manifest: Option<Vec<u8>>,
    /// The original manifest (or index) it came from, kept like a pull does.
    source: Option<Digest>,
    /// Archive blobs it uses.
    blobs: Vec<Digest>,
}

#[derive(Deserialize)]
struct DockerEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

impl Ingested {
    fn lookup(&self, path: &str) -> Option<&FileInfo> {
        let mut p = normalize(path.as_bytes()).ok()?;
        for _ in 0..16 {
            if let Some(f) = self.files.get(&p) {
                return Some(f);
            }
            p = self.links.get(&p)?.clone();
        }
        None
    }

    fn blob(&self, d: &Digest) -> Option<&FileInfo> {
        self.files.get(&blob_path(d))
    }

    /// A small document, read back with its digest checked (from the sealed temp
    /// file, or from the store when the blob was there already).
    fn read(&self, store: &Store, info: &FileInfo, limit: u64) -> Result<Vec<u8>, ArchiveError> {
        if info.size > limit {
            return Err(ArchiveError::Json {
                file: info.digest.to_string(),
                reason: format!("larger than the {limit}-byte limit"),
            });
        }
        let Some(s) = self.sealed.get(&info.digest) else {
            return Ok(store.read_blob(&info.digest, limit)?);
        };
        let mut body = Vec::new();
        s.open()?
            .take(limit + 1)
            .read_to_end(&mut body)
            .map_err(ArchiveError::io(format!("read back {}", info.digest)))?;
        let found = Digest::of(&body);
        if found != info.digest {
            return Err(ArchiveError::Digest {
                what: "temp copy".into(),
                expected: info.digest.clone(),
                found,
            });
        }
        Ok(body)
    }
}

fn plan(store: &Store, ing: &Ingested) -> Result<Vec<Plan>, ArchiveError> {
    let mut plans = if let Some(body) = ing.meta.get("manifest.json") {
        plan_docker(store, ing, body)?
    } else if let Some(body) = ing.meta.get("index.json") {
        plan_oci(store, ing, body)?
    } else {
        return Err(ArchiveError::NotAnArchive {
            reason:
                "no manifest.json or index.json (for a root filesystem tar use `imgctl import`)"
                    .into(),
        });
    };
    // One plan per manifest; names merged.
    let mut merged: Vec<Plan> = Vec::new();
    for p in plans.drain(..) {
        match merged
            .iter_mut()
            .find(|m| m.descriptor.digest == p.descriptor.digest)
        {
            Some(m) => {
                for n in p.names {
                    if !m.names.contains(&n) {
                        m.names.push(n);
                    }
                }
            }
            None => merged.push(p),
        }
    }
    Ok(merged)
}

fn json_err(file: &str) -> impl FnOnce(serde_json::Error) -> ArchiveError + '_ {
    move |e| ArchiveError::Json {
        file: file.to_string(),
        reason: e.to_string(),
    }
}

fn parse_name(n: &str) -> Result<Reference, ArchiveError> {
    Reference::parse(n).map_err(|e| ArchiveError::Name {
        name: n.to_string(),
        reason: e.to_string(),
    })
}

/// Check the layers against the config: each must be there, its compression the
/// declared one, its uncompressed digest the config's diff ID.
fn check_layers(
    image: &str,
    layers: &[(String, &FileInfo, Option<Compression>)],
    diff_ids: &[Digest],
) -> Result<(), ArchiveError> {
    if layers.len() != diff_ids.len() {
        return Err(ArchiveError::Image {
            image: image.to_string(),
            reason: format!(
                "{} layers but its config lists {} diff IDs",
                layers.len(),
                diff_ids.len()
            ),
        });
    }
    for ((label, info, declared), expected) in layers.iter().zip(diff_ids) {
        if let Some(d) = declared {
            if *d != info.compression {
                return Err(ArchiveError::Image {
                    image: image.to_string(),
                    reason: format!(
                        "layer {label} is declared {} but its content is {}",
                        d.name(),
                        info.compression.name()
                    ),
                });
            }
        }
        let found = info
            .diff_id
            .as_ref()
            .map_err(|reason| ArchiveError::Image {
                image: image.to_string(),
                reason: format!("layer {label}: {reason}"),
            })?;
        if found != expected {
            return Err(ArchiveError::DiffId {
                image: image.to_string(),
                layer: label.clone(),
                expected: expected.clone(),
                found: found.clone(),
            });
        }
    }
    Ok(())
}

fn read_config(
    store: &Store,
    ing: &Ingested,
    info: &FileInfo,
    label: &str,
) -> Result<crate::oci::ImageConfig, ArchiveError> {
    let body = ing.read(store, info, MAX_CONFIG_SIZE)?;
    parse_image_config(&body).map_err(|e| ArchiveError::Json {
        file: format!("config of {label}"),
        reason: e.to_string(),
    })
}

fn platform_of(cfg: &crate::oci::ImageConfig) -> Platform {
    Platform {
        architecture: cfg.architecture.clone(),
        os: cfg.os.clone(),
        variant: cfg.variant.clone(),
        ..Platform::default()
    }
}

/// An OCI manifest of the archive (from its index.json) matching a Docker entry:
/// same config, same layer blobs. Using it keeps the manifest digest.
struct KnownManifest {
    digest: Digest,
    media_type: MediaType,
    size: u64,
    manifest: Manifest,
}

fn known_manifests(store: &Store, ing: &Ingested) -> Vec<KnownManifest> {
    let Some(body) = ing.meta.get("index.json") else {
        return Vec::new();
    };
    let Ok(index) = serde_json::from_slice::<Index>(body) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for d in index.manifests {
        let Some(info) = ing.blob(&d.digest) else {
            continue;
        };
        let Ok(body) = ing.read(store, info, MAX_MANIFEST_SIZE) else {
            continue;
        };
        if let Ok(AnyManifest::Image(m)) = parse_manifest(&d.media_type, &body) {
            out.push(KnownManifest {
                digest: d.digest.clone(),
                media_type: d.media_type.clone(),
                size: body.len() as u64,
                manifest: m,
            });
        }
    }
    out
}

fn plan_docker(store: &Store, ing: &Ingested, body: &[u8]) -> Result<Vec<Plan>, ArchiveError> {
    let entries: Vec<DockerEntry> =
        serde_json::from_slice(body).map_err(json_err("manifest.json"))?;
    if entries.is_empty() {
        return Err(ArchiveError::NotAnArchive {
            reason: "manifest.json lists no image".into(),
        });
    }
    let known = known_manifests(store, ing);
    let mut plans = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let tags = e.repo_tags.clone().unwrap_or_default();
        let label = tags
            .first()
            .cloned()
            .unwrap_or_else(|| format!("image {} of manifest.json", i + 1));
        let names = tags
            .iter()
            .map(|t| parse_name(t))
            .collect::<Result<Vec<_>, _>>()?;
        let missing = |path: &str| ArchiveError::Missing {
            what: format!("manifest.json ({label})"),
            path: path.to_string(),
        };
        let cinfo = ing.lookup(&e.config).ok_or_else(|| missing(&e.config))?;
        let config = read_config(store, ing, cinfo, &label)?;
        let mut layers = Vec::new();
        for l in &e.layers {
            let info = ing.lookup(l).ok_or_else(|| missing(l))?;
            layers.push((l.clone(), info, None));
        }
        check_layers(&label, &layers, &config.rootfs.diff_ids)?;
        let layer_digests: Vec<&Digest> = layers.iter().map(|(_, f, _)| &f.digest).collect();
        let mut blobs: Vec<Digest> = vec![cinfo.digest.clone()];
        blobs.extend(layer_digests.iter().map(|d| (*d).clone()));
        let found = known.iter().find(|k| {
            k.manifest.config.digest == cinfo.digest
                && k.manifest.layers.len() == layer_digests.len()
                && k.manifest
                    .layers
                    .iter()
                    .zip(&layer_digests)
                    .all(|(a, b)| &a.digest == *b)
        });
        let (descriptor, new_manifest, source) = match found {
            Some(k) if k.media_type == MediaType::OciManifest => {
                blobs.push(k.digest.clone());
                (
                    Descriptor::new(k.media_type.clone(), k.digest.clone(), k.size),
                    None,
                    None,
                )
            }
            Some(k) if k.media_type == MediaType::DockerManifest => {
                let info = ing.blob(&k.digest).ok_or_else(|| missing("manifest"))?;
                let original = ing.read(store, info, MAX_MANIFEST_SIZE)?;
                let oci = docker_to_oci(&original).map_err(|mt| ArchiveError::Image {
                    image: label.clone(),
                    reason: format!("unsupported layer media type {mt}"),
                })?;
                blobs.push(k.digest.clone());
                let d = Digest::of(&oci);
                (
                    Descriptor::new(MediaType::OciManifest, d, oci.len() as u64),
                    Some(oci),
                    Some(k.digest.clone()),
                )
            }
            _ => {
                let m = Manifest {
                    schema_version: 2,
                    media_type: Some(MediaType::OciManifest),
                    config: Descriptor::new(MediaType::OciConfig, cinfo.digest.clone(), cinfo.size),
                    layers: layers
                        .iter()
                        .map(|(_, f, _)| {
                            Descriptor::new(
                                MediaType::parse(f.compression.oci_media_type()),
                                f.digest.clone(),
                                f.size,
                            )
                        })
                        .collect(),
                    annotations: None,
                    extra: BTreeMap::new(),
                };
                let body = serde_json::to_vec(&m).map_err(json_err("new manifest"))?;
                (
                    Descriptor::new(MediaType::OciManifest, Digest::of(&body), body.len() as u64),
                    Some(body),
                    None,
                )
            }
        };
        let mut descriptor = descriptor;
        descriptor.platform = Some(platform_of(&config));
        plans.push(Plan {
            label,
            names,
            config: cinfo.digest.clone(),
            descriptor,
            new_manifest,
            source,
            blobs,
        });
    }
    Ok(plans)
}

/// The name an OCI archive gives an index entry: Docker's full-name annotation,
/// else `org.opencontainers.image.ref.name` when it is a reference; a bare tag
/// (`latest`, as skopeo writes for `oci-archive:F:latest`) names no repository, so
/// the image is loaded unnamed.
fn oci_name(d: &Descriptor) -> Result<Option<Reference>, ArchiveError> {
    if let Some(n) = d.annotation(ANNOTATION_CONTAINERD_NAME) {
        return parse_name(n).map(Some);
    }
    match d.annotation(ANNOTATION_REF_NAME) {
        Some(n) if n.contains('/') || n.contains(':') => parse_name(n).map(Some),
        _ => Ok(None),
    }
}

fn plan_oci(store: &Store, ing: &Ingested, body: &[u8]) -> Result<Vec<Plan>, ArchiveError> {
    let index: Index = serde_json::from_slice(body).map_err(json_err("index.json"))?;
    if index.manifests.is_empty() {
        return Err(ArchiveError::NotAnArchive {
            reason: "index.json lists no image".into(),
        });
    }
    let mut plans = Vec::new();
    for d in &index.manifests {
        let name = oci_name(d)?;
        let label = name
            .as_ref()
            .map(|n| n.to_string())
            .unwrap_or_else(|| d.digest.to_string());
        let missing = |what: String, dg: &Digest| ArchiveError::Missing {
            what,
            path: blob_path(dg),
        };
        let mut blobs = Vec::new();
        let mut source = None;
        let mut desc = d.clone();
        let (mut body, mut manifest) = (Vec::new(), None);
        for _ in 0..2 {
            let info = ing
                .blob(&desc.digest)
                .ok_or_else(|| missing("index.json".into(), &desc.digest))?;
            if info.size != desc.size {
                return Err(ArchiveError::Image {
                    image: label.clone(),
                    reason: format!(
                        "manifest {} is {} bytes, its descriptor says {}",
                        desc.digest, info.size, desc.size
                    ),
                });
            }
            body = ing.read(store, info, MAX_MANIFEST_SIZE)?;
            blobs.push(desc.digest.clone());
            match parse_manifest(&desc.media_type, &body).map_err(|e| ArchiveError::Json {
                file: format!("manifest {}", desc.digest),
                reason: e.to_string(),
            })? {
                AnyManifest::Image(m) => {
                    manifest = Some(m);
                    break;
                }
                AnyManifest::Index(i) => {
                    let host = Platform::host();
                    let pick = i
                        .manifests
                        .iter()
                        .filter(|c| c.media_type.is_manifest())
                        .find(|c| c.platform.as_ref().is_some_and(|p| host.matches(p)))
                        .ok_or_else(|| ArchiveError::Image {
                            image: label.clone(),
                            reason: format!("index {} has no manifest for {host}", desc.digest),
                        })?;
                    source = Some(desc.digest.clone());
                    desc = pick.clone();
                }
            }
        }
        let manifest = manifest.ok_or_else(|| ArchiveError::Image {
            image: label.clone(),
            reason: "an index nested in an index".into(),
        })?;
        let what = format!("manifest {}", desc.digest);
        let cinfo = ing
            .blob(&manifest.config.digest)
            .ok_or_else(|| missing(what.clone(), &manifest.config.digest))?;
        let config = read_config(store, ing, cinfo, &label)?;
        blobs.push(cinfo.digest.clone());
        let mut layers = Vec::new();
        for l in &manifest.layers {
            let info = ing
                .blob(&l.digest)
                .ok_or_else(|| missing(what.clone(), &l.digest))?;
            let declared = Compression::from_media_type(l.media_type.as_str()).map_err(|e| {
                ArchiveError::Image {
                    image: label.clone(),
                    reason: e.to_string(),
                }
            })?;
            layers.push((l.digest.to_string(), info, Some(declared)));
            blobs.push(l.digest.clone());
        }
        check_layers(&label, &layers, &config.rootfs.diff_ids)?;
        let (descriptor, new_manifest) = if desc.media_type == MediaType::DockerManifest
            || manifest.media_type == Some(MediaType::DockerManifest)
        {
            let oci = docker_to_oci(&body).map_err(|mt| ArchiveError::Image {
                image: label.clone(),
                reason: format!("unsupported layer media type {mt}"),
            })?;
            source = source.or_else(|| Some(desc.digest.clone()));
            (
                Descriptor::new(MediaType::OciManifest, Digest::of(&oci), oci.len() as u64),
                Some(oci),
            )
        } else {
            (
                Descriptor::new(MediaType::OciManifest, desc.digest.clone(), desc.size),
                None,
            )
        };
        let mut descriptor = descriptor;
        descriptor.platform = Some(platform_of(&config));
        plans.push(Plan {
            label,
            names: name.into_iter().collect(),
            config: cinfo.digest.clone(),
            descriptor,
            new_manifest,
            source,
            blobs,
        });
    }
    Ok(plans)
}

fn publish(
    store: &Store,
    mut ing: Ingested,
    plans: Vec<Plan>,
) -> Result<Vec<LoadedImage>, ArchiveError> {
    let mut done: BTreeSet<Digest> = BTreeSet::new();
    for p in &plans {
        for d in &p.blobs {
            if done.insert(d.clone()) {
                if let Some(s) = ing.sealed.remove(d) {
                    s.publish()?;
                }
                // A layer's size-report index goes in beside its blob.
                let listed = ing.files.values().find(|f| f.digest == *d);
                if let Some(l) = listed.and_then(|f| f.index.as_ref()) {
                    layer::index::save(store.root(), d, l);
                }
            }
        }
        if let Some(body) = &p.new_manifest {
            store.write_blob(body)?;
        }
    }
    // Entries no image uses go away with `ing` (their temp files removed).
    drop(ing);
    let mut out = Vec::new();
    for p in plans {
        tracing::debug!(image = %p.label, manifest = %p.descriptor.digest, "loaded");
        for n in &p.names {
            store.set_image(n, p.descriptor.clone(), p.source.as_ref())?;
        }
        if p.names.is_empty() {
            // Kept under no name, like Docker's dangling images (unless a name
            // already holds it).
            let desc = p.descriptor.clone();
            store.update_index(|idx| {
                if !idx.manifests.iter().any(|m| m.digest == desc.digest) {
                    idx.manifests.push(desc);
                }
                Ok(())
            })?;
        }
        out.push(LoadedImage {
            names: p.names,
            id: p.config,
            manifest: p.descriptor.digest,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert_eq!(normalize(b"./blobs//sha256/ab").unwrap(), "blobs/sha256/ab");
        assert_eq!(normalize(b"manifest.json").unwrap(), "manifest.json");
        assert!(normalize(b"../x").is_err());
        assert!(normalize(b"a/../../x").is_err());
        assert!(normalize(b"/etc/passwd").is_err());
        assert!(normalize(b"a/\xff").is_err());
        assert_eq!(
            link_target("a/b/layer.tar", b"../c/layer.tar", false).unwrap(),
            "a/c/layer.tar"
        );
        assert_eq!(
            link_target("x", b"blobs/sha256/ab", true).unwrap(),
            "blobs/sha256/ab"
        );
        assert!(link_target("a/layer.tar", b"../../etc", false).is_err());
        assert!(link_target("a/layer.tar", b"/etc/passwd", false).is_err());
    }
}
