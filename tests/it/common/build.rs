//! The buildah comparison harness (issue 9, Done-when: "image config and filesystem
//! equal to `buildah bud`"): build one case with `buildah bud --layers` in an isolated
//! `--root`/`--runroot` and with imgctl, then compare the config field by field (after
//! dropping timestamps and buildah's own labels) and the file system entry by entry
//! (type, mode, owner, size, content digest, link target, xattrs).
//!
//! Both tools build FROM the same busybox fixture: buildah reads the OCI layout
//! directly (`oci:` transport), imgctl pulls it from the fixture registry.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::layer::{tree, Node};

/// One comparison case: a Buildfile (with `{BASE}` for the base image and `{URL}` for
/// the test HTTP server) and its context.
#[derive(Clone)]
pub struct Case {
    pub name: &'static str,
    pub buildfile: String,
    /// What buildah 1.28 (Debian 12) is given instead, when the Buildfile uses syntax
    /// it lacks (heredocs, `--link`, `--parents`, `--exclude`, `--checksum`): a
    /// Buildfile that must produce the same image.
    pub buildah: Option<String>,
    /// Context files: path, content, mode.
    pub files: Vec<(&'static str, Vec<u8>, u32)>,
    /// Context symlinks: path, target.
    pub links: Vec<(&'static str, &'static str)>,
    /// Context hard links: new path, existing path.
    pub hardlinks: Vec<(&'static str, &'static str)>,
    /// Context directory modes (set after the files are written): path, mode.
    pub dirmodes: Vec<(&'static str, u32)>,
    /// Context extended attributes: path, name, value.
    pub xattrs: Vec<(&'static str, &'static str, &'static [u8])>,
    /// Paths (or config fields, or `history`) that differ from buildah by design, with
    /// the reason (each listed in docs/build.md).
    pub by_design: Vec<(&'static str, &'static str)>,
}

impl Case {
    pub fn new(name: &'static str, buildfile: &str) -> Case {
        Case {
            name,
            buildfile: buildfile.to_string(),
            buildah: None,
            files: Vec::new(),
            links: Vec::new(),
            hardlinks: Vec::new(),
            by_design: Vec::new(),
            dirmodes: Vec::new(),
            xattrs: Vec::new(),
        }
    }
    pub fn dirmode(mut self, p: &'static str, mode: u32) -> Case {
        self.dirmodes.push((p, mode));
        self
    }
    pub fn xattr(mut self, p: &'static str, name: &'static str, value: &'static [u8]) -> Case {
        self.xattrs.push((p, name, value));
        self
    }
    /// `what` differs from buildah by design, because of `why`.
    pub fn differs(mut self, what: &'static str, why: &'static str) -> Case {
        self.by_design.push((what, why));
        self
    }
    /// The names [`differences`] ignores for this case.
    pub fn ignored(&self) -> Vec<&'static str> {
        self.by_design.iter().map(|(w, _)| *w).collect()
    }
    pub fn file(mut self, p: &'static str, content: &str) -> Case {
        self.files.push((p, content.as_bytes().to_vec(), 0o644));
        self
    }
    pub fn bytes(mut self, p: &'static str, content: Vec<u8>, mode: u32) -> Case {
        self.files.push((p, content, mode));
        self
    }
    pub fn link(mut self, p: &'static str, target: &'static str) -> Case {
        self.links.push((p, target));
        self
    }
    pub fn hardlink(mut self, p: &'static str, existing: &'static str) -> Case {
        self.hardlinks.push((p, existing));
        self
    }
    pub fn for_buildah(mut self, buildfile: &str) -> Case {
        self.buildah = Some(buildfile.to_string());
        self
    }

    /// Whether only FROM, WORKDIR, COPY and ADD (without `--from`) appear: such a case
    /// can be replayed with the copy library alone, before the executor exists.
    pub fn copy_only(&self) -> bool {
        // A case the parser refuses (syntax of later issues) is not replayable.
        let Ok(bf) = imgctl::buildfile::parse("Buildfile", &self.buildfile) else {
            return false;
        };
        bf.stages.len() == 1
            && bf.instructions.iter().all(|i| match &i.command {
                imgctl::buildfile::Command::From { .. }
                | imgctl::buildfile::Command::Workdir { .. } => true,
                imgctl::buildfile::Command::Copy { from, .. } => from.is_none(),
                imgctl::buildfile::Command::Add { .. } => true,
                _ => false,
            })
    }

    /// Write the context under `dir/ctx` and the Buildfile(s) beside it (not inside,
    /// so `COPY .` sees the same context for both tools).
    pub fn write(&self, dir: &Path, base: &str, url: &str) -> (PathBuf, PathBuf, PathBuf) {
        let ctx = dir.join("ctx");
        fs::create_dir_all(&ctx).unwrap();
        for (p, c, mode) in &self.files {
            let path = ctx.join(p);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, c).unwrap();
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&path, fs::Permissions::from_mode(*mode)).unwrap();
        }
        for (p, t) in &self.links {
            let path = ctx.join(p);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::os::unix::fs::symlink(t, path).unwrap();
        }
        for (p, e) in &self.hardlinks {
            fs::hard_link(ctx.join(e), ctx.join(p)).unwrap();
        }
        for (p, name, value) in &self.xattrs {
            rustix::fs::lsetxattr(ctx.join(p), *name, value, rustix::fs::XattrFlags::empty())
                .unwrap();
        }
        for (p, mode) in &self.dirmodes {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(ctx.join(p), fs::Permissions::from_mode(*mode)).unwrap();
        }
        let fill = |t: &str| t.replace("{BASE}", base).replace("{URL}", url);
        let ours = dir.join("Buildfile");
        fs::write(&ours, fill(&self.buildfile)).unwrap();
        let theirs = dir.join("Buildfile.buildah");
        fs::write(
            &theirs,
            fill(self.buildah.as_deref().unwrap_or(&self.buildfile)),
        )
        .unwrap();
        (ctx, ours, theirs)
    }
}

/// A built image, as compared.
#[derive(Debug)]
pub struct Built {
    /// The `config` object of the image config.
    pub config: Value,
    /// `empty_layer` of each history entry after the base image's.
    pub history: Vec<bool>,
    pub fs: BTreeMap<String, Node>,
}

/// The buildah 1.28 base reference of the busybox fixture layout.
pub fn buildah_base(layout: &Path) -> String {
    format!("oci:{}:latest", layout.display())
}

/// A buildah with its own storage under `dir`.
pub struct Buildah {
    root: PathBuf,
    run: PathBuf,
}

impl Buildah {
    pub fn new(dir: &Path) -> Buildah {
        Buildah {
            root: dir.join("root"),
            run: dir.join("run"),
        }
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("buildah");
        c.arg("--root")
            .arg(&self.root)
            .arg("--runroot")
            .arg(&self.run)
            .args(["--storage-driver", "vfs"]);
        c
    }

    fn ok(&self, args: &[&str]) -> Result<String, String> {
        stdout_or_err(self.cmd(), "buildah", args)
    }

    /// `buildah bud --layers` the case; `base_history` is the number of history entries
    /// of the base image.
    pub fn build(
        &self,
        tag: &str,
        buildfile: &Path,
        ctx: &Path,
        base_history: usize,
    ) -> Result<Built, String> {
        self.ok(&[
            "bud",
            "--layers",
            // Cases share one buildah store; 1.28's layer cache reuses an ADD layer of
            // the same extracted content under another --chown (docs/build-copy.md).
            "--no-cache",
            "--isolation",
            "chroot",
            "--format",
            "docker",
            "--quiet",
            "-t",
            tag,
            "-f",
            &buildfile.display().to_string(),
            &ctx.display().to_string(),
        ])?;
        let inspect: Value = serde_json::from_str(&self.ok(&["inspect", "--type", "image", tag])?)
            .map_err(|e| format!("buildah inspect: {e}"))?;
        let docker = &inspect["Docker"];
        let history = history_flags(&docker["history"], base_history);
        // The file system through an OCI layout and umoci: `buildah from` would run
        // ONBUILD triggers (and a runtime).
        let layout = self.root.with_file_name(format!("{tag}-oci"));
        self.ok(&[
            "push",
            "--quiet",
            tag,
            &format!("oci:{}:latest", layout.display()),
        ])?;
        let rootfs =
            super::layer::umoci_unpack(&layout, "latest", &layout.with_extension("bundle"));
        let fs = tree(&rootfs, true);
        Ok(Built {
            config: docker["config"].clone(),
            history,
            fs,
        })
    }
}

/// `empty_layer` of each history entry after the first `skip`; buildah's entries for
/// ARG (`#(nop) ARG`) are left out, as BuildKit records no history for ARG.
fn history_flags(h: &Value, skip: usize) -> Vec<bool> {
    h.as_array()
        .map(|a| {
            a.iter()
                .skip(skip)
                .filter(|e| {
                    !e["created_by"]
                        .as_str()
                        .is_some_and(|c| c.contains("#(nop) ARG "))
                })
                .map(|e| {
                    e["empty_layer"]
                        .as_bool()
                        .or(e["EmptyLayer"].as_bool())
                        .unwrap_or(false)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `imgctl build` the case into `store`, then read it back through `inspect`,
/// `history --format json` and `mount`.
pub fn imgctl_build(
    store: &Path,
    tag: &str,
    buildfile: &Path,
    ctx: &Path,
    base_history: usize,
) -> Result<Built, String> {
    let run = |args: &[&str]| stdout_or_err(super::imgctl(store), "imgctl", args);
    run(&[
        "build",
        "-q",
        "-t",
        tag,
        "-f",
        &buildfile.display().to_string(),
        &ctx.display().to_string(),
    ])?;
    let inspect: Value =
        serde_json::from_str(&run(&["inspect", tag])?).map_err(|e| format!("inspect: {e}"))?;
    let hist: Value = serde_json::from_str(&run(&["history", "--format", "json", tag])?)
        .map_err(|e| format!("history: {e}"))?;
    // `imgctl history` lists newest first, like docker.
    let mut entries: Vec<Value> = hist.as_array().cloned().unwrap_or_default();
    entries.reverse();
    let history = history_flags(&Value::Array(entries), base_history);
    let merged = PathBuf::from(run(&["mount", tag])?.trim());
    let fs = tree(&merged, true);
    let _ = run(&["umount", &merged.display().to_string()]);
    Ok(Built {
        config: inspect[0]["Config"].clone(),
        history,
        fs,
    })
}

/// Config fields compared, as in Docker's image config.
pub const CONFIG_FIELDS: &[&str] = &[
    "User",
    "ExposedPorts",
    "Env",
    "Entrypoint",
    "Cmd",
    "Volumes",
    "WorkingDir",
    "Labels",
    "StopSignal",
    "Healthcheck",
    "OnBuild",
    "Shell",
];

/// A field normalised: missing, null, `[]` and `{}` are the same; buildah's own
/// `io.buildah.version` label is dropped.
fn norm(field: &str, v: Option<&Value>) -> Value {
    let mut v = v.cloned().unwrap_or(Value::Null);
    if field == "Labels" {
        if let Value::Object(m) = &mut v {
            m.remove("io.buildah.version");
        }
    }
    match &v {
        Value::Array(a) if a.is_empty() => Value::Null,
        Value::Object(o) if o.is_empty() => Value::Null,
        Value::String(s) if s.is_empty() => Value::Null,
        _ => v,
    }
}

/// buildah's chroot isolation leaves the empty files it bind-mounted over during RUN
/// (`/etc/hostname`, `/etc/hosts`, `/etc/resolv.conf`) and `/run` in the layer;
/// BuildKit and imgctl do not (docs/build.md).
fn is_buildah_run_stub(path: &str, node: Option<&Node>) -> bool {
    match node {
        Some(n) if n.kind == "file" => {
            matches!(path, "etc/hostname" | "etc/hosts" | "etc/resolv.conf") && n.size == 0
        }
        Some(n) if n.kind == "dir" => path == "run",
        _ => false,
    }
}

/// Differences between two builds, one line each; `ignore` names paths (and config
/// fields) whose difference is by design (docs/build.md).
pub fn differences(ours: &Built, theirs: &Built, ignore: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for f in CONFIG_FIELDS {
        if ignore.contains(f) {
            continue;
        }
        let (a, b) = (norm(f, ours.config.get(*f)), norm(f, theirs.config.get(*f)));
        if a != b {
            out.push(format!("config {f}: imgctl {a} vs buildah {b}"));
        }
    }
    if !ignore.contains(&"history") && ours.history != theirs.history {
        out.push(format!(
            "history empty_layer flags: imgctl {:?} vs buildah {:?}",
            ours.history, theirs.history
        ));
    }
    for k in ours.fs.keys().chain(theirs.fs.keys()) {
        if ignore
            .iter()
            .any(|i| k == i || k.starts_with(&format!("{i}/")))
        {
            continue;
        }
        let (a, b) = (ours.fs.get(k), theirs.fs.get(k));
        if a.is_none() && is_buildah_run_stub(k, b) {
            continue;
        }
        if a != b
            && !out
                .iter()
                .any(|l: &String| l.starts_with(&format!("fs {k}:")))
        {
            out.push(format!("fs {k}: imgctl {a:?} vs buildah {b:?}"));
        }
    }
    out
}

/// Run `cmd` with `args`: its stdout, or an error naming `what`, the arguments and the
/// command's stderr.
fn stdout_or_err(mut cmd: Command, what: &str, args: &[&str]) -> Result<String, String> {
    let out = cmd
        .args(args)
        .output()
        .map_err(|e| format!("{what}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
