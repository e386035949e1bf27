//! `imgctl bundle`: write an OCI runtime bundle (config.json + root filesystem)
//! for an image and `run`'s flags, runnable by crun or runc.
//!
//! With `--rootfs DIR` the bundle's `root.path` is DIR's absolute path (the
//! directory is not copied); the generated `/etc/hosts`, `/etc/hostname` and
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
    let (p, _id) = prepare(g, &a.c, pos, Some(dir.clone()))?;
    let path = dir.join("config.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&p.spec)?)
        .with_context(|| format!("write {}", path.display()))?;
    // A bundle outlives imgctl: with --rootfs nothing is held; an image-backed
    // rootfs must be materialised in the bundle before its release here.
    drop(p.image);
    println!("{}", dir.display());
    Ok(ExitCode::SUCCESS)
}
