//! Issue 15 item 1, Done-when line 1: `run` never refuses to start under load.
//! 100 `run --rm --network none busybox true` on a tmpfs store and 100 on an
//! ext4 store (the host's own when /tmp is ext4, else a loop-mounted ext4 image),
//! with three CPU-burning processes beside them, two runs at a time: not one
//! failure, and nothing left mounted. Every 25 runs start on a fresh store, so
//! the run that unpacks the image (the one whose finished unpack thread was still
//! listed when the sandbox counted threads) is among them. scripts/load-test.sh
//! does 500 of each with a release build.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::common::{self, have, imgctl, is_root, ok, output, require};

const RUNS: usize = 100;
const PER_STORE: usize = 25;
const AT_ONCE: usize = 2;

/// Busy loops beside the runs, killed on drop.
struct Burners(Vec<Child>);

impl Burners {
    fn start(n: usize) -> Burners {
        Burners(
            (0..n)
                .map(|_| {
                    Command::new("sh")
                        .args(["-c", "while :; do :; done"])
                        .stdin(Stdio::null())
                        .spawn()
                        .expect("start a CPU burner")
                })
                .collect(),
        )
    }
}

impl Drop for Burners {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A mount made by the test, lazily unmounted on drop.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn mount(args: &[&str], src: &Path, at: &Path) -> Mounted {
    std::fs::create_dir_all(at).unwrap();
    let o = output(Command::new("mount").args(args).arg(src).arg(at));
    assert!(
        o.status.success(),
        "mount {args:?} {}: {}",
        src.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    Mounted(at.to_path_buf())
}

/// True when `dir` is on ext4 (statfs magic EXT4_SUPER_MAGIC).
fn on_ext4(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt as _;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).unwrap();
    // SAFETY: statfs writes into the zeroed struct we own; `c` is NUL-terminated.
    let mut s: libc::statfs = unsafe { std::mem::zeroed() };
    (unsafe { libc::statfs(c.as_ptr(), &mut s) } == 0) && s.f_type == 0xEF53
}

/// An ext4 directory for stores: `t` itself when it is on ext4, else a 1 GB
/// sparse image file formatted and loop-mounted inside it.
fn ext4_dir(t: &Path) -> (PathBuf, Option<Mounted>) {
    if on_ext4(t) {
        let d = t.join("ext4");
        std::fs::create_dir_all(&d).unwrap();
        return (d, None);
    }
    let img = t.join("ext4.img");
    let f = std::fs::File::create(&img).unwrap();
    f.set_len(1 << 30).unwrap();
    ok(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&img));
    let at = t.join("ext4");
    let m = mount(&["-o", "loop"], &img, &at);
    (at, Some(m))
}

/// `busybox:latest` copied into a new store at `store` (nothing unpacked yet).
fn fill(store: &Path, layout: &Path) {
    ok(Command::new("skopeo")
        .args(["copy", "--quiet"])
        .arg(format!("oci:{}:latest", layout.display()))
        .arg(format!(
            "oci:{}:docker.io/library/busybox:latest",
            store.display()
        )));
}

/// RUNS runs, AT_ONCE at a time, a fresh store every PER_STORE runs under
/// `dir`. Returns the failures (run number and stderr).
fn runs(dir: &Path, layout: &Path) -> Vec<String> {
    let stores: Vec<PathBuf> = (0..RUNS.div_ceil(PER_STORE))
        .map(|i| dir.join(format!("store{i}")))
        .collect();
    for s in &stores {
        fill(s, layout);
    }
    let started = std::time::Instant::now();
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|sc| {
        for _ in 0..AT_ONCE {
            sc.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= RUNS {
                    break;
                }
                let o = output(imgctl(&stores[i / PER_STORE]).args([
                    "run",
                    "--rm",
                    "--network",
                    "none",
                    "busybox",
                    "true",
                ]));
                if !o.status.success() {
                    failures.lock().unwrap().push(format!(
                        "{}: run {i}: {}: {}",
                        dir.display(),
                        o.status,
                        String::from_utf8_lossy(&o.stderr).trim_end()
                    ));
                }
            });
        }
    });
    let mut failures = failures.into_inner().unwrap();
    // A figure for the log, never asserted (the machine may be busy).
    eprintln!(
        "{}: {RUNS} runs in {:.1}s, {} failed",
        dir.display(),
        started.elapsed().as_secs_f64(),
        failures.len()
    );
    for s in &stores {
        let left = common::sandbox::mounts_mentioning(s);
        if !left.is_empty() {
            failures.push(format!("{}: mounts left: {left:?}", s.display()));
        }
        let active = s.join("snapshots/active");
        let n = std::fs::read_dir(&active).map(|d| d.count()).unwrap_or(0);
        if n > 0 {
            failures.push(format!("{}: {n} active snapshots left", active.display()));
        }
    }
    failures
}

#[test]
fn run_under_cpu_load_on_tmpfs_and_ext4_never_fails() {
    let layout = PathBuf::from(
        std::env::var("IMGCTL_TESTDATA").unwrap_or_else(|_| "/var/cache/imgctl-testdata".into()),
    )
    .join("busybox-oci");
    if !(require(is_root(), "root (namespaces, mounts)")
        && require(have("skopeo"), "skopeo")
        && require(have("mkfs.ext4"), "mkfs.ext4 (e2fsprogs)")
        && require(
            layout.join("index.json").is_file(),
            &format!("fixture {} (scripts/fixtures/busybox.sh)", layout.display()),
        ))
    {
        return;
    }
    let t = common::tempdir();
    let tmpfs = t.path().join("tmpfs");
    let _m = mount(
        &["-t", "tmpfs", "-o", "size=1g"],
        Path::new("tmpfs"),
        &tmpfs,
    );
    let (ext4, _loop) = ext4_dir(t.path());
    let _burn = Burners::start(3);
    let mut failures = runs(&tmpfs, &layout);
    failures.extend(runs(&ext4, &layout));
    assert!(
        failures.is_empty(),
        "{} failures:\n{failures:#?}",
        failures.len()
    );
}
