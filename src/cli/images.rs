//! `imgctl` verbs: images (owner fills in).
use std::process::ExitCode;
use super::Globals;

#[derive(clap::Args, Debug)]
pub struct ImagesArgs {
    /// Arguments.
    pub args: Vec<String>,
}

pub fn images(_g: &Globals, _a: ImagesArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("images: not built yet")
}

#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// Arguments.
    pub args: Vec<String>,
}

pub fn inspect(_g: &Globals, _a: InspectArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("inspect: not built yet")
}

#[derive(clap::Args, Debug)]
pub struct HistoryArgs {
    /// Arguments.
    pub args: Vec<String>,
}

pub fn history(_g: &Globals, _a: HistoryArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("history: not built yet")
}

#[derive(clap::Args, Debug)]
pub struct TagArgs {
    /// Arguments.
    pub args: Vec<String>,
}

pub fn tag(_g: &Globals, _a: TagArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("tag: not built yet")
}

#[derive(clap::Args, Debug)]
pub struct RmiArgs {
    /// Arguments.
    pub args: Vec<String>,
}

pub fn rmi(_g: &Globals, _a: RmiArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("rmi: not built yet")
}
