//! `imgctl import ... --change 'CMD ["/bin/sh"]'`: a root filesystem becomes a
//! one-layer image whose config the `--change` instructions set, applied by the
//! same rules as a Buildfile's config instructions (`build::config::apply`).
//! The layer itself is `image::archive::import`'s.

use std::path::Path;

use super::config::{self, StageFlags};
use crate::buildfile::{self, Command};
use crate::image::archive::{self, ArchiveError, ImportRequest, ImportSource};
use crate::image::commit::{Committed, Image};
use crate::oci::{go_arch, Reference};

/// Why an import failed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("--change {change:?}: {reason}")]
    Change { change: String, reason: String },
    #[error(transparent)]
    Archive(#[from] ArchiveError),
}

/// Instructions `--change` accepts (Docker's list).
fn allowed(c: &Command) -> bool {
    matches!(
        c,
        Command::Cmd { .. }
            | Command::Entrypoint { .. }
            | Command::Env { .. }
            | Command::Expose { .. }
            | Command::Label { .. }
            | Command::Onbuild { .. }
            | Command::Stopsignal { .. }
            | Command::User { .. }
            | Command::Volume { .. }
            | Command::Workdir { .. }
    )
}

/// The config of an imported image: an empty image for this host's platform with
/// `changes` applied in order.
pub fn import_config(changes: &[String]) -> Result<Image, ImportError> {
    let arch = go_arch(std::env::consts::ARCH);
    let variant = (arch == "arm64").then_some("v8");
    let mut image = Image::scratch("linux", arch, variant);
    let mut flags = StageFlags::default();
    for change in changes {
        let bad = |reason: String| ImportError::Change {
            change: change.clone(),
            reason,
        };
        // The parser wants a stage; the change is line 2 of this one.
        let text = format!("FROM scratch\n{change}");
        let parsed = buildfile::parse("--change", &text).map_err(|e| bad(e.to_string()))?;
        if parsed.instructions.len() < 2 {
            return Err(bad("no instruction".into()));
        }
        for ins in &parsed.instructions[1..] {
            if !allowed(&ins.command) {
                return Err(bad(format!(
                    "{} is not allowed here (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR are)",
                    ins.command.name()
                )));
            }
            config::apply(&mut image, &ins.command, &mut flags, "--change")
                .map_err(|e| bad(e.to_string()))?;
        }
    }
    Ok(image)
}

/// Import `source` as a one-layer image named `name` into the store at `root`.
pub fn import(
    root: &Path,
    source: ImportSource,
    name: Option<Reference>,
    changes: &[String],
    message: Option<String>,
) -> Result<Committed, ImportError> {
    let image = import_config(changes)?;
    Ok(archive::import(
        root,
        ImportRequest {
            source,
            image,
            name,
            message,
            created: None,
        },
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_set_the_config_and_others_are_refused() {
        let img = import_config(&[
            r#"CMD ["/bin/sh", "-c", "echo hi"]"#.into(),
            "ENV A=1 B=2".into(),
            "WORKDIR /srv".into(),
            "EXPOSE 80/tcp".into(),
        ])
        .unwrap();
        let c = img.config.config.unwrap();
        assert_eq!(c.cmd.unwrap(), ["/bin/sh", "-c", "echo hi"]);
        assert_eq!(c.working_dir.as_deref(), Some("/srv"));
        let env = c.env.unwrap();
        assert!(env.contains(&"A=1".to_string()) && env.contains(&"B=2".to_string()));
        assert!(c.exposed_ports.unwrap().contains_key("80/tcp"));
        for bad in ["RUN true", "FROM busybox", "COPY a b", "NOPE x"] {
            assert!(import_config(&[bad.into()]).is_err(), "{bad}");
        }
    }
}
