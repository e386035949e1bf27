//! Parsers for `imgctl run` flag values, with Docker's syntax. Pure functions.

use std::path::PathBuf;

use super::Error;

fn bad(flag: &str, value: &str, hint: &str) -> Error {
    Error::BadFlag {
        flag: flag.to_string(),
        value: value.to_string(),
        hint: hint.to_string(),
    }
}

/// A size with an optional unit: `32m`, `1.5g`, `512k`, `100` (bytes), `64MiB`.
pub fn bytes(flag: &str, s: &str) -> Result<i64, Error> {
    let hint = "a size like 512k, 32m or 1g";
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| bad(flag, s, hint))?;
    let unit = unit.trim().to_ascii_lowercase();
    let mult: f64 = match unit.trim_end_matches("ib").trim_end_matches('b') {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024f64.powi(4),
        "p" => 1024f64.powi(5),
        _ => return Err(bad(flag, s, hint)),
    };
    let v = n * mult;
    if !v.is_finite() || v < 0.0 || v > i64::MAX as f64 {
        return Err(bad(flag, s, hint));
    }
    Ok(v as i64)
}

/// `--cpus`: a positive decimal no larger than the host's CPU count; returns the
/// CFS quota for a 100 ms period.
pub fn cpus(s: &str, host_cpus: usize) -> Result<(i64, u64), Error> {
    let hint = format!("a number of CPUs from 0.01 to {host_cpus}");
    let v: f64 = s.trim().parse().map_err(|_| bad("--cpus", s, &hint))?;
    if !v.is_finite() || v < 0.01 || v > host_cpus as f64 {
        return Err(bad("--cpus", s, &hint));
    }
    let period = 100_000u64;
    Ok(((v * period as f64).round() as i64, period))
}

/// A CPU or memory-node list: `0`, `0-3`, `0,2`.
pub fn cpu_list(flag: &str, s: &str) -> Result<String, Error> {
    let ok = !s.is_empty()
        && s.split(',').all(|part| {
            let mut it = part.splitn(2, '-');
            let a = it.next().and_then(|x| x.parse::<u32>().ok());
            match (a, it.next()) {
                (Some(_), None) => true,
                (Some(a), Some(b)) => b.parse::<u32>().is_ok_and(|b| b >= a),
                _ => false,
            }
        });
    if ok {
        Ok(s.to_string())
    } else {
        Err(bad(flag, s, "a list like 0, 0-3 or 0,2"))
    }
}

/// `--ulimit name=soft[:hard]`.
pub fn ulimit(s: &str) -> Result<(String, u64, u64), Error> {
    let hint = "name=soft[:hard], e.g. nofile=1024:2048";
    let (name, vals) = s.split_once('=').ok_or_else(|| bad("--ulimit", s, hint))?;
    let num = |v: &str| -> Result<u64, Error> {
        if v == "-1" || v == "unlimited" {
            Ok(u64::MAX)
        } else {
            v.parse().map_err(|_| bad("--ulimit", s, hint))
        }
    };
    let (soft, hard) = match vals.split_once(':') {
        Some((a, b)) => (num(a)?, num(b)?),
        None => (num(vals)?, num(vals)?),
    };
    if soft > hard {
        return Err(bad(
            "--ulimit",
            s,
            "the soft limit must not exceed the hard limit",
        ));
    }
    Ok((name.to_string(), soft, hard))
}

/// `--device-read-bps /dev/sda:1mb` -> (device path, bytes per second).
pub fn device_rate(flag: &str, s: &str) -> Result<(PathBuf, u64), Error> {
    let (dev, rate) = s
        .rsplit_once(':')
        .ok_or_else(|| bad(flag, s, "DEVICE:RATE, e.g. /dev/sda:1mb"))?;
    Ok((PathBuf::from(dev), bytes(flag, rate)? as u64))
}

/// `--device-read-iops /dev/sda:1000` -> (device path, operations per second).
pub fn device_iops(flag: &str, s: &str) -> Result<(PathBuf, u64), Error> {
    let hint = "DEVICE:IOPS, e.g. /dev/sda:1000";
    let (dev, rate) = s.rsplit_once(':').ok_or_else(|| bad(flag, s, hint))?;
    let n: u64 = rate.parse().map_err(|_| bad(flag, s, hint))?;
    if dev.is_empty() {
        return Err(bad(flag, s, hint));
    }
    Ok((PathBuf::from(dev), n))
}

/// `--blkio-weight-device /dev/sda:500` -> (device path, weight 10..1000).
pub fn device_weight(s: &str) -> Result<(PathBuf, u16), Error> {
    let flag = "--blkio-weight-device";
    let hint = "DEVICE:WEIGHT with a weight from 10 to 1000, e.g. /dev/sda:500";
    let (dev, w) = s.rsplit_once(':').ok_or_else(|| bad(flag, s, hint))?;
    let w: u16 = w.parse().map_err(|_| bad(flag, s, hint))?;
    if dev.is_empty() || !(10..=1000).contains(&w) {
        return Err(bad(flag, s, hint));
    }
    Ok((PathBuf::from(dev), w))
}

/// `--device HOST[:CONTAINER][:PERMISSIONS]`, Docker's syntax.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeviceFlag {
    pub host: PathBuf,
    pub container: PathBuf,
    /// Some of `r`, `w`, `m`.
    pub access: String,
}

fn is_access(s: &str) -> bool {
    !s.is_empty() && s.len() <= 3 && s.chars().all(|c| matches!(c, 'r' | 'w' | 'm'))
}

pub fn device(s: &str) -> Result<DeviceFlag, Error> {
    let hint = "HOST_PATH[:CONTAINER_PATH][:PERMISSIONS], e.g. /dev/sdc:/dev/xvdc:rwm";
    let parts: Vec<&str> = s.split(':').collect();
    let (host, container, access) = match parts.as_slice() {
        [h] => (*h, *h, "rwm"),
        [h, a] if is_access(a) => (*h, *h, *a),
        [h, c] => (*h, *c, "rwm"),
        [h, c, a] if is_access(a) => (*h, *c, *a),
        _ => return Err(bad("--device", s, hint)),
    };
    if !host.starts_with('/') || !container.starts_with('/') {
        return Err(bad(
            "--device",
            s,
            "absolute paths (HOST[:CONTAINER][:rwm])",
        ));
    }
    Ok(DeviceFlag {
        host: PathBuf::from(host),
        container: PathBuf::from(container),
        access: access.to_string(),
    })
}

/// `--device-cgroup-rule 'c 1:3 rwm'`: (type a|b|c, major, minor, access);
/// `*` for any major or minor.
pub fn device_cgroup_rule(s: &str) -> Result<(char, Option<i64>, Option<i64>, String), Error> {
    let hint = "TYPE MAJOR:MINOR ACCESS, e.g. 'c 1:3 rwm' or 'b 7:* r'";
    let f: Vec<&str> = s.split_whitespace().collect();
    let err = || bad("--device-cgroup-rule", s, hint);
    let [typ, nums, access] = f.as_slice() else {
        return Err(err());
    };
    let typ = match *typ {
        "a" | "b" | "c" => typ.chars().next().ok_or_else(err)?,
        _ => return Err(err()),
    };
    let (ma, mi) = nums.split_once(':').ok_or_else(err)?;
    let num = |v: &str| -> Result<Option<i64>, Error> {
        if v == "*" {
            Ok(None)
        } else {
            v.parse::<u32>()
                .map(|n| Some(i64::from(n)))
                .map_err(|_| err())
        }
    };
    if !is_access(access) {
        return Err(err());
    }
    Ok((typ, num(ma)?, num(mi)?, access.to_string()))
}

/// `--hugetlb 2MB:64m` -> (page size as the kernel names it, limit in bytes).
pub fn hugetlb(s: &str) -> Result<(String, i64), Error> {
    let hint = "PAGESIZE:LIMIT, e.g. 2MB:64m or 1GB:2g";
    let (size, limit) = s.split_once(':').ok_or_else(|| bad("--hugetlb", s, hint))?;
    let t = size.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: u64 = n.parse().map_err(|_| bad("--hugetlb", s, hint))?;
    let unit = match unit
        .to_ascii_uppercase()
        .trim_end_matches("IB")
        .trim_end_matches('B')
    {
        "K" => "KB",
        "M" => "MB",
        "G" => "GB",
        _ => return Err(bad("--hugetlb", s, hint)),
    };
    if n == 0 {
        return Err(bad("--hugetlb", s, hint));
    }
    Ok((format!("{n}{unit}"), bytes("--hugetlb", limit)?))
}

/// `--uidmap container:host:size` (several allowed).
pub fn id_map(flag: &str, s: &str) -> Result<(u32, u32, u32), Error> {
    let hint = "CONTAINER_ID:HOST_ID:SIZE, e.g. 0:100000:65536";
    let p: Vec<&str> = s.split(':').collect();
    if p.len() != 3 {
        return Err(bad(flag, s, hint));
    }
    let n = |v: &str| v.parse::<u32>().map_err(|_| bad(flag, s, hint));
    let (c, h, z) = (n(p[0])?, n(p[1])?, n(p[2])?);
    if z == 0 {
        return Err(bad(flag, s, hint));
    }
    Ok((c, h, z))
}

/// `-v SRC:DST[:ro|rw]`.
pub fn volume(s: &str) -> Result<(PathBuf, PathBuf, bool), Error> {
    let hint = "/host/path:/container/path[:ro]";
    let parts: Vec<&str> = s.split(':').collect();
    let (src, dst, ro) = match parts.as_slice() {
        [a, b] => (*a, *b, false),
        [a, b, o] => {
            let ro = o.split(',').any(|x| x == "ro");
            if !o.split(',').all(|x| matches!(x, "ro" | "rw" | "z" | "Z")) {
                return Err(bad("-v", s, hint));
            }
            (*a, *b, ro)
        }
        _ => return Err(bad("-v", s, hint)),
    };
    if !src.starts_with('/') || !dst.starts_with('/') {
        return Err(bad(
            "-v",
            s,
            "both paths must be absolute (named volumes are not supported)",
        ));
    }
    Ok((PathBuf::from(src), PathBuf::from(dst), ro))
}

/// `--mount type=bind|tmpfs,source=…,target=…[,readonly][,tmpfs-size=…]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountFlag {
    pub typ: String,
    pub source: Option<PathBuf>,
    pub target: PathBuf,
    pub readonly: bool,
    pub tmpfs_size: Option<i64>,
}

pub fn mount(s: &str) -> Result<MountFlag, Error> {
    let hint = "type=bind,source=/a,target=/b[,readonly] or type=tmpfs,target=/t[,tmpfs-size=64m]";
    let mut m = MountFlag {
        typ: "volume".into(),
        source: None,
        target: PathBuf::new(),
        readonly: false,
        tmpfs_size: None,
    };
    for kv in s.split(',') {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        match k {
            "type" => m.typ = v.to_string(),
            "source" | "src" => m.source = Some(PathBuf::from(v)),
            "target" | "destination" | "dst" => m.target = PathBuf::from(v),
            "readonly" | "ro" => m.readonly = v.is_empty() || v == "true" || v == "1",
            "tmpfs-size" => m.tmpfs_size = Some(bytes("--mount", v)?),
            _ => return Err(bad("--mount", s, hint)),
        }
    }
    let ok_type = match m.typ.as_str() {
        "bind" => m.source.as_ref().is_some_and(|p| p.is_absolute()),
        "tmpfs" => true,
        _ => false,
    };
    if !ok_type || !m.target.is_absolute() {
        return Err(bad("--mount", s, hint));
    }
    Ok(m)
}

/// `--tmpfs /path[:options]`.
pub fn tmpfs(s: &str) -> Result<(PathBuf, Vec<String>), Error> {
    let (p, o) = s.split_once(':').unwrap_or((s, ""));
    if !p.starts_with('/') {
        return Err(bad("--tmpfs", s, "an absolute path, e.g. /run:size=64m"));
    }
    Ok((
        PathBuf::from(p),
        o.split(',')
            .filter(|x| !x.is_empty())
            .map(String::from)
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(bytes("--memory", "32m").unwrap(), 32 << 20);
        assert_eq!(bytes("--memory", "1g").unwrap(), 1 << 30);
        assert_eq!(bytes("--memory", "64MiB").unwrap(), 64 << 20);
        assert_eq!(bytes("--memory", "100").unwrap(), 100);
        assert_eq!(bytes("--memory", "1.5k").unwrap(), 1536);
        for b in ["12q", "", "m", "-1m", "1..2m"] {
            let e = bytes("--memory", b).unwrap_err().to_string();
            assert!(e.contains("--memory"), "{e}");
        }
    }

    #[test]
    fn cpus_values() {
        assert_eq!(cpus("0.5", 2).unwrap(), (50_000, 100_000));
        assert!(cpus("-1", 2).is_err());
        assert!(cpus("0", 2).is_err());
        assert!(cpus("3", 2).is_err());
        assert!(cpus("abc", 2).is_err());
    }

    #[test]
    fn lists_ulimits_maps_volumes() {
        assert!(cpu_list("--cpuset-cpus", "0-1,3").is_ok());
        assert!(cpu_list("--cpuset-cpus", "1-0").is_err());
        assert_eq!(
            ulimit("nofile=1024:2048").unwrap(),
            ("nofile".into(), 1024, 2048)
        );
        assert!(ulimit("nofile=4:2").is_err());
        assert_eq!(
            id_map("--uidmap", "0:100000:65536").unwrap(),
            (0, 100000, 65536)
        );
        assert!(id_map("--uidmap", "0:1").is_err());
        assert_eq!(
            volume("/a:/b:ro").unwrap(),
            ("/a".into(), "/b".into(), true)
        );
        assert!(volume("name:/b").is_err());
        let m = mount("type=bind,source=/a,target=/b,readonly").unwrap();
        assert!(m.readonly && m.typ == "bind");
        assert!(mount("type=volume,target=/b").is_err());
        assert_eq!(
            device("/dev/null:/dev/mynull:rw").unwrap(),
            DeviceFlag {
                host: "/dev/null".into(),
                container: "/dev/mynull".into(),
                access: "rw".into()
            }
        );
        assert_eq!(
            device("/dev/sda:r").unwrap().container,
            PathBuf::from("/dev/sda")
        );
        assert_eq!(device("/dev/sda").unwrap().access, "rwm");
        assert!(device("dev/sda").is_err());
        assert!(device("/a:/b:rwx").is_err());
        assert_eq!(
            device_cgroup_rule("c 1:3 rwm").unwrap(),
            ('c', Some(1), Some(3), "rwm".into())
        );
        assert_eq!(
            device_cgroup_rule("b 7:* r").unwrap(),
            ('b', Some(7), None, "r".into())
        );
        for r in ["x 1:3 rwm", "c 1 rwm", "c 1:3", "c 1:3 rwx", "c -1:3 r"] {
            assert!(device_cgroup_rule(r).is_err(), "{r}");
        }
        assert_eq!(
            device_iops("--device-write-iops", "/dev/loop0:20")
                .unwrap()
                .1,
            20
        );
        assert!(device_iops("--device-write-iops", "/dev/loop0:x").is_err());
        assert_eq!(device_weight("/dev/sda:500").unwrap().1, 500);
        assert!(device_weight("/dev/sda:5").is_err());
        assert_eq!(hugetlb("2MB:64m").unwrap(), ("2MB".into(), 64 << 20));
        assert_eq!(hugetlb("1g:2g").unwrap(), ("1GB".into(), 2 << 30));
        assert!(hugetlb("2XB:1m").is_err());
        assert_eq!(
            tmpfs("/run:size=64m,mode=755").unwrap().1,
            vec!["size=64m", "mode=755"]
        );
    }
}
