//! The container side of a veth configured with the classic socket ioctls
//! (netdevice(7), route via `SIOCADDRT`): address, netmask, broadcast, link
//! up and default route, on one `AF_INET` datagram socket opened in the
//! container's namespace by the calling thread (see [`super::netlink::in_netns`]).
//!
//! Why not rtnetlink here: a netlink socket is freed only after an RCU grace
//! period once closed, and until then it holds its network namespace. A short
//! container (`run --rm IMAGE true`) then often ends before the namespace can
//! die, so its owner cannot leave the veth to the kernel and has to delete it,
//! waiting for the unregistration (see `endpoint::disconnect`). An unbound UDP
//! socket is freed at its close.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `struct rtentry` of `<net/route.h>` (not in the libc crate for glibc).
#[repr(C)]
struct RtEntry {
    rt_pad1: libc::c_ulong,
    rt_dst: libc::sockaddr,
    rt_gateway: libc::sockaddr,
    rt_genmask: libc::sockaddr,
    rt_flags: libc::c_ushort,
    rt_pad2: libc::c_short,
    rt_pad3: libc::c_ulong,
    rt_tos: libc::c_uchar,
    rt_class: libc::c_uchar,
    rt_pad4: [libc::c_short; 3],
    rt_metric: libc::c_short,
    rt_dev: *mut libc::c_char,
    rt_mtu: libc::c_ulong,
    rt_window: libc::c_ulong,
    rt_irtt: libc::c_ushort,
}

const RTF_UP: libc::c_ushort = 0x0001;
const RTF_GATEWAY: libc::c_ushort = 0x0002;

fn sockaddr_of(ip: Ipv4Addr) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(ip.octets()),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr are both 16 bytes, plain data.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

fn ifreq_of(name: &str) -> io::Result<libc::ifreq> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad link name {name:?}"),
        ));
    }
    // SAFETY: ifreq is plain data; all zeroes is a valid value.
    let mut r: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in r.ifr_name.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    Ok(r)
}

fn check(step: &str, r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("{step}: {e}")));
    }
    Ok(())
}

/// Give link `name` (in the calling thread's network namespace) `ip/prefix`
/// with broadcast `brd`, set it up and route everything through `gw`.
pub fn configure(
    name: &str,
    ip: Ipv4Addr,
    prefix: u8,
    brd: Ipv4Addr,
    gw: Ipv4Addr,
) -> io::Result<()> {
    // SAFETY: a new socket, owned at once.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a new descriptor nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let s = sock.as_raw_fd();
    let mask = Ipv4Addr::from(u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0));
    let mut r = ifreq_of(name)?;
    for (req, addr, step) in [
        (libc::SIOCSIFADDR, ip, "set the address"),
        (libc::SIOCSIFNETMASK, mask, "set the netmask"),
        (libc::SIOCSIFBRDADDR, brd, "set the broadcast address"),
    ] {
        r.ifr_ifru.ifru_addr = sockaddr_of(addr);
        // SAFETY: the ioctl reads an ifreq we own.
        check(step, unsafe { libc::ioctl(s, req as _, &mut r) })?;
    }
    // SAFETY: the ioctl writes the flags into the ifreq we own.
    check("read the link flags", unsafe {
        libc::ioctl(s, libc::SIOCGIFFLAGS as _, &mut r)
    })?;
    // SAFETY: reading the union member SIOCGIFFLAGS just filled.
    unsafe { r.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: the ioctl reads an ifreq we own.
    check("set the link up", unsafe {
        libc::ioctl(s, libc::SIOCSIFFLAGS as _, &mut r)
    })?;
    let mut dev: Vec<libc::c_char> = name.bytes().map(|b| b as libc::c_char).collect();
    dev.push(0);
    let mut rt = RtEntry {
        rt_pad1: 0,
        rt_dst: sockaddr_of(Ipv4Addr::UNSPECIFIED),
        rt_gateway: sockaddr_of(gw),
        rt_genmask: sockaddr_of(Ipv4Addr::UNSPECIFIED),
        rt_flags: RTF_UP | RTF_GATEWAY,
        rt_pad2: 0,
        rt_pad3: 0,
        rt_tos: 0,
        rt_class: 0,
        rt_pad4: [0; 3],
        rt_metric: 0,
        rt_dev: dev.as_mut_ptr(),
        rt_mtu: 0,
        rt_window: 0,
        rt_irtt: 0,
    };
    // SAFETY: the ioctl reads an rtentry we own whose rt_dev points to a
    // NUL-terminated name alive across the call.
    check("add the default route", unsafe {
        libc::ioctl(s, libc::SIOCADDRT as _, &mut rt)
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtentry_has_the_kernels_layout() {
        // x86_64 and aarch64 (LP64): 120 bytes, rt_dev at 88.
        if std::mem::size_of::<libc::c_ulong>() == 8 {
            assert_eq!(std::mem::size_of::<RtEntry>(), 120);
            assert_eq!(std::mem::offset_of!(RtEntry, rt_dev), 88);
        }
    }

    #[test]
    fn names_are_checked() {
        assert!(ifreq_of("eth0").is_ok());
        assert!(ifreq_of("").is_err());
        assert!(ifreq_of("a-name-too-long-for-it").is_err());
    }
}
