//! `imgctl save`: store images into one tar, each blob once.
//!
//! ```text
//! oci-layout                  {"imageLayoutVersion":"1.0.0"}
//! blobs/sha256/<hex>          configs, layers (as stored: compressed), manifests
//! index.json                  one entry per name (one unnamed entry per image saved by ID)
//! manifest.json, repositories docker-archive only: Docker's index of the same blobs
//! ```
//!
//! In an oci-archive `org.opencontainers.image.ref.name` holds the full name
//! (`docker.io/library/busybox:latest`), as imgctl's store and podman write it; in a
//! docker-archive it holds the tag and `io.containerd.image.name` the full name, as
//! Docker 25+ writes them. Every blob is hashed while it is copied: a blob changed
//! on disk after it was committed fails the save instead of going out.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::{blob_path, ArchiveError, Format, ANNOTATION_CONTAINERD_NAME};
use crate::image::{resolve_image, ResolvedImage};
use crate::oci::{Descriptor, Digest, Digester, Index, Reference, ANNOTATION_REF_NAME};
use crate::store::{BlobReader, Store};

/// What a save wrote.
#[derive(Debug, Clone, Default)]
pub struct SaveReport {
    pub images: usize,
    pub blobs: usize,
    pub bytes: u64,
}

/// One image to save and the names it goes under.
struct Item {
    image: ResolvedImage,
    names: Vec<Reference>,
}

/// `busybox` or `reg:5000/app` (no tag, no digest): Docker saves every tag of it.
fn name_only(arg: &str) -> bool {
    let last = arg.rsplit('/').next().unwrap_or(arg);
    !arg.contains('@') && !last.contains(':') && !arg.starts_with("oci:")
}

fn plan(root: &Path, args: &[String]) -> Result<Vec<Item>, ArchiveError> {
    let store = Store::open_existing(root)?;
    let records = store.image_records()?;
    let mut items: Vec<Item> = Vec::new();
    let mut add = |image: ResolvedImage, names: Vec<Reference>| match items
        .iter_mut()
        .find(|i| i.image.image.digest == image.image.digest)
    {
        Some(i) => {
            for n in names {
                if !i.names.contains(&n) {
                    i.names.push(n);
                }
            }
        }
        None => items.push(Item { image, names }),
    };
    for arg in args {
        let parsed = Reference::parse(arg).ok();
        if name_only(arg) {
            if let Some(p) = &parsed {
                let repo = p.name();
                let tagged: Vec<Reference> = records
                    .iter()
                    .filter_map(|r| r.reference.clone())
                    .filter(|r| r.name() == repo && r.tag().is_some())
                    .collect();
                if !tagged.is_empty() {
                    for r in tagged {
                        let img = resolve_image(root, &r.to_string())?;
                        add(img, vec![r]);
                    }
                    continue;
                }
            }
        }
        let img = resolve_image(root, arg)?;
        let names = match parsed {
            Some(r) if img.names.contains(&r.to_string()) && r.tag().is_some() => vec![r],
            _ => Vec::new(),
        };
        add(img, names);
    }
    Ok(items)
}

/// Write the images `args` (names, IDs or `oci:DIR[:TAG]`) from the store at
/// `root` to `out` as one archive.
pub fn save(
    root: &Path,
    args: &[String],
    format: Format,
    out: impl Write,
) -> Result<SaveReport, ArchiveError> {
    let items = plan(root, args)?;
    write_archive(&items, format, out)
}

/// [`save`] into the file `path`: written to a temp file beside it (0600: the
/// archive holds every file of the images) and renamed into place when complete,
/// so a failed save leaves no partial archive under the name.
pub fn save_to_file(
    root: &Path,
    args: &[String],
    format: Format,
    path: &Path,
) -> Result<SaveReport, ArchiveError> {
    let items = plan(root, args)?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "archive".into());
    let tmp = dir.join(format!(".{file_name}.imgctl-{}", std::process::id()));
    let out_err = |p: &Path| {
        let p = p.to_path_buf();
        move |source| ArchiveError::Output { path: p, source }
    };
    let f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(out_err(&tmp))?;
    let result = (|| {
        let mut w = io::BufWriter::with_capacity(1 << 20, f);
        let report = write_archive(&items, format, &mut w)?;
        let f = w.into_inner().map_err(|e| ArchiveError::Output {
            path: tmp.clone(),
            source: e.into_error(),
        })?;
        f.sync_all().map_err(out_err(&tmp))?;
        fs::rename(&tmp, path).map_err(out_err(path))?;
        Ok(report)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// A blob reader that checks the digest when it reaches the end.
struct Verify<R> {
    inner: R,
    digester: Digester,
    expected: Digest,
}

impl<R: Read> Read for Verify<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            let found = std::mem::take(&mut self.digester).finish();
            if found != self.expected {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "blob {} changed on disk: it hashes to {found} (run `imgctl pull` or `imgctl load` again)",
                        self.expected
                    ),
                ));
            }
            // Checked once; further reads just say EOF.
            self.digester = Digester::new();
            self.expected = Digest::of(b"");
            return Ok(0);
        }
        self.digester.update(&buf[..n]);
        Ok(n)
    }
}

fn header(size: u64, mode: u32, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_mode(mode);
    h.set_entry_type(kind);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h
}

fn put<W: Write>(b: &mut tar::Builder<W>, path: &str, data: &[u8]) -> Result<(), ArchiveError> {
    let mut h = header(data.len() as u64, 0o644, tar::EntryType::Regular);
    b.append_data(&mut h, path, data)
        .map_err(ArchiveError::io("write archive"))
}

fn copy_blob<W: Write>(
    b: &mut tar::Builder<W>,
    blobs: &dyn BlobReader,
    d: &Descriptor,
) -> Result<u64, ArchiveError> {
    let f = blobs
        .open_blob(&d.digest)
        .map_err(ArchiveError::io(format!("open blob {}", d.digest)))?;
    let len = f
        .metadata()
        .map_err(ArchiveError::io(format!("stat blob {}", d.digest)))?
        .len();
    if len != d.size {
        return Err(ArchiveError::Image {
            image: d.digest.to_string(),
            reason: format!("blob is {len} bytes, its descriptor says {}", d.size),
        });
    }
    let mut h = header(len, 0o644, tar::EntryType::Regular);
    let r = Verify {
        inner: io::BufReader::with_capacity(1 << 20, f),
        digester: Digester::new(),
        expected: d.digest.clone(),
    };
    b.append_data(&mut h, blob_path(&d.digest), r)
        .map_err(ArchiveError::io("write archive"))?;
    Ok(len)
}

/// `busybox:latest` / `reg:5000/app:v1`: the names Docker's manifest.json holds.
fn familiar(r: &Reference) -> Option<String> {
    r.tag().map(|t| format!("{}:{t}", r.familiar_name()))
}

fn write_archive(
    items: &[Item],
    format: Format,
    out: impl Write,
) -> Result<SaveReport, ArchiveError> {
    let mut b = tar::Builder::new(out);
    b.mode(tar::HeaderMode::Deterministic);
    let mut report = SaveReport {
        images: items.len(),
        ..SaveReport::default()
    };
    put(&mut b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    for dir in ["blobs/", "blobs/sha256/"] {
        let mut h = header(0, 0o755, tar::EntryType::Directory);
        b.append_data(&mut h, dir, io::empty())
            .map_err(ArchiveError::io("write archive"))?;
    }
    let mut written: BTreeSet<Digest> = BTreeSet::new();
    let mut index = Index::empty();
    let mut docker: Vec<serde_json::Value> = Vec::new();
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for item in items {
        let img = &item.image.image;
        let manifest_desc = Descriptor::new(img.media_type.clone(), img.digest.clone(), img.size);
        let config_desc = img.manifest.config.clone();
        let blobs = std::iter::once(&config_desc)
            .chain(img.manifest.layers.iter())
            .chain(std::iter::once(&manifest_desc));
        for d in blobs {
            if written.insert(d.digest.clone()) {
                report.bytes += copy_blob(&mut b, item.image.blobs(), d)?;
                report.blobs += 1;
            }
        }
        let entry = |ann: Option<BTreeMap<String, String>>| {
            let mut d = manifest_desc.clone();
            d.annotations = ann;
            d
        };
        if item.names.is_empty() {
            index.manifests.push(entry(None));
        }
        for n in &item.names {
            let mut ann = BTreeMap::new();
            match format {
                Format::Oci => {
                    ann.insert(ANNOTATION_REF_NAME.to_string(), n.to_string());
                }
                Format::Docker => {
                    ann.insert(ANNOTATION_CONTAINERD_NAME.to_string(), n.to_string());
                    if let Some(t) = n.tag() {
                        ann.insert(ANNOTATION_REF_NAME.to_string(), t.to_string());
                    }
                }
            }
            index.manifests.push(entry(Some(ann)));
        }
        if format == Format::Docker {
            let tags: Vec<String> = item.names.iter().filter_map(familiar).collect();
            let top = img
                .manifest
                .layers
                .last()
                .map(|l| l.digest.hex().to_string());
            for n in &item.names {
                if let (Some(t), Some(top)) = (n.tag(), &top) {
                    repositories
                        .entry(n.familiar_name())
                        .or_default()
                        .insert(t.to_string(), top.clone());
                }
            }
            docker.push(serde_json::json!({
                "Config": blob_path(&config_desc.digest),
                "RepoTags": if tags.is_empty() { serde_json::Value::Null } else { tags.into() },
                "Layers": img.manifest.layers.iter().map(|l| blob_path(&l.digest)).collect::<Vec<_>>(),
            }));
        }
    }
    let body = serde_json::to_vec(&index).map_err(|e| ArchiveError::Json {
        file: "index.json".into(),
        reason: e.to_string(),
    })?;
    put(&mut b, "index.json", &body)?;
    if format == Format::Docker {
        let body = serde_json::to_vec(&docker).map_err(|e| ArchiveError::Json {
            file: "manifest.json".into(),
            reason: e.to_string(),
        })?;
        put(&mut b, "manifest.json", &body)?;
        if !repositories.is_empty() {
            let body = serde_json::to_vec(&repositories).map_err(|e| ArchiveError::Json {
                file: "repositories".into(),
                reason: e.to_string(),
            })?;
            put(&mut b, "repositories", &body)?;
        }
    }
    let mut out = b.into_inner().map_err(ArchiveError::io("write archive"))?;
    out.flush().map_err(ArchiveError::io("write archive"))?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_without_tag_means_every_tag() {
        assert!(name_only("busybox"));
        assert!(name_only("127.0.0.1:5000/app"));
        assert!(!name_only("busybox:1"));
        assert!(!name_only("127.0.0.1:5000/app:v1"));
        assert!(!name_only("busybox@sha256:abcd"));
        assert!(!name_only("oci:/tmp/x"));
    }
}
