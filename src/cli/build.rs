//! `imgctl build`: flags -> [`crate::build::BuildOptions`] -> [`crate::build::build`]
//! -> progress on stderr, the image ID on stdout with `-q`.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::{Exit, Globals};
use crate::build::progress::{Mode, Renderer};
use crate::build::{self, BuildError, BuildOptions, BuildfileSource, Network, Secret};

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  imgctl build -t app:1 .\n  imgctl build -f Buildfile.prod --build-arg VERSION=2 -t 127.0.0.1:5000/app:2 --push .\n  imgctl build --target test --progress plain --no-cache ."
)]
pub struct Args {
    /// The Buildfile (default: Buildfile, then Dockerfile, in the context; `-` reads stdin).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Name the image (repeatable).
    #[arg(short = 't', long = "tag", value_name = "NAME")]
    pub tags: Vec<String>,
    /// Build up to this stage.
    #[arg(long)]
    pub target: Option<String>,
    /// Set a build-time variable KEY=VALUE (KEY alone takes the value from the environment).
    #[arg(long = "build-arg", value_name = "KEY=VALUE")]
    pub build_args: Vec<String>,
    /// Target platform (only this host's platform).
    #[arg(long)]
    pub platform: Option<String>,
    /// Do not use the cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Do not use the cache for these stages (repeatable).
    #[arg(long = "no-cache-filter", value_name = "STAGE")]
    pub no_cache_filter: Vec<String>,
    /// Pull base images again even when they are in the store.
    #[arg(long)]
    pub pull: bool,
    /// Progress output: auto (tty folds RUN output), plain, quiet.
    #[arg(long, default_value = "auto", value_parser = ["auto", "plain", "quiet", "tty"])]
    pub progress: String,
    /// Print only the image ID.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Write the image ID to FILE.
    #[arg(long, value_name = "FILE")]
    pub iidfile: Option<PathBuf>,
    /// Also write the image out: type=oci|docker,dest=FILE.
    #[arg(long, short = 'o', value_name = "type=oci|docker,dest=FILE")]
    pub output: Option<String>,
    /// Set a label on the image KEY=VALUE (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// A secret for RUN --mount=type=secret: id=ID,src=FILE or id=ID,env=VAR.
    #[arg(long = "secret", value_name = "id=ID,src=FILE")]
    pub secrets: Vec<String>,
    /// Stages run at the same time (default: the number of CPUs).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Memory limit of every RUN step (e.g. 64m).
    #[arg(short = 'm', long)]
    pub memory: Option<String>,
    /// CPUs of every RUN step (e.g. 0.5).
    #[arg(long)]
    pub cpus: Option<String>,
    /// Process limit of every RUN step.
    #[arg(long)]
    pub pids_limit: Option<i64>,
    /// A host device for every RUN step: HOST[:CONTAINER][:rwm] (as `run --device`).
    #[arg(long, value_name = "HOST[:CONTAINER][:rwm]")]
    pub device: Vec<String>,
    /// Size of /dev/shm in RUN steps (default 64m).
    #[arg(long, value_name = "SIZE")]
    pub shm_size: Option<String>,
    /// Resource limit of RUN steps: name=soft[:hard], capped at the current hard limit.
    #[arg(long)]
    pub ulimit: Vec<String>,
    /// Network of RUN steps: bridge (own namespace on the default network,
    /// outbound through NAT; also "default"), host or none.
    #[arg(long, default_value = "bridge", value_parser = ["bridge", "default", "host", "none"])]
    pub network: String,
    /// Layer compression.
    #[arg(long, default_value = "gzip", value_parser = ["gzip", "zstd"])]
    pub compression: String,
    /// Say for each step that missed the cache which input changed.
    #[arg(long)]
    pub explain: bool,
    /// Export the build cache: type=registry,ref=REGISTRY/REPO:TAG[,mode=min|max] or
    /// type=local,dest=DIR[,mode=min|max] (min: the final stage's steps; max: all).
    #[arg(long = "cache-to", value_name = "type=registry,ref=REF[,mode=max]")]
    pub cache_to: Vec<String>,
    /// Take steps from a build cache when the local one misses (only their layers are
    /// downloaded): type=registry,ref=REGISTRY/REPO:TAG or type=local,src=DIR.
    #[arg(long = "cache-from", value_name = "type=registry,ref=REF")]
    pub cache_from: Vec<String>,
    /// Push every -t name to its registry after the build.
    #[arg(long)]
    pub push: bool,
    /// The build context directory.
    #[arg(default_value = ".")]
    pub context: PathBuf,
}

fn kv(flag: &str, s: &str, env_fallback: bool) -> anyhow::Result<(String, String)> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        None if env_fallback && !s.is_empty() => {
            Ok((s.to_string(), std::env::var(s).unwrap_or_default()))
        }
        _ => anyhow::bail!("invalid {flag} {s:?}: expected KEY=VALUE"),
    }
}

fn options(g: &Globals, a: &Args) -> anyhow::Result<BuildOptions> {
    let context = std::fs::canonicalize(&a.context)
        .with_context(|| format!("build context {}", a.context.display()))?;
    let mut o = BuildOptions::new(g.root.clone(), context);
    o.buildfile = match &a.file {
        None => BuildfileSource::Default,
        Some(p) if p.as_os_str() == "-" => {
            let mut t = String::new();
            std::io::stdin()
                .read_to_string(&mut t)
                .context("read the Buildfile from stdin")?;
            BuildfileSource::Text(t)
        }
        Some(p) => BuildfileSource::Path(p.clone()),
    };
    for t in &a.tags {
        o.tags.push(
            t.parse()
                .map_err(|e| anyhow::anyhow!("invalid tag {t:?}: {e}"))?,
        );
    }
    o.target = a.target.clone();
    for b in &a.build_args {
        o.build_args.push(kv("--build-arg", b, true)?);
    }
    o.platform = a.platform.clone();
    o.no_cache = a.no_cache;
    o.no_cache_filter = a.no_cache_filter.clone();
    o.pull = a.pull;
    for l in &a.labels {
        o.labels.push(kv("--label", l, false)?);
    }
    for s in &a.secrets {
        o.secrets
            .push(Secret::parse(s).map_err(anyhow::Error::msg)?);
    }
    if let Some(j) = a.jobs {
        anyhow::ensure!(j >= 1, "invalid --jobs 0: at least 1");
        o.jobs = j;
    }
    if let Some(m) = &a.memory {
        o.limits.memory = Some(crate::container::parse::bytes("--memory", m)?);
    }
    if let Some(c) = &a.cpus {
        let n = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let (quota, period) = crate::container::parse::cpus(c, n)?;
        o.limits.cpu_quota = Some(quota);
        o.limits.cpu_period = Some(period);
    }
    o.limits.pids = a.pids_limit;
    for d in &a.device {
        o.limits.devices.push(crate::container::parse::device(d)?);
    }
    crate::container::check_devices(&o.limits.devices)?;
    o.limits.shm_size = a
        .shm_size
        .as_deref()
        .map(|s| crate::container::parse::bytes("--shm-size", s))
        .transpose()?;
    for u in &a.ulimit {
        o.limits.ulimits.push(crate::container::parse::ulimit(u)?);
    }
    o.network = match a.network.as_str() {
        "none" => Network::None,
        "host" => Network::Host,
        _ => Network::Bridge,
    };
    o.compression = if a.compression == "zstd" {
        crate::build::Compression::Zstd
    } else {
        crate::build::Compression::Gzip
    };
    for c in &a.cache_to {
        o.cache_to
            .push(build::remote::CacheExport::parse(c).map_err(anyhow::Error::msg)?);
    }
    for c in &a.cache_from {
        o.cache_from
            .push(build::remote::CacheRef::parse_from(c).map_err(anyhow::Error::msg)?);
    }
    anyhow::ensure!(
        !a.push || !a.tags.is_empty(),
        "--push needs a name to push: add -t REGISTRY/REPOSITORY[:TAG]"
    );
    o.push = a.push;
    if let Some(out) = &a.output {
        let mut kind = None;
        let mut dest = None;
        for part in out.split(',') {
            match part.split_once('=') {
                Some(("type", "oci")) => kind = Some(build::OutputKind::Oci),
                Some(("type", "docker")) => kind = Some(build::OutputKind::Docker),
                Some(("dest", d)) => dest = Some(PathBuf::from(d)),
                _ => anyhow::bail!("invalid --output {out:?}: expected type=oci|docker,dest=FILE"),
            }
        }
        match (kind, dest) {
            (Some(kind), Some(dest)) => o.output = Some(build::Output { kind, dest }),
            _ => anyhow::bail!("invalid --output {out:?}: expected type=oci|docker,dest=FILE"),
        }
    }
    Ok(o)
}

/// The one-line error, the Buildfile line with a caret, and the step's last output.
fn render_error(e: &BuildError) -> String {
    match e {
        BuildError::StepFailed(f) => {
            let crate::build::StepFailure {
                at,
                what,
                reason,
                source_line,
                tail,
                ..
            } = f.as_ref();
            let mut s = format!("{at}: {what}: {reason}");
            let line_no = at.rsplit(':').next().unwrap_or("");
            if !source_line.is_empty() {
                let indent = source_line.len() - source_line.trim_start().len();
                s.push_str(&format!(
                    "\n {line_no} | {source_line}\n {} | {}{}",
                    " ".repeat(line_no.len()),
                    " ".repeat(indent),
                    "^".repeat(source_line.trim().chars().count().max(1))
                ));
            }
            if !tail.trim().is_empty() {
                s.push_str("\nlast output:\n");
                s.push_str(tail.trim_end());
            }
            s
        }
        other => other.to_string(),
    }
}

pub fn run(g: &Globals, a: Args) -> anyhow::Result<ExitCode> {
    let opts = options(g, &a)?;
    let mode = match (a.quiet, a.progress.as_str()) {
        (true, _) | (_, "quiet") => Mode::Quiet,
        (_, "plain") => Mode::Plain,
        (_, "tty") => Mode::Tty,
        _ if std::io::stderr().is_terminal() => Mode::Tty,
        _ => Mode::Plain,
    };
    let progress = Renderer::new(std::io::stderr(), mode, a.explain);
    let built = match build::build(&opts, &progress) {
        Ok(b) => b,
        Err(e) => {
            return Err(Exit {
                code: u8::try_from(e.exit_code()).unwrap_or(125),
                message: Some(render_error(&e)),
            }
            .into())
        }
    };
    if let Some(f) = &a.iidfile {
        std::fs::write(f, built.id.to_string())
            .with_context(|| format!("write --iidfile {}", f.display()))?;
    }
    if a.quiet {
        println!("{}", built.id);
    }
    Ok(ExitCode::SUCCESS)
}
