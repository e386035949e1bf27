//! ADD: local archives extracted through the layer extractor, and URLs.
//!
//! A local source that is a tar (plain, gzip, bzip2, xz or zstd; recognised by its
//! magic bytes and the `ustar` magic of its first header, as Docker recognises it by
//! reading a first header) is extracted into the destination directory by
//! `layer::apply` in flatten mode: the same hardened code that applies image layers,
//! so `..`, absolute names, symlinked parents, hard links out of the root and
//! decompression bombs are handled as there (SECURITY-TESTS 49: "re-run tests 1-20
//! through ADD").

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::mpsc;

use rustix::fs::{FileType, Stat};

use super::tree::{self, file_type};
use super::{CopySpec, Plan};
use crate::build::BuildError;
use crate::layer::{apply, ApplyMode, ApplyOptions, ChannelReader, Compression};

/// How a local archive is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Archive {
    Tar,
    Gzip,
    Bzip2,
    Xz,
    Zstd,
}

impl Archive {
    fn sniff(head: &[u8]) -> Option<Archive> {
        Some(if head.starts_with(&[0x1f, 0x8b]) {
            Archive::Gzip
        } else if head.starts_with(b"BZh") {
            Archive::Bzip2
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            Archive::Xz
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Archive::Zstd
        } else if head.len() >= 262 && &head[257..262] == b"ustar" {
            Archive::Tar
        } else {
            return None;
        })
    }
}

/// Read the uncompressed stream of `file`.
fn decompressed<'a>(
    file: File,
    kind: Archive,
) -> io::Result<(Box<dyn Read + Send + 'a>, Compression)> {
    Ok(match kind {
        Archive::Tar => (Box::new(file), Compression::None),
        Archive::Gzip => (Box::new(file), Compression::Gzip),
        Archive::Zstd => (Box::new(file), Compression::Zstd),
        Archive::Bzip2 => (
            Box::new(bzip2::read::MultiBzDecoder::new(BufReader::new(file))),
            Compression::None,
        ),
        Archive::Xz => (Box::new(XzReader::spawn(file)), Compression::None),
    })
}

/// Whether the `tar` magic is at the start of `kind`'s uncompressed stream.
fn holds_tar(file: File, kind: Archive) -> io::Result<bool> {
    let mut head = Vec::with_capacity(512);
    let r: Box<dyn Read + Send> = match kind {
        Archive::Tar => Box::new(file),
        Archive::Gzip => Box::new(flate2::read::MultiGzDecoder::new(file)),
        Archive::Zstd => Box::new(zstd::stream::read::Decoder::new(file)?),
        Archive::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(BufReader::new(file))),
        Archive::Xz => Box::new(XzReader::spawn(file)),
    };
    // A stream that is not what its magic says is simply not an archive: copied as is.
    if r.take(512).read_to_end(&mut head).is_err() {
        return Ok(false);
    }
    Ok(head.len() >= 262 && &head[257..262] == b"ustar")
}

/// Sniff a local ADD source: `Some(kind)` when it is an archive to extract.
pub(super) fn local_archive(
    _plan: &Plan,
    spec: &CopySpec,
    fd: BorrowedFd<'_>,
    st: &Stat,
) -> io::Result<Option<Archive>> {
    if !spec.add || spec.unpack == Some(false) || file_type(st) != FileType::RegularFile {
        return Ok(None);
    }
    let mut f = File::from(tree::reopen(fd, false)?);
    sniff_file(&mut f)
}

fn sniff_file(f: &mut File) -> io::Result<Option<Archive>> {
    let mut head = Vec::with_capacity(512);
    (&mut *f).take(512).read_to_end(&mut head)?;
    f.rewind()?;
    let Some(kind) = Archive::sniff(&head) else {
        return Ok(None);
    };
    let ok = holds_tar(f.try_clone()?, kind)?;
    f.rewind()?;
    Ok(ok.then_some(kind))
}

/// Extract the archive `fd` (named `rel`) into the directory `dest`.
pub(super) fn extract(
    spec: &CopySpec,
    rel: &str,
    fd: BorrowedFd<'_>,
    kind: Archive,
    dest: BorrowedFd<'_>,
) -> Result<(), BuildError> {
    let f = File::from(tree::reopen(fd, false).map_err(|e| spec.err(format!("{rel}: {e}")))?);
    extract_file(spec, rel, f, kind, dest)
}

fn extract_file(
    spec: &CopySpec,
    label: &str,
    f: File,
    kind: Archive,
    dest: BorrowedFd<'_>,
) -> Result<(), BuildError> {
    let (reader, comp) = decompressed(f, kind).map_err(|e| spec.err(format!("{label}: {e}")))?;
    // The layer error reads "layer LABEL: entry ...: why"; say it is an ADD.
    let opts = ApplyOptions::new(ApplyMode::Flatten, label);
    apply(reader, comp, &tree::fd_path(dest), &opts).map_err(|e| spec.err(format!("ADD: {e}")))?;
    Ok(())
}

/// An xz stream decoded on its own thread (lzma-rs decodes into a writer).
struct XzReader;

struct ChanWriter(mpsc::SyncSender<io::Result<Vec<u8>>>);

impl Write for ChanWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .send(Ok(buf.to_vec()))
            .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl XzReader {
    fn spawn(file: File) -> ChannelReader {
        let (tx, rx) = mpsc::sync_channel(16);
        std::thread::spawn(move || {
            let mut input = BufReader::new(file);
            let mut out = io::BufWriter::with_capacity(64 * 1024, ChanWriter(tx.clone()));
            let r = lzma_rs::xz_decompress(&mut input, &mut out)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("xz: {e}")))
                .and_then(|()| out.flush());
            if let Err(e) = r {
                let _ = tx.send(Err(e));
            }
        });
        ChannelReader::new(rx)
    }
}

/// A downloaded URL.
pub(super) struct Fetched {
    pub file: File,
    pub digest: String,
    /// Last-Modified, as seconds since the epoch.
    pub mtime: Option<i64>,
}

/// Parse an `--checksum` value into (algorithm, lowercase hex).
fn parse_checksum(c: &str) -> Option<(&str, String)> {
    let (alg, hex) = c.split_once(':')?;
    let len = match alg {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return None,
    };
    (hex.len() == len && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| (alg, hex.to_ascii_lowercase()))
}

enum Hasher {
    S256(sha2::Sha256),
    S384(sha2::Sha384),
    S512(sha2::Sha512),
}

impl Hasher {
    fn new(alg: &str) -> Hasher {
        use sha2::Digest;
        match alg {
            "sha384" => Hasher::S384(sha2::Sha384::new()),
            "sha512" => Hasher::S512(sha2::Sha512::new()),
            _ => Hasher::S256(sha2::Sha256::new()),
        }
    }
    fn update(&mut self, d: &[u8]) {
        use sha2::Digest;
        match self {
            Hasher::S256(h) => h.update(d),
            Hasher::S384(h) => h.update(d),
            Hasher::S512(h) => h.update(d),
        }
    }
    fn finish(self) -> String {
        use sha2::Digest;
        match self {
            Hasher::S256(h) => hex::encode(h.finalize()),
            Hasher::S384(h) => hex::encode(h.finalize()),
            Hasher::S512(h) => hex::encode(h.finalize()),
        }
    }
}

/// Download `url` into an unnamed temporary file, verifying `--checksum`.
pub(super) fn fetch(spec: &CopySpec, url: &str) -> Result<Fetched, BuildError> {
    let (alg, want) = match &spec.checksum {
        Some(c) => match parse_checksum(c) {
            Some((a, h)) => (a.to_string(), Some(h)),
            None => {
                return Err(BuildError::Instruction {
                    at: spec.at.clone(),
                    message: format!(
                        "--checksum={c}: expected sha256:<64 hex digits> (or sha384/sha512)"
                    ),
                })
            }
        },
        None => ("sha256".to_string(), None),
    };
    let file = rustix::fs::open(
        std::env::temp_dir(),
        rustix::fs::OFlags::TMPFILE | rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::from_raw_mode(0o600),
    )
    .map_err(|e| spec.err(format!("ADD {url}: temporary file: {e}")))?;
    let mut file = File::from(file);
    let url_s = url.to_string();
    let mut out = file
        .try_clone()
        .map_err(|e| spec.err(format!("ADD {url}: {e}")))?;
    // The registry client is async; run one request on a runtime of its own thread, so
    // a caller inside (or outside) another runtime is never affected.
    let joined = std::thread::spawn(move || -> Result<(String, Option<String>), String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async move {
            let client = reqwest::Client::builder()
                .build()
                .map_err(|e| e.to_string())?;
            let mut resp = client.get(&url_s).send().await.map_err(|e| e.to_string())?;
            if !resp.status().is_success() {
                return Err(format!("server answered {}", resp.status()));
            }
            let lm = resp
                .headers()
                .get(reqwest::header::LAST_MODIFIED)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let mut h = Hasher::new(&alg);
            while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
                h.update(&chunk);
                out.write_all(&chunk).map_err(|e| e.to_string())?;
            }
            Ok((h.finish(), lm))
        })
    })
    .join();
    let (got, lm) = match joined {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => return Err(spec.err(format!("ADD {url}: {e}"))),
        Err(_) => return Err(spec.err(format!("ADD {url}: download thread failed"))),
    };
    if let Some(want) = want {
        if want != got {
            return Err(spec.err(format!(
                "ADD {url}: checksum mismatch: expected {want}, downloaded content has {got}"
            )));
        }
    }
    file.rewind()
        .map_err(|e| spec.err(format!("ADD {url}: {e}")))?;
    Ok(Fetched {
        file,
        digest: got,
        mtime: lm.as_deref().and_then(parse_http_date),
    })
}

/// The file name a URL gives: the last component of its path.
fn url_file_name(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let path = rest.split(['?', '#']).next()?;
    let (_, path) = path.split_once('/')?;
    let name = path.rsplit('/').next()?;
    (!name.is_empty() && name != "." && name != "..").then(|| name.to_string())
}

/// ADD of a URL into `root`.
pub(super) fn url(
    plan: &Plan,
    spec: &CopySpec,
    root: BorrowedFd<'_>,
    url: &str,
    owner: (u32, u32),
) -> Result<(), BuildError> {
    // The download the cache key was computed from, when there was one: the layer then
    // holds exactly what the key says, and the URL is fetched once.
    // With --checksum nothing is prefetched, and the download is verified here.
    let prefetched = spec
        .checksum
        .is_none()
        .then(|| take_prefetched(url))
        .flatten();
    let mut got = match prefetched {
        Some(f) => f,
        None => fetch(spec, url)?,
    };
    if spec.unpack == Some(true) {
        if let Some(kind) =
            sniff_file(&mut got.file).map_err(|e| spec.err(format!("ADD {url}: {e}")))?
        {
            let (dfd, _) = tree::ensure_dir(root, &plan.dest, owner)
                .map_err(|e| spec.err(format!("{}: {e}", plan.dest)))?;
            return extract_file(spec, url, got.file, kind, dfd.as_fd());
        }
    }
    let name = url_file_name(url);
    let (parent, fname) = match (&name, plan.dest_is_dir) {
        (None, true) => {
            return Err(spec.err(format!(
                "ADD {url}: cannot tell a file name from the URL; give a destination file name"
            )))
        }
        (Some(n), _) => tree::file_target(plan, spec, root, n),
        (None, false) => tree::parent_and_name(&plan.dest),
    };
    let (dfd, _) =
        tree::ensure_dir(root, &parent, owner).map_err(|e| spec.err(format!("{parent}: {e}")))?;
    let mode = spec
        .chmod
        .as_ref()
        .map(|c| c.apply(0o600, false))
        .unwrap_or(0o600);
    tree::write_file(dfd.as_fd(), &fname, &mut got.file, owner, mode, got.mtime)
        .map_err(|e| spec.err(format!("ADD {url}: {e}")))
}

/// The digest (as `alg:hex`) of a URL's content for the cache: the `--checksum` when
/// given, else the content downloaded now.
pub(super) fn url_digest(spec: &CopySpec, url: &str) -> Result<String, BuildError> {
    if let Some(c) = &spec.checksum {
        if let Some((alg, hex)) = parse_checksum(c) {
            return Ok(format!("{alg}:{hex}"));
        }
    }
    let f = fetch(spec, url)?;
    let digest = format!("sha256:{}", f.digest);
    if let Ok(mut m) = prefetched().lock() {
        m.insert(url.to_string(), f);
    }
    Ok(digest)
}

/// URLs downloaded for a cache key (no `--checksum`), kept as unnamed temporary files
/// until the copy of the same step takes them.
fn prefetched() -> &'static std::sync::Mutex<std::collections::HashMap<String, Fetched>> {
    static M: std::sync::OnceLock<std::sync::Mutex<std::collections::HashMap<String, Fetched>>> =
        std::sync::OnceLock::new();
    M.get_or_init(Default::default)
}

fn take_prefetched(url: &str) -> Option<Fetched> {
    let mut f = prefetched().lock().ok()?.remove(url)?;
    f.file.rewind().ok()?;
    Some(f)
}

/// RFC 7231 IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) to seconds since the epoch.
pub(super) fn parse_http_date(s: &str) -> Option<i64> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    if parts.len() != 6 || parts[5] != "GMT" {
        return None;
    }
    let day: i64 = parts[1].parse().ok()?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| *m == parts[2])? as i64
        + 1;
    let year: i64 = parts[3].parse().ok()?;
    let hms: Vec<i64> = parts[4]
        .split(':')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    if hms.len() != 3 || !(1..=31).contains(&day) {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    Some(days * 86400 + hms[0] * 3600 + hms[1] * 60 + hms[2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates() {
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784111777)
        );
        assert_eq!(
            parse_http_date("Tue, 29 Feb 2028 12:00:00 GMT"),
            Some(1835438400)
        );
        assert_eq!(parse_http_date("garbage"), None);
    }

    #[test]
    fn checksums_and_names() {
        assert!(parse_checksum(&format!("sha256:{}", "a".repeat(64))).is_some());
        assert!(parse_checksum("sha256:abc").is_none());
        assert!(parse_checksum(&format!("md5:{}", "a".repeat(32))).is_none());
        assert_eq!(
            url_file_name("http://h:1/a/b.tar.gz?x=1").as_deref(),
            Some("b.tar.gz")
        );
        assert_eq!(url_file_name("http://h:1/"), None);
        assert_eq!(url_file_name("http://h:1"), None);
    }
}
