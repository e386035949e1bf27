//! Docker's management-command spellings, for muscle memory: `image ls|rm|prune`,
//! `container ls|rm|prune`, `system df|prune`. Each maps onto the plain command.

use std::process::ExitCode;

use clap::Subcommand;

use super::{ctl, images, ps, store_cmds, Globals};

#[derive(Subcommand, Debug)]
pub enum ImageCmd {
    /// List images (= `imgctl images`).
    #[command(alias = "list")]
    Ls(images::ImagesArgs),
    /// Remove images (= `imgctl rmi`).
    #[command(alias = "remove", alias = "rmi")]
    Rm(images::RmiArgs),
    /// Remove unused data; with -a also images no container uses (= `imgctl prune`).
    Prune(store_cmds::PruneArgs),
}

#[derive(Subcommand, Debug)]
pub enum ContainerCmd {
    /// List containers (= `imgctl ps`).
    #[command(alias = "list", alias = "ps")]
    Ls(ps::Args),
    /// Remove containers (= `imgctl rm`).
    #[command(alias = "remove")]
    Rm(ctl::RmArgs),
    /// Remove all stopped containers (state, view and name).
    Prune(ContainerPruneArgs),
}

#[derive(clap::Args, Debug)]
pub struct ContainerPruneArgs {
    /// Do not ask for confirmation (asked only on a terminal).
    #[arg(short, long)]
    pub force: bool,
    /// List what would be removed and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Subcommand, Debug)]
pub enum SystemCmd {
    /// Show disk usage (= `imgctl df`).
    Df(store_cmds::DfArgs),
    /// Remove stopped containers, then everything `imgctl prune` removes.
    Prune(store_cmds::PruneArgs),
}

pub fn image(g: &Globals, c: ImageCmd) -> anyhow::Result<ExitCode> {
    match c {
        ImageCmd::Ls(a) => images::images(g, a),
        ImageCmd::Rm(a) => images::rmi(g, a),
        ImageCmd::Prune(a) => store_cmds::prune(g, a),
    }
}

pub fn container(g: &Globals, c: ContainerCmd) -> anyhow::Result<ExitCode> {
    match c {
        ContainerCmd::Ls(a) => ps::run(g, a),
        ContainerCmd::Rm(a) => ctl::rm(g, a),
        ContainerCmd::Prune(a) => store_cmds::prune(
            g,
            store_cmds::PruneArgs {
                force: a.force,
                dry_run: a.dry_run,
                containers_only: true,
                ..Default::default()
            },
        ),
    }
}

pub fn system(g: &Globals, c: SystemCmd) -> anyhow::Result<ExitCode> {
    match c {
        SystemCmd::Df(a) => store_cmds::df(g, a),
        SystemCmd::Prune(mut a) => {
            a.containers = true;
            store_cmds::prune(g, a)
        }
    }
}
