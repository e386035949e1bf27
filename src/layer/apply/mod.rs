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
use sha2::{Digest as _, Sha256};

use super::compress::{decoder, Compression};
use super::guard::{header_limit, HeaderGuard};
use super::LayerError;

/// The tar stream as the entry readers see it.
pub(super) type Stream = HeaderGuard<ChannelReader>;

mod create;
mod entry;
mod pool;
mod stream;
mod whiteout;
mod workers;

use crate::oci::{Digest, Digester};
use crate::sys::fs as sfs;
pub(super) use entry::*;
use pool::{pool_file, PoolDir};
pub use pool::{PoolDedup, Pooled};
pub(super) use stream::*;
pub use stream::{unpack_new, ChannelReader};
use workers::*;

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
    /// Also list the layer for the size report ([`Applied::index`]): a copy of the
    /// uncompressed stream goes to a side thread running [`crate::layer::index::list`].
    pub index: bool,
    /// Overlay mode: link regular files into this file-level dedup pool as they are
    /// written (hashed from the bytes in hand, nothing read back; see `pool`).
    pub dedup: Option<PoolDedup>,
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
            index: false,
            dedup: None,
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
    /// The layer's listing, when [`ApplyOptions::index`] asked for it (and the side
    /// lister did not refuse the stream). Its `diff_id` is the checked one.
    pub index: Option<super::index::Listing>,
    /// With [`ApplyOptions::dedup`]: what pooling did.
    pub pooled: Pooled,
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
    let pool = match &opts.dedup {
        Some(d) if opts.mode == ApplyMode::Overlay => {
            Some(Arc::new(PoolDir::open(d).map_err(|source| {
                LayerError::Target {
                    path: d.pool.clone(),
                    source,
                }
            })?))
        }
        _ => None,
    };
    let mut pooled = Pooled::default();
    let mut applied = stream_layer(blob, compression, opts, |reader| {
        let mut x = Extractor::new(root, opts);
        x.dedup = pool;
        let r = x.run(reader);
        pooled = x.pooled;
        r
    })?;
    applied.pooled = pooled;
    Ok(applied)
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
    /// The dedup pool files are linked into as they are written, and the sums.
    dedup: Option<Arc<PoolDir>>,
    pooled: Pooled,
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
            dedup: None,
            pooled: Pooled::default(),
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
                Ok((full, pooled)) => {
                    self.pending.remove(&full);
                    self.pooled.add(pooled);
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
        let mut repeated = false;

        if self.pool.is_some() {
            self.poll(false)?;
            repeated = self.seen.contains(&full);
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
                if repeated {
                    self.clear_for_worker(&parent, name)?;
                }
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
                    if repeated {
                        self.clear_for_worker(&parent, name)?;
                    }
                    self.send_job(&parent, name, &full, &raw_path, target, true, None, meta)?;
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

    /// Whether a regular file of `size` bytes is hashed for the dedup pool.
    fn wants_hash(&self, size: u64) -> bool {
        self.dedup
            .as_ref()
            .is_some_and(|d| size >= d.min_size.max(1))
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
