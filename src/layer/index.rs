//! The layer index: what a layer's tar stream holds (each entry's cleaned name, kind,
//! size and a BLAKE3 hash of its content), the figures the size report is made of,
//! and the file the store keeps it in (`cache/size/<algorithm>-<hex>.json`, keyed by
//! the compressed blob's digest; `schemas/size-layer-index.schema.json`).
//!
//! It lives here, below the unpackers, so a layer is indexed while it enters the
//! store: pull's unpack (both the file extractor and the EROFS writer) and a build's
//! new layer hand a copy of the uncompressed stream they already have to a side
//! thread running [`list`] ([`side_list`], [`ChunkSender`]), so nothing is
//! decompressed twice and the unpacking thread never waits for the hashing. The size
//! report (`report`, rank 5) reads a layer with the same [`list`] when no index
//! exists, so both produce the same listing by construction.
//!
//! A layer blob is immutable and content-addressed, so an index never goes stale; an
//! unreadable or foreign-version file is ignored and rewritten, and `Store::prune`
//! removes it with its blob. BLAKE3 (content identity for duplicates, never printed)
//! is collision-resistant and some 4x faster than sha256 here.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use serde::{Deserialize, Serialize};

use super::guard::HeaderGuard;
use super::Limits;
use crate::oci::{Digest, Digester};

/// What a layer entry is. Whiteouts and opaque markers are kept apart from files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Hardlink,
    Device,
    Fifo,
    /// `.wh.NAME`: NAME (of lower layers) is deleted.
    Whiteout,
    /// `.wh..wh..opq`: the directory's lower-layer content is hidden.
    Opaque,
}

/// One tar entry, as far as the size report needs it.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The entry's name as dive cleans it (Go's `path.Clean`, leading `/` dropped),
    /// whiteout prefix included.
    pub name: String,
    pub kind: Kind,
    /// The header's size (content bytes of regular files; 0 for the rest).
    pub size: u64,
    /// BLAKE3 of the content (regular files, and hardlinks to a file of the same layer).
    pub content: Option<[u8; 32]>,
}

impl Entry {
    /// The path the entry affects: for a whiteout the deleted path, for an opaque
    /// marker its directory (empty string for the root).
    pub fn target(&self) -> String {
        match self.kind {
            Kind::Whiteout => {
                let (dir, base) = split(&self.name);
                join(dir, base.trim_start_matches(".wh."))
            }
            Kind::Opaque => split(&self.name).0.to_string(),
            _ => self.name.clone(),
        }
    }
}

/// Everything listed from one layer.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    pub entries: Vec<Entry>,
    /// Bytes of the uncompressed stream, trailing padding included (`gzip -dc | wc -c`).
    pub uncompressed: u64,
    /// Bytes of the compressed blob as read (0 when not known).
    pub compressed: u64,
    /// sha256 of the uncompressed stream; `None` when it was not computed.
    pub diff_id: Option<Digest>,
}

/// `(directory, base name)` of a cleaned path.
pub fn split(p: &str) -> (&str, &str) {
    match p.rfind('/') {
        Some(i) => (&p[..i], &p[i + 1..]),
        None => ("", p),
    }
}

/// `dir/base`, or `base` at the root.
pub fn join(dir: &str, base: &str) -> String {
    if dir.is_empty() {
        base.to_string()
    } else {
        format!("{dir}/{base}")
    }
}

/// Go's `path.Clean` for `/`-separated paths: `a//b/../c/` -> `a/c`, `/..` ->
/// `/`, `` -> `.` (the build context's `filepath.Clean` as well).
pub fn go_clean(p: &str) -> String {
    let rooted = p.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|l| *l != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            c => out.push(c),
        }
    }
    let body = out.join("/");
    match (rooted, body.is_empty()) {
        (true, _) => format!("/{body}"),
        (false, true) => ".".into(),
        (false, false) => body,
    }
}

/// Go's `path.Clean` on a tar name, then without its leading `/` (dive's
/// `AddPath` trims it): `./usr/bin/` -> `usr/bin`, `.` -> `` (skipped by dive).
pub fn clean(name: &str) -> String {
    match go_clean(name).as_str() {
        "." | "/" => String::new(),
        c => c.trim_start_matches('/').to_string(),
    }
}

/// Layers with more entries are refused: memory is one record per entry
/// (SECURITY-TESTS A16, 10^6-entry bombs); real images have some 10^4-10^5.
pub const MAX_ENTRIES: usize = 2_000_000;

/// A reader that counts what passes through it and hashes it when asked to.
struct Tee<R> {
    inner: R,
    digester: Option<Digester>,
    len: u64,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.len += n as u64;
        if let Some(d) = &mut self.digester {
            d.update(&buf[..n]);
        }
        Ok(n)
    }
}

/// List the uncompressed tar stream `raw` to its very end (the uncompressed size
/// counts the trailing padding), hashing it for the diff ID when `diff_id`. Header
/// records are bounded by `limits` before the tar crate reads them (A16).
pub fn list<R: Read>(raw: R, diff_id: bool, limits: &Limits) -> io::Result<Listing> {
    let tee = Tee {
        inner: raw,
        digester: diff_id.then(Digester::new),
        len: 0,
    };
    let mut archive = tar::Archive::new(HeaderGuard::new(tee, limits));
    let mut entries = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut files: HashMap<String, [u8; 32]> = HashMap::new();
    for e in archive.entries()? {
        let mut e = e?;
        if entries.len() >= MAX_ENTRIES {
            return Err(io::Error::other(format!(
                "more than {MAX_ENTRIES} entries; refused to keep memory bounded"
            )));
        }
        let raw = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let name = clean(&raw);
        if name.is_empty() {
            continue;
        }
        let et = e.header().entry_type();
        let size = e.size();
        let base = split(&name).1;
        let kind = if base == ".wh..wh..opq" {
            Kind::Opaque
        } else if base.starts_with(".wh.") {
            Kind::Whiteout
        } else if et.is_dir() {
            Kind::Dir
        } else if et.is_symlink() {
            Kind::Symlink
        } else if et.is_hard_link() {
            Kind::Hardlink
        } else if et.is_character_special() || et.is_block_special() {
            Kind::Device
        } else if et.is_fifo() {
            Kind::Fifo
        } else {
            Kind::File
        };
        let content = if kind == Kind::File {
            let mut h = blake3::Hasher::new();
            loop {
                let n = e.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
            let c: [u8; 32] = h.finalize().into();
            files.insert(name.clone(), c);
            Some(c)
        } else if kind == Kind::Hardlink {
            // A hardlink shares its target's content (an earlier entry of this layer).
            e.link_name_bytes()
                .and_then(|l| files.get(&clean(&String::from_utf8_lossy(&l))).copied())
        } else {
            None
        };
        entries.push(Entry {
            name,
            kind,
            size,
            content,
        });
    }
    // The tar reader stops at the end-of-archive blocks; read the rest so the
    // uncompressed size and diff ID cover the whole stream.
    let mut tee = archive.into_inner().into_inner();
    io::copy(&mut tee, &mut io::sink())?;
    Ok(Listing {
        entries,
        uncompressed: tee.len,
        compressed: 0,
        diff_id: tee.digester.map(Digester::finish),
    })
}

/// Chunks of an uncompressed stream on their way to a side [`list`].
pub type Chunk = io::Result<Vec<u8>>;

/// Chunks queued for the side lister before the sender waits (4 MiB at 256 KiB).
const SIDE_QUEUE: usize = 16;

/// A channel whose receiving end a side thread turns into a [`Listing`]:
/// `side_list(limits)` gives the sender and the work to run on the thread.
pub fn side_list(
    limits: Limits,
) -> (
    mpsc::SyncSender<Chunk>,
    impl FnOnce() -> io::Result<Listing> + Send,
) {
    let (tx, rx) = mpsc::sync_channel::<Chunk>(SIDE_QUEUE);
    let work = move || list(super::ChannelReader::new(rx), false, &limits);
    (tx, work)
}

/// Hand `chunk` to the side lister, if there still is one: a lister that stopped
/// (a layer it refuses) only means no index, never a failed unpack.
pub fn feed(side: &mut Option<mpsc::SyncSender<Chunk>>, chunk: &[u8]) {
    if let Some(tx) = side {
        if tx.send(Ok(chunk.to_vec())).is_err() {
            *side = None;
        }
    }
}

/// A writer that passes everything to `inner` and a copy, in 256 KiB chunks, to a
/// side lister (a layer being written by a build).
pub struct ChunkSender<W> {
    pub inner: W,
    side: Option<mpsc::SyncSender<Chunk>>,
    buf: Vec<u8>,
}

const CHUNK: usize = 256 * 1024;

impl<W: Write> ChunkSender<W> {
    pub fn new(inner: W, side: Option<mpsc::SyncSender<Chunk>>) -> ChunkSender<W> {
        ChunkSender {
            inner,
            side,
            buf: Vec::new(),
        }
    }

    /// Send what is buffered and close the side channel; the inner writer back.
    pub fn finish(mut self) -> W {
        if !self.buf.is_empty() {
            let rest = std::mem::take(&mut self.buf);
            feed(&mut self.side, &rest);
        }
        self.inner
    }
}

impl<W: Write> Write for ChunkSender<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(data)?;
        if self.side.is_some() {
            self.buf.extend_from_slice(&data[..n]);
            if self.buf.len() >= CHUNK {
                let full = std::mem::take(&mut self.buf);
                feed(&mut self.side, &full);
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

// The file in the store.

/// Format version of the files; others are ignored.
const VERSION: u32 = 1;

/// Index files larger than this are not read (a real layer's index is well below).
const MAX_INDEX_BYTES: u64 = 512 << 20;

#[derive(Serialize, Deserialize)]
struct IndexFile {
    version: u32,
    uncompressed: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    diff_id: Option<Digest>,
    /// `[name, kind, size, content hash (hex) or ""]` per entry, in tar order.
    entries: Vec<(String, String, u64, String)>,
}

/// Where blob `digest`'s index lives under store `root`.
pub fn path(root: &Path, digest: &Digest) -> PathBuf {
    root.join("cache")
        .join("size")
        .join(format!("{}-{}.json", digest.algorithm(), digest.hex()))
}

fn kind_code(k: Kind) -> &'static str {
    match k {
        Kind::File => "f",
        Kind::Dir => "d",
        Kind::Symlink => "l",
        Kind::Hardlink => "h",
        Kind::Device => "c",
        Kind::Fifo => "p",
        Kind::Whiteout => "w",
        Kind::Opaque => "o",
    }
}

fn kind_of(code: &str) -> Option<Kind> {
    Some(match code {
        "f" => Kind::File,
        "d" => Kind::Dir,
        "l" => Kind::Symlink,
        "h" => Kind::Hardlink,
        "c" => Kind::Device,
        "p" => Kind::Fifo,
        "w" => Kind::Whiteout,
        "o" => Kind::Opaque,
        _ => return None,
    })
}

fn hex(b: &[u8; 32]) -> String {
    use std::fmt::Write as _;
    b.iter().fold(String::with_capacity(64), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The index of blob `digest`, when the store has a usable one.
pub fn load(root: &Path, digest: &Digest) -> Option<Listing> {
    let p = path(root, digest);
    let meta = fs::metadata(&p).ok()?;
    if !meta.is_file() || meta.len() > MAX_INDEX_BYTES {
        return None;
    }
    let f: IndexFile = serde_json::from_slice(&fs::read(&p).ok()?).ok()?;
    if f.version != VERSION {
        return None;
    }
    let mut entries = Vec::with_capacity(f.entries.len());
    for (name, kind, size, content) in f.entries {
        let content = match content.as_str() {
            "" => None,
            h => Some(unhex(h)?),
        };
        entries.push(Entry {
            name,
            kind: kind_of(&kind)?,
            size,
            content,
        });
    }
    Some(Listing {
        entries,
        uncompressed: f.uncompressed,
        compressed: 0,
        diff_id: f.diff_id,
    })
}

/// Record the listing of blob `digest`. Best effort: a cache that cannot be
/// written (read-only store, full disk) only means the next report reads the blob.
pub fn save(root: &Path, digest: &Digest, s: &Listing) {
    let f = IndexFile {
        version: VERSION,
        uncompressed: s.uncompressed,
        diff_id: s.diff_id.clone(),
        entries: s
            .entries
            .iter()
            .map(|e| {
                (
                    e.name.clone(),
                    kind_code(e.kind).to_string(),
                    e.size,
                    e.content.as_ref().map(hex).unwrap_or_default(),
                )
            })
            .collect(),
    };
    let Ok(data) = serde_json::to_vec(&f) else {
        return;
    };
    let p = path(root, digest);
    if let Some(dir) = p.parent() {
        if fs::create_dir_all(dir).is_err() {
            return;
        }
    }
    // A torn file after a crash only fails to parse and is rewritten: no fsync.
    if let Err(e) = crate::store::write_atomic_volatile(&p, &data, 0o644) {
        tracing::debug!("size index {}: {e}", p.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_matches_go_path_clean_without_root() {
        for (i, o) in [
            ("./usr/bin/", "usr/bin"),
            ("/etc//passwd", "etc/passwd"),
            (".", ""),
            ("./", ""),
            ("a/./b/../c", "a/c"),
            ("/../x", "x"),
        ] {
            assert_eq!(clean(i), o, "{i}");
        }
    }

    #[test]
    fn whiteout_and_opaque_targets() {
        let e = |name: &str, kind| Entry {
            name: name.into(),
            kind,
            size: 0,
            content: None,
        };
        assert_eq!(e("a/b/.wh.c", Kind::Whiteout).target(), "a/b/c");
        assert_eq!(e(".wh.top", Kind::Whiteout).target(), "top");
        assert_eq!(e("a/.wh..wh..opq", Kind::Opaque).target(), "a");
    }

    fn sample_tar() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut add = |name: &str, kind: tar::EntryType, data: &[u8], link: Option<&str>| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            if let Some(l) = link {
                h.set_link_name(l).unwrap();
            }
            b.append_data(&mut h, name, data).unwrap();
        };
        add("./etc/", tar::EntryType::Directory, b"", None);
        add(
            "./etc/passwd",
            tar::EntryType::Regular,
            b"root:x:0:0\n",
            None,
        );
        add(
            "./etc/hard",
            tar::EntryType::Link,
            b"",
            Some("./etc/passwd"),
        );
        add("./etc/.wh.gone", tar::EntryType::Regular, b"", None);
        add("./var/.wh..wh..opq", tar::EntryType::Regular, b"", None);
        add(
            "./bin/sh",
            tar::EntryType::Symlink,
            b"",
            Some("/bin/busybox"),
        );
        b.into_inner().unwrap()
    }

    #[test]
    fn list_names_kinds_sizes_and_content() {
        let tar = sample_tar();
        let l = list(&tar[..], true, &Limits::default()).unwrap();
        let got: Vec<(&str, Kind, u64)> = l
            .entries
            .iter()
            .map(|e| (e.name.as_str(), e.kind, e.size))
            .collect();
        assert_eq!(
            got,
            [
                ("etc", Kind::Dir, 0),
                ("etc/passwd", Kind::File, 11),
                ("etc/hard", Kind::Hardlink, 0),
                ("etc/.wh.gone", Kind::Whiteout, 0),
                ("var/.wh..wh..opq", Kind::Opaque, 0),
                ("bin/sh", Kind::Symlink, 0),
            ]
        );
        let want: [u8; 32] = blake3::hash(b"root:x:0:0\n").into();
        assert_eq!(l.entries[1].content, Some(want));
        // The hardlink carries its target's content hash.
        assert_eq!(l.entries[2].content, Some(want));
        assert_eq!(l.uncompressed, tar.len() as u64);
        assert_eq!(l.diff_id, Some(Digest::of(&tar)));
    }

    /// What a side lister fed in uneven pieces through [`ChunkSender`] finds is
    /// what [`list`] finds on the whole stream.
    #[test]
    fn side_listing_equals_direct_listing() {
        let tar = sample_tar();
        let direct = list(&tar[..], false, &Limits::default()).unwrap();
        let (tx, work) = side_list(Limits::default());
        let side = std::thread::spawn(work);
        let mut w = ChunkSender::new(Vec::new(), Some(tx));
        for piece in tar.chunks(100) {
            w.write_all(piece).unwrap();
        }
        let copy = w.finish();
        assert_eq!(copy, tar);
        let got = side.join().unwrap().unwrap();
        assert_eq!(got.uncompressed, direct.uncompressed);
        assert_eq!(got.entries.len(), direct.entries.len());
        for (a, b) in got.entries.iter().zip(&direct.entries) {
            assert_eq!(
                (&a.name, a.kind, a.size, a.content),
                (&b.name, b.kind, b.size, b.content)
            );
        }
    }

    #[test]
    fn a_stopped_lister_does_not_stop_the_writer() {
        let (tx, work) = side_list(Limits::default());
        drop(work);
        let mut w = ChunkSender::new(Vec::new(), Some(tx));
        let big = vec![7u8; 3 * CHUNK];
        w.write_all(&big).unwrap();
        assert!(w.side.is_none(), "the dead channel is dropped");
        assert_eq!(w.finish().len(), big.len());
    }

    /// An unpack asked to index hands back the listing of the stream it unpacked
    /// (EROFS writer, gzip layer): the same as [`list`], with the checked diff ID.
    #[test]
    fn an_unpack_lists_what_it_unpacks() {
        use std::io::Write as _;
        let tar = sample_tar();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        let gz = gz.finish().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut opts = super::super::ApplyOptions::new(super::super::ApplyMode::Overlay, "t");
        let image = dir.path().join("layer.erofs");
        let plain =
            super::super::write_erofs(&gz[..], super::super::Compression::Gzip, &image, &opts)
                .unwrap();
        assert!(plain.index.is_none(), "not asked for");
        opts.index = true;
        let applied =
            super::super::write_erofs(&gz[..], super::super::Compression::Gzip, &image, &opts)
                .unwrap();
        let got = applied.index.expect("a listing");
        let want = list(&tar[..], true, &Limits::default()).unwrap();
        assert_eq!(got.diff_id, want.diff_id);
        assert_eq!(got.diff_id, Some(applied.diff_id));
        assert_eq!(got.uncompressed, tar.len() as u64);
        assert_eq!(got.entries.len(), want.entries.len());
        for (a, b) in got.entries.iter().zip(&want.entries) {
            assert_eq!(
                (&a.name, a.kind, a.size, a.content),
                (&b.name, b.kind, b.size, b.content)
            );
        }
    }

    #[test]
    fn round_trip_keeps_every_field() {
        let dir = tempfile::tempdir().unwrap();
        let d: Digest = format!("sha256:{}", "ab".repeat(32)).parse().unwrap();
        let s = Listing {
            entries: vec![
                Entry {
                    name: "etc/passwd".into(),
                    kind: Kind::File,
                    size: 42,
                    content: Some(blake3::hash(b"x").into()),
                },
                Entry {
                    name: "etc/.wh.gone".into(),
                    kind: Kind::Whiteout,
                    size: 0,
                    content: None,
                },
                Entry {
                    name: "var/.wh..wh..opq".into(),
                    kind: Kind::Opaque,
                    size: 0,
                    content: None,
                },
            ],
            uncompressed: 10240,
            compressed: 0,
            diff_id: Some(d.clone()),
        };
        assert!(load(dir.path(), &d).is_none());
        save(dir.path(), &d, &s);
        let back = load(dir.path(), &d).unwrap();
        assert_eq!(back.uncompressed, 10240);
        assert_eq!(back.diff_id, Some(d.clone()));
        assert_eq!(back.entries.len(), 3);
        for (a, b) in s.entries.iter().zip(&back.entries) {
            assert_eq!(
                (&a.name, a.kind, a.size, a.content),
                (&b.name, b.kind, b.size, b.content)
            );
        }
        // A damaged file is not used.
        fs::write(path(dir.path(), &d), b"{\"version\":1,").unwrap();
        assert!(load(dir.path(), &d).is_none());
    }
}
