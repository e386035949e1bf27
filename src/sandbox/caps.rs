//! Capability sets: names <-> bits, Docker's default set, and applying all five
//! sets (bounding, effective, permitted, inheritable, ambient) in the child.

use std::str::FromStr;

use oci_spec::runtime::LinuxCapabilities;

use super::Error;

/// Docker's default capability set (14).
pub fn docker_default_caps() -> Vec<String> {
    [
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FSETID",
        "CAP_FOWNER",
        "CAP_MKNOD",
        "CAP_NET_RAW",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETFCAP",
        "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT",
        "CAP_KILL",
        "CAP_AUDIT_WRITE",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Every capability this build knows, by name.
pub const ALL_CAPS: &str = "ALL";

/// Normalise a capability name as users type it (`net_admin`, `CAP_NET_ADMIN`).
pub fn parse_cap(name: &str) -> Result<String, Error> {
    let up = name.trim().to_ascii_uppercase();
    let full = if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    };
    caps::Capability::from_str(&full).map_err(|_| Error::Capability {
        name: name.to_string(),
    })?;
    Ok(full)
}

/// All capabilities the running kernel supports and this process can pass on
/// (its bounding set: root here lacks CAP_SYS_RESOURCE, for example).
pub fn all_caps() -> Vec<String> {
    let bounding = caps::read(None, caps::CapSet::Bounding).unwrap_or_default();
    let mut v: Vec<String> = caps::runtime::procfs_all_supported(None)
        .unwrap_or_else(|_| caps::all())
        .into_iter()
        .filter(|c| bounding.contains(c))
        .map(|c| c.to_string())
        .collect();
    v.sort();
    v
}

/// The five sets as bit masks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sets {
    pub bounding: u64,
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub ambient: u64,
}

fn mask(set: &Option<oci_spec::runtime::Capabilities>) -> Result<u64, Error> {
    let mut m = 0u64;
    for c in set.iter().flatten() {
        // oci-spec serialises capabilities as "CAP_…".
        let name = serde_json::to_value(c)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        let cap = caps::Capability::from_str(&name).map_err(|_| Error::Capability { name })?;
        m |= 1u64 << cap.index();
    }
    Ok(m)
}

impl Sets {
    /// Sets from the spec; absent sets are empty (as the OCI spec says).
    pub fn from_spec(c: Option<&LinuxCapabilities>) -> Result<Sets, Error> {
        let Some(c) = c else {
            return Ok(Sets::default());
        };
        Ok(Sets {
            bounding: mask(c.bounding())?,
            effective: mask(c.effective())?,
            permitted: mask(c.permitted())?,
            inheritable: mask(c.inheritable())?,
            ambient: mask(c.ambient())?,
        })
    }

    /// Drop from the bounding set every capability not in it. Needs CAP_SETPCAP,
    /// so it runs before the user switch.
    pub fn apply_bounding(&self) -> std::io::Result<()> {
        let last = caps::runtime::thread_all_supported();
        for cap in last {
            let bit = 1u64 << cap.index();
            if self.bounding & bit == 0 {
                // SAFETY: prctl with integer arguments only.
                let r = unsafe {
                    libc::prctl(libc::PR_CAPBSET_DROP, cap.index() as libc::c_ulong, 0, 0, 0)
                };
                if r < 0 {
                    let e = std::io::Error::last_os_error();
                    if e.raw_os_error() != Some(libc::EINVAL) {
                        return Err(e);
                    }
                }
            }
        }
        Ok(())
    }

    /// Set effective, permitted and inheritable in one capset(2), then the ambient
    /// set (which must be a subset of permitted and inheritable).
    pub fn apply_process_sets(&self) -> std::io::Result<()> {
        #[repr(C)]
        struct Header {
            version: u32,
            pid: i32,
        }
        #[repr(C)]
        #[derive(Clone, Copy)]
        struct Data {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        let mut hdr = Header {
            version: 0x2008_0522,
            pid: 0,
        };
        let split = |m: u64| (m as u32, (m >> 32) as u32);
        let (e0, e1) = split(self.effective);
        let (p0, p1) = split(self.permitted);
        let (i0, i1) = split(self.inheritable);
        let data = [
            Data {
                effective: e0,
                permitted: p0,
                inheritable: i0,
            },
            Data {
                effective: e1,
                permitted: p1,
                inheritable: i1,
            },
        ];
        // SAFETY: capset reads a v3 header and two data structs we own.
        let r = unsafe { libc::syscall(libc::SYS_capset, &mut hdr as *mut Header, data.as_ptr()) };
        if r < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: prctl with integer arguments only.
        unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
                0,
                0,
                0,
            )
        };
        for i in 0..64u64 {
            if self.ambient & (1 << i) != 0 {
                // SAFETY: as above.
                let r = unsafe {
                    libc::prctl(
                        libc::PR_CAP_AMBIENT,
                        libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                        i as libc::c_ulong,
                        0,
                        0,
                    )
                };
                if r < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
        }
        Ok(())
    }

    /// Names of the capabilities in a mask.
    #[cfg(test)]
    pub fn names(m: u64) -> std::collections::HashSet<String> {
        caps::all()
            .into_iter()
            .filter(|c| m & (1u64 << c.index()) != 0)
            .map(|c| c.to_string())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_normalise() {
        assert_eq!(parse_cap("net_admin").unwrap(), "CAP_NET_ADMIN");
        assert_eq!(parse_cap("CAP_CHOWN").unwrap(), "CAP_CHOWN");
        assert!(matches!(
            parse_cap("CAP_FLY"),
            Err(Error::Capability { .. })
        ));
    }

    #[test]
    fn default_set_is_docker_fourteen() {
        let d = docker_default_caps();
        assert_eq!(d.len(), 14);
        for c in &d {
            parse_cap(c).unwrap();
        }
        assert!(!d.contains(&"CAP_SYS_ADMIN".to_string()));
    }

    #[test]
    fn masks_from_spec() {
        let caps: oci_spec::runtime::Capabilities = [
            oci_spec::runtime::Capability::Chown,
            oci_spec::runtime::Capability::Kill,
        ]
        .into_iter()
        .collect();
        let mut lc = LinuxCapabilities::default();
        lc.set_bounding(Some(caps.clone()));
        lc.set_effective(Some(caps));
        lc.set_ambient(None);
        let s = Sets::from_spec(Some(&lc)).unwrap();
        assert_eq!(s.bounding, (1 << 0) | (1 << 5));
        assert_eq!(s.ambient, 0);
        assert_eq!(Sets::names(s.effective).len(), 2);
    }
}
