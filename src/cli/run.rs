//! `imgctl run`: run a command in a new container, in the foreground.
//!
//! Flags are parsed here into [`RunFlags`] (what will be done), the image is
//! looked up by [`image_rootfs`], [`crate::container::runtime_spec`] makes the OCI
//! spec and [`crate::sandbox::run`] runs it. Exit codes follow Docker: 125 for
//! imgctl's own errors, 126 command not executable, 127 command not found,
//! otherwise the container's status (137 after an OOM kill).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use super::{Exit, Globals};
use crate::container::{self, parse, Network, RunFlags, Userns};

/// Flags shared by `run` and `bundle` (Docker's names).
#[derive(clap::Args, Debug, Clone)]
pub struct ContainerArgs {
    /// Use DIR as the container's root filesystem instead of an image from the
    /// store (until image lookup lands, the only way to name a root filesystem).
    /// With --rootfs, every positional argument is the command.
    #[arg(long, value_name = "DIR")]
    pub rootfs: Option<PathBuf>,
    /// With --rootfs: an OCI image config JSON (ENTRYPOINT, CMD, ENV, USER, WORKDIR).
    #[arg(long, value_name = "FILE", requires = "rootfs")]
    pub image_config: Option<PathBuf>,
    /// Allocate a pseudo-terminal.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Keep stdin open (stdin is always passed through; accepted for Docker compatibility).
    #[arg(short = 'i', long)]
    pub interactive: bool,
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
    /// Network: none (a private namespace with only lo) or host.
    #[arg(long, default_value = "none", value_parser = ["none", "host"])]
    pub network: String,
    /// User namespace: host (none), auto (a free range from /etc/subuid), or set with --uidmap.
    #[arg(long, value_parser = ["host", "auto", ""])]
    pub userns: Option<String>,
    /// UID map CONTAINER:HOST:SIZE (implies a user namespace; repeatable).
    #[arg(long, value_name = "C:H:N")]
    pub uidmap: Vec<String>,
    /// GID map CONTAINER:HOST:SIZE (default: the uid maps).
    #[arg(long, value_name = "C:H:N")]
    pub gidmap: Vec<String>,
    /// Memory limit (e.g. 32m, 1g).
    #[arg(short = 'm', long)]
    pub memory: Option<String>,
    /// Memory soft limit.
    #[arg(long)]
    pub memory_reservation: Option<String>,
    /// Memory plus swap limit (-1: unlimited swap).
    #[arg(long, allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// Swappiness 0-100.
    #[arg(long, value_parser = clap::value_parser!(u64).range(0..=100))]
    pub memory_swappiness: Option<u64>,
    /// Number of CPUs (e.g. 0.5).
    #[arg(long, allow_hyphen_values = true)]
    pub cpus: Option<String>,
    /// CPU shares (relative weight).
    #[arg(short = 'c', long, value_parser = clap::value_parser!(u64).range(2..=262144))]
    pub cpu_shares: Option<u64>,
    /// CFS period in microseconds.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1000..=1_000_000))]
    pub cpu_period: Option<u64>,
    /// CFS quota in microseconds.
    #[arg(long, value_parser = clap::value_parser!(i64).range(1000..))]
    pub cpu_quota: Option<i64>,
    /// CPUs allowed (0-3, 0,1).
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes allowed.
    #[arg(long)]
    pub cpuset_mems: Option<String>,
    /// Maximum number of processes (-1: unlimited; default 2048).
    #[arg(long, allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Block IO weight 10-1000.
    #[arg(long, value_parser = clap::value_parser!(u16).range(10..=1000))]
    pub blkio_weight: Option<u16>,
    /// Limit read rate from a device (DEVICE:RATE, e.g. /dev/sda:1mb).
    #[arg(long)]
    pub device_read_bps: Vec<String>,
    /// Limit write rate to a device.
    #[arg(long)]
    pub device_write_bps: Vec<String>,
    /// Add a capability (or ALL).
    #[arg(long)]
    pub cap_add: Vec<String>,
    /// Drop a capability (or ALL).
    #[arg(long)]
    pub cap_drop: Vec<String>,
    /// All capabilities, no seccomp, no masked paths, all devices allowed.
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
pub struct Args {
    /// Remove the container's state when it exits.
    #[arg(long)]
    pub rm: bool,
    /// A name for the container.
    #[arg(long)]
    pub name: Option<String>,
    /// Where cgroupfs is mounted; v1 or v2 is detected there.
    #[arg(long, value_name = "DIR", default_value = "/sys/fs/cgroup")]
    pub cgroup_root: PathBuf,
    #[command(flatten)]
    pub c: ContainerArgs,
    /// IMAGE [COMMAND [ARG...]] (with --rootfs: COMMAND [ARG...]).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ARG"
    )]
    pub args: Vec<String>,
}

/// What the image step hands to `run`/`bundle`: the image's config, a mounted
/// root filesystem for container `id`, and how to release it (e.g. unmount and
/// remove the snapshot) once the container is gone; dropping releases it.
pub(crate) struct ImageRoot {
    pub config: Option<oci_spec::image::Config>,
    pub rootfs: PathBuf,
    pub release: Option<Box<dyn FnOnce()>>,
}

impl Drop for ImageRoot {
    fn drop(&mut self) {
        if let Some(f) = self.release.take() {
            f();
        }
    }
}

/// The image step: image name -> (image config, root filesystem). A store image (or
/// `oci:DIR[:TAG]`) is unpacked if needed and mounted as a fresh overlay snapshot
/// whose release unmounts and removes it; `--rootfs DIR [--image-config FILE]` uses
/// a plain directory as it is.
pub(crate) fn image_rootfs(
    g: &Globals,
    image: Option<&str>,
    c: &ContainerArgs,
    _id: &str,
) -> anyhow::Result<ImageRoot> {
    if let Some(dir) = &c.rootfs {
        let dir =
            std::fs::canonicalize(dir).with_context(|| format!("rootfs {}", dir.display()))?;
        if !dir.is_dir() {
            anyhow::bail!("rootfs {}: not a directory", dir.display());
        }
        let config = match &c.image_config {
            None => None,
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("image config {}", p.display()))?;
                // Either a whole image configuration or just its "config" object.
                let v: serde_json::Value = serde_json::from_str(&text)
                    .with_context(|| format!("image config {}", p.display()))?;
                let inner = v.get("config").cloned().unwrap_or(v);
                Some(
                    serde_json::from_value(inner)
                        .with_context(|| format!("image config {}", p.display()))?,
                )
            }
        };
        return Ok(ImageRoot {
            config,
            rootfs: dir,
            release: None,
        });
    }
    let Some(name) = image else {
        anyhow::bail!("no image given: imgctl run [OPTIONS] IMAGE [COMMAND...] (or --rootfs DIR)");
    };
    let (blobs, manifest) = super::image_ref::resolve_image(g, name)?;
    let config = super::image_ref::image_config(blobs.as_ref(), &manifest)?;
    drop(blobs);
    let (key, merged) = super::mount::mount_image(g, name, true, false)?;
    let g = g.clone();
    Ok(ImageRoot {
        config,
        rootfs: merged,
        release: Some(Box::new(move || {
            if let Err(e) = super::mount::release(&g, &key) {
                eprintln!("imgctl: warning: release rootfs of {key}: {e:#}");
            }
        })),
    })
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
        network: if c.network == "host" {
            Network::Host
        } else {
            Network::None
        },
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
        f.binds.push(parse::volume(v)?);
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

/// Everything one `run` created, removed by [`Prepared::cleanup`].
pub(crate) struct Prepared {
    pub spec: oci_spec::runtime::Spec,
    pub rootfs: PathBuf,
    /// The rootfs is a shared copy owned by the user namespace's ids; the
    /// container's writes go to an overlay under this directory.
    pub rootfs_shifted: Option<PathBuf>,
    pub state_dir: PathBuf,
    pub lease: Option<container::UsernsLease>,
    /// Held until the container is gone; dropping releases the image's rootfs.
    pub image: ImageRoot,
}

/// Flags + image -> spec, with its state directory written.
pub(crate) fn prepare(
    g: &Globals,
    c: &ContainerArgs,
    positional: Vec<String>,
    state_dir: Option<PathBuf>,
) -> anyhow::Result<(Prepared, String)> {
    let (image, cmd) = if c.rootfs.is_some() {
        (None, positional)
    } else {
        let mut it = positional.into_iter();
        (it.next(), it.collect())
    };
    let id = container::new_id();
    let flags = run_flags(c, &id, cmd)?;
    let image = image_rootfs(g, image.as_deref(), c, &id)?;
    let (config, rootfs) = (image.config.clone(), image.rootfs.clone());
    let state_dir = state_dir.unwrap_or_else(|| g.root.join("containers").join(&id));
    let (base, lease) = if flags.userns == Userns::Auto {
        let (b, l) = container::allocate_userns(&g.root.join("locks").join("userns"))?;
        l.set_owner(std::process::id());
        (Some(b), Some(l))
    } else {
        (None, None)
    };
    let hostname = flags.hostname.clone().unwrap_or_default();
    let etc = container::write_etc_files(&state_dir, &hostname, flags.network)?;
    let spec = container::runtime_spec(config.as_ref(), &flags, &rootfs, etc, base);
    let mut spec = match spec {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&state_dir);
            return Err(e.into());
        }
    };
    let (rootfs, rootfs_shifted) = match shifted_rootfs(g, &mut spec, &rootfs, &state_dir) {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&state_dir);
            return Err(e);
        }
    };
    Ok((
        Prepared {
            spec,
            rootfs,
            rootfs_shifted,
            state_dir,
            lease,
            image,
        },
        id,
    ))
}

/// With a user namespace on a rootfs that cannot be idmapped (overlayfs), use a
/// copy with shifted owners, cached under `<root>/cache/userns/` per (rootfs,
/// mapping), read-only under a per-container overlay whose upper and work dirs are
/// made (owned by the container's root) in `state_dir/rw`. Returns the rootfs to
/// use and, when shifted, that directory.
fn shifted_rootfs(
    g: &Globals,
    spec: &mut oci_spec::runtime::Spec,
    rootfs: &Path,
    state_dir: &Path,
) -> anyhow::Result<(PathBuf, Option<PathBuf>)> {
    use sha2::Digest as _;
    let Some(linux) = spec.linux().clone() else {
        return Ok((rootfs.to_path_buf(), None));
    };
    let triples = |m: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>| -> Vec<(u32, u32, u32)> {
        m.iter()
            .flatten()
            .map(|x| (x.container_id(), x.host_id(), x.size()))
            .collect()
    };
    let (uids, gids) = (triples(linux.uid_mappings()), triples(linux.gid_mappings()));
    if uids.is_empty() || !crate::sandbox::idshift::needs_copy(rootfs) {
        return Ok((rootfs.to_path_buf(), None));
    }
    let key = hex::encode(sha2::Sha256::digest(format!(
        "{}\n{uids:?}\n{gids:?}",
        rootfs.display()
    )));
    let dst = g.root.join("cache").join("userns").join(key).join("rootfs");
    if !dst.is_dir() {
        crate::sandbox::idshift::shifted_copy(rootfs, &dst, &uids, &gids)?;
    }
    if let Some(root) = spec.root().clone() {
        let mut root = root;
        root.set_path(dst.clone());
        spec.set_root(Some(root));
    }
    let rw = state_dir.join("rw");
    for d in ["upper", "work"] {
        let p = rw.join(d);
        std::fs::create_dir_all(&p).with_context(|| format!("create {}", p.display()))?;
        let (uid, gid) = (
            crate::sandbox::idshift::map_id(0, &uids),
            crate::sandbox::idshift::map_id(0, &gids),
        );
        std::os::unix::fs::chown(&p, Some(uid), Some(gid))
            .with_context(|| format!("chown {}", p.display()))?;
    }
    Ok((dst, Some(rw)))
}

fn write_json(path: &Path, v: &impl serde::Serialize) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(v)?)
        .with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("rename {}", path.display()))?;
    Ok(())
}

pub fn run(g: &Globals, a: Args) -> anyhow::Result<ExitCode> {
    if let Some(n) = &a.name {
        let ok = !n.is_empty()
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !ok {
            anyhow::bail!("invalid --name {n:?}: use letters, digits, '_', '.' and '-'");
        }
    }
    if let Some(n) = &a.name {
        for e in std::fs::read_dir(g.root.join("containers"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if std::fs::read_to_string(e.path().join("name")).is_ok_and(|x| x == *n) {
                anyhow::bail!(
                    "the name {n:?} is already used by container {} (remove {} to reuse it)",
                    e.file_name().to_string_lossy(),
                    e.path().display()
                );
            }
        }
    }
    let (p, id) = prepare(g, &a.c, a.args, None)?;
    let result = (|| -> anyhow::Result<ExitCode> {
        write_json(&p.state_dir.join("config.json"), &p.spec)?;
        if let Some(n) = &a.name {
            std::fs::write(p.state_dir.join("name"), n)
                .with_context(|| "write the container name")?;
        }
        let opts = crate::sandbox::Options {
            init: a.c.init,
            rootfs_shifted: p.rootfs_shifted.clone(),
            cgroup_root: a.cgroup_root.clone(),
        };
        match crate::sandbox::run(&p.spec, &p.rootfs, &opts) {
            Ok(outcome) => {
                let _ = std::fs::write(
                    p.state_dir.join("exit-code"),
                    outcome.exit_code().to_string(),
                );
                if outcome == crate::sandbox::Outcome::OomKilled {
                    return Err(Exit {
                        code: 137,
                        message: Some(format!(
                            "container {} was killed by the kernel: out of memory (memory limit {})",
                            &id[..12],
                            a.c.memory.as_deref().unwrap_or("none")
                        )),
                    }
                    .into());
                }
                Ok(ExitCode::from(outcome.exit_code()))
            }
            Err(e) => Err(Exit {
                code: e.exit_code(),
                message: Some(e.to_string()),
            }
            .into()),
        }
    })();
    let failed_to_start =
        matches!(&result, Err(e) if e.downcast_ref::<Exit>().is_none_or(|x| x.code != 137));
    if a.rm || failed_to_start {
        let _ = std::fs::remove_dir_all(&p.state_dir);
    }
    drop(p.lease);
    // The container is gone: release the image's root filesystem.
    drop(p.image);
    result
}
