//! A layer tar converted to one EROFS image file, in overlay-lower form (whiteouts as
//! 0:0 character devices, opaque directories with `trusted.overlay.opaque=y`).
//!
//! Why: on the hosts this project targets, creating an inode costs about 0.5 ms
//! (DESIGN.md section 6), so a layer of thousands of files takes seconds to extract.
//! An EROFS image is one file written sequentially; Linux 6.12+ mounts such a file
//! directly, and the mount is then used as an overlayfs lower layer.
//!
//! The image is uncompressed and simple: 4 KiB blocks; block 0 holds the superblock;
//! file and symlink data follow, each starting on a block boundary (written while the
//! tar streams in); then the metadata area (64-byte extended inodes with inline
//! xattrs, never crossing a block); then directory blocks (dirents sorted by name, as
//! the kernel's binary search needs). Nothing is resolved on the host file system, so
//! no entry can escape; names are still checked like the file extractor does, so a
//! hostile layer is refused the same way in both formats.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use super::apply::{
    drain, each_entry, entry_meta, invalid, join, normalize, stream_layer, Failure, Meta,
};
use super::{Applied, ApplyOptions, Compression, DevicePolicy, LayerError};

const BLK: u64 = 4096;
const BLK_BITS: u8 = 12;
const MAGIC: u32 = 0xE0F5_E1E2;
const SUPER_OFFSET: u64 = 1024;
const INODE_SIZE: u64 = 64;
const DIRENT_SIZE: usize = 12;

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;
const S_IFBLK: u32 = 0o060000;
const S_IFIFO: u32 = 0o010000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    Reg,
    Symlink,
    Chr,
    Blk,
    Fifo,
}

impl Kind {
    fn ifmt(self) -> u32 {
        match self {
            Kind::Dir => S_IFDIR,
            Kind::Reg => S_IFREG,
            Kind::Symlink => S_IFLNK,
            Kind::Chr => S_IFCHR,
            Kind::Blk => S_IFBLK,
            Kind::Fifo => S_IFIFO,
        }
    }

    /// EROFS_FT_* dirent file types.
    fn ft(self) -> u8 {
        match self {
            Kind::Reg => 1,
            Kind::Dir => 2,
            Kind::Chr => 3,
            Kind::Blk => 4,
            Kind::Fifo => 5,
            Kind::Symlink => 7,
        }
    }
}

struct Node {
    kind: Kind,
    meta: Meta,
    children: BTreeMap<Vec<u8>, usize>,
    size: u64,
    blkaddr: u64,
    rdev: u64,
    nid: u64,
    nlink: u32,
}

impl Node {
    fn new(kind: Kind, meta: Meta) -> Node {
        Node {
            kind,
            meta,
            children: BTreeMap::new(),
            size: 0,
            blkaddr: 0,
            rdev: 0,
            nid: 0,
            nlink: 0,
        }
    }
}

fn default_dir_meta() -> Meta {
    Meta {
        mode: 0o755,
        uid: 0,
        gid: 0,
        mtime: 0,
        xattrs: Vec::new(),
    }
}

/// `(name index, name suffix)` of an xattr EROFS can store, per the kernel's prefixes.
fn xattr_index(name: &str) -> Option<(u8, &str)> {
    if let Some(s) = name.strip_prefix("user.") {
        Some((1, s))
    } else if let Some(s) = name.strip_prefix("trusted.") {
        Some((4, s))
    } else {
        name.strip_prefix("security.").map(|s| (6, s))
    }
}

fn xattr_entry_len(name: &str, value: &[u8]) -> u64 {
    let (_, suffix) = xattr_index(name).unwrap_or((0, name));
    (4 + suffix.len() as u64 + value.len() as u64).div_ceil(4) * 4
}

/// Bytes of the inline xattr area (0 when none): a 12-byte header plus entries.
fn xattr_ibody_size(xattrs: &[(String, Vec<u8>)]) -> u64 {
    if xattrs.is_empty() {
        return 0;
    }
    12 + xattrs
        .iter()
        .map(|(k, v)| xattr_entry_len(k, v))
        .sum::<u64>()
}

/// The kernel's `new_encode_dev`.
fn encode_dev(major: u32, minor: u32) -> u32 {
    (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)
}

struct Image<W: Write + Seek> {
    nodes: Vec<Node>,
    out: W,
    /// Next free byte of the data area (always block aligned between files).
    pos: u64,
    opts_devices: DevicePolicy,
    layer: String,
    bytes: u64,
    max_bytes: u64,
    buf: Vec<u8>,
}

impl<W: Write + Seek> Image<W> {
    fn new(out: W, opts: &ApplyOptions) -> io::Result<Image<W>> {
        let mut img = Image {
            nodes: vec![Node::new(Kind::Dir, default_dir_meta())],
            out,
            pos: BLK,
            opts_devices: opts.devices,
            layer: opts.layer.clone(),
            bytes: 0,
            max_bytes: opts.limits.max_bytes,
            buf: vec![0u8; 256 * 1024],
        };
        img.out.write_all(&[0u8; BLK as usize])?;
        Ok(img)
    }

    /// The directory at `comps`, created (0755) where missing. A symlink on the way is
    /// refused: the image has no file system to resolve it in.
    fn dir(&mut self, comps: &[&[u8]]) -> Result<usize, Failure> {
        let mut cur = 0;
        for c in comps {
            if *c == b".wh..wh..opq" {
                return invalid("an opaque-directory marker is used as a parent directory");
            }
            cur = match self.nodes[cur].children.get(*c).copied() {
                Some(i) if self.nodes[i].kind == Kind::Dir => i,
                Some(i) if self.nodes[i].kind == Kind::Symlink => {
                    return invalid("path goes through a symlink of the same layer (not supported by the EROFS format)")
                }
                Some(_) => {
                    return Err(Failure::Io(io::Error::from_raw_os_error(libc::ENOTDIR)))
                }
                None => {
                    let i = self.nodes.len();
                    self.nodes.push(Node::new(Kind::Dir, default_dir_meta()));
                    self.nodes[cur].children.insert(c.to_vec(), i);
                    i
                }
            };
        }
        Ok(cur)
    }

    fn lookup(&self, comps: &[&[u8]]) -> Option<usize> {
        let mut cur = 0;
        for c in comps {
            cur = *self.nodes[cur].children.get(*c)?;
        }
        Some(cur)
    }

    /// Append `len` bytes from `r` to the data area; returns the start block.
    fn write_data(&mut self, r: &mut dyn Read, len: u64) -> Result<u64, Failure> {
        self.bytes += len;
        if self.bytes > self.max_bytes {
            return Err(Failure::Limit("uncompressed size", self.max_bytes));
        }
        let start = self.pos / BLK;
        let mut remaining = len;
        while remaining > 0 {
            let want = remaining.min(self.buf.len() as u64) as usize;
            let n = r.read(&mut self.buf[..want])?;
            if n == 0 {
                return Err(Failure::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("archive ends {remaining} bytes before the end of this file"),
                )));
            }
            self.out.write_all(&self.buf[..n])?;
            remaining -= n as u64;
        }
        let padded = len.div_ceil(BLK) * BLK;
        let pad = (padded - len) as usize;
        if pad > 0 {
            self.out.write_all(&vec![0u8; pad])?;
        }
        self.pos += padded;
        Ok(start)
    }

    fn entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        opts: &ApplyOptions,
    ) -> Result<(), Failure> {
        let raw = entry.path_bytes().into_owned();
        let comps = normalize(&raw)?;
        let etype = entry.header().entry_type();
        let meta = entry_meta(entry, &opts.limits)?;
        // Inline xattrs must fit one block with their inode (and u16 value sizes).
        if INODE_SIZE + xattr_ibody_size(&meta.xattrs) > BLK
            || meta
                .xattrs
                .iter()
                .any(|(_, v)| v.len() > usize::from(u16::MAX))
        {
            return invalid("extended attributes too large for an EROFS layer");
        }
        let Some((name, parents)) = comps.split_last().map(|(n, p)| (n.to_vec(), p.to_vec()))
        else {
            if etype != tar::EntryType::Directory {
                return invalid("entry names the root directory but is not a directory");
            }
            let keep = opaque_of(&self.nodes[0].meta);
            self.nodes[0].meta = meta;
            restore_opaque(&mut self.nodes[0].meta, keep);
            return Ok(());
        };
        if let Some(hidden) = name.strip_prefix(b".wh.") {
            let parent = self.dir(&parents)?;
            if name == b".wh..wh..opq" {
                let m = &mut self.nodes[parent].meta;
                if opaque_of(m).is_none() {
                    m.xattrs
                        .push(("trusted.overlay.opaque".into(), b"y".to_vec()));
                }
                return Ok(());
            }
            if hidden.is_empty() || hidden == b"." || hidden == b".." {
                return invalid("whiteout names no file (or names . or ..)");
            }
            if hidden.starts_with(b".wh.") || self.nodes[parent].children.contains_key(hidden) {
                return Ok(());
            }
            let i = self.nodes.len();
            self.nodes.push(Node::new(
                Kind::Chr,
                Meta {
                    mode: 0,
                    uid: 0,
                    gid: 0,
                    mtime: 0,
                    xattrs: Vec::new(),
                },
            ));
            self.nodes[parent].children.insert(hidden.to_vec(), i);
            return Ok(());
        }
        let parent = self.dir(&parents)?;
        let node = match etype {
            tar::EntryType::Directory => {
                if let Some(&i) = self.nodes[parent].children.get(&name) {
                    if self.nodes[i].kind == Kind::Dir {
                        let keep = opaque_of(&self.nodes[i].meta);
                        self.nodes[i].meta = meta;
                        restore_opaque(&mut self.nodes[i].meta, keep);
                        return Ok(());
                    }
                }
                Node::new(Kind::Dir, meta)
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let size = entry.size();
                let blk = self.write_data(entry, size)?;
                let mut n = Node::new(Kind::Reg, meta);
                n.size = size;
                n.blkaddr = blk;
                n
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .map(|l| l.into_owned())
                    .unwrap_or_default();
                if target.is_empty() {
                    return invalid("symlink with an empty target");
                }
                let blk = self.write_data(&mut &target[..], target.len() as u64)?;
                let mut n = Node::new(Kind::Symlink, meta);
                n.size = target.len() as u64;
                n.blkaddr = blk;
                n
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|l| l.into_owned())
                    .unwrap_or_default();
                let tcomps = normalize(&target)?;
                if tcomps.is_empty() {
                    return invalid("hardlink to the root directory");
                }
                if join(&tcomps) == join(&comps) {
                    return Ok(());
                }
                let t = self.lookup(&tcomps).ok_or_else(|| {
                    Failure::Invalid(format!(
                        "hardlink target {:?} does not exist in this layer",
                        String::from_utf8_lossy(&target)
                    ))
                })?;
                if self.nodes[t].kind == Kind::Dir {
                    return invalid("hardlink to a directory");
                }
                self.nodes[parent].children.insert(name, t);
                return Ok(());
            }
            tar::EntryType::Char | tar::EntryType::Block => {
                let Some((major, minor)) = self.opts_devices.device(entry, &self.layer, &raw)?
                else {
                    return Ok(());
                };
                let kind = if etype == tar::EntryType::Char {
                    Kind::Chr
                } else {
                    Kind::Blk
                };
                let mut n = Node::new(kind, meta);
                n.rdev = u64::from(encode_dev(major, minor));
                n
            }
            tar::EntryType::Fifo => Node::new(Kind::Fifo, meta),
            tar::EntryType::XGlobalHeader => return Ok(()),
            tar::EntryType::GNUSparse => return invalid("GNU sparse files are not supported"),
            other => {
                return invalid(format!(
                    "unsupported tar entry type {:?}",
                    other.as_byte() as char
                ))
            }
        };
        let i = self.nodes.len();
        self.nodes.push(node);
        self.nodes[parent].children.insert(name, i);
        Ok(())
    }

    /// Lay out inodes and directories after the data and write them and the superblock.
    fn finish(mut self) -> io::Result<()> {
        // Reachable nodes in breadth-first order, each once (hardlinks share one).
        let mut order = vec![0usize];
        let mut seen = vec![false; self.nodes.len()];
        seen[0] = true;
        let mut parent_of = vec![0usize; self.nodes.len()];
        let mut k = 0;
        while k < order.len() {
            let d = order[k];
            k += 1;
            if self.nodes[d].kind != Kind::Dir {
                continue;
            }
            let kids: Vec<usize> = self.nodes[d].children.values().copied().collect();
            let mut subdirs = 0;
            for c in kids {
                if self.nodes[c].kind == Kind::Dir {
                    subdirs += 1;
                    parent_of[c] = d;
                } else {
                    self.nodes[c].nlink += 1;
                }
                if !seen[c] {
                    seen[c] = true;
                    order.push(c);
                }
            }
            self.nodes[d].nlink = 2 + subdirs;
        }
        // Inode slots: 32-byte aligned, never crossing a block; nid 0 left unused so
        // no inode number is 0.
        let meta_blk = self.pos / BLK;
        let mut cursor = 32u64;
        for &i in &order {
            let rec = (INODE_SIZE + xattr_ibody_size(&self.nodes[i].meta.xattrs)).div_ceil(32) * 32;
            if cursor % BLK + rec > BLK {
                cursor = cursor.div_ceil(BLK) * BLK;
            }
            self.nodes[i].nid = cursor / 32;
            cursor += rec;
        }
        if self.nodes[0].nid > u64::from(u16::MAX) {
            return Err(io::Error::other("EROFS root inode out of range"));
        }
        let meta_len = cursor.div_ceil(BLK) * BLK;
        // Directory blocks after the metadata.
        let mut dir_blk = meta_blk + meta_len / BLK;
        let mut dir_data: Vec<u8> = Vec::new();
        for &i in &order {
            if self.nodes[i].kind != Kind::Dir {
                continue;
            }
            let me = self.nodes[i].nid;
            let up = self.nodes[parent_of[i]].nid;
            let mut ents: Vec<(Vec<u8>, u64, u8)> =
                vec![(b".".to_vec(), me, 2), (b"..".to_vec(), up, 2)];
            for (n, &c) in &self.nodes[i].children {
                ents.push((n.clone(), self.nodes[c].nid, self.nodes[c].kind.ft()));
            }
            ents.sort_by(|a, b| a.0.cmp(&b.0));
            let bytes = dir_blocks(&ents);
            self.nodes[i].size = bytes.len() as u64;
            self.nodes[i].blkaddr = dir_blk;
            let padded = (bytes.len() as u64).div_ceil(BLK) * BLK;
            dir_blk += padded / BLK;
            dir_data.extend_from_slice(&bytes);
            dir_data.resize(dir_data.len() + (padded as usize - bytes.len()), 0);
        }
        // Inodes.
        let mut meta = vec![0u8; meta_len as usize];
        for &i in &order {
            let n = &self.nodes[i];
            let off = (n.nid * 32) as usize;
            let rec = &mut meta[off..];
            let ibody = xattr_ibody_size(&n.meta.xattrs);
            let icount = if ibody == 0 { 0 } else { (ibody - 12) / 4 + 1 };
            put16(rec, 0, 1); // extended inode, FLAT_PLAIN data
            put16(rec, 2, icount as u16);
            put16(rec, 4, (n.kind.ifmt() | (n.meta.mode & 0o7777)) as u16);
            put64(rec, 8, n.size);
            let iu = match n.kind {
                Kind::Chr | Kind::Blk => n.rdev as u32,
                Kind::Fifo => 0,
                _ if n.size == 0 => 0,
                _ => u32::try_from(n.blkaddr)
                    .map_err(|_| io::Error::other("EROFS image too large"))?,
            };
            put32(rec, 16, iu);
            put32(rec, 20, n.nid as u32);
            put32(rec, 24, n.meta.uid);
            put32(rec, 28, n.meta.gid);
            put64(rec, 32, n.meta.mtime.max(0) as u64);
            put32(rec, 44, n.nlink.max(1));
            if ibody > 0 {
                // ibody header: name filter 0, no shared xattrs; then inline entries.
                let mut p = INODE_SIZE as usize + 12;
                for (k, v) in &n.meta.xattrs {
                    let Some((idx, suffix)) = xattr_index(k) else {
                        continue;
                    };
                    rec[p] = suffix.len() as u8;
                    rec[p + 1] = idx;
                    put16(rec, p + 2, v.len() as u16);
                    rec[p + 4..p + 4 + suffix.len()].copy_from_slice(suffix.as_bytes());
                    rec[p + 4 + suffix.len()..p + 4 + suffix.len() + v.len()].copy_from_slice(v);
                    p += xattr_entry_len(k, v) as usize;
                }
            }
        }
        self.out.write_all(&meta)?;
        self.out.write_all(&dir_data)?;
        // Superblock.
        let mut sb = [0u8; 128];
        put32(&mut sb, 0, MAGIC);
        sb[12] = BLK_BITS;
        put16(&mut sb, 14, self.nodes[0].nid as u16);
        put64(&mut sb, 16, order.len() as u64);
        put32(
            &mut sb,
            36,
            u32::try_from(dir_blk).map_err(|_| io::Error::other("EROFS image too large"))?,
        );
        put32(&mut sb, 40, meta_blk as u32);
        self.out.seek(SeekFrom::Start(SUPER_OFFSET))?;
        self.out.write_all(&sb)?;
        self.out.flush()
    }
}

fn opaque_of(m: &Meta) -> Option<Vec<u8>> {
    m.xattrs
        .iter()
        .find(|(k, _)| k == "trusted.overlay.opaque")
        .map(|(_, v)| v.clone())
}

fn restore_opaque(m: &mut Meta, v: Option<Vec<u8>>) {
    if let Some(v) = v {
        m.xattrs.push(("trusted.overlay.opaque".into(), v));
    }
}

/// Directory entries (sorted) packed into blocks: each block is an array of 12-byte
/// dirents followed by their names; only the last block is short.
fn dir_blocks(ents: &[(Vec<u8>, u64, u8)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < ents.len() {
        let mut j = i;
        let mut names = 0;
        while j < ents.len() && (j - i + 1) * DIRENT_SIZE + names + ents[j].0.len() <= BLK as usize
        {
            names += ents[j].0.len();
            j += 1;
        }
        let mut block = vec![0u8; (j - i) * DIRENT_SIZE + names];
        let mut nameoff = (j - i) * DIRENT_SIZE;
        for (k, (name, nid, ft)) in ents[i..j].iter().enumerate() {
            let d = k * DIRENT_SIZE;
            put64(&mut block, d, *nid);
            put16(&mut block, d + 8, nameoff as u16);
            block[d + 10] = *ft;
            block[nameoff..nameoff + name.len()].copy_from_slice(name);
            nameoff += name.len();
        }
        let last = j == ents.len();
        out.extend_from_slice(&block);
        if !last {
            out.resize(out.len().div_ceil(BLK as usize) * BLK as usize, 0);
        }
        i = j;
    }
    out
}

fn put16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_le_bytes());
}

fn put32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

fn put64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

/// Convert the layer read from `blob` into an EROFS image at `image` (created or
/// truncated), verifying it like [`super::apply`] does.
pub fn write_erofs<R: Read + Send>(
    blob: R,
    compression: Compression,
    image: &Path,
    opts: &ApplyOptions,
) -> Result<Applied, LayerError> {
    let target = |source| LayerError::Target {
        path: image.to_path_buf(),
        source,
    };
    let file = File::create(image).map_err(target)?;
    let mut img = Image::new(BufWriter::with_capacity(1 << 20, file), opts).map_err(target)?;
    let applied = stream_layer(blob, compression, opts, |reader| {
        let (count, archive) = each_entry(reader, opts, |e| img.entry(e, opts))?;
        drain(archive, opts)?;
        Ok(count)
    })?;
    img.finish().map_err(target)?;
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dirents_are_packed_sorted_and_split_on_blocks() {
        let ents: Vec<(Vec<u8>, u64, u8)> = (0..400)
            .map(|i| (format!("name-{i:04}").into_bytes(), i, 1))
            .collect();
        let b = dir_blocks(&ents);
        // 400 entries of 12 + 9 bytes do not fit one 4 KiB block.
        assert!(b.len() > BLK as usize);
        let first_nameoff = u16::from_le_bytes([b[8], b[9]]) as usize;
        assert_eq!(first_nameoff % DIRENT_SIZE, 0);
        let n = first_nameoff / DIRENT_SIZE;
        assert_eq!(&b[first_nameoff..first_nameoff + 9], b"name-0000");
        assert!(n * 21 <= BLK as usize);
        // The second block starts with the next name.
        let second = &b[BLK as usize..];
        let off = u16::from_le_bytes([second[8], second[9]]) as usize;
        assert_eq!(&second[off..off + 9], format!("name-{n:04}").as_bytes());
    }

    #[test]
    fn device_numbers_use_the_kernel_encoding() {
        assert_eq!(encode_dev(1, 3), 0x103);
        assert_eq!(encode_dev(8, 0x1234), 0x34 | (8 << 8) | (0x1200 << 12));
    }
}
