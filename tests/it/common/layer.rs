//! Helpers for the layer/snapshot tests: raw tar building with explicit headers (so
//! hostile names reach the extractor unchanged), OCI layout writing, and tree
//! snapshots for comparisons.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

/// A tar under construction.
pub struct Tar {
    b: tar::Builder<Vec<u8>>,
}

/// What kind of entry.
#[derive(Clone, Copy, Debug)]
pub enum K {
    File,
    Dir,
    Symlink,
    Hardlink,
    Char(u32, u32),
    Block(u32, u32),
    Fifo,
}

/// One entry with explicit fields.
#[derive(Clone, Debug)]
pub struct E {
    pub name: Vec<u8>,
    pub kind: K,
    pub data: Vec<u8>,
    pub link: Vec<u8>,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub xattrs: Vec<(String, Vec<u8>)>,
}

pub fn file(name: &str, data: &[u8]) -> E {
    E {
        name: name.as_bytes().to_vec(),
        kind: K::File,
        data: data.to_vec(),
        link: Vec::new(),
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime: 1_700_000_000,
        xattrs: Vec::new(),
    }
}

pub fn dir(name: &str) -> E {
    E {
        kind: K::Dir,
        mode: 0o755,
        ..file(name, b"")
    }
}

pub fn symlink(name: &str, target: &str) -> E {
    E {
        kind: K::Symlink,
        link: target.as_bytes().to_vec(),
        mode: 0o777,
        ..file(name, b"")
    }
}

pub fn hardlink(name: &str, target: &str) -> E {
    E {
        kind: K::Hardlink,
        link: target.as_bytes().to_vec(),
        ..file(name, b"")
    }
}

pub fn whiteout(name: &str) -> E {
    file(name, b"")
}

impl E {
    pub fn mode(mut self, m: u32) -> E {
        self.mode = m;
        self
    }
    pub fn owner(mut self, uid: u64, gid: u64) -> E {
        self.uid = uid;
        self.gid = gid;
        self
    }
    pub fn xattr(mut self, k: &str, v: &[u8]) -> E {
        self.xattrs.push((k.to_string(), v.to_vec()));
        self
    }
    pub fn kind(mut self, k: K) -> E {
        self.kind = k;
        self
    }
}

impl Default for Tar {
    fn default() -> Self {
        Tar::new()
    }
}

impl Tar {
    pub fn new() -> Tar {
        Tar {
            b: tar::Builder::new(Vec::new()),
        }
    }

    /// Append an entry, writing the name and link fields raw (no `..` checks), with
    /// GNU long-name records when they do not fit.
    pub fn add(&mut self, e: &E) -> &mut Tar {
        if !e.xattrs.is_empty() {
            let recs: Vec<(String, &[u8])> = e
                .xattrs
                .iter()
                .map(|(k, v)| (format!("SCHILY.xattr.{k}"), v.as_slice()))
                .collect();
            self.b
                .append_pax_extensions(recs.iter().map(|(k, v)| (k.as_str(), *v)))
                .unwrap();
        }
        if e.name.len() > 99 {
            self.long(b'L', &e.name);
        }
        if e.link.len() > 99 {
            self.long(b'K', &e.link);
        }
        let mut h = tar::Header::new_gnu();
        let kind = match e.kind {
            K::File => tar::EntryType::Regular,
            K::Dir => tar::EntryType::Directory,
            K::Symlink => tar::EntryType::Symlink,
            K::Hardlink => tar::EntryType::Link,
            K::Char(..) => tar::EntryType::Char,
            K::Block(..) => tar::EntryType::Block,
            K::Fifo => tar::EntryType::Fifo,
        };
        h.set_entry_type(kind);
        {
            let old = h.as_old_mut();
            let n = e.name.len().min(99);
            old.name[..n].copy_from_slice(&e.name[..n]);
            let l = e.link.len().min(99);
            old.linkname[..l].copy_from_slice(&e.link[..l]);
        }
        h.set_mode(e.mode);
        h.set_uid(e.uid);
        h.set_gid(e.gid);
        h.set_mtime(e.mtime);
        h.set_size(e.data.len() as u64);
        if let K::Char(ma, mi) | K::Block(ma, mi) = e.kind {
            h.set_device_major(ma).unwrap();
            h.set_device_minor(mi).unwrap();
        }
        h.set_cksum();
        self.b.append(&h, &e.data[..]).unwrap();
        self
    }

    fn long(&mut self, kind: u8, value: &[u8]) {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
        h.set_entry_type(tar::EntryType::new(kind));
        h.set_mode(0o644);
        let mut data = value.to_vec();
        data.push(0);
        h.set_size(data.len() as u64);
        h.set_cksum();
        self.b.append(&h, &data[..]).unwrap();
    }

    pub fn all(&mut self, es: &[E]) -> &mut Tar {
        for e in es {
            self.add(e);
        }
        self
    }

    pub fn finish(self) -> Vec<u8> {
        self.b.into_inner().unwrap()
    }
}

pub fn tar_of(es: &[E]) -> Vec<u8> {
    let mut t = Tar::new();
    t.all(es);
    t.finish()
}

pub use super::registry::sha256_hex;

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn gzip_best(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(data, 3).unwrap()
}

pub fn xz(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    lzma_rs::xz_compress(&mut &data[..], &mut out).unwrap();
    out
}

fn put_blob(dir: &Path, data: &[u8]) -> String {
    let hex = sha256_hex(data);
    let p = dir.join("blobs/sha256").join(&hex);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, data).unwrap();
    format!("sha256:{hex}")
}

/// Layer compression in generated images.
#[derive(Clone, Copy)]
pub enum Z {
    Gzip,
    Zstd,
}

/// Write an OCI layout at `dir` holding one image tagged `tag` made of `layers`
/// (uncompressed tars). Several calls may add images to one layout.
pub fn write_oci(dir: &Path, tag: &str, layers: &[Vec<u8>], z: Z) -> String {
    let raw: Vec<RawLayer> = layers
        .iter()
        .map(|l| RawLayer {
            blob: match z {
                Z::Gzip => gzip(l),
                Z::Zstd => zstd(l),
            },
            compression: z,
            diff_id: format!("sha256:{}", sha256_hex(l)),
        })
        .collect();
    write_oci_raw(dir, tag, &raw)
}

/// A layer blob as it goes into a layout: already compressed (e.g. streamed through
/// an encoder because the tar would not fit in memory), with its diff ID.
pub struct RawLayer {
    pub blob: Vec<u8>,
    pub compression: Z,
    pub diff_id: String,
}

/// [`write_oci`] for layers compressed by the caller.
pub fn write_oci_raw(dir: &Path, tag: &str, layers: &[RawLayer]) -> String {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for l in layers {
        diff_ids.push(l.diff_id.clone());
        let mt = match l.compression {
            Z::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Z::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        };
        let d = put_blob(dir, &l.blob);
        descs.push(serde_json::json!({"mediaType": mt, "digest": d, "size": l.blob.len()}));
    }
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let cfg = serde_json::to_vec(&config).unwrap();
    let cd = put_blob(dir, &cfg);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cfg.len()},
        "layers": descs,
    });
    let m = serde_json::to_vec(&manifest).unwrap();
    let md = put_blob(dir, &m);
    let idx_path = dir.join("index.json");
    let mut idx: serde_json::Value = fs::read(&idx_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| serde_json::json!({"schemaVersion": 2, "manifests": []}));
    let list = idx["manifests"].as_array_mut().unwrap();
    list.retain(|e| e["annotations"]["org.opencontainers.image.ref.name"] != tag);
    list.push(serde_json::json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": md, "size": m.len(),
        "annotations": {"org.opencontainers.image.ref.name": tag},
    }));
    fs::write(&idx_path, serde_json::to_vec(&idx).unwrap()).unwrap();
    md
}

/// What is compared about each path of a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Regular files only.
    pub size: u64,
    pub link: Option<PathBuf>,
    pub xattrs: Vec<(String, Vec<u8>)>,
    pub rdev: u64,
    /// sha256 of regular file content (when hashing was asked for).
    pub content: Option<String>,
}

fn xattrs(p: &Path) -> Vec<(String, Vec<u8>)> {
    imgctl::sys::fs::xattrs_of(p)
        .unwrap()
        .into_iter()
        .filter(|(k, _)| k != "security.selinux")
        .collect()
}

/// Walk `root` (not following links): path -> node. `hash` adds content digests.
pub fn tree(root: &Path, hash: bool) -> BTreeMap<String, Node> {
    tree_with_paths(root, hash)
        .into_iter()
        .map(|(k, (n, _))| (k, n))
        .collect()
}

/// [`tree`], also giving each entry's real path (names need not be UTF-8).
pub fn tree_with_paths(root: &Path, hash: bool) -> BTreeMap<String, (Node, PathBuf)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let md = fs::symlink_metadata(&p).unwrap();
            let ft = md.file_type();
            let kind = if ft.is_dir() {
                stack.push(p.clone());
                "dir"
            } else if ft.is_file() {
                "file"
            } else if ft.is_symlink() {
                "symlink"
            } else if ft.is_char_device() {
                "char"
            } else if ft.is_block_device() {
                "block"
            } else if ft.is_fifo() {
                "fifo"
            } else {
                "socket"
            };
            let content = (hash && ft.is_file()).then(|| {
                let mut h = Sha256::new();
                let mut f = fs::File::open(&p).unwrap();
                let mut buf = vec![0u8; 65536];
                loop {
                    let n = f.read(&mut buf).unwrap();
                    if n == 0 {
                        break;
                    }
                    h.update(&buf[..n]);
                }
                hex::encode(h.finalize())
            });
            let rel = p.strip_prefix(root).unwrap();
            out.insert(
                String::from_utf8_lossy(rel.as_os_str().as_bytes()).into_owned(),
                (
                    Node {
                        kind,
                        mode: md.mode() & 0o7777,
                        uid: md.uid(),
                        gid: md.gid(),
                        size: if ft.is_file() { md.len() } else { 0 },
                        link: ft.is_symlink().then(|| fs::read_link(&p).unwrap()),
                        xattrs: xattrs(&p),
                        rdev: if ft.is_char_device() || ft.is_block_device() {
                            md.rdev()
                        } else {
                            0
                        },
                        content,
                    },
                    p.clone(),
                ),
            );
        }
    }
    out
}

/// Assert two trees are equal, listing the first differences.
pub fn assert_same_tree(a: &BTreeMap<String, Node>, b: &BTreeMap<String, Node>, what: &str) {
    let mut diffs = Vec::new();
    for k in a.keys().chain(b.keys()) {
        if a.get(k) != b.get(k) && !diffs.iter().any(|(p, _, _)| p == k) {
            diffs.push((k.clone(), a.get(k).cloned(), b.get(k).cloned()));
        }
    }
    assert!(
        diffs.is_empty(),
        "{what}: {} of {}/{} paths differ, first: {:#?}",
        diffs.len(),
        a.len(),
        b.len(),
        &diffs[..diffs.len().min(8)]
    );
}

/// Everything about the files under `dir` that an escape could change:
/// (path, mode, uid, gid, mtime, xattrs, sha256, ino).
/// Per path: (mode, uid, gid, mtime, xattrs, sha256, ino).
pub type Print = (
    u32,
    u32,
    u32,
    i64,
    Vec<(String, Vec<u8>)>,
    Option<String>,
    u64,
);

pub fn fingerprint(dir: &Path) -> BTreeMap<String, Print> {
    let mut out = BTreeMap::new();
    let t = tree_with_paths(dir, true);
    for (k, (n, path)) in t {
        let md = fs::symlink_metadata(&path).unwrap();
        out.insert(
            k,
            (
                n.mode,
                n.uid,
                n.gid,
                md.mtime(),
                n.xattrs,
                n.content,
                md.ino(),
            ),
        );
    }
    let md = fs::symlink_metadata(dir).unwrap();
    out.insert(
        ".".into(),
        (
            md.mode(),
            md.uid(),
            md.gid(),
            md.mtime(),
            Vec::new(),
            None,
            md.ino(),
        ),
    );
    out
}

/// `umoci unpack` an image into `bundle` and return its rootfs.
pub fn umoci_unpack(layout: &Path, tag: &str, bundle: &Path) -> PathBuf {
    let out = std::process::Command::new("umoci")
        .arg("unpack")
        .arg("--image")
        .arg(format!("{}:{tag}", layout.display()))
        .arg(bundle)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "umoci unpack failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    bundle.join("rootfs")
}
