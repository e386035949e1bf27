//! Whiteouts and opaque directories (OCI image-spec layer.md): in overlay mode they
//! become 0:0 character devices and `trusted.overlay.opaque=y`; in flatten mode they
//! delete, except what this layer created. A whiteout never hides an entry of its own
//! layer.

use super::*;

impl Extractor<'_> {
    pub(super) fn whiteout(
        &mut self,
        parents: &[&[u8]],
        name: &[u8],
        hidden: &[u8],
    ) -> Result<(), Failure> {
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

    pub(super) fn opaque(&mut self, parents: &[&[u8]]) -> Result<(), Failure> {
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
}
