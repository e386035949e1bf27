//! `imgctl run`: run a command in a new container, in the foreground.
//!
//! Flags are parsed here into [`RunFlags`] (what will be done), the image is
//! resolved once by [`crate::image::resolve_image`], and
//! [`crate::container::run_foreground`] prepares, runs and records the container.
//! Exit codes follow Docker: 125 for imgctl's own errors, 126 command not
//! executable, 127 command not found, otherwise the container's status (137 after
//! an OOM kill).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::{Exit, Globals};
use crate::container::{self, net, parse, RootfsSource, RunFlags, RunRequest, Userns};

/// Flags shared by `run` and `bundle` (Docker's names).
#[derive(clap::Args, Debug, Clone)]
pub struct ContainerArgs {
    /// Use DIR as the container's root filesystem as it is, instead of an image
    /// (the directory is used in place, not copied). With --rootfs, every
    /// positional argument is the command.
    #[arg(long, value_name = "DIR")]
    pub rootfs: Option<PathBuf>,
    /// With --rootfs: an OCI image config JSON (ENTRYPOINT, CMD, ENV, USER, WORKDIR).
    #[arg(long, value_name = "FILE", requires = "rootfs")]
    pub image_config: Option<PathBuf>,
    /// Allocate a pseudo-terminal.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Pass stdin to the container (without it the container reads /dev/null).
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Pull the image before running: missing (when not in the store), always, never.
    #[arg(long, value_name = "POLICY", default_value = "missing", value_parser = ["missing", "always", "never"])]
    pub pull: String,
    /// Run a tiny init as PID 1 that reaps zombies and forwards signals.
    #[arg(long)]
    pub init: bool,
    /// Container hostname (default: the first 12 digits of the id).
    #[arg(long)]
    pub hostname: Option<String>,
    /// Set an environment variable (KEY=VALUE, or KEY to pass the host's value).
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Read environment variables from a file (KEY=VALUE lines, # comments).
    #[arg(long, value_name = "FILE")]
    pub env_file: Vec<PathBuf>,
    /// Working directory inside the container.
    #[arg(short = 'w', long)]
    pub workdir: Option<String>,
    /// User and group: name|uid[:group|gid], resolved in the image's /etc/passwd and /etc/group.
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Override the image's ENTRYPOINT ("" clears it).
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Network: bridge (the default network, imgctl0), none (a private namespace
    /// with only lo), host, a network made with `imgctl network create`, or
    /// container:NAME (share that running container's network namespace).
    #[arg(long, visible_alias = "net", default_value = "bridge")]
    pub network: String,
    /// Publish a container's port on the host: [IP:]HOST_PORT:CONTAINER_PORT[/udp]
    /// (ranges 8000-8001:80-81; reachable on 127.0.0.1 too). Bridge networks only.
    #[arg(
        short = 'p',
        long = "publish",
        value_name = "[IP:]HOST:CONTAINER[/PROTO]"
    )]
    pub publish: Vec<String>,
    /// Publish every port the image EXPOSEs on a free host port (see
    /// `inspect`/state.json for which). Bridge networks only.
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// Limit the bandwidth into the container (e.g. 8mbit, 500kbit, 2mbps).
    #[arg(long, value_name = "RATE")]
    pub network_rate_in: Option<String>,
    /// Limit the bandwidth out of the container (e.g. 8mbit, 500kbit, 2mbps).
    #[arg(long, value_name = "RATE")]
    pub network_rate_out: Option<String>,
    /// A time namespace with clock offsets in seconds: monotonic=S,boottime=S.
    #[arg(long, value_name = "monotonic=S,boottime=S")]
    pub time_offset: Option<String>,
    /// User namespace: host (none), auto (a free range from /etc/subuid), or set with --uidmap.
    #[arg(long, value_parser = ["host", "auto", ""])]
    pub userns: Option<String>,
    /// UID map CONTAINER:HOST:SIZE (implies a user namespace; repeatable).
    #[arg(long, value_name = "C:H:N")]
    pub uidmap: Vec<String>,
    /// GID map CONTAINER:HOST:SIZE (default: the uid maps).
    #[arg(long, value_name = "C:H:N")]
    pub gidmap: Vec<String>,
    /// Memory limit (e.g. 32m, 1g). [v1 memory.limit_in_bytes, v2 memory.max]
    #[arg(short = 'm', long)]
    pub memory: Option<String>,
    /// Memory soft limit. [v1 memory.soft_limit_in_bytes, v2 memory.low]
    #[arg(long)]
    pub memory_reservation: Option<String>,
    /// Memory plus swap limit (-1: unlimited swap). [v1 memory.memsw.limit_in_bytes, v2 memory.swap.max]
    #[arg(long, allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// Swappiness 0-100. [v1 memory.swappiness; v2: refused, no such knob]
    #[arg(long, value_parser = clap::value_parser!(u64).range(0..=100))]
    pub memory_swappiness: Option<u64>,
    /// Number of CPUs (e.g. 0.5). [v1 cpu.cfs_quota_us, v2 cpu.max]
    #[arg(long, allow_hyphen_values = true)]
    pub cpus: Option<String>,
    /// CPU shares (relative weight). [v1 cpu.shares, v2 cpu.weight]
    #[arg(short = 'c', long, value_parser = clap::value_parser!(u64).range(2..=262144))]
    pub cpu_shares: Option<u64>,
    /// CFS period in microseconds. [v1 cpu.cfs_period_us, v2 cpu.max]
    #[arg(long, value_parser = clap::value_parser!(u64).range(1000..=1_000_000))]
    pub cpu_period: Option<u64>,
    /// CFS quota in microseconds. [v1 cpu.cfs_quota_us, v2 cpu.max]
    #[arg(long, value_parser = clap::value_parser!(i64).range(1000..))]
    pub cpu_quota: Option<i64>,
    /// CPUs allowed (0-3, 0,1). [v1 and v2 cpuset.cpus]
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes allowed, checked against the host's online nodes. [v1 and v2 cpuset.mems]
    #[arg(long)]
    pub cpuset_mems: Option<String>,
    /// Maximum number of processes (-1: unlimited; default 2048). [v1 and v2 pids.max]
    #[arg(long, allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Block IO weight 10-1000. [v1 blkio.weight or blkio.bfq.weight, v2 io.weight or io.bfq.weight]
    #[arg(long, value_parser = clap::value_parser!(u16).range(10..=1000))]
    pub blkio_weight: Option<u16>,
    /// Limit read rate from a device (DEVICE:RATE, e.g. /dev/sda:1mb). [v1 blkio.throttle.read_bps_device, v2 io.max rbps]
    #[arg(long)]
    pub device_read_bps: Vec<String>,
    /// Limit write rate to a device (DEVICE:RATE). [v1 blkio.throttle.write_bps_device, v2 io.max wbps]
    #[arg(long)]
    pub device_write_bps: Vec<String>,
    /// Limit read operations per second from a block device (DEVICE:IOPS). [v1 blkio.throttle.read_iops_device, v2 io.max riops]
    #[arg(long, value_name = "DEVICE:IOPS")]
    pub device_read_iops: Vec<String>,
    /// Limit write operations per second to a block device (DEVICE:IOPS). [v1 blkio.throttle.write_iops_device, v2 io.max wiops]
    #[arg(long, value_name = "DEVICE:IOPS")]
    pub device_write_iops: Vec<String>,
    /// Block IO weight of one device (DEVICE:WEIGHT, 10-1000). [v1 blkio.weight_device, v2 io.weight or io.bfq.weight]
    #[arg(long, value_name = "DEVICE:WEIGHT")]
    pub blkio_weight_device: Vec<String>,
    /// Real-time CPU time per period in microseconds; SCHED_FIFO/RR inside also needs --cap-add SYS_NICE. [v1 cpu.rt_runtime_us, parents given the budget; v2: refused, no RT group scheduling]
    #[arg(long, value_name = "MICROSECONDS", value_parser = clap::value_parser!(i64).range(1..))]
    pub cpu_rt_runtime: Option<i64>,
    /// Real-time period in microseconds (with --cpu-rt-runtime). [v1 cpu.rt_period_us; v2: refused]
    #[arg(long, value_name = "MICROSECONDS", value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub cpu_rt_period: Option<u64>,
    /// Do not OOM-kill the container's processes at the memory limit (they wait instead). [v1 memory.oom_control; v2: refused]
    #[arg(long)]
    pub oom_kill_disable: bool,
    /// The container's OOM score adjustment, -1000 to 1000. [/proc/PID/oom_score_adj, any cgroup version]
    #[arg(long, allow_hyphen_values = true, value_parser = clap::value_parser!(i32).range(-1000..=1000))]
    pub oom_score_adj: Option<i32>,
    /// Refused, as Docker: kernel memory limits are deprecated (the kernel no longer supports them).
    #[arg(long, value_name = "BYTES")]
    pub kernel_memory: Option<String>,
    /// Size of /dev/shm (default 64m). [tmpfs size, any cgroup version]
    #[arg(long, value_name = "SIZE")]
    pub shm_size: Option<String>,
    /// Add a host device: HOST[:CONTAINER][:rwm]; the node is created inside and allowed. [v1 devices.allow, v2 eBPF device filter]
    #[arg(long, value_name = "HOST[:CONTAINER][:rwm]")]
    pub device: Vec<String>,
    /// Allow a class of devices: 'TYPE MAJOR:MINOR ACCESS', e.g. 'c 1:3 rwm' or 'b 7:* r'. [v1 devices.allow, v2 eBPF device filter]
    #[arg(long, value_name = "RULE")]
    pub device_cgroup_rule: Vec<String>,
    /// Huge page limit PAGESIZE:LIMIT, e.g. 2MB:64m. [v1 hugetlb.SIZE.limit_in_bytes, v2 hugetlb.SIZE.max; on hybrid hosts the cgroup2 mount]
    #[arg(long, value_name = "SIZE:LIMIT")]
    pub hugetlb: Vec<String>,
    /// Add a capability (or ALL).
    #[arg(long)]
    pub cap_add: Vec<String>,
    /// Drop a capability (or ALL).
    #[arg(long)]
    pub cap_drop: Vec<String>,
    /// All capabilities, no seccomp, no masked paths, the host's devices in /dev and all allowed. [v1 devices.allow a, v2 allow-all filter]
    #[arg(long)]
    pub privileged: bool,
    /// no-new-privileges, seccomp=FILE|unconfined, apparmor=PROFILE, label=…
    #[arg(long)]
    pub security_opt: Vec<String>,
    /// Bind mount /host:/container[:ro].
    #[arg(short = 'v', long = "volume")]
    pub volume: Vec<String>,
    /// Mount: type=bind,source=…,target=…[,readonly] or type=tmpfs,target=…
    #[arg(long)]
    pub mount: Vec<String>,
    /// Mount a tmpfs: /path[:options].
    #[arg(long)]
    pub tmpfs: Vec<String>,
    /// Mount the root filesystem read-only.
    #[arg(long)]
    pub read_only: bool,
    /// Resource limit name=soft[:hard], capped at the current hard limit.
    #[arg(long)]
    pub ulimit: Vec<String>,
    /// Parent cgroup of the container's cgroup (default: imgctl).
    #[arg(long, value_name = "PATH")]
    pub cgroup_parent: Option<String>,
}

#[derive(clap::Args, Debug)]
#[command(
    override_usage = "imgctl run [OPTIONS] IMAGE [COMMAND] [ARG...]",
    after_help = "Examples:\n  imgctl run --rm -it busybox sh\n  imgctl run -d --name web -p 8080:80 nginx\n  imgctl run --rm --network none -v \"$PWD\":/src -w /src busybox ls -l"
)]
pub struct Args {
    /// Remove the container's state when it exits.
    #[arg(long)]
    pub rm: bool,
    /// Run in the background (a monitor process keeps it) and print its ID.
    #[arg(short = 'd', long)]
    pub detach: bool,
    #[command(flatten)]
    pub d: DetachArgs,
    /// A name for the container.
    #[arg(long)]
    pub name: Option<String>,
    /// Where cgroupfs is mounted; v1 or v2 is detected there.
    #[arg(long, value_name = "DIR", default_value = "/sys/fs/cgroup")]
    pub cgroup_root: PathBuf,
    /// When the container exits, write what it used (CPU time, peak memory, I/O
    /// bytes, PIDs, wall time) to FILE as JSON (schemas/run-stats.schema.json).
    #[arg(long, value_name = "FILE")]
    pub stats_file: Option<PathBuf>,
    #[command(flatten)]
    pub c: ContainerArgs,
    /// IMAGE [COMMAND [ARG...]] (with --rootfs: COMMAND [ARG...]). Options go
    /// before IMAGE; everything after it is the command, options included.
    #[arg(trailing_var_arg = true, value_name = "ARG")]
    pub args: Vec<String>,
}

/// Flags of detached containers (`-d`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct DetachArgs {
    /// Restart policy: no, on-failure[:N], always, unless-stopped (with -d).
    #[arg(long, default_value = "no")]
    pub restart: String,
    /// Set a label KEY=VALUE (repeatable).
    #[arg(short = 'l', long = "label", value_name = "KEY=VALUE")]
    pub label: Vec<String>,
    /// Healthcheck command (run with /bin/sh -c in the container).
    #[arg(long, value_name = "CMD")]
    pub health_cmd: Option<String>,
    /// Time between healthchecks (e.g. 30s, 500ms).
    #[arg(long, value_name = "DURATION")]
    pub health_interval: Option<String>,
    /// Time one healthcheck may take.
    #[arg(long, value_name = "DURATION")]
    pub health_timeout: Option<String>,
    /// Failures not counted after the start (e.g. 5s).
    #[arg(long, value_name = "DURATION")]
    pub health_start_period: Option<String>,
    /// Failures in a row that make it unhealthy.
    #[arg(long, value_name = "N")]
    pub health_retries: Option<u32>,
    /// Disable the image's HEALTHCHECK.
    #[arg(long)]
    pub no_healthcheck: bool,
    /// Signal `stop` sends first (default: the image's STOPSIGNAL, else SIGTERM).
    #[arg(long, value_name = "SIGNAL")]
    pub stop_signal: Option<String>,
    /// Seconds `stop` waits before SIGKILL (default 10).
    #[arg(long, value_name = "SECONDS")]
    pub stop_timeout: Option<u64>,
    /// Log options: max-size=SIZE (e.g. 10m), max-file=N.
    #[arg(long, value_name = "KEY=VALUE")]
    pub log_opt: Vec<String>,
}

fn duration_flag(flag: &str, v: &Option<String>) -> anyhow::Result<Option<std::time::Duration>> {
    v.as_deref()
        .map(|s| {
            crate::container::logs::parse_duration(s)
                .filter(|n| *n >= 0)
                .map(|n| std::time::Duration::from_nanos(n as u64))
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "invalid {flag} {s:?}: expected a duration such as 30s or 500ms"
                    )
                })
        })
        .transpose()
}

/// The flags `run -d` and `create` share beyond the container's own.
pub(super) struct Detach<'a> {
    pub rm: bool,
    pub name: Option<String>,
    pub cgroup_root: PathBuf,
    pub d: &'a DetachArgs,
    pub c: &'a ContainerArgs,
}

/// `--restart` and `--stop-signal` errors first, before anything is pulled.
pub(super) fn check_detach_flags(d: &DetachArgs) -> anyhow::Result<()> {
    container::monitor::RestartPolicy::parse(&d.restart)?;
    if let Some(s) = &d.stop_signal {
        container::control::parse_signal(s)?;
    }
    Ok(())
}

/// `run -d`: hand the container to a monitor, print its ID.
fn run_detached(
    g: &Globals,
    a: &Args,
    flags: RunFlags,
    rootfs: RootfsSource,
    image: Option<String>,
) -> anyhow::Result<ExitCode> {
    let x = Detach {
        rm: a.rm,
        name: a.name.clone(),
        cgroup_root: a.cgroup_root.clone(),
        d: &a.d,
        c: &a.c,
    };
    let req = detach_request(g, x, flags, rootfs, image)?;
    print_id(container::control::run_detached(req))
}

/// Print a detached or created container's ID, or fail with the library's exit code.
pub(super) fn print_id(r: Result<String, container::Error>) -> anyhow::Result<ExitCode> {
    match r {
        Ok(id) => {
            println!("{id}");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Err(Exit {
            code: e.exit_code(),
            message: Some(e.to_string()),
        }
        .into()),
    }
}

/// The request of a container kept by a monitor (`run -d`, `create`).
pub(super) fn detach_request(
    g: &Globals,
    a: Detach<'_>,
    flags: RunFlags,
    rootfs: RootfsSource,
    image: Option<String>,
) -> anyhow::Result<container::control::DetachRequest> {
    let d = a.d;
    let mut labels = std::collections::BTreeMap::new();
    for l in &d.label {
        let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
        if k.is_empty() {
            anyhow::bail!("invalid --label {l:?}: expected KEY=VALUE");
        }
        labels.insert(k.to_string(), v.to_string());
    }
    let (mut max_size, mut max_files) = (None, None);
    for o in &d.log_opt {
        match o.split_once('=') {
            Some(("max-size", v)) => max_size = Some(parse::bytes("--log-opt max-size", v)? as u64),
            Some(("max-file", v)) => {
                max_files = Some(v.parse::<u32>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    anyhow::anyhow!("invalid --log-opt {o:?}: max-file must be a positive number")
                })?)
            }
            _ => anyhow::bail!("invalid --log-opt {o:?}: expected max-size=SIZE or max-file=N"),
        }
    }
    Ok(container::control::DetachRequest {
        root: g.root.clone(),
        flags,
        rootfs,
        name: a.name,
        image_name: image,
        labels,
        remove: a.rm,
        init: a.c.init,
        interactive: a.c.interactive,
        cgroup_root: a.cgroup_root,
        restart: container::monitor::RestartPolicy::parse(&d.restart)?,
        health: container::control::HealthFlags {
            cmd: d.health_cmd.clone(),
            interval: duration_flag("--health-interval", &d.health_interval)?,
            timeout: duration_flag("--health-timeout", &d.health_timeout)?,
            start_period: duration_flag("--health-start-period", &d.health_start_period)?,
            retries: d.health_retries,
            none: d.no_healthcheck,
        },
        stop_signal: d.stop_signal.clone(),
        stop_timeout: d.stop_timeout,
        log_max_size: max_size,
        log_max_files: max_files,
    })
}

/// The container's root filesystem: `--rootfs DIR [--image-config FILE]` as it
/// is, else the image argument resolved once (a name or ID in the store, or
/// `oci:DIR[:TAG]`).
pub(crate) fn rootfs_source(
    g: &Globals,
    image: Option<&str>,
    c: &ContainerArgs,
) -> anyhow::Result<RootfsSource> {
    if let Some(dir) = &c.rootfs {
        let config = match &c.image_config {
            None => None,
            Some(p) => Some(container::read_image_config_file(p)?),
        };
        return Ok(RootfsSource::Dir {
            path: dir.clone(),
            config,
        });
    }
    let Some(name) = image else {
        anyhow::bail!("no image given: imgctl run [OPTIONS] IMAGE [COMMAND...] (or --rootfs DIR)");
    };
    let policy = crate::image::PullPolicy::parse(&c.pull).map_err(anyhow::Error::msg)?;
    let progress = super::pull::progress_sink(false, true);
    let progress: std::sync::Arc<dyn crate::image::Progress> =
        if policy == crate::image::PullPolicy::Missing {
            std::sync::Arc::new(Announce {
                name: name.to_string(),
                said: std::sync::Once::new(),
                inner: progress,
            })
        } else {
            progress
        };
    Ok(RootfsSource::Image(crate::image::resolve_or_pull(
        &g.root, name, policy, progress,
    )?))
}

/// Docker's "Unable to find image 'X' locally" on stderr before the first pull
/// event (with `--pull missing` a pull happens only for a missing image).
struct Announce {
    name: String,
    said: std::sync::Once,
    inner: std::sync::Arc<dyn crate::image::Progress>,
}

impl crate::image::Progress for Announce {
    fn event(&self, e: &crate::image::Event) {
        self.said
            .call_once(|| eprintln!("Unable to find image '{}' locally", self.name));
        self.inner.event(e);
    }
}

/// Split the positional arguments into (image, command).
pub(crate) fn image_and_command(
    c: &ContainerArgs,
    positional: Vec<String>,
) -> (Option<String>, Vec<String>) {
    if c.rootfs.is_some() {
        (None, positional)
    } else {
        let mut it = positional.into_iter();
        (it.next(), it.collect())
    }
}

fn env_files(files: &[PathBuf]) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for f in files {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("--env-file {}", f.display()))?;
        for l in text.lines() {
            let l = l.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            out.push(l.to_string());
        }
    }
    Ok(out)
}

fn expand_env(list: Vec<String>) -> Vec<String> {
    list.into_iter()
        .filter_map(|e| {
            if e.contains('=') {
                Some(e)
            } else {
                // KEY alone passes the host's value, or nothing when unset (Docker).
                std::env::var(&e).ok().map(|v| format!("{e}={v}"))
            }
        })
        .collect()
}

/// Turn what was typed into what will be done.
pub(crate) fn run_flags(c: &ContainerArgs, id: &str, cmd: Vec<String>) -> anyhow::Result<RunFlags> {
    let opt_bytes = |flag: &str, v: &Option<String>| -> Result<Option<i64>, container::Error> {
        v.as_deref().map(|s| parse::bytes(flag, s)).transpose()
    };
    let mut f = RunFlags {
        id: id.to_string(),
        hostname: Some(
            c.hostname
                .clone()
                .unwrap_or_else(|| id.chars().take(12).collect()),
        ),
        workdir: c.workdir.clone(),
        user: c.user.clone(),
        entrypoint: c.entrypoint.clone(),
        cmd,
        tty: c.tty,
        network: net::parse_network(&c.network)?,
        ports: net::parse_publish(&c.publish)?,
        publish_all: c.publish_all,
        rate_in: c
            .network_rate_in
            .as_deref()
            .map(|r| net::parse_rate("--network-rate-in", r))
            .transpose()?,
        rate_out: c
            .network_rate_out
            .as_deref()
            .map(|r| net::parse_rate("--network-rate-out", r))
            .transpose()?,
        time_offsets: c
            .time_offset
            .as_deref()
            .map(net::parse_time_offset)
            .transpose()?
            .unwrap_or_default(),
        memory: opt_bytes("--memory", &c.memory)?,
        memory_reservation: opt_bytes("--memory-reservation", &c.memory_reservation)?,
        memory_swappiness: c.memory_swappiness,
        cpu_shares: c.cpu_shares,
        cpu_period: c.cpu_period,
        cpu_quota: c.cpu_quota,
        pids_limit: c.pids_limit,
        blkio_weight: c.blkio_weight,
        privileged: c.privileged,
        read_only: c.read_only,
        cgroup_parent: c.cgroup_parent.clone(),
        cap_add: c.cap_add.clone(),
        cap_drop: c.cap_drop.clone(),
        ..Default::default()
    };
    f.memory_swap = match c.memory_swap.as_deref() {
        Some("-1") => Some(-1),
        other => opt_bytes("--memory-swap", &other.map(String::from))?,
    };
    if let Some(cpus) = &c.cpus {
        let n = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let (quota, period) = parse::cpus(cpus, n)?;
        f.cpu_quota = Some(quota);
        f.cpu_period = Some(period);
    }
    f.cpuset_cpus = c
        .cpuset_cpus
        .as_deref()
        .map(|s| parse::cpu_list("--cpuset-cpus", s))
        .transpose()?;
    f.cpuset_mems = c
        .cpuset_mems
        .as_deref()
        .map(|s| parse::cpu_list("--cpuset-mems", s))
        .transpose()?;
    for d in &c.device_read_bps {
        f.device_read_bps
            .push(parse::device_rate("--device-read-bps", d)?);
    }
    for d in &c.device_write_bps {
        f.device_write_bps
            .push(parse::device_rate("--device-write-bps", d)?);
    }
    resource_flags(c, &mut f)?;
    let mut env = env_files(&c.env_file)?;
    env.extend(c.env.iter().cloned());
    f.env = expand_env(env);
    for s in &c.security_opt {
        let (k, v) = s.split_once(['=', ':']).unwrap_or((s.as_str(), ""));
        match k {
            "no-new-privileges" => f.no_new_privileges = v.is_empty() || v == "true",
            "seccomp" if v == "unconfined" => f.seccomp = Some(None),
            "seccomp" if !v.is_empty() => f.seccomp = Some(Some(PathBuf::from(v))),
            "apparmor" if !v.is_empty() => f.apparmor = Some(v.to_string()),
            "label" if !v.is_empty() => f.label = Some(v.to_string()),
            _ => anyhow::bail!(
                "invalid --security-opt {s:?}: expected no-new-privileges, seccomp=FILE|unconfined, apparmor=PROFILE or label=…"
            ),
        }
    }
    if f.label.as_deref() == Some("disable") {
        f.label = None;
    }
    if f.apparmor.as_deref() == Some("unconfined") {
        f.apparmor = None;
    }
    for v in &c.volume {
        let b = parse::volume(v)?;
        f.create_bind_sources.push(b.0.clone());
        f.binds.push(b);
    }
    for m in &c.mount {
        let m = parse::mount(m)?;
        match m.typ.as_str() {
            "bind" => f
                .binds
                .push((m.source.unwrap_or_default(), m.target, m.readonly)),
            _ => {
                let mut o = Vec::new();
                if let Some(sz) = m.tmpfs_size {
                    o.push(format!("size={sz}"));
                }
                if m.readonly {
                    o.push("ro".into());
                }
                f.tmpfs.push((m.target, o));
            }
        }
    }
    for t in &c.tmpfs {
        f.tmpfs.push(parse::tmpfs(t)?);
    }
    for u in &c.ulimit {
        f.ulimits.push(parse::ulimit(u)?);
    }
    let uid: Vec<_> = c
        .uidmap
        .iter()
        .map(|m| parse::id_map("--uidmap", m))
        .collect::<Result<_, _>>()?;
    let gid: Vec<_> = c
        .gidmap
        .iter()
        .map(|m| parse::id_map("--gidmap", m))
        .collect::<Result<_, _>>()?;
    f.userns = match c.userns.as_deref() {
        Some("auto") => Userns::Auto,
        _ if !uid.is_empty() => Userns::Maps { uid, gid },
        Some("host") | Some("") | None => {
            if !gid.is_empty() {
                anyhow::bail!("--gidmap needs --uidmap");
            }
            Userns::Host
        }
        Some(other) => anyhow::bail!("invalid --userns {other:?}: expected host or auto"),
    };
    // Check capability names now, so a typo is a flag error before anything starts.
    container::capability_set(&f)?;
    Ok(f)
}

/// The resource and device flags of issue 14 (`--device*`, real-time CPU, OOM,
/// shm, hugetlb, iops).
fn resource_flags(c: &ContainerArgs, f: &mut RunFlags) -> anyhow::Result<()> {
    if c.kernel_memory.is_some() {
        anyhow::bail!(
            "--kernel-memory: Specifying a kernel memory limit is deprecated and no longer supported by the kernel (as Docker); remove the flag"
        );
    }
    for d in &c.device_read_iops {
        f.device_read_iops
            .push(parse::device_iops("--device-read-iops", d)?);
    }
    for d in &c.device_write_iops {
        f.device_write_iops
            .push(parse::device_iops("--device-write-iops", d)?);
    }
    for d in &c.blkio_weight_device {
        f.blkio_weight_device.push(parse::device_weight(d)?);
    }
    f.cpu_rt_runtime = c.cpu_rt_runtime;
    f.cpu_rt_period = c.cpu_rt_period;
    f.oom_kill_disable = c.oom_kill_disable;
    f.oom_score_adj = c.oom_score_adj;
    f.shm_size = c
        .shm_size
        .as_deref()
        .map(|s| parse::bytes("--shm-size", s))
        .transpose()?;
    if f.shm_size == Some(0) {
        anyhow::bail!("invalid value \"0\" for --shm-size: expected a size above zero, e.g. 64m");
    }
    for d in &c.device {
        f.devices.push(parse::device(d)?);
    }
    for r in &c.device_cgroup_rule {
        f.device_cgroup_rules.push(parse::device_cgroup_rule(r)?);
    }
    for h in &c.hugetlb {
        f.hugetlb.push(parse::hugetlb(h)?);
    }
    Ok(())
}

pub fn run(g: &Globals, a: Args) -> anyhow::Result<ExitCode> {
    if let Some(n) = &a.name {
        container::state::check_name(n)?;
    }
    // Docker's check, before anything is pulled or made: a terminal fed from a
    // pipe or file cannot work.
    if !a.detach && a.c.tty && a.c.interactive && !std::io::stdin().is_terminal() {
        return Err(Exit {
            code: 1,
            message: Some("the input device is not a TTY".into()),
        }
        .into());
    }
    let (image, cmd) = image_and_command(&a.c, a.args.clone());
    let id = container::new_id();
    let flags = run_flags(&a.c, &id, cmd)?;
    if a.detach {
        check_detach_flags(&a.d)?;
    } else if a.d.restart != "no" {
        anyhow::bail!("--restart needs -d (a monitor keeps the policy)");
    }
    let rootfs = rootfs_source(g, image.as_deref(), &a.c)?;
    if a.detach {
        return run_detached(g, &a, flags, rootfs, image);
    }
    let req = RunRequest {
        prepare: container::PrepareRequest {
            root: g.root.clone(),
            flags,
            rootfs,
            state_dir: None,
        },
        name: a.name.clone(),
        image_name: image,
        remove: a.rm,
        init: a.c.init,
        interactive: a.c.interactive,
        cgroup_root: a.cgroup_root.clone(),
    };
    let result = container::run_foreground_report(req);
    if let (Some(file), Ok((outcome, report))) = (&a.stats_file, &result) {
        container::stats::write_file(file, &id, outcome, report)?;
    }
    match result.map(|(o, _)| o) {
        Ok(container::Outcome::OomKilled) => Err(Exit {
            code: 137,
            message: Some(format!(
                "container {} was killed by the kernel: out of memory (memory limit {})",
                &id[..12],
                a.c.memory.as_deref().unwrap_or("none")
            )),
        }
        .into()),
        Ok(outcome) => Ok(ExitCode::from(outcome.exit_code())),
        Err(e) => Err(Exit {
            code: e.exit_code(),
            message: Some(e.to_string()),
        }
        .into()),
    }
}
