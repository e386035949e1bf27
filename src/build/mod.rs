//! The build executor: a Buildfile plan (stage graph) -> images in the store.
//!
//! Owns the joining of the lower layers for `imgctl build`: the context ([`context`]),
//! COPY/ADD semantics ([`copy`]), RUN steps through the sandbox ([`run`]), the step
//! cache ([`cache`]), config instructions ([`config`]) and the executor that walks the
//! stages ([`exec`]) and commits each step's layer through [`crate::image::commit`].
//!
//! Entry point: [`build`] with [`BuildOptions`] and a [`Progress`] sink.

pub mod cache;
pub mod config;
pub mod context;
pub mod copy;
mod exec;
pub mod import;
pub mod output;
pub mod progress;
pub mod remote;
pub mod run;

use std::path::PathBuf;

pub use crate::layer::Compression;
use crate::oci::{Digest, Reference};

pub use progress::{Event, Progress};

/// Errors of the build module. Every variant that comes from a Buildfile instruction
/// names where (`Buildfile:LINE`), so the CLI can print the line with a caret.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The Buildfile could not be parsed, resolved or planned.
    #[error(transparent)]
    Buildfile(#[from] crate::buildfile::Error),
    /// The build context is unusable (missing, not a directory, unreadable ignore file).
    #[error("build context {}: {message}", .path.display())]
    Context { path: PathBuf, message: String },
    /// A COPY/ADD source is invalid (outside the context, no match, unreadable).
    #[error("{at}: {message}")]
    Source { at: String, message: String },
    /// An instruction or flag is invalid or unsupported here.
    #[error("{at}: {message}")]
    Instruction { at: String, message: String },
    /// A RUN step exited non-zero (or was killed).
    #[error("{}: {}: {}", .0.at, .0.what, .0.reason)]
    StepFailed(Box<StepFailure>),
    /// A filesystem operation failed.
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Any other failure from a lower layer (store, image, sandbox, registry).
    #[error("{0}")]
    Other(String),
}

impl BuildError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> BuildError {
        BuildError::Io {
            path: path.into(),
            source,
        }
    }

    /// The exit code `imgctl build` ends with: a failed step's own code, else 125.
    pub fn exit_code(&self) -> i32 {
        match self {
            BuildError::StepFailed(f) if f.code > 0 => f.code,
            _ => 125,
        }
    }
}

/// Why a RUN step failed, with what the CLI needs to show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepFailure {
    /// `Buildfile:LINE`.
    pub at: String,
    /// The instruction as written (first line).
    pub what: String,
    /// "did not complete successfully: exit code 3", "killed: out of memory (...)".
    pub reason: String,
    /// The step's exit code (what `imgctl build` exits with).
    pub code: i32,
    /// The source line, for a caret display.
    pub source_line: String,
    /// The last lines of the step's output.
    pub tail: String,
}

/// Where a secret's value comes from (`--secret id=X,src=F|env=V`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    File(PathBuf),
    Env(String),
}

/// A build secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Secret {
    pub id: String,
    pub source: SecretSource,
}

impl Secret {
    /// Parse `id=X,src=F`, `id=X,env=V`, `id=X` (env X) as Docker does.
    pub fn parse(s: &str) -> Result<Secret, String> {
        let mut id = None;
        let mut source = None;
        for part in s.split(',') {
            let (k, v) = part.split_once('=').ok_or_else(|| {
                format!("invalid --secret {s:?}: expected id=ID,src=FILE or id=ID,env=VAR")
            })?;
            match k.trim() {
                "id" => id = Some(v.to_string()),
                "src" | "source" => source = Some(SecretSource::File(PathBuf::from(v))),
                "env" => source = Some(SecretSource::Env(v.to_string())),
                "type" if v == "file" || v == "env" => {}
                other => {
                    return Err(format!(
                        "invalid --secret {s:?}: unknown key {other:?} (use id, src or env)"
                    ))
                }
            }
        }
        let id = id
            .filter(|i| !i.is_empty() && !i.contains('/') && i != "." && i != "..")
            .ok_or_else(|| format!("invalid --secret {s:?}: id=ID is required (no '/')"))?;
        let source = source.unwrap_or_else(|| SecretSource::Env(id.clone()));
        Ok(Secret { id, source })
    }

    /// The secret's bytes.
    pub fn value(&self) -> Result<Vec<u8>, BuildError> {
        match &self.source {
            SecretSource::File(p) => std::fs::read(p).map_err(|e| BuildError::io(p, e)),
            SecretSource::Env(v) => std::env::var(v).map(String::into_bytes).map_err(|_| {
                BuildError::Other(format!(
                    "secret {}: environment variable {v} is not set",
                    self.id
                ))
            }),
        }
    }
}

/// Network of RUN steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Network {
    /// Its own namespace on the default bridge network, outbound through NAT
    /// (Docker's default for RUN).
    #[default]
    Bridge,
    Host,
    None,
}

/// Resource limits and devices applied to every RUN step.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    pub memory: Option<i64>,
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<u64>,
    pub pids: Option<i64>,
    /// `--device`: host devices every RUN step gets (as `docker build --device`).
    pub devices: Vec<crate::container::parse::DeviceFlag>,
    /// `--shm-size` of RUN steps' /dev/shm.
    pub shm_size: Option<i64>,
    /// `--ulimit name=soft[:hard]` of RUN steps.
    pub ulimits: Vec<(String, u64, u64)>,
}

/// `--output type=oci|docker,dest=F`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub kind: OutputKind,
    pub dest: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    Oci,
    Docker,
}

/// Where the Buildfile comes from.
#[derive(Debug, Clone)]
pub enum BuildfileSource {
    /// `Buildfile`, then `Dockerfile`, in the context.
    Default,
    Path(PathBuf),
    /// Text read by the caller (`-f -`).
    Text(String),
}

/// Everything one build needs (what will be done, built once by the CLI).
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The store root.
    pub root: PathBuf,
    pub context: PathBuf,
    pub buildfile: BuildfileSource,
    pub tags: Vec<Reference>,
    pub target: Option<String>,
    pub build_args: Vec<(String, String)>,
    /// `--platform` (must be this host's platform).
    pub platform: Option<String>,
    pub no_cache: bool,
    /// Stages (names or indexes) that must not use the cache.
    pub no_cache_filter: Vec<String>,
    pub pull: bool,
    pub labels: Vec<(String, String)>,
    pub secrets: Vec<Secret>,
    pub jobs: usize,
    pub limits: Limits,
    pub network: Network,
    pub compression: Compression,
    pub output: Option<Output>,
    /// Where cgroupfs is mounted.
    pub cgroup_root: PathBuf,
    /// `--cache-to`: where to export this build's cache records.
    pub cache_to: Vec<remote::CacheExport>,
    /// `--cache-from`: caches to take steps from when the local cache misses.
    pub cache_from: Vec<remote::CacheRef>,
    /// `--push`: push every tag after the build.
    pub push: bool,
}

impl BuildOptions {
    /// Options for building `context` into the store at `root` with defaults.
    pub fn new(root: PathBuf, context: PathBuf) -> BuildOptions {
        BuildOptions {
            root,
            context,
            buildfile: BuildfileSource::Default,
            tags: Vec::new(),
            target: None,
            build_args: Vec::new(),
            platform: None,
            no_cache: false,
            no_cache_filter: Vec::new(),
            pull: false,
            labels: Vec::new(),
            secrets: Vec::new(),
            jobs: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            limits: Limits::default(),
            network: Network::Bridge,
            compression: Compression::Gzip,
            output: None,
            cgroup_root: PathBuf::from("/sys/fs/cgroup"),
            cache_to: Vec::new(),
            cache_from: Vec::new(),
            push: false,
        }
    }
}

/// What a build produced.
#[derive(Debug, Clone)]
pub struct Built {
    /// The image ID (config digest, as Docker shows it).
    pub id: Digest,
    pub manifest: Digest,
    /// Steps run and steps taken from the cache.
    pub steps_run: usize,
    pub steps_cached: usize,
    /// `--push`: where each tag went and the manifest digest the registry has.
    pub pushed: Vec<(Reference, Digest)>,
}

/// Build the Buildfile in `opts` into the store. Nothing is tagged unless every
/// stage the target needs succeeded.
pub fn build(opts: &BuildOptions, progress: &dyn Progress) -> Result<Built, BuildError> {
    exec::build(opts, progress)
}
