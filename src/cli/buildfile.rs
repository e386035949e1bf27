//! `imgctl buildfile parse|check` (owner fills in).
use std::process::ExitCode;
use super::Globals;

#[derive(clap::Subcommand, Debug)]
pub enum Cmd {
    /// Parse a Buildfile and print its syntax tree.
    Parse {
        /// Arguments.
        args: Vec<String>,
    },
}

pub fn run(_g: &Globals, _c: Cmd) -> anyhow::Result<ExitCode> {
    anyhow::bail!("buildfile: not built yet")
}
