//! The build context: a directory on the host, seen through its `.dockerignore`.
//!
//! Docker's precedence for the ignore file: `<Buildfile path>.dockerignore` next to the
//! Buildfile when it exists, else `<context>/.dockerignore`. Lines are cleaned as
//! moby's `dockerignore.ReadAll` does (comments, trimming, `filepath.Clean`, a leading
//! `/` dropped); `!` re-includes; the last matching pattern wins; a pattern also
//! matches everything below a directory it matches.
//!
//! Everything read from the context goes through [`Context::root_fd`] with
//! `openat2(RESOLVE_IN_ROOT)` (see `copy`), so nothing outside the directory is read.

mod pattern;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

pub use pattern::{has_meta, BadPattern, Pattern};

use super::BuildError;

/// An opened build context.
#[derive(Debug)]
pub struct Context {
    root: PathBuf,
    fd: OwnedFd,
    ignore: Ignore,
}

impl Context {
    /// Open `dir` as the context of a build of `buildfile` (the path of the Buildfile,
    /// used to find `<buildfile>.dockerignore`; it need not be inside the context).
    pub fn open(dir: &Path, buildfile: &Path) -> Result<Context, BuildError> {
        let err = |message: String| BuildError::Context {
            path: dir.to_path_buf(),
            message,
        };
        let meta = std::fs::metadata(dir).map_err(|e| err(format!("cannot open: {e}")))?;
        if !meta.is_dir() {
            return Err(err("not a directory".into()));
        }
        let root = std::fs::canonicalize(dir).map_err(|e| err(format!("cannot open: {e}")))?;
        let fd =
            crate::sys::fs::open_dir_path(&root).map_err(|e| err(format!("cannot open: {e}")))?;
        let mut specific = buildfile.as_os_str().to_os_string();
        specific.push(".dockerignore");
        let candidates = [PathBuf::from(specific), root.join(".dockerignore")];
        let mut ignore = Ignore::default();
        for file in candidates {
            match std::fs::read_to_string(&file) {
                Ok(text) => {
                    ignore = Ignore::parse(&text).map_err(|e| BuildError::Context {
                        path: file.clone(),
                        message: format!("bad pattern {}", e.0),
                    })?;
                    ignore.file = Some(file);
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(BuildError::io(file, e)),
            }
        }
        Ok(Context { root, fd, ignore })
    }

    /// The context directory (canonical).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// An `O_PATH` fd of the context directory, to resolve sources against.
    pub fn root_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The ignore rules in effect (empty when there is no ignore file).
    pub fn ignore(&self) -> &Ignore {
        &self.ignore
    }

    /// Whether `rel` (relative to the context, `/`-separated) is left out.
    pub fn is_ignored(&self, rel: &str) -> bool {
        self.ignore.is_excluded(rel)
    }
}

/// One line of an ignore file.
#[derive(Debug, Clone)]
struct Rule {
    pattern: Pattern,
    /// `!pattern`: re-include.
    include: bool,
}

/// `.dockerignore` rules (also used for `COPY --exclude`).
#[derive(Debug, Clone, Default)]
pub struct Ignore {
    rules: Vec<Rule>,
    /// The file the rules came from.
    pub file: Option<PathBuf>,
}

impl Ignore {
    /// Parse the text of an ignore file.
    pub fn parse(text: &str) -> Result<Ignore, BadPattern> {
        let mut rules = Vec::new();
        for line in text.lines() {
            if line.starts_with('#') {
                continue;
            }
            let mut p = line.trim();
            if p.is_empty() {
                continue;
            }
            let include = p.starts_with('!');
            if include {
                p = p[1..].trim();
            }
            let mut cleaned = clean(p);
            if cleaned.len() > 1 && cleaned.starts_with('/') {
                cleaned.remove(0);
            }
            rules.push(Rule {
                pattern: Pattern::new(&cleaned)?,
                include,
            });
        }
        Ok(Ignore { rules, file: None })
    }

    /// Rules from a list of plain patterns (`COPY --exclude`), all excluding.
    pub fn from_patterns<S: AsRef<str>>(patterns: &[S]) -> Result<Ignore, BadPattern> {
        let mut rules = Vec::new();
        for p in patterns {
            let cleaned = clean(p.as_ref());
            rules.push(Rule {
                pattern: Pattern::new(cleaned.trim_start_matches('/'))?,
                include: false,
            });
        }
        Ok(Ignore { rules, file: None })
    }

    /// No rules at all.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// True when some rule re-includes (`!`): an excluded directory may then still
    /// hold included entries, so walks must descend into it.
    pub fn has_includes(&self) -> bool {
        self.rules.iter().any(|r| r.include)
    }

    /// Whether `rel` is excluded: the last rule matching it (or a parent of it) wins.
    pub fn is_excluded(&self, rel: &str) -> bool {
        let rel = rel.trim_start_matches("./").trim_start_matches('/');
        if rel.is_empty() || rel == "." {
            return false;
        }
        let mut excluded = false;
        for r in &self.rules {
            if r.pattern.matches_or_parent(rel) {
                excluded = !r.include;
            }
        }
        excluded
    }
}

/// Go's `filepath.Clean` for `/`-separated paths.
pub fn clean(p: &str) -> String {
    crate::layer::index::go_clean(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_like_go() {
        assert_eq!(clean("a/./b/../c/"), "a/c");
        assert_eq!(clean("/../x"), "/x");
        assert_eq!(clean("../x"), "../x");
        assert_eq!(clean("a/../.."), "..");
        assert_eq!(clean(""), ".");
        assert_eq!(clean("//a//"), "/a");
    }

    #[test]
    fn last_match_wins_and_reinclude() {
        let ig = Ignore::parse(
            "# comment\n\n*.md\n!README.md\n/build\n  docs/**/*.tmp  \nsecret\n!secret/keep\n",
        )
        .unwrap();
        assert!(ig.is_excluded("CHANGES.md"));
        assert!(!ig.is_excluded("README.md"));
        assert!(!ig.is_excluded("sub/x.md"), "*.md is anchored at the root");
        assert!(ig.is_excluded("build/out/a.o"), "parent dir matched");
        assert!(ig.is_excluded("docs/a/b/c.tmp"));
        assert!(ig.is_excluded("docs/c.tmp"));
        assert!(ig.is_excluded("secret/x"));
        assert!(!ig.is_excluded("secret/keep"));
        assert!(ig.has_includes());
        let ig = Ignore::parse("!a\na\n").unwrap();
        assert!(ig.is_excluded("a"));
        let ig = Ignore::parse("**/node_modules\n").unwrap();
        assert!(ig.is_excluded("node_modules/x"));
        assert!(ig.is_excluded("a/b/node_modules"));
        assert!(ig.is_excluded("a/b/node_modules/y/z"));
    }

    #[test]
    fn buildfile_specific_ignore_file_wins() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(".dockerignore"), "a\n").unwrap();
        std::fs::write(d.path().join("Buildfile"), "FROM scratch\n").unwrap();
        let c = Context::open(d.path(), &d.path().join("Buildfile")).unwrap();
        assert!(c.is_ignored("a"));
        std::fs::write(d.path().join("Buildfile.dockerignore"), "b\n").unwrap();
        let c = Context::open(d.path(), &d.path().join("Buildfile")).unwrap();
        assert!(!c.is_ignored("a"));
        assert!(c.is_ignored("b"));
        assert!(Context::open(&d.path().join("Buildfile"), Path::new("x")).is_err());
        std::fs::write(d.path().join(".dockerignore"), "[a-\n").unwrap();
        std::fs::remove_file(d.path().join("Buildfile.dockerignore")).unwrap();
        let e = Context::open(d.path(), &d.path().join("Buildfile")).unwrap_err();
        assert!(e.to_string().contains(".dockerignore"), "{e}");
    }
}
