//! A reader between the decompressed layer stream and the `tar` crate that bounds
//! the header records the crate would otherwise read whole into memory.
//!
//! The hard case (SECURITY-TESTS A16, CVE-2022-2879 in Go's archive/tar): before it
//! hands out an entry, `tar::Archive` reads a GNU long name (`L`), a GNU long link
//! (`K`) and a PAX extended header (`x`) completely into a `Vec`, and turns every
//! region of a GNU sparse map (the `S` header plus any number of 512-byte extension
//! blocks) into an allocation. None of that passes through imgctl's own limits, which
//! only see finished entries: a 510 KiB gzip layer declaring a 512 MiB long name
//! took 537 MB of RSS (issue 10).
//!
//! So this reader follows the tar framing itself, exactly as `tar` 0.4 does (header
//! block, optional sparse extension blocks, data rounded up to 512 bytes, a PAX
//! `size` record overriding the size of the next non-extension header), and refuses
//! a record larger than [`Limits::max_pax_bytes`] when its header arrives, before the
//! crate allocates anything. Everything else passes through unchanged. After the
//! first all-zero block (the end of the archive for the crate) the rest of the
//! stream is passed through unexamined: the crate stops reading there, and the caller
//! only hashes the trailing padding.

use std::io::{self, Read};

use super::apply::Limits;

const BLOCK: usize = 512;

/// The io error a refused header record produces; mapped to
/// [`super::LayerError::LimitExceeded`] by the apply code.
#[derive(Debug)]
pub(super) struct HeaderLimit {
    pub(super) what: &'static str,
    pub(super) limit: u64,
}

impl std::fmt::Display for HeaderLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} exceeds the limit of {} bytes", self.what, self.limit)
    }
}

impl std::error::Error for HeaderLimit {}

/// The limit behind an io error from [`HeaderGuard`], if that is what it is.
pub(super) fn header_limit(e: &io::Error) -> Option<(&'static str, u64)> {
    e.get_ref()
        .and_then(|i| i.downcast_ref::<HeaderLimit>())
        .map(|h| (h.what, h.limit))
}

enum State {
    /// At a header block.
    Header,
    /// Passing this many bytes (entry data and padding) through.
    Data(u64),
    /// After the end-of-archive block, or after a header the `tar` crate will refuse
    /// anyway: pass everything through.
    Tail,
}

/// See the module docs.
pub struct HeaderGuard<R> {
    inner: R,
    max: u64,
    state: State,
    /// Bytes already read from `inner` (headers, a PAX record) waiting to be served.
    out: Vec<u8>,
    pos: usize,
    /// The `size` of a pending PAX header, applied to the next non-extension header.
    pax_size: Option<u64>,
}

impl<R: Read> HeaderGuard<R> {
    pub fn new(inner: R, limits: &Limits) -> HeaderGuard<R> {
        HeaderGuard {
            inner,
            max: limits.max_pax_bytes,
            state: State::Header,
            out: Vec::new(),
            pos: 0,
            pax_size: None,
        }
    }

    /// The wrapped reader (the rest of the stream).
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// Read up to `n` bytes into `out`; fewer only at the end of the stream.
    fn fill(&mut self, n: usize) -> io::Result<usize> {
        let start = self.out.len();
        self.out.resize(start + n, 0);
        let mut got = 0;
        while got < n {
            match self.inner.read(&mut self.out[start + got..]) {
                Ok(0) => break,
                Ok(k) => got += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.out.truncate(start + got);
                    return Err(e);
                }
            }
        }
        self.out.truncate(start + got);
        Ok(got)
    }

    fn refuse(&mut self, what: &'static str) -> io::Error {
        // Never continue after a refusal.
        self.state = State::Tail;
        self.out.clear();
        self.pos = 0;
        io::Error::other(HeaderLimit {
            what,
            limit: self.max,
        })
    }

    /// Read the next header (and what `tar` reads with it) into `out`, check it and
    /// set the state for what follows.
    fn header(&mut self) -> io::Result<()> {
        self.out.clear();
        self.pos = 0;
        if self.fill(BLOCK)? < BLOCK {
            // A short header: the crate reports the truncated archive.
            self.state = State::Tail;
            return Ok(());
        }
        if self.out.iter().all(|&b| b == 0) {
            self.state = State::Tail;
            return Ok(());
        }
        let mut block = [0u8; BLOCK];
        block.copy_from_slice(&self.out[..BLOCK]);
        let h = tar::Header::from_byte_slice(&block);
        let Ok(own_size) = h.entry_size() else {
            // The crate fails on this header itself.
            self.state = State::Tail;
            return Ok(());
        };
        let ty = h.entry_type();
        let extension = ty.is_gnu_longname()
            || ty.is_gnu_longlink()
            || ty.is_pax_local_extensions()
            || ty.is_pax_global_extensions();
        let recognized = h.as_gnu().is_some() || h.as_ustar().is_some();
        // tar 0.4: a PAX `size` overrides the size of the next header that is not an
        // extension header.
        let size = match self.pax_size {
            Some(s) if !extension => s,
            _ => own_size,
        };
        let padded = size
            .checked_add(BLOCK as u64 - 1)
            .map(|s| s & !(BLOCK as u64 - 1))
            .ok_or_else(|| io::Error::other("tar entry size overflows"))?;
        if recognized && (ty.is_gnu_longname() || ty.is_gnu_longlink()) {
            if size > self.max {
                let what = if ty.is_gnu_longname() {
                    "GNU long name"
                } else {
                    "GNU long link name"
                };
                return Err(self.refuse(what));
            }
            // The crate keeps a pending PAX header for the entry after these.
            self.state = State::Data(padded);
            return Ok(());
        }
        if recognized && ty.is_pax_local_extensions() {
            if size > self.max {
                return Err(self.refuse("PAX header size"));
            }
            // Read the record now (bounded) to learn a `size` it may carry.
            let want = usize::try_from(padded).map_err(io::Error::other)?;
            let got = self.fill(want)?;
            let data = &self.out[BLOCK..BLOCK + got.min(size as usize)];
            self.pax_size = pax_size(data);
            self.state = if got < want {
                State::Tail
            } else {
                State::Data(0)
            };
            return Ok(());
        }
        // Any other header ends the group a pending PAX header belonged to.
        self.pax_size = None;
        if ty.is_pax_global_extensions() && recognized && size > self.max {
            return Err(self.refuse("PAX global header size"));
        }
        if ty.is_gnu_sparse() && h.as_gnu().is_some() {
            // Extension blocks follow the header, before the data; byte 482 of the
            // header and byte 504 of each block say whether another one follows.
            let mut extended = block[482] != 0;
            let mut bytes = 0u64;
            while extended {
                bytes += BLOCK as u64;
                if bytes > self.max {
                    return Err(self.refuse("GNU sparse map"));
                }
                let start = self.out.len();
                if self.fill(BLOCK)? < BLOCK {
                    self.state = State::Tail;
                    return Ok(());
                }
                extended = self.out[start + 504] != 0;
            }
        }
        self.state = State::Data(padded);
        Ok(())
    }
}

/// The `size` record of PAX extension data, as `tar` 0.4 reads it (the first
/// `size` key; `None` if the records do not parse up to it or its value is not a
/// number).
fn pax_size(data: &[u8]) -> Option<u64> {
    for ext in tar::PaxExtensions::new(data) {
        let ext = ext.ok()?;
        if ext.key() != Ok("size") {
            continue;
        }
        return ext.value().ok()?.parse::<u64>().ok();
    }
    None
}

impl<R: Read> Read for HeaderGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.pos < self.out.len() {
                let n = buf.len().min(self.out.len() - self.pos);
                buf[..n].copy_from_slice(&self.out[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            match self.state {
                State::Tail => return self.inner.read(buf),
                State::Data(0) => self.state = State::Header,
                State::Data(left) => {
                    let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    let n = self.inner.read(&mut buf[..want])?;
                    if n == 0 {
                        self.state = State::Tail;
                    } else {
                        self.state = State::Data(left - n as u64);
                    }
                    return Ok(n);
                }
                State::Header => {
                    self.header()?;
                    if self.out.is_empty() {
                        return Ok(0);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, ty: tar::EntryType, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_path(name).unwrap();
        h.set_entry_type(ty);
        h.set_size(size);
        h.set_mode(0o644);
        h.set_cksum();
        h
    }

    fn limits(max: u64) -> Limits {
        Limits {
            max_pax_bytes: max,
            ..Limits::default()
        }
    }

    /// A well-formed archive with every kind of extension header passes through
    /// byte for byte, and the `tar` crate reads the same entries from it.
    #[test]
    fn ordinary_archives_pass_unchanged() {
        let mut b = tar::Builder::new(Vec::new());
        let long = "d/".repeat(200) + "file";
        let mut h = tar::Header::new_gnu();
        h.set_size(5);
        h.set_mode(0o644);
        b.append_data(&mut h, &long, &b"hello"[..]).unwrap();
        b.append_pax_extensions([("SCHILY.xattr.user.a", &b"1"[..]), ("size", b"3")])
            .unwrap();
        let mut h = header("p", tar::EntryType::Regular, 99);
        h.set_cksum();
        b.append(&h, &b"abc"[..]).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_size(0);
        h.set_entry_type(tar::EntryType::Symlink);
        b.append_link(&mut h, "l", "t/".repeat(100)).unwrap();
        let raw = b.into_inner().unwrap();

        let mut out = Vec::new();
        HeaderGuard::new(&raw[..], &limits(4096))
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, raw);
        let mut a = tar::Archive::new(HeaderGuard::new(&raw[..], &limits(4096)));
        let names: Vec<(String, u64)> = a
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    String::from_utf8_lossy(&e.path_bytes()).into_owned(),
                    e.size(),
                )
            })
            .collect();
        assert_eq!(
            names,
            vec![(long, 5), ("p".into(), 3), ("l".into(), 0)],
            "the PAX size overrides the header's 99"
        );
    }

    fn refused(raw: &[u8], max: u64) -> (&'static str, u64) {
        let mut a = tar::Archive::new(HeaderGuard::new(raw, &limits(max)));
        for e in a.entries().unwrap() {
            if let Err(e) = e {
                return header_limit(&e).unwrap_or_else(|| panic!("not a limit: {e}"));
            }
        }
        panic!("the archive was accepted");
    }

    #[test]
    fn oversized_records_are_refused_at_their_header() {
        for (ty, what) in [
            (tar::EntryType::GNULongName, "GNU long name"),
            (tar::EntryType::GNULongLink, "GNU long link name"),
            (tar::EntryType::XHeader, "PAX header size"),
        ] {
            // The header promises more than the limit; the data is not even there.
            let raw = header("././@LongLink", ty, 1 << 40).as_bytes().to_vec();
            assert_eq!(refused(&raw, 1 << 20), (what, 1 << 20));
        }
        // A sparse map with more extension blocks than the limit allows.
        let mut h = header("s", tar::EntryType::GNUSparse, 0);
        h.as_gnu_mut().unwrap().isextended[0] = 1;
        h.set_cksum();
        let mut raw = h.as_bytes().to_vec();
        for _ in 0..10 {
            let mut ext = [0u8; 512];
            ext[504] = 1;
            raw.extend_from_slice(&ext);
        }
        assert_eq!(refused(&raw, 4 * 512), ("GNU sparse map", 4 * 512));
    }
}
