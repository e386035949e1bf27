//! Hostile layers against the real binary (issue 10 item 4): every snapshot backend
//! must refuse them quickly, with one clear line, in bounded memory.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use sha2::{Digest as _, Sha256};

use crate::common::layer::{write_oci_raw, RawLayer, Z};
use crate::common::{self, require};

/// Peak RSS allowed for an `imgctl` run on a header bomb.
const MAX_RSS: u64 = 64 << 20;

/// What the bomb's oversized header record is.
#[derive(Debug, Clone, Copy)]
enum Bomb {
    Pax,
    LongName,
    LongLink,
    Sparse,
}

/// Hashes what goes through into a compressor.
struct Hashed<W> {
    w: W,
    h: Sha256,
}

impl<W: Write> Write for Hashed<W> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let n = self.w.write(b)?;
        self.h.update(&b[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.w.flush()
    }
}

/// The tar of a bomb, written in pieces (its data part is far bigger than the
/// memory the extractor may use, and is never held whole here either).
fn write_bomb(kind: Bomb, w: &mut dyn Write) {
    const DATA: u64 = 160 << 20;
    let mut h = tar::Header::new_gnu();
    match kind {
        Bomb::Pax | Bomb::LongName | Bomb::LongLink => {
            h.as_gnu_mut().unwrap().name[..13].copy_from_slice(b"././@LongLink");
            h.set_entry_type(match kind {
                Bomb::Pax => tar::EntryType::XHeader,
                Bomb::LongName => tar::EntryType::GNULongName,
                _ => tar::EntryType::GNULongLink,
            });
            h.set_size(DATA);
            h.set_mode(0o644);
            h.set_cksum();
            w.write_all(h.as_bytes()).unwrap();
            // PAX records need not even parse: the tar crate reads them whole first.
            let chunk = vec![b'a'; 1 << 20];
            for _ in 0..DATA >> 20 {
                w.write_all(&chunk).unwrap();
            }
        }
        Bomb::Sparse => {
            // A sparse map of 32 Ki extension blocks of 21 regions each: 690 K
            // allocations in the tar crate.
            h.set_path("sparse").unwrap();
            h.set_entry_type(tar::EntryType::GNUSparse);
            h.set_size(0);
            h.set_mode(0o644);
            h.as_gnu_mut().unwrap().isextended[0] = 1;
            h.set_cksum();
            w.write_all(h.as_bytes()).unwrap();
            let blocks = 32 << 10;
            let mut off = 1u64;
            for b in 0..blocks {
                let mut ext = [0u8; 512];
                for r in 0..21 {
                    let o = format!("{off:011o}\0");
                    ext[r * 24..r * 24 + 12].copy_from_slice(o.as_bytes());
                    ext[r * 24 + 12..r * 24 + 24].copy_from_slice(b"00000000000\0");
                    off += 1;
                }
                ext[504] = u8::from(b + 1 < blocks);
                w.write_all(&ext).unwrap();
            }
        }
    }
    // An ordinary entry after it, then the end of the archive.
    let mut f = tar::Header::new_gnu();
    f.set_path("after").unwrap();
    f.set_size(0);
    f.set_mode(0o644);
    f.set_cksum();
    w.write_all(f.as_bytes()).unwrap();
    w.write_all(&[0u8; 1024]).unwrap();
}

fn bomb_layer(kind: Bomb, z: Z) -> RawLayer {
    let (blob, h) = match z {
        Z::Gzip => {
            let enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            let mut w = Hashed {
                w: enc,
                h: Sha256::new(),
            };
            write_bomb(kind, &mut w);
            (w.w.finish().unwrap(), w.h)
        }
        Z::Zstd => {
            let enc = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
            let mut w = Hashed {
                w: enc,
                h: Sha256::new(),
            };
            write_bomb(kind, &mut w);
            (w.w.finish().unwrap(), w.h)
        }
    };
    RawLayer {
        blob,
        compression: z,
        diff_id: format!("sha256:{}", hex::encode(h.finalize())),
    }
}

/// Run `cmd` to its end; returns (exit code, stderr, peak RSS in bytes of that
/// process alone, from wait4's rusage).
#[allow(clippy::zombie_processes)] // reaped by wait4 below, which std cannot do
fn run_measured(cmd: &mut Command) -> (i32, String, u64) {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid out-parameter.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child; `status` and `ru` outlive the call.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    assert_eq!(r, pid, "wait4: {}", std::io::Error::last_os_error());
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    (code, err, ru.ru_maxrss as u64 * 1024)
}

fn have_erofs() -> bool {
    std::fs::read_to_string("/proc/filesystems")
        .map(|s| s.contains("erofs"))
        .unwrap_or(false)
}

/// Snapshot backends to try: files always, EROFS where the kernel has it.
fn backends() -> Vec<&'static str> {
    let mut b = vec!["files"];
    if require(have_erofs(), "erofs in /proc/filesystems") {
        b.push("erofs");
    }
    b
}

fn assert_bomb_refused(store: &Path, layout: &Path, backend: &str, what: &str) {
    let (code, err, rss) = run_measured(
        common::imgctl(store)
            .args(["mount", "--snapshotter", backend])
            .arg(format!("oci:{}:bomb", layout.display())),
    );
    assert!(
        rss < MAX_RSS,
        "{what} ({backend}): peak RSS {} MiB (limit {} MiB)",
        rss >> 20,
        MAX_RSS >> 20
    );
    assert_eq!(code, 125, "{what} ({backend}): exit code; stderr: {err}");
    assert!(
        err.contains("exceeds the limit") && err.trim().lines().count() == 1,
        "{what} ({backend}): one clear line, got: {err}"
    );
    eprintln!(
        "{what} ({backend}): refused, peak RSS {} KiB: {}",
        rss >> 10,
        err.trim()
    );
    let layers = store.join("snapshots/layers");
    let left: Vec<_> = std::fs::read_dir(&layers)
        .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{what}: nothing left in layers/: {left:?}");
}

/// PAX, GNU long-name/long-link and GNU sparse header bombs (SECURITY-TESTS A16;
/// issue 10: a 510 KiB layer drove the tar crate to 537 MB): refused at the header,
/// peak RSS of the imgctl process < 64 MiB, for gzip and zstd layers, on every
/// snapshot backend.
#[test]
fn header_bombs_are_refused_in_bounded_memory() {
    if !require(common::is_root(), "root (imgctl mount)") {
        return;
    }
    let t = common::tempdir();
    for z in [Z::Gzip, Z::Zstd] {
        for kind in [Bomb::Pax, Bomb::LongName, Bomb::LongLink, Bomb::Sparse] {
            let what = format!(
                "{kind:?} bomb, {}",
                match z {
                    Z::Gzip => "gzip",
                    Z::Zstd => "zstd",
                }
            );
            let layout = t.path().join(what.replace([' ', ','], "-"));
            let layer = bomb_layer(kind, z);
            assert!(layer.blob.len() < 8 << 20, "{what}: a small blob");
            write_oci_raw(&layout, "bomb", &[layer]);
            for backend in backends() {
                let store = t.path().join(format!("store-{backend}"));
                assert_bomb_refused(&store, &layout, backend, &what);
            }
            std::fs::remove_dir_all(&layout).unwrap();
        }
    }
}

/// issue 10: a view mounted while another process detaches unused EROFS layers must
/// never get an empty lower (the check "is the layer mounted?" and the overlay mount
/// that uses it are ordered against the detach by the layer's mount lock). Two
/// mounters and one detacher loop; every view must show the layer's file.
#[test]
fn erofs_views_racing_layer_detach_always_see_their_layer() {
    use imgctl::image::{self, LayerFormat, MountOptions};
    use imgctl::snapshot::Overlay;
    if !require(common::is_root(), "root (mounts)")
        || !require(have_erofs(), "erofs in /proc/filesystems")
    {
        return;
    }
    let t = common::tempdir();
    let layout = t.path().join("oci");
    let tar = crate::common::layer::tar_of(&[
        crate::common::layer::dir("a"),
        crate::common::layer::file("a/marker", b"present"),
    ]);
    crate::common::layer::write_oci(&layout, "v1", &[tar], Z::Gzip);
    let store = t.path().join("store");
    let img = image::resolve_image(&store, &format!("oci:{}:v1", layout.display())).unwrap();
    let opts = MountOptions {
        dedup: true,
        snapshotter: Some(LayerFormat::Erofs),
    };
    // Unpack once up front, so the loops only mount.
    let v = image::mount(&store, &img, opts).unwrap();
    image::release(&store, &v.key).unwrap();
    let done = std::sync::atomic::AtomicBool::new(false);
    let empty = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        let mounters: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    for _ in 0..40 {
                        let v = image::mount(&store, &img, opts).unwrap();
                        if std::fs::read(v.merged.join("a/marker")).ok().as_deref()
                            != Some(&b"present"[..])
                        {
                            empty.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                        image::release(&store, &v.key).unwrap();
                    }
                })
            })
            .collect();
        s.spawn(|| {
            let snaps = Overlay::open(&store).unwrap();
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                snaps.unmount_unused_layers().unwrap();
            }
        });
        for m in mounters {
            m.join().unwrap();
        }
        done.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    assert_eq!(
        empty.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "views that saw an empty EROFS layer"
    );
    Overlay::open(&store).unwrap().unmount_layers().unwrap();
}
