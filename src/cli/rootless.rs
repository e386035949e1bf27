//! A non-root user until rootless mode lands (issue 15 item 9): the store
//! defaults to the user's own (`$XDG_DATA_HOME/imgctl`, else
//! `$HOME/.local/share/imgctl`, Podman's convention), read-only commands work on
//! it (a missing store reads as empty), and a command that needs root says so in
//! one line before it does anything, instead of failing half-way with a warning
//! per file it could not chown.

use std::ffi::OsString;
use std::path::PathBuf;

use super::{Command, DEFAULT_ROOT};

/// The store root when neither `--root` nor `IMGCTL_ROOT` is given.
pub fn default_root() -> PathBuf {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    default_root_for(euid, |k| std::env::var_os(k))
}

fn default_root_for(euid: u32, env: impl Fn(&str) -> Option<OsString>) -> PathBuf {
    if euid == 0 {
        return PathBuf::from(DEFAULT_ROOT);
    }
    // The XDG base directory spec: a relative value is invalid and ignored.
    let abs = |k: &str| env(k).map(PathBuf::from).filter(|p| p.is_absolute());
    if let Some(d) = abs("XDG_DATA_HOME") {
        return d.join("imgctl");
    }
    if let Some(h) = abs("HOME") {
        return h.join(".local/share/imgctl");
    }
    PathBuf::from(DEFAULT_ROOT)
}

/// The command's name when it needs root today: it mounts, unpacks layers with
/// their owners, makes namespaces, cgroups or network devices.
fn needs_root(cmd: &Command) -> Option<&'static str> {
    Some(match cmd {
        Command::Pull(_) => "pull",
        Command::Run(_) => "run",
        Command::Create(_) => "create",
        Command::Start(_) => "start",
        Command::Restart(_) => "restart",
        Command::Exec(_) => "exec",
        Command::Build(_) => "build",
        Command::Bundle(_) => "bundle",
        Command::Mount(_) => "mount",
        Command::Umount(_) => "umount",
        Command::Load(_) => "load",
        Command::Import(_) => "import",
        Command::Network(_) => "network",
        Command::Check(a) if a.repair => "check --repair",
        Command::Size(a) if a.probe => "size --probe",
        _ => return None,
    })
}

/// For a non-root user, the one line a root-only command ends with (exit 125).
pub fn refusal(cmd: &Command) -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return None;
    }
    needs_root(cmd).map(|c| {
        format!("imgctl {c} needs root (rootless mode is not supported yet): run it with sudo")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<OsString> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn root_keeps_var_lib_and_users_get_their_data_home() {
        let both = env(&[("XDG_DATA_HOME", "/x/data"), ("HOME", "/home/u")]);
        assert_eq!(default_root_for(0, &both), PathBuf::from(DEFAULT_ROOT));
        assert_eq!(
            default_root_for(1000, &both),
            PathBuf::from("/x/data/imgctl")
        );
        assert_eq!(
            default_root_for(1000, env(&[("HOME", "/home/u")])),
            PathBuf::from("/home/u/.local/share/imgctl")
        );
        // A relative XDG_DATA_HOME is ignored, as the spec says.
        assert_eq!(
            default_root_for(1000, env(&[("XDG_DATA_HOME", "rel"), ("HOME", "/home/u")])),
            PathBuf::from("/home/u/.local/share/imgctl")
        );
        assert_eq!(
            default_root_for(1000, env(&[])),
            PathBuf::from(DEFAULT_ROOT)
        );
    }
}
