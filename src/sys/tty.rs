//! Terminals: passing a pty master between processes, the host terminal's
//! raw mode and window size, and SIGWINCH notification.
//!
//! The container's pty is allocated by the container's first process in its
//! own devpts (see `runtime::init`), which sends the master end here over a
//! unix socket ([`send_fd`] / [`recv_fd`]). builder then copies bytes
//! between its own terminal and that master, with its terminal in raw mode
//! ([`RawMode`], restored on drop) and window-size changes forwarded
//! ([`WinchPipe`], [`copy_window_size`]).

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI32, Ordering};

use rustix::io::Errno;
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, SocketFlags, SocketType,
};

use super::error::error;

/// A connected pair of unix stream sockets, both close-on-exec.
pub fn socket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| error("socketpair", "terminal channel", e))
}

/// Sends `fd` with one byte of data over `socket` (`SCM_RIGHTS`).
/// Child-safe: the control buffer lives on the stack.
pub fn send_fd(socket: &OwnedFd, fd: &OwnedFd) -> Result<(), Errno> {
    let mut space = [std::mem::MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    let fds = [fd.as_fd()];
    if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(Errno::NOBUFS);
    }
    let data = [b't'];
    rustix::net::sendmsg(
        socket,
        &[io::IoSlice::new(&data)],
        &mut control,
        SendFlags::NOSIGNAL,
    )
    .map(|_| ())
}

/// Receives a descriptor sent by [`send_fd`]; `None` if none is waiting
/// (the socket is read without blocking: the sender wrote before exec).
pub fn recv_fd(socket: &OwnedFd) -> io::Result<Option<OwnedFd>> {
    let mut space = [std::mem::MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut data = [0u8; 1];
    match rustix::net::recvmsg(
        socket,
        &mut [io::IoSliceMut::new(&mut data)],
        &mut control,
        RecvFlags::DONTWAIT | RecvFlags::CMSG_CLOEXEC,
    ) {
        Ok(_) => {}
        Err(Errno::AGAIN) => return Ok(None),
        Err(e) => return Err(error("recvmsg", "terminal channel", e)),
    }
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(mut fds) = message
            && let Some(fd) = fds.next()
        {
            return Ok(Some(fd));
        }
    }
    Ok(None)
}

/// Whether `fd` is a terminal.
pub fn is_terminal(fd: BorrowedFd<'_>) -> bool {
    rustix::termios::isatty(fd)
}

/// Rows and columns of the terminal `fd`, if it is one.
/// Whether this process's stdin is a terminal. Child-safe: one ioctl, no
/// allocation or lock (unlike `std::io::stdin()`).
pub fn stdin_is_terminal() -> bool {
    // SAFETY: the borrow lives only for this one ioctl; if fd 0 is closed
    // the ioctl fails with EBADF, which reads as "not a terminal".
    let stdin = unsafe { BorrowedFd::borrow_raw(0) };
    rustix::termios::isatty(stdin)
}

pub fn window_size(fd: BorrowedFd<'_>) -> Option<(u16, u16)> {
    rustix::termios::tcgetwinsize(fd)
        .ok()
        .filter(|w| w.ws_row > 0 && w.ws_col > 0)
        .map(|w| (w.ws_row, w.ws_col))
}

/// Copies the window size of terminal `from` to terminal `to` (the pty
/// master: the kernel then sends SIGWINCH to the pty's foreground group).
pub fn copy_window_size(from: BorrowedFd<'_>, to: BorrowedFd<'_>) -> io::Result<()> {
    let size = rustix::termios::tcgetwinsize(from)
        .map_err(|e| error("ioctl(TIOCGWINSZ)", "terminal", e))?;
    rustix::termios::tcsetwinsize(to, size).map_err(|e| error("ioctl(TIOCSWINSZ)", "pty", e))
}

/// The terminal `fd` in raw mode until dropped, when its settings are
/// restored (also on unwind).
#[derive(Debug)]
pub struct RawMode {
    fd: OwnedFd,
    saved: rustix::termios::Termios,
}

impl RawMode {
    pub fn enable(fd: BorrowedFd<'_>) -> io::Result<RawMode> {
        let fd = fd
            .try_clone_to_owned()
            .map_err(|e| io::Error::new(e.kind(), format!("dup terminal: {e}")))?;
        let saved =
            rustix::termios::tcgetattr(&fd).map_err(|e| error("tcgetattr", "terminal", e))?;
        let mut raw = saved.clone();
        raw.make_raw();
        rustix::termios::tcsetattr(&fd, rustix::termios::OptionalActions::Now, &raw)
            .map_err(|e| error("tcsetattr", "terminal", e))?;
        Ok(RawMode { fd, saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = rustix::termios::tcsetattr(
            &self.fd,
            rustix::termios::OptionalActions::Now,
            &self.saved,
        );
    }
}

/// Write end of the SIGWINCH pipe, for the handler (-1 when none).
static WINCH_WRITE: AtomicI32 = AtomicI32::new(-1);
/// Read end, created once and never closed (so the handler never writes to
/// a recycled descriptor).
static WINCH_READ: Mutex<Option<OwnedFd>> = Mutex::new(None);

extern "C" fn on_winch(_sig: libc::c_int) {
    // SAFETY: only `write` (async-signal-safe) on an fd read from an
    // atomic; errno is saved and restored around it.
    unsafe {
        let errno = *libc::__errno_location();
        let fd = WINCH_WRITE.load(Ordering::Acquire);
        if fd >= 0 {
            let byte = 1u8;
            libc::write(fd, (&byte as *const u8).cast(), 1);
        }
        *libc::__errno_location() = errno;
    }
}

/// Readable (one byte per signal) whenever builder receives SIGWINCH.
#[derive(Debug)]
pub struct WinchPipe {
    read: RawFd,
}

impl WinchPipe {
    /// Installs the handler (once per process) and returns the pipe.
    pub fn open() -> io::Result<WinchPipe> {
        let mut slot = WINCH_READ.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            let (r, w) = rustix::pipe::pipe_with(
                rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::NONBLOCK,
            )
            .map_err(|e| error("pipe", "SIGWINCH", e))?;
            WINCH_WRITE.store(std::os::fd::IntoRawFd::into_raw_fd(w), Ordering::Release);
            // SAFETY: installs a handler that only writes one byte to a
            // pipe (see `on_winch`), with SA_RESTART so other threads'
            // interrupted syscalls resume.
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = on_winch as extern "C" fn(libc::c_int) as usize;
                sa.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut sa.sa_mask);
                libc::sigaction(libc::SIGWINCH, &sa, std::ptr::null_mut());
            }
            *slot = Some(r);
        }
        let read = std::os::fd::AsRawFd::as_raw_fd(slot.as_ref().expect("set above"));
        Ok(WinchPipe { read })
    }

    /// The readable end, for `poll`.
    pub fn fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the read end is never closed once created.
        unsafe { BorrowedFd::borrow_raw(self.read) }
    }

    /// Consumes pending notifications; true if there was at least one.
    pub fn drain(&self) -> bool {
        let mut buf = [0u8; 64];
        let mut any = false;
        while let Ok(n) = rustix::io::read(self.fd(), &mut buf) {
            if n == 0 {
                break;
            }
            any = true;
        }
        any
    }
}
