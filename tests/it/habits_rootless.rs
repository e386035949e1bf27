//! imgctl as a non-root user (issue 15 item 9), tested as uid 65534 through
//! `setpriv`: the store defaults to `$XDG_DATA_HOME/imgctl`, read-only commands
//! on a missing store print their header and exit 0, and a command that needs
//! root prints one line saying so (no warning per file, no colour codes) and
//! exits 125, creating nothing.

use std::os::unix::fs::chown;
use std::path::Path;
use std::process::{Command, Output};

use crate::common::{self, have, imgctl, imgctl_bin, is_root, ok, output, require};

const NOBODY: u32 = 65534;

/// `imgctl ARGS` as uid/gid 65534 with no supplementary groups, HOME and
/// XDG_DATA_HOME under `dir`, and no store or colour settings from outside.
fn as_nobody(dir: &Path, args: &[&str]) -> Output {
    output(
        Command::new("setpriv")
            .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
            .arg(imgctl_bin())
            .args(args)
            .env("HOME", dir.join("home"))
            .env("XDG_DATA_HOME", dir.join("data"))
            .env_remove("IMGCTL_ROOT")
            .env_remove("NO_COLOR")
            .env_remove("CLICOLOR_FORCE")
            .env_remove("IMGCTL_LOG"),
    )
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn a_non_root_user_gets_an_own_store_and_one_line_for_what_needs_root() {
    if !(require(is_root(), "root (to become uid 65534)")
        && require(have("setpriv"), "setpriv (util-linux)"))
    {
        return;
    }
    let t = common::tempdir();
    let dir = t.path();
    for d in [dir.to_path_buf(), dir.join("home")] {
        std::fs::create_dir_all(&d).unwrap();
        chown(&d, Some(NOBODY), Some(NOBODY)).unwrap();
    }
    let store = dir.join("data/imgctl");

    // Read-only commands on a missing store: the header only, exit 0, nothing made.
    for (cmd, header) in [
        (&["images"][..], "REPOSITORY"),
        (&["ps", "-a"], "CONTAINER ID"),
    ] {
        let out = as_nobody(dir, cmd);
        assert!(out.status.success(), "{cmd:?}: {}", text(&out.stderr));
        let stdout = text(&out.stdout);
        assert_eq!(stdout.lines().count(), 1, "{cmd:?}: {stdout}");
        assert!(stdout.starts_with(header), "{cmd:?}: {stdout}");
        assert_eq!(text(&out.stderr), "", "{cmd:?}");
    }
    let out = as_nobody(dir, &["df"]);
    assert!(out.status.success(), "df: {}", text(&out.stderr));
    assert!(
        !dir.join("data").exists(),
        "a read-only command made the store"
    );

    // What needs root: one line at the start, exit 125, no colour, nothing made.
    for cmd in [
        &["run", "busybox", "true"][..],
        &["run", "--rm", "-it", "busybox", "sh"],
        &["pull", "busybox"],
        &["build", "."],
    ] {
        let out = as_nobody(dir, cmd);
        assert_eq!(out.status.code(), Some(125), "{cmd:?}");
        let err = text(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{cmd:?}: one line: {err}");
        assert!(
            err.starts_with(&format!("imgctl {} needs root", cmd[0])) && err.contains("sudo"),
            "{cmd:?}: {err}"
        );
        assert!(!err.contains('\x1b'), "{cmd:?}: colour codes: {err:?}");
        assert_eq!(text(&out.stdout), "", "{cmd:?}");
    }
    assert!(
        !dir.join("data").exists(),
        "a refused command made the store"
    );

    // The default store is $XDG_DATA_HOME/imgctl: an image put there is listed.
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    std::fs::write(rootfs.join("hello"), "hi\n").unwrap();
    ok(imgctl(&store).args(["import", rootfs.to_str().unwrap(), "rootless/probe:1"]));
    let chowned = Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(dir.join("data"))
        .status()
        .unwrap();
    assert!(chowned.success());
    let out = as_nobody(dir, &["images"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("rootless/probe"),
        "{}",
        text(&out.stdout)
    );
    // --root still wins over the default.
    let other = dir.join("other");
    let out = as_nobody(dir, &["--root", other.to_str().unwrap(), "images"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!text(&out.stdout).contains("rootless/probe"));
}
