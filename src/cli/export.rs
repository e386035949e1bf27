//! `imgctl export IMAGE -o rootfs.tar`: the image's flattened filesystem as one tar.
//! The output file is created 0600: it holds every file of the image, including
//! ones the image keeps from other users (e.g. /etc/shadow).
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::Globals;
use crate::image;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Image to export: a name or ID in the store, or `oci:DIR[:TAG]`.
    pub image: String,
    /// Output file (`-` for standard output).
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
}

pub fn run(g: &Globals, a: Args) -> anyhow::Result<ExitCode> {
    let img = image::resolve_image(&g.root, &a.image)?;
    if a.output.as_os_str() == "-" {
        image::export_tar(&g.root, &img, std::io::stdout().lock())
            .with_context(|| format!("export {}", a.image))?;
    } else {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&a.output)
            .with_context(|| format!("create {}", a.output.display()))?;
        image::export_tar(&g.root, &img, f)
            .with_context(|| format!("export {} to {}", a.image, a.output.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}
