//! `imgctl diff MOUNT`: what a mounted container view changed, like `docker diff`.
use std::process::ExitCode;

use super::Globals;
use crate::layer;
use crate::snapshot::{Overlay, Snapshotter};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A merged path printed by `imgctl mount` (or its snapshot key).
    pub target: String,
}

pub fn run(g: &Globals, a: Args) -> anyhow::Result<ExitCode> {
    let snaps = Overlay::open(&g.root)?;
    let key = super::mount::key_of(&snaps, &a.target)?;
    let info = snaps
        .stat(&key)?
        .ok_or_else(|| anyhow::anyhow!("snapshot {key} not found"))?;
    let lowers = match &info.parent {
        Some(p) => snaps.lowers(p)?,
        None => Vec::new(),
    };
    let changes = layer::changes(&snaps.upper_dir(&key), &lowers)?;
    let mut out = std::io::stdout().lock();
    for c in changes {
        use std::io::Write;
        writeln!(out, "{} {}", c.kind.letter(), c.path)?;
    }
    Ok(ExitCode::SUCCESS)
}
