//! Creating one entry of each kind in its parent directory: regular files written on
//! the main thread, directories, hardlinks, and replacing whatever is in the way (a
//! link is replaced, never written through).

use super::*;

impl Extractor<'_> {
    /// Run `create`; when the name exists, remove what is there (a directory
    /// recursively; a link itself, never its target) and run it again.
    pub(super) fn create_retrying(
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

    /// Before a worker writes `name` again (the path was seen before, and every
    /// pending write has finished): a directory in the way goes now, on this thread.
    /// Workers only replace non-directories, and the result must not depend on how
    /// many of them there are (issue 10: "Is a directory" with workers only).
    pub(super) fn clear_for_worker(&mut self, parent: &Parent, name: &[u8]) -> Result<(), Failure> {
        match sfs::lstat_at(parent.fd.as_fd(), name) {
            Ok(st) if sfs::is_dir(&st) => self.remove_existing(parent, name),
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    pub(super) fn remove_existing(&mut self, parent: &Parent, name: &[u8]) -> Result<(), Failure> {
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

    pub(super) fn regular<R: Read>(
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
        let mut content = self.wants_hash(size).then(Sha256::new);
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
            if let Some(h) = content.as_mut() {
                h.update(&self.buf[..n]);
            }
            remaining -= n as u64;
        }
        let (chown, chmod) = self.needs(parent, meta, false);
        self.set_meta_fd(file.as_fd(), meta, chown, chmod)?;
        rustix::fs::futimens(&file, &times(meta.mtime))?;
        if let (Some(h), Some(pool)) = (content, &self.dedup) {
            let p = pool_file(pool, file.as_fd(), parent.fd.as_fd(), name, &h.finalize())?;
            self.pooled.add(p);
        }
        Ok(())
    }

    pub(super) fn directory(
        &mut self,
        parent: &Parent,
        name: &[u8],
        meta: &Meta,
    ) -> Result<(), Failure> {
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

    pub(super) fn hardlink(
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
}
