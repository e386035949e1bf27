//! The few rtnetlink requests imgctl needs, written by hand (rtnetlink(7)):
//! create a bridge, a veth pair whose peer is born in the container's network
//! namespace, set links up and enslaved, add addresses, ask where a link's
//! peer lives, delete a link. Each request asks for an ACK and returns the
//! kernel's errno.
//!
//! A socket belongs to the network namespace it was created in; to configure
//! a container's namespace, [`in_netns`] runs a closure on a short-lived thread
//! that has `setns`'d into it (a per-thread operation for CLONE_NEWNET), so the
//! calling process never changes namespace (the container side itself is
//! configured with ioctls, see super::ioctl).

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

const NLMSG_ERROR: u16 = 2;
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;

const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_LINK_NETNSID: u16 = 37;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
const NLA_F_NESTED: u16 = 0x8000;

const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_BROADCAST: u16 = 4;

/// One netlink message being built: header, fixed part, attributes.
struct Msg {
    buf: Vec<u8>,
    nests: Vec<usize>,
}

impl Msg {
    fn new(typ: u16, flags: u16) -> Msg {
        let mut buf = vec![0u8; 16];
        buf[4..6].copy_from_slice(&typ.to_ne_bytes());
        buf[6..8].copy_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        Msg {
            buf,
            nests: Vec::new(),
        }
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    fn raw(&mut self, data: &[u8]) -> &mut Msg {
        self.buf.extend_from_slice(data);
        self.pad();
        self
    }

    /// struct ifinfomsg { family, pad, type, index, flags, change }.
    fn ifinfo(&mut self, index: i32, flags: u32, change: u32) -> &mut Msg {
        let mut b = [0u8; 16];
        b[4..8].copy_from_slice(&index.to_ne_bytes());
        b[8..12].copy_from_slice(&flags.to_ne_bytes());
        b[12..16].copy_from_slice(&change.to_ne_bytes());
        self.raw(&b)
    }

    fn attr(&mut self, typ: u16, data: &[u8]) -> &mut Msg {
        let len = (4 + data.len()) as u16;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&typ.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.pad();
        self
    }

    fn attr_str(&mut self, typ: u16, s: &str) -> &mut Msg {
        let mut d = s.as_bytes().to_vec();
        d.push(0);
        self.attr(typ, &d)
    }

    fn begin(&mut self, typ: u16) -> &mut Msg {
        self.nests.push(self.buf.len());
        self.buf.extend_from_slice(&[0, 0]);
        self.buf
            .extend_from_slice(&(typ | NLA_F_NESTED).to_ne_bytes());
        self
    }

    fn end(&mut self) -> &mut Msg {
        if let Some(at) = self.nests.pop() {
            let len = (self.buf.len() - at) as u16;
            self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
        }
        self
    }

    fn finish(&mut self, seq: u32) -> &[u8] {
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        &self.buf
    }
}

/// An rtnetlink socket in the caller's (thread's) network namespace.
pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
}

impl Netlink {
    pub fn open() -> io::Result<Netlink> {
        // SAFETY: socket/bind with a zeroed sockaddr_nl we own.
        unsafe {
            let fd = libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            );
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            let fd = OwnedFd::from_raw_fd(fd);
            let mut sa: libc::sockaddr_nl = std::mem::zeroed();
            sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
            if libc::bind(
                fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            ) < 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(Netlink { fd, seq: 1 })
        }
    }

    /// Send one request and wait for its ACK (or error).
    fn request(&mut self, m: &mut Msg) -> io::Result<()> {
        self.transact(m, None).map(drop)
    }

    /// Send one request; return the replies of type `want` that come before
    /// its ACK (each a whole message: header, fixed part, attributes), or the
    /// kernel's error.
    fn transact(&mut self, m: &mut Msg, want: Option<u16>) -> io::Result<Vec<Vec<u8>>> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let data = m.finish(seq);
        // SAFETY: send of a buffer we own to the kernel (nl_pid 0 by default).
        let n = unsafe { libc::send(self.fd.as_raw_fd(), data.as_ptr().cast(), data.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut replies = Vec::new();
        let mut buf = vec![0u8; 16384];
        loop {
            // SAFETY: recv into a buffer we own.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let mut off = 0usize;
            let n = n as usize;
            while off + 16 <= n {
                let len = u32::from_ne_bytes([buf[off], buf[off + 1], buf[off + 2], buf[off + 3]])
                    as usize;
                let typ = u16::from_ne_bytes([buf[off + 4], buf[off + 5]]);
                let mseq =
                    u32::from_ne_bytes([buf[off + 8], buf[off + 9], buf[off + 10], buf[off + 11]]);
                if len < 16 || off + len > n {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "truncated netlink reply",
                    ));
                }
                if typ == NLMSG_ERROR && mseq == seq && len >= 20 {
                    let err = i32::from_ne_bytes([
                        buf[off + 16],
                        buf[off + 17],
                        buf[off + 18],
                        buf[off + 19],
                    ]);
                    return if err == 0 {
                        Ok(replies)
                    } else {
                        Err(io::Error::from_raw_os_error(-err))
                    };
                }
                if mseq == seq && Some(typ) == want {
                    replies.push(buf[off..off + len].to_vec());
                }
                off += (len + 3) & !3;
            }
        }
    }

    /// Create a bridge `name` (EEXIST when it is there).
    pub fn add_bridge(&mut self, name: &str) -> io::Result<()> {
        let mut m = Msg::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
        m.ifinfo(0, 0, 0).attr_str(IFLA_IFNAME, name);
        m.begin(IFLA_LINKINFO)
            .attr_str(IFLA_INFO_KIND, "bridge")
            .end();
        self.request(&mut m)
    }

    /// Create a veth pair: `host` here, up and enslaved to bridge `master`,
    /// and `peer` (down) created directly in the network namespace `netns` (an
    /// fd of `/proc/PID/ns/net`), so its name never clashes with a host link.
    /// One request: the kernel applies the `ifinfomsg` flags once the pair is
    /// made (`ip link add … up`).
    pub fn add_veth(
        &mut self,
        host: &str,
        master: u32,
        peer: &str,
        netns: BorrowedFd<'_>,
        mtu: u32,
        peer_mac: [u8; 6],
    ) -> io::Result<()> {
        let up = libc::IFF_UP as u32;
        let mut m = Msg::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
        m.ifinfo(0, up, up)
            .attr_str(IFLA_IFNAME, host)
            .attr(IFLA_MTU, &mtu.to_ne_bytes())
            .attr(IFLA_MASTER, &master.to_ne_bytes());
        m.begin(IFLA_LINKINFO).attr_str(IFLA_INFO_KIND, "veth");
        m.begin(IFLA_INFO_DATA).begin(VETH_INFO_PEER);
        // The peer cannot be created up: it is registered (and would be
        // opened) before the pair is joined, and veth_open says ENOTCONN.
        m.ifinfo(0, 0, 0)
            .attr_str(IFLA_IFNAME, peer)
            .attr(IFLA_MTU, &mtu.to_ne_bytes())
            .attr(IFLA_ADDRESS, &peer_mac)
            .attr(IFLA_NET_NS_FD, &netns.as_raw_fd().to_ne_bytes());
        m.end().end().end();
        self.request(&mut m)
    }

    /// Set link `index`'s hardware address. A bridge given one keeps it
    /// (`addr_assign_type` 3); otherwise the kernel gives it the lowest MAC of
    /// its ports, which changes as containers come and go.
    pub fn set_mac(&mut self, index: u32, mac: [u8; 6]) -> io::Result<()> {
        let mut m = Msg::new(RTM_NEWLINK, 0);
        m.ifinfo(index as i32, 0, 0).attr(IFLA_ADDRESS, &mac);
        self.request(&mut m)
    }

    /// Set link `index` up.
    pub fn set_up(&mut self, index: u32) -> io::Result<()> {
        let mut m = Msg::new(RTM_NEWLINK, 0);
        m.ifinfo(index as i32, libc::IFF_UP as u32, libc::IFF_UP as u32);
        self.request(&mut m)
    }

    /// The id, in this namespace, of the namespace where the other end of link
    /// `name` lives (`IFLA_LINK_NETNSID`): `None` when the link reports none
    /// (no other end, or one in this namespace). The kernel reports -1
    /// (`NETNSA_NSID_NOT_ASSIGNED`) when that namespace has no id here and can
    /// no longer be given one because it is being dismantled: no process, open
    /// descriptor or mount holds it any more, and its devices (the veth pair
    /// with them) are about to be unregistered by the kernel itself.
    pub fn link_netnsid(&mut self, name: &str) -> io::Result<Option<i32>> {
        let mut m = Msg::new(RTM_GETLINK, 0);
        m.ifinfo(0, 0, 0).attr_str(IFLA_IFNAME, name);
        let replies = self.transact(&mut m, Some(RTM_NEWLINK))?;
        Ok(replies
            .first()
            .and_then(|r| attr_i32(r, 16 + 16, IFLA_LINK_NETNSID)))
    }

    /// Delete the link named `name` (ENODEV when it is not there).
    pub fn del_link(&mut self, name: &str) -> io::Result<()> {
        let mut m = Msg::new(RTM_DELLINK, 0);
        m.ifinfo(0, 0, 0).attr_str(IFLA_IFNAME, name);
        self.request(&mut m)
    }

    /// Add `ip/prefix` to link `index` (EEXIST when it has it).
    pub fn add_addr(
        &mut self,
        index: u32,
        ip: Ipv4Addr,
        prefix: u8,
        brd: Option<Ipv4Addr>,
    ) -> io::Result<()> {
        let mut m = Msg::new(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL);
        let mut ifa = [0u8; 8];
        ifa[0] = libc::AF_INET as u8;
        ifa[1] = prefix;
        ifa[4..8].copy_from_slice(&index.to_ne_bytes());
        m.raw(&ifa)
            .attr(IFA_LOCAL, &ip.octets())
            .attr(IFA_ADDRESS, &ip.octets());
        if let Some(b) = brd {
            m.attr(IFA_BROADCAST, &b.octets());
        }
        self.request(&mut m)
    }
}

/// The value of the first 4-byte attribute `typ` in `msg`'s attributes, which
/// start at `from`.
fn attr_i32(msg: &[u8], from: usize, typ: u16) -> Option<i32> {
    let mut off = from;
    while off + 4 <= msg.len() {
        let len = u16::from_ne_bytes([msg[off], msg[off + 1]]) as usize;
        let t = u16::from_ne_bytes([msg[off + 2], msg[off + 3]]) & 0x3fff;
        if len < 4 || off + len > msg.len() {
            return None;
        }
        if t == typ && len >= 8 {
            return Some(i32::from_ne_bytes([
                msg[off + 4],
                msg[off + 5],
                msg[off + 6],
                msg[off + 7],
            ]));
        }
        off += (len + 3) & !3;
    }
    None
}

/// The index of link `name` in the current thread's network namespace.
pub fn index_of(name: &str) -> io::Result<u32> {
    let c = std::ffi::CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a link name"))?;
    // SAFETY: if_nametoindex reads a C string we own.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(i)
}

/// True when link `name` exists in the current thread's network namespace.
pub fn exists(name: &str) -> bool {
    index_of(name).is_ok()
}

/// Delete link `name` from a child process the caller does not wait for: the
/// deletion's RCU grace periods (10-40 ms) are then spent after the caller has
/// reported and gone, as when the kernel dismantles a namespace. Only from a
/// single-threaded process (false otherwise, or when fork fails: the caller
/// deletes the link itself). The child keeps nothing of the caller's: every
/// inherited descriptor is closed first (a lock held through a shared open
/// file stays the caller's alone, a pipe reader sees EOF when the caller
/// ends), and it is in a session of its own.
pub fn del_link_detached(name: &str) -> bool {
    let single = std::fs::read_dir("/proc/self/task").is_ok_and(|d| d.count() == 1);
    if !single {
        return false;
    }
    let name = name.to_string();
    // SAFETY: fork of a single-threaded process, so the child may allocate; it
    // leaves with _exit (no destructor or exit handler of the caller's runs).
    match unsafe { libc::fork() } {
        0 => {
            // SAFETY: plain system calls in the new child.
            unsafe {
                libc::setsid();
                libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32);
            }
            let ok = Netlink::open()
                .and_then(|mut nl| nl.del_link(&name))
                .is_ok();
            // SAFETY: ends the child at once.
            unsafe { libc::_exit(i32::from(!ok)) }
        }
        pid => pid > 0,
    }
}

/// Run `f` on a new thread that has joined the network namespace `netns`
/// (sockets it opens, `if_nametoindex` and programs it spawns all act there).
pub fn in_netns<T: Send>(
    netns: BorrowedFd<'_>,
    f: impl FnOnce() -> io::Result<T> + Send,
) -> io::Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns on this thread with a namespace fd we hold.
            if unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) } < 0 {
                return Err(io::Error::last_os_error());
            }
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("network setup thread panicked")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_aligned_and_nested_lengths_are_right() {
        let mut m = Msg::new(RTM_NEWLINK, NLM_F_CREATE);
        m.ifinfo(0, 0, 0).attr_str(IFLA_IFNAME, "abc");
        m.begin(IFLA_LINKINFO)
            .attr_str(IFLA_INFO_KIND, "veth")
            .end();
        let b = m.finish(7).to_vec();
        assert_eq!(b.len() % 4, 0);
        assert_eq!(
            u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize,
            b.len()
        );
        // ifname attr: 4 + "abc\0" = 8 bytes at offset 32.
        assert_eq!(u16::from_ne_bytes([b[32], b[33]]), 8);
        // linkinfo: header 4 + kind attr (4 + "veth\0" = 9, padded 12) = 16.
        assert_eq!(u16::from_ne_bytes([b[40], b[41]]), 13 + 3);
        assert_eq!(
            u16::from_ne_bytes([b[42], b[43]]),
            IFLA_LINKINFO | NLA_F_NESTED
        );
    }
}
