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
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buf)),
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
}
