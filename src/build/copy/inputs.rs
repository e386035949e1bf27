//! The cache input of a COPY/ADD: what each source entry will land as — name, kind,
//! content digest, mode and ownership, link target — and never its mtime, so touching
//! a file changes nothing (issue 9, "Cache"). The per-file list lets the executor say
//! which file made a step miss.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use rustix::fs::FileType;
use serde::{Deserialize, Serialize};

use super::tree::{self, file_type, Entry, Visit};
use super::{add, CopySpec, Item, Plan};
use crate::build::BuildError;
use crate::oci::{Digest, Digester};

/// One source entry as it will land.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputFile {
    /// The source path (relative to its root), `<<NAME` for a heredoc, or the URL.
    pub path: String,
    /// `file`, `dir`, `symlink`, `char`, `block`, `fifo`, `heredoc`, `url`.
    pub kind: String,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    /// Content digest of files, heredocs and URLs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Symlink target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// Extracted by ADD rather than copied.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub extract: bool,
}

/// The digest of all inputs of one COPY/ADD, and the entries it covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputsDigest {
    pub digest: Digest,
    pub files: Vec<InputFile>,
}

impl InputsDigest {
    /// Source paths that differ from `before`: changed, added or removed, sorted.
    pub fn changed_since(&self, before: &[InputFile]) -> Vec<String> {
        use std::collections::BTreeMap;
        let old: BTreeMap<&str, &InputFile> = before.iter().map(|f| (f.path.as_str(), f)).collect();
        let new: BTreeMap<&str, &InputFile> =
            self.files.iter().map(|f| (f.path.as_str(), f)).collect();
        let mut out: Vec<String> = new
            .iter()
            .filter(|(p, f)| old.get(*p) != Some(*f))
            .map(|(p, _)| p.to_string())
            .chain(
                old.keys()
                    .filter(|p| !new.contains_key(*p))
                    .map(|p| p.to_string()),
            )
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

struct Lister<'p> {
    plan: &'p Plan,
    spec: &'p CopySpec,
    files: Vec<InputFile>,
}

fn kind_name(ft: FileType) -> &'static str {
    match ft {
        FileType::RegularFile => "file",
        FileType::Directory => "dir",
        FileType::Symlink => "symlink",
        FileType::CharacterDevice => "char",
        FileType::BlockDevice => "block",
        FileType::Fifo => "fifo",
        _ => "other",
    }
}

fn hash_fd(fd: BorrowedFd<'_>) -> io::Result<String> {
    let f = tree::reopen(fd, false)?;
    let mut d = Digester::new();
    io::copy(&mut std::fs::File::from(f), &mut d)?;
    Ok(d.finish().to_string())
}

impl Lister<'_> {
    fn record(
        &mut self,
        fd: BorrowedFd<'_>,
        st: &rustix::fs::Stat,
        rel: &str,
    ) -> Result<(), BuildError> {
        let (uid, gid, mode) = tree::landing(self.plan, self.spec, st);
        let ft = file_type(st);
        let er = |e: io::Error| self.spec.err(format!("{rel}: {e}"));
        let (digest, link, size) = match ft {
            FileType::RegularFile => (Some(hash_fd(fd).map_err(er)?), None, st.st_size as u64),
            FileType::Symlink => {
                let t = rustix::fs::readlinkat(fd, "", Vec::new()).map_err(|e| er(e.into()))?;
                (
                    None,
                    Some(String::from_utf8_lossy(t.as_bytes()).into_owned()),
                    0,
                )
            }
            FileType::CharacterDevice | FileType::BlockDevice => {
                (None, Some(format!("{}", st.st_rdev)), 0)
            }
            _ => (None, None, 0),
        };
        self.files.push(InputFile {
            path: if rel.is_empty() {
                ".".into()
            } else {
                rel.to_string()
            },
            kind: kind_name(ft).into(),
            mode,
            uid,
            gid,
            size,
            digest,
            link,
            extract: false,
        });
        Ok(())
    }
}

impl Visit for Lister<'_> {
    fn enter(&mut self, e: &Entry) -> Result<(), BuildError> {
        self.record(e.fd, e.st, e.rel)
    }
    fn leave(&mut self, e: &Entry) -> Result<(), BuildError> {
        if e.sub.is_empty() {
            self.record(e.fd, e.st, e.rel)?;
        }
        Ok(())
    }
    fn node(&mut self, e: &Entry) -> Result<(), BuildError> {
        self.record(e.fd, e.st, e.rel)
    }
}

/// Digest every input of `plan`.
pub(super) fn digest(plan: &Plan, spec: &CopySpec) -> Result<InputsDigest, BuildError> {
    let mut l = Lister {
        plan,
        spec,
        files: Vec::new(),
    };
    let owner = spec.chown.unwrap_or((0, 0));
    for item in &plan.items {
        match item {
            Item::Path { rel, fd, st, .. } => {
                if file_type(st) == FileType::Directory {
                    tree::walk(plan, spec, fd.as_fd(), st, rel, &mut l)?;
                } else {
                    l.record(fd.as_fd(), st, rel)?;
                    if add::local_archive(plan, spec, fd.as_fd(), st)
                        .map_err(|e| spec.err(format!("{rel}: {e}")))?
                        .is_some()
                    {
                        if let Some(last) = l.files.last_mut() {
                            last.extract = true;
                        }
                    }
                }
            }
            Item::Heredoc { name, content } => {
                let mode = spec
                    .chmod
                    .as_ref()
                    .map(|c| c.apply(0o644, false))
                    .unwrap_or(0o644);
                l.files.push(InputFile {
                    path: format!("<<{name}"),
                    kind: "heredoc".into(),
                    mode,
                    uid: owner.0,
                    gid: owner.1,
                    size: content.len() as u64,
                    digest: Some(Digest::of(content.as_bytes()).to_string()),
                    link: None,
                    extract: false,
                });
            }
            Item::Url { url } => {
                let mode = spec
                    .chmod
                    .as_ref()
                    .map(|c| c.apply(0o600, false))
                    .unwrap_or(0o600);
                l.files.push(InputFile {
                    path: url.clone(),
                    kind: "url".into(),
                    mode,
                    uid: owner.0,
                    gid: owner.1,
                    size: 0,
                    digest: Some(add::url_digest(spec, url)?),
                    link: None,
                    extract: spec.unpack == Some(true),
                });
            }
        }
    }
    // What the sources land as also depends on where and how: the destination and the
    // flags that change names (the instruction text is in the executor's key too).
    let mut d = Digester::new();
    let header = serde_json::json!({
        "dest": plan.dest,
        "dest_is_dir": plan.dest_is_dir,
        "parents": spec.parents,
        "add": spec.add,
        "unpack": spec.unpack,
        "exclude": spec.exclude,
    });
    d.update(header.to_string().as_bytes());
    for f in &l.files {
        d.update(b"\n");
        d.update(serde_json::to_string(f).unwrap_or_default().as_bytes());
    }
    Ok(InputsDigest {
        digest: d.finish(),
        files: l.files,
    })
}
