//! `imgctl create`: Docker's create. The container is made as `run -d` makes it
//! (the image pulled per `--pull`, its view, runtime spec, state and name) but
//! not started; `imgctl start` runs it, `ps -a` lists it as Created, `rm`
//! removes it.

use std::path::PathBuf;
use std::process::ExitCode;

use super::run::{self, ContainerArgs, DetachArgs};
use super::Globals;
use crate::container;

#[derive(clap::Args, Debug)]
#[command(
    override_usage = "imgctl create [OPTIONS] IMAGE [COMMAND] [ARG...]",
    after_help = "Examples:\n  imgctl create --name web -p 8080:80 nginx\n  imgctl start web\n  \
id=$(imgctl create --rm busybox echo hello) && imgctl start -a \"$id\""
)]
pub struct Args {
    /// Remove the container when it exits after `start`.
    #[arg(long)]
    pub rm: bool,
    #[command(flatten)]
    pub d: DetachArgs,
    /// A name for the container.
    #[arg(long)]
    pub name: Option<String>,
    /// Where cgroupfs is mounted; v1 or v2 is detected there.
    #[arg(long, value_name = "DIR", default_value = "/sys/fs/cgroup")]
    pub cgroup_root: PathBuf,
    #[command(flatten)]
    pub c: ContainerArgs,
    /// IMAGE [COMMAND [ARG...]] (with --rootfs: COMMAND [ARG...]). Options go
    /// before IMAGE; everything after it is the command, options included.
    #[arg(trailing_var_arg = true, value_name = "ARG")]
    pub args: Vec<String>,
}

pub fn run(g: &Globals, a: Args) -> anyhow::Result<ExitCode> {
    if let Some(n) = &a.name {
        container::state::check_name(n)?;
    }
    if a.c.rootfs.is_none() && a.args.is_empty() {
        anyhow::bail!(
            "no image given: imgctl create [OPTIONS] IMAGE [COMMAND...] (or --rootfs DIR)"
        );
    }
    let (image, cmd) = run::image_and_command(&a.c, a.args.clone());
    let id = container::new_id();
    let flags = run::run_flags(&a.c, &id, cmd)?;
    run::check_detach_flags(&a.d)?;
    let rootfs = run::rootfs_source(g, image.as_deref(), &a.c)?;
    let x = run::Detach {
        rm: a.rm,
        name: a.name.clone(),
        cgroup_root: a.cgroup_root.clone(),
        d: &a.d,
        c: &a.c,
    };
    let req = run::detach_request(g, x, flags, rootfs, image)?;
    run::print_id(container::control::create(req))
}
