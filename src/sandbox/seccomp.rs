//! seccomp: Docker's profile format, its default profile (kept as data in
//! `profiles/seccomp-default.json`), resolution to the OCI `LinuxSeccomp` a runtime
//! spec carries, and loading an OCI filter with libseccomp.
//!
//! A Docker profile is resolved for one container: rules are kept or dropped by
//! their `includes`/`excludes` (capabilities the container will hold, the CPU
//! architecture, the running kernel), exactly once, when the spec is made. The
//! sandbox only ever sees the resolved OCI form, as crun and runc do.

use std::str::FromStr;

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder,
    LinuxSeccompOperator, LinuxSyscall,
};
use serde::{Deserialize, Serialize};

use super::Error;

/// Docker's default profile, as shipped with imgctl.
pub const DEFAULT_PROFILE: &str = include_str!("profiles/seccomp-default.json");

/// A seccomp profile in Docker's JSON format.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    pub default_action: LinuxSeccompAction,
    #[serde(default)]
    pub default_errno_ret: Option<u32>,
    /// Plain list of architectures (older profiles).
    #[serde(default)]
    pub architectures: Option<Vec<Arch>>,
    /// Native architecture -> compatible sub-architectures.
    #[serde(default)]
    pub arch_map: Option<Vec<ArchMap>>,
    #[serde(default)]
    pub syscalls: Vec<Rule>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchMap {
    pub architecture: Arch,
    #[serde(default)]
    pub sub_architectures: Option<Vec<Arch>>,
}

/// One rule of a Docker profile.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    #[serde(default)]
    pub names: Vec<String>,
    /// Single-name form of older profiles.
    #[serde(default)]
    pub name: Option<String>,
    pub action: LinuxSeccompAction,
    #[serde(default)]
    pub errno_ret: Option<u32>,
    #[serde(default)]
    pub args: Option<Vec<Arg>>,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub includes: Filter,
    #[serde(default)]
    pub excludes: Filter,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Arg {
    pub index: usize,
    pub value: u64,
    #[serde(default)]
    pub value_two: u64,
    pub op: LinuxSeccompOperator,
}

/// Conditions on a rule: every listed item must hold for `includes`, none for `excludes`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    #[serde(default)]
    pub caps: Vec<String>,
    #[serde(default)]
    pub arches: Vec<String>,
    #[serde(default)]
    pub min_kernel: Option<String>,
}

/// What a profile is resolved against.
#[derive(Debug, Clone)]
pub struct Target {
    /// Capabilities (`CAP_…`) the container's process will hold.
    pub caps: Vec<String>,
    /// Docker's architecture name: `amd64`, `arm64`, `s390x`, …
    pub arch: String,
    /// Running kernel version (major, minor).
    pub kernel: (u32, u32),
}

impl Target {
    /// This machine, with the given capabilities.
    pub fn host(caps: Vec<String>) -> Target {
        let arch = crate::oci::go_arch(std::env::consts::ARCH).to_string();
        let release = nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default();
        Target {
            caps,
            arch,
            kernel: parse_kernel(&release).unwrap_or((0, 0)),
        }
    }
}

fn parse_kernel(s: &str) -> Option<(u32, u32)> {
    let mut it = s.split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

fn native_scmp_arch(arch: &str) -> Option<Arch> {
    Some(match arch {
        "amd64" => Arch::ScmpArchX86_64,
        "386" => Arch::ScmpArchX86,
        "arm64" => Arch::ScmpArchAarch64,
        "arm" => Arch::ScmpArchArm,
        "ppc64le" => Arch::ScmpArchPpc64le,
        "s390x" => Arch::ScmpArchS390x,
        "riscv64" => Arch::ScmpArchRiscv64,
        "mips64" => Arch::ScmpArchMips64,
        "mips64le" => Arch::ScmpArchMipsel64,
        _ => return None,
    })
}

impl Profile {
    /// Parse a profile; `origin` names the file for the error.
    pub fn parse(text: &str, origin: &str) -> Result<Profile, Error> {
        serde_json::from_str(text).map_err(|e| Error::SeccompProfile {
            origin: origin.to_string(),
            reason: e.to_string(),
        })
    }

    /// Docker's default profile.
    pub fn docker_default() -> Profile {
        // The embedded profile is checked by a unit test; an empty allow-all filter
        // would be wrong, so fall back to a deny-everything-unknown profile.
        Profile::parse(DEFAULT_PROFILE, "built-in default").unwrap_or(Profile {
            default_action: LinuxSeccompAction::ScmpActErrno,
            default_errno_ret: Some(1),
            architectures: None,
            arch_map: None,
            syscalls: Vec::new(),
        })
    }

    /// Resolve for one container: the OCI form with only the rules that apply.
    pub fn resolve(&self, t: &Target) -> LinuxSeccomp {
        let mut arches: Vec<Arch> = Vec::new();
        if let Some(list) = &self.architectures {
            arches.extend(list.iter().copied());
        }
        if let (Some(map), Some(native)) = (&self.arch_map, native_scmp_arch(&t.arch)) {
            for m in map.iter().filter(|m| m.architecture == native) {
                arches.push(m.architecture);
                arches.extend(m.sub_architectures.iter().flatten().copied());
            }
        }
        let mut syscalls = Vec::new();
        for r in &self.syscalls {
            if !applies(r, t) {
                continue;
            }
            let mut names = r.names.clone();
            names.extend(r.name.clone());
            let mut s = LinuxSyscall::default();
            s.set_names(names);
            s.set_action(r.action);
            s.set_errno_ret(r.errno_ret);
            if let Some(args) = &r.args {
                if !args.is_empty() {
                    s.set_args(Some(
                        args.iter()
                            .map(|a| {
                                LinuxSeccompArgBuilder::default()
                                    .index(a.index)
                                    .value(a.value)
                                    .value_two(a.value_two)
                                    .op(a.op)
                                    .build()
                                    .unwrap_or_default()
                            })
                            .collect(),
                    ));
                }
            }
            syscalls.push(s);
        }
        let mut out = LinuxSeccomp::default();
        out.set_default_action(self.default_action);
        out.set_default_errno_ret(self.default_errno_ret);
        out.set_architectures(if arches.is_empty() {
            None
        } else {
            Some(arches)
        });
        out.set_syscalls(Some(syscalls));
        out
    }
}

fn applies(r: &Rule, t: &Target) -> bool {
    let inc = &r.includes;
    let exc = &r.excludes;
    if !inc.caps.iter().all(|c| t.caps.contains(c)) {
        return false;
    }
    if !inc.arches.is_empty() && !inc.arches.contains(&t.arch) {
        return false;
    }
    if let Some(k) = &inc.min_kernel {
        match parse_kernel(k) {
            Some(min) if t.kernel >= min => {}
            _ => return false,
        }
    }
    if exc.caps.iter().any(|c| t.caps.contains(c)) || exc.arches.contains(&t.arch) {
        return false;
    }
    true
}

fn action(a: LinuxSeccompAction, errno: Option<u32>, default_errno: Option<u32>) -> ScmpAction {
    match a {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => {
            ScmpAction::Errno(errno.or(default_errno).unwrap_or(libc::EPERM as u32) as i32)
        }
        LinuxSeccompAction::ScmpActNotify => ScmpAction::Notify,
        LinuxSeccompAction::ScmpActTrace => {
            ScmpAction::Trace(errno.or(default_errno).unwrap_or(libc::EPERM as u32) as u16)
        }
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
    }
}

fn compare(a: &LinuxSeccompArg) -> ScmpArgCompare {
    let two = a.value_two().unwrap_or(0);
    let (op, datum) = match a.op() {
        LinuxSeccompOperator::ScmpCmpNe => (ScmpCompareOp::NotEqual, a.value()),
        LinuxSeccompOperator::ScmpCmpLt => (ScmpCompareOp::Less, a.value()),
        LinuxSeccompOperator::ScmpCmpLe => (ScmpCompareOp::LessOrEqual, a.value()),
        LinuxSeccompOperator::ScmpCmpEq => (ScmpCompareOp::Equal, a.value()),
        LinuxSeccompOperator::ScmpCmpGe => (ScmpCompareOp::GreaterEqual, a.value()),
        LinuxSeccompOperator::ScmpCmpGt => (ScmpCompareOp::Greater, a.value()),
        // Docker and OCI: (arg & value) == valueTwo.
        LinuxSeccompOperator::ScmpCmpMaskedEq => (ScmpCompareOp::MaskedEqual(a.value()), two),
    };
    ScmpArgCompare::new(a.index() as u32, op, datum)
}

fn scmp_err(what: impl std::fmt::Display, e: impl std::fmt::Display) -> Error {
    Error::Seccomp {
        reason: format!("{what}: {e}"),
    }
}

/// The filter for `s` as the kernel loads it (an array of `struct sock_filter`),
/// compiled by libseccomp here, in the creator, while the container's set-up
/// builds its mounts (crun does the same): the set-up then loads it with one
/// system call ([`load_bpf`]) instead of compiling it on its own critical path.
pub fn compile_bpf(s: &LinuxSeccomp) -> Result<Vec<u8>, Error> {
    use std::io::{Read, Seek};
    let ctx = build_filter(s)?;
    let fd = rustix::fs::memfd_create("imgctl-seccomp", rustix::fs::MemfdFlags::CLOEXEC)
        .map_err(|e| scmp_err("memfd for the filter", e))?;
    ctx.export_bpf(&fd)
        .map_err(|e| scmp_err("export the filter", e))?;
    let mut f = std::fs::File::from(fd);
    let mut bpf = Vec::new();
    f.rewind()
        .and_then(|_| f.read_to_end(&mut bpf))
        .map_err(|e| scmp_err("read the filter back", e))?;
    if bpf.is_empty() || !bpf.len().is_multiple_of(8) || bpf.len() / 8 > u16::MAX as usize {
        return Err(scmp_err(
            "export the filter",
            format!("{} bytes", bpf.len()),
        ));
    }
    Ok(bpf)
}

/// [`compile_bpf`] through a cache directory (`dir`, e.g. the store's
/// `cache/seccomp/`): compiling Docker's profile with libseccomp takes ~10 ms of
/// CPU, on the container's start-up path. An entry is named by the SHA-256 of
/// the resolved filter, the architecture, libseccomp's version and API level and
/// the kernel release (what libseccomp's output depends on), and holds the
/// SHA-256 of the program then the program; one that fails its check is
/// compiled again and replaced. A cache that cannot be written is only a miss.
pub fn compile_bpf_cached(
    s: &LinuxSeccomp,
    dir: Option<&std::path::Path>,
) -> Result<Vec<u8>, Error> {
    use sha2::{Digest, Sha256};
    let Some(dir) = dir else {
        return compile_bpf(s);
    };
    let mut key = Sha256::new();
    key.update(serde_json::to_vec(s).unwrap_or_default());
    key.update(std::env::consts::ARCH.as_bytes());
    if let Ok(v) = libseccomp::ScmpVersion::current() {
        key.update(format!("\0{}.{}.{}", v.major, v.minor, v.micro).as_bytes());
    }
    key.update(format!("\0api{}", libseccomp::get_api()).as_bytes());
    key.update(rustix::system::uname().release().to_bytes());
    let name = hex::encode(key.finalize());
    let path = dir.join(&name);
    if let Ok(entry) = std::fs::read(&path) {
        if let Some(bpf) = cached_program(&entry) {
            return Ok(bpf.to_vec());
        }
    }
    let bpf = compile_bpf(s)?;
    let mut entry = Sha256::digest(&bpf).to_vec();
    entry.extend_from_slice(&bpf);
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let stored = std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&tmp, &entry))
        .and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(e) = stored {
        let _ = std::fs::remove_file(&tmp);
        tracing::debug!("seccomp cache {}: {e}", dir.display());
    }
    Ok(bpf)
}

/// The program of a cache entry, when its checksum and size hold.
fn cached_program(entry: &[u8]) -> Option<&[u8]> {
    use sha2::{Digest, Sha256};
    if entry.len() <= 32 {
        return None;
    }
    let (sum, bpf) = entry.split_at(32);
    let valid = bpf.len().is_multiple_of(8) && bpf.len() / 8 <= u16::MAX as usize;
    (valid && Sha256::digest(bpf).as_slice() == sum).then_some(bpf)
}

/// Load a filter made by [`compile_bpf`] into this thread, as libseccomp's
/// `seccomp_load` does with its default attributes (no flags; the caller has
/// set no_new_privs or holds CAP_SYS_ADMIN).
pub fn load_bpf(bpf: &[u8]) -> std::io::Result<()> {
    if bpf.is_empty() || !bpf.len().is_multiple_of(8) || bpf.len() / 8 > u16::MAX as usize {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("a seccomp filter of {} bytes", bpf.len()),
        ));
    }
    // Copied into 8-byte aligned storage (struct sock_filter is 8 bytes).
    let mut prog: Vec<libc::sock_filter> = bpf
        .chunks_exact(8)
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect();
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_mut_ptr(),
    };
    // SAFETY: seccomp(SECCOMP_SET_MODE_FILTER) reads `fprog` and the
    // instructions it points to, both alive for the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            &fprog as *const libc::sock_fprog,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Build the libseccomp filter for an OCI seccomp section. Syscall names this
/// libseccomp does not know are skipped (as Docker does), so a profile written for
/// newer kernels still loads.
pub fn build_filter(s: &LinuxSeccomp) -> Result<ScmpFilterContext, Error> {
    let default = action(s.default_action(), s.default_errno_ret(), None);
    let mut ctx = ScmpFilterContext::new(default).map_err(|e| scmp_err("seccomp_init", e))?;
    // no_new_privs is the spec's decision (process.noNewPrivileges), not libseccomp's.
    ctx.set_ctl_nnp(false)
        .map_err(|e| scmp_err("seccomp nnp attribute", e))?;
    for a in s.architectures().iter().flatten() {
        let name = a.to_string();
        let arch = ScmpArch::from_str(&name).map_err(|e| scmp_err(&name, e))?;
        if arch == ScmpArch::native() {
            continue;
        }
        ctx.add_arch(arch)
            .map_err(|e| scmp_err(format!("add arch {name}"), e))?;
    }
    for rule in s.syscalls().iter().flatten() {
        let act = action(rule.action(), rule.errno_ret(), s.default_errno_ret());
        if act == default {
            continue;
        }
        let args = rule.args().clone().unwrap_or_default();
        for name in rule.names() {
            let Ok(sc) = ScmpSyscall::from_name(name) else {
                tracing::debug!("seccomp: unknown syscall {name} skipped");
                continue;
            };
            if args.is_empty() {
                ctx.add_rule(act, sc)
                    .map_err(|e| scmp_err(format!("rule for {name}"), e))?;
                continue;
            }
            // Several conditions on one argument cannot share a rule: they become
            // separate rules (any may match), as Docker does.
            let mut idx: Vec<usize> = args.iter().map(|a| a.index()).collect();
            idx.sort_unstable();
            let dup = idx.windows(2).any(|w| w[0] == w[1]);
            if dup {
                for a in &args {
                    ctx.add_rule_conditional(act, sc, &[compare(a)])
                        .map_err(|e| scmp_err(format!("rule for {name}"), e))?;
                }
            } else {
                let cmps: Vec<ScmpArgCompare> = args.iter().map(compare).collect();
                ctx.add_rule_conditional(act, sc, &cmps)
                    .map_err(|e| scmp_err(format!("rule for {name}"), e))?;
            }
        }
    }
    Ok(ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(caps: &[&str]) -> Target {
        Target {
            caps: caps.iter().map(|c| c.to_string()).collect(),
            arch: "amd64".into(),
            kernel: (6, 18),
        }
    }

    fn names(s: &LinuxSeccomp) -> Vec<String> {
        s.syscalls()
            .iter()
            .flatten()
            .filter(|r| r.action() == LinuxSeccompAction::ScmpActAllow)
            .flat_map(|r| r.names().clone())
            .collect()
    }

    #[test]
    fn default_profile_parses_and_resolves_for_default_caps() {
        let p = Profile::parse(DEFAULT_PROFILE, "default").unwrap();
        let s = p.resolve(&target(&["CAP_CHOWN", "CAP_KILL"]));
        let allowed = names(&s);
        for n in ["read", "execve", "arch_prctl", "socket", "clone", "ptrace"] {
            assert!(allowed.contains(&n.to_string()), "{n} should be allowed");
        }
        for n in [
            "mount",
            "unshare",
            "keyctl",
            "io_uring_setup",
            "reboot",
            "setns",
            "s390_runtime_instr",
        ] {
            assert!(!allowed.contains(&n.to_string()), "{n} must not be allowed");
        }
        assert_eq!(
            s.architectures().clone().unwrap(),
            vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]
        );
        // clone is allowed only with the namespace-flag mask.
        let clone = s
            .syscalls()
            .iter()
            .flatten()
            .find(|r| r.names() == &["clone".to_string()])
            .unwrap();
        assert_eq!(
            clone.args().as_ref().unwrap()[0].op(),
            LinuxSeccompOperator::ScmpCmpMaskedEq
        );
        build_filter(&s).unwrap();
    }

    #[test]
    fn sys_admin_unlocks_mount_and_unmasked_clone() {
        let p = Profile::docker_default();
        let s = p.resolve(&target(&["CAP_SYS_ADMIN"]));
        let allowed = names(&s);
        assert!(allowed.contains(&"mount".to_string()));
        let clones = s
            .syscalls()
            .iter()
            .flatten()
            .filter(|r| r.names().contains(&"clone".to_string()));
        assert!(
            clones.clone().all(|r| r.args().is_none()),
            "clone is unconditional with CAP_SYS_ADMIN"
        );
    }

    #[test]
    fn min_kernel_and_arches() {
        let p = Profile::docker_default();
        let mut t = target(&[]);
        t.kernel = (4, 4);
        assert!(!names(&p.resolve(&t)).contains(&"ptrace".to_string()));
        t.arch = "s390x".into();
        assert!(names(&p.resolve(&t)).contains(&"s390_runtime_instr".to_string()));
    }

    #[test]
    fn cached_filters_equal_compiled_ones_and_a_bad_entry_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache/seccomp");
        let p = Profile::docker_default();
        let a = p.resolve(&target(&["CAP_CHOWN"]));
        let b = p.resolve(&target(&["CAP_SYS_ADMIN"]));
        let fresh = compile_bpf(&a).unwrap();
        // A miss compiles and stores; a hit returns the same program.
        assert_eq!(compile_bpf_cached(&a, Some(&cache)).unwrap(), fresh);
        let entries = || -> Vec<std::path::PathBuf> {
            let mut v: Vec<_> = std::fs::read_dir(&cache)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            v.sort();
            v
        };
        assert_eq!(entries().len(), 1);
        let entry = entries().remove(0);
        assert_eq!(std::fs::read(&entry).unwrap()[32..], fresh[..]);
        assert_eq!(compile_bpf_cached(&a, Some(&cache)).unwrap(), fresh);
        // Another filter is another entry, never the first one's program.
        let other = compile_bpf_cached(&b, Some(&cache)).unwrap();
        assert_eq!(other, compile_bpf(&b).unwrap());
        assert_ne!(other, fresh);
        assert_eq!(entries().len(), 2);
        // A damaged entry (one instruction changed, or cut short) is not
        // used: compiled again and replaced.
        for damage in [0usize, 1] {
            let mut bytes = std::fs::read(&entry).unwrap();
            if damage == 0 {
                let last = bytes.len() - 1;
                bytes[last] ^= 1;
            } else {
                bytes.truncate(40);
            }
            std::fs::write(&entry, &bytes).unwrap();
            assert_eq!(compile_bpf_cached(&a, Some(&cache)).unwrap(), fresh);
            assert_eq!(std::fs::read(&entry).unwrap()[32..], fresh[..]);
        }
        // A cache that cannot be made is only a miss.
        let file = dir.path().join("plain-file");
        std::fs::write(&file, b"x").unwrap();
        assert_eq!(
            compile_bpf_cached(&a, Some(&file.join("sub"))).unwrap(),
            fresh
        );
        assert_eq!(compile_bpf_cached(&a, None).unwrap(), fresh);
    }

    #[test]
    fn bad_profile_is_an_error_naming_the_file() {
        let e =
            Profile::parse("{\"defaultAction\": \"SCMP_ACT_NOPE\"}", "/tmp/p.json").unwrap_err();
        assert!(e.to_string().contains("/tmp/p.json"), "{e}");
    }
}
