//! One tar entry as the extractors see it: names (normalised, `..` refused, NAME_MAX),
//! metadata from the header and PAX records, the xattr policy, the entry loop with its
//! limits, and the errors.

use super::*;

/// Metadata of one entry, from its header and PAX records.
pub(in crate::layer) struct Meta {
    pub(in crate::layer) mode: u32,
    pub(in crate::layer) uid: u32,
    pub(in crate::layer) gid: u32,
    pub(in crate::layer) mtime: i64,
    pub(in crate::layer) xattrs: Vec<(String, Vec<u8>)>,
}

pub(in crate::layer) enum Failure {
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

pub(in crate::layer) fn invalid<T>(msg: impl Into<String>) -> Result<T, Failure> {
    Err(Failure::Invalid(msg.into()))
}

/// A numeric header field: a field left empty (all NULs or spaces) reads as 0, as
/// Go's archive/tar (and so Docker) reads it; anything else unparseable is an error.
pub(in crate::layer) fn numeric(raw: &[u8], parsed: io::Result<u64>) -> io::Result<u64> {
    match parsed {
        Err(_) if raw.iter().all(|&b| b == 0 || b == b' ') => Ok(0),
        other => other,
    }
}

pub(in crate::layer) fn entry_meta<R: Read>(
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
pub(in crate::layer) fn each_entry(
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
pub(in crate::layer) fn each_entry_tail(
    r: Result<(), Failure>,
    opts: &ApplyOptions,
) -> Result<(), LayerError> {
    r.map_err(|f| to_layer_error(opts, String::new(), f))
}

/// The error for a failure of the entry `entry` (or of the earlier entry a deferred
/// failure names).
pub(in crate::layer) fn to_layer_error(
    opts: &ApplyOptions,
    entry: String,
    f: Failure,
) -> LayerError {
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
pub(in crate::layer) fn drain(
    archive: tar::Archive<Stream>,
    opts: &ApplyOptions,
) -> Result<(), LayerError> {
    let mut rest = archive.into_inner().into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(|e| stream_error(&opts.layer, e, &opts.limits))?;
    Ok(())
}

pub(in crate::layer) fn not_found() -> Failure {
    Failure::Io(io::Error::from(io::ErrorKind::NotFound))
}

pub(in crate::layer) fn mode_of(m: u32) -> Mode {
    Mode::from_raw_mode(m)
}

pub(in crate::layer) fn times(mtime: i64) -> Timestamps {
    let t = Timespec {
        tv_sec: mtime,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

pub(in crate::layer) fn join(comps: &[&[u8]]) -> Vec<u8> {
    comps.join(&b'/')
}

/// Split an entry name into components: leading `/` and `.` components dropped, `..`
/// refused (SECURITY-TESTS A1: reject rather than clamp, so a hostile layer is noticed).
/// The longest file name component Linux file systems take.
pub(in crate::layer) const NAME_MAX: usize = 255;

pub(in crate::layer) fn normalize(raw: &[u8]) -> Result<Vec<&[u8]>, Failure> {
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
pub(in crate::layer) fn xattr_allowed(name: &str) -> Result<bool, Failure> {
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
