//! The cgroup v2 device allow-list: an eBPF program of type
//! `BPF_PROG_TYPE_CGROUP_DEVICE` attached to the container's cgroup. (v1 has the
//! `devices.allow`/`devices.deny` files instead.)
//!
//! [`program`] compiles the OCI rules into instructions (pure, unit-tested); the
//! kernel passes `struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32
//! minor; }` where `access_type = access << 16 | type`. Rules are tried from the
//! last to the first, so a later rule overrides an earlier one as in v1; when none
//! matches, access is denied.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use super::Error;

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    /// dst_reg in the low nibble, src_reg in the high nibble.
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

const LDX_MEM_W: u8 = 0x61;
const ALU32_AND_K: u8 = 0x54;
const ALU32_RSH_K: u8 = 0x74;
const ALU32_MOV_X: u8 = 0xbc;
const ALU64_MOV_K: u8 = 0xb7;
const JMP_JNE_K: u8 = 0x55;
const EXIT: u8 = 0x95;

const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | (dst & 0x0f),
        off,
        imm,
    }
}

fn access_bits(a: &str) -> i32 {
    a.chars().fold(0, |m, c| {
        m | match c {
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            'm' => ACC_MKNOD,
            _ => 0,
        }
    })
}

/// Compile rules into a program. Registers: r2 = type, r3 = access, r4 = major,
/// r5 = minor; r0 = verdict.
pub fn program(rules: &[LinuxDeviceCgroup]) -> Vec<Insn> {
    let mut p = vec![
        insn(LDX_MEM_W, 2, 1, 0, 0),
        insn(ALU32_AND_K, 2, 0, 0, 0xffff),
        insn(LDX_MEM_W, 3, 1, 0, 0),
        insn(ALU32_RSH_K, 3, 0, 0, 16),
        insn(LDX_MEM_W, 4, 1, 4, 0),
        insn(LDX_MEM_W, 5, 1, 8, 0),
    ];
    for r in rules.iter().rev() {
        let mut checks: Vec<(u8, u8, i32, bool)> = Vec::new(); // (reg, pre-op, imm, needs_mask)
        match r.typ() {
            Some(LinuxDeviceType::C) | Some(LinuxDeviceType::U) => {
                checks.push((2, 0, DEV_CHAR, false))
            }
            Some(LinuxDeviceType::B) => checks.push((2, 0, DEV_BLOCK, false)),
            // Pipes and "all" match every device type.
            _ => {}
        }
        let acc = access_bits(r.access().as_deref().unwrap_or("rwm"));
        if acc != ACC_READ | ACC_WRITE | ACC_MKNOD {
            checks.push((0, 1, acc, true));
        }
        if let Some(m) = r.major().filter(|m| *m >= 0) {
            checks.push((4, 0, m as i32, false));
        }
        if let Some(m) = r.minor().filter(|m| *m >= 0) {
            checks.push((5, 0, m as i32, false));
        }
        // Block length: each check is one jump (access: three insns), then mov + exit.
        let len: usize = checks
            .iter()
            .map(|c| if c.3 { 3 } else { 1 })
            .sum::<usize>()
            + 2;
        let mut at = 0usize;
        for (reg, _, imm, masked) in checks {
            if masked {
                // Requested access must be a subset: (access & ~allowed) == 0.
                p.push(insn(ALU32_MOV_X, 0, 3, 0, 0));
                p.push(insn(ALU32_AND_K, 0, 0, 0, !imm));
                at += 2;
                p.push(insn(JMP_JNE_K, 0, 0, (len - at - 1) as i16, 0));
            } else {
                p.push(insn(JMP_JNE_K, reg, 0, (len - at - 1) as i16, imm));
            }
            at += 1;
        }
        p.push(insn(ALU64_MOV_K, 0, 0, 0, i32::from(r.allow())));
        p.push(insn(EXIT, 0, 0, 0, 0));
        if at == 0 {
            // A rule matching everything ends the program: the verifier refuses
            // unreachable instructions.
            return p;
        }
    }
    p.push(insn(ALU64_MOV_K, 0, 0, 0, 0));
    p.push(insn(EXIT, 0, 0, 0, 0));
    p
}

fn bpf(cmd: libc::c_long, attr: &mut [u8; 128]) -> std::io::Result<i64> {
    // SAFETY: the bpf syscall reads (and for some commands writes) `attr`, whose
    // size is passed along.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len() as u32) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Load the program for `rules` and attach it to the cgroup v2 directory `dir`.
/// The program stays attached for the cgroup's lifetime.
pub fn attach(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<(), Error> {
    let err = |what: &str, e: std::io::Error| Error::Cgroup {
        path: dir.to_path_buf(),
        source: std::io::Error::new(e.kind(), format!("{what}: {e}")),
    };
    let prog = program(rules);
    let license = c"Apache-2.0";
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&15u32.to_ne_bytes()); // BPF_PROG_TYPE_CGROUP_DEVICE
    attr[4..8].copy_from_slice(&(prog.len() as u32).to_ne_bytes());
    attr[8..16].copy_from_slice(&(prog.as_ptr() as u64).to_ne_bytes());
    attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
    attr[68..72].copy_from_slice(&6u32.to_ne_bytes()); // expected_attach_type BPF_CGROUP_DEVICE
    let fd = match bpf(5, &mut attr) {
        Ok(fd) => fd,
        Err(first) => {
            // Load again with the verifier's log, for the error message.
            let mut log = vec![0u8; 1 << 16];
            attr[24..28].copy_from_slice(&1u32.to_ne_bytes());
            attr[28..32].copy_from_slice(&(log.len() as u32).to_ne_bytes());
            attr[32..40].copy_from_slice(&(log.as_mut_ptr() as u64).to_ne_bytes());
            let _ = bpf(5, &mut attr);
            let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
            let text = String::from_utf8_lossy(&log[..end]).replace('\n', "; ");
            return Err(err(
                &format!("load the device filter (BPF_PROG_LOAD; verifier: {text})"),
                first,
            ));
        }
    };
    // SAFETY: BPF_PROG_LOAD returned a new descriptor we now own.
    let prog_fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let cg = std::fs::File::open(dir).map_err(|e| err("open cgroup", e))?;
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&(cg.as_raw_fd() as u32).to_ne_bytes());
    attr[4..8].copy_from_slice(&(prog_fd.as_raw_fd() as u32).to_ne_bytes());
    attr[8..12].copy_from_slice(&6u32.to_ne_bytes()); // BPF_CGROUP_DEVICE
    attr[12..16].copy_from_slice(&2u32.to_ne_bytes()); // BPF_F_ALLOW_MULTI
    bpf(8, &mut attr).map_err(|e| err("attach the device filter (BPF_PROG_ATTACH)", e))?;
    Ok(())
}

/// Evaluate a program the way the kernel would, for tests: only the instructions
/// [`program`] emits are understood.
#[cfg(test)]
pub fn eval(p: &[Insn], typ: u32, access: u32, major: u32, minor: u32) -> u64 {
    let ctx = [(access << 16) | typ, major, minor];
    let mut r = [0u64; 11];
    let mut pc = 0usize;
    loop {
        let i = p[pc];
        let (dst, src) = ((i.regs & 0x0f) as usize, (i.regs >> 4) as usize);
        pc += 1;
        match i.code {
            LDX_MEM_W => r[dst] = u64::from(ctx[(i.off / 4) as usize]),
            ALU32_AND_K => r[dst] = u64::from((r[dst] as u32) & (i.imm as u32)),
            ALU32_RSH_K => r[dst] = u64::from((r[dst] as u32) >> i.imm),
            ALU32_MOV_X => r[dst] = u64::from(r[src] as u32),
            ALU64_MOV_K => r[dst] = i.imm as i64 as u64,
            JMP_JNE_K => {
                if r[dst] != i.imm as i64 as u64 {
                    pc = (pc as isize + i.off as isize) as usize;
                }
            }
            EXIT => return r[0],
            c => panic!("unknown opcode {c:#x}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxDeviceCgroupBuilder;

    fn rule(
        allow: bool,
        typ: Option<LinuxDeviceType>,
        major: Option<i64>,
        minor: Option<i64>,
        access: &str,
    ) -> LinuxDeviceCgroup {
        let mut b = LinuxDeviceCgroupBuilder::default()
            .allow(allow)
            .access(access);
        if let Some(t) = typ {
            b = b.typ(t);
        }
        if let Some(m) = major {
            b = b.major(m);
        }
        if let Some(m) = minor {
            b = b.minor(m);
        }
        b.build().unwrap()
    }

    fn docker_like() -> Vec<LinuxDeviceCgroup> {
        use LinuxDeviceType::{B, C};
        vec![
            rule(false, None, None, None, "rwm"),
            rule(true, Some(C), None, None, "m"),
            rule(true, Some(B), None, None, "m"),
            rule(true, Some(C), Some(1), Some(3), "rwm"),
            rule(true, Some(C), Some(136), None, "rwm"),
            rule(false, Some(C), Some(136), Some(7), "w"),
        ]
    }

    const R: u32 = ACC_READ as u32;
    const W: u32 = ACC_WRITE as u32;
    const M: u32 = ACC_MKNOD as u32;
    const CHR: u32 = DEV_CHAR as u32;
    const BLK: u32 = DEV_BLOCK as u32;

    #[test]
    fn allow_list_semantics() {
        let p = program(&docker_like());
        assert_eq!(eval(&p, CHR, R | W, 1, 3), 1, "/dev/null rw");
        assert_eq!(eval(&p, CHR, R, 1, 5), 0, "/dev/zero is not listed");
        assert_eq!(eval(&p, BLK, R, 254, 0), 0, "block devices cannot be read");
        assert_eq!(
            eval(&p, BLK, M, 254, 0),
            1,
            "but can be created (Docker's m rule)"
        );
        assert_eq!(eval(&p, CHR, R | M, 1, 5), 0, "mknod+read is more than m");
        assert_eq!(eval(&p, CHR, R | W, 136, 2), 1, "any pts");
        assert_eq!(eval(&p, CHR, R, 136, 7), 1, "the later deny only covers w");
        assert_eq!(
            eval(&p, CHR, W, 136, 7),
            0,
            "a later rule overrides an earlier one"
        );
    }

    #[test]
    fn empty_rules_deny_everything() {
        let p = program(&[]);
        assert_eq!(eval(&p, CHR, R, 1, 3), 0);
        assert_eq!(p.len(), 8);
        // A catch-all rule ends the program (no unreachable default after it).
        let p = program(&docker_like());
        assert_eq!(p[p.len() - 2], insn(ALU64_MOV_K, 0, 0, 0, 0));
        assert_eq!(
            p[p.len() - 4],
            insn(ALU64_MOV_K, 0, 0, 0, 1),
            "the block before is an allow rule"
        );
    }
}
