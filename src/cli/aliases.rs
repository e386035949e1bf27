//! Docker's management-command spellings, for muscle memory: `image ls|rm|prune`,
//! `container ls|rm|prune`, `system df|prune`. Each maps onto the plain command.

use std::process::ExitCode;

use clap::Subcommand;

use super::{ctl, images, ps, store_cmds, Globals};

#[derive(Subcommand, Debug)]
#[command(
    after_help = "Examples:\n  imgctl image ls\n  imgctl image rm busybox\n  imgctl image prune -a"
)]
pub enum ImageCmd {
    /// List images (= `imgctl images`).
    #[command(
        alias = "list",
        after_help = "Examples:\n  imgctl image ls\n  imgctl image ls busybox -q"
    )]
    Ls(images::ImagesArgs),
    /// Remove images (= `imgctl rmi`).
    #[command(
        alias = "remove",
        alias = "rmi",
        after_help = "Examples:\n  imgctl image rm busybox\n  imgctl image rm -f 3f57d9401f8d"
    )]
    Rm(images::RmiArgs),
    /// Remove unused data; with -a also images no container uses (= `imgctl prune`).
    #[command(after_help = "Examples:\n  imgctl image prune\n  imgctl image prune -a -f")]
    Prune(store_cmds::PruneArgs),
}

#[derive(Subcommand, Debug)]
#[command(
    after_help = "Examples:\n  imgctl container ls -a\n  imgctl container rm web\n  imgctl container prune -f"
)]
pub enum ContainerCmd {
    /// List containers (= `imgctl ps`).
    #[command(
        alias = "list",
        alias = "ps",
        after_help = "Examples:\n  imgctl container ls\n  imgctl container ls -a -q"
    )]
    Ls(ps::Args),
    /// Remove containers (= `imgctl rm`).
    #[command(
        alias = "remove",
        after_help = "Examples:\n  imgctl container rm web\n  imgctl container rm -f web db"
    )]
    Rm(ctl::RmArgs),
    /// Remove all stopped containers (state, view and name).
    Prune(ContainerPruneArgs),
}

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  imgctl container prune\n  imgctl container prune -f --dry-run"
)]
pub struct ContainerPruneArgs {
    /// Do not ask for confirmation (asked only on a terminal).
    #[arg(short, long)]
    pub force: bool,
    /// List what would be removed and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Subcommand, Debug)]
#[command(after_help = "Examples:\n  imgctl system df\n  imgctl system prune -f")]
pub enum SystemCmd {
    /// Show disk usage (= `imgctl df`).
    #[command(after_help = "Examples:\n  imgctl system df\n  imgctl system df --format json")]
    Df(store_cmds::DfArgs),
    /// Remove stopped containers, then everything `imgctl prune` removes.
    #[command(after_help = "Examples:\n  imgctl system prune\n  imgctl system prune -a -f")]
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
