//! A writable view of an image: unpack it (if needed) into the layer snapshots,
//! prepare an active snapshot on its chain and mount it; release unmounts and
//! removes it. Used by `imgctl mount`/`umount`/`diff` and by containers.

use std::path::{Path, PathBuf};

use super::{unpack_resolved, ImageError, LayerFormat, ResolvedImage, UnpackOptions};
use crate::layer::{self, Change};
use crate::oci::Digest;
use crate::snapshot::{self, Overlay, Snapshotter};

/// How to unpack the image for a view.
#[derive(Debug, Clone, Copy)]
pub struct MountOptions {
    /// Hardlink identical files into the store's dedup pool while unpacking.
    pub dedup: bool,
    /// How new layers are kept; `None`: the store's choice ([`super::layer_format`]).
    pub snapshotter: Option<LayerFormat>,
}

impl Default for MountOptions {
    fn default() -> MountOptions {
        MountOptions {
            dedup: true,
            snapshotter: None,
        }
    }
}

/// A mounted view: the active snapshot `key` and its merged directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    pub key: String,
    pub merged: PathBuf,
}

fn new_key(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let d = Digest::of(format!("{nanos}-{}", std::process::id()).as_bytes());
    format!("{prefix}-{}", d.short())
}

/// Unpack `image` into the store at `root` and mount a fresh writable snapshot of
/// it (its own upper dir; the image's layers are never written).
pub fn mount(root: &Path, image: &ResolvedImage, opts: MountOptions) -> Result<View, ImageError> {
    mount_as(root, image, opts, &new_key("mount"))
}

/// [`mount`] under a snapshot key chosen by the caller (a container's views are
/// named after it, so its leftovers can be found from its id alone).
pub fn mount_as(
    root: &Path,
    image: &ResolvedImage,
    opts: MountOptions,
    key: &str,
) -> Result<View, ImageError> {
    mount_as_with(root, image, opts, key, false)
}

/// [`mount_as`]; `volatile`: the view does not outlive this process's use of it
/// (`run --rm`): its metadata is not fsynced ([`Overlay::prepare_volatile`])
/// and the overlay is `volatile` (no sync of the store's filesystem when it is
/// unmounted, which on a busy host costs tens to hundreds of milliseconds).
pub fn mount_as_with(
    root: &Path,
    image: &ResolvedImage,
    opts: MountOptions,
    key: &str,
    volatile: bool,
) -> Result<View, ImageError> {
    let uo = UnpackOptions {
        dedup: opts.dedup,
        format: opts.snapshotter,
        ..UnpackOptions::default()
    };
    // A prune waits while this lease is held: the layers and chain unpacked here
    // are not referenced by anything until the snapshot below is prepared.
    let store = crate::store::Store::open(root).map_err(|source| ImageError::Store {
        name: image.name.clone(),
        source,
    })?;
    let _lease = store.lease().map_err(|source| ImageError::Store {
        name: image.name.clone(),
        source,
    })?;
    let unpacked = unpack_resolved(image.blobs(), image.resolved(), root, &uo)?;
    let snaps = Overlay::open(root)?;
    let key = key.to_string();
    let mounts = if volatile {
        snaps.prepare_volatile(&key, unpacked.chain_id.as_ref())?
    } else {
        snaps.prepare(&key, unpacked.chain_id.as_ref())?
    };
    let merged = snaps.merged_dir(&key);
    if let Err(e) = snapshot::mount_all_with(&mounts, &merged, volatile) {
        let _ = snaps.remove(&key);
        return Err(ImageError::Io {
            path: merged,
            source: std::io::Error::other(format!("mount {}: {e}", image.name)),
        });
    }
    Ok(View { key, merged })
}

/// Mount again the existing active snapshot `key` (a stopped container's view,
/// its upper dir kept): the image's layers below it, its own changes on top.
pub fn remount(root: &Path, key: &str) -> Result<View, ImageError> {
    let snaps = Overlay::open(root)?;
    let mounts = snaps.mounts(key)?;
    let merged = snaps.merged_dir(key);
    if crate::sys::fs::is_mount_point(&merged).unwrap_or(false) {
        return Ok(View {
            key: key.to_string(),
            merged,
        });
    }
    snapshot::mount_all(&mounts, &merged).map_err(|e| ImageError::Io {
        path: merged.clone(),
        source: std::io::Error::other(format!("mount {key}: {e}")),
    })?;
    Ok(View {
        key: key.to_string(),
        merged,
    })
}

/// Unmount the view `key` but keep its snapshot (a stopped container keeps its
/// changes until it is removed). Not mounted is not an error.
pub fn unmount(root: &Path, key: &str) -> Result<(), ImageError> {
    let snaps = Overlay::open(root)?;
    let merged = snaps.merged_dir(key);
    match crate::sys::fs::unmount(&merged, false) {
        Ok(()) => Ok(()),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOENT)) => Ok(()),
        Err(e) => Err(ImageError::Io {
            path: merged,
            source: e,
        }),
    }
}

/// Whether the active snapshot `key` exists.
pub fn has_view(root: &Path, key: &str) -> bool {
    Overlay::open(root)
        .ok()
        .and_then(|s| s.stat(key).ok().flatten())
        .is_some()
}

/// The active snapshot key named by a merged path or a key.
pub fn view_key(root: &Path, target: &str) -> Result<String, ImageError> {
    let snaps = Overlay::open(root)?;
    if let Some(k) = snaps.key_for_merged(Path::new(target)) {
        return Ok(k);
    }
    match snaps.stat(target) {
        Ok(Some(_)) => Ok(target.to_string()),
        _ => Err(ImageError::Io {
            path: PathBuf::from(target),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "not a path mounted by `imgctl mount` (nor a snapshot key)",
            ),
        }),
    }
}

/// Unmount the view `key` made by [`mount`] and remove its snapshot; layers no
/// other view uses are detached too.
pub fn release(root: &Path, key: &str) -> Result<(), ImageError> {
    // A prune must not judge the view stale between the unmount and the removal.
    let store = crate::store::Store::open_existing(root).map_err(|source| ImageError::Store {
        name: key.to_string(),
        source,
    })?;
    let _lease = match root.join("locks").is_dir() {
        true => Some(store.lease().map_err(|source| ImageError::Store {
            name: key.to_string(),
            source,
        })?),
        false => None,
    };
    let snaps = Overlay::open(root)?;
    let merged = snaps.merged_dir(key);
    match crate::sys::fs::unmount(&merged, false) {
        Ok(()) => {}
        // Not mounted (already unmounted by hand): just drop the snapshot.
        // (ENOENT: a view whose making was killed before its merged dir existed.)
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOENT)) => {}
        Err(e) => {
            return Err(ImageError::Io {
                path: merged,
                source: e,
            })
        }
    }
    match snaps.remove(key) {
        // Removed meanwhile by another cleaner (a prune, a reaper): nothing left to do.
        Err(snapshot::SnapshotError::NotFound { .. }) => {}
        r => r?,
    }
    snaps.unmount_unused_layers()?;
    Ok(())
}

/// What the view `key` changed against its image (A/C/D, like `docker diff`).
pub fn changes(root: &Path, key: &str) -> Result<Vec<Change>, ImageError> {
    let snaps = Overlay::open(root)?;
    let info = snaps.stat(key)?.ok_or_else(|| ImageError::Io {
        path: PathBuf::from(key),
        source: std::io::Error::new(std::io::ErrorKind::NotFound, "snapshot not found"),
    })?;
    let lowers = match &info.parent {
        Some(p) => snaps.lowers(p)?,
        None => Vec::new(),
    };
    // EROFS lowers are read through their mounts: make sure they are there (a
    // reboot or `unmount_layers` may have detached them since the view was made).
    let erofs: Vec<snapshot::Mount> = snaps
        .mounts(key)?
        .into_iter()
        .filter(|m| matches!(m, snapshot::Mount::Erofs { .. }))
        .collect();
    snapshot::mount_all(&erofs, Path::new("/")).map_err(|source| ImageError::Io {
        path: PathBuf::from(key),
        source,
    })?;
    Ok(layer::changes(&snaps.upper_dir(key), &lowers)?)
}
