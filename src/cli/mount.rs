//! `imgctl` verbs: mount (owner fills in).
use super::Globals;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct MountArgs {
    /// Arguments.
    pub args: Vec<String>,
}

pub fn mount(_g: &Globals, _a: MountArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("mount: not built yet")
}

#[derive(clap::Args, Debug)]
pub struct UmountArgs {
    /// Arguments.
    pub args: Vec<String>,
}

pub fn umount(_g: &Globals, _a: UmountArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("umount: not built yet")
}
