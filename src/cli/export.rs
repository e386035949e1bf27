//! `imgctl export IMAGE -o rootfs.tar`: the image's flattened filesystem as one tar.
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::Globals;
use crate::image;
use crate::layer::{self, Compression, DiffOptions, Limits, WhiteoutFormat};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Image to export: a name or ID in the store, or `oci:DIR[:TAG]`.
    pub image: String,
    /// Output file (`-` for standard output).
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
}

pub fn run(g: &Globals, a: Args) -> anyhow::Result<ExitCode> {
    let (blobs, manifest) = super::mount::resolve_image(g, &a.image)?;
    let tmp_parent = g.root.join("tmp");
    crate::sys::fs::create_private_dir_all(&tmp_parent)
        .with_context(|| format!("create {}", tmp_parent.display()))?;
    let tmp = tempdir_in(&tmp_parent)?;
    let result = (|| -> anyhow::Result<()> {
        image::flatten_into(blobs.as_ref(), &manifest, &tmp, Limits::default())
            .with_context(|| format!("export {}", a.image))?;
        let opts = DiffOptions {
            compression: Compression::None,
            source_date_epoch: None,
            whiteouts: WhiteoutFormat::None,
        };
        if a.output.as_os_str() == "-" {
            let out = std::io::stdout().lock();
            layer::write_layer(&tmp, std::io::BufWriter::new(out), &opts)?;
        } else {
            let f = std::fs::File::create(&a.output)
                .with_context(|| format!("create {}", a.output.display()))?;
            let mut w = std::io::BufWriter::new(f);
            layer::write_layer(&tmp, &mut w, &opts)?;
            w.flush()
                .with_context(|| format!("write {}", a.output.display()))?;
        }
        Ok(())
    })();
    if let Ok(fd) = crate::sys::fs::open_dir_path(&tmp_parent) {
        use std::os::fd::AsFd;
        use std::os::unix::ffi::OsStrExt;
        let name = tmp
            .file_name()
            .map(|n| n.as_bytes().to_vec())
            .unwrap_or_default();
        let _ = crate::sys::fs::remove_all_at(fd.as_fd(), &name);
    }
    result?;
    Ok(ExitCode::SUCCESS)
}

fn tempdir_in(parent: &std::path::Path) -> anyhow::Result<PathBuf> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let p = parent.join(format!("export-{}-{nanos}", std::process::id()));
    std::fs::create_dir(&p).with_context(|| format!("create {}", p.display()))?;
    Ok(p)
}
