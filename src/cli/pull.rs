//! `imgctl pull`: fetch an image from a registry into the store and, unless
//! `--no-unpack`, extract each layer into the snapshots as soon as its blob is in
//! (download, decompression and extraction pipelined).

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use indicatif::{MultiProgress, ProgressBar};

use super::units::{self, Steps};
use super::Globals;
use crate::image::{self, Event, Progress, PullRequest};
use crate::oci::{Platform, Reference};

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Registries: mirrors and insecure hosts come from /etc/imgctl/registries.toml and
$XDG_CONFIG_HOME/imgctl/registries.toml ([[registry]] location, mirrors, insecure);
IMGCTL_REGISTRY_MIRROR=host[:port][,...] adds docker.io mirrors. Loopback and insecure
hosts may use plain HTTP (HTTPS is tried first). Extra CA certificates: *.crt in
/etc/imgctl/certs.d/<host[:port]>/ or $XDG_CONFIG_HOME/imgctl/certs.d/<host[:port]>/.
Credentials: `imgctl login`, i.e. $DOCKER_CONFIG/config.json or ~/.docker/config.json
(auths, credsStore, credHelpers).
Interrupted downloads resume on the next pull; `imgctl prune` drops them.

Examples:
  imgctl pull busybox
  imgctl pull --platform linux/arm64 127.0.0.1:5000/library/nginx:latest
  imgctl pull -q --no-unpack nginx:1.27")]
pub struct Args {
    /// Image reference, e.g. `nginx`, `127.0.0.1:5000/library/nginx:latest`,
    /// `name@sha256:<hex>`. Short names are on docker.io (mirrors from
    /// IMGCTL_REGISTRY_MIRROR and registries.toml are tried first).
    pub reference: String,

    /// Platform to choose from a multi-platform image, `os/arch[/variant]`
    /// (default: this host).
    #[arg(long)]
    pub platform: Option<String>,

    /// How many blobs to download at once.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub max_concurrent_downloads: u16,

    /// Store the image but do not unpack its layers into snapshots.
    #[arg(long)]
    pub no_unpack: bool,

    /// Print only the image reference when done; no progress.
    #[arg(short, long)]
    pub quiet: bool,
}

pub fn run(g: &Globals, a: Args) -> anyhow::Result<ExitCode> {
    let reference = Reference::parse(&a.reference)?;
    let platform = a.platform.as_deref().map(Platform::parse).transpose()?;
    let progress = progress_sink(a.quiet, false);
    let req = PullRequest {
        reference: reference.clone(),
        platform,
        max_concurrent_downloads: usize::from(a.max_concurrent_downloads),
        unpack: !a.no_unpack,
    };
    let pulled = image::pull(&g.root, &req, progress)?;
    let mut out = std::io::stdout().lock();
    if !a.quiet {
        writeln!(out, "Digest: {}", pulled.repo_digest())?;
        writeln!(
            out,
            "Status: {} for {reference} ({} fetched from {})",
            if pulled.downloaded > 0 {
                "Downloaded newer image"
            } else {
                "Image is up to date"
            },
            units::size(pulled.downloaded),
            pulled.endpoint
        )?;
    }
    writeln!(out, "{reference}")?;
    Ok(ExitCode::SUCCESS)
}

/// The progress `pull` shows: bars on a terminal (stderr), else one line per
/// event, on stdout for `pull` or on stderr (`to_stderr`) for commands whose
/// stdout is something else (`run` pulling a missing image).
pub(crate) fn progress_sink(quiet: bool, to_stderr: bool) -> Arc<dyn Progress> {
    if quiet {
        Arc::new(())
    } else if std::io::stderr().is_terminal() {
        Arc::new(Bars::default())
    } else {
        Arc::new(Lines {
            to_stderr,
            steps: Steps::default(),
        })
    }
}

/// Plain one-line events for logs (stderr is not a terminal): on stdout for
/// `pull`, where stderr stays reserved for the one-line error. One line per
/// state change of a blob, and one per quarter of a large one; sizes in
/// Docker's units.
struct Lines {
    to_stderr: bool,
    steps: Steps,
}

impl Progress for Lines {
    fn event(&self, e: &Event) {
        // Progress is best effort: a closed stdout must not fail the pull.
        macro_rules! println {
            ($($t:tt)*) => {{
                let _ = if self.to_stderr {
                    writeln!(std::io::stderr(), $($t)*)
                } else {
                    writeln!(std::io::stdout(), $($t)*)
                };
            }};
        }
        match e {
            Event::Resolved {
                reference,
                endpoint,
                digest,
            } => println!("{reference}: resolved to {digest} on {endpoint}"),
            Event::Exists { digest, .. } => println!("{}: already exists", digest.short()),
            Event::Waiting { digest } => {
                println!("{}: waiting for another imgctl process", digest.short())
            }
            Event::Start {
                digest,
                size,
                offset,
            } => {
                self.steps.start(digest.short(), *size, *offset);
                if *offset > 0 {
                    println!(
                        "{}: resuming at {}",
                        digest.short(),
                        units::of(*offset, *size)
                    )
                } else {
                    println!("{}: downloading {}", digest.short(), units::size(*size))
                }
            }
            Event::Bytes { digest, written } => {
                if let Some(size) = self.steps.passed(digest.short(), *written) {
                    println!(
                        "{}: downloading {}",
                        digest.short(),
                        units::of(*written, size)
                    )
                }
            }
            Event::Retry {
                digest,
                offset,
                error,
            } => match self.steps.size(digest.short()) {
                Some(size) => println!(
                    "{}: retrying at {}: {error}",
                    digest.short(),
                    units::of(*offset, size)
                ),
                None => println!(
                    "{}: retrying at {}: {error}",
                    digest.short(),
                    units::size(*offset)
                ),
            },
            Event::Done { digest } => match self.steps.size(digest.short()) {
                Some(size) => println!(
                    "{}: verified and stored ({})",
                    digest.short(),
                    units::size(size)
                ),
                None => println!("{}: verified and stored", digest.short()),
            },
        }
    }
}

/// One bar per blob on a terminal (pull and push).
#[derive(Default)]
pub(super) struct Bars {
    pub(super) multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl Bars {
    pub(super) fn bar(&self, key: &str, size: u64) -> ProgressBar {
        let mut bars = self.bars.lock().unwrap_or_else(|p| p.into_inner());
        bars.entry(key.to_string())
            .or_insert_with(|| {
                let b = self.multi.add(ProgressBar::new(size));
                // Docker's units, not indicatif's binary `{bytes}`.
                let style = units::bar_style(
                    "{prefix} [{bar:30}] {dsize}/{dtotal} {drate} ETA {eta} {msg}",
                )
                .progress_chars("=> ");
                b.set_style(style);
                b.set_prefix(key.to_string());
                b
            })
            .clone()
    }
}

impl Progress for Bars {
    fn event(&self, e: &Event) {
        match e {
            Event::Resolved {
                reference, digest, ..
            } => {
                let _ = self.multi.println(format!("{reference}: {digest}"));
            }
            Event::Exists { digest, size } => {
                let b = self.bar(digest.short(), *size);
                b.set_position(*size);
                b.finish_with_message("already exists");
            }
            Event::Waiting { digest } => {
                self.bar(digest.short(), 0)
                    .set_message("waiting for another imgctl process");
            }
            Event::Start {
                digest,
                size,
                offset,
            } => {
                let b = self.bar(digest.short(), *size);
                b.set_length(*size);
                b.set_position(*offset);
                b.set_message(if *offset > 0 { "resuming" } else { "" });
            }
            Event::Bytes { digest, written } => self.bar(digest.short(), 0).set_position(*written),
            Event::Retry { digest, error, .. } => self
                .bar(digest.short(), 0)
                .set_message(format!("retrying: {error}")),
            Event::Done { digest } => self.bar(digest.short(), 0).finish_with_message("done"),
        }
    }
}
