//! `imgctl save`, `load` and `import` (issue 13 items 2 and 4): round trips that keep
//! digests, hostile archives that leave the store unchanged, closed pipes, and
//! interop both ways with podman, docker (its own dockerd), skopeo and umoci.
//! Stores are seeded with the busybox fixture by skopeo (an independent writer).
//!
//! Round trips, hostile archives, closed pipes and import here; the other tools in
//! [`interop`].

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::common::fixture::{busybox_layout, require_layout, seed_store};
use crate::common::{self, fails, have, imgctl, is_root, ok, output, require};
use crate::store::check_schema;

mod interop;

/// A store holding busybox as docker.io/library/busybox:latest, or None (skip).
fn seeded(dir: &Path) -> Option<PathBuf> {
    let layout = busybox_layout();
    if !(require(have("skopeo"), "skopeo") && require_layout(&layout, "busybox.sh")) {
        return None;
    }
    let store = dir.join("store");
    seed_store(&layout, &store, "docker.io/library/busybox:latest");
    Some(store)
}

/// Run `cmd` with stdout piped, read its first 512-byte block, then close the pipe
/// (a reader that goes away) and wait for it.
fn read_one_block_then_close(cmd: &mut Command) -> std::process::Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 512];
    child
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut first)
        .unwrap();
    drop(child.stdout.take());
    child.wait_with_output().unwrap()
}

fn index(store: &Path) -> Value {
    serde_json::from_slice(&fs::read(store.join("index.json")).unwrap()).unwrap()
}

/// (name, manifest digest) of every index entry.
fn entries(store: &Path) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = index(store)["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["annotations"]["org.opencontainers.image.ref.name"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                m["digest"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

fn image_id(store: &Path, name: &str) -> String {
    let v: Value = serde_json::from_str(&ok(imgctl(store).args(["inspect", name]))).unwrap();
    let v = if v.is_array() { v[0].clone() } else { v };
    v["Id"]
        .as_str()
        .unwrap_or_else(|| panic!("no Id: {v}"))
        .to_string()
}

/// Everything in a store but its lock files: path -> (size, sha256 of small files).
fn listing(store: &Path) -> BTreeMap<String, (u64, String)> {
    let mut out = BTreeMap::new();
    let mut todo = vec![store.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let rel = p
                .strip_prefix(store)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if rel.starts_with("locks") {
                continue;
            }
            let md = fs::symlink_metadata(&p).unwrap();
            if md.is_dir() {
                todo.push(p.clone());
                out.insert(rel, (0, "dir".into()));
            } else {
                let hash = if md.len() < (1 << 20) {
                    common::registry::sha256_hex(&fs::read(&p).unwrap())
                } else {
                    md.ino().to_string()
                };
                out.insert(rel, (md.len(), hash));
            }
        }
    }
    out
}

/// Read a tar into (name, type, link target, data) entries.
fn read_tar(data: &[u8]) -> Vec<(String, tar::EntryType, String, Vec<u8>)> {
    let mut ar = tar::Archive::new(data);
    let mut out = Vec::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let kind = e.header().entry_type();
        let link = e
            .link_name_bytes()
            .map(|l| String::from_utf8_lossy(&l).into_owned())
            .unwrap_or_default();
        let mut d = Vec::new();
        e.read_to_end(&mut d).unwrap();
        out.push((name, kind, link, d));
    }
    out
}

/// Write entries as a tar (raw names: `..` and absolute names are kept as given).
fn write_tar(entries: &[(String, tar::EntryType, String, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, link, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        // set_path refuses `..`; write the name bytes directly.
        let raw = &mut h.as_old_mut().name;
        raw.fill(0);
        raw[..name.len()].copy_from_slice(name.as_bytes());
        if !link.is_empty() {
            let l = &mut h.as_old_mut().linkname;
            l.fill(0);
            l[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_cksum();
        b.append(&h, &data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

fn load_file(store: &Path, archive: &Path) -> String {
    ok(imgctl(store).arg("load").arg("-i").arg(archive))
}

fn load_stdin(store: &Path, data: &[u8]) -> std::process::Output {
    let mut child = imgctl(store)
        .arg("load")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let data = data.to_vec();
    let w = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    w.join().unwrap();
    out
}

#[test]
fn oci_archive_round_trip_keeps_manifest_and_config_digests() {
    let t = common::tempdir();
    let Some(a) = seeded(t.path()) else { return };
    let tar = t.path().join("bb-oci.tar");
    ok(imgctl(&a)
        .args(["save", "--format", "oci-archive", "-o"])
        .arg(&tar)
        .arg("busybox"));
    let data = fs::read(&tar).unwrap();
    let names: Vec<String> = read_tar(&data).into_iter().map(|e| e.0).collect();
    assert!(names.contains(&"oci-layout".to_string()), "{names:?}");
    assert!(!names.contains(&"manifest.json".to_string()), "{names:?}");
    let idx: Value = serde_json::from_slice(
        &read_tar(&data)
            .into_iter()
            .find(|e| e.0 == "index.json")
            .unwrap()
            .3,
    )
    .unwrap();
    check_schema("index", &idx);
    assert_eq!(
        idx["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        "docker.io/library/busybox:latest"
    );
    let id = image_id(&a, "busybox");
    // From a file, and compressed three ways from stdin.
    let b = t.path().join("b");
    let out = load_file(&b, &tar);
    assert_eq!(out.trim(), "Loaded image: busybox:latest");
    assert_eq!(entries(&b), entries(&a));
    assert_eq!(image_id(&b, "busybox"), id);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&data).unwrap();
    let mut xz = Vec::new();
    lzma_rs::xz_compress(&mut &data[..], &mut xz).unwrap();
    for (how, bytes) in [
        ("gzip", gz.finish().unwrap()),
        ("zstd", zstd::encode_all(&data[..], 3).unwrap()),
        ("xz", xz),
    ] {
        let c = t.path().join(how);
        let out = load_stdin(&c, &bytes);
        assert!(
            out.status.success(),
            "{how}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(entries(&c), entries(&a), "{how}");
        assert_eq!(image_id(&c, "busybox"), id, "{how}");
    }
    // Loading again changes nothing.
    let before = listing(&b);
    load_file(&b, &tar);
    assert_eq!(listing(&b), before);
}

#[test]
fn docker_archive_round_trip_keeps_the_image_id() {
    let t = common::tempdir();
    let Some(a) = seeded(t.path()) else { return };
    let tar = t.path().join("bb.tar");
    ok(imgctl(&a).args(["save", "-o"]).arg(&tar).arg("busybox"));
    let ents = read_tar(&fs::read(&tar).unwrap());
    let get = |n: &str| -> Value {
        serde_json::from_slice(&ents.iter().find(|e| e.0 == n).unwrap().3).unwrap()
    };
    let manifest = get("manifest.json");
    check_schema("docker-archive-manifest", &manifest);
    check_schema("index", &get("index.json"));
    assert_eq!(manifest[0]["RepoTags"][0], "busybox:latest");
    let id = image_id(&a, "busybox");
    assert_eq!(
        manifest[0]["Config"],
        format!("blobs/sha256/{}", id.trim_start_matches("sha256:"))
    );
    let b = t.path().join("b");
    assert_eq!(load_file(&b, &tar).trim(), "Loaded image: busybox:latest");
    assert_eq!(image_id(&b, "busybox"), id);
    // With the OCI layout part (index.json) gone, as older Docker writes: the
    // manifest is made anew, the image ID stays.
    let legacy: Vec<_> = ents
        .iter()
        .filter(|e| e.0 != "index.json" && e.0 != "oci-layout")
        .cloned()
        .collect();
    let c = t.path().join("c");
    let out = load_stdin(&c, &write_tar(&legacy));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(image_id(&c, "busybox"), id);
    ok(imgctl(&c).args(["history", "busybox"]));
}

#[test]
fn several_images_in_one_archive_share_blobs_once() {
    let t = common::tempdir();
    let Some(a) = seeded(t.path()) else { return };
    ok(imgctl(&a).args(["tag", "busybox", "example.test/bb:1"]));
    ok(imgctl(&a).args(["tag", "busybox", "example.test/bb:2"]));
    let rootfs = t.path().join("rootfs");
    fs::create_dir_all(rootfs.join("etc")).unwrap();
    fs::write(rootfs.join("etc/hello"), b"hello\n").unwrap();
    ok(imgctl(&a)
        .arg("import")
        .arg(&rootfs)
        .arg("example.test/other:1"));
    // `example.test/bb` without a tag: every tag of it, as Docker does.
    let out =
        output(imgctl(&a).args(["save", "busybox", "example.test/bb", "example.test/other:1"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ents = read_tar(&out.stdout);
    let blobs: Vec<&String> = ents
        .iter()
        .map(|e| &e.0)
        .filter(|n| n.starts_with("blobs/sha256/") && n.len() > 13)
        .collect();
    let mut unique = blobs.clone();
    unique.dedup();
    assert_eq!(blobs.len(), unique.len(), "a blob written twice: {blobs:?}");
    // busybox: manifest, config, layer; other: manifest, config, layer.
    assert_eq!(blobs.len(), 6, "{blobs:?}");
    let b = t.path().join("b");
    let out = load_stdin(&b, &out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    for n in [
        "busybox:latest",
        "example.test/bb:1",
        "example.test/bb:2",
        "example.test/other:1",
    ] {
        assert!(
            printed.contains(&format!("Loaded image: {n}\n")),
            "{printed}"
        );
    }
    assert_eq!(entries(&b), entries(&a));
}

/// A hostile or broken archive: exit 125, one line naming the problem, the store
/// exactly as before.
fn refused(store: &Path, archive: &[u8], expect: &str) {
    let before = listing(store);
    let out = load_stdin(store, archive);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{expect}: {err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "{expect}: one line: {err}"
    );
    assert!(err.starts_with("imgctl: "), "{err}");
    assert!(err.contains(expect), "expected {expect:?} in: {err}");
    assert_eq!(listing(store), before, "{expect}: the store changed");
}

#[test]
fn hostile_archives_fail_with_one_line_and_leave_the_store_unchanged() {
    let t = common::tempdir();
    let Some(a) = seeded(t.path()) else { return };
    ok(imgctl(&a).args(["tag", "busybox", "example.test/keep:1"]));
    let good = output(imgctl(&a).args(["save", "--format", "oci-archive", "busybox"])).stdout;
    let docker = output(imgctl(&a).args(["save", "busybox"])).stdout;
    let ents = read_tar(&good);
    let layer = {
        let idx: Value =
            serde_json::from_slice(&ents.iter().find(|e| e.0 == "index.json").unwrap().3).unwrap();
        let m = idx["manifests"][0]["digest"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:")
            .to_string();
        let mb = &ents
            .iter()
            .find(|e| e.0 == format!("blobs/sha256/{m}"))
            .unwrap()
            .3;
        let mv: Value = serde_json::from_slice(mb).unwrap();
        format!(
            "blobs/sha256/{}",
            mv["layers"][0]["digest"]
                .as_str()
                .unwrap()
                .trim_start_matches("sha256:")
        )
    };
    // The target store must not hold the blobs already, or nothing would be new.
    let store = t.path().join("target");
    let rootfs = t.path().join("rootfs");
    fs::create_dir_all(&rootfs).unwrap();
    fs::write(rootfs.join("x"), b"x").unwrap();
    ok(imgctl(&store)
        .arg("import")
        .arg(&rootfs)
        .arg("example.test/present:1"));

    let with = |extra: (String, tar::EntryType, String, Vec<u8>)| {
        let mut v = ents.clone();
        v.insert(1, extra);
        write_tar(&v)
    };
    let file = tar::EntryType::Regular;
    refused(
        &store,
        &with(("../escape".into(), file, String::new(), b"x".to_vec())),
        "path escapes the archive",
    );
    refused(
        &store,
        &with(("/etc/evil".into(), file, String::new(), b"x".to_vec())),
        "absolute name",
    );
    refused(
        &store,
        &with((
            "blobs/link".into(),
            tar::EntryType::Symlink,
            "../../etc/passwd".into(),
            Vec::new(),
        )),
        "leaves the archive",
    );
    refused(
        &store,
        &with((
            "blobs/abs".into(),
            tar::EntryType::Symlink,
            "/etc/passwd".into(),
            Vec::new(),
        )),
        "absolute",
    );
    refused(
        &store,
        &with((
            "dev".into(),
            tar::EntryType::Char,
            String::new(),
            Vec::new(),
        )),
        "unsupported entry type",
    );
    // A tampered layer blob (same name, one byte changed).
    let tampered: Vec<_> = ents
        .iter()
        .cloned()
        .map(|mut e| {
            if e.0 == layer {
                let n = e.3.len();
                e.3[n / 2] ^= 0x55;
            }
            e
        })
        .collect();
    refused(&store, &write_tar(&tampered), "tampered");
    // A manifest naming a blob that is not there.
    let missing: Vec<_> = ents.iter().filter(|e| e.0 != layer).cloned().collect();
    refused(&store, &write_tar(&missing), "not in the archive");
    // An oversized manifest.json (valid JSON padded past 4 MiB).
    let mut big: Vec<_> = read_tar(&docker);
    for e in big.iter_mut().filter(|e| e.0 == "manifest.json") {
        let mut padded = vec![b' '; 5 << 20];
        padded.extend_from_slice(&e.3);
        e.3 = padded;
    }
    refused(&store, &write_tar(&big), "limit");
    // A layer whose content is not what the config's diff ID says (docker-archive
    // with its layer under a plain name, so only the diff ID can notice).
    let mut other = read_tar(&docker)
        .into_iter()
        .filter(|e| e.0 != "index.json" && e.0 != layer)
        .collect::<Vec<_>>();
    let fake = crate::common::layer::gzip(&crate::common::layer::tar_of(&[
        crate::common::layer::file("x", b"not busybox"),
    ]));
    other.push(("layer.tar".into(), file, String::new(), fake));
    for e in other.iter_mut().filter(|e| e.0 == "manifest.json") {
        let mut m: Value = serde_json::from_slice(&e.3).unwrap();
        m[0]["Layers"][0] = "layer.tar".into();
        e.3 = serde_json::to_vec(&m).unwrap();
    }
    refused(
        &store,
        &write_tar(&other),
        "its uncompressed content hashes to",
    );
    // Not an archive at all, an empty one, and a root filesystem tar.
    refused(&store, &[0x42u8; 4096], "not a tar");
    refused(&store, &write_tar(&[]), "not an image archive");
    refused(
        &store,
        &write_tar(&[(
            "etc/passwd".into(),
            file,
            String::new(),
            b"root:x:0:0::/:/bin/sh\n".to_vec(),
        )]),
        "imgctl import",
    );
}

#[test]
fn save_refuses_a_terminal_and_a_closed_pipe_ends_quietly() {
    let t = common::tempdir();
    let Some(a) = seeded(t.path()) else { return };
    // The reader goes away after the first block.
    let out = read_one_block_then_close(imgctl(&a).args(["save", "busybox"]));
    assert!(out.status.success(), "closed stdout: {:?}", out.status);
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "",
        "closed stdout must end quietly"
    );
    if have("script") {
        let out = output(
            Command::new("script")
                .args(["-qec"])
                .arg(format!(
                    "'{}' --root '{}' save busybox",
                    common::imgctl_bin().display(),
                    a.display()
                ))
                .arg("/dev/null"),
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{text}");
        assert!(text.contains("refusing to save to a terminal"), "{text}");
        assert_eq!(text.trim_end().lines().count(), 1, "{text}");
    }
    // A failed save to a file leaves no file behind.
    let dest = t.path().join("none.tar");
    let (code, _) = fails(
        imgctl(&a)
            .args(["save", "-o"])
            .arg(&dest)
            .arg("no-such-image"),
    );
    assert_eq!(code, 125);
    assert!(!dest.exists());
    assert_eq!(
        fs::read_dir(t.path())
            .unwrap()
            .filter(|e| e
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with('.'))
            .count(),
        0
    );
}

#[test]
fn import_makes_a_one_layer_image() {
    let t = common::tempdir();
    let store = t.path().join("store");
    let rootfs = t.path().join("rootfs");
    fs::create_dir_all(rootfs.join("etc")).unwrap();
    fs::write(rootfs.join("etc/motd"), b"imported\n").unwrap();
    let tar_bytes = crate::common::layer::tar_of(&[
        crate::common::layer::dir("etc"),
        crate::common::layer::file("etc/motd", b"imported\n"),
    ]);
    let tarfile = t.path().join("rootfs.tar.gz");
    fs::write(&tarfile, crate::common::layer::gzip(&tar_bytes)).unwrap();
    let id = ok(imgctl(&store)
        .arg("import")
        .arg(&tarfile)
        .arg("example.test/imp:1")
        .args([
            "--change",
            r#"CMD ["/bin/cat", "/etc/motd"]"#,
            "--change",
            "ENV A=b",
            "-m",
            "from a tar",
        ]));
    let v: Value =
        serde_json::from_str(&ok(imgctl(&store).args(["inspect", "example.test/imp:1"]))).unwrap();
    let v = if v.is_array() { v[0].clone() } else { v };
    assert_eq!(v["Id"].as_str().unwrap(), id.trim());
    assert_eq!(
        v["Config"]["Cmd"],
        serde_json::json!(["/bin/cat", "/etc/motd"])
    );
    assert!(v["Config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e == "A=b"));
    let layers = v["RootFS"]["Layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    // The diff ID is the digest of the uncompressed tar given.
    assert_eq!(
        layers[0],
        format!("sha256:{}", common::registry::sha256_hex(&tar_bytes))
    );
    // From stdin and from a directory; a bad --change and a non-tar are one line.
    let mut child = imgctl(&store)
        .args(["import", "-", "example.test/imp:stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&tar_bytes).unwrap();
    assert!(child.wait_with_output().unwrap().status.success());
    ok(imgctl(&store)
        .arg("import")
        .arg(&rootfs)
        .arg("example.test/imp:dir"));
    let (code, err) = fails(
        imgctl(&store)
            .arg("import")
            .arg(&rootfs)
            .args(["x:1", "--change", "RUN true"]),
    );
    assert_eq!(code, 125);
    assert!(err.contains("RUN is not allowed"), "{err}");
    let junk = t.path().join("junk");
    fs::write(&junk, vec![0x42u8; 4096]).unwrap();
    let (code, err) = fails(imgctl(&store).arg("import").arg(&junk));
    assert_eq!(code, 125);
    assert!(err.contains("not a readable tar"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    // Runs (root and the sandbox's prerequisites only).
    if is_root() && common::sandbox::ready() {
        let _serial = common::sandbox::serial();
        let bb = t.path().join("bb");
        fs::create_dir_all(bb.join("bin")).unwrap();
        fs::copy("/bin/busybox", bb.join("bin/busybox")).unwrap();
        ok(imgctl(&store)
            .arg("import")
            .arg(&bb)
            .arg("example.test/bb:run"));
        let out = ok(imgctl(&store).args([
            "run",
            "--rm",
            "example.test/bb:run",
            "/bin/busybox",
            "echo",
            "hello",
        ]));
        assert_eq!(out, "hello\n");
    }
}

/// Issue 15 item 7: `export` without `-o` writes to stdout, refuses a terminal, and
/// ends quietly (no scratch directory left) when the reader goes away.
#[test]
fn export_writes_to_stdout_refuses_a_terminal_and_ends_quietly_on_a_closed_pipe() {
    let t = common::tempdir();
    if !require(is_root(), "root (export applies layers with their owners)") {
        return;
    }
    let Some(a) = seeded(t.path()) else { return };
    let out = output(imgctl(&a).args(["export", "busybox"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let names: Vec<String> = read_tar(&out.stdout).into_iter().map(|e| e.0).collect();
    assert!(
        names
            .iter()
            .any(|n| n.trim_start_matches("./") == "bin/busybox"),
        "{names:?}"
    );
    let out = read_one_block_then_close(imgctl(&a).args(["export", "busybox"]));
    assert!(out.status.success(), "closed stdout: {:?}", out.status);
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    let left: Vec<_> = fs::read_dir(a.join("tmp"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "scratch left behind: {left:?}");
    if have("script") {
        let out = output(
            Command::new("script")
                .arg("-qec")
                .arg(format!(
                    "'{}' --root '{}' export busybox",
                    common::imgctl_bin().display(),
                    a.display()
                ))
                .arg("/dev/null"),
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{text}");
        assert!(text.contains("refusing to export to a terminal"), "{text}");
        assert_eq!(text.trim_end().lines().count(), 1, "{text}");
    }
}

/// A blob changed on disk after its commit fails the save (hashed while copied),
/// and `-o FILE` then leaves no file under that name.
#[test]
fn save_refuses_a_blob_changed_on_disk() {
    let t = common::tempdir();
    let Some(a) = seeded(t.path()) else { return };
    let layer = fs::read_dir(a.join("blobs/sha256"))
        .unwrap()
        .flatten()
        .max_by_key(|e| e.metadata().unwrap().len())
        .unwrap()
        .path();
    let mut data = fs::read(&layer).unwrap();
    let n = data.len();
    data[n / 2] ^= 0x01;
    let mut perm = fs::metadata(&layer).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o644);
    fs::set_permissions(&layer, perm).unwrap();
    fs::write(&layer, &data).unwrap();
    let dest = t.path().join("out.tar");
    let (code, err) = fails(imgctl(&a).args(["save", "-o"]).arg(&dest).arg("busybox"));
    assert_eq!(code, 125);
    assert!(err.contains("changed on disk"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(!dest.exists());
    let stray: Vec<_> = fs::read_dir(t.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
}
