//! `imgctl export IMAGE [-o rootfs.tar]`: the image's flattened filesystem as one tar,
//! to standard output when no file is named (never to a terminal; a reader that
//! goes away ends the export quietly, as `docker export` does).
//! The output file is created 0600: it holds every file of the image, including
//! ones the image keeps from other users (e.g. /etc/shadow).
use std::io::IsTerminal;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::Globals;
use crate::image;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  imgctl export busybox -o rootfs.tar\n  imgctl export nginx | tar -t | head\n  imgctl export --output rootfs.tar oci:./layout:latest"
)]
pub struct Args {
    /// Image to export: a name or ID in the store, or `oci:DIR[:TAG]`.
    pub image: String,
    /// Output file (`-` or none: standard output, which must not be a terminal).
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
}

pub fn run(g: &Globals, a: Args) -> anyhow::Result<ExitCode> {
    let to_stdout = a.output.as_ref().is_none_or(|o| o.as_os_str() == "-");
    if to_stdout && std::io::stdout().is_terminal() {
        return Err(anyhow::Error::new(super::Exit {
            code: 125,
            message: Some(
                "cowardly refusing to export to a terminal: use -o FILE or redirect standard output"
                    .into(),
            ),
        }));
    }
    let img = image::resolve_image(&g.root, &a.image)?;
    let Some(output) = a.output.filter(|_| !to_stdout) else {
        image::export_tar(&g.root, &img, std::io::stdout().lock())
            .with_context(|| format!("export {}", a.image))?;
        return Ok(ExitCode::SUCCESS);
    };
    {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&output)
            .with_context(|| format!("create {}", output.display()))?;
        image::export_tar(&g.root, &img, f)
            .with_context(|| format!("export {} to {}", a.image, output.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}
