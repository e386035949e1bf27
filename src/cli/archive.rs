//! `imgctl save`, `imgctl load` and `imgctl import`: images as files (docs/archives.md).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::{Exit, Globals};
use crate::build::import as import_lib;
use crate::image::archive::{self, Format, ImportSource};
use crate::oci::Reference;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  imgctl save -o busybox.tar busybox\n  imgctl save --format oci-archive nginx:latest app:1 | gzip > images.tar.gz\n  imgctl save busybox | ssh host docker load"
)]
pub struct SaveArgs {
    /// Images to save: names (a name without tag saves every tag of it), IDs, or
    /// `oci:DIR[:TAG]`. Blobs shared by several images are written once.
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
    /// Write to this file instead of standard output.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Archive format: `docker-archive` (what `docker load` reads; also an OCI
    /// layout) or `oci-archive` (an OCI image layout in a tar).
    #[arg(long, default_value = "docker-archive", value_parser = ["docker-archive", "oci-archive"])]
    pub format: String,
}

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  imgctl load -i busybox.tar\n  docker save nginx | imgctl load\n  imgctl load -i images.tar.zst"
)]
pub struct LoadArgs {
    /// Read the archive from this file instead of standard input (docker-archive or
    /// oci-archive, plain or gzip/zstd/xz-compressed).
    #[arg(short = 'i', long = "input", value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Accepted for Docker compatibility: load shows no progress, only the
    /// `Loaded image:` lines Docker prints with `-q` too.
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  imgctl import rootfs.tar myimage:1\n  tar -C rootfs -c . | imgctl import - myimage --change 'CMD [\"/bin/sh\"]'\n  imgctl import ./rootfs-dir myimage --change 'ENV PATH=/bin' --change 'WORKDIR /srv'"
)]
pub struct ImportArgs {
    /// A root filesystem: a tar file (plain or gzip/zstd/xz), a directory, or `-`
    /// for a tar on standard input.
    #[arg(value_name = "ROOTFS")]
    pub source: String,
    /// Name for the new image (`NAME[:TAG]`).
    #[arg(value_name = "NAME[:TAG]")]
    pub name: Option<String>,
    /// A Buildfile instruction to apply to the config (CMD, ENTRYPOINT, ENV,
    /// EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR); repeatable.
    #[arg(short = 'c', long = "change", value_name = "INSTRUCTION")]
    pub change: Vec<String>,
    /// Comment for the layer's history entry.
    #[arg(short = 'm', long = "message")]
    pub message: Option<String>,
}

/// Standard input as a plain file: large reads, no line buffer in between.
fn stdin_file() -> anyhow::Result<std::fs::File> {
    use std::os::fd::AsFd;
    let fd = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .context("standard input")?;
    Ok(std::fs::File::from(fd))
}

fn own_error(message: String) -> anyhow::Error {
    anyhow::Error::new(Exit {
        code: 125,
        message: Some(message),
    })
}

pub fn save(g: &Globals, a: SaveArgs) -> anyhow::Result<ExitCode> {
    let format = Format::parse(&a.format).unwrap_or(Format::Docker);
    let what = a.images.join(" ");
    match &a.output {
        Some(path) if path.as_os_str() != "-" => {
            archive::save_to_file(&g.root, &a.images, format, path)
                .with_context(|| format!("save {what} to {}", path.display()))?;
        }
        _ => {
            let stdout = std::io::stdout();
            if stdout.is_terminal() {
                return Err(own_error(
                    "cowardly refusing to save to a terminal: use -o FILE or redirect standard output"
                        .into(),
                ));
            }
            archive::save(&g.root, &a.images, format, stdout.lock())
                .with_context(|| format!("save {what}"))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn load(g: &Globals, a: LoadArgs) -> anyhow::Result<ExitCode> {
    let loaded = match &a.input {
        Some(path) if path.as_os_str() != "-" => {
            let f = std::fs::File::open(path)
                .with_context(|| format!("load: open {}", path.display()))?;
            archive::load(&g.root, f).with_context(|| format!("load {}", path.display()))?
        }
        _ => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                return Err(own_error(
                    "requested load from standard input, but it is a terminal: use -i FILE or redirect standard input".into(),
                ));
            }
            archive::load(&g.root, stdin_file()?).context("load from standard input")?
        }
    };
    let _ = a.quiet;
    for img in &loaded {
        if img.names.is_empty() {
            println!("Loaded image ID: {}", img.id);
        }
        for n in &img.names {
            match n.tag() {
                Some(t) => println!("Loaded image: {}:{t}", n.familiar_name()),
                None => println!("Loaded image: {}", n.familiar_name()),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn import(g: &Globals, a: ImportArgs) -> anyhow::Result<ExitCode> {
    let name = a
        .name
        .as_deref()
        .map(Reference::parse)
        .transpose()
        .context("import: image name")?;
    let source = if a.source == "-" {
        if std::io::stdin().is_terminal() {
            return Err(own_error(
                "import -: standard input is a terminal: pipe a tar into it or name a file".into(),
            ));
        }
        ImportSource::Tar(Box::new(stdin_file()?))
    } else {
        let p = PathBuf::from(&a.source);
        if p.is_dir() {
            ImportSource::Dir(p)
        } else {
            let f =
                std::fs::File::open(&p).with_context(|| format!("import: open {}", p.display()))?;
            ImportSource::Tar(Box::new(f))
        }
    };
    let c = import_lib::import(&g.root, source, name, &a.change, a.message)
        .with_context(|| format!("import {}", a.source))?;
    println!("{}", c.config);
    Ok(ExitCode::SUCCESS)
}
