//! Issue 15 items 5 and 10: sizes in Docker's units (kB/MB/GB, powers of 10) on
//! and off a terminal. `history` shows each layer's unpacked size (the bytes of
//! its regular files, what `images` adds up), `-H=false` in bytes; `pull` and
//! `push` progress off a terminal is a few lines in those units, never raw byte
//! counts; their bars on a terminal use the same units.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::common::registry::{registry_tools, Registry};
use crate::common::{self, have, imgctl, imgctl_bin, is_root, ok, output, require};

fn nginx_layout() -> Option<PathBuf> {
    let layout = PathBuf::from(
        std::env::var("IMGCTL_TESTDATA").unwrap_or_else(|_| "/var/cache/imgctl-testdata".into()),
    )
    .join("nginx-oci");
    let ready = require(is_root(), "root (mounts)")
        && require(registry_tools(), "docker-registry and skopeo")
        && require(
            layout.join("index.json").is_file(),
            &format!("fixture {} (scripts/fixtures/nginx.sh)", layout.display()),
        );
    ready.then_some(layout)
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&fs::read(p).unwrap()).unwrap()
}

/// The fixture's layers: (blob path, blob size), in manifest order.
fn layers(layout: &Path) -> Vec<(PathBuf, u64)> {
    let blob = |d: &str| {
        layout
            .join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let index = read_json(&layout.join("index.json"));
    let manifest = read_json(&blob(index["manifests"][0]["digest"].as_str().unwrap()));
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                blob(l["digest"].as_str().unwrap()),
                l["size"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Regular-file bytes of a gzip layer, computed with the system's tar (another
/// implementation than imgctl's): `tar -tvz` lists sizes, regular files start
/// with `-` (hard links with `h`, counted nothing, as Docker does).
fn files_bytes(blob: &Path) -> u64 {
    let out = ok(Command::new("tar").arg("-tvzf").arg(blob));
    out.lines()
        .filter(|l| l.starts_with('-'))
        .map(|l| l.split_whitespace().nth(2).unwrap().parse::<u64>().unwrap())
        .sum()
}

/// `12.3MB` -> bytes (approximately), or None when it is not Docker's form.
fn parse_human(s: &str) -> Option<f64> {
    let at = s.find(|c: char| c.is_ascii_alphabetic())?;
    let (num, unit) = s.split_at(at);
    let m = match unit {
        "B" => 1.0,
        "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        _ => return None,
    };
    let v: f64 = num.parse().ok()?;
    // Three significant digits at most.
    (num.chars().filter(char::is_ascii_digit).count() <= 3).then_some(v * m)
}

/// The cells of one column of a table printed with aligned columns.
fn column(table: &str, name: &str) -> Vec<String> {
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    let at = header.find(name).unwrap();
    lines
        .map(|l| l[at..].split_whitespace().next().unwrap_or("").to_string())
        .collect()
}

fn store_with(t: &Path, layout: &Path) -> PathBuf {
    let store = t.join("store");
    ok(Command::new("skopeo")
        .args(["copy", "--quiet"])
        .arg(format!("oci:{}:latest", layout.display()))
        .arg(format!(
            "oci:{}:docker.io/library/nginx:latest",
            store.display()
        )));
    store
}

#[test]
fn history_size_is_the_unpacked_layer_size_in_docker_units() {
    let Some(layout) = nginx_layout() else {
        return;
    };
    let t = common::tempdir();
    let store = store_with(t.path(), &layout);
    let layers = layers(&layout);
    let unpacked: Vec<u64> = layers.iter().map(|(p, _)| files_bytes(p)).collect();
    assert!(unpacked.iter().all(|n| *n > 0), "{unpacked:?}");

    let json: Value = serde_json::from_str(&ok(
        imgctl(&store).args(["history", "--format", "json", "nginx"])
    ))
    .unwrap();
    let schema =
        read_json(&Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/history.schema.json"));
    let v = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = v.iter_errors(&json).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:#?}");
    // Newest first; the non-empty entries are the layers, last layer first.
    let rows = json.as_array().unwrap();
    let filled: Vec<&Value> = rows
        .iter()
        .filter(|e| !e["EmptyLayer"].as_bool().unwrap())
        .collect();
    assert_eq!(filled.len(), layers.len());
    for (e, ((_, compressed), n)) in filled.iter().rev().zip(layers.iter().zip(&unpacked)) {
        assert_eq!(e["Size"].as_u64(), Some(*n), "{e}");
        assert_eq!(e["CompressedSize"].as_u64(), Some(*compressed), "{e}");
    }
    // The images SIZE is the sum of the same numbers.
    let images: Value =
        serde_json::from_str(&ok(imgctl(&store).args(["images", "--format", "json"]))).unwrap();
    assert_eq!(
        images[0]["Size"].as_u64(),
        Some(unpacked.iter().sum()),
        "{images}"
    );

    // -H=false: the same bytes in the table; the default: Docker's units for them.
    let raw = ok(imgctl(&store).args(["history", "-H=false", "nginx"]));
    let human = ok(imgctl(&store).args(["history", "nginx"]));
    let json_sizes: Vec<String> = rows.iter().map(|e| e["Size"].to_string()).collect();
    assert_eq!(column(&raw, "SIZE"), json_sizes, "{raw}");
    for (cell, e) in column(&human, "SIZE").iter().zip(rows) {
        let bytes = e["Size"].as_u64().unwrap() as f64;
        let shown = parse_human(cell).unwrap_or_else(|| panic!("{cell:?} in\n{human}"));
        assert!(
            (shown - bytes).abs() <= bytes * 0.005 + 0.5,
            "{cell} for {bytes} bytes\n{human}"
        );
    }

    // `size --progress plain`: a line per layer read, in the same units.
    let o = output(imgctl(&store).args(["size", "--progress", "plain", "nginx"]));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let read: Vec<&str> = err.lines().filter(|l| l.contains(" read: ")).collect();
    assert_eq!(read.len(), layers.len(), "{err}");
    // Lines come as layers finish; the uncompressed figure is the tar stream's.
    for (blob, compressed) in &layers {
        let short = &blob.file_name().unwrap().to_str().unwrap()[..12];
        let l = read.iter().find(|l| l.contains(short)).expect(short);
        let want = format!("read: {} compressed, ", docker_units(*compressed));
        assert!(l.contains(&want), "{l:?} lacks {want:?}");
        let un = l
            .split(", ")
            .nth(1)
            .and_then(|w| w.split(' ').next())
            .unwrap();
        assert!(parse_human(un).is_some(), "{l:?}");
    }
}

/// Every size-like word of a progress line: a human size (`12.3MB`) or a pair
/// (`12.3MB/45.6MB`) is fine; a bare number of 1000 or more is a raw byte count.
fn raw_counts(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.contains("sha256:") && !l.starts_with("Digest:"))
        .flat_map(|l| l.split_whitespace().skip(1))
        .map(|w| w.trim_matches(|c: char| "(),:".contains(c)))
        .filter(|w| w.parse::<u64>().is_ok_and(|n| n >= 1000))
        .map(str::to_string)
        .collect()
}

#[test]
fn pull_and_push_progress_is_in_docker_units_on_and_off_a_terminal() {
    let Some(layout) = nginx_layout() else {
        return;
    };
    let t = common::tempdir();
    let from = Registry::open();
    ok(Command::new("skopeo")
        .args(["copy", "--quiet", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:latest", layout.display()))
        .arg(format!("docker://{}/library/nginx:latest", from.addr)));
    let name = format!("{}/library/nginx:latest", from.addr);
    let store = t.path().join("store");

    // Off a terminal: a line per state change and per quarter of a large blob.
    let out = ok(imgctl(&store).args(["pull", "--no-unpack", &name]));
    assert!(!out.contains("bytes"), "{out}");
    assert!(raw_counts(&out).is_empty(), "{:?}\n{out}", raw_counts(&out));
    let big = layers(&layout).iter().map(|(_, s)| *s).max().unwrap();
    let big_h = format!("/{}", docker_units(big));
    assert!(
        out.contains(&format!("downloading {}", docker_units(big))),
        "{out}"
    );
    let quarters = out.lines().filter(|l| l.ends_with(&big_h)).count();
    assert!(
        (1..=3).contains(&quarters),
        "{quarters} quarter lines for {big_h}:\n{out}"
    );
    assert!(out.lines().count() <= 4 + 6 * 3, "too many lines:\n{out}");
    assert!(out.contains("fetched from"), "{out}");

    // Push to another registry: uploads, in the same units.
    let to = Registry::open();
    let dest = format!("{}/copy/nginx:1", to.addr);
    let out = ok(imgctl(&store).args(["push", &name, &dest]));
    assert!(
        out.contains(&format!("uploading {}", docker_units(big))),
        "{out}"
    );
    assert!(!out.contains("bytes"), "{out}");
    assert!(raw_counts(&out).is_empty(), "{:?}\n{out}", raw_counts(&out));

    // On a terminal (`script` gives imgctl a pty): the bars count in kB/MB.
    if !require(have("script"), "script (util-linux)") {
        return;
    }
    let fresh = t.path().join("fresh");
    let line = format!("{} pull --no-unpack {name}", imgctl_bin().display());
    let o = output(
        Command::new("script")
            .args(["-qec", &line, "/dev/null"])
            .env("IMGCTL_ROOT", &fresh)
            .env("TERM", "xterm")
            .env_remove("IMGCTL_REGISTRY_MIRROR"),
    );
    let tty = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{tty}");
    assert!(!tty.contains("MiB") && !tty.contains("KiB"), "{tty}");
    assert!(tty.contains(&docker_units(big)), "{tty}");
}

/// Docker's rendering of `n` (three significant digits), written here from the
/// rule rather than by calling imgctl's code.
fn docker_units(n: u64) -> String {
    let (mut v, mut u) = (n as f64, 0);
    let units = ["B", "kB", "MB", "GB"];
    while v >= 1000.0 && u < 3 {
        v /= 1000.0;
        u += 1;
    }
    let digits = if v < 10.0 {
        2
    } else if v < 100.0 {
        1
    } else {
        0
    };
    let s = format!("{v:.digits$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    format!("{s}{}", units[u])
}
