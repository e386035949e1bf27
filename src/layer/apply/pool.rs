//! File-level dedup while a layer is extracted: each regular file at or above the
//! pool's size threshold is hashed from the bytes being written (no second read of
//! the layer), and linked into the store's pool under its key
//! ([`sfs::dedup_key`]: content and every piece of metadata) right after its
//! metadata is set. When the pool already holds that key, the new name becomes a
//! link to the pooled inode instead (the copy just written is dropped).
//!
//! Why this is safe: a file is pooled only once it is complete and never written
//! again (every create is `O_EXCL`; a later entry of the same path unlinks and creates
//! anew), so a pooled inode's content always matches its key, whatever the layer does
//! to that path afterwards. All calls are relative to the parent directory's fd the
//! file was created in, and `linkat` never follows the final component. A later
//! hardlink entry of the layer may link the pooled inode: overlayfs lowers are read
//! only, and a write copies the file up first.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use super::*;

/// Where regular files are pooled while a layer is extracted, and from which size.
#[derive(Debug, Clone)]
pub struct PoolDedup {
    /// The pool directory (`snapshots/pool`), holding `<2 hex>/<key>` links.
    pub pool: PathBuf,
    /// Files smaller than this are not pooled.
    pub min_size: u64,
}

/// What pooling did during one apply.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pooled {
    /// Regular files hashed and pooled (or linked to the pool).
    pub files: u64,
    /// Files that became a link to an identical pooled file.
    pub linked: u64,
    /// Bytes those files no longer take.
    pub bytes_saved: u64,
}

impl Pooled {
    pub(in crate::layer) fn add(&mut self, o: Pooled) {
        self.files += o.files;
        self.linked += o.linked;
        self.bytes_saved += o.bytes_saved;
    }
}

/// The pool opened once per apply and shared with the writer threads.
pub(in crate::layer) struct PoolDir {
    fd: OwnedFd,
    pub(in crate::layer) min_size: u64,
}

impl PoolDir {
    pub(in crate::layer) fn open(d: &PoolDedup) -> io::Result<PoolDir> {
        Ok(PoolDir {
            fd: sfs::open_dir_path(&d.pool)?,
            min_size: d.min_size,
        })
    }
}

static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// Pool the regular file `name` of `parent`, just written through `fd` with all its
/// metadata set; `content_sha256` is the sha256 of the bytes written.
pub(in crate::layer) fn pool_file(
    pool: &PoolDir,
    fd: BorrowedFd<'_>,
    parent: BorrowedFd<'_>,
    name: &[u8],
    content_sha256: &[u8],
) -> Result<Pooled, Failure> {
    // The key from what the file system now holds: a best-effort chown or xattr
    // skipped (rootless) is reflected, and it matches `snapshot::dedup`'s keys.
    let st = rustix::fs::fstat(fd)?;
    let len = st.st_size as u64;
    let key = sfs::dedup_key(
        content_sha256,
        st.st_mode,
        st.st_uid,
        st.st_gid,
        st.st_mtime,
        len,
        &sfs::fxattrs_of(fd)?,
    );
    let shard = &key[..2];
    let rel = format!("{shard}/{key}");
    let name = OsStr::from_bytes(name);
    let mut out = Pooled {
        files: 1,
        ..Pooled::default()
    };
    let link_in = || rustix::fs::linkat(parent, name, &pool.fd, rel.as_str(), AtFlags::empty());
    let first = match link_in() {
        Err(rustix::io::Errno::NOENT) => {
            match rustix::fs::mkdirat(&pool.fd, shard, Mode::from_raw_mode(0o755)) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(e.into()),
            }
            link_in()
        }
        r => r,
    };
    match first {
        Ok(()) => return Ok(out),
        Err(rustix::io::Errno::EXIST) => {}
        // Too many links on an inode: keep the copy.
        Err(rustix::io::Errno::MLINK) => return Ok(out),
        Err(e) => return Err(e.into()),
    }
    // An identical file is pooled already: this name becomes a link to it. A short
    // name of its own first (the file's name may be 255 bytes long already).
    let tmp = format!(
        ".dedup-{}-{}",
        std::process::id(),
        TMP_SEQ.fetch_add(1, Ordering::Relaxed)
    );
    match rustix::fs::linkat(
        &pool.fd,
        rel.as_str(),
        parent,
        tmp.as_str(),
        AtFlags::empty(),
    ) {
        Ok(()) => {}
        Err(rustix::io::Errno::MLINK) => return Ok(out),
        Err(e) => return Err(e.into()),
    }
    if let Err(e) = rustix::fs::renameat(parent, tmp.as_str(), parent, name) {
        let _ = rustix::fs::unlinkat(parent, tmp.as_str(), AtFlags::empty());
        return Err(e.into());
    }
    out.linked = 1;
    out.bytes_saved = len;
    Ok(out)
}
