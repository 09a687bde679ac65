//! Forwarding SIGINT/SIGTERM/SIGHUP/SIGQUIT from builder to a container.
//!
//! A process-wide handler writes the signal number to the pipe of every
//! active [`SignalPipe`] (a fixed table of slots, since a handler may
//! neither allocate nor lock). While no pipe is active the handler restores
//! the default action and re-raises, so builder behaves as if it had no
//! handler. Pipes are created once per slot and never closed, so a handler
//! racing with a release never writes to a recycled fd.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{BorrowedFd, RawFd};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use super::error::error;

/// Signals a running container receives from builder.
pub const FORWARDED: [i32; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

const SLOTS: usize = 16;

struct Slot {
    read: AtomicI32,
    write: AtomicI32,
    active: AtomicBool,
}

static TABLE: [Slot; SLOTS] = [const {
    Slot {
        read: AtomicI32::new(-1),
        write: AtomicI32::new(-1),
        active: AtomicBool::new(false),
    }
}; SLOTS];

/// Serialises slot claims and handler installation (never taken in the handler).
static CLAIM: Mutex<[bool; SLOTS]> = Mutex::new([false; SLOTS]);

extern "C" fn on_signal(sig: libc::c_int) {
    // SAFETY: only async-signal-safe calls (write, sigaction, raise) on
    // fds/values read from atomics; errno is saved and restored so the
    // interrupted code does not see it change.
    unsafe {
        let errno = *libc::__errno_location();
        let mut delivered = false;
        let byte = sig as u8;
        for slot in &TABLE {
            if slot.active.load(Ordering::Acquire) {
                let fd = slot.write.load(Ordering::Acquire);
                if fd >= 0 {
                    libc::write(fd, (&byte as *const u8).cast(), 1);
                    delivered = true;
                }
            }
        }
        if !delivered {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(sig, &sa, std::ptr::null_mut());
            libc::raise(sig);
        }
        *libc::__errno_location() = errno;
    }
}

/// Receives forwarded signal numbers while alive.
#[derive(Debug)]
pub struct SignalPipe {
    slot: usize,
}

impl SignalPipe {
    /// Installs the handler (once) and activates a slot.
    pub fn open() -> io::Result<SignalPipe> {
        let mut claimed = CLAIM.lock().unwrap_or_else(|p| p.into_inner());
        let slot = claimed
            .iter()
            .position(|c| !c)
            .ok_or_else(|| io::Error::other("too many concurrent containers forwarding signals"))?;
        let s = &TABLE[slot];
        if s.read.load(Ordering::Acquire) < 0 {
            let (r, w) = rustix::pipe::pipe_with(
                rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::NONBLOCK,
            )
            .map_err(|e| error("pipe", "signal forwarding", e))?;
            s.read
                .store(std::os::fd::IntoRawFd::into_raw_fd(r), Ordering::Release);
            s.write
                .store(std::os::fd::IntoRawFd::into_raw_fd(w), Ordering::Release);
        }
        claimed[slot] = true;
        let pipe = SignalPipe { slot };
        pipe.drain();
        s.active.store(true, Ordering::Release);
        // (Re)install every time: an idle signal resets the disposition to
        // the default (see `on_signal`).
        for sig in FORWARDED {
            // SAFETY: installs a handler that only does async-signal-safe
            // work (see `on_signal`), with SA_RESTART so interrupted
            // syscalls of other threads resume.
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
                sa.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut sa.sa_mask);
                libc::sigaction(sig, &sa, std::ptr::null_mut());
            }
        }
        Ok(pipe)
    }

    /// The readable end, for `poll`.
    pub fn fd(&self) -> BorrowedFd<'_> {
        let raw: RawFd = TABLE[self.slot].read.load(Ordering::Acquire);
        // SAFETY: slot pipes are never closed once created.
        unsafe { BorrowedFd::borrow_raw(raw) }
    }

    /// Signals received since the last call.
    pub fn drain(&self) -> Vec<i32> {
        let mut out = Vec::new();
        let mut buf = [0u8; 64];
        while let Ok(n) = rustix::io::read(self.fd(), &mut buf) {
            if n == 0 {
                break;
            }
            out.extend(buf[..n].iter().map(|&b| i32::from(b)));
        }
        out
    }
}

impl Drop for SignalPipe {
    fn drop(&mut self) {
        TABLE[self.slot].active.store(false, Ordering::Release);
        let mut claimed = CLAIM.lock().unwrap_or_else(|p| p.into_inner());
        claimed[self.slot] = false;
    }
}
