//! `imgctl runtime`: the OCI runtime command line (runtime-spec runtime.md),
//! with runc's verbs and flags, so tools that drive runc or crun can drive
//! imgctl's sandbox: `create`, `start`, `state`, `kill`, `delete`, `list`.
//!
//! It has its own `--root` (container state, default `/run/imgctl-runtime`),
//! unrelated to the store's: `main` hands it every argument after `runtime`
//! before the store-level parser sees them.

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::container::runtime::{self, CreateRequest, Runtime};

/// `imgctl runtime ...` as listed by `imgctl --help`; the arguments are parsed
/// by [`RuntimeCli`].
#[derive(clap::Args, Debug)]
#[command(disable_help_flag = true)]
pub struct Passthrough {
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ARGS"
    )]
    pub args: Vec<OsString>,
}

#[derive(Parser, Debug)]
#[command(
    name = "imgctl runtime",
    about = "OCI runtime command line (like runc): create, start, state, kill, delete \
containers from OCI bundles.",
    long_about = None,
    after_help = "Examples:\n  imgctl bundle busybox ./bb sleep 60\n  imgctl runtime create -b ./bb bb1\n  imgctl runtime --root /run/mine list"
)]
pub struct RuntimeCli {
    /// Directory for container state.
    #[arg(long, default_value = runtime::DEFAULT_ROOT)]
    pub root: PathBuf,
    /// Accepted for runc compatibility; diagnostics go to stderr.
    #[arg(long, hide = true)]
    pub log: Option<PathBuf>,
    /// Accepted for runc compatibility.
    #[arg(long, hide = true)]
    pub log_format: Option<String>,
    /// Accepted for runc compatibility.
    #[arg(long, hide = true)]
    pub debug: bool,
    /// Not supported: this runtime manages cgroupfs directly.
    #[arg(long, hide = true)]
    pub systemd_cgroup: bool,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Create a container from a bundle; it waits for `start`.
    #[command(
        after_help = "Examples:\n  imgctl runtime create -b ./bb bb1\n  imgctl runtime create --bundle ./bb --pid-file bb1.pid bb1"
    )]
    Create {
        /// The bundle directory (config.json and the root filesystem).
        #[arg(long, short = 'b', default_value = ".")]
        bundle: PathBuf,
        /// Write the container's pid to this file.
        #[arg(long)]
        pid_file: Option<PathBuf>,
        /// With process.terminal: send the pty master to this unix socket.
        #[arg(long)]
        console_socket: Option<PathBuf>,
        id: String,
    },
    /// Run the command of a created container.
    #[command(
        after_help = "Examples:\n  imgctl runtime start bb1\n  imgctl runtime --root /run/mine start bb1"
    )]
    Start { id: String },
    /// Print the container's state (runtime-spec JSON).
    #[command(
        after_help = "Examples:\n  imgctl runtime state bb1\n  imgctl runtime state bb1 | jq -r .status"
    )]
    State { id: String },
    /// Send a signal (name or number, default TERM) to the container.
    #[command(
        after_help = "Examples:\n  imgctl runtime kill bb1\n  imgctl runtime kill bb1 KILL\n  imgctl runtime kill --all bb1 9"
    )]
    Kill {
        /// Signal every process in the container's cgroup.
        #[arg(long, short = 'a')]
        all: bool,
        id: String,
        signal: Option<String>,
    },
    /// Delete a created or stopped container (running: with --force).
    #[command(
        after_help = "Examples:\n  imgctl runtime delete bb1\n  imgctl runtime delete --force bb1"
    )]
    Delete {
        /// Kill a running container first.
        #[arg(long, short = 'f')]
        force: bool,
        id: String,
    },
    /// List containers.
    #[command(
        after_help = "Examples:\n  imgctl runtime list\n  imgctl runtime list -q\n  imgctl runtime list --format json"
    )]
    List {
        /// Only IDs.
        #[arg(long, short = 'q')]
        quiet: bool,
        /// table or json.
        #[arg(long, short = 'f', default_value = "table")]
        format: String,
    },
}

/// Entry from `main` when the first argument is `runtime`: parse `args` (the
/// ones after it) and run.
pub fn main(args: Vec<OsString>) -> ExitCode {
    let argv = std::iter::once(OsString::from("imgctl runtime")).chain(args);
    let cli = match RuntimeCli::try_parse_from(argv) {
        Ok(c) => c,
        Err(e) => {
            let code = match e.kind() {
                clap::error::ErrorKind::DisplayHelp
                | clap::error::ErrorKind::DisplayVersion
                | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => 0,
                _ => 125,
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // A closed stdout (`imgctl runtime list | head -1`) ends quietly.
        Err(runtime::RuntimeError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::BrokenPipe =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("imgctl runtime: {}", e.to_string().replace('\n', " "));
            ExitCode::from(e.exit_code())
        }
    }
}

fn out_err(e: std::io::Error) -> runtime::RuntimeError {
    runtime::RuntimeError::Io {
        path: PathBuf::from("<stdout>"),
        source: e,
    }
}

fn run(cli: RuntimeCli) -> Result<(), runtime::RuntimeError> {
    if cli.systemd_cgroup {
        return Err(runtime::RuntimeError::Bundle {
            path: PathBuf::from("--systemd-cgroup"),
            reason: "not supported: imgctl manages cgroupfs directly".into(),
        });
    }
    let rt = Runtime::new(cli.root);
    let mut out = std::io::stdout().lock();
    match cli.cmd {
        Cmd::Create {
            bundle,
            pid_file,
            console_socket,
            id,
        } => {
            rt.create(&CreateRequest {
                id,
                bundle,
                pid_file,
                console_socket,
            })?;
        }
        Cmd::Start { id } => rt.start(&id)?,
        Cmd::State { id } => {
            let s = rt.state(&id)?;
            let text = serde_json::to_string_pretty(&s).unwrap_or_default();
            writeln!(out, "{text}").map_err(out_err)?;
        }
        Cmd::Kill { all, id, signal } => {
            let sig = runtime::parse_signal(signal.as_deref().unwrap_or("TERM"))?;
            rt.kill(&id, sig, all)?;
        }
        Cmd::Delete { force, id } => rt.delete(&id, force)?,
        Cmd::List { quiet, format } => {
            let list = rt.list()?;
            if quiet {
                for s in &list {
                    writeln!(out, "{}", s.id).map_err(out_err)?;
                }
            } else if format == "json" {
                let text = serde_json::to_string(&list).unwrap_or_default();
                writeln!(out, "{text}").map_err(out_err)?;
            } else {
                writeln!(
                    out,
                    "{:<24} {:<8} {:<9} {:<40} CREATED",
                    "ID", "PID", "STATUS", "BUNDLE"
                )
                .map_err(out_err)?;
                for s in &list {
                    writeln!(
                        out,
                        "{:<24} {:<8} {:<9} {:<40} {}",
                        s.id,
                        s.pid.unwrap_or(0),
                        s.status,
                        s.bundle.display(),
                        s.created
                    )
                    .map_err(out_err)?;
                }
            }
        }
    }
    Ok(())
}
