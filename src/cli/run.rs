//! `imgctl` verbs: run (owner fills in).
use std::process::ExitCode;
use super::Globals;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Arguments.
    pub args: Vec<String>,
}

pub fn run(_g: &Globals, _a: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("run: not built yet")
}
