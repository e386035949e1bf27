//! Writer threads: small regular files and symlinks are created by a pool while the
//! main thread reads on (inode creation dominates unpack time on ext4, DESIGN.md
//! section 6). The main thread waits for them whenever an entry could touch a pending
//! path, so the result never depends on the number of workers.

use super::*;

/// Regular files at most this large may be written by a worker.
pub(in crate::layer) const PARALLEL_MAX_FILE: u64 = 256 * 1024;

pub(in crate::layer) struct Job {
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
    /// Link the file into this dedup pool once written.
    pool: Option<Arc<PoolDir>>,
}

/// A finished job: its path and what pooling it did; or the failure with the path
/// and the entry name.
pub(in crate::layer) type Done = Result<(Vec<u8>, Pooled), (Vec<u8>, String, Failure)>;

pub(in crate::layer) struct Pool {
    pub(super) jobs: mpsc::SyncSender<Job>,
    pub(super) done: mpsc::Receiver<Done>,
}

pub(in crate::layer) fn worker(jobs: Arc<Mutex<mpsc::Receiver<Job>>>, done: mpsc::Sender<Done>) {
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
            Ok(pooled) => Ok((job.full, pooled)),
            Err(e) => Err((job.full, job.entry, e)),
        };
        if done.send(msg).is_err() {
            return;
        }
    }
}

pub(in crate::layer) fn write_job(job: &Job) -> Result<Pooled, Failure> {
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
        set_meta_by_name(pfd, &job.name, &job.meta, job.chown, false)?;
        return Ok(Pooled::default());
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
    match &job.pool {
        Some(pool) => {
            let content = sha2::Sha256::digest(&job.data);
            pool_file(pool, file.as_fd(), pfd, &job.name, &content)
        }
        None => Ok(Pooled::default()),
    }
}

/// Whether ownership and privileged xattrs are best effort: not root, or root of a
/// user namespace (SECURITY-TESTS A13). Computed once.
pub(in crate::layer) fn rootless() -> bool {
    static ROOTLESS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ROOTLESS.get_or_init(|| !rustix::process::geteuid().is_root() || sfs::in_user_namespace())
}

/// A failed chown or privileged xattr is skipped with a warning when rootless (the
/// owner is not mapped: `EINVAL`, or not permitted: `EPERM`); an error otherwise.
pub(in crate::layer) fn best_effort(r: rustix::io::Result<()>, what: &str) -> Result<(), Failure> {
    match r {
        Err(e @ (rustix::io::Errno::INVAL | rustix::io::Errno::PERM)) if rootless() => {
            tracing::warn!("rootless: {what} skipped: {e}");
            Ok(())
        }
        r => r.map_err(Failure::from),
    }
}

/// Metadata for a symlink, device or FIFO, by name, never following it.
pub(in crate::layer) fn set_meta_by_name(
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
pub(in crate::layer) fn set_meta_on_fd(
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

impl Extractor<'_> {
    /// Hand a small regular file to a worker thread.
    pub(super) fn dispatch<R: Read>(
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
        let pool = self.dedup.clone().filter(|_| self.wants_hash(size));
        self.send_job(parent, name, full, raw_path, data, false, pool, meta)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn send_job(
        &mut self,
        parent: &Parent,
        name: &[u8],
        full: &[u8],
        raw_path: &[u8],
        data: Vec<u8>,
        symlink: bool,
        pool: Option<Arc<PoolDir>>,
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
            pool,
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
}
