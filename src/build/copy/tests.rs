//! Unit tests of COPY/ADD on temporary directories (no root needed except where
//! ownership is checked; those tests check only when running as root).

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use super::*;

fn ctx(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (p, c) in files {
        let path = d.path().join(p);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, c).unwrap();
    }
    d
}

fn spec(srcs: &[&str], dest: &str) -> CopySpec {
    CopySpec {
        srcs: srcs.iter().map(|s| s.to_string()).collect(),
        dest: dest.into(),
        workdir: "/".into(),
        at: "Buildfile:3".into(),
        ..Default::default()
    }
}

fn run(c: &Path, s: &CopySpec) -> Result<tempfile::TempDir, BuildError> {
    let context = Context::open(c, &c.join("Buildfile")).unwrap();
    let out = tempfile::tempdir().unwrap();
    copy(&Source::Context(&context), s, out.path())?;
    Ok(out)
}

#[test]
fn dir_contents_not_the_dir() {
    let c = ctx(&[("src/a.txt", "a"), ("src/sub/b.txt", "b")]);
    let out = run(c.path(), &spec(&["src"], "/app")).unwrap();
    assert_eq!(
        fs::read_to_string(out.path().join("app/a.txt")).unwrap(),
        "a"
    );
    assert_eq!(
        fs::read_to_string(out.path().join("app/sub/b.txt")).unwrap(),
        "b"
    );
    assert!(!out.path().join("app/src").exists());
}

#[test]
fn file_to_path_dir_and_workdir() {
    let c = ctx(&[("a.txt", "a"), ("b.txt", "b")]);
    let out = run(c.path(), &spec(&["a.txt"], "/x/renamed")).unwrap();
    assert_eq!(
        fs::read_to_string(out.path().join("x/renamed")).unwrap(),
        "a"
    );
    let meta = fs::metadata(out.path().join("x")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o755);
    let out = run(c.path(), &spec(&["a.txt"], "/x/")).unwrap();
    assert!(out.path().join("x/a.txt").is_file());
    let mut s = spec(&["a.txt"], "rel/");
    s.workdir = "/work".into();
    let out = run(c.path(), &s).unwrap();
    assert!(out.path().join("work/rel/a.txt").is_file());
    let mut s = spec(&["a.txt"], ".");
    s.workdir = "/w".into();
    let out = run(c.path(), &s).unwrap();
    assert!(out.path().join("w/a.txt").is_file());
}

#[test]
fn several_sources_need_a_directory() {
    let c = ctx(&[("a.txt", "a"), ("b.txt", "b")]);
    let e = run(c.path(), &spec(&["a.txt", "b.txt"], "/x")).unwrap_err();
    assert!(e.to_string().contains("must be a directory"), "{e}");
    assert!(e.to_string().starts_with("Buildfile:3:"), "{e}");
    let out = run(c.path(), &spec(&["*.txt"], "/x")).unwrap();
    assert!(out.path().join("x/a.txt").is_file() && out.path().join("x/b.txt").is_file());
}

#[test]
fn outside_the_context_is_one_line_error() {
    let c = ctx(&[("a.txt", "a")]);
    for src in ["../x", "..", "a/../../x", "../"] {
        let e = run(c.path(), &spec(&[src], "/x")).unwrap_err().to_string();
        assert!(e.contains("outside the build context"), "{src}: {e}");
        assert!(!e.contains('\n'), "{e}");
    }
    let e = run(c.path(), &spec(&["nope"], "/x"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("not found"), "{e}");
}

#[test]
fn dockerignore_filters_and_reincludes() {
    let c = ctx(&[
        (".dockerignore", "*.log\nsecret\n!secret/keep\n"),
        ("a.log", "x"),
        ("b.txt", "b"),
        ("secret/key", "k"),
        ("secret/keep", "kept"),
    ]);
    let out = run(c.path(), &spec(&["."], "/d/")).unwrap();
    assert!(!out.path().join("d/a.log").exists());
    assert!(out.path().join("d/b.txt").exists());
    assert!(!out.path().join("d/secret/key").exists());
    assert_eq!(
        fs::read_to_string(out.path().join("d/secret/keep")).unwrap(),
        "kept"
    );
    let e = run(c.path(), &spec(&["a.log"], "/d/"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("excluded by"), "{e}");
    let e = run(c.path(), &spec(&["*.log"], "/d/"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("no source files"), "{e}");
}

#[test]
fn globs_with_double_star_exclude_and_parents() {
    let c = ctx(&[
        ("a/x.go", "1"),
        ("a/b/y.go", "2"),
        ("a/b/z.txt", "3"),
        ("top.go", "4"),
    ]);
    let out = run(c.path(), &spec(&["**/*.go"], "/g/")).unwrap();
    for f in ["x.go", "y.go", "top.go"] {
        assert!(out.path().join("g").join(f).is_file(), "{f}");
    }
    let mut s = spec(&["a"], "/e/");
    s.exclude = vec!["**/*.txt".into()];
    let out = run(c.path(), &s).unwrap();
    assert!(out.path().join("e/b/y.go").is_file());
    assert!(!out.path().join("e/b/z.txt").exists());
    let mut s = spec(&["a/b/*.go", "top.go"], "/p/");
    s.parents = true;
    let out = run(c.path(), &s).unwrap();
    assert!(out.path().join("p/a/b/y.go").is_file());
    assert!(out.path().join("p/top.go").is_file());
    let mut s = spec(&["./a/./b/y.go"], "/q/");
    s.parents = true;
    let out = run(c.path(), &s).unwrap();
    assert!(out.path().join("q/b/y.go").is_file(), "pivot at /./");
}

#[test]
fn symlinks_are_copied_as_links_and_never_followed_out() {
    let c = ctx(&[("a.txt", "a")]);
    std::os::unix::fs::symlink("/etc/shadow", c.path().join("shadow")).unwrap();
    std::os::unix::fs::symlink("../../../../etc/passwd", c.path().join("up")).unwrap();
    std::os::unix::fs::symlink("a.txt", c.path().join("inside")).unwrap();
    let out = run(c.path(), &spec(&["."], "/d/")).unwrap();
    assert_eq!(
        fs::read_link(out.path().join("d/shadow")).unwrap(),
        Path::new("/etc/shadow")
    );
    assert!(fs::symlink_metadata(out.path().join("d/up"))
        .unwrap()
        .file_type()
        .is_symlink());
    // Named directly: an in-root target is followed, an out-of-root one is not.
    let out = run(c.path(), &spec(&["inside"], "/f")).unwrap();
    assert_eq!(fs::read_to_string(out.path().join("f")).unwrap(), "a");
    let out = run(c.path(), &spec(&["shadow"], "/s")).unwrap();
    assert!(fs::symlink_metadata(out.path().join("s"))
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn destination_symlink_resolves_inside_the_root() {
    let c = ctx(&[("a.txt", "a")]);
    let out = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), out.path().join("evil")).unwrap();
    let context = Context::open(c.path(), &c.path().join("Buildfile")).unwrap();
    copy(
        &Source::Context(&context),
        &spec(&["a.txt"], "/evil/"),
        out.path(),
    )
    .unwrap();
    assert!(
        fs::read_dir(outside.path()).unwrap().next().is_none(),
        "nothing written outside"
    );
    assert!(out
        .path()
        .join(outside.path().strip_prefix("/").unwrap())
        .join("a.txt")
        .is_file());
}

#[test]
fn chmod_and_owner() {
    let c = ctx(&[("a.sh", "echo"), ("d/b", "b")]);
    fs::set_permissions(c.path().join("a.sh"), fs::Permissions::from_mode(0o640)).unwrap();
    let out = run(c.path(), &spec(&["a.sh"], "/k")).unwrap();
    let m = fs::metadata(out.path().join("k")).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o640, "mode kept");
    let mut s = spec(&["a.sh", "d"], "/c/");
    s.chmod = Some(Chmod::parse("u+x,g=rX").unwrap());
    let out = run(c.path(), &s).unwrap();
    assert_eq!(
        fs::metadata(out.path().join("c/a.sh")).unwrap().mode() & 0o777,
        0o750,
        "X sees the x just added, as chmod(1)"
    );
    if rustix::process::geteuid().is_root() {
        let mut s = spec(&["a.sh"], "/o/x");
        s.chown = Some((1234, 5678));
        let out = run(c.path(), &s).unwrap();
        let m = fs::metadata(out.path().join("o/x")).unwrap();
        assert_eq!((m.uid(), m.gid()), (1234, 5678));
        let m = fs::metadata(out.path().join("o")).unwrap();
        assert_eq!(
            (m.uid(), m.gid()),
            (1234, 5678),
            "created parents take the --chown owner"
        );
    }
}

#[test]
fn heredoc_source() {
    let c = ctx(&[]);
    let mut s = spec(&["<<EOF"], "/etc/motd");
    s.heredocs = vec![HeredocSource {
        name: "EOF".into(),
        content: "hello\n".into(),
    }];
    let out = run(c.path(), &s).unwrap();
    assert_eq!(
        fs::read_to_string(out.path().join("etc/motd")).unwrap(),
        "hello\n"
    );
    assert_eq!(
        fs::metadata(out.path().join("etc/motd")).unwrap().mode() & 0o777,
        0o644
    );
}

#[test]
fn inputs_ignore_mtime_and_see_content_and_mode() {
    let c = ctx(&[("src/a", "1"), ("src/b", "2")]);
    let context = Context::open(c.path(), &c.path().join("Buildfile")).unwrap();
    let s = spec(&["src"], "/app/");
    let d1 = inputs_digest(&Source::Context(&context), &s).unwrap();
    let f = fs::File::options()
        .write(true)
        .open(c.path().join("src/a"))
        .unwrap();
    f.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
    let d2 = inputs_digest(&Source::Context(&context), &s).unwrap();
    assert_eq!(d1.digest, d2.digest, "mtime alone changes nothing");
    fs::write(c.path().join("src/b"), "changed").unwrap();
    let d3 = inputs_digest(&Source::Context(&context), &s).unwrap();
    assert_ne!(d1.digest, d3.digest);
    assert_eq!(d3.changed_since(&d1.files), vec!["src/b".to_string()]);
    fs::set_permissions(c.path().join("src/a"), fs::Permissions::from_mode(0o600)).unwrap();
    let d4 = inputs_digest(&Source::Context(&context), &s).unwrap();
    assert_eq!(d4.changed_since(&d3.files), vec!["src/a".to_string()]);
    let mut s2 = s.clone();
    s2.chown = Some((1, 1));
    let d5 = inputs_digest(&Source::Context(&context), &s2).unwrap();
    assert_ne!(d5.digest, d4.digest, "ownership is an input");
}

#[test]
fn hardlinks_stay_linked() {
    let c = ctx(&[("d/a", "x")]);
    fs::hard_link(c.path().join("d/a"), c.path().join("d/b")).unwrap();
    let out = run(c.path(), &spec(&["d"], "/h/")).unwrap();
    let a = fs::metadata(out.path().join("h/a")).unwrap();
    let b = fs::metadata(out.path().join("h/b")).unwrap();
    assert_eq!(a.ino(), b.ino());
}
