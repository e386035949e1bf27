//! Layer compression: chosen by media type, checked against the stream's magic bytes.

use std::io::{self, BufRead, BufReader, Read, Write};

use super::LayerError;

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];

impl Compression {
    /// The compression a layer media type declares (OCI and Docker schema 2 names,
    /// including the non-distributable variants).
    pub fn from_media_type(media_type: &str) -> Result<Compression, LayerError> {
        let mt = media_type.trim();
        let known = [
            ("application/vnd.oci.image.layer.v1.tar", Compression::None),
            (
                "application/vnd.oci.image.layer.v1.tar+gzip",
                Compression::Gzip,
            ),
            (
                "application/vnd.oci.image.layer.v1.tar+zstd",
                Compression::Zstd,
            ),
            (
                "application/vnd.oci.image.layer.nondistributable.v1.tar",
                Compression::None,
            ),
            (
                "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                Compression::Gzip,
            ),
            (
                "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
                Compression::Zstd,
            ),
            (
                "application/vnd.docker.image.rootfs.diff.tar",
                Compression::None,
            ),
            (
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
                Compression::Gzip,
            ),
            (
                "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                Compression::Gzip,
            ),
            (
                "application/vnd.docker.image.rootfs.diff.tar.zstd",
                Compression::Zstd,
            ),
        ];
        known
            .iter()
            .find(|(m, _)| *m == mt)
            .map(|(_, c)| *c)
            .ok_or_else(|| LayerError::UnsupportedMediaType {
                media_type: media_type.to_string(),
            })
    }

    /// The OCI media type of a layer with this compression.
    pub fn oci_media_type(self) -> &'static str {
        match self {
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }

    /// What the first bytes of a stream say it is.
    pub fn sniff(head: &[u8]) -> Compression {
        if head.starts_with(GZIP_MAGIC) {
            Compression::Gzip
        } else if head.starts_with(ZSTD_MAGIC) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "uncompressed",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

/// Wrap `raw` in the decoder for `declared`, after checking the magic bytes agree.
/// `layer` names the blob in errors.
pub fn decoder<'a, R: Read + Send + 'a>(
    raw: R,
    declared: Compression,
    layer: &str,
) -> Result<Box<dyn Read + Send + 'a>, LayerError> {
    let mut buf = BufReader::with_capacity(256 * 1024, raw);
    let head = buf.fill_buf().map_err(|source| LayerError::Read {
        layer: layer.to_string(),
        source,
    })?;
    let found = Compression::sniff(head);
    if found != declared {
        return Err(LayerError::CompressionMismatch {
            layer: layer.to_string(),
            declared: declared.name(),
            found: found.name(),
        });
    }
    Ok(match declared {
        Compression::None => Box::new(buf),
        Compression::Gzip => Box::new(GzMembers {
            cur: Some(flate2::bufread::GzDecoder::new(buf)),
        }),
        Compression::Zstd => {
            let d = zstd::stream::read::Decoder::with_buffer(buf).map_err(|source| {
                LayerError::Read {
                    layer: layer.to_string(),
                    source,
                }
            })?;
            Box::new(d)
        }
    })
}

/// Concatenated gzip members, then optionally NUL padding (some registries and tools
/// pad blobs; SECURITY-TESTS A17). Anything else after the last member is an error.
struct GzMembers<R: BufRead> {
    cur: Option<flate2::bufread::GzDecoder<R>>,
}

impl<R: BufRead> Read for GzMembers<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let Some(dec) = self.cur.as_mut() else {
                return Ok(0);
            };
            let n = dec.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            let mut inner = match self.cur.take() {
                Some(d) => d.into_inner(),
                None => return Ok(0),
            };
            let head = inner.fill_buf()?;
            if head.is_empty() {
                return Ok(0);
            }
            if head[0] == GZIP_MAGIC[0] {
                self.cur = Some(flate2::bufread::GzDecoder::new(inner));
                continue;
            }
            loop {
                let h = inner.fill_buf()?;
                if h.is_empty() {
                    return Ok(0);
                }
                if h.iter().any(|b| *b != 0) {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "unexpected data after the end of the gzip stream",
                    ));
                }
                let l = h.len();
                inner.consume(l);
            }
        }
    }
}

/// A compressing writer; `finish` flushes the trailer and returns the inner writer.
pub enum Encoder<W: Write> {
    None(W),
    Gzip(flate2::write::GzEncoder<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Encoder<W> {
    pub fn new(inner: W, c: Compression) -> io::Result<Encoder<W>> {
        Ok(match c {
            Compression::None => Encoder::None(inner),
            // mtime 0 and no file name in the gzip header keep output reproducible.
            Compression::Gzip => Encoder::Gzip(
                flate2::GzBuilder::new()
                    .mtime(0)
                    .write(inner, flate2::Compression::new(6)),
            ),
            Compression::Zstd => Encoder::Zstd(zstd::stream::write::Encoder::new(inner, 3)?),
        })
    }

    pub fn finish(self) -> io::Result<W> {
        match self {
            Encoder::None(w) => Ok(w),
            Encoder::Gzip(g) => g.finish(),
            Encoder::Zstd(z) => z.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::None(w) => w.write(buf),
            Encoder::Gzip(g) => g.write(buf),
            Encoder::Zstd(z) => z.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::None(w) => w.flush(),
            Encoder::Gzip(g) => g.flush(),
            Encoder::Zstd(z) => z.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_map_to_compression() {
        assert_eq!(
            Compression::from_media_type("application/vnd.oci.image.layer.v1.tar+zstd").unwrap(),
            Compression::Zstd
        );
        assert_eq!(
            Compression::from_media_type("application/vnd.docker.image.rootfs.diff.tar.gzip")
                .unwrap(),
            Compression::Gzip
        );
        assert!(Compression::from_media_type("application/json").is_err());
    }

    #[test]
    fn magic_mismatch_is_refused() {
        let plain = vec![0u8; 1024];
        let e = decoder(&plain[..], Compression::Gzip, "sha256:x")
            .err()
            .unwrap();
        assert!(e.to_string().contains("gzip"), "{e}");
        let mut gz = Encoder::new(Vec::new(), Compression::Gzip).unwrap();
        gz.write_all(b"hello").unwrap();
        let gz = gz.finish().unwrap();
        assert!(decoder(&gz[..], Compression::Zstd, "l").is_err());
        let mut out = String::new();
        decoder(&gz[..], Compression::Gzip, "l")
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, "hello");
    }

    #[test]
    fn gzip_members_padding_and_garbage() {
        let member = |d: &[u8]| {
            let mut e = Encoder::new(Vec::new(), Compression::Gzip).unwrap();
            e.write_all(d).unwrap();
            e.finish().unwrap()
        };
        let mut two = member(b"hello ");
        two.extend(member(b"world"));
        two.extend([0u8; 100]);
        let mut out = String::new();
        decoder(&two[..], Compression::Gzip, "l")
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, "hello world");
        let mut bad = member(b"x");
        bad.extend(b"garbage");
        let mut out = Vec::new();
        assert!(decoder(&bad[..], Compression::Gzip, "l")
            .unwrap()
            .read_to_end(&mut out)
            .is_err());
    }
}
