//! `imgctl mount IMAGE` / `imgctl umount PATH|KEY`: a writable overlay view of an
//! image (its own upper dir; the image's snapshots are never written).
use std::io::Write;
use std::process::ExitCode;

use super::Globals;
use crate::image::{self, MountOptions};

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  imgctl mount busybox\n  imgctl mount --no-dedup oci:./layout:latest"
)]
pub struct MountArgs {
    /// Image to mount: a name or ID in the store, or `oci:DIR[:TAG]` (an OCI layout).
    pub image: String,
    /// Do not hardlink identical files into the store's dedup pool while unpacking.
    #[arg(long)]
    pub no_dedup: bool,
    /// Same as `--snapshotter erofs` (kept for scripts written before it).
    #[arg(long, hide = true)]
    pub erofs: bool,
}

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  imgctl umount /var/lib/imgctl/snapshots/active/mount-9eaeeb103567/merged\n  imgctl umount mount-9eaeeb103567"
)]
pub struct UmountArgs {
    /// The merged path printed by `imgctl mount` (or the snapshot key).
    pub target: String,
}

pub fn mount(g: &Globals, a: MountArgs) -> anyhow::Result<ExitCode> {
    let img = image::resolve_image(&g.root, &a.image)?;
    let opts = MountOptions {
        dedup: !a.no_dedup,
        snapshotter: a.erofs.then_some(image::LayerFormat::Erofs),
    };
    let view = image::mount(&g.root, &img, opts)?;
    writeln!(std::io::stdout().lock(), "{}", view.merged.display())?;
    Ok(ExitCode::SUCCESS)
}

pub fn umount(g: &Globals, a: UmountArgs) -> anyhow::Result<ExitCode> {
    let key = image::view_key(&g.root, &a.target)?;
    image::release(&g.root, &key)?;
    Ok(ExitCode::SUCCESS)
}
