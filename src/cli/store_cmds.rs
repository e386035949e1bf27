//! `imgctl` verbs: store_cmds (owner fills in).
use std::process::ExitCode;
use super::Globals;

#[derive(clap::Args, Debug)]
pub struct DfArgs {
    /// Arguments.
    pub args: Vec<String>,
}

pub fn df(_g: &Globals, _a: DfArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("df: not built yet")
}

#[derive(clap::Args, Debug)]
pub struct PruneArgs {
    /// Arguments.
    pub args: Vec<String>,
}

pub fn prune(_g: &Globals, _a: PruneArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("prune: not built yet")
}
