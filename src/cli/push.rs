//! `imgctl push IMAGE [DEST]`: upload an image from the store to a registry.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;

use super::pull::Bars;
use super::units::{self, Steps};
use super::Globals;
use crate::image::{self, PushEvent, PushFormat, PushProgress, PushRequest};
use crate::oci::Reference;

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Blobs the registry already has are skipped (HEAD); a blob the store knows lives in
another repository of the same registry is mounted from there; the rest is uploaded,
several at once, and the manifest last. Auth, mirrors (never used for a push),
insecure hosts and CA certificates are those of `imgctl pull`. With --chunk-size an
interrupted push resumes where the registry's upload session stopped, when the
registry allows it.

Examples:
  imgctl push 127.0.0.1:5000/app:v1
  imgctl push app:v1 127.0.0.1:5000/team/app:v1
  imgctl push --format v2s2 --digestfile app.digest app:v1 127.0.0.1:5000/app:v1")]
pub struct Args {
    /// The image in the store (name or ID).
    pub image: String,

    /// Where to push, REGISTRY/REPOSITORY[:TAG|@DIGEST] (default: IMAGE itself).
    pub dest: Option<String>,

    /// Manifest schema: oci, or v2s2 (Docker image manifest v2, schema 2). Default:
    /// as stored (an image pulled as v2s2 keeps its original manifest).
    #[arg(long, value_parser = ["oci", "v2s2"])]
    pub format: Option<String>,

    /// Upload in chunks of this size (e.g. 1MiB, 8m) for proxies with body limits;
    /// resumable. Default: one request per blob.
    #[arg(long, value_name = "SIZE")]
    pub chunk_size: Option<String>,

    /// How many blobs to upload at once.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub max_concurrent_uploads: u16,

    /// Write the pushed manifest's digest to FILE.
    #[arg(long, value_name = "FILE")]
    pub digestfile: Option<PathBuf>,

    /// Print only REFERENCE@DIGEST when done; no progress.
    #[arg(short, long)]
    pub quiet: bool,
}

pub fn run(g: &Globals, a: Args) -> anyhow::Result<ExitCode> {
    let mut req = PushRequest::new(&a.image);
    req.dest = a.dest.as_deref().map(Reference::parse).transpose()?;
    if let Some(f) = &a.format {
        req.format = f.parse::<PushFormat>().map_err(anyhow::Error::msg)?;
    }
    if let Some(c) = &a.chunk_size {
        let n = crate::container::parse::bytes("--chunk-size", c)?;
        anyhow::ensure!(n > 0, "invalid --chunk-size {c:?}: must be at least 1 byte");
        req.chunk_size = Some(n as u64);
    }
    req.max_concurrent_uploads = usize::from(a.max_concurrent_uploads);
    let progress = sink(a.quiet);
    if !a.quiet {
        let shown = req.dest.clone().map(|d| d.name()).unwrap_or_else(|| {
            Reference::parse(&a.image)
                .map(|r| r.name())
                .unwrap_or_else(|_| a.image.clone())
        });
        println!("The push refers to repository [{shown}]");
    }
    let (dest, pushed) = image::push(&g.root, &req, progress)?;
    if let Some(f) = &a.digestfile {
        std::fs::write(f, pushed.digest.to_string())
            .with_context(|| format!("write --digestfile {}", f.display()))?;
    }
    let mut out = std::io::stdout().lock();
    if a.quiet {
        writeln!(out, "{}@{}", dest.name(), pushed.digest)?;
    } else {
        let tag = dest.tag().unwrap_or("");
        writeln!(
            out,
            "{}{}digest: {} size: {}",
            tag,
            if tag.is_empty() { "" } else { ": " },
            pushed.digest,
            pushed.size
        )?;
        writeln!(
            out,
            "Status: {} blobs uploaded ({}), {} already there, {} mounted",
            pushed.blobs_uploaded,
            units::size(pushed.uploaded_bytes),
            pushed.blobs_existing,
            pushed.blobs_mounted
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

fn sink(quiet: bool) -> Arc<dyn PushProgress> {
    if quiet {
        Arc::new(())
    } else if std::io::stderr().is_terminal() {
        Arc::new(Bars::default())
    } else {
        Arc::new(Lines::default())
    }
}

/// One line per state change of a blob on stdout (logs, CI), and one per
/// quarter of a large one; sizes in Docker's units.
#[derive(Default)]
struct Lines {
    steps: Steps,
}

impl PushProgress for Lines {
    fn event(&self, e: &PushEvent) {
        let line = match e {
            PushEvent::Exists { digest, .. } => format!("{}: Layer already exists", digest.short()),
            PushEvent::Mounted { digest, from } => {
                format!("{}: Mounted from {from}", digest.short())
            }
            PushEvent::Start {
                digest,
                size,
                offset,
            } => {
                self.steps.start(digest.short(), *size, *offset);
                if *offset > 0 {
                    format!(
                        "{}: resuming at {}",
                        digest.short(),
                        units::of(*offset, *size)
                    )
                } else {
                    format!("{}: uploading {}", digest.short(), units::size(*size))
                }
            }
            PushEvent::Bytes { digest, sent } => match self.steps.passed(digest.short(), *sent) {
                Some(size) => format!("{}: uploading {}", digest.short(), units::of(*sent, size)),
                None => return,
            },
            PushEvent::Retry { digest, error } => format!("{}: retrying: {error}", digest.short()),
            PushEvent::Done { digest } => match self.steps.size(digest.short()) {
                Some(size) => format!("{}: Pushed {}", digest.short(), units::size(size)),
                None => format!("{}: Pushed", digest.short()),
            },
            PushEvent::Manifest { .. } => return,
        };
        // Progress is best effort: a closed stdout must not fail the push.
        let _ = writeln!(std::io::stdout(), "{line}");
    }
}

impl PushProgress for Bars {
    fn event(&self, e: &PushEvent) {
        match e {
            PushEvent::Exists { digest, size } => {
                let b = self.bar(digest.short(), *size);
                b.set_position(*size);
                b.finish_with_message("Layer already exists");
            }
            PushEvent::Mounted { digest, from } => self
                .bar(digest.short(), 0)
                .finish_with_message(format!("Mounted from {from}")),
            PushEvent::Start {
                digest,
                size,
                offset,
            } => {
                let b = self.bar(digest.short(), *size);
                b.set_length(*size);
                b.set_position(*offset);
                b.set_message(if *offset > 0 { "resuming" } else { "" });
            }
            PushEvent::Bytes { digest, sent } => self.bar(digest.short(), 0).set_position(*sent),
            PushEvent::Retry { digest, error } => self
                .bar(digest.short(), 0)
                .set_message(format!("retrying: {error}")),
            PushEvent::Done { digest } => self.bar(digest.short(), 0).finish_with_message("Pushed"),
            PushEvent::Manifest { .. } => {}
        }
    }
}
