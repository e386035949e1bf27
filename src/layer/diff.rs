//! From a changed directory to a layer: a deterministic tar (entries sorted by name,
//! no user/group names, mtimes clamped to `SOURCE_DATE_EPOCH` when given), compressed,
//! with the diff ID (uncompressed sha256) and the blob digest computed in the same
//! pass. Overlay whiteouts (0:0 character devices) and opaque directories
//! (`trusted.overlay.opaque=y`) become OCI `.wh.` entries again.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::compress::{Compression, Encoder};
use super::index::{ChunkSender, Listing};
use super::LayerError;
use crate::oci::{Digest, Digester};
use crate::sys::fs as sfs;

/// How whiteouts are represented in the source directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhiteoutFormat {
    /// An overlayfs upper directory: 0:0 character devices and opaque xattrs.
    Overlay,
    /// A plain tree (e.g. a flattened root filesystem): everything is content.
    None,
}

/// How to write a layer.
#[derive(Debug, Clone)]
pub struct DiffOptions {
    pub compression: Compression,
    /// Clamp every mtime to at most this (reproducible builds).
    pub source_date_epoch: Option<u64>,
    pub whiteouts: WhiteoutFormat,
}

impl Default for DiffOptions {
    fn default() -> DiffOptions {
        DiffOptions {
            compression: Compression::Gzip,
            source_date_epoch: std::env::var("SOURCE_DATE_EPOCH")
                .ok()
                .and_then(|v| v.trim().parse().ok()),
            whiteouts: WhiteoutFormat::Overlay,
        }
    }
}

/// The written layer's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerOutput {
    /// sha256 of the uncompressed tar.
    pub diff_id: Digest,
    /// sha256 of the bytes written.
    pub digest: Digest,
    /// Bytes written.
    pub size: u64,
    pub media_type: &'static str,
    /// Bytes of the uncompressed tar.
    pub tar_bytes: u64,
}

struct HashWriter<W> {
    inner: W,
    digester: Digester,
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.digester.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// Write the contents of `dir` as a layer to `out`.
pub fn write_layer<W: Write>(
    dir: &Path,
    out: W,
    opts: &DiffOptions,
) -> Result<LayerOutput, LayerError> {
    write_layer_with(dir, out, opts, None)
}

/// [`write_layer`], and the size report's listing of the layer ([`super::index`]),
/// made on a side thread from a copy of the tar stream as it is written. `None` when
/// the lister refused the stream (the layer is written all the same).
pub fn write_layer_indexed<W: Write>(
    dir: &Path,
    out: W,
    opts: &DiffOptions,
) -> Result<(LayerOutput, Option<Listing>), LayerError> {
    let (tx, work) = super::index::side_list(super::Limits::default());
    std::thread::scope(|s| {
        let lister = s.spawn(work);
        // The sender is dropped when writing ends (or fails): the lister then ends.
        let written = write_layer_with(dir, out, opts, Some(tx));
        let listing = match lister.join() {
            Ok(Ok(l)) => Some(l),
            Ok(Err(e)) => {
                tracing::debug!("layer from {}: not indexed: {e}", dir.display());
                None
            }
            Err(_) => None,
        };
        let out = written?;
        let listing = listing
            .filter(|l| l.uncompressed == out.tar_bytes)
            .map(|mut l| {
                l.diff_id = Some(out.diff_id.clone());
                l.compressed = out.size;
                l
            });
        Ok((out, listing))
    })
}

fn write_layer_with<W: Write>(
    dir: &Path,
    out: W,
    opts: &DiffOptions,
    side: Option<std::sync::mpsc::SyncSender<super::index::Chunk>>,
) -> Result<LayerOutput, LayerError> {
    let err = |source| LayerError::Diff {
        path: dir.to_path_buf(),
        source,
    };
    let blob = HashWriter {
        inner: out,
        digester: Digester::new(),
    };
    let enc = Encoder::new(blob, opts.compression).map_err(err)?;
    let tar_w = HashWriter {
        inner: ChunkSender::new(enc, side),
        digester: Digester::new(),
    };
    let mut builder = tar::Builder::new(tar_w);
    builder.mode(tar::HeaderMode::Complete);
    let mut walker = Walker {
        opts,
        links: HashMap::new(),
    };
    walker.dir(&mut builder, dir, b"").map_err(err)?;
    let tar_w = builder.into_inner().map_err(err)?;
    let tar_bytes = tar_w.digester.len();
    let diff_id = tar_w.digester.finish();
    let mut blob = tar_w.inner.finish().finish().map_err(err)?;
    blob.flush().map_err(err)?;
    let size = blob.digester.len();
    Ok(LayerOutput {
        diff_id,
        digest: blob.digester.finish(),
        size,
        media_type: opts.compression.oci_media_type(),
        tar_bytes,
    })
}

struct Walker<'o> {
    opts: &'o DiffOptions,
    /// (dev, ino) of multiply-linked files already written -> their entry name.
    links: HashMap<(u64, u64), Vec<u8>>,
}

fn sorted_children(dir: &Path) -> io::Result<Vec<(Vec<u8>, PathBuf)>> {
    let mut v: Vec<(Vec<u8>, PathBuf)> = fs::read_dir(dir)?
        .map(|e| e.map(|e| (e.file_name().as_bytes().to_vec(), e.path())))
        .collect::<io::Result<_>>()?;
    v.sort();
    Ok(v)
}

fn is_whiteout(md: &fs::Metadata) -> bool {
    md.file_type().is_char_device() && md.rdev() == 0
}

impl Walker<'_> {
    fn mtime(&self, md: &fs::Metadata) -> u64 {
        let m = u64::try_from(md.mtime()).unwrap_or(0);
        match self.opts.source_date_epoch {
            Some(e) => m.min(e),
            None => m,
        }
    }

    fn header(&self, md: &fs::Metadata, kind: tar::EntryType) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(md.mode() & 0o7777);
        h.set_uid(u64::from(md.uid()));
        h.set_gid(u64::from(md.gid()));
        h.set_mtime(self.mtime(md));
        h.set_size(0);
        h
    }

    fn xattrs<W: Write>(&self, b: &mut tar::Builder<W>, path: &Path) -> io::Result<()> {
        let xs: Vec<(String, Vec<u8>)> = sfs::xattrs_of(path)?
            .into_iter()
            .filter(|(k, _)| !k.starts_with("trusted.overlay.") && k != "security.selinux")
            .map(|(k, v)| (format!("SCHILY.xattr.{k}"), v))
            .collect();
        if !xs.is_empty() {
            b.append_pax_extensions(xs.iter().map(|(k, v)| (k.as_str(), v.as_slice())))?;
        }
        Ok(())
    }

    fn dir<W: Write>(&mut self, b: &mut tar::Builder<W>, dir: &Path, rel: &[u8]) -> io::Result<()> {
        for (name, path) in sorted_children(dir)? {
            let mut entry = rel.to_vec();
            entry.extend_from_slice(&name);
            let md = fs::symlink_metadata(&path)?;
            let ft = md.file_type();
            if self.opts.whiteouts == WhiteoutFormat::Overlay && is_whiteout(&md) {
                let mut wh = rel.to_vec();
                wh.extend_from_slice(b".wh.");
                wh.extend_from_slice(&name);
                let mut h = self.header(&md, tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_uid(0);
                h.set_gid(0);
                b.append_data(
                    &mut h,
                    Path::new(std::ffi::OsStr::from_bytes(&wh)),
                    io::empty(),
                )?;
                continue;
            }
            if ft.is_dir() {
                let mut dname = entry.clone();
                dname.push(b'/');
                self.xattrs(b, &path)?;
                let mut h = self.header(&md, tar::EntryType::Directory);
                b.append_data(
                    &mut h,
                    Path::new(std::ffi::OsStr::from_bytes(&dname)),
                    io::empty(),
                )?;
                if self.opts.whiteouts == WhiteoutFormat::Overlay {
                    let opaque = sfs::xattrs_of(&path)?
                        .iter()
                        .any(|(k, v)| k == OPAQUE_XATTR && v.as_slice() == b"y");
                    if opaque {
                        let mut o = dname.clone();
                        o.extend_from_slice(b".wh..wh..opq");
                        let mut h = self.header(&md, tar::EntryType::Regular);
                        h.set_mode(0o644);
                        h.set_uid(0);
                        h.set_gid(0);
                        b.append_data(
                            &mut h,
                            Path::new(std::ffi::OsStr::from_bytes(&o)),
                            io::empty(),
                        )?;
                    }
                }
                self.dir(b, &path, &dname)?;
                continue;
            }
            let epath = Path::new(std::ffi::OsStr::from_bytes(&entry)).to_path_buf();
            if !ft.is_symlink() && md.nlink() > 1 {
                if let Some(first) = self.links.get(&(md.dev(), md.ino())) {
                    let mut h = self.header(&md, tar::EntryType::Link);
                    b.append_link(
                        &mut h,
                        &epath,
                        Path::new(std::ffi::OsStr::from_bytes(first)),
                    )?;
                    continue;
                }
                self.links.insert((md.dev(), md.ino()), entry.clone());
            }
            self.xattrs(b, &path)?;
            if ft.is_file() {
                let mut f = File::options()
                    .read(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&path)?;
                let len = md.len();
                let mut h = self.header(&md, tar::EntryType::Regular);
                h.set_size(len);
                // A file that shrank under us must not desynchronise the archive.
                let mut data = (&mut f).take(len).chain(io::repeat(0)).take(len);
                b.append_data(&mut h, &epath, &mut data)?;
            } else if ft.is_symlink() {
                let target = fs::read_link(&path)?;
                let mut h = self.header(&md, tar::EntryType::Symlink);
                b.append_link(&mut h, &epath, &target)?;
            } else if ft.is_char_device() || ft.is_block_device() {
                let kind = if ft.is_char_device() {
                    tar::EntryType::Char
                } else {
                    tar::EntryType::Block
                };
                let mut h = self.header(&md, kind);
                let rdev = md.rdev();
                h.set_device_major(libc::major(rdev))?;
                h.set_device_minor(libc::minor(rdev))?;
                b.append_data(&mut h, &epath, io::empty())?;
            } else if ft.is_fifo() {
                let mut h = self.header(&md, tar::EntryType::Fifo);
                b.append_data(&mut h, &epath, io::empty())?;
            } else {
                tracing::debug!("skipping socket {}", path.display());
            }
        }
        Ok(())
    }
}

/// A change of a container's filesystem against its image, as `docker diff` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ChangeKind {
    Added,
    Changed,
    Deleted,
}

impl ChangeKind {
    pub fn letter(self) -> char {
        match self {
            ChangeKind::Added => 'A',
            ChangeKind::Changed => 'C',
            ChangeKind::Deleted => 'D',
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Change {
    /// Absolute path inside the container (`/etc/hosts`).
    pub path: String,
    pub kind: ChangeKind,
}

/// The changes an overlay upper directory makes over its lower directories (top-most
/// first), sorted by path.
pub fn changes(upper: &Path, lowers: &[PathBuf]) -> Result<Vec<Change>, LayerError> {
    let mut out = Vec::new();
    walk_changes(upper, lowers, Path::new("/"), &mut out).map_err(|source| LayerError::Diff {
        path: upper.to_path_buf(),
        source,
    })?;
    out.sort();
    Ok(out)
}

fn in_lowers(lowers: &[PathBuf], rel: &Path) -> Option<fs::Metadata> {
    let rel = rel.strip_prefix("/").unwrap_or(rel);
    for l in lowers {
        if let Ok(md) = fs::symlink_metadata(l.join(rel)) {
            if is_whiteout(&md) {
                return None;
            }
            return Some(md);
        }
    }
    None
}

fn walk_changes(
    dir: &Path,
    lowers: &[PathBuf],
    rel: &Path,
    out: &mut Vec<Change>,
) -> io::Result<()> {
    for (name, path) in sorted_children(dir)? {
        let crel = rel.join(std::ffi::OsStr::from_bytes(&name));
        let md = fs::symlink_metadata(&path)?;
        let lower = in_lowers(lowers, &crel);
        let display = crel.to_string_lossy().into_owned();
        if is_whiteout(&md) {
            if lower.is_some() {
                out.push(Change {
                    path: display,
                    kind: ChangeKind::Deleted,
                });
            }
            continue;
        }
        let kind = if lower.is_some() {
            ChangeKind::Changed
        } else {
            ChangeKind::Added
        };
        out.push(Change {
            path: display,
            kind,
        });
        if md.is_dir() {
            let opaque = sfs::xattrs_of(&path)?
                .iter()
                .any(|(k, v)| k == OPAQUE_XATTR && v.as_slice() == b"y");
            if opaque && lower.as_ref().map(|m| m.is_dir()).unwrap_or(false) {
                // Everything the lower layers had here and the upper lacks is gone.
                let relp = crel.strip_prefix("/").unwrap_or(&crel);
                let mut seen = std::collections::BTreeSet::new();
                for l in lowers {
                    if let Ok(children) = sorted_children(&l.join(relp)) {
                        for (n, _) in children {
                            if path
                                .join(std::ffi::OsStr::from_bytes(&n))
                                .symlink_metadata()
                                .is_err()
                                && seen.insert(n.clone())
                            {
                                out.push(Change {
                                    path: crel
                                        .join(std::ffi::OsStr::from_bytes(&n))
                                        .to_string_lossy()
                                        .into_owned(),
                                    kind: ChangeKind::Deleted,
                                });
                            }
                        }
                    }
                }
            }
            walk_changes(&path, lowers, &crel, out)?;
        }
    }
    Ok(())
}
