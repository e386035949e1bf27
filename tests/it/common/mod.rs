//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod sandbox;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// True when CI asked for every prerequisite to be present (`IMGCTL_TEST_STRICT=1`).
pub fn strict() -> bool {
    std::env::var("IMGCTL_TEST_STRICT")
        .map(|v| v == "1")
        .unwrap_or(false)
}

/// Check a prerequisite. Returns false (the caller returns early, i.e. skips) with a
/// message when it is missing; panics instead under `IMGCTL_TEST_STRICT=1`.
#[must_use]
pub fn require(ok: bool, what: &str) -> bool {
    if ok {
        return true;
    }
    if strict() {
        panic!("prerequisite missing under IMGCTL_TEST_STRICT=1: {what}");
    }
    eprintln!("SKIP: prerequisite missing: {what}");
    false
}

/// True when running as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// True when `prog` is found on PATH.
pub fn have(prog: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(prog).is_file()))
        .unwrap_or(false)
}

/// Path of the imgctl binary under test.
pub fn imgctl_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_imgctl"))
}

/// An imgctl invocation on a given store root.
pub fn imgctl(root: &Path) -> Command {
    let mut c = Command::new(imgctl_bin());
    c.env("IMGCTL_ROOT", root);
    c.env_remove("IMGCTL_REGISTRY_MIRROR");
    c
}

/// Run a command and return its output, panicking with stderr when it could not start.
pub fn output(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Run a command that must succeed; returns stdout as a string.
pub fn ok(cmd: &mut Command) -> String {
    let out = output(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}:\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Run a command that must fail; returns (exit code, stderr).
pub fn fails(cmd: &mut Command) -> (i32, String) {
    let out = output(cmd);
    assert!(
        !out.status.success(),
        "{cmd:?} unexpectedly succeeded:\nstdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Parse JSON printed by a command, panicking with the text when it is not JSON.
pub fn json_of(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// Lines of /proc/self/mountinfo that mention `root` (mounts left under a test dir).
pub fn mounts_under(root: &Path) -> Vec<String> {
    let needle = root.to_string_lossy().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(&needle))
        .map(str::to_string)
        .collect()
}

/// A temporary directory removed on drop.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("imgctl-test-")
        .tempdir()
        .expect("create temp dir")
}

pub mod build;
pub mod fixture;
pub mod layer;
pub mod registry;
