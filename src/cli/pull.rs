//! `imgctl pull`: fetch an image from a registry into the store and, unless
//! `--no-unpack`, extract each layer into the snapshots as soon as its blob is in
//! (download, decompression and extraction pipelined).

use std::collections::HashMap;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use super::Globals;
use crate::oci::{Platform, Reference};
use crate::registry::{
    Client, DockerConfig, Event, Progress, PullOptions, PulledImage, RegistryConfig, RetryPolicy,
};
use crate::store::Store;

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Registries: mirrors and insecure hosts come from /etc/imgctl/registries.toml and
$XDG_CONFIG_HOME/imgctl/registries.toml ([[registry]] location, mirrors, insecure);
IMGCTL_REGISTRY_MIRROR=host[:port][,...] adds docker.io mirrors. Loopback and insecure
hosts may use plain HTTP (HTTPS is tried first). Extra CA certificates: *.crt in
/etc/imgctl/certs.d/<host[:port]>/ or $XDG_CONFIG_HOME/imgctl/certs.d/<host[:port]>/.
Credentials: `imgctl login`, i.e. $DOCKER_CONFIG/config.json or ~/.docker/config.json
(auths, credsStore, credHelpers).
Interrupted downloads resume on the next pull; `imgctl prune` drops them.")]
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
    let platform = match &a.platform {
        Some(p) => Platform::parse(p)?,
        None => Platform::host(),
    };
    let store = Store::open(&g.root).with_context(|| format!("open store {}", g.root.display()))?;
    let client = Client::new(
        RegistryConfig::load()?,
        DockerConfig::default_location(),
        RetryPolicy::default(),
    );
    let progress: Arc<dyn Progress> = if a.quiet {
        Arc::new(())
    } else if std::io::stderr().is_terminal() {
        Arc::new(Bars::default())
    } else {
        Arc::new(Lines)
    };
    let mut opts = PullOptions {
        platform,
        max_concurrent_downloads: usize::from(a.max_concurrent_downloads),
        require_platform: a.platform.is_some(),
        notify: None,
    };
    let rt = runtime()?;
    let pulled = if a.no_unpack {
        rt.block_on(client.pull(&store, &reference, &opts, progress))
            .with_context(|| format!("pull {reference}"))?
    } else {
        pull_and_unpack(g, &store, &client, &reference, &mut opts, progress, &rt)?
    };
    drop(rt);
    if a.quiet {
        println!("{reference}");
    } else {
        println!("Digest: {}", pulled.repo_digest());
        println!(
            "Status: {} for {reference} ({} bytes fetched from {})",
            if pulled.downloaded > 0 {
                "Downloaded newer image"
            } else {
                "Image is up to date"
            },
            pulled.downloaded,
            pulled.endpoint
        );
        println!("{reference}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Pull with download, decompression and extraction pipelined: the registry client
/// announces each blob as it is committed, and [`crate::image::unpack_as_committed`]
/// extracts that layer on its own threads while other blobs are still downloading.
/// When the pull succeeds, [`crate::image::unpack`] commits the chain bottom-up
/// (extracting whatever was not done early); when it fails, layers not yet started
/// are skipped and no chain is committed. Every unpack thread is joined before this
/// returns.
fn pull_and_unpack(
    g: &Globals,
    store: &Store,
    client: &Client,
    reference: &Reference,
    opts: &mut PullOptions,
    progress: Arc<dyn Progress>,
    rt: &tokio::runtime::Runtime,
) -> anyhow::Result<PulledImage> {
    let (tx, rx) = std::sync::mpsc::channel();
    opts.notify = Some(tx);
    let cancel = AtomicBool::new(false);
    let unpack_opts = crate::image::UnpackOptions::default();
    let (pulled, early) = std::thread::scope(|s| {
        let worker = s
            .spawn(|| crate::image::unpack_as_committed(store, &g.root, rx, &cancel, &unpack_opts));
        let pulled = rt.block_on(client.pull(store, reference, opts, progress));
        if pulled.is_err() {
            cancel.store(true, Ordering::SeqCst);
        }
        // Closing the channel tells the unpacker the pull is over.
        opts.notify = None;
        let early = worker.join();
        (pulled, early)
    });
    let pulled = pulled.with_context(|| format!("pull {reference}"))?;
    match early {
        Ok(r) => {
            r.with_context(|| format!("unpack {reference}"))?;
        }
        Err(_) => anyhow::bail!("unpack {reference}: the unpack thread panicked"),
    }
    crate::image::unpack(store, &pulled.descriptor.digest, &g.root)
        .with_context(|| format!("unpack {reference}"))?;
    Ok(pulled)
}

/// A tokio runtime for network work (a few threads: downloads are I/O bound).
pub(super) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("start async runtime")
}

/// Plain one-line events on stdout for logs (stderr is not a terminal); stderr
/// stays reserved for the one-line error.
struct Lines;

impl Progress for Lines {
    fn event(&self, e: &Event) {
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
            } if *offset > 0 => {
                println!("{}: resuming at {offset} of {size} bytes", digest.short())
            }
            Event::Start { digest, size, .. } => {
                println!("{}: downloading {size} bytes", digest.short())
            }
            Event::Retry {
                digest,
                offset,
                error,
            } => println!("{}: retrying from byte {offset}: {error}", digest.short()),
            Event::Done { digest } => println!("{}: verified and stored", digest.short()),
            Event::Bytes { .. } => {}
        }
    }
}

/// One bar per blob on a terminal.
#[derive(Default)]
struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl Bars {
    fn bar(&self, key: &str, size: u64) -> ProgressBar {
        let mut bars = self.bars.lock().unwrap_or_else(|p| p.into_inner());
        bars.entry(key.to_string())
            .or_insert_with(|| {
                let b = self.multi.add(ProgressBar::new(size));
                let style = ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
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
