//! The layer stream: decompression and hashing on a helper thread, chunks handed to
//! the extractor through a channel, limits and the diff ID checked at the end; and
//! the atomic "extract into a new directory" wrapper.

use super::*;
use crate::layer::index;

/// Decompress `blob` on a helper thread (hashing the tar stream as it goes) and hand
/// the tar stream to `consume`, which returns the number of entries it handled. Then
/// check limits and the diff ID.
pub(in crate::layer) fn stream_layer<R: Read + Send>(
    blob: R,
    compression: Compression,
    opts: &ApplyOptions,
    consume: impl FnOnce(ChannelReader) -> Result<u64, LayerError>,
) -> Result<Applied, LayerError> {
    let layer = opts.layer.as_str();
    let dec = decoder(blob, compression, layer)?;
    std::thread::scope(|s| {
        let (tx, rx) = mpsc::sync_channel::<io::Result<Vec<u8>>>(16);
        let max_bytes = opts.limits.max_bytes;
        // The size report's listing, made on a side thread from a copy of the stream:
        // the extractor never waits for its hashing, the decompression thread only
        // when the side queue (4 MiB) is full.
        let (side, lister) = if opts.index {
            let (tx, work) = index::side_list(opts.limits);
            (Some(tx), Some(s.spawn(work)))
        } else {
            (None, None)
        };
        let producer = s.spawn(move || pump(dec, tx, side, max_bytes));
        let result = consume(ChannelReader::new(rx));
        // The producer ends when it hits EOF, or when the receiver is gone.
        let pumped = producer.join();
        let listing = lister.and_then(|h| match h.join() {
            Ok(Ok(l)) => Some(l),
            Ok(Err(e)) => {
                tracing::debug!("layer {layer}: not indexed: {e}");
                None
            }
            Err(_) => None,
        });
        // A size limit hit while decompressing is the real cause of whatever the tar
        // reader then reported.
        if let Ok(Err(e)) = &pumped {
            if is_limit(e) {
                return Err(stream_error(
                    layer,
                    io::Error::other(LimitHit),
                    &opts.limits,
                ));
            }
        }
        let entries = result?;
        let (diff_id, tar_bytes) = match pumped {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => return Err(stream_error(layer, e, &opts.limits)),
            Err(_) => {
                return Err(LayerError::Read {
                    layer: layer.to_string(),
                    source: io::Error::other("decompression thread panicked"),
                })
            }
        };
        if let Some(expected) = &opts.expected_diff_id {
            if *expected != diff_id {
                return Err(LayerError::DiffIdMismatch {
                    layer: layer.to_string(),
                    expected: expected.to_string(),
                    found: diff_id.to_string(),
                });
            }
        }
        let index = listing
            .filter(|l| l.uncompressed == tar_bytes)
            .map(|mut l| {
                l.diff_id = Some(diff_id.clone());
                l
            });
        Ok(Applied {
            diff_id,
            tar_bytes,
            entries,
            index,
            pooled: Pooled::default(),
        })
    })
}

/// Apply an overlay-mode layer into a new directory `dest`, atomically: the layer is
/// extracted into a temporary sibling directory that is renamed to `dest` only when
/// the whole layer applied (and matched its diff ID); on any error it is removed.
/// When `dest` already exists (another process won the race) the new copy is dropped.
pub fn unpack_new<R: Read + Send>(
    blob: R,
    compression: Compression,
    dest: &Path,
    opts: &ApplyOptions,
) -> Result<Applied, LayerError> {
    let target_err = |source| LayerError::Target {
        path: dest.to_path_buf(),
        source,
    };
    let parent = dest
        .parent()
        .ok_or_else(|| target_err(io::Error::from(io::ErrorKind::InvalidInput)))?;
    let name = dest
        .file_name()
        .ok_or_else(|| target_err(io::Error::from(io::ErrorKind::InvalidInput)))?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let tmp = parent.join(format!(
        ".tmp-{}-{}-{nanos}",
        name.to_string_lossy(),
        std::process::id()
    ));
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .mode(0o755)
            .create(&tmp)
            .map_err(target_err)?;
    }
    let cleanup = |tmp: &Path| {
        if let Ok(pfd) = sfs::open_dir_path(parent) {
            let _ = sfs::remove_all_at(
                pfd.as_fd(),
                tmp.file_name().map(|n| n.as_bytes()).unwrap_or(b""),
            );
        }
    };
    match apply(blob, compression, &tmp, opts) {
        Ok(applied) => match std::fs::rename(&tmp, dest) {
            Ok(()) => Ok(applied),
            Err(e) if dest.is_dir() => {
                tracing::debug!("{} appeared meanwhile ({e}); keeping it", dest.display());
                cleanup(&tmp);
                Ok(applied)
            }
            Err(e) => {
                cleanup(&tmp);
                Err(target_err(e))
            }
        },
        Err(e) => {
            cleanup(&tmp);
            Err(e)
        }
    }
}

/// The io error a limit produces inside the stream, recognised by `stream_error`.
#[derive(Debug)]
pub(in crate::layer) struct LimitHit;

impl std::fmt::Display for LimitHit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("uncompressed size limit reached")
    }
}

impl std::error::Error for LimitHit {}

pub(in crate::layer) fn is_limit(e: &io::Error) -> bool {
    e.get_ref().map(|i| i.is::<LimitHit>()).unwrap_or(false)
}

pub(in crate::layer) fn stream_error(layer: &str, e: io::Error, limits: &Limits) -> LayerError {
    if let Some((what, limit)) = header_limit(&e) {
        LayerError::LimitExceeded {
            layer: layer.to_string(),
            what,
            limit,
        }
    } else if is_limit(&e) {
        LayerError::LimitExceeded {
            layer: layer.to_string(),
            what: "uncompressed size",
            limit: limits.max_bytes,
        }
    } else {
        LayerError::Read {
            layer: layer.to_string(),
            source: e,
        }
    }
}

/// Decompress on this thread, hash the uncompressed bytes, and hand them over in
/// chunks (and a copy to the side lister `side`, when there is one). Returns the
/// diff ID and byte count once the stream ended.
pub(in crate::layer) fn pump(
    mut dec: Box<dyn Read + Send + '_>,
    tx: mpsc::SyncSender<io::Result<Vec<u8>>>,
    mut side: Option<mpsc::SyncSender<index::Chunk>>,
    max_bytes: u64,
) -> io::Result<(Digest, u64)> {
    let mut digester = Digester::new();
    loop {
        let mut chunk = vec![0u8; 256 * 1024];
        let mut filled = 0;
        // Fill the chunk so small decoder reads do not become small messages.
        while filled < chunk.len() {
            match dec.read(&mut chunk[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let _ = tx.send(Err(io::Error::new(e.kind(), e.to_string())));
                    return Err(e);
                }
            }
        }
        if filled == 0 {
            return Ok((digester.clone().finish(), digester.len()));
        }
        chunk.truncate(filled);
        digester.update(&chunk);
        if digester.len() > max_bytes {
            let _ = tx.send(Err(io::Error::other(LimitHit)));
            return Err(io::Error::other(LimitHit));
        }
        index::feed(&mut side, &chunk);
        if tx.send(Ok(chunk)).is_err() {
            // The extractor stopped (it failed); its error is the one to report.
            return Err(io::Error::other("extraction stopped"));
        }
    }
}

/// A reader over chunks sent by another thread (a decoder or a download); a sent error
/// is returned once, a closed channel is the end of the stream.
pub struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Vec<u8>>>,
    cur: Vec<u8>,
    pos: usize,
}

impl ChannelReader {
    pub fn new(rx: mpsc::Receiver<io::Result<Vec<u8>>>) -> ChannelReader {
        ChannelReader {
            rx,
            cur: Vec::new(),
            pos: 0,
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.cur.len() {
            match self.rx.recv() {
                Ok(Ok(c)) => {
                    self.cur = c;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
