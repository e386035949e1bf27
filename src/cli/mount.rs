//! `imgctl mount IMAGE` / `imgctl umount PATH|KEY`: a writable overlay view of an
//! image (its own upper dir; the image's snapshots are never written).
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use super::Globals;
use crate::image;
use crate::oci::Digest;
use crate::snapshot::{self, Overlay, Snapshotter};

#[derive(clap::Args, Debug)]
pub struct MountArgs {
    /// Image to mount: a name or ID in the store, or `oci:DIR[:TAG]` (an OCI layout).
    pub image: String,
    /// Do not hardlink identical files into the store's dedup pool while unpacking.
    #[arg(long)]
    pub no_dedup: bool,
    /// Keep new layers as EROFS images mounted on demand instead of extracted files
    /// (needs Linux 6.12+; much faster where creating files is slow).
    #[arg(long)]
    pub erofs: bool,
}

#[derive(clap::Args, Debug)]
pub struct UmountArgs {
    /// The merged path printed by `imgctl mount` (or the snapshot key).
    pub target: String,
}

pub(super) use super::image_ref::resolve_image;

fn new_key(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let d = Digest::of(format!("{nanos}-{}", std::process::id()).as_bytes());
    format!("{prefix}-{}", d.short())
}

/// Unpack `name` into the store and prepare a writable snapshot `key` on it; returns
/// the merged path (not yet mounted) and the mounts.
pub(super) fn mount_image(
    g: &Globals,
    name: &str,
    dedup: bool,
    erofs: bool,
) -> anyhow::Result<(String, PathBuf)> {
    let (blobs, manifest) = resolve_image(g, name)?;
    let opts = image::UnpackOptions {
        dedup,
        format: if erofs {
            image::LayerFormat::Erofs
        } else {
            image::LayerFormat::Files
        },
        ..image::UnpackOptions::default()
    };
    let unpacked = image::unpack_with(blobs.as_ref(), &manifest, &g.root, &opts)
        .with_context(|| format!("unpack {name}"))?;
    let snaps = Overlay::open(&g.root)?;
    let key = new_key("mount");
    let mounts = snaps.prepare(&key, unpacked.chain_id.as_ref())?;
    let merged = snaps.merged_dir(&key);
    if let Err(e) = snapshot::mount_all(&mounts, &merged) {
        let _ = snaps.remove(&key);
        return Err(anyhow::Error::new(e).context(format!("mount {name} on {}", merged.display())));
    }
    Ok((key, merged))
}

pub fn mount(g: &Globals, a: MountArgs) -> anyhow::Result<ExitCode> {
    let (_key, merged) = mount_image(g, &a.image, !a.no_dedup, a.erofs)?;
    println!("{}", merged.display());
    Ok(ExitCode::SUCCESS)
}

/// The active snapshot key named by a merged path or a key.
pub(super) fn key_of(snaps: &Overlay, target: &str) -> anyhow::Result<String> {
    if let Some(k) = snaps.key_for_merged(Path::new(target)) {
        return Ok(k);
    }
    match snaps.stat(target) {
        Ok(Some(_)) => Ok(target.to_string()),
        _ => anyhow::bail!("{target} is not a path mounted by `imgctl mount` (nor a snapshot key)"),
    }
}

pub fn umount(g: &Globals, a: UmountArgs) -> anyhow::Result<ExitCode> {
    let snaps = Overlay::open(&g.root)?;
    let key = key_of(&snaps, &a.target)?;
    release(g, &key)?;
    Ok(ExitCode::SUCCESS)
}

/// Unmount the view of snapshot `key` made by [`mount_image`] and remove the
/// snapshot; layers no other view uses are detached too. Used by `umount` and when a
/// container that ran on the image is gone.
pub(super) fn release(g: &Globals, key: &str) -> anyhow::Result<()> {
    let snaps = Overlay::open(&g.root)?;
    let merged = snaps.merged_dir(key);
    match crate::sys::fs::unmount(&merged, false) {
        Ok(()) => {}
        // Not mounted (already unmounted by hand): just drop the snapshot.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
        Err(e) => return Err(anyhow::Error::new(e).context(format!("umount {}", merged.display()))),
    }
    snaps.remove(key)?;
    snaps.unmount_unused_layers()?;
    Ok(())
}
