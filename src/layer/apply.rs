//! Safe, fd-relative application of a layer tar.
//!
//! The hard cases, and what this code does about them:
//! * Names are never trusted. `..` components are refused (SECURITY-TESTS A1);
//!   leading `/` and `.` components are dropped, so `/etc/passwd` lands in
//!   `<root>/etc/passwd` (A2). An entry naming the root itself may only be a
//!   directory (A5, CVE-2021-29136).
//! * Parents are opened with `openat2(RESOLVE_IN_ROOT)`, so a symlink in a parent path
//!   — planted by an earlier entry, a lower layer or a live attacker — resolves inside
//!   the root (A3, A4, A20). The final component is created with `O_EXCL`/`*at`
//!   calls and never followed, so metadata never lands on a link target (A8,
//!   CVE-2021-32760). A link in the way is replaced, not written through (A12).
//! * Hardlink targets are resolved the same way and linked without following (A6, A7);
//!   the header's owner/mode on a hardlink entry is ignored.
//! * Whiteouts hide lower layers only, never entries of the same layer (OCI
//!   image-spec layer.md): in overlay mode they become 0:0 character devices (skipped
//!   when the name already exists in this layer); in flatten mode they delete, except
//!   paths this layer created. Opaque markers are idempotent per directory, so 10^5
//!   repeated markers stay linear (A11). `.wh.`, `.wh..` and `.wh...` are refused (A9).
//! * Bombs: entry count, total bytes and PAX size are limited; decompression runs on
//!   its own thread with a byte limit, so a 10 GiB gzip of zeros stops early (A16).
//! * The uncompressed stream, including trailing padding, is hashed and compared with
//!   the expected diff ID (A17, A19).

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::{mpsc, Arc, Mutex};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps};

use super::compress::{decoder, Compression};
use super::guard::{header_limit, HeaderGuard};
use super::LayerError;

/// The tar stream as the entry readers see it.
pub(super) type Stream = HeaderGuard<ChannelReader>;
use crate::oci::{Digest, Digester};
use crate::sys::fs as sfs;

/// Where a layer is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyMode {
    /// Into an empty directory that becomes an overlayfs lower layer: `.wh.X` becomes a
    /// whiteout device, `.wh..wh..opq` the `trusted.overlay.opaque` xattr.
    Overlay,
    /// Onto the result of the layers below: whiteouts delete.
    Flatten,
}

/// What to do with character and block device entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DevicePolicy {
    /// Create them with their major/minor (needs CAP_MKNOD).
    Create,
    /// Skip them with a warning (rootless).
    Skip,
    /// Refuse the layer.
    Reject,
}

impl DevicePolicy {
    /// Create when running as root, skip otherwise (SECURITY-TESTS A13).
    pub fn for_current_user() -> DevicePolicy {
        if !rootless() {
            DevicePolicy::Create
        } else {
            DevicePolicy::Skip
        }
    }

    /// Apply the policy to a device entry: `Ok(Some((major, minor)))` to create it,
    /// `Ok(None)` to skip it (with a warning naming the layer and `path`), or the
    /// refusal. Shared by the file and EROFS extractors.
    pub(super) fn device<R: Read>(
        self,
        entry: &tar::Entry<'_, R>,
        layer: &dyn std::fmt::Display,
        path: &[u8],
    ) -> Result<Option<(u32, u32)>, Failure> {
        match self {
            DevicePolicy::Reject => invalid("device nodes are not allowed in this layer"),
            DevicePolicy::Skip => {
                tracing::warn!(
                    "layer {layer}: skipping device node {}",
                    String::from_utf8_lossy(path)
                );
                Ok(None)
            }
            DevicePolicy::Create => Ok(Some((
                entry.header().device_major()?.unwrap_or(0),
                entry.header().device_minor()?.unwrap_or(0),
            ))),
        }
    }
}

/// Bounds against decompression and archive bombs.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Tar entries per layer.
    pub max_entries: u64,
    /// Uncompressed bytes per layer (the whole tar stream).
    pub max_bytes: u64,
    /// PAX extension bytes per entry.
    pub max_pax_bytes: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_entries: 2_000_000,
            max_bytes: 64 << 30,
            max_pax_bytes: 1 << 20,
        }
    }
}

/// How to apply a layer.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    pub mode: ApplyMode,
    pub devices: DevicePolicy,
    pub limits: Limits,
    /// Name of the layer in errors (normally its blob digest).
    pub layer: String,
    /// When set, the uncompressed stream must hash to this diff ID.
    pub expected_diff_id: Option<Digest>,
    /// Threads that write small regular files while the main thread goes on reading
    /// the archive (overlay mode only; 0 = write everything on one thread). Inode
    /// creation dominates unpack time on ext4 (DESIGN.md section 6), and it overlaps.
    pub workers: usize,
    /// Apply a `./` entry's owner, mode, times and xattrs to the target directory
    /// itself. Off when the target is a directory the user named (a bundle's
    /// rootfs, an export's scratch dir): an image must not make it 0777 or hand it
    /// to another uid (issue 8).
    pub root_metadata: bool,
}

impl ApplyOptions {
    pub fn new(mode: ApplyMode, layer: impl Into<String>) -> ApplyOptions {
        ApplyOptions {
            mode,
            devices: DevicePolicy::for_current_user(),
            limits: Limits::default(),
            layer: layer.into(),
            expected_diff_id: None,
            workers: match std::thread::available_parallelism().map(|n| n.get()) {
                Ok(n) if n >= 2 => n.min(4),
                _ => 0,
            },
            root_metadata: true,
        }
    }
}

/// What an apply did.
#[derive(Debug, Clone)]
pub struct Applied {
    /// sha256 of the uncompressed tar stream.
    pub diff_id: Digest,
    /// Uncompressed bytes read.
    pub tar_bytes: u64,
    /// Tar entries applied (PAX and long-name headers not counted).
    pub entries: u64,
}

/// Apply the layer read from `blob` (compressed as `compression`, verified against its
/// magic bytes) to the directory `target`.
pub fn apply<R: Read + Send>(
    blob: R,
    compression: Compression,
    target: &Path,
    opts: &ApplyOptions,
) -> Result<Applied, LayerError> {
    let root = sfs::open_dir_path(target).map_err(|source| LayerError::Target {
        path: target.to_path_buf(),
        source,
    })?;
    stream_layer(blob, compression, opts, |reader| {
        Extractor::new(root, opts).run(reader)
    })
}

/// Decompress `blob` on a helper thread (hashing the tar stream as it goes) and hand
/// the tar stream to `consume`, which returns the number of entries it handled. Then
/// check limits and the diff ID.
pub(super) fn stream_layer<R: Read + Send>(
    blob: R,
    compression: Compression,
    opts: &ApplyOptions,
    consume: impl FnOnce(ChannelReader) -> Result<u64, LayerError>,
) -> Result<Applied, LayerError> {
    let layer = opts.layer.as_str();
    let dec = decoder(blob, compression, layer)?;
    std::thread::scope(|s| {
        let (tx, rx) = mpsc::sync_channel::<io::Result<Vec<u8>>>(16);
        let max_bytes = opts.limits.max_bytes;
        let producer = s.spawn(move || pump(dec, tx, max_bytes));
        let result = consume(ChannelReader::new(rx));
        // The producer ends when it hits EOF, or when the receiver is gone.
        let pumped = producer.join();
        // A size limit hit while decompressing is the real cause of whatever the tar
        // reader then reported.
        if let Ok(Err(e)) = &pumped {
            if is_limit(e) {
                return Err(stream_error(
                    layer,
                    io::Error::other(LimitHit),
                    &opts.limits,
                ));
            }
        }
        let entries = result?;
        let (diff_id, tar_bytes) = match pumped {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => return Err(stream_error(layer, e, &opts.limits)),
            Err(_) => {
                return Err(LayerError::Read {
                    layer: layer.to_string(),
                    source: io::Error::other("decompression thread panicked"),
                })
            }
        };
        if let Some(expected) = &opts.expected_diff_id {
            if *expected != diff_id {
                return Err(LayerError::DiffIdMismatch {
                    layer: layer.to_string(),
                    expected: expected.to_string(),
                    found: diff_id.to_string(),
                });
            }
        }
        Ok(Applied {
            diff_id,
            tar_bytes,
            entries,
        })
    })
}

/// Apply an overlay-mode layer into a new directory `dest`, atomically: the layer is
/// extracted into a temporary sibling directory that is renamed to `dest` only when
/// the whole layer applied (and matched its diff ID); on any error it is removed.
/// When `dest` already exists (another process won the race) the new copy is dropped.
pub fn unpack_new<R: Read + Send>(
    blob: R,
    compression: Compression,
    dest: &Path,
    opts: &ApplyOptions,
) -> Result<Applied, LayerError> {
    let target_err = |source| LayerError::Target {
        path: dest.to_path_buf(),
        source,
    };
    let parent = dest
        .parent()
        .ok_or_else(|| target_err(io::Error::from(io::ErrorKind::InvalidInput)))?;
    let name = dest
        .file_name()
        .ok_or_else(|| target_err(io::Error::from(io::ErrorKind::InvalidInput)))?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let tmp = parent.join(format!(
        ".tmp-{}-{}-{nanos}",
        name.to_string_lossy(),
        std::process::id()
    ));
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .mode(0o755)
            .create(&tmp)
            .map_err(target_err)?;
    }
    let cleanup = |tmp: &Path| {
        if let Ok(pfd) = sfs::open_dir_path(parent) {
            let _ = sfs::remove_all_at(
                pfd.as_fd(),
                tmp.file_name().map(|n| n.as_bytes()).unwrap_or(b""),
            );
        }
    };
    match apply(blob, compression, &tmp, opts) {
        Ok(applied) => match std::fs::rename(&tmp, dest) {
            Ok(()) => Ok(applied),
            Err(e) if dest.is_dir() => {
                tracing::debug!("{} appeared meanwhile ({e}); keeping it", dest.display());
                cleanup(&tmp);
                Ok(applied)
            }
            Err(e) => {
                cleanup(&tmp);
                Err(target_err(e))
            }
        },
        Err(e) => {
            cleanup(&tmp);
            Err(e)
        }
    }
}

/// The io error a limit produces inside the stream, recognised by `stream_error`.
#[derive(Debug)]
struct LimitHit;

impl std::fmt::Display for LimitHit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("uncompressed size limit reached")
    }
}

impl std::error::Error for LimitHit {}

pub(super) fn is_limit(e: &io::Error) -> bool {
    e.get_ref().map(|i| i.is::<LimitHit>()).unwrap_or(false)
}

pub(super) fn stream_error(layer: &str, e: io::Error, limits: &Limits) -> LayerError {
    if let Some((what, limit)) = header_limit(&e) {
        LayerError::LimitExceeded {
            layer: layer.to_string(),
            what,
            limit,
        }
    } else if is_limit(&e) {
        LayerError::LimitExceeded {
            layer: layer.to_string(),
            what: "uncompressed size",
            limit: limits.max_bytes,
        }
    } else {
        LayerError::Read {
            layer: layer.to_string(),
            source: e,
        }
    }
}

/// Decompress on this thread, hash the uncompressed bytes, and hand them over in
/// chunks. Returns the diff ID and byte count once the stream ended.
fn pump(
    mut dec: Box<dyn Read + Send + '_>,
    tx: mpsc::SyncSender<io::Result<Vec<u8>>>,
    max_bytes: u64,
) -> io::Result<(Digest, u64)> {
    let mut digester = Digester::new();
    loop {
        let mut chunk = vec![0u8; 256 * 1024];
        let mut filled = 0;
        // Fill the chunk so small decoder reads do not become small messages.
        while filled < chunk.len() {
            match dec.read(&mut chunk[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let _ = tx.send(Err(io::Error::new(e.kind(), e.to_string())));
                    return Err(e);
                }
            }
        }
        if filled == 0 {
            return Ok((digester.clone().finish(), digester.len()));
        }
        chunk.truncate(filled);
        digester.update(&chunk);
        if digester.len() > max_bytes {
            let _ = tx.send(Err(io::Error::other(LimitHit)));
            return Err(io::Error::other(LimitHit));
        }
        if tx.send(Ok(chunk)).is_err() {
            // The extractor stopped (it failed); its error is the one to report.
            return Err(io::Error::other("extraction stopped"));
        }
    }
}

/// A reader over chunks sent by another thread (a decoder or a download); a sent error
/// is returned once, a closed channel is the end of the stream.
pub struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Vec<u8>>>,
    cur: Vec<u8>,
    pos: usize,
}

impl ChannelReader {
    pub fn new(rx: mpsc::Receiver<io::Result<Vec<u8>>>) -> ChannelReader {
        ChannelReader {
            rx,
            cur: Vec::new(),
            pos: 0,
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.cur.len() {
            match self.rx.recv() {
                Ok(Ok(c)) => {
                    self.cur = c;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// The directory an entry goes into, cached across entries (tars are mostly sorted,
/// so a few recent directories catch nearly every lookup).
#[derive(Clone)]
struct Parent {
    path: Vec<u8>,
    fd: Arc<OwnedFd>,
    /// The group new entries inherit when the directory is setgid.
    setgid_gid: Option<u32>,
}

/// Metadata of one entry, from its header and PAX records.
pub(super) struct Meta {
    pub(super) mode: u32,
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) mtime: i64,
    pub(super) xattrs: Vec<(String, Vec<u8>)>,
}

pub(super) enum Failure {
    Invalid(String),
    Io(io::Error),
    Limit(&'static str, u64),
    /// A failure of an earlier entry, written on a worker thread.
    Deferred(String, Box<Failure>),
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Failure {
        Failure::Io(e)
    }
}

impl From<rustix::io::Errno> for Failure {
    fn from(e: rustix::io::Errno) -> Failure {
        Failure::Io(io::Error::from_raw_os_error(e.raw_os_error()))
    }
}

pub(super) fn invalid<T>(msg: impl Into<String>) -> Result<T, Failure> {
    Err(Failure::Invalid(msg.into()))
}

const WH_PREFIX: &[u8] = b".wh.";
const PARENT_CACHE: usize = 8;
const WH_OPAQUE: &[u8] = b".wh..wh..opq";
const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";

struct Extractor<'o> {
    root: OwnedFd,
    opts: &'o ApplyOptions,
    /// Recently used parent directories (most recent last), cleared whenever a
    /// directory is removed or replaced.
    cache: Vec<Parent>,
    /// Directory mtimes, applied after all contents are in place.
    dir_times: HashMap<Vec<u8>, i64>,
    /// Flatten mode: paths this layer created (whiteouts must not remove them).
    created: HashSet<Vec<u8>>,
    /// Directories already made opaque by this layer.
    opaqued: HashSet<Vec<u8>>,
    umask: u32,
    euid: u32,
    egid: u32,
    buf: Vec<u8>,
    bytes: u64,
    /// Worker threads for small regular files, while `run` has them.
    pool: Option<Pool>,
    /// Parallel mode: every path this layer wrote, and those still being written.
    seen: HashSet<Vec<u8>>,
    pending: HashSet<Vec<u8>>,
}

/// Regular files at most this large may be written by a worker.
const PARALLEL_MAX_FILE: u64 = 256 * 1024;

struct Job {
    parent: Arc<OwnedFd>,
    name: Vec<u8>,
    full: Vec<u8>,
    entry: String,
    /// File content, or the target when `symlink`.
    data: Vec<u8>,
    symlink: bool,
    meta: Meta,
    chown: bool,
    chmod: bool,
}

type Done = Result<Vec<u8>, (Vec<u8>, String, Failure)>;

struct Pool {
    jobs: mpsc::SyncSender<Job>,
    done: mpsc::Receiver<Done>,
}

fn worker(jobs: Arc<Mutex<mpsc::Receiver<Job>>>, done: mpsc::Sender<Done>) {
    loop {
        let job = match jobs.lock() {
            Ok(rx) => match rx.recv() {
                Ok(j) => j,
                Err(_) => return,
            },
            Err(_) => return,
        };
        let r = write_job(&job);
        let msg = match r {
            Ok(()) => Ok(job.full),
            Err(e) => Err((job.full, job.entry, e)),
        };
        if done.send(msg).is_err() {
            return;
        }
    }
}

fn write_job(job: &Job) -> Result<(), Failure> {
    let pfd = job.parent.as_fd();
    let name = OsStr::from_bytes(&job.name);
    if job.symlink {
        match rustix::fs::symlinkat(OsStr::from_bytes(&job.data), pfd, name) {
            Err(rustix::io::Errno::EXIST) => {
                rustix::fs::unlinkat(pfd, name, AtFlags::empty())?;
                rustix::fs::symlinkat(OsStr::from_bytes(&job.data), pfd, name)?;
            }
            r => r?,
        }
        return set_meta_by_name(pfd, &job.name, &job.meta, job.chown, false);
    }
    let open = || {
        rustix::fs::openat(
            job.parent.as_fd(),
            OsStr::from_bytes(&job.name),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            mode_of(job.meta.mode & 0o777),
        )
    };
    let fd = match open() {
        // Only a non-directory of this layer can be in the way (the main thread waits
        // for anything else): replace it, never follow it.
        Err(rustix::io::Errno::EXIST) => {
            rustix::fs::unlinkat(
                job.parent.as_fd(),
                OsStr::from_bytes(&job.name),
                AtFlags::empty(),
            )?;
            open()?
        }
        r => r?,
    };
    let mut file = File::from(fd);
    file.write_all(&job.data)?;
    set_meta_on_fd(file.as_fd(), &job.meta, job.chown, job.chmod)?;
    rustix::fs::futimens(&file, &times(job.meta.mtime))?;
    Ok(())
}

/// Whether ownership and privileged xattrs are best effort: not root, or root of a
/// user namespace (SECURITY-TESTS A13). Computed once.
fn rootless() -> bool {
    static ROOTLESS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ROOTLESS.get_or_init(|| !rustix::process::geteuid().is_root() || sfs::in_user_namespace())
}

/// A failed chown or privileged xattr is skipped with a warning when rootless (the
/// owner is not mapped: `EINVAL`, or not permitted: `EPERM`); an error otherwise.
fn best_effort(r: rustix::io::Result<()>, what: &str) -> Result<(), Failure> {
    match r {
        Err(e @ (rustix::io::Errno::INVAL | rustix::io::Errno::PERM)) if rootless() => {
            tracing::warn!("rootless: {what} skipped: {e}");
            Ok(())
        }
        r => r.map_err(Failure::from),
    }
}

/// Metadata for a symlink, device or FIFO, by name, never following it.
fn set_meta_by_name(
    pfd: BorrowedFd<'_>,
    name: &[u8],
    meta: &Meta,
    chown: bool,
    chmod: bool,
) -> Result<(), Failure> {
    let n = OsStr::from_bytes(name);
    if chown {
        best_effort(
            rustix::fs::chownat(
                pfd,
                n,
                Some(rustix::fs::Uid::from_raw(meta.uid)),
                Some(rustix::fs::Gid::from_raw(meta.gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            ),
            "chown",
        )?;
    }
    if chmod {
        // fchmodat2 honours AT_SYMLINK_NOFOLLOW (Linux 6.6+); the entry was just
        // created as a non-link, so following is never wanted.
        sfs::chmod_nofollow(pfd, name, meta.mode)?;
    }
    for (k, v) in &meta.xattrs {
        match sfs::set_xattr_at(pfd, name, k, v) {
            Err(e) if rootless() && e.raw_os_error() == Some(libc::EPERM) => {
                tracing::warn!("rootless: xattr {k} skipped: {e}");
            }
            r => r?,
        }
    }
    rustix::fs::utimensat(pfd, n, &times(meta.mtime), AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(())
}

/// Owner, mode and xattrs through an fd of the entry itself. Order matters: chown
/// clears setuid bits and `security.capability`, so those come after it.
fn set_meta_on_fd(
    fd: BorrowedFd<'_>,
    meta: &Meta,
    chown: bool,
    chmod: bool,
) -> Result<(), Failure> {
    if chown {
        best_effort(
            rustix::fs::fchown(
                fd,
                Some(rustix::fs::Uid::from_raw(meta.uid)),
                Some(rustix::fs::Gid::from_raw(meta.gid)),
            ),
            "chown",
        )?;
    }
    if chmod {
        rustix::fs::fchmod(fd, Mode::from_raw_mode(meta.mode))?;
    }
    for (k, v) in &meta.xattrs {
        best_effort(
            rustix::fs::fsetxattr(fd, k.as_str(), v, rustix::fs::XattrFlags::empty()),
            "xattr",
        )?;
    }
    Ok(())
}

impl<'o> Extractor<'o> {
    fn new(root: OwnedFd, opts: &'o ApplyOptions) -> Extractor<'o> {
        Extractor {
            root,
            opts,
            cache: Vec::new(),
            dir_times: HashMap::new(),
            created: HashSet::new(),
            opaqued: HashSet::new(),
            umask: sfs::current_umask(),
            euid: rustix::process::geteuid().as_raw(),
            egid: rustix::process::getegid().as_raw(),
            buf: vec![0u8; 256 * 1024],
            bytes: 0,
            pool: None,
            seen: HashSet::new(),
            pending: HashSet::new(),
        }
    }

    /// Apply every entry; then restore directory mtimes and drain the stream so the
    /// trailing padding is hashed too.
    fn run(&mut self, reader: ChannelReader) -> Result<u64, LayerError> {
        let workers = self.opts.workers;
        if workers == 0 || self.opts.mode != ApplyMode::Overlay {
            return self.run_entries(reader);
        }
        let (job_tx, job_rx) = mpsc::sync_channel::<Job>(128);
        let job_rx = Arc::new(Mutex::new(job_rx));
        let (done_tx, done_rx) = mpsc::channel::<Done>();
        std::thread::scope(|s| {
            for _ in 0..workers {
                let rx = job_rx.clone();
                let tx = done_tx.clone();
                s.spawn(move || worker(rx, tx));
            }
            drop(done_tx);
            self.pool = Some(Pool {
                jobs: job_tx,
                done: done_rx,
            });
            let r = self.run_entries(reader);
            // Closing the job channel ends the workers.
            self.pool = None;
            r
        })
    }

    fn run_entries(&mut self, reader: ChannelReader) -> Result<u64, LayerError> {
        let opts = self.opts;
        let (count, archive) = each_entry(reader, opts, |e| self.entry(e))?;
        each_entry_tail(self.wait_all(), opts)?;
        self.cache.clear();
        self.restore_dir_times()
            .map_err(|source| LayerError::Extract {
                layer: opts.layer.clone(),
                entry: "(directory times)".into(),
                source,
            })?;
        drain(archive, opts)?;
        Ok(count)
    }

    /// Take the finished worker writes; the first failure is returned (deferred).
    fn poll(&mut self, block: bool) -> Result<(), Failure> {
        let Some(pool) = &self.pool else {
            return Ok(());
        };
        loop {
            let msg = if block {
                if self.pending.is_empty() {
                    return Ok(());
                }
                match pool.done.recv() {
                    Ok(m) => m,
                    Err(_) => return Ok(()),
                }
            } else {
                match pool.done.try_recv() {
                    Ok(m) => m,
                    Err(_) => return Ok(()),
                }
            };
            match msg {
                Ok(full) => {
                    self.pending.remove(&full);
                }
                Err((full, entry, e)) => {
                    self.pending.remove(&full);
                    return Err(Failure::Deferred(entry, Box::new(e)));
                }
            }
        }
    }

    /// Wait until every worker write has finished.
    fn wait_all(&mut self) -> Result<(), Failure> {
        self.poll(true)
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), Failure> {
        let raw_path = entry.path_bytes().into_owned();
        let comps = normalize(&raw_path)?;
        let etype = entry.header().entry_type();
        let meta = entry_meta(entry, &self.opts.limits)?;

        if comps.is_empty() {
            // The root itself: only a directory may describe it (CVE-2021-29136).
            if etype != tar::EntryType::Directory {
                return invalid("entry names the root directory but is not a directory");
            }
            if !self.opts.root_metadata {
                return Ok(());
            }
            let root = Arc::new(sfs::open_dir_in_root(self.root.as_fd(), b"")?);
            let dir = sfs::open_subdir(root.as_fd().as_fd(), b".")?;
            self.set_meta_fd(dir.as_fd(), &meta, true, true)?;
            self.dir_times.insert(Vec::new(), meta.mtime);
            return Ok(());
        }
        let (name, parents) = comps
            .split_last()
            .map(|(n, p)| (*n, p))
            .unwrap_or((b"", &[]));
        for p in parents {
            if *p == WH_OPAQUE {
                return invalid("an opaque-directory marker is used as a parent directory");
            }
        }
        let full = join(&comps);

        if self.pool.is_some() {
            self.poll(false)?;
            // Anything that may touch a path still being written waits for it: a
            // repeated path, a parent that is a pending file, whiteouts and links.
            let mut conflict = self.seen.contains(&full)
                || name.starts_with(WH_PREFIX)
                || etype == tar::EntryType::Link;
            for i in 1..=parents.len() {
                conflict = conflict || self.pending.contains(&join(&parents[..i]));
            }
            if conflict {
                self.wait_all()?;
            }
            self.seen.insert(full.clone());
            if let Some(hidden) = name.strip_prefix(WH_PREFIX) {
                // A whiteout device now holds that name.
                let mut p = join(parents);
                if !p.is_empty() {
                    p.push(b'/');
                }
                p.extend_from_slice(hidden);
                self.seen.insert(p);
            }
        }

        if let Some(hidden) = name.strip_prefix(WH_PREFIX) {
            return self.whiteout(parents, name, hidden);
        }

        match etype {
            tar::EntryType::Regular | tar::EntryType::Continuous
                if self.pool.is_some() && entry.size() <= PARALLEL_MAX_FILE =>
            {
                let parent = self.parent(parents, true)?.ok_or_else(not_found)?;
                self.dispatch(entry, &parent, name, &full, &raw_path, meta)?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let parent = self.parent(parents, true)?.ok_or_else(not_found)?;
                self.regular(entry, &parent, name, &meta)?;
            }
            tar::EntryType::Directory => {
                let parent = self.parent(parents, true)?.ok_or_else(not_found)?;
                self.directory(&parent, name, &meta)?;
                self.dir_times.insert(full.clone(), meta.mtime);
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .map(|l| l.into_owned())
                    .ok_or_else(|| Failure::Invalid("symlink without a target".into()))?;
                if target.is_empty() {
                    return invalid("symlink with an empty target");
                }
                let parent = self.parent(parents, true)?.ok_or_else(not_found)?;
                if self.pool.is_some() {
                    self.send_job(&parent, name, &full, &raw_path, target, true, meta)?;
                } else {
                    self.create_retrying(&parent, name, |p| {
                        rustix::fs::symlinkat(
                            OsStr::from_bytes(&target),
                            p,
                            OsStr::from_bytes(name),
                        )
                    })?;
                    self.set_meta_at(&parent, name, &meta, false)?;
                }
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|l| l.into_owned())
                    .ok_or_else(|| Failure::Invalid("hardlink without a target".into()))?;
                self.hardlink(parents, name, &full, &target)?;
            }
            tar::EntryType::Char | tar::EntryType::Block => {
                let Some((major, minor)) =
                    self.opts
                        .devices
                        .device(entry, &self.opts.layer, &raw_path)?
                else {
                    return Ok(());
                };
                let ft = if etype == tar::EntryType::Char {
                    FileType::CharacterDevice
                } else {
                    FileType::BlockDevice
                };
                let parent = self.parent(parents, true)?.ok_or_else(not_found)?;
                let dev = rustix::fs::makedev(major, minor);
                self.create_retrying(&parent, name, |p| {
                    rustix::fs::mknodat(p, OsStr::from_bytes(name), ft, mode_of(meta.mode), dev)
                })?;
                self.set_meta_at(&parent, name, &meta, true)?;
            }
            tar::EntryType::Fifo => {
                let parent = self.parent(parents, true)?.ok_or_else(not_found)?;
                self.create_retrying(&parent, name, |p| {
                    rustix::fs::mknodat(
                        p,
                        OsStr::from_bytes(name),
                        FileType::Fifo,
                        mode_of(meta.mode),
                        0,
                    )
                })?;
                self.set_meta_at(&parent, name, &meta, true)?;
            }
            tar::EntryType::XGlobalHeader => return Ok(()),
            tar::EntryType::GNUSparse => return invalid("GNU sparse files are not supported"),
            other => {
                return invalid(format!(
                    "unsupported tar entry type {:?}",
                    other.as_byte() as char
                ))
            }
        }
        if self.opts.mode == ApplyMode::Flatten {
            self.created.insert(full);
        }
        Ok(())
    }

    /// The directory `comps` inside the root, created (0755) when missing and `create`.
    /// `None` when missing and not `create`.
    fn parent(&mut self, comps: &[&[u8]], create: bool) -> Result<Option<Parent>, Failure> {
        let path = join(comps);
        if let Some(i) = self.cache.iter().rposition(|c| c.path == path) {
            let hit = self.cache.remove(i);
            self.cache.push(hit.clone());
            return Ok(Some(hit));
        }
        let fd = match sfs::open_dir_in_root(self.root.as_fd(), &path) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound && create => self.mkdir_all(comps)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let st = rustix::fs::fstat(&fd)?;
        let setgid_gid = (st.st_mode & libc::S_ISGID != 0).then_some(st.st_gid);
        let p = Parent {
            path,
            fd: Arc::new(fd),
            setgid_gid,
        };
        if self.cache.len() >= PARENT_CACHE {
            self.cache.remove(0);
        }
        self.cache.push(p.clone());
        Ok(Some(p))
    }

    fn mkdir_all(&mut self, comps: &[&[u8]]) -> Result<OwnedFd, Failure> {
        let mut cur = sfs::open_dir_in_root(self.root.as_fd(), b"")?;
        for i in 0..comps.len() {
            let prefix = join(&comps[..=i]);
            match sfs::open_dir_in_root(self.root.as_fd(), &prefix) {
                Ok(fd) => cur = fd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    match rustix::fs::mkdirat(
                        &cur,
                        OsStr::from_bytes(comps[i]),
                        Mode::from_raw_mode(0o755),
                    ) {
                        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                        Err(e) => return Err(e.into()),
                    }
                    if self.opts.mode == ApplyMode::Flatten {
                        self.created.insert(prefix.clone());
                    }
                    cur = sfs::open_dir_in_root(self.root.as_fd(), &prefix)?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(cur)
    }

    /// Run `create`; when the name exists, remove what is there (a directory
    /// recursively; a link itself, never its target) and run it again.
    fn create_retrying(
        &mut self,
        parent: &Parent,
        name: &[u8],
        create: impl Fn(BorrowedFd<'_>) -> rustix::io::Result<()>,
    ) -> Result<(), Failure> {
        match create(parent.fd.as_fd()) {
            Ok(()) => Ok(()),
            Err(rustix::io::Errno::EXIST) => {
                self.remove_existing(parent, name)?;
                create(parent.fd.as_fd()).map_err(Failure::from)
            }
            Err(e) => Err(e.into()),
        }
    }

    fn remove_existing(&mut self, parent: &Parent, name: &[u8]) -> Result<(), Failure> {
        // Cached parents resolved through this name (a directory below it, or a
        // symlink it was) would now be stale.
        self.cache.clear();
        let st = sfs::lstat_at(parent.fd.as_fd(), name)?;
        if sfs::is_dir(&st) {
            sfs::remove_all_at(parent.fd.as_fd(), name)?;
        } else {
            rustix::fs::unlinkat(parent.fd.as_fd(), OsStr::from_bytes(name), AtFlags::empty())?;
        }
        Ok(())
    }

    /// Hand a small regular file to a worker thread.
    fn dispatch<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        parent: &Parent,
        name: &[u8],
        full: &[u8],
        raw_path: &[u8],
        meta: Meta,
    ) -> Result<(), Failure> {
        let size = entry.size();
        self.bytes = self.bytes.saturating_add(size);
        if self.bytes > self.opts.limits.max_bytes {
            return Err(Failure::Limit(
                "uncompressed size",
                self.opts.limits.max_bytes,
            ));
        }
        let mut data = Vec::with_capacity(size as usize);
        (&mut *entry).take(size).read_to_end(&mut data)?;
        if data.len() as u64 != size {
            return Err(Failure::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "archive ends {} bytes before the end of this file",
                    size - data.len() as u64
                ),
            )));
        }
        self.send_job(parent, name, full, raw_path, data, false, meta)
    }

    #[allow(clippy::too_many_arguments)]
    fn send_job(
        &mut self,
        parent: &Parent,
        name: &[u8],
        full: &[u8],
        raw_path: &[u8],
        data: Vec<u8>,
        symlink: bool,
        meta: Meta,
    ) -> Result<(), Failure> {
        let (chown, chmod) = self.needs(parent, &meta, false);
        let job = Job {
            parent: parent.fd.clone(),
            name: name.to_vec(),
            full: full.to_vec(),
            entry: String::from_utf8_lossy(raw_path).into_owned(),
            data,
            symlink,
            meta,
            chown,
            chmod,
        };
        let Some(pool) = &self.pool else {
            return Err(Failure::Io(io::Error::other("no worker pool")));
        };
        pool.jobs
            .send(job)
            .map_err(|_| Failure::Io(io::Error::other("file writer threads stopped")))?;
        self.pending.insert(full.to_vec());
        Ok(())
    }

    fn regular<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        parent: &Parent,
        name: &[u8],
        meta: &Meta,
    ) -> Result<(), Failure> {
        let size = entry.size();
        self.bytes = self.bytes.saturating_add(size);
        if self.bytes > self.opts.limits.max_bytes {
            return Err(Failure::Limit(
                "uncompressed size",
                self.opts.limits.max_bytes,
            ));
        }
        let open = |p: BorrowedFd<'_>| {
            rustix::fs::openat(
                p,
                OsStr::from_bytes(name),
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                mode_of(meta.mode & 0o777),
            )
        };
        let fd = match open(parent.fd.as_fd()) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::EXIST) => {
                self.remove_existing(parent, name)?;
                open(parent.fd.as_fd())?
            }
            Err(e) => return Err(e.into()),
        };
        let mut file = File::from(fd);
        let mut remaining = size;
        while remaining > 0 {
            let want = remaining.min(self.buf.len() as u64) as usize;
            let n = entry.read(&mut self.buf[..want])?;
            if n == 0 {
                return Err(Failure::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("archive ends {remaining} bytes before the end of this file"),
                )));
            }
            file.write_all(&self.buf[..n])?;
            remaining -= n as u64;
        }
        let (chown, chmod) = self.needs(parent, meta, false);
        self.set_meta_fd(file.as_fd(), meta, chown, chmod)?;
        rustix::fs::futimens(&file, &times(meta.mtime))?;
        Ok(())
    }

    fn directory(&mut self, parent: &Parent, name: &[u8], meta: &Meta) -> Result<(), Failure> {
        let mk = |p: BorrowedFd<'_>| {
            rustix::fs::mkdirat(p, OsStr::from_bytes(name), mode_of(meta.mode & 0o777))
        };
        let fresh = match mk(parent.fd.as_fd()) {
            Ok(()) => true,
            Err(rustix::io::Errno::EXIST) => {
                let st = sfs::lstat_at(parent.fd.as_fd(), name)?;
                if !sfs::is_dir(&st) {
                    self.remove_existing(parent, name)?;
                    mk(parent.fd.as_fd())?;
                }
                false
            }
            Err(e) => return Err(e.into()),
        };
        // A directory made just now has the right owner and mode unless `needs` says
        // otherwise; an existing one may carry other metadata, so set it all.
        let (chown, chmod) = if fresh {
            self.needs(parent, meta, true)
        } else {
            (true, true)
        };
        if chown || chmod || !meta.xattrs.is_empty() {
            let dir = sfs::open_subdir(parent.fd.as_fd(), name)?;
            self.set_meta_fd(dir.as_fd(), meta, chown, chmod)?;
        }
        Ok(())
    }

    fn hardlink(
        &mut self,
        parents: &[&[u8]],
        name: &[u8],
        full: &[u8],
        target: &[u8],
    ) -> Result<(), Failure> {
        let tcomps = normalize(target)?;
        let Some((tname, tparents)) = tcomps.split_last() else {
            return invalid("hardlink to the root directory");
        };
        if join(&tcomps) == full {
            return Ok(());
        }
        let tparent = self.parent(tparents, false)?.ok_or_else(|| {
            Failure::Invalid(format!(
                "hardlink target {:?} does not exist in this layer",
                String::from_utf8_lossy(target)
            ))
        })?;
        let parent = self.parent(parents, true)?.ok_or_else(not_found)?;
        let link = |p: BorrowedFd<'_>| {
            rustix::fs::linkat(
                tparent.fd.as_fd(),
                OsStr::from_bytes(tname),
                p,
                OsStr::from_bytes(name),
                AtFlags::empty(),
            )
        };
        match link(parent.fd.as_fd()) {
            Ok(()) => Ok(()),
            Err(rustix::io::Errno::NOENT) => invalid(format!(
                "hardlink target {:?} does not exist in this layer",
                String::from_utf8_lossy(target)
            )),
            Err(rustix::io::Errno::EXIST) => {
                self.remove_existing(&parent, name)?;
                link(parent.fd.as_fd()).map_err(Failure::from)
            }
            Err(e) => Err(e.into()),
        }
    }

    fn whiteout(&mut self, parents: &[&[u8]], name: &[u8], hidden: &[u8]) -> Result<(), Failure> {
        if name == WH_OPAQUE {
            return self.opaque(parents);
        }
        if hidden.is_empty() || hidden == b"." || hidden == b".." {
            return invalid("whiteout names no file (or names . or ..)");
        }
        if hidden.starts_with(WH_PREFIX) {
            // Other AUFS metadata (`.wh..wh.plnk` etc.): meaningless here.
            tracing::debug!(
                "ignoring AUFS metadata entry {}",
                String::from_utf8_lossy(name)
            );
            return Ok(());
        }
        match self.opts.mode {
            ApplyMode::Overlay => {
                let parent = self.parent(parents, true)?.ok_or_else(not_found)?;
                match rustix::fs::mknodat(
                    parent.fd.as_fd(),
                    OsStr::from_bytes(hidden),
                    FileType::CharacterDevice,
                    Mode::empty(),
                    0,
                ) {
                    // Something of this layer has the name: it already hides the lower
                    // entry, and same-layer entries are never whited out.
                    Ok(()) | Err(rustix::io::Errno::EXIST) => Ok(()),
                    Err(e) => Err(e.into()),
                }
            }
            ApplyMode::Flatten => {
                let mut path = join(parents);
                if !path.is_empty() {
                    path.push(b'/');
                }
                path.extend_from_slice(hidden);
                if self.created.contains(&path) {
                    return Ok(());
                }
                // A missing (or dead-link) parent means there is nothing to hide.
                let parent = match self.parent(parents, false) {
                    Ok(Some(p)) => p,
                    Ok(None) => return Ok(()),
                    Err(Failure::Io(e)) if e.raw_os_error() == Some(libc::ENOTDIR) => return Ok(()),
                    Err(e) => return Err(e),
                };
                match sfs::lstat_at(parent.fd.as_fd(), hidden) {
                    Ok(_) => self.cache.clear(),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                    Err(e) => return Err(e.into()),
                }
                sfs::remove_all_at(parent.fd.as_fd(), hidden)?;
                Ok(())
            }
        }
    }

    fn opaque(&mut self, parents: &[&[u8]]) -> Result<(), Failure> {
        let path = join(parents);
        if !self.opaqued.insert(path.clone()) {
            return Ok(());
        }
        let parent = self.parent(parents, true)?.ok_or_else(not_found)?;
        match self.opts.mode {
            ApplyMode::Overlay => {
                sfs::set_xattr_at(parent.fd.as_fd(), b"", OVERLAY_OPAQUE_XATTR, b"y")?;
            }
            ApplyMode::Flatten => {
                self.cache.clear();
                let created = &self.created;
                let prefix = if path.is_empty() {
                    Vec::new()
                } else {
                    let mut p = path.clone();
                    p.push(b'/');
                    p
                };
                sfs::clear_dir(parent.fd.as_fd(), |child| {
                    let mut full = prefix.clone();
                    full.extend_from_slice(child);
                    !created.contains(&full)
                })?;
            }
        }
        Ok(())
    }

    /// Whether an entry created in `parent` needs an explicit chown and chmod.
    fn needs(&self, parent: &Parent, meta: &Meta, is_dir: bool) -> (bool, bool) {
        let inherited_gid = parent.setgid_gid.unwrap_or(self.egid);
        let chown = meta.uid != self.euid || meta.gid != inherited_gid;
        let chmod = meta.mode & 0o7000 != 0
            || meta.mode & self.umask != 0
            || (is_dir && parent.setgid_gid.is_some());
        (chown, chmod)
    }

    fn set_meta_fd(
        &self,
        fd: BorrowedFd<'_>,
        meta: &Meta,
        chown: bool,
        chmod: bool,
    ) -> Result<(), Failure> {
        set_meta_on_fd(fd, meta, chown, chmod)
    }

    /// Metadata for a symlink, device or FIFO, by name without following it.
    fn set_meta_at(
        &self,
        parent: &Parent,
        name: &[u8],
        meta: &Meta,
        chmod_it: bool,
    ) -> Result<(), Failure> {
        let (chown, chmod) = self.needs(parent, meta, false);
        let chmod = chmod_it && (chmod || chown);
        set_meta_by_name(parent.fd.as_fd(), name, meta, chown, chmod)
    }

    fn restore_dir_times(&mut self) -> io::Result<()> {
        let times_list: Vec<(Vec<u8>, i64)> = self.dir_times.drain().collect();
        for (path, mtime) in times_list {
            let comps: Vec<&[u8]> = path
                .split(|b| *b == b'/')
                .filter(|c| !c.is_empty())
                .collect();
            let (dirfd, name): (OwnedFd, &[u8]) = match comps.split_last() {
                None => (sfs::open_dir_in_root(self.root.as_fd(), b"")?, b"."),
                Some((n, ps)) => match sfs::open_dir_in_root(self.root.as_fd(), &join(ps)) {
                    Ok(fd) => (fd, n),
                    // Removed or replaced by a later entry: nothing to restore.
                    Err(_) => continue,
                },
            };
            match rustix::fs::utimensat(
                &dirfd,
                OsStr::from_bytes(name),
                &times(mtime),
                AtFlags::SYMLINK_NOFOLLOW,
            ) {
                Ok(()) | Err(rustix::io::Errno::NOENT) => {}
                Err(e) => return Err(io::Error::from_raw_os_error(e.raw_os_error())),
            }
        }
        Ok(())
    }
}

/// A numeric header field: a field left empty (all NULs or spaces) reads as 0, as
/// Go's archive/tar (and so Docker) reads it; anything else unparseable is an error.
fn numeric(raw: &[u8], parsed: io::Result<u64>) -> io::Result<u64> {
    match parsed {
        Err(_) if raw.iter().all(|&b| b == 0 || b == b' ') => Ok(0),
        other => other,
    }
}

pub(super) fn entry_meta<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    limits: &Limits,
) -> Result<Meta, Failure> {
    let h = entry.header();
    let old = h.as_old();
    let mode = numeric(&old.mode, h.mode().map(u64::from))? as u32 & 0o7777;
    let uid = u32::try_from(numeric(&old.uid, h.uid())?)
        .map_err(|_| Failure::Invalid("uid out of range".into()))?;
    let gid = u32::try_from(numeric(&old.gid, h.gid())?)
        .map_err(|_| Failure::Invalid("gid out of range".into()))?;
    let mut mtime = i64::try_from(numeric(&old.mtime, h.mtime())?).unwrap_or(0);
    let mut xattrs = Vec::new();
    if let Some(exts) = entry.pax_extensions()? {
        let mut total = 0u64;
        for ext in exts {
            let ext = ext?;
            let key = ext.key_bytes();
            let value = ext.value_bytes();
            total += (key.len() + value.len()) as u64;
            if total > limits.max_pax_bytes {
                return Err(Failure::Limit("PAX header size", limits.max_pax_bytes));
            }
            if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                let name = std::str::from_utf8(name)
                    .map_err(|_| Failure::Invalid("xattr name is not UTF-8".into()))?;
                if xattr_allowed(name)? {
                    xattrs.push((name.to_string(), value.to_vec()));
                }
            } else if key == b"mtime" {
                if let Some(secs) = std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.split('.').next())
                    .and_then(|v| v.parse::<i64>().ok())
                {
                    mtime = secs;
                }
            }
        }
    }
    Ok(Meta {
        mode,
        uid,
        gid,
        mtime,
        xattrs,
    })
}

/// Run `f` on every tar entry (with the entry-count limit and errors naming the layer
/// and entry). Returns the number of entries and the archive, for [`drain`].
pub(super) fn each_entry(
    reader: ChannelReader,
    opts: &ApplyOptions,
    mut f: impl FnMut(&mut tar::Entry<'_, Stream>) -> Result<(), Failure>,
) -> Result<(u64, tar::Archive<Stream>), LayerError> {
    let layer = || opts.layer.clone();
    // Header records are bounded before the tar crate reads them whole (A16).
    let mut archive = tar::Archive::new(HeaderGuard::new(reader, &opts.limits));
    let mut count = 0u64;
    {
        let entries = archive
            .entries()
            .map_err(|e| stream_error(&opts.layer, e, &opts.limits))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| stream_error(&opts.layer, e, &opts.limits))?;
            let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            count += 1;
            if count > opts.limits.max_entries {
                return Err(LayerError::LimitExceeded {
                    layer: layer(),
                    what: "entry count",
                    limit: opts.limits.max_entries,
                });
            }
            if let Err(failure) = f(&mut entry) {
                return Err(to_layer_error(opts, name, failure));
            }
        }
    }
    Ok((count, archive))
}

/// Map a failure found after the last entry (a deferred worker write) to an error.
fn each_entry_tail(r: Result<(), Failure>, opts: &ApplyOptions) -> Result<(), LayerError> {
    r.map_err(|f| to_layer_error(opts, String::new(), f))
}

/// The error for a failure of the entry `entry` (or of the earlier entry a deferred
/// failure names).
fn to_layer_error(opts: &ApplyOptions, entry: String, f: Failure) -> LayerError {
    let layer = opts.layer.clone();
    match f {
        Failure::Deferred(earlier, inner) => to_layer_error(opts, earlier, *inner),
        Failure::Invalid(reason) => LayerError::InvalidEntry {
            layer,
            entry,
            reason,
        },
        Failure::Limit(what, limit) => LayerError::LimitExceeded { layer, what, limit },
        Failure::Io(e) if is_limit(&e) || header_limit(&e).is_some() => {
            stream_error(&opts.layer, e, &opts.limits)
        }
        Failure::Io(source) => LayerError::Extract {
            layer,
            entry,
            source,
        },
    }
}

/// Read the stream after the end-of-archive marker to its end, so trailing padding is
/// hashed into the diff ID too.
pub(super) fn drain(archive: tar::Archive<Stream>, opts: &ApplyOptions) -> Result<(), LayerError> {
    let mut rest = archive.into_inner().into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(|e| stream_error(&opts.layer, e, &opts.limits))?;
    Ok(())
}

fn not_found() -> Failure {
    Failure::Io(io::Error::from(io::ErrorKind::NotFound))
}

fn mode_of(m: u32) -> Mode {
    Mode::from_raw_mode(m)
}

fn times(mtime: i64) -> Timestamps {
    let t = Timespec {
        tv_sec: mtime,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

pub(super) fn join(comps: &[&[u8]]) -> Vec<u8> {
    comps.join(&b'/')
}

/// Split an entry name into components: leading `/` and `.` components dropped, `..`
/// refused (SECURITY-TESTS A1: reject rather than clamp, so a hostile layer is noticed).
/// The longest file name component Linux file systems take.
pub(super) const NAME_MAX: usize = 255;

pub(super) fn normalize(raw: &[u8]) -> Result<Vec<&[u8]>, Failure> {
    let mut comps = Vec::new();
    for c in raw.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return invalid("path has a '..' component"),
            // No file system here takes a longer name; refusing it up front gives
            // one clear error in every snapshotter (the EROFS writer cannot place a
            // dirent longer than a block at all).
            c if c.len() > NAME_MAX => {
                return invalid(format!(
                    "a path component is {} bytes long; the limit is {NAME_MAX} (NAME_MAX)",
                    c.len()
                ))
            }
            c => comps.push(c),
        }
    }
    Ok(comps)
}

/// The xattr policy (SECURITY-TESTS A15): `user.*` and `security.capability` are kept;
/// `trusted.*` (which includes overlayfs' own whiteout/opaque markers), other
/// `security.*` and `system.*` are dropped. Bad names are an error.
pub(super) fn xattr_allowed(name: &str) -> Result<bool, Failure> {
    if name.is_empty() || name.len() > 255 {
        return invalid(format!("invalid xattr name of {} bytes", name.len()));
    }
    if name.starts_with("user.") || name == "security.capability" {
        return Ok(true);
    }
    tracing::debug!("dropping xattr {name}");
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_rules() {
        let ok = |s: &str| normalize(s.as_bytes()).map(|v| join(&v)).ok();
        assert_eq!(ok("/etc/passwd"), Some(b"etc/passwd".to_vec()));
        assert_eq!(ok("./a/./b/"), Some(b"a/b".to_vec()));
        assert_eq!(ok("./"), Some(Vec::new()));
        for bad in ["../x", "/../x", "a/../../x", "./../x", "..", "a/.."] {
            assert!(ok(bad).is_none(), "{bad}");
        }
        let longest = "n".repeat(NAME_MAX);
        assert!(ok(&format!("a/{longest}/b")).is_some());
        assert!(ok(&format!("a/{longest}n/b")).is_none());
    }

    #[test]
    fn xattr_policy() {
        assert!(matches!(xattr_allowed("user.x"), Ok(true)));
        assert!(matches!(xattr_allowed("security.capability"), Ok(true)));
        assert!(matches!(xattr_allowed("trusted.overlay.opaque"), Ok(false)));
        assert!(matches!(xattr_allowed("security.selinux"), Ok(false)));
        assert!(matches!(
            xattr_allowed("system.posix_acl_access"),
            Ok(false)
        ));
        assert!(xattr_allowed(&"u".repeat(300)).is_err());
    }

    #[test]
    fn empty_numeric_fields_read_as_zero_and_garbage_is_an_error() {
        let bad = || Err(io::Error::new(io::ErrorKind::InvalidData, "not a number"));
        assert_eq!(numeric(&[0; 8], bad()).unwrap(), 0);
        assert_eq!(numeric(b"        ", bad()).unwrap(), 0);
        assert!(numeric(b"12x\0\0\0\0\0", bad()).is_err());
        assert_eq!(numeric(b"0000017\0", Ok(15)).unwrap(), 15);
    }

    fn sample_tar() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in [("a/", &b""[..]), ("a/f", b"hello"), ("b", b"world")] {
            let mut h = tar::Header::new_gnu();
            if name.ends_with('/') {
                h.set_entry_type(tar::EntryType::Directory);
            }
            h.set_mode(0o755);
            h.set_size(data.len() as u64);
            b.append_data(&mut h, name, data).unwrap();
        }
        b.into_inner().unwrap()
    }

    /// A header size near 2^64 after a small file overflowed the running byte
    /// count (a panic in debug builds, a wrap past the limit in release).
    #[test]
    fn header_size_near_u64_max_is_a_limit_error_not_an_overflow() {
        {
            let mut data = Vec::new();
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o644);
            h.set_size(1);
            h.set_path("small").unwrap();
            h.set_cksum();
            data.extend_from_slice(h.as_bytes());
            data.extend_from_slice(&[b'x'; 512]);
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o644);
            h.set_size(u64::MAX - 8);
            h.set_path("huge").unwrap();
            h.set_cksum();
            data.extend_from_slice(h.as_bytes());
            data.extend_from_slice(&[0; 2048]);
            let t = tempfile::tempdir().unwrap();
            let o = ApplyOptions::new(ApplyMode::Flatten, "huge");
            let r = apply(&data[..], Compression::None, t.path(), &o);
            assert!(r.is_err(), "a u64::MAX-sized entry was accepted");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Arbitrary corruption of a valid layer (A17/A18): an error or a tree
        /// inside the target, never a panic or a hang.
        #[test]
        fn corrupted_layers_never_panic(flips in proptest::collection::vec((0usize..3584, proptest::prelude::any::<u8>()), 1..8)) {
            let mut data = sample_tar();
            for (pos, byte) in flips {
                let p = pos % data.len();
                data[p] = byte;
            }
            let t = tempfile::tempdir().unwrap();
            let target = t.path().join("root");
            std::fs::create_dir(&target).unwrap();
            let mut o = ApplyOptions::new(ApplyMode::Flatten, "fuzz");
            o.devices = DevicePolicy::Reject;
            let _ = apply(&data[..], Compression::None, &target, &o);
            let names: Vec<_> = std::fs::read_dir(t.path()).unwrap().collect();
            proptest::prop_assert_eq!(names.len(), 1);
        }
    }
}
