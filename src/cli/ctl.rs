//! Commands on existing containers: `logs`, `stop`, `kill`, `rm`, `start`,
//! `restart`, `wait`, `exec`, `attach`. Each looks the container up (name, ID
//! or unique ID prefix) and makes one call into `container`.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use super::{Exit, Globals};
use crate::container::{self, control, logs};

fn id_of(g: &Globals, r: &str) -> anyhow::Result<String> {
    Ok(control::lookup(&g.root, r)?)
}

/// Run `f` for each container; print what Docker prints (the argument) on
/// success, report each failure on its own line, exit 1 if any failed.
fn each(
    g: &Globals,
    refs: &[String],
    mut f: impl FnMut(&str) -> Result<(), container::Error>,
) -> anyhow::Result<ExitCode> {
    let mut failed = false;
    let mut out = std::io::stdout().lock();
    for r in refs {
        let res = id_of(g, r).and_then(|id| f(&id).map_err(anyhow::Error::from));
        match res {
            Ok(()) => writeln!(out, "{r}")?,
            Err(e) => {
                eprintln!("imgctl: {e:#}");
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  imgctl logs web\n  imgctl logs -f --tail 20 web\n  imgctl logs --since 10m -t web"
)]
pub struct LogsArgs {
    /// Follow the output while the container runs.
    #[arg(short, long)]
    pub follow: bool,
    /// Only entries since (RFC 3339, Unix seconds, or a duration such as 10m).
    #[arg(long)]
    pub since: Option<String>,
    /// Only entries before (same forms as --since).
    #[arg(long)]
    pub until: Option<String>,
    /// Only the last N lines ("all" for every line).
    #[arg(short = 'n', long, default_value = "all")]
    pub tail: String,
    /// Prefix each line with its time.
    #[arg(short, long)]
    pub timestamps: bool,
    pub container: String,
}

pub fn logs(g: &Globals, a: LogsArgs) -> anyhow::Result<ExitCode> {
    let id = id_of(g, &a.container)?;
    let now = logs::now_nanos();
    let tail =
        match a.tail.as_str() {
            "all" | "-1" => None,
            n => Some(n.parse::<usize>().map_err(|_| {
                anyhow::anyhow!("invalid --tail {n:?}: expected a number or \"all\"")
            })?),
        };
    let opts = logs::ReadOptions {
        since: a
            .since
            .as_deref()
            .map(|s| logs::parse_time_arg("--since", s, now))
            .transpose()?,
        until: a
            .until
            .as_deref()
            .map(|s| logs::parse_time_arg("--until", s, now))
            .transpose()?,
        tail,
        timestamps: a.timestamps,
        follow: a.follow,
    };
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    control::logs(&g.root, &id, &opts, &mut out, &mut err)?;
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  imgctl stop web\n  imgctl stop -t 30 web db")]
pub struct StopArgs {
    /// Seconds to wait after the stop signal before SIGKILL (default: the container's, 10).
    #[arg(short = 't', long = "time", alias = "timeout")]
    pub time: Option<u64>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub fn stop(g: &Globals, a: StopArgs) -> anyhow::Result<ExitCode> {
    each(g, &a.containers, |id| control::stop(&g.root, id, a.time))
}

pub fn restart(g: &Globals, a: StopArgs) -> anyhow::Result<ExitCode> {
    each(g, &a.containers, |id| control::restart(&g.root, id, a.time))
}

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  imgctl kill web\n  imgctl kill -s HUP web")]
pub struct KillArgs {
    /// Signal to send (name or number).
    #[arg(short, long, default_value = "KILL")]
    pub signal: String,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub fn kill(g: &Globals, a: KillArgs) -> anyhow::Result<ExitCode> {
    let sig = control::parse_signal(&a.signal)?;
    each(g, &a.containers, |id| control::kill(&g.root, id, sig))
}

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  imgctl rm web\n  imgctl rm -f web db")]
pub struct RmArgs {
    /// Kill and remove a running container.
    #[arg(short, long)]
    pub force: bool,
    /// Remove anonymous volumes too (imgctl makes none: accepted for Docker's sake).
    #[arg(short, long)]
    pub volumes: bool,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub fn rm(g: &Globals, a: RmArgs) -> anyhow::Result<ExitCode> {
    each(g, &a.containers, |id| control::remove(&g.root, id, a.force))
}

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  imgctl start web\n  imgctl start -a job\n  imgctl start -ai shell"
)]
pub struct StartArgs {
    /// Attach to the container's output and wait for it.
    #[arg(short, long)]
    pub attach: bool,
    /// Attach the container's stdin too (a container made with `create -i`);
    /// implies --attach.
    #[arg(short, long)]
    pub interactive: bool,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub fn start(g: &Globals, a: StartArgs) -> anyhow::Result<ExitCode> {
    if a.attach || a.interactive {
        let [one] = a.containers.as_slice() else {
            anyhow::bail!("start -a takes one container");
        };
        let id = id_of(g, one)?;
        let mut out = std::io::stdout().lock();
        let mut err = std::io::stderr().lock();
        let code = control::start_attached(&g.root, &id, a.interactive, &mut out, &mut err)?;
        return Ok(ExitCode::from(code.clamp(0, 255) as u8));
    }
    each(g, &a.containers, |id| control::start(&g.root, id))
}

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  imgctl wait job\n  imgctl wait job1 job2")]
pub struct WaitArgs {
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub fn wait(g: &Globals, a: WaitArgs) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    for r in &a.containers {
        let id = id_of(g, r)?;
        let code = control::wait(&g.root, &id)?;
        writeln!(out, "{code}")?;
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  imgctl attach web\n  imgctl attach --no-stdin web")]
pub struct AttachArgs {
    /// Do not pass stdin to the container.
    #[arg(long)]
    pub no_stdin: bool,
    pub container: String,
}

fn attach_to(g: &Globals, id: &str, stdin: bool) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    let code = control::attach(&g.root, id, &mut out, &mut err, stdin)?;
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}

pub fn attach(g: &Globals, a: AttachArgs) -> anyhow::Result<ExitCode> {
    let id = id_of(g, &a.container)?;
    attach_to(g, &id, !a.no_stdin)
}

#[derive(clap::Args, Debug)]
#[command(
    override_usage = "imgctl exec [OPTIONS] CONTAINER COMMAND [ARG...]",
    after_help = "Examples:\n  imgctl exec web ls /\n  imgctl exec -it web sh\n  imgctl exec -u nobody -e MODE=debug web env"
)]
pub struct ExecArgs {
    /// Pass stdin to the command.
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a pseudo-terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// Run in the background.
    #[arg(short, long)]
    pub detach: bool,
    /// User and group (name|uid[:group|gid]) inside the container.
    #[arg(short, long)]
    pub user: Option<String>,
    /// Working directory inside the container.
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// Set an environment variable (KEY=VALUE, or KEY for the host's value).
    #[arg(short, long = "env")]
    pub env: Vec<String>,
    /// Every capability for the command.
    #[arg(long)]
    pub privileged: bool,
    /// CONTAINER COMMAND [ARG...]
    #[arg(trailing_var_arg = true, required = true, num_args = 2.., value_name = "ARG")]
    pub args: Vec<String>,
}

pub fn exec(g: &Globals, a: ExecArgs) -> anyhow::Result<ExitCode> {
    if a.tty && a.interactive && !std::io::stdin().is_terminal() {
        return Err(Exit {
            code: 1,
            message: Some("the input device is not a TTY".into()),
        }
        .into());
    }
    let mut it = a.args.into_iter();
    let target = it.next().unwrap_or_default();
    let id = id_of(g, &target)?;
    let opts = container::exec::ExecOptions {
        cmd: it.collect(),
        user: a.user,
        workdir: a.workdir,
        env: a.env,
        privileged: a.privileged,
        interactive: a.interactive,
        tty: a.tty,
        detach: a.detach,
    };
    match container::exec::exec(&g.root, &id, &opts) {
        Ok(o) => Ok(ExitCode::from(o.exit_code())),
        Err(e) => Err(Exit {
            code: e.exit_code(),
            message: Some(e.to_string()),
        }
        .into()),
    }
}
