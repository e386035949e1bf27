//! Command-line interface: clap commands (one file per verb), output formats and
//! exit codes. `main.rs` calls only [`main`].
//!
//! Exit codes follow Docker: 125 when imgctl itself fails, 126 when the container
//! command cannot be executed, 127 when it is not found, otherwise the container's
//! own exit status.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod aliases;
mod archive;
mod build;
mod buildfile;
mod bundle;
mod check;
mod create;
mod ctl;
mod diff;
mod export;
mod help;
mod images;
mod login;
mod missing;
mod mount;
mod network;
mod ps;
mod pull;
mod push;
mod rootless;
mod run;
mod runtime;
mod size;
mod stats;
mod store_cmds;
pub mod template;
mod units;

/// Default store root for root; other users default to `$XDG_DATA_HOME/imgctl`
/// (see `rootless`).
pub const DEFAULT_ROOT: &str = "/var/lib/imgctl";

#[derive(Parser, Debug)]
#[command(
    name = "imgctl",
    version,
    about = "Daemonless container image builder, store and runner: build images from \
Buildfiles (Dockerfile syntax), pull images from registries into a local OCI store, report \
their sizes, mount or export them, and run commands in containers (namespaces, cgroups \
v1/v2, seccomp) or write OCI bundles for crun/runc.",
    long_about = None,
    propagate_version = true,
    after_help = "Examples:\n  imgctl run --rm -it busybox sh\n  imgctl build -t app:1 .\n  imgctl size app:1"
)]
pub struct Cli {
    /// Store root directory.
    #[arg(long, global = true, env = "IMGCTL_ROOT", default_value_os_t = rootless::default_root(), help_heading = help::GLOBAL_HEADING)]
    pub root: PathBuf,

    /// Log level for diagnostics on stderr (error, warn, info, debug, trace).
    #[arg(long, global = true, env = "IMGCTL_LOG", default_value = "warn", help_heading = help::GLOBAL_HEADING)]
    pub log_level: String,

    /// How pull, run, build and mount unpack new layers: `erofs` (an image per
    /// layer) or `files`. Default: the store's (ROOT/snapshots/config.json), else
    /// erofs where the kernel mounts EROFS files.
    #[arg(
        long,
        global = true,
        env = "IMGCTL_SNAPSHOTTER",
        help_heading = help::GLOBAL_HEADING,
        value_name = "files|erofs"
    )]
    pub snapshotter: Option<crate::image::LayerFormat>,

    #[command(subcommand)]
    pub command: Command,
}

/// Options every command sees, built once from the command line.
#[derive(Debug, Clone)]
pub struct Globals {
    pub root: PathBuf,
}

/// Parsed once per process, so the size difference of the variants does not matter.
#[derive(Subcommand, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Pull an image from a registry into the store.
    Pull(pull::Args),
    /// Push an image from the store to a registry.
    Push(push::Args),
    /// Log in to a registry (writes ~/.docker/config.json).
    Login(login::LoginArgs),
    /// Log out of a registry.
    Logout(login::LogoutArgs),
    /// List images in the store.
    Images(images::ImagesArgs),
    /// Show an image's configuration and layers as JSON.
    Inspect(images::InspectArgs),
    /// Show the history of an image.
    History(images::HistoryArgs),
    /// Give an image another name.
    Tag(images::TagArgs),
    /// Remove one or more image names.
    Rmi(images::RmiArgs),
    /// Show disk usage of the store.
    Df(store_cmds::DfArgs),
    /// Remove what nothing uses: blobs, unpacked layers, chains, dedup-pool files, stale snapshots.
    Prune(store_cmds::PruneArgs),
    /// Mount an image's filesystem and print the merged path.
    Mount(mount::MountArgs),
    /// Unmount a path mounted by `imgctl mount`.
    Umount(mount::UmountArgs),
    /// Write an image's flattened filesystem as a tar archive.
    Export(export::Args),
    /// List changed files of a container or mount (A/C/D).
    Diff(diff::Args),
    /// Run a command in a new container.
    Run(run::Args),
    /// Create a container without starting it (`imgctl start` runs it); print its ID.
    Create(create::Args),
    /// Write an OCI runtime bundle (config.json + rootfs) for an image.
    Bundle(bundle::Args),
    /// Build an image from a Buildfile (Dockerfile syntax).
    Build(build::Args),
    /// Parse and lint Buildfiles (Dockerfile syntax).
    #[command(subcommand)]
    Buildfile(buildfile::Cmd),
    /// Report an image's size: layers, wasted bytes, dive efficiency, CI rules.
    Size(size::Args),
    /// Manage bridge networks: create, ls, rm, inspect.
    #[command(subcommand)]
    Network(network::Cmd),
    /// OCI runtime command line, like runc: create, start, state, kill, delete
    /// containers from bundles (`imgctl runtime --help`; own `--root`).
    Runtime(runtime::Passthrough),
    /// Save images to a tar archive (docker-archive or oci-archive).
    Save(archive::SaveArgs),
    /// Load images from a tar archive (docker-archive or oci-archive, maybe compressed).
    Load(archive::LoadArgs),
    /// Make a one-layer image from a root filesystem tar or directory.
    Import(archive::ImportArgs),
    /// Verify blobs and unpacked layers against their digests; --repair re-creates bad ones.
    Check(check::Args),
    /// Manage images (`image ls|rm|prune`).
    #[command(subcommand)]
    Image(aliases::ImageCmd),
    /// Manage containers (`container ls|rm|prune`).
    #[command(subcommand)]
    Container(aliases::ContainerCmd),
    /// Store-wide commands (`system df|prune`).
    #[command(subcommand)]
    System(aliases::SystemCmd),
    /// Show what running containers use: CPU, memory, net and block I/O, PIDs.
    Stats(stats::Args),
    /// List containers.
    Ps(ps::Args),
    /// Show a container's output (run -d).
    Logs(ctl::LogsArgs),
    /// Stop containers: the stop signal, then SIGKILL after a timeout.
    Stop(ctl::StopArgs),
    /// Send a signal to containers (default SIGKILL).
    Kill(ctl::KillArgs),
    /// Remove containers.
    Rm(ctl::RmArgs),
    /// Start stopped containers (run -d ones) again.
    Start(ctl::StartArgs),
    /// Stop then start containers.
    #[command(after_help = "Examples:\n  imgctl restart web\n  imgctl restart -t 5 web db")]
    Restart(ctl::StopArgs),
    /// Wait for containers to stop; print their exit codes.
    Wait(ctl::WaitArgs),
    /// Run a command in a running container.
    Exec(ctl::ExecArgs),
    /// Attach to a running container's output (and input with run -i).
    Attach(ctl::AttachArgs),
}

/// An error that carries the exit code imgctl should end with.
#[derive(Debug)]
pub struct Exit {
    pub code: u8,
    pub message: Option<String>,
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.message {
            Some(m) => f.write_str(m),
            None => write!(f, "exit status {}", self.code),
        }
    }
}

impl std::error::Error for Exit {}

/// Parse the command line, run the command and map its result to an exit code.
pub fn main() -> ExitCode {
    // `imgctl run --init` re-executes a sealed copy of this binary as the
    // container's PID 1; that copy never returns from here.
    crate::container::init_entry();
    // The OCI runtime command line has runc's flags (its own `--root`): it
    // parses everything after `runtime` itself.
    let mut argv = std::env::args_os();
    if argv.nth(1).is_some_and(|a| a == "runtime") {
        return runtime::main(argv.collect());
    }
    // Global options are listed once, in `imgctl --help` (see help.rs).
    let parsed = help::command()
        .try_get_matches()
        .and_then(|m| <Cli as clap::FromArgMatches>::from_arg_matches(&m));
    let cli = match parsed {
        Ok(c) => c,
        Err(e) => {
            // A Docker command imgctl lacks (or a typo): one line, not the usage.
            if let Some(line) = missing::for_error(&e) {
                eprintln!("imgctl: {line}");
                return ExitCode::from(125);
            }
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
    if let Some(line) = rootless::refusal(&cli.command) {
        eprintln!("{line}");
        return ExitCode::from(125);
    }
    init_logging(&cli.log_level);
    if let Some(s) = cli.snapshotter {
        crate::image::set_process_snapshotter(s);
    }
    let globals = Globals {
        root: cli.root.clone(),
    };
    // Containers of an imgctl that was killed: clean what they left behind.
    crate::container::reap_stale(&globals.root);
    match dispatch(&globals, cli.command) {
        Ok(code) => code,
        Err(err) => report(err),
    }
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour_on_stderr())
        .without_time()
        .try_init();
}

/// Colour codes on standard error only for a terminal, unless NO_COLOR is set (any
/// value but empty) or CLICOLOR=0; CLICOLOR_FORCE (not 0) forces them.
fn colour_on_stderr() -> bool {
    use std::io::IsTerminal as _;
    colour(|k| std::env::var_os(k), std::io::stderr().is_terminal())
}

fn colour(env: impl Fn(&str) -> Option<std::ffi::OsString>, terminal: bool) -> bool {
    let var = |k: &str| env(k).filter(|v| !v.is_empty());
    if var("CLICOLOR_FORCE").is_some_and(|v| v != "0") {
        return true;
    }
    if var("NO_COLOR").is_some() || var("CLICOLOR").is_some_and(|v| v == "0") {
        return false;
    }
    terminal
}

fn dispatch(g: &Globals, cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Pull(a) => pull::run(g, a),
        Command::Push(a) => push::run(g, a),
        Command::Login(a) => login::login(g, a),
        Command::Logout(a) => login::logout(g, a),
        Command::Images(a) => images::images(g, a),
        Command::Inspect(a) => images::inspect(g, a),
        Command::History(a) => images::history(g, a),
        Command::Tag(a) => images::tag(g, a),
        Command::Rmi(a) => images::rmi(g, a),
        Command::Df(a) => store_cmds::df(g, a),
        Command::Prune(a) => store_cmds::prune(g, a),
        Command::Mount(a) => mount::mount(g, a),
        Command::Umount(a) => mount::umount(g, a),
        Command::Export(a) => export::run(g, a),
        Command::Diff(a) => diff::run(g, a),
        Command::Run(a) => run::run(g, a),
        Command::Create(a) => create::run(g, a),
        Command::Bundle(a) => bundle::run(g, a),
        Command::Build(a) => build::run(g, a),
        Command::Buildfile(c) => buildfile::run(g, c),
        Command::Size(a) => size::run(g, a),
        Command::Network(c) => network::run(g, c),
        Command::Runtime(a) => Ok(runtime::main(a.args)),
        Command::Save(a) => archive::save(g, a),
        Command::Load(a) => archive::load(g, a),
        Command::Import(a) => archive::import(g, a),
        Command::Check(a) => check::run(g, a),
        Command::Image(c) => aliases::image(g, c),
        Command::Container(c) => aliases::container(g, c),
        Command::System(c) => aliases::system(g, c),
        Command::Stats(a) => stats::run(g, a),
        Command::Ps(a) => ps::run(g, a),
        Command::Logs(a) => ctl::logs(g, a),
        Command::Stop(a) => ctl::stop(g, a),
        Command::Kill(a) => ctl::kill(g, a),
        Command::Rm(a) => ctl::rm(g, a),
        Command::Start(a) => ctl::start(g, a),
        Command::Restart(a) => ctl::restart(g, a),
        Command::Wait(a) => ctl::wait(g, a),
        Command::Exec(a) => ctl::exec(g, a),
        Command::Attach(a) => ctl::attach(g, a),
    }
}

/// True when the failure is a write to a closed pipe, wherever it sits in the
/// chain: an `io::Error` itself, or one wrapped by serde_json (whose `source()`
/// skips the io error) or by a library error.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return io.kind() == std::io::ErrorKind::BrokenPipe;
        }
        if let Some(j) = cause.downcast_ref::<serde_json::Error>() {
            return j.io_error_kind() == Some(std::io::ErrorKind::BrokenPipe);
        }
        false
    })
}

/// Print an error chain once, on one line, and pick the exit code.
fn report(err: anyhow::Error) -> ExitCode {
    if let Some(exit) = err.downcast_ref::<Exit>() {
        if let Some(m) = &exit.message {
            eprintln!("imgctl: {m}");
        }
        return ExitCode::from(exit.code);
    }
    // A closed stdout (e.g. `imgctl images | head`) is not an error worth a message.
    if is_broken_pipe(&err) {
        return ExitCode::SUCCESS;
    }
    let mut msg = err.to_string();
    for cause in err.chain().skip(1) {
        let c = cause.to_string();
        if !msg.contains(&c) {
            msg.push_str(": ");
            msg.push_str(&c);
        }
    }
    eprintln!("imgctl: {}", msg.replace('\n', " "));
    ExitCode::from(125)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Options go before the image; everything after it is the command, options
    /// included (Docker's rule), and an unknown option before it is an error.
    #[test]
    fn run_options_stop_at_the_image() {
        let cli = Cli::try_parse_from(["imgctl", "run", "--rm", "img", "ls", "-l", "--rm"])
            .expect("parses");
        let Command::Run(a) = cli.command else {
            panic!("not run");
        };
        assert!(a.rm);
        assert_eq!(a.args, ["img", "ls", "-l", "--rm"]);
        for bad in [
            &["imgctl", "run", "--bogus", "img"][..],
            &["imgctl", "run", "--publish-everything-twice", "img"],
        ] {
            let e = Cli::try_parse_from(bad).expect_err("unknown flag");
            assert_eq!(e.kind(), clap::error::ErrorKind::UnknownArgument, "{bad:?}");
        }
    }

    #[test]
    fn colour_only_on_a_terminal_and_as_no_color_and_clicolor_say() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| std::ffi::OsString::from(v))
            }
        };
        assert!(colour(env(&[]), true));
        assert!(!colour(env(&[]), false));
        assert!(!colour(env(&[("NO_COLOR", "1")]), true));
        assert!(
            colour(env(&[("NO_COLOR", "")]), true),
            "empty NO_COLOR is unset"
        );
        assert!(!colour(env(&[("CLICOLOR", "0")]), true));
        assert!(colour(env(&[("CLICOLOR_FORCE", "1")]), false));
        assert!(colour(
            env(&[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")]),
            false
        ));
        assert!(!colour(env(&[("CLICOLOR_FORCE", "0")]), false));
    }

    #[test]
    fn broken_pipe_is_found_anywhere_in_the_chain() {
        let io = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        assert!(is_broken_pipe(&anyhow::Error::new(io)));
        let io = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        assert!(is_broken_pipe(
            &anyhow::Error::new(io).context("write").context("images")
        ));
        let j = serde_json::Error::io(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        assert!(is_broken_pipe(&anyhow::Error::new(j).context("inspect")));
        let other = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        assert!(!is_broken_pipe(&anyhow::Error::new(other)));
    }
}
