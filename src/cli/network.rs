//! `imgctl network create|ls|rm|inspect`: bridge networks of the store
//! (docs/network.md). Arguments -> one `container::net` call -> render.

use std::io::Write;
use std::process::ExitCode;

use super::Globals;
use crate::container::net;

#[derive(clap::Subcommand, Debug)]
#[command(
    after_help = "Examples:\n  imgctl network create --subnet 10.89.7.0/24 backend\n  imgctl network ls\n  imgctl run --rm --network backend busybox ip addr"
)]
pub enum Cmd {
    /// Create a bridge network (its bridge device is made at once).
    #[command(
        after_help = "Examples:\n  imgctl network create backend\n  imgctl network create --subnet 10.89.7.0/24 backend"
    )]
    Create(CreateArgs),
    /// List networks (bridge, host, none and the user-defined ones).
    #[command(
        visible_alias = "list",
        after_help = "Examples:\n  imgctl network ls\n  imgctl network ls -q"
    )]
    Ls(LsArgs),
    /// Remove networks (refused while a container is attached).
    #[command(
        visible_alias = "remove",
        after_help = "Examples:\n  imgctl network rm backend\n  imgctl network rm backend frontend"
    )]
    Rm(RmArgs),
    /// Show networks as JSON (schemas/network-inspect.schema.json).
    #[command(
        after_help = "Examples:\n  imgctl network inspect bridge\n  imgctl network inspect backend frontend"
    )]
    Inspect(InspectArgs),
}

#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    /// IPv4 subnet, e.g. 10.89.7.0/24 (default: the first free 10.89.N.0/24).
    #[arg(long, value_name = "CIDR")]
    pub subnet: Option<String>,
    /// Driver (only bridge).
    #[arg(short = 'd', long, default_value = "bridge", value_parser = ["bridge"])]
    pub driver: String,
    pub name: String,
}

#[derive(clap::Args, Debug)]
pub struct LsArgs {
    /// Only names.
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

#[derive(clap::Args, Debug)]
pub struct RmArgs {
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    #[arg(required = true)]
    pub names: Vec<String>,
}

pub fn run(g: &Globals, c: Cmd) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    match c {
        Cmd::Create(a) => {
            let n = net::create_network(&g.root, &a.name, a.subnet.as_deref())?;
            writeln!(out, "{}", n.id)?;
        }
        Cmd::Ls(a) => {
            let nets = net::list_networks(&g.root)?;
            if a.quiet {
                for n in &nets {
                    writeln!(out, "{}", n.name)?;
                }
                writeln!(out, "host\nnone")?;
            } else {
                writeln!(
                    out,
                    "{:<14}{:<20}{:<10}{:<18}BRIDGE",
                    "NETWORK ID", "NAME", "DRIVER", "SUBNET"
                )?;
                for n in &nets {
                    writeln!(
                        out,
                        "{:<14}{:<20}{:<10}{:<18}{}",
                        &n.id[..12.min(n.id.len())],
                        n.name,
                        n.driver,
                        n.subnet.to_string(),
                        n.bridge
                    )?;
                }
                writeln!(out, "{:<14}{:<20}{:<10}{:<18}-", "-", "host", "host", "-")?;
                writeln!(out, "{:<14}{:<20}{:<10}{:<18}-", "-", "none", "null", "-")?;
            }
        }
        Cmd::Rm(a) => {
            let mut failed = None;
            for n in &a.names {
                match net::remove_network(&g.root, n) {
                    Ok(()) => writeln!(out, "{n}")?,
                    Err(e) => {
                        eprintln!("imgctl: network rm {n}: {e}");
                        failed = Some(e);
                    }
                }
            }
            if failed.is_some() {
                return Ok(ExitCode::from(125));
            }
        }
        Cmd::Inspect(a) => {
            let mut all = Vec::new();
            for n in &a.names {
                all.push(net::inspect_network(&g.root, n)?);
            }
            serde_json::to_writer_pretty(&mut out, &all)?;
            writeln!(out)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
