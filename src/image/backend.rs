//! Which snapshotter new layers use: extracted files, or one EROFS image per layer
//! (issue 10: EROFS by default where the kernel mounts EROFS files).
//!
//! Precedence, highest first: the caller's explicit choice (an `UnpackOptions` or
//! `MountOptions` value), the process-wide choice (`--snapshotter` /
//! `IMGCTL_SNAPSHOTTER`, set once by the CLI), the store setting
//! (`"snapshotter"` in `ROOT/snapshots/config.json`), and finally detection: EROFS
//! when this kernel mounts a file-backed EROFS image, files otherwise. Detection runs
//! once per store and kernel release; its result is kept in the same file
//! (schemas/snapshot-config.schema.json), and a fallback to files is announced in
//! one line when it is detected.
//!
//! Layers already unpacked keep their form: a store may hold both, and every
//! consumer (mount, run, build, diff, export) works on either.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::{ImageError, LayerFormat};
use crate::layer::{self, ApplyMode, ApplyOptions, Compression};

static PROCESS_CHOICE: OnceLock<LayerFormat> = OnceLock::new();

/// Where the store setting and the detection result live.
pub const CONFIG_FILE: &str = "snapshots/config.json";

impl LayerFormat {
    /// `files` or `erofs`.
    pub fn as_str(self) -> &'static str {
        match self {
            LayerFormat::Files => "files",
            LayerFormat::Erofs => "erofs",
        }
    }
}

impl std::fmt::Display for LayerFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for LayerFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<LayerFormat, String> {
        match s {
            "files" => Ok(LayerFormat::Files),
            "erofs" => Ok(LayerFormat::Erofs),
            other => Err(format!(
                "unknown snapshotter {other:?}: expected files or erofs"
            )),
        }
    }
}

/// Choose the snapshotter for this process (the CLI's `--snapshotter`); the first
/// call wins.
pub fn set_process_snapshotter(format: LayerFormat) {
    let _ = PROCESS_CHOICE.set(format);
}

/// `ROOT/snapshots/config.json`.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoreConfig {
    /// The store setting: the snapshotter new layers use unless a command says
    /// otherwise. Absent: detected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshotter: Option<String>,
    /// What detection found, for the kernel it ran on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detected: Option<Detected>,
}

/// The result of probing for file-backed EROFS mounts.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Detected {
    /// `uname -r` when the probe ran; a different kernel probes again.
    pub kernel: String,
    pub erofs: bool,
    /// Why EROFS is not used, when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

fn config_path(root: &Path) -> PathBuf {
    root.join(CONFIG_FILE)
}

/// Read the store's snapshot configuration (default when absent).
pub fn store_config(root: &Path) -> Result<StoreConfig, ImageError> {
    let path = config_path(root);
    match std::fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| ImageError::Io {
            path,
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(StoreConfig::default()),
        Err(source) => Err(ImageError::Io { path, source }),
    }
}

fn write_config(root: &Path, cfg: &StoreConfig) -> Result<(), ImageError> {
    let path = config_path(root);
    let io = |source| ImageError::Io {
        path: path.clone(),
        source,
    };
    let dir = root.join("snapshots");
    crate::sys::fs::create_private_dir_all(&dir).map_err(io)?;
    let data = serde_json::to_vec_pretty(cfg).map_err(|e| io(std::io::Error::other(e)))?;
    crate::store::write_atomic(&path, &data, 0o644).map_err(io)
}

/// Set (or with `None` clear) the store setting.
pub fn set_store_snapshotter(root: &Path, format: Option<LayerFormat>) -> Result<(), ImageError> {
    let mut cfg = store_config(root)?;
    cfg.snapshotter = format.map(|f| f.as_str().to_string());
    write_config(root, &cfg)
}

fn kernel_release() -> String {
    rustix::system::uname()
        .release()
        .to_string_lossy()
        .into_owned()
}

/// The snapshotter for new layers of the store at `root`, given the caller's
/// explicit choice (see the module docs for the order).
pub fn layer_format(root: &Path, explicit: Option<LayerFormat>) -> Result<LayerFormat, ImageError> {
    if let Some(f) = explicit.or_else(|| PROCESS_CHOICE.get().copied()) {
        return Ok(f);
    }
    let mut cfg = store_config(root)?;
    if let Some(s) = &cfg.snapshotter {
        return s.parse().map_err(|e: String| ImageError::Io {
            path: config_path(root),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        });
    }
    let kernel = kernel_release();
    if let Some(d) = cfg.detected.as_ref().filter(|d| d.kernel == kernel) {
        return Ok(if d.erofs {
            LayerFormat::Erofs
        } else {
            LayerFormat::Files
        });
    }
    let (erofs, reason) = match probe_erofs(root) {
        Ok(()) => (true, None),
        Err(e) => (false, Some(e.to_string())),
    };
    if let Some(r) = &reason {
        tracing::warn!(
            "file-backed EROFS mounts do not work here ({r}); unpacking layers as files (choose with --snapshotter)"
        );
    }
    cfg.detected = Some(Detected {
        kernel,
        erofs,
        reason,
    });
    // A store that cannot record the result probes again next time; no failure.
    if let Err(e) = write_config(root, &cfg) {
        tracing::debug!("cannot record the snapshotter probe: {e}");
    }
    Ok(if erofs {
        LayerFormat::Erofs
    } else {
        LayerFormat::Files
    })
}

/// Mount a tiny EROFS image made by our own writer, and unmount it.
fn probe_erofs(root: &Path) -> std::io::Result<()> {
    let dir = root.join("snapshots");
    crate::sys::fs::create_private_dir_all(&dir)?;
    let probe = dir.join(format!(".probe-erofs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&probe);
    std::fs::create_dir(&probe)?;
    let r = (|| {
        let image = probe.join("probe.erofs");
        let target = probe.join("mnt");
        std::fs::create_dir(&target)?;
        let empty_tar = [0u8; 1024];
        layer::write_erofs(
            &empty_tar[..],
            Compression::None,
            &image,
            &ApplyOptions::new(ApplyMode::Overlay, "probe"),
        )
        .map_err(std::io::Error::other)?;
        crate::sys::fs::mount_erofs(&image, &target)?;
        crate::sys::fs::unmount(&target, true)
    })();
    let _ = std::fs::remove_dir_all(&probe);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_setting_wins_over_detection_and_round_trips() {
        let t = tempfile::tempdir().unwrap();
        set_store_snapshotter(t.path(), Some(LayerFormat::Files)).unwrap();
        assert_eq!(layer_format(t.path(), None).unwrap(), LayerFormat::Files);
        assert_eq!(
            layer_format(t.path(), Some(LayerFormat::Erofs)).unwrap(),
            LayerFormat::Erofs
        );
        set_store_snapshotter(t.path(), Some(LayerFormat::Erofs)).unwrap();
        assert_eq!(layer_format(t.path(), None).unwrap(), LayerFormat::Erofs);
        assert_eq!("erofs".parse::<LayerFormat>(), Ok(LayerFormat::Erofs));
        assert!("zfs".parse::<LayerFormat>().is_err());
    }
}
