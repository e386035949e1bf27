//! Interop both ways with podman, docker (its own dockerd), skopeo and umoci: each loads
//! and runs what imgctl saves, and imgctl loads what each saves.

use super::*;

// ---- Interop ------------------------------------------------------------------

fn podman(dir: &Path) -> Command {
    let mut c = Command::new("podman");
    c.arg("--root")
        .arg(dir.join("root"))
        .arg("--runroot")
        .arg(dir.join("run"))
        // Its own tmpdir: `system reset` must not touch the host's /run/libpod.
        .arg("--tmpdir")
        .arg(dir.join("tmp"))
        .args([
            "--storage-driver",
            "overlay",
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "file",
        ]);
    c
}

/// `podman run` as this host allows: runc (crun refuses hybrid cgroups), no
/// network, rlimits podman may set here (no CAP_SYS_RESOURCE).
const PODMAN_RUN: &[&str] = &[
    "run",
    "--rm",
    "--network",
    "none",
    "--runtime",
    "runc",
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=1024:1024",
];

#[test]
fn podman_loads_and_runs_imgctl_archives_and_imgctl_loads_podman_saves() {
    let t = common::tempdir();
    if !(require(is_root(), "root (podman storage)")
        && require(have("podman"), "podman")
        && require(have("runc"), "runc"))
    {
        return;
    }
    let Some(a) = seeded(t.path()) else { return };
    let pd = t.path().join("podman");
    for format in ["docker-archive", "oci-archive"] {
        let tar = t.path().join(format!("{format}.tar"));
        ok(imgctl(&a)
            .args(["save", "--format", format, "-o"])
            .arg(&tar)
            .arg("busybox"));
        let out = ok(podman(&pd).args(["load", "-i"]).arg(&tar));
        assert!(out.contains("busybox:latest"), "{format}: {out}");
        let out = ok(podman(&pd).args(PODMAN_RUN).args([
            "docker.io/library/busybox:latest",
            "echo",
            "hi",
        ]));
        assert_eq!(out, "hi\n", "{format}");
        let id = ok(podman(&pd).args([
            "image",
            "inspect",
            "--format",
            "{{.Id}}",
            "docker.io/library/busybox:latest",
        ]));
        assert_eq!(
            format!("sha256:{}", id.trim()),
            image_id(&a, "busybox"),
            "{format}"
        );
        // And back: podman save in the same format, imgctl load.
        let back = t.path().join(format!("podman-{format}.tar"));
        ok(podman(&pd)
            .args(["save", "-q", "--format", format, "-o"])
            .arg(&back)
            .arg("docker.io/library/busybox:latest"));
        let b = t.path().join(format!("from-podman-{format}"));
        assert_eq!(load_file(&b, &back).trim(), "Loaded image: busybox:latest");
        assert_eq!(image_id(&b, "busybox"), image_id(&a, "busybox"));
        ok(podman(&pd).args(["rmi", "-f", "docker.io/library/busybox:latest"]));
    }
    let _ = output(podman(&pd).args(["system", "reset", "--force"]));
}

/// A dockerd of our own (never the system socket), killed on drop.
struct Dockerd {
    dir: PathBuf,
    child: std::process::Child,
}

impl Dockerd {
    fn start(dir: &Path) -> Option<Dockerd> {
        fs::create_dir_all(dir).unwrap();
        let sock = dir.join("d.sock");
        let log = fs::File::create(dir.join("dockerd.log")).unwrap();
        let child = Command::new("dockerd")
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("-H")
            .arg(format!("unix://{}", sock.display()))
            .arg("--pidfile")
            .arg(dir.join("d.pid"))
            .args([
                "--exec-opt",
                "native.cgroupdriver=cgroupfs",
                "--bridge",
                "none",
                "--iptables=false",
                "--ip6tables=false",
            ])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .ok()?;
        let d = Dockerd {
            dir: dir.to_path_buf(),
            child,
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while std::time::Instant::now() < deadline {
            if d.cli()
                .arg("version")
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false)
            {
                return Some(d);
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        panic!(
            "dockerd did not start in 60 s: {}",
            fs::read_to_string(dir.join("dockerd.log")).unwrap_or_default()
        );
    }

    fn cli(&self) -> Command {
        let mut c = Command::new("docker");
        c.arg("-H")
            .arg(format!("unix://{}", self.dir.join("d.sock").display()));
        c
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Leftover mounts of the data root would keep the temp dir from going.
        let _ = Command::new("umount")
            .arg("-R")
            .arg(self.dir.join("data"))
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("umount")
            .arg("-R")
            .arg(self.dir.join("exec"))
            .stderr(Stdio::null())
            .status();
    }
}

/// One dockerd for every docker check (its start is the slow part).
#[test]
fn docker_loads_and_runs_imgctl_archives_and_imgctl_loads_docker_saves() {
    let t = common::tempdir();
    if !(require(is_root(), "root (dockerd)")
        && require(
            have("dockerd") && have("docker"),
            "docker.io (dockerd, docker)",
        ))
    {
        return;
    }
    let Some(a) = seeded(t.path()) else { return };
    let tar = t.path().join("bb.tar");
    ok(imgctl(&a).args(["save", "-o"]).arg(&tar).arg("busybox"));
    let d = Dockerd::start(&t.path().join("docker")).expect("start dockerd");
    let out = ok(d.cli().args(["load", "-i"]).arg(&tar));
    assert_eq!(out.trim(), "Loaded image: busybox:latest");
    let id = ok(d
        .cli()
        .args(["image", "inspect", "--format", "{{.Id}}", "busybox:latest"]));
    assert_eq!(
        id.trim(),
        image_id(&a, "busybox"),
        "docker load keeps the image ID"
    );
    let out = ok(d.cli().args([
        "run",
        "--rm",
        "--network",
        "none",
        "busybox:latest",
        "echo",
        "hi",
    ]));
    assert_eq!(out, "hi\n");
    let _ = output(
        d.cli()
            .args(["run", "--rm", "--network", "none", "busybox:latest", "true"]),
    );
    // docker save (file and pipe) -> imgctl load.
    ok(d.cli().args(["tag", "busybox:latest", "example.test/dk:1"]));
    let saved = t.path().join("docker-save.tar");
    ok(d.cli()
        .args(["save", "-o"])
        .arg(&saved)
        .args(["busybox:latest", "example.test/dk:1"]));
    let b = t.path().join("b");
    let out = load_file(&b, &saved);
    assert!(
        out.contains("Loaded image: busybox:latest")
            && out.contains("Loaded image: example.test/dk:1"),
        "{out}"
    );
    assert_eq!(image_id(&b, "example.test/dk:1"), image_id(&a, "busybox"));
    let piped = output(d.cli().args(["save", "busybox:latest"]));
    assert!(piped.status.success());
    let c = t.path().join("c");
    let out = load_stdin(&c, &piped.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(image_id(&c, "busybox"), image_id(&a, "busybox"));
    drop(d);
}

#[test]
fn imgctl_loads_skopeo_archives_and_umoci_unpacks_imgctl_oci_archives() {
    let t = common::tempdir();
    let Some(a) = seeded(t.path()) else { return };
    let layout = busybox_layout();
    let id = image_id(&a, "busybox");
    let d = t.path().join("sk-docker.tar");
    ok(Command::new("skopeo")
        .args(["copy", "--quiet"])
        .arg(format!("oci:{}:latest", layout.display()))
        .arg(format!("docker-archive:{}:example.test/sk:1", d.display())));
    let o = t.path().join("sk-oci.tar");
    ok(Command::new("skopeo")
        .args(["copy", "--quiet"])
        .arg(format!("oci:{}:latest", layout.display()))
        .arg(format!("oci-archive:{}:example.test/sk:2", o.display())));
    let b = t.path().join("b");
    assert_eq!(load_file(&b, &d).trim(), "Loaded image: example.test/sk:1");
    assert_eq!(load_file(&b, &o).trim(), "Loaded image: example.test/sk:2");
    assert_eq!(image_id(&b, "example.test/sk:1"), id);
    assert_eq!(image_id(&b, "example.test/sk:2"), id);
    // A bare tag names no repository: loaded by ID only.
    let bare = t.path().join("sk-bare.tar");
    ok(Command::new("skopeo")
        .args(["copy", "--quiet"])
        .arg(format!("oci:{}:latest", layout.display()))
        .arg(format!("oci-archive:{}:latest", bare.display())));
    let c = t.path().join("c");
    assert_eq!(
        load_file(&c, &bare).trim(),
        format!("Loaded image ID: {id}")
    );
    assert_eq!(image_id(&c, &id), id);
    // skopeo reads imgctl's archives.
    let mine = t.path().join("mine-oci.tar");
    ok(imgctl(&a)
        .args(["save", "--format", "oci-archive", "-o"])
        .arg(&mine)
        .arg("busybox"));
    ok(Command::new("skopeo").args(["inspect"]).arg(format!(
        "oci-archive:{}:docker.io/library/busybox:latest",
        mine.display()
    )));
    let mine_d = t.path().join("mine-docker.tar");
    ok(imgctl(&a).args(["save", "-o"]).arg(&mine_d).arg("busybox"));
    ok(Command::new("skopeo")
        .args(["inspect"])
        .arg(format!("docker-archive:{}", mine_d.display())));
    if !require(have("umoci"), "umoci") {
        return;
    }
    let dir = t.path().join("umoci-layout");
    fs::create_dir_all(&dir).unwrap();
    ok(Command::new("tar")
        .arg("-xf")
        .arg(&mine)
        .arg("-C")
        .arg(&dir));
    let bundle = t.path().join("bundle");
    ok(Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!(
            "{}:docker.io/library/busybox:latest",
            dir.display()
        ))
        .arg(&bundle));
    assert!(bundle.join("rootfs/bin/busybox").exists() || bundle.join("rootfs/bin").is_dir());
    assert!(bundle.join("config.json").is_file());
}
