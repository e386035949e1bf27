//! `imgctl import`: a root filesystem (a tar, plain or compressed, or a directory)
//! becomes a one-layer image. The tar is read once: its entries are walked (a
//! stream that is not a tar fails here, not at the first `run`), its bytes hashed
//! for the diff ID and gzip-compressed into a blob at the same time. Extraction
//! safety is the layer applier's, as for every other layer.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::{input, ArchiveError};
use crate::image::commit::{self, Committed, Image, NewLayer};
use crate::layer::{self, Compression, DiffOptions, WhiteoutFormat};
use crate::oci::{Descriptor, Digester, History, MediaType, Reference};
use crate::store::Store;

/// Where the root filesystem comes from.
pub enum ImportSource {
    /// A tar stream (a file or stdin), plain or gzip/zstd/xz-compressed.
    Tar(Box<dyn Read + Send>),
    /// A directory, written as a layer as `build` writes one.
    Dir(PathBuf),
}

/// What to import.
pub struct ImportRequest {
    pub source: ImportSource,
    /// The image to add the layer to: a config prepared by the caller (`--change`),
    /// no layers.
    pub image: Image,
    pub name: Option<Reference>,
    /// The history comment (`--message`).
    pub message: Option<String>,
    /// Seconds since the epoch for `created` (None: now, or `SOURCE_DATE_EPOCH`).
    pub created: Option<i64>,
}

/// Every byte read also goes to a hash and an encoder.
struct Tee<'a, R, W: Write> {
    inner: R,
    digest: &'a mut Digester,
    out: &'a mut W,
}

impl<R: Read, W: Write> Read for Tee<'_, R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.digest.update(&buf[..n]);
        self.out.write_all(&buf[..n])?;
        Ok(n)
    }
}

fn tar_layer(
    store: &Store,
    input: Box<dyn Read + Send>,
    what: &str,
) -> Result<NewLayer, ArchiveError> {
    let w = store.blob_writer()?;
    let mut enc =
        layer::Encoder::new(w, Compression::Gzip).map_err(ArchiveError::io("compress layer"))?;
    let mut digest = Digester::new();
    let mut listing = None;
    std::thread::scope(|s| -> Result<(), ArchiveError> {
        let (_, reader) =
            input::open(s, input).map_err(ArchiveError::io(format!("read {what}")))?;
        let mut tee = Tee {
            inner: reader,
            digest: &mut digest,
            out: &mut enc,
        };
        let not_tar = |e: io::Error| ArchiveError::Io {
            what: format!("{what} is not a readable tar archive"),
            source: e,
        };
        // The walk is the size report's listing of the layer (padding after the
        // end-of-archive blocks read too: it belongs to the layer).
        let l = layer::index::list(&mut tee, false, &layer::Limits::default()).map_err(not_tar)?;
        if l.entries.is_empty() {
            return Err(ArchiveError::NotAnArchive {
                reason: format!("{what} holds no file"),
            });
        }
        listing = Some(l);
        Ok(())
    })?;
    let w = enc.finish().map_err(ArchiveError::io("compress layer"))?;
    let (d, size) = w.complete(None)?;
    let diff_id = digest.finish();
    if let Some(mut l) = listing {
        l.diff_id = Some(diff_id.clone());
        layer::index::save(store.root(), &d, &l);
    }
    Ok(NewLayer {
        descriptor: Descriptor::new(MediaType::OciLayerGzip, d, size),
        diff_id,
    })
}

fn dir_layer(store: &Store, dir: &Path) -> Result<NewLayer, ArchiveError> {
    if !dir.is_dir() {
        return Err(ArchiveError::NotAnArchive {
            reason: format!("{} is not a directory", dir.display()),
        });
    }
    let opts = DiffOptions {
        compression: Compression::Gzip,
        whiteouts: WhiteoutFormat::None,
        ..DiffOptions::default()
    };
    commit::write_layer(store, dir, &opts).map_err(|e| ArchiveError::Image {
        image: dir.display().to_string(),
        reason: e.to_string(),
    })
}

/// Import a root filesystem as a one-layer image into the store at `root`.
pub fn import(root: &Path, req: ImportRequest) -> Result<Committed, ArchiveError> {
    let store = Store::open(root)?;
    let layer = match req.source {
        ImportSource::Tar(r) => tar_layer(&store, r, "the input")?,
        ImportSource::Dir(d) => dir_layer(&store, &d)?,
    };
    let mut image = req.image;
    let now = req
        .created
        .or_else(|| {
            std::env::var("SOURCE_DATE_EPOCH")
                .ok()
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0)
        });
    let created = commit::rfc3339(now);
    image.config.created = Some(created.clone());
    image.push_layer(
        layer,
        History {
            created: Some(created),
            created_by: Some("imgctl import".into()),
            comment: req.message.clone(),
            ..History::default()
        },
    );
    let tags: Vec<Reference> = req.name.into_iter().collect();
    commit::commit(&store, &image, None, &tags).map_err(|e| ArchiveError::Image {
        image: "import".into(),
        reason: e.to_string(),
    })
}
