//! `imgctl bundle`: write an OCI runtime bundle (config.json + root filesystem)
//! for an image and `run`'s flags, runnable by crun or runc.
//!
//! An image's filesystem is flattened into `DIR/rootfs`. With `--rootfs DIR` the
//! bundle's `root.path` is DIR's absolute path (the directory is not copied); the generated `/etc/hosts`, `/etc/hostname` and
//! `/etc/resolv.conf` live in the bundle directory.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::run::{prepare, ContainerArgs};
use super::Globals;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub c: ContainerArgs,
    /// IMAGE DIR [COMMAND [ARG...]] (with --rootfs: DIR [COMMAND [ARG...]]).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ARG"
    )]
    pub args: Vec<String>,
}

pub fn run(g: &Globals, a: Args) -> anyhow::Result<ExitCode> {
    let mut pos = a.args;
    let dir_index = if a.c.rootfs.is_some() { 0 } else { 1 };
    if pos.len() <= dir_index {
        anyhow::bail!("usage: imgctl bundle [OPTIONS] IMAGE DIR [COMMAND...] (or --rootfs ROOTFS DIR [COMMAND...])");
    }
    let dir = PathBuf::from(pos.remove(dir_index));
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("create bundle directory {}", dir.display()))?;
    let dir = std::fs::canonicalize(&dir)
        .with_context(|| format!("bundle directory {}", dir.display()))?;
    let image_name = if a.c.rootfs.is_none() {
        pos.first().cloned()
    } else {
        None
    };
    let (mut p, _id) = prepare(g, &a.c, pos, Some(dir.clone()))?;
    // A bundle outlives imgctl: an image-backed rootfs is flattened into DIR/rootfs
    // (unless a user-namespace copy, which persists in the store's cache, is used);
    // with --rootfs nothing is held.
    if let (Some(name), None) = (&image_name, &p.rootfs_shifted) {
        let rootfs = dir.join("rootfs");
        if rootfs.exists() {
            anyhow::bail!(
                "bundle directory {} already has a rootfs; remove it or choose another directory",
                dir.display()
            );
        }
        let (blobs, manifest) = super::image_ref::resolve_image(g, name)?;
        std::fs::create_dir(&rootfs).with_context(|| format!("create {}", rootfs.display()))?;
        crate::image::flatten_into(
            blobs.as_ref(),
            &manifest,
            &rootfs,
            crate::layer::Limits::default(),
        )
        .with_context(|| format!("write {name} into {}", rootfs.display()))?;
        if let Some(mut root) = p.spec.root().clone() {
            root.set_path(PathBuf::from("rootfs"));
            p.spec.set_root(Some(root));
        }
    }
    let path = dir.join("config.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&p.spec)?)
        .with_context(|| format!("write {}", path.display()))?;
    drop(p.image);
    println!("{}", dir.display());
    Ok(ExitCode::SUCCESS)
}
