//! Verify an unpacked layer directory against the layer blob it came from.
//!
//! Re-diffing the directory cannot reproduce the original tar bytes (entry order,
//! header formats and padding are the producer's), so a diff ID cannot be recomputed
//! from the files. Instead the blob is streamed again (decompressed and hashed, so
//! its diff ID is checked in the same pass) and every entry's final state is
//! compared with the directory: type, regular-file size and sha256, symlink target,
//! hardlinks sharing the target's inode, whiteouts present as overlay whiteout
//! devices. A file truncated or emptied by a crash, a missing file or one changed on
//! disk is reported with its path.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::layer::{decoder, Compression};
use crate::oci::{Descriptor, Digest};
use crate::store::BlobReader;

/// What an entry should look like once the layer is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Want {
    Dir,
    File {
        size: u64,
        sha256: [u8; 32],
    },
    Symlink(Vec<u8>),
    Hardlink(Vec<u8>),
    Whiteout,
    /// Devices and FIFOs: only their presence is checked.
    Special,
}

/// A reader that hashes what passes through it (the uncompressed tar: its diff ID).
struct Hashing<R> {
    inner: R,
    h: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.h.update(&buf[..n]);
        Ok(n)
    }
}

fn normalize(raw: &[u8]) -> Option<Vec<u8>> {
    let mut comps: Vec<&[u8]> = Vec::new();
    for c in raw.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return None,
            c => comps.push(c),
        }
    }
    Some(comps.join(&b'/'))
}

/// The first differences between the layer directory `dir` and the blob `desc`
/// (at most `max`), or an error when the blob cannot be read. An empty list means
/// the directory is what the blob says.
pub(super) fn verify_tree(
    blobs: &dyn BlobReader,
    desc: &Descriptor,
    diff_id: &Digest,
    dir: &Path,
    max: usize,
) -> Result<Vec<String>, String> {
    let compression =
        Compression::from_media_type(desc.media_type.as_str()).map_err(|e| e.to_string())?;
    let raw = blobs
        .open_blob(&desc.digest)
        .map_err(|e| format!("blob {}: {e}", desc.digest))?;
    let dec = decoder(
        io::BufReader::with_capacity(1 << 20, raw),
        compression,
        &desc.digest.to_string(),
    )
    .map_err(|e| e.to_string())?;
    let mut hashing = Hashing {
        inner: dec,
        h: Sha256::new(),
    };
    let mut want: BTreeMap<Vec<u8>, Want> = BTreeMap::new();
    {
        let mut ar = tar::Archive::new(&mut hashing);
        let entries = ar
            .entries()
            .map_err(|e| format!("layer {}: {e}", desc.digest))?;
        for e in entries {
            let mut e = e.map_err(|e| format!("layer {}: {e}", desc.digest))?;
            let Some(path) = normalize(&e.path_bytes()) else {
                continue;
            };
            if path.is_empty() {
                continue;
            }
            let name = path.rsplit(|b| *b == b'/').next().unwrap_or(&path).to_vec();
            if name == b".wh..wh..opq" {
                continue;
            }
            if let Some(hidden) = name.strip_prefix(b".wh.") {
                let mut p = path[..path.len() - name.len()].to_vec();
                p.extend_from_slice(hidden);
                // A whiteout never hides an entry of its own layer.
                want.entry(p).or_insert(Want::Whiteout);
                continue;
            }
            let t = e.header().entry_type();
            let w = if t.is_dir() {
                Want::Dir
            } else if t.is_symlink() {
                Want::Symlink(e.link_name_bytes().map(|l| l.to_vec()).unwrap_or_default())
            } else if t.is_hard_link() {
                match e.link_name_bytes().and_then(|l| normalize(&l)) {
                    Some(l) => Want::Hardlink(l),
                    None => continue,
                }
            } else if t.is_file() || t == tar::EntryType::Continuous {
                let mut h = Sha256::new();
                let mut size = 0u64;
                let mut buf = vec![0u8; 256 * 1024];
                loop {
                    let n = e
                        .read(&mut buf)
                        .map_err(|err| format!("layer {}: {err}", desc.digest))?;
                    if n == 0 {
                        break;
                    }
                    size += n as u64;
                    h.update(&buf[..n]);
                }
                Want::File {
                    size,
                    sha256: h.finalize().into(),
                }
            } else if t.is_character_special() || t.is_block_special() || t.is_fifo() {
                Want::Special
            } else {
                continue;
            };
            // A later entry replaces an earlier one, and everything below it when it
            // is not a directory.
            if w != Want::Dir {
                let mut prefix = path.clone();
                prefix.push(b'/');
                let below: Vec<Vec<u8>> = want
                    .range(prefix.clone()..)
                    .take_while(|(k, _)| k.starts_with(&prefix))
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in below {
                    want.remove(&k);
                }
            }
            want.insert(path, w);
        }
    }
    // The rest of the stream (end-of-archive blocks, padding) belongs to the diff ID.
    io::copy(&mut hashing, &mut io::sink()).map_err(|e| format!("layer {}: {e}", desc.digest))?;
    let found = format!("sha256:{}", hex::encode(hashing.h.finalize()));
    if found != diff_id.to_string() {
        return Err(format!(
            "blob {} gives diff ID {found}, the image says {diff_id}",
            desc.digest
        ));
    }
    let mut bad = Vec::new();
    for (path, w) in &want {
        if bad.len() >= max {
            break;
        }
        // Entries below a non-directory of the final tree never exist.
        if ancestors(path).any(|a| want.get(a).is_some_and(|x| *x != Want::Dir)) {
            continue;
        }
        let p = dir.join(std::ffi::OsStr::from_bytes(path));
        let shown = String::from_utf8_lossy(path).into_owned();
        if let Some(msg) = compare(&p, w, dir, &want) {
            bad.push(format!("{shown}: {msg}"));
        }
    }
    Ok(bad)
}

fn ancestors(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    path.iter()
        .enumerate()
        .filter(|(_, b)| **b == b'/')
        .map(move |(i, _)| &path[..i])
}

fn file_sha256(p: &Path) -> io::Result<[u8; 32]> {
    let mut f = fs::File::open(p)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().into())
}

fn compare(p: &PathBuf, w: &Want, root: &Path, want: &BTreeMap<Vec<u8>, Want>) -> Option<String> {
    let md = match fs::symlink_metadata(p) {
        Ok(md) => md,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Some("missing".into()),
        Err(e) => return Some(e.to_string()),
    };
    let ft = md.file_type();
    match w {
        Want::Dir if !ft.is_dir() => Some("not a directory".into()),
        Want::Dir => None,
        Want::File { size, sha256 } => {
            if !ft.is_file() {
                return Some("not a regular file".into());
            }
            if md.len() != *size {
                return Some(format!("{} bytes, the layer has {size}", md.len()));
            }
            match file_sha256(p) {
                Ok(h) if &h == sha256 => None,
                Ok(_) => Some("content differs from the layer".into()),
                Err(e) => Some(e.to_string()),
            }
        }
        Want::Symlink(target) => {
            if !ft.is_symlink() {
                return Some("not a symlink".into());
            }
            match fs::read_link(p) {
                Ok(t) if t.as_os_str().as_bytes() == target.as_slice() => None,
                Ok(t) => Some(format!("links to {}", t.display())),
                Err(e) => Some(e.to_string()),
            }
        }
        Want::Hardlink(target) => {
            // A link to an entry replaced later in the layer has nothing to share.
            if !want.contains_key(target) {
                return None;
            }
            let t = root.join(std::ffi::OsStr::from_bytes(target));
            match fs::symlink_metadata(&t) {
                Ok(tm) if tm.ino() == md.ino() && tm.dev() == md.dev() => None,
                Ok(_) => Some(format!(
                    "not a hardlink of {}",
                    String::from_utf8_lossy(target)
                )),
                Err(e) => Some(format!("{}: {e}", String::from_utf8_lossy(target))),
            }
        }
        Want::Whiteout => {
            if ft.is_char_device() && md.rdev() == 0 {
                None
            } else {
                Some("not an overlay whiteout".into())
            }
        }
        Want::Special => None,
    }
}
