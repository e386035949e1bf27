//! `imgctl diff MOUNT`: what a mounted container view changed, like `docker diff`.
use std::io::Write;
use std::process::ExitCode;

use super::Globals;
use crate::image;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  imgctl diff /var/lib/imgctl/snapshots/active/mount-9eaeeb103567/merged\n  imgctl diff mount-9eaeeb103567"
)]
pub struct Args {
    /// A merged path printed by `imgctl mount` (or its snapshot key).
    pub target: String,
}

pub fn run(g: &Globals, a: Args) -> anyhow::Result<ExitCode> {
    let key = image::view_key(&g.root, &a.target)?;
    let changes = image::changes(&g.root, &key)?;
    let mut out = std::io::stdout().lock();
    for c in changes {
        writeln!(out, "{} {}", c.kind.letter(), c.path)?;
    }
    Ok(ExitCode::SUCCESS)
}
