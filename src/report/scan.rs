//! Reading one layer: the tar stream is decompressed, hashed (diff ID, unless the
//! store already vouches for it) and listed entry by entry, with a BLAKE3 hash of
//! every regular file's content (only compared with other files of the report, never
//! printed: BLAKE3 is collision-resistant and some 4x faster than sha256 here, which
//! is what keeps the listing thread below the decompression thread). Nothing is
//! written anywhere; memory is one small record per entry.

use std::collections::HashMap;
use std::io::{self, Read};
use std::sync::mpsc;

use super::ReportError;
use crate::layer::{self, Compression};
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

/// Everything read from one layer.
#[derive(Debug, Clone, Default)]
pub struct Scanned {
    pub entries: Vec<Entry>,
    /// Bytes of the uncompressed stream, trailing padding included (`gzip -dc | wc -c`).
    pub uncompressed: u64,
    /// Bytes of the compressed blob as read.
    pub compressed: u64,
    /// sha256 of the uncompressed stream; `None` when it was not computed.
    pub diff_id: Option<Digest>,
}

pub(crate) fn split(p: &str) -> (&str, &str) {
    match p.rfind('/') {
        Some(i) => (&p[..i], &p[i + 1..]),
        None => ("", p),
    }
}

pub(crate) fn join(dir: &str, base: &str) -> String {
    if dir.is_empty() {
        base.to_string()
    } else {
        format!("{dir}/{base}")
    }
}

/// Go's `path.Clean` on a tar name, then without its leading `/` (dive's
/// `AddPath` trims it): `./usr/bin/` -> `usr/bin`, `.` -> `` (skipped by dive).
pub fn clean(name: &str) -> String {
    let rooted = name.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for c in name.split('/') {
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
    out.join("/")
}

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

/// Hashes what passes and checks it against `expected` at the end (compressed blob).
pub struct Verify<R> {
    inner: R,
    digester: Digester,
    expected: Option<Digest>,
    pub(crate) read: u64,
}

impl<R: Read> Verify<R> {
    pub fn new(inner: R, expected: Option<Digest>) -> Verify<R> {
        Verify {
            inner,
            digester: Digester::new(),
            expected,
            read: 0,
        }
    }
}

impl<R: Read> Read for Verify<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.expected.is_some() {
            self.digester.update(&buf[..n]);
        }
        if n == 0 && !buf.is_empty() {
            if let Some(want) = self.expected.take() {
                let d = std::mem::take(&mut self.digester).finish();
                if d != want {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("blob digest mismatch: expected {want}, found {d}"),
                    ));
                }
            }
        }
        Ok(n)
    }
}

/// Layers with more entries are refused: memory is one record per entry
/// (SECURITY-TESTS A16, 10^6-entry bombs); real images have some 10^4-10^5.
pub const MAX_ENTRIES: usize = 2_000_000;

/// Called as bytes of a layer are read (compressed bytes so far).
pub trait Tick: Sync {
    fn bytes(&self, layer: usize, compressed: u64);
}

/// How much of a layer's own hashes to check while reading it.
#[derive(Debug, Clone)]
pub struct Checks {
    /// Check the compressed bytes against this digest (not needed for store blobs,
    /// verified at commit).
    pub blob: Option<Digest>,
    /// Compute the diff ID of the uncompressed stream (not needed when the store
    /// already verified it, i.e. the layer is unpacked under that diff ID).
    pub diff_id: bool,
}

/// Read one layer blob. `blob` yields the compressed bytes.
pub fn scan<R: Read + Send>(
    blob: R,
    compression: Compression,
    name: &str,
    checks: Checks,
    progress: Option<(&dyn Tick, usize)>,
) -> Result<Scanned, ReportError> {
    let verify = checks.blob;
    let counted = Counted {
        inner: Verify::new(blob, verify),
        progress,
        since: 0,
    };
    let mut dec = layer::decoder(counted, compression, name).map_err(ReportError::LayerFormat)?;
    // Decompression on its own thread, listing and hashing on this one: the two
    // halves cost about the same, so a big layer takes half the wall time.
    let (tx, rx) = mpsc::sync_channel::<io::Result<Vec<u8>>>(8);
    let (back_tx, back_rx) = mpsc::channel::<Vec<u8>>();
    std::thread::scope(|s| {
        s.spawn(move || loop {
            let mut buf = back_rx.try_recv().unwrap_or_else(|_| vec![0u8; CHUNK]);
            buf.resize(CHUNK, 0);
            let r = read_full(&mut dec, &mut buf).map(|n| {
                buf.truncate(n);
                buf
            });
            let end = matches!(&r, Ok(b) if b.is_empty()) || r.is_err();
            if tx.send(r).is_err() || end {
                break;
            }
        });
        let reader = Chunks {
            rx,
            back: back_tx,
            cur: Vec::new(),
            pos: 0,
            done: false,
        };
        list(reader, name, checks.diff_id)
    })
}

const CHUNK: usize = 256 * 1024;

/// Fill `buf` as far as the stream allows; the count read (0 at the end).
fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The consuming end of the decompression thread.
struct Chunks {
    rx: mpsc::Receiver<io::Result<Vec<u8>>>,
    back: mpsc::Sender<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
    done: bool,
}

impl Read for Chunks {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.cur.len() {
            if self.done {
                return Ok(0);
            }
            let next = self
                .rx
                .recv()
                .map_err(|_| io::Error::other("decompression thread ended early"))??;
            if next.is_empty() {
                self.done = true;
                return Ok(0);
            }
            let old = std::mem::replace(&mut self.cur, next);
            let _ = self.back.send(old);
            self.pos = 0;
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// List the decompressed tar stream `raw`.
fn list<R: Read>(raw: R, name: &str, diff_id: bool) -> Result<Scanned, ReportError> {
    let io_err = |source: io::Error| ReportError::Layer {
        layer: name.to_string(),
        source,
    };
    let tee = Tee {
        inner: raw,
        digester: diff_id.then(Digester::new),
        len: 0,
    };
    let mut archive = tar::Archive::new(tee);
    let mut entries = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut files: HashMap<String, [u8; 32]> = HashMap::new();
    for e in archive.entries().map_err(io_err)? {
        let mut e = e.map_err(io_err)?;
        if entries.len() >= MAX_ENTRIES {
            return Err(ReportError::Layer {
                layer: name.to_string(),
                source: io::Error::other(format!(
                    "more than {MAX_ENTRIES} entries; refused to keep memory bounded"
                )),
            });
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
                let n = e.read(&mut buf).map_err(io_err)?;
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
    let mut tee = archive.into_inner();
    io::copy(&mut tee, &mut io::sink()).map_err(io_err)?;
    Ok(Scanned {
        entries,
        uncompressed: tee.len,
        compressed: 0,
        diff_id: tee.digester.map(Digester::finish),
    })
}

struct Counted<'a, R> {
    inner: Verify<R>,
    progress: Option<(&'a dyn Tick, usize)>,
    since: u64,
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.since += n as u64;
        if let Some((t, i)) = self.progress {
            if self.since >= 4 << 20 || n == 0 {
                self.since = 0;
                t.bytes(i, self.inner.read);
            }
        }
        Ok(n)
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
}
