//! COPY/ADD against real directories (issue 9 item 4, "Hostile builds" of Done-when):
//! the hostile layers of the layer tests used as ADD sources in every compression
//! stay inside; a context symlink to /etc/shadow is copied as a link; `COPY ../` fails
//! with one line; ADD of a URL from a local HTTP server with --checksum and
//! Last-Modified.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use imgctl::build::context::Context;
use imgctl::build::copy::{self, CopySpec, Source};

use crate::common::layer::{
    dir, file, fingerprint, gzip, hardlink, symlink, tar_of, whiteout, xz, zstd,
};
use crate::common::{self, require};

fn spec(srcs: &[&str], dest: &str) -> CopySpec {
    CopySpec {
        srcs: srcs.iter().map(|s| s.to_string()).collect(),
        dest: dest.into(),
        workdir: "/".into(),
        at: "Buildfile:2".into(),
        ..Default::default()
    }
}

type Compress = fn(&[u8]) -> Vec<u8>;

fn bzip2(data: &[u8]) -> Vec<u8> {
    let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// The hostile layers of tests/it/layer.rs, by name; `host` is a directory outside
/// the destination root that must never change.
fn hostile_layers(host: &str) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("dotdot", tar_of(&[file("../host/victim/x", b"pwned")])),
        ("abs-dotdot", tar_of(&[file("/../host/victim/x", b"pwned")])),
        ("inner-dotdot", tar_of(&[file("a/../../x", b"pwned")])),
        (
            "root-symlink",
            tar_of(&[symlink(".", "/"), file("x", b"x")]),
        ),
        ("wh-dotdot", tar_of(&[dir("etc"), whiteout("etc/.wh..")])),
        (
            "symlinked-writes",
            tar_of(&[
                file("/etc/passwd", b"image passwd"),
                symlink("localetc", "/etc"),
                file("localetc/unbroken", b"x"),
                symlink("dotdot", "../../../../etc"),
                file("dotdot/through-dotdot", b"y"),
                symlink("hostlink", &format!("{host}/etc")),
                file("hostlink/through-host", b"z"),
            ]),
        ),
        (
            "host-victim-link",
            tar_of(&[symlink("h", &format!("{host}/victim")), file("h/x", b"x")]),
        ),
        (
            "hardlink-out",
            tar_of(&[hardlink("h", "../host/victim/hello")]),
        ),
        (
            "hardlink-through-link",
            tar_of(&[
                symlink("d", &format!("{host}/victim")),
                hardlink("x", "d/hello"),
            ]),
        ),
        (
            "meta-through-link",
            tar_of(&[
                symlink("p", &format!("{host}/etc/passwd")),
                dir("p").mode(0o777).owner(12, 34),
                symlink("q", &format!("{host}/etc/passwd")),
                file("q", b"").mode(0o777).owner(12, 34),
            ]),
        ),
    ]
}

struct Case {
    _t: tempfile::TempDir,
    base: PathBuf,
    ctx: PathBuf,
    root: PathBuf,
    host: PathBuf,
}

impl Case {
    fn new() -> Case {
        let t = common::tempdir();
        let base = t.path().to_path_buf();
        let (ctx, root, host) = (base.join("ctx"), base.join("root"), base.join("host"));
        for d in [&ctx, &root, &host.join("victim"), &host.join("etc")] {
            fs::create_dir_all(d).unwrap();
        }
        fs::write(host.join("victim/hello"), b"hello").unwrap();
        fs::write(host.join("etc/passwd"), b"host passwd").unwrap();
        fs::set_permissions(host.join("etc/passwd"), fs::Permissions::from_mode(0o400)).unwrap();
        Case {
            _t: t,
            base,
            ctx,
            root,
            host,
        }
    }

    fn context(&self) -> Context {
        Context::open(&self.ctx, &self.ctx.join("Buildfile")).unwrap()
    }

    fn copy(&self, s: &CopySpec) -> Result<(), imgctl::build::BuildError> {
        copy::copy(&Source::Context(&self.context()), s, &self.root)
    }

    /// Names next to the root, to see that nothing new appeared beside it.
    fn siblings(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(&self.base)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

#[test]
fn hostile_archives_added_stay_inside_in_every_compression() {
    if !require(
        common::is_root(),
        "root (the layer extractor chowns and creates devices)",
    ) {
        return;
    }
    let compressions: [(&str, Compress); 5] = [
        ("tar", |d| d.to_vec()),
        ("tar.gz", gzip),
        ("tar.bz2", bzip2),
        ("tar.xz", xz),
        ("tar.zst", zstd),
    ];
    let mut refused = 0;
    let count = hostile_layers("/h").len();
    for i in 0..count {
        for (ext, z) in compressions {
            let c = Case::new();
            // Absolute links in the layers name this case's host directory.
            let (name, tar) = hostile_layers(&c.host.display().to_string()).swap_remove(i);
            let src = format!("{name}.{ext}");
            fs::write(c.ctx.join(&src), z(&tar)).unwrap();
            let before = fingerprint(&c.host);
            let siblings = c.siblings();
            let mut s = spec(&[&src], "/unpacked/");
            s.add = true;
            let r = c.copy(&s);
            assert_eq!(
                fingerprint(&c.host),
                before,
                "{src}: host directory changed"
            );
            assert_eq!(
                c.siblings(),
                siblings,
                "{src}: something appeared beside the root"
            );
            match r {
                Ok(()) => {
                    // Extracted, not copied as a file: contained in the destination.
                    assert!(
                        !c.root.join("unpacked").join(&src).exists(),
                        "{src} was not extracted"
                    );
                }
                Err(e) => {
                    refused += 1;
                    let msg = e.to_string();
                    assert!(!msg.contains('\n'), "{src}: one line: {msg}");
                    assert!(
                        msg.starts_with("Buildfile:2:"),
                        "{src}: names the line: {msg}"
                    );
                }
            }
        }
    }
    // The `..` names, the root symlink, `.wh..` and the hardlink escapes are refused.
    assert!(refused >= 5 * 5, "only {refused} refusals");
    // And what is allowed lands inside: /etc/passwd of the layer under the destination.
    let c = Case::new();
    let layer = tar_of(&[
        file("/etc/passwd", b"image passwd"),
        symlink("localetc", "/etc"),
        file("localetc/unbroken", b"x"),
        symlink("dotdot", "../../../../etc"),
        file("dotdot/through-dotdot", b"y"),
    ]);
    fs::write(c.ctx.join("l.tar.xz"), xz(&layer)).unwrap();
    let mut s = spec(&["l.tar.xz"], "/u");
    s.add = true;
    c.copy(&s).unwrap();
    assert_eq!(
        fs::read(c.root.join("u/etc/passwd")).unwrap(),
        b"image passwd"
    );
    // Links inside the archive resolve inside the destination directory.
    assert!(c.root.join("u/etc/unbroken").is_file());
    assert!(c.root.join("u/etc/through-dotdot").is_file());
    assert_eq!(fs::read(c.host.join("etc/passwd")).unwrap(), b"host passwd");
}

#[test]
fn add_extracts_each_compression_and_unpack_false_copies() {
    if !require(common::is_root(), "root (archive owners)") {
        return;
    }
    let tar = tar_of(&[
        dir("d"),
        file("d/f", b"content").mode(0o640).owner(7, 8),
        symlink("d/l", "f"),
    ]);
    let c = Case::new();
    let kinds: [(&str, Vec<u8>); 5] = [
        ("a.tar", tar.clone()),
        ("a.tgz", gzip(&tar)),
        ("a.tar.bz2", bzip2(&tar)),
        ("a.txz", xz(&tar)),
        ("a.tar.zst", zstd(&tar)),
    ];
    for (n, data) in &kinds {
        fs::write(c.ctx.join(n), data).unwrap();
        let mut s = spec(&[n], &format!("/x/{n}.d"));
        s.add = true;
        c.copy(&s).unwrap();
        let f = c.root.join(format!("x/{n}.d/d/f"));
        assert_eq!(fs::read(&f).unwrap(), b"content", "{n}");
        let m = fs::metadata(&f).unwrap();
        assert_eq!(
            (m.mode() & 0o777, m.uid(), m.gid()),
            (0o640, 7, 8),
            "{n}: tar metadata kept"
        );
        assert_eq!(
            fs::read_link(c.root.join(format!("x/{n}.d/d/l"))).unwrap(),
            Path::new("f")
        );
    }
    // COPY never extracts; ADD --unpack=false neither.
    c.copy(&spec(&["a.tgz"], "/copied/")).unwrap();
    assert_eq!(fs::read(c.root.join("copied/a.tgz")).unwrap(), kinds[1].1);
    let mut s = spec(&["a.txz"], "/kept/");
    s.add = true;
    s.unpack = Some(false);
    c.copy(&s).unwrap();
    assert!(c.root.join("kept/a.txz").is_file());
    // Something that only looks compressed is copied as a file.
    fs::write(c.ctx.join("fake.gz"), [0x1f, 0x8b, 1, 2, 3]).unwrap();
    let mut s = spec(&["fake.gz"], "/f/");
    s.add = true;
    c.copy(&s).unwrap();
    assert!(c.root.join("f/fake.gz").is_file());
}

#[test]
fn context_symlink_to_shadow_is_a_link_and_dotdot_is_one_line() {
    let c = Case::new();
    fs::write(c.ctx.join("a"), b"a").unwrap();
    std::os::unix::fs::symlink("/etc/shadow", c.ctx.join("shadow")).unwrap();
    std::os::unix::fs::symlink("../host/etc/passwd", c.ctx.join("passwd")).unwrap();
    c.copy(&spec(&["."], "/")).unwrap();
    assert_eq!(
        fs::read_link(c.root.join("shadow")).unwrap(),
        Path::new("/etc/shadow")
    );
    assert_eq!(
        fs::read_link(c.root.join("passwd")).unwrap(),
        Path::new("../host/etc/passwd")
    );
    // Named as a source: followed only inside the context, where it does not exist.
    c.copy(&spec(&["shadow"], "/named")).unwrap();
    assert!(fs::symlink_metadata(c.root.join("named"))
        .unwrap()
        .file_type()
        .is_symlink());
    let digest = copy::inputs_digest(&Source::Context(&c.context()), &spec(&["."], "/")).unwrap();
    let shadow = digest.files.iter().find(|f| f.path == "shadow").unwrap();
    assert_eq!(
        (shadow.kind.as_str(), shadow.link.as_deref()),
        ("symlink", Some("/etc/shadow"))
    );
    for src in ["../", "../host/etc/passwd", "a/../../x"] {
        let e = c.copy(&spec(&[src], "/x")).unwrap_err().to_string();
        assert_eq!(e.lines().count(), 1, "{e}");
        assert!(
            e.contains("outside the build context") && e.contains(src),
            "{e}"
        );
    }
}

/// `python3 -m http.server` on 127.0.0.1 serving `dir`, on a free port.
struct Http {
    child: Child,
    port: u16,
}

impl Http {
    fn start(dir: &Path) -> Http {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("python3")
            .args([
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                &port.to_string(),
            ])
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Http { child, port }
    }
    fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for Http {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn add_url_checksum_last_modified_and_unpack() {
    if !require(common::have("python3"), "python3 (local HTTP server)") {
        return;
    }
    let c = Case::new();
    let served = c.base.join("served");
    fs::create_dir(&served).unwrap();
    fs::write(served.join("file.txt"), b"downloaded\n").unwrap();
    let old = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
    fs::File::options()
        .write(true)
        .open(served.join("file.txt"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    fs::write(
        served.join("t.tar.gz"),
        gzip(&tar_of(&[file("in-tar", b"t")])),
    )
    .unwrap();
    let http = Http::start(&served);
    let sum = format!("sha256:{}", common::layer::sha256_hex(b"downloaded\n"));

    let mut s = spec(&[&http.url("file.txt")], "/dl/");
    s.add = true;
    s.checksum = Some(sum.clone());
    c.copy(&s).unwrap();
    let m = fs::metadata(c.root.join("dl/file.txt")).unwrap();
    assert_eq!(
        fs::read(c.root.join("dl/file.txt")).unwrap(),
        b"downloaded\n"
    );
    assert_eq!(m.mode() & 0o7777, 0o600, "Docker's mode for downloads");
    assert_eq!(m.mtime(), 1_000_000_000, "Last-Modified is the mtime");
    let d = copy::inputs_digest(&Source::Context(&c.context()), &s).unwrap();
    assert_eq!(d.files[0].digest.as_deref(), Some(sum.as_str()));

    // Without --checksum the key's download is the one copied, even if the server
    // changes the file in between (the layer holds what the cache key says).
    let mut s2 = spec(&[&http.url("file.txt")], "/same/");
    s2.add = true;
    let d = copy::inputs_digest(&Source::Context(&c.context()), &s2).unwrap();
    fs::write(served.join("file.txt"), b"changed on the server\n").unwrap();
    c.copy(&s2).unwrap();
    assert_eq!(
        fs::read(c.root.join("same/file.txt")).unwrap(),
        b"downloaded\n"
    );
    assert_eq!(d.files[0].digest.as_deref(), Some(sum.as_str()));
    fs::write(served.join("file.txt"), b"downloaded\n").unwrap();

    // A wrong checksum fails with one line and writes nothing.
    s.dest = "/bad/".into();
    s.checksum = Some(format!("sha256:{}", "0".repeat(64)));
    let e = c.copy(&s).unwrap_err().to_string();
    assert!(e.contains("checksum mismatch") && !e.contains('\n'), "{e}");
    assert!(!c.root.join("bad/file.txt").exists());
    s.checksum = Some("sha256:xyz".into());
    assert!(c.copy(&s).unwrap_err().to_string().contains("--checksum"));

    // A URL tar is copied as is, unless --unpack.
    let mut s = spec(&[&http.url("t.tar.gz")], "/t/");
    s.add = true;
    c.copy(&s).unwrap();
    assert!(c.root.join("t/t.tar.gz").is_file());
    s.unpack = Some(true);
    s.dest = "/u/".into();
    c.copy(&s).unwrap();
    assert_eq!(fs::read(c.root.join("u/in-tar")).unwrap(), b"t");

    // A missing file is an error naming the status; COPY refuses URLs.
    let mut s = spec(&[&http.url("missing")], "/m");
    s.add = true;
    let e = c.copy(&s).unwrap_err().to_string();
    assert!(e.contains("404"), "{e}");
    let e = c
        .copy(&spec(&[&http.url("file.txt")], "/m"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("use ADD"), "{e}");
}

#[test]
fn copy_from_a_root_keeps_owners_and_chown_by_name_uses_the_destination() {
    if !require(common::is_root(), "root (file owners)") {
        return;
    }
    let c = Case::new();
    let stage = c.base.join("stage");
    fs::create_dir_all(stage.join("out")).unwrap();
    fs::write(stage.join("out/bin"), b"#!/bin/sh\n").unwrap();
    std::os::unix::fs::chown(stage.join("out/bin"), Some(42), Some(43)).unwrap();
    copy::copy(
        &Source::Root(&stage),
        &spec(&["/out/bin"], "/usr/local/bin/"),
        &c.root,
    )
    .unwrap();
    let m = fs::metadata(c.root.join("usr/local/bin/bin")).unwrap();
    assert_eq!((m.uid(), m.gid()), (42, 43), "--from keeps owners");
    // From the context: 0:0.
    fs::write(c.ctx.join("f"), b"f").unwrap();
    std::os::unix::fs::chown(c.ctx.join("f"), Some(42), Some(43)).unwrap();
    c.copy(&spec(&["f"], "/f")).unwrap();
    let m = fs::metadata(c.root.join("f")).unwrap();
    assert_eq!((m.uid(), m.gid()), (0, 0));
    // --chown by name, resolved in the destination's /etc/passwd.
    fs::create_dir_all(c.root.join("etc")).unwrap();
    fs::write(
        c.root.join("etc/passwd"),
        "root:x:0:0::/root:/bin/sh\napp:x:1001:1002::/home/app:/bin/sh\n",
    )
    .unwrap();
    fs::write(
        c.root.join("etc/group"),
        "root:x:0:\napp:x:1002:\nstaff:x:50:\n",
    )
    .unwrap();
    assert_eq!(
        copy::resolve_chown("app", &c.root, "B:1").unwrap(),
        (1001, 1001)
    );
    assert_eq!(
        copy::resolve_chown("app:staff", &c.root, "B:1").unwrap(),
        (1001, 50)
    );
    assert_eq!(copy::resolve_chown("7:8", &c.root, "B:1").unwrap(), (7, 8));
    let e = copy::resolve_chown("nobody", &c.root, "B:1")
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("B:1: --chown=nobody"), "{e}");
}

#[test]
fn inputs_digest_matches_its_schema() {
    let schema: serde_json::Value = serde_json::from_slice(
        &fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/build-inputs.schema.json"))
            .unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let c = Case::new();
    fs::create_dir_all(c.ctx.join("d/e")).unwrap();
    fs::write(c.ctx.join("d/f"), b"f").unwrap();
    fs::write(c.ctx.join("t.tar.gz"), gzip(&tar_of(&[file("x", b"x")]))).unwrap();
    std::os::unix::fs::symlink("f", c.ctx.join("d/l")).unwrap();
    let mut s = spec(&["d", "t.tar.gz", "<<EOF"], "/x/");
    s.add = true;
    s.heredocs = vec![copy::HeredocSource {
        name: "EOF".into(),
        content: "hi\n".into(),
    }];
    let d = copy::inputs_digest(&Source::Context(&c.context()), &s).unwrap();
    let v = serde_json::to_value(&d).unwrap();
    let errors: Vec<String> = validator.iter_errors(&v).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}\n{v:#}");
    let kinds: Vec<&str> = d.files.iter().map(|f| f.kind.as_str()).collect();
    for k in ["dir", "file", "symlink", "heredoc"] {
        assert!(kinds.contains(&k), "{k} in {kinds:?}");
    }
    assert!(d.files.iter().any(|f| f.extract && f.path == "t.tar.gz"));
    // Round trip, and the check can fail.
    let back: copy::InputsDigest = serde_json::from_value(v.clone()).unwrap();
    assert_eq!(back, d);
    let mut bad = v;
    bad["files"][0]["mode"] = serde_json::json!(70000);
    assert!(!validator.is_valid(&bad));
}

/// SECURITY-TESTS 20 for COPY: while files are copied into `/a/`, another thread swaps
/// `/a` with a symlink to the host's `/` (renameat2 RENAME_EXCHANGE) in a loop. Every
/// write is resolved inside the destination root, so nothing lands on the host.
#[test]
fn copy_under_a_live_symlink_exchange_stays_inside() {
    if !require(common::is_root(), "root (writes into a rootfs)") {
        return;
    }
    let c = Case::new();
    let tag = format!("imgctl-copy-race-{}", std::process::id());
    let n = 600;
    fs::create_dir(c.ctx.join("many")).unwrap();
    for i in 0..n {
        fs::write(c.ctx.join("many").join(format!("{tag}-{i}")), b"x").unwrap();
    }
    fs::create_dir(c.root.join("a")).unwrap();
    std::os::unix::fs::symlink("/", c.root.join("b")).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swaps = {
        let stop = stop.clone();
        let root = c.root.clone();
        std::thread::spawn(move || {
            let dir = imgctl::sys::fs::open_dir_path(&root).unwrap();
            let mut swaps = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                rustix::fs::renameat_with(&dir, "a", &dir, "b", rustix::fs::RenameFlags::EXCHANGE)
                    .unwrap();
                swaps += 1;
            }
            swaps
        })
    };
    let before = fingerprint(&c.host);
    let mut results = Vec::new();
    for _ in 0..3 {
        results.push(c.copy(&spec(&["many"], "/a/")).map_err(|e| e.to_string()));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let swaps = swaps.join().unwrap();
    assert!(swaps > 100, "the race ran ({swaps} exchanges)");
    assert_eq!(fingerprint(&c.host), before);
    for i in 0..n {
        let host_path = Path::new("/").join(format!("{tag}-{i}"));
        assert!(
            !host_path.exists(),
            "{} written on the host",
            host_path.display()
        );
    }
    // Errors (an entry swapped away mid-copy) are single lines naming the step.
    for r in results.into_iter().filter_map(Result::err) {
        assert!(r.starts_with("Buildfile:2:") && !r.contains('\n'), "{r}");
    }
}

/// The hostile cases through `imgctl build` (FROM scratch, so no registry): a context
/// symlink to /etc/shadow lands as a link, a hostile archive that resolves inside
/// lands inside, one that breaks out is refused with one line and exit 125, and
/// nothing is tagged after the failure.
#[test]
fn hostile_context_and_archives_through_imgctl_build() {
    if !require(common::is_root(), "root (overlayfs build steps)") {
        return;
    }
    let c = Case::new();
    let store = c.base.join("store");
    let host = c.host.display().to_string();
    std::os::unix::fs::symlink("/etc/shadow", c.ctx.join("shadow")).unwrap();
    fs::write(
        c.ctx.join("contained.tar.xz"),
        xz(&tar_of(&[
            file("/etc/passwd", b"image passwd"),
            symlink("hostlink", &format!("{host}/etc")),
            symlink("dotdot", "../../../../etc"),
            file("dotdot/through-dotdot", b"y"),
        ])),
    )
    .unwrap();
    fs::write(
        c.ctx.join("escape.tar.bz2"),
        bzip2(&tar_of(&[file("../host/victim/x", b"pwned")])),
    )
    .unwrap();
    let before = fingerprint(&c.host);
    fs::write(
        c.base.join("Buildfile"),
        "FROM scratch\nCOPY shadow /shadow\nADD contained.tar.xz /x/\n",
    )
    .unwrap();
    let bf = c.base.join("Buildfile").display().to_string();
    let ctx = c.ctx.display().to_string();
    common::ok(common::imgctl(&store).args(["build", "-q", "-t", "ok:1", "-f", &bf, &ctx]));
    let merged =
        std::path::PathBuf::from(common::ok(common::imgctl(&store).args(["mount", "ok:1"])).trim());
    assert_eq!(
        fs::read_link(merged.join("shadow")).unwrap(),
        Path::new("/etc/shadow")
    );
    assert_eq!(
        fs::read(merged.join("x/etc/passwd")).unwrap(),
        b"image passwd"
    );
    assert!(merged.join("x/etc/through-dotdot").is_file());
    common::ok(common::imgctl(&store).arg("umount").arg(&merged));

    fs::write(
        c.base.join("Buildfile"),
        "FROM scratch\nCOPY shadow /shadow\nADD escape.tar.bz2 /y/\n",
    )
    .unwrap();
    let (code, err) =
        common::fails(common::imgctl(&store).args(["build", "-t", "bad:1", "-f", &bf, &ctx]));
    assert_eq!(code, 125, "{err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.contains("Buildfile:3") && last.contains("../host/victim/x"),
        "{err}"
    );
    assert_eq!(fingerprint(&c.host), before, "host directory unchanged");
    let images = common::ok(common::imgctl(&store).args(["images"]));
    assert!(
        !images.contains("bad"),
        "nothing tagged after a failed build: {images}"
    );
}
