//! Network interface flags: bringing `lo` up in a fresh network namespace.

#![allow(unsafe_code)]

use rustix::io::Errno;

/// Sets `IFF_UP` on the loopback interface with `SIOCGIFFLAGS`/`SIOCSIFFLAGS`
/// on a throwaway datagram socket. Child-safe: no allocation, three
/// syscalls and a close.
pub fn loopback_up() -> Result<(), Errno> {
    // SAFETY: `ifreq` is zero-initialised plain data; its name is set to
    // "lo" (NUL-terminated by the zeroing); the ioctls read/write only that
    // struct, and the socket fd is closed on every path.
    unsafe {
        let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if sock < 0 {
            return Err(Errno::from_raw_os_error(*libc::__errno_location()));
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        req.ifr_name[0] = b'l' as libc::c_char;
        req.ifr_name[1] = b'o' as libc::c_char;
        let mut rc = libc::ioctl(sock, libc::SIOCGIFFLAGS as libc::Ioctl, &mut req);
        if rc == 0 {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            rc = libc::ioctl(sock, libc::SIOCSIFFLAGS as libc::Ioctl, &req);
        }
        let errno = *libc::__errno_location();
        libc::close(sock);
        if rc == 0 {
            Ok(())
        } else {
            Err(Errno::from_raw_os_error(errno))
        }
    }
}
