//! Reading one layer: the tar stream is decompressed, hashed (diff ID, unless the
//! store already vouches for it) and listed entry by entry, with a BLAKE3 hash of
//! every regular file's content (only compared with other files of the report, never
//! printed: BLAKE3 is collision-resistant and some 4x faster than sha256 here, which
//! is what keeps the listing thread below the decompression thread). Nothing is
//! written anywhere; memory is one small record per entry.

use std::io::{self, Read};
use std::sync::mpsc;

use super::ReportError;
pub(crate) use crate::layer::index::split;
pub use crate::layer::index::{Entry, Kind, Listing as Scanned};
use crate::layer::{self, Compression};
use crate::oci::{Digest, Digester};

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

/// List the decompressed tar stream `raw` (the same listing the unpackers record).
fn list<R: Read>(raw: R, name: &str, diff_id: bool) -> Result<Scanned, ReportError> {
    layer::index::list(raw, diff_id, &layer::Limits::default()).map_err(|source| {
        ReportError::Layer {
            layer: name.to_string(),
            source,
        }
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
