//! COPY and ADD: which sources an instruction names, what they digest to (the cache
//! input), and copying them into a step's root file system.
//!
//! Docker's rules, as BuildKit applies them:
//! * a directory source copies its *contents*; a file lands at the destination path, or
//!   inside it when the destination ends in `/`, is `.` or is an existing directory;
//! * several sources (or a glob matching several) need a directory destination; a
//!   relative destination is taken from `WORKDIR`;
//! * missing parents of the destination, and a missing destination directory, are
//!   created 0755, owned by root (or the `--chown` owner); `--chmod` applies to what is
//!   copied, not to them;
//! * a context file keeps its mode and mtime but is owned 0:0 unless `--chown`; a file
//!   from another stage or image (`--from`) keeps its owner too;
//! * ADD extracts a local tar (plain, gzip, bzip2, xz, zstd) through the hardened layer
//!   extractor, and downloads a URL (mode 0600, Last-Modified as mtime, `--checksum`).
//!
//! Every source is resolved inside its root with `openat2(RESOLVE_IN_ROOT)` and read
//! through fds opened `O_NOFOLLOW` while walking, so a symlink in the context that
//! points outside of it is copied as a link and never read through (CVE-2022-39253
//! class). Every write into the destination is resolved the same way inside the step's
//! root, so a symlink planted in an image cannot redirect a COPY to the host.

mod add;
pub mod chmod;
mod inputs;
mod tree;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

pub use chmod::Chmod;
pub use inputs::{InputFile, InputsDigest};

use super::context::{clean, has_meta, Context, Ignore, Pattern};
use super::BuildError;

/// Where COPY sources come from.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    /// The build context (through its `.dockerignore`).
    Context(&'a Context),
    /// A stage's or image's root file system (`--from`), read only.
    Root(&'a Path),
}

/// A heredoc used as a source (`COPY <<EOF /dst`): its name and (expanded) body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeredocSource {
    pub name: String,
    pub content: String,
}

/// One COPY or ADD, with values already expanded.
#[derive(Debug, Clone, Default)]
pub struct CopySpec {
    /// Sources as written (after variable expansion): paths or globs relative to the
    /// source root, `<<NAME` heredocs, or (ADD) URLs.
    pub srcs: Vec<String>,
    /// Destination as written.
    pub dest: String,
    /// The `WORKDIR` in effect (absolute; empty means `/`).
    pub workdir: String,
    /// `--chown`, resolved (see [`resolve_chown`]).
    pub chown: Option<(u32, u32)>,
    /// `--chmod`.
    pub chmod: Option<Chmod>,
    /// `--link`: the executor copies into an empty layer; the copy itself is the same.
    pub link: bool,
    /// `--parents`: keep each source's path (from the last `/./`, or the root) under the
    /// destination.
    pub parents: bool,
    /// `--exclude` patterns.
    pub exclude: Vec<String>,
    /// ADD rather than COPY.
    pub add: bool,
    /// ADD `--unpack`: `None` extracts local archives and not URLs; `Some(b)` forces.
    pub unpack: Option<bool>,
    /// ADD `--checksum` (`sha256:<hex>`, also sha384/sha512) of a URL source.
    pub checksum: Option<String>,
    /// Heredoc bodies the sources may name.
    pub heredocs: Vec<HeredocSource>,
    /// Where the instruction is (`Buildfile:LINE`), for errors.
    pub at: String,
}

impl CopySpec {
    fn name(&self) -> &'static str {
        if self.add {
            "ADD"
        } else {
            "COPY"
        }
    }

    fn err(&self, message: impl Into<String>) -> BuildError {
        BuildError::Source {
            at: self.at.clone(),
            message: message.into(),
        }
    }

    /// The destination as an absolute, cleaned path, and whether it names a directory
    /// by its spelling (trailing `/`, `.`).
    fn dest_path(&self) -> (String, bool) {
        let d = self.dest.as_str();
        let dir_spelled = d.ends_with('/') || d == "." || d.ends_with("/.") || d.is_empty();
        let joined = if d.starts_with('/') {
            d.to_string()
        } else {
            let wd = if self.workdir.is_empty() {
                "/"
            } else {
                &self.workdir
            };
            format!("{}/{d}", wd.trim_end_matches('/'))
        };
        (clean(&format!("/{joined}")), dir_spelled)
    }
}

/// Resolve `--chown=user[:group]` (names or ids) against the destination root's
/// `/etc/passwd` and `/etc/group`, read inside that root. Docker's rule: a user without
/// a group (`--chown=55`, `--chown=bin`) uses the uid as the gid.
pub fn resolve_chown(spec: &str, dest_root: &Path, at: &str) -> Result<(u32, u32), BuildError> {
    let id =
        crate::container::user::resolve(spec, dest_root).map_err(|e| BuildError::Instruction {
            at: at.to_string(),
            message: format!("--chown={spec}: {e}"),
        })?;
    if spec.is_empty() {
        return Ok((0, 0));
    }
    Ok(if spec.contains(':') {
        (id.uid, id.gid)
    } else {
        (id.uid, id.uid)
    })
}

/// A resolved source of a COPY/ADD.
#[derive(Debug)]
pub(crate) enum Item {
    /// A path in the source root: `rel` relative to the root (`.` for the root),
    /// `name` the name it lands under when the destination is a directory (with
    /// `--parents`, a relative path).
    Path {
        rel: String,
        name: String,
        /// Opened `O_PATH`, symlinks in the path resolved inside the root; the final
        /// component followed when it is a link whose target exists in the root.
        fd: OwnedFd,
        st: rustix::fs::Stat,
    },
    Heredoc {
        name: String,
        content: String,
    },
    Url {
        url: String,
    },
}

/// The resolved sources and destination of one COPY/ADD.
pub(crate) struct Plan {
    pub items: Vec<Item>,
    /// Absolute destination path.
    pub dest: String,
    /// The destination must be a directory (spelled so, or several sources).
    pub dest_is_dir: bool,
    /// Entries (relative to the source root) that are left out.
    pub ignore: Ignore,
    pub exclude: Ignore,
    /// Sources come from the context: owners reset to 0:0.
    pub from_context: bool,
}

/// An `O_PATH` fd of the source root.
fn root_fd(src: &Source) -> Result<OwnedFd, BuildError> {
    match src {
        Source::Context(c) => c
            .root_fd()
            .try_clone_to_owned()
            .map_err(|e| BuildError::io(c.root(), e)),
        Source::Root(p) => crate::sys::fs::open_dir_path(p).map_err(|e| BuildError::io(*p, e)),
    }
}

fn heredoc_name(src: &str) -> Option<&str> {
    let s = src.strip_prefix("<<")?;
    let s = s.strip_prefix('-').unwrap_or(s);
    Some(s.trim_matches(|c| c == '"' || c == '\''))
}

fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

/// Resolve the sources of `spec` in `root`.
pub(crate) fn plan(
    src: &Source,
    root: BorrowedFd<'_>,
    spec: &CopySpec,
) -> Result<Plan, BuildError> {
    if spec.srcs.is_empty() {
        return Err(spec.err(format!(
            "{} needs at least one source and a destination",
            spec.name()
        )));
    }
    let (dest, dir_spelled) = spec.dest_path();
    let ignore = match src {
        Source::Context(c) => c.ignore().clone(),
        Source::Root(_) => Ignore::default(),
    };
    let exclude = Ignore::from_patterns(&spec.exclude)
        .map_err(|e| spec.err(format!("--exclude: bad pattern {}", e.0)))?;
    let mut items = Vec::new();
    for s in &spec.srcs {
        if let Some(h) = heredoc_name(s) {
            let body = spec
                .heredocs
                .iter()
                .find(|d| d.name == h)
                .ok_or_else(|| spec.err(format!("{s}: no heredoc named {h}")))?;
            items.push(Item::Heredoc {
                name: body.name.clone(),
                content: body.content.clone(),
            });
            continue;
        }
        if is_url(s) {
            if !spec.add {
                return Err(spec.err(format!(
                    "{s}: COPY cannot copy a URL; use ADD (or RUN with a download tool)"
                )));
            }
            items.push(Item::Url { url: s.clone() });
            continue;
        }
        let cleaned = clean(s.trim_start_matches('/'));
        if cleaned == ".." || cleaned.starts_with("../") {
            return Err(spec.err(format!(
                "{} {s}: source is outside the build context; sources are relative to the context root",
                spec.name()
            )));
        }
        // `--parents`: the part before the last `/./` is not kept.
        let pivot = if spec.parents {
            s.rfind("/./")
                .map(|i| clean(s[..i].trim_start_matches('/')))
        } else {
            None
        };
        let kept_name = |rel: &str| -> String {
            if spec.parents {
                match &pivot {
                    Some(p) if p != "." => rel
                        .strip_prefix(p.as_str())
                        .unwrap_or(rel)
                        .trim_start_matches('/')
                        .to_string(),
                    _ => rel.to_string(),
                }
            } else {
                rel.rsplit('/').next().unwrap_or(rel).to_string()
            }
        };
        let before = items.len();
        if has_meta(&cleaned) {
            let pat = Pattern::new(&cleaned)
                .map_err(|e| spec.err(format!("{s}: bad pattern {}", e.0)))?;
            for rel in tree::glob(root, &pat, &ignore).map_err(|e| spec.err(format!("{s}: {e}")))? {
                if exclude.is_excluded(&rel) {
                    continue;
                }
                let (fd, st) =
                    tree::open_source(root, &rel).map_err(|e| spec.err(format!("{rel}: {e}")))?;
                let name = kept_name(&rel);
                items.push(Item::Path { rel, name, fd, st });
            }
            if items.len() == before {
                return Err(spec.err(format!("{} {s}: no source files were found", spec.name())));
            }
        } else {
            if ignore.is_excluded(&cleaned) {
                return Err(spec.err(format!(
                    "{} {s}: not found: excluded by {}",
                    spec.name(),
                    ignore
                        .file
                        .as_deref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_else(|| ".dockerignore".into())
                )));
            }
            let (fd, st) = tree::open_source(root, &cleaned).map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    spec.err(format!(
                        "{} {s}: not found in the {}",
                        spec.name(),
                        match src {
                            Source::Context(_) => "build context",
                            Source::Root(_) => "source stage or image",
                        }
                    ))
                } else {
                    spec.err(format!("{} {s}: {e}", spec.name()))
                }
            })?;
            let name = if cleaned == "." {
                ".".to_string()
            } else {
                kept_name(&cleaned)
            };
            items.push(Item::Path {
                rel: cleaned,
                name,
                fd,
                st,
            });
        }
    }
    let literal_many = spec.srcs.len() > 1;
    if literal_many && !dir_spelled {
        return Err(spec.err(format!(
            "when using {} with more than one source file, the destination must be a directory and end with a /",
            spec.name()
        )));
    }
    Ok(Plan {
        dest_is_dir: dir_spelled || items.len() > 1,
        items,
        dest,
        ignore,
        exclude,
        from_context: matches!(src, Source::Context(_)),
    })
}

/// The cache input of a COPY/ADD: a digest over every source entry's name, content,
/// mode and ownership as they will land (never mtimes), plus the per-file list.
pub fn inputs_digest(src: &Source, spec: &CopySpec) -> Result<InputsDigest, BuildError> {
    let root = root_fd(src)?;
    let plan = plan(src, root.as_fd(), spec)?;
    inputs::digest(&plan, spec)
}

/// Copy the sources of `spec` into `dest_root` (the step's root file system).
pub fn copy(src: &Source, spec: &CopySpec, dest_root: &Path) -> Result<(), BuildError> {
    let root = root_fd(src)?;
    let plan = plan(src, root.as_fd(), spec)?;
    let dest_fd =
        crate::sys::fs::open_dir_path(dest_root).map_err(|e| BuildError::io(dest_root, e))?;
    tree::run(&plan, spec, dest_fd.as_fd())
}

#[cfg(test)]
mod tests;
