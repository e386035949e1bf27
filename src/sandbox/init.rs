//! `--init`: a tiny PID 1 that reaps zombies and forwards signals to the command.
//!
//! The init lives as long as the container, so it must not be imgctl's binary:
//! a process of the container allowed to ptrace it (CAP_SYS_PTRACE) could open
//! `/proc/1/exe` and, once imgctl exits, write to imgctl on the host
//! (CVE-2019-5736). So the init re-executes itself from a sealed in-memory copy
//! of the binary made before the container starts ([`sealed_copy`]); its
//! `/proc/1/exe` is that copy, which nothing can write. The copy starts in
//! [`entry`], which `cli::main` calls first: argv[0] `imgctl-init` selects it.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::Error;

/// argv[0] of the re-executed init.
pub const ARGV0: &str = "imgctl-init";

/// A sealed memfd holding a copy of the running binary.
pub(crate) fn sealed_copy() -> Result<OwnedFd, Error> {
    sealed_copy_of(std::path::Path::new("/proc/self/exe"))
}

/// A sealed memfd holding a copy of the binary at `path`.
pub(crate) fn sealed_copy_of(path: &std::path::Path) -> Result<OwnedFd, Error> {
    let err = |step: &str, e: std::io::Error| Error::Setup {
        step: format!("--init: {step}"),
        source: e,
    };
    // SAFETY: memfd_create with a NUL-terminated name; the fd is ours.
    let raw = unsafe {
        libc::memfd_create(
            c"imgctl-init".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        )
    };
    if raw < 0 {
        return Err(err("memfd_create", std::io::Error::last_os_error()));
    }
    // SAFETY: memfd_create returned a new descriptor.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut src =
        std::fs::File::open(path).map_err(|e| err(&format!("open {}", path.display()), e))?;
    let mut dst = std::fs::File::from(fd);
    std::io::copy(&mut src, &mut dst).map_err(|e| err("copy the binary", e))?;
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: fcntl on our own descriptor.
    if unsafe { libc::fcntl(dst.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
        return Err(err("seal the copy", std::io::Error::last_os_error()));
    }
    Ok(OwnedFd::from(dst))
}

/// Replace this process (PID 1 of the container, all signals blocked) with the
/// sealed copy running [`entry`] for `child`; `ready_fd` is closed by the init once
/// it is non-dumpable. Returns only on failure.
pub(crate) fn exec_sealed(memfd: &OwnedFd, child: Pid, ready_fd: i32) -> std::io::Error {
    let argv = [
        CString::new(ARGV0).unwrap_or_default(),
        CString::new(child.as_raw().to_string()).unwrap_or_default(),
        CString::new(ready_fd.to_string()).unwrap_or_default(),
    ];
    let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    let envp: [*const libc::c_char; 1] = [std::ptr::null()];
    // SAFETY: execveat with AT_EMPTY_PATH on our memfd; argv/envp are NULL-terminated
    // arrays of valid C strings that outlive the call.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            memfd.as_raw_fd(),
            c"".as_ptr(),
            ptrs.as_ptr(),
            envp.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    std::io::Error::last_os_error()
}

/// The init loop: reap every child; when `child` ends, exit with its status
/// (128+signal when killed); forward every other signal to it. Expects all
/// signals blocked (they are inherited blocked across the exec).
pub fn reap_and_forward(child: Pid) -> ! {
    let all = SigSet::all();
    let _ =
        nix::sys::signal::sigprocmask(nix::sys::signal::SigmaskHow::SIG_BLOCK, Some(&all), None);
    loop {
        // Reap before waiting: the command may already be gone.
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, c)) if pid == child => std::process::exit(c),
                Ok(WaitStatus::Signaled(pid, s, _)) if pid == child => {
                    std::process::exit(128 + s as i32)
                }
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => {}
            }
        }
        let Ok(sig) = all.wait() else { continue };
        if sig != Signal::SIGCHLD {
            let _ = nix::sys::signal::kill(child, sig);
        }
    }
}

/// Called first by `cli::main`: when this process is the re-executed init, run it
/// and never return; otherwise return at once.
pub fn entry() {
    let mut args = std::env::args_os();
    if args.next().is_none_or(|a| a != ARGV0) {
        return;
    }
    // First of all: nothing in the container may ptrace or read this process.
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    let mut num = || {
        args.next()
            .and_then(|a| a.to_str().and_then(|s| s.parse::<i32>().ok()))
    };
    let (child, ready) = (num(), num());
    if let Some(fd) = ready.filter(|fd| *fd > 2) {
        // SAFETY: the descriptor was passed to us by number to be closed.
        unsafe { libc::close(fd) };
    }
    match child {
        Some(pid) if nix::unistd::getpid().as_raw() == 1 => reap_and_forward(Pid::from_raw(pid)),
        _ => {
            eprintln!(
                "imgctl-init: internal entry point of `imgctl run --init`, not for direct use"
            );
            std::process::exit(125)
        }
    }
}
