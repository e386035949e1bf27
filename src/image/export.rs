//! Flattening an image: into a directory the user named (a bundle's rootfs) or into
//! one tar stream (`imgctl export`).
//!
//! A layer's `./` entry describes the image's root directory; it is never applied to
//! a directory named on the command line (an image could otherwise make it 0777 or
//! give it to uid 1000, and with it the setuid files and device nodes below).

use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::{flatten_resolved, ImageError, ResolvedImage};
use crate::layer::{self, Compression, DiffOptions, Limits, WhiteoutFormat};

/// Apply every layer of `image`, flattened, onto the existing directory `dir` (which
/// should be empty). `dir` keeps the owner and mode it has.
pub fn flatten_to_dir(image: &ResolvedImage, dir: &Path) -> Result<(), ImageError> {
    flatten_resolved(
        image.blobs(),
        &image.resolved(),
        dir,
        Limits::default(),
        false,
    )
}

/// Write `image`'s flattened filesystem to `out` as one uncompressed tar. The
/// layers are applied in a private scratch directory under `<root>/tmp`, removed
/// afterwards (also on failure).
pub fn export_tar(root: &Path, image: &ResolvedImage, out: impl Write) -> Result<(), ImageError> {
    let tmp_parent = root.join("tmp");
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ImageError::Io { path, source }
    };
    crate::sys::fs::create_private_dir_all(&tmp_parent).map_err(io(&tmp_parent))?;
    let tmp = scratch_dir(&tmp_parent)?;
    let result = (|| -> Result<(), ImageError> {
        flatten_resolved(
            image.blobs(),
            &image.resolved(),
            &tmp,
            Limits::default(),
            true,
        )?;
        let opts = DiffOptions {
            compression: Compression::None,
            source_date_epoch: None,
            whiteouts: WhiteoutFormat::None,
        };
        let mut w = std::io::BufWriter::new(out);
        layer::write_layer(&tmp, &mut w, &opts)?;
        w.flush().map_err(io(Path::new("output")))?;
        Ok(())
    })();
    if let Ok(fd) = crate::sys::fs::open_dir_path(&tmp_parent) {
        let name = tmp
            .file_name()
            .map(|n| n.as_bytes().to_vec())
            .unwrap_or_default();
        let _ = crate::sys::fs::remove_all_at(fd.as_fd(), &name);
    }
    result
}

fn scratch_dir(parent: &Path) -> Result<PathBuf, ImageError> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let p = parent.join(format!("export-{}-{nanos}", std::process::id()));
    std::fs::create_dir(&p).map_err(|source| ImageError::Io {
        path: p.clone(),
        source,
    })?;
    Ok(p)
}
