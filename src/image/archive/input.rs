//! The bytes of an archive being loaded: a file or stdin, plain or gzip/zstd/xz
//! compressed (told by the first bytes, not the file name). A compressed archive is
//! decompressed on its own thread, so the tar side hashes while the decoder runs.

use std::io::{self, Cursor, Read, Write};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::thread::Scope;

/// Chunks handed between threads.
const CHUNK: usize = 256 * 1024;
/// Chunks in flight per channel.
const DEPTH: usize = 16;

/// How a whole archive is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outer {
    Plain,
    Gzip,
    Zstd,
    Xz,
}

impl Outer {
    pub(super) fn sniff(head: &[u8]) -> Outer {
        if head.starts_with(&[0x1f, 0x8b]) {
            Outer::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Outer::Zstd
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            Outer::Xz
        } else {
            Outer::Plain
        }
    }
}

/// Read up to `n` bytes (fewer only at end of input).
fn peek<R: Read>(r: &mut R, n: usize) -> io::Result<Vec<u8>> {
    let mut head = vec![0u8; n];
    let mut got = 0;
    while got < n {
        match r.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    head.truncate(got);
    Ok(head)
}

type Msg = io::Result<Vec<u8>>;

/// A reader fed with chunks by another thread: the layer extractor's.
pub(super) use crate::layer::ChannelReader;

/// A writer that sends what it is given to a [`ChannelReader`] (for decoders that
/// push their output, such as lzma-rs).
struct ChannelWriter {
    tx: SyncSender<Msg>,
    buf: Vec<u8>,
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx
            .send(Ok(chunk))
            .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))
    }
}

/// Read `r` to its end on a thread of `scope`, in chunks. The thread stops when the
/// reader side is dropped.
pub(super) fn pump<'scope, R: Read + Send + 'scope>(
    scope: &'scope Scope<'scope, '_>,
    mut r: R,
) -> ChannelReader {
    let (tx, rx) = sync_channel::<Msg>(DEPTH);
    scope.spawn(move || loop {
        let mut chunk = vec![0u8; CHUNK];
        match r.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => {
                chunk.truncate(n);
                if tx.send(Ok(chunk)).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        }
    });
    ChannelReader::new(rx)
}

/// The decompressed archive stream of `input`, and how it was compressed.
pub(super) fn open<'scope, R: Read + Send + 'scope>(
    scope: &'scope Scope<'scope, '_>,
    mut input: R,
) -> io::Result<(Outer, Box<dyn Read + 'scope>)> {
    let head = peek(&mut input, 6)?;
    let kind = Outer::sniff(&head);
    let full = Cursor::new(head).chain(input);
    let reader: Box<dyn Read + 'scope> = match kind {
        Outer::Plain => Box::new(full),
        Outer::Gzip => Box::new(pump(
            scope,
            flate2::bufread::MultiGzDecoder::new(io::BufReader::with_capacity(1 << 20, full)),
        )),
        Outer::Zstd => Box::new(pump(scope, zstd::stream::read::Decoder::new(full)?)),
        Outer::Xz => {
            let (tx, rx) = sync_channel::<Msg>(DEPTH);
            scope.spawn(move || {
                let mut src = io::BufReader::with_capacity(1 << 20, full);
                let mut out = ChannelWriter {
                    tx: tx.clone(),
                    buf: Vec::with_capacity(CHUNK),
                };
                let r = lzma_rs::xz_decompress(&mut src, &mut out)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("xz: {e}")))
                    .and_then(|()| out.flush());
                if let Err(e) = r {
                    let _ = tx.send(Err(e));
                }
            });
            Box::new(ChannelReader::new(rx))
        }
    };
    Ok((kind, reader))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(kind_expected: Outer, data: Vec<u8>) -> Vec<u8> {
        std::thread::scope(|s| {
            let (kind, mut r) = open(s, Cursor::new(data)).unwrap();
            assert_eq!(kind, kind_expected);
            let mut out = Vec::new();
            r.read_to_end(&mut out).unwrap();
            out
        })
    }

    #[test]
    fn decompresses_what_the_first_bytes_say() {
        let plain: Vec<u8> = (0..700_000u32).flat_map(|i| i.to_le_bytes()).collect();
        assert_eq!(read_all(Outer::Plain, plain.clone()), plain);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&plain).unwrap();
        assert_eq!(read_all(Outer::Gzip, gz.finish().unwrap()), plain);
        let zs = zstd::encode_all(&plain[..], 1).unwrap();
        assert_eq!(read_all(Outer::Zstd, zs), plain);
        let mut xz = Vec::new();
        lzma_rs::xz_compress(&mut &plain[..], &mut xz).unwrap();
        assert_eq!(read_all(Outer::Xz, xz), plain);
        // Shorter than the longest magic.
        assert_eq!(read_all(Outer::Plain, b"ab".to_vec()), b"ab");
    }

    #[test]
    fn a_corrupt_stream_is_an_error_not_a_hang() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&[7u8; 100_000]).unwrap();
        let mut data = gz.finish().unwrap();
        let n = data.len();
        data[n / 2] ^= 0xff;
        data.truncate(n - 4);
        std::thread::scope(|s| {
            let (_, mut r) = open(s, Cursor::new(data)).unwrap();
            let mut out = Vec::new();
            assert!(r.read_to_end(&mut out).is_err());
        });
    }
}
