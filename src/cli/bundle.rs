//! `imgctl bundle`: write an OCI runtime bundle (config.json + root filesystem)
//! for an image and `run`'s flags, runnable by crun or runc.
//!
//! An image's filesystem is flattened into `DIR/rootfs`. With `--rootfs DIR` the
//! bundle's `root.path` is DIR's absolute path (the directory is not copied); the
//! generated `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf` live in the
//! bundle directory. A new bundle directory is made 0700 (like runc and
//! containerd state dirs): the rootfs holds the image's setuid files and devices.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use super::run::{image_and_command, rootfs_source, run_flags, ContainerArgs};
use super::Globals;
use crate::container;

#[derive(clap::Args, Debug)]
#[command(
    override_usage = "imgctl bundle [OPTIONS] IMAGE DIR [COMMAND] [ARG...]",
    after_help = "Examples:\n  imgctl bundle busybox ./bb echo hello\n  imgctl bundle -e MODE=test --memory 64m nginx ./nginx-bundle\n  imgctl bundle --rootfs ./rootfs ./bundle /bin/sh"
)]
pub struct Args {
    #[command(flatten)]
    pub c: ContainerArgs,
    /// IMAGE DIR [COMMAND [ARG...]] (with --rootfs: DIR [COMMAND [ARG...]]).
    /// Options go before IMAGE; everything after DIR is the command.
    #[arg(trailing_var_arg = true, value_name = "ARG")]
    pub args: Vec<String>,
}

pub fn run(g: &Globals, a: Args) -> anyhow::Result<ExitCode> {
    let mut pos = a.args;
    let dir_index = if a.c.rootfs.is_some() { 0 } else { 1 };
    if pos.len() <= dir_index {
        anyhow::bail!("usage: imgctl bundle [OPTIONS] IMAGE DIR [COMMAND...] (or --rootfs ROOTFS DIR [COMMAND...])");
    }
    let dir = PathBuf::from(pos.remove(dir_index));
    let (image, cmd) = image_and_command(&a.c, pos);
    let id = container::new_id();
    let flags = run_flags(&a.c, &id, cmd)?;
    let rootfs = rootfs_source(g, image.as_deref(), &a.c)?;
    let dir = container::write_bundle(&g.root, flags, rootfs, &dir)?;
    writeln!(std::io::stdout().lock(), "{}", dir.display())?;
    Ok(ExitCode::SUCCESS)
}
