//! Process creation and control: a fork-like `clone3` with namespace flags,
//! `execve`, signal reset, fd closing, waiting through a pidfd.
//!
//! The child side of [`clone_child`] runs in a copy of a possibly
//! multi-threaded process. Only the calling thread exists there, so any lock
//! another thread held at the clone (malloc's, stdio's, our mutexes) stays
//! locked forever. The functions marked "child-safe" below neither allocate
//! nor lock: they are single raw system calls, as is everything in rustix's
//! `linux_raw` backend.

#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use rustix::io::Errno;

use super::error::error;

/// A child created by [`clone_child`]: its pid (in our namespace) and a
/// pidfd that stays valid after it exits until we reap it.
#[derive(Debug)]
pub struct Child {
    pub pid: u32,
    pub pidfd: OwnedFd,
}

#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// `clone3(flags | CLONE_PIDFD [| CLONE_INTO_CGROUP])` without a new stack:
/// like `fork`, the child continues on a copy of our address space, then
/// runs `child(arg)`, which must not return.
///
/// Contract for `child`: it may only do async-signal-safe work (child-safe
/// functions of this module, rustix calls with `&CStr` paths, writes to
/// pre-opened fds), and must end in `execve` or [`exit_now`]. Breaking it
/// can deadlock the child (a lock held by a thread that does not exist
/// there) but cannot touch the parent, whose memory the child only copied.
pub fn clone_child<T>(
    flags: u64,
    cgroup: Option<BorrowedFd<'_>>,
    child: fn(&T) -> !,
    arg: &T,
) -> io::Result<Child> {
    let mut pidfd: libc::c_int = -1;
    let mut args = CloneArgs {
        flags: flags | libc::CLONE_PIDFD as u64,
        pidfd: &mut pidfd as *mut libc::c_int as u64,
        exit_signal: libc::SIGCHLD as u64,
        ..Default::default()
    };
    if let Some(fd) = cgroup {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = fd.as_raw_fd() as u64;
    }
    // SAFETY: `args` is a valid `clone_args` (VER2 layout, 88 bytes) that
    // lives across the call; `pidfd` points to a live int. Without CLONE_VM
    // and with a zero stack the child gets a private copy of our memory and
    // returns here on the same (copied) stack, exactly like fork(2); the
    // child branch below never returns into Rust code that expects the
    // parent's state, it runs `child` and ends the process.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match rc {
        -1 => {
            let e = Errno::from_io_error(&io::Error::last_os_error()).unwrap_or(Errno::INVAL);
            Err(error("clone3", format_args!("flags {flags:#x}"), e))
        }
        0 => child(arg),
        pid => Ok(Child {
            pid: pid as u32,
            // SAFETY: the kernel stored a fresh pidfd that nothing else owns.
            pidfd: unsafe { OwnedFd::from_raw_fd(pidfd) },
        }),
    }
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// NUL-terminated pointer array over owned C strings, for `execve`.
#[derive(Debug)]
pub struct CStrArray {
    strings: Vec<CString>,
    ptrs: Vec<*const libc::c_char>,
}

// SAFETY: the raw pointers point into `strings`, owned by the same value and
// never mutated; moving the value between threads moves both together.
unsafe impl Send for CStrArray {}
// SAFETY: shared access only reads.
unsafe impl Sync for CStrArray {}

impl CStrArray {
    pub fn new(strings: Vec<CString>) -> CStrArray {
        let mut ptrs: Vec<*const libc::c_char> = strings.iter().map(|s| s.as_ptr()).collect();
        ptrs.push(std::ptr::null());
        CStrArray { strings, ptrs }
    }

    pub fn strings(&self) -> &[CString] {
        &self.strings
    }
}

/// `execve(path, argv, envp)`; returns only on failure. Child-safe.
pub fn execve(path: &CStr, argv: &CStrArray, envp: &CStrArray) -> Errno {
    // SAFETY: `path` is NUL-terminated; `argv.ptrs` and `envp.ptrs` are
    // NULL-terminated arrays of pointers into C strings owned by the arrays,
    // all alive for the duration of the call.
    unsafe { libc::execve(path.as_ptr(), argv.ptrs.as_ptr(), envp.ptrs.as_ptr()) };
    Errno::from_raw_os_error(last_errno())
}

fn last_errno() -> i32 {
    // SAFETY: `__errno_location` returns this thread's errno slot.
    unsafe { *libc::__errno_location() }
}

/// Restores default dispositions for every catchable signal and unblocks
/// all (Rust ignores SIGPIPE; exec keeps ignored signals ignored and the
/// mask as is). Child-safe.
pub fn reset_signals() {
    for sig in 1..=libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: installing SIG_DFL with an empty mask through a zeroed,
        // valid `sigaction`; invalid numbers (libc-reserved) just fail.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
    // SAFETY: a zeroed sigset is valid; emptying then setting the mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

/// Marks every fd from `first` up close-on-exec (`close_range` with
/// `CLOSE_RANGE_CLOEXEC`), so exec leaves only stdio. Child-safe.
pub fn cloexec_from(first: u32) -> Result<(), Errno> {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags on fds;
    // it closes nothing that Rust code still uses.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(Errno::from_raw_os_error(last_errno()))
    }
}

/// `_exit(code)`: ends the process without running destructors or atexit
/// handlers (which belong to the parent's copy). Child-safe.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` is async-signal-safe and never returns.
    unsafe { libc::_exit(code) }
}

/// `dup2(fd, target)` without CLOEXEC on the target. Child-safe.
pub fn dup2(fd: i32, target: i32) -> Result<(), Errno> {
    // SAFETY: plain fd-table operation on integers; ownership of `target`
    // passes to the exec'd program.
    if unsafe { libc::dup2(fd, target) } < 0 {
        Err(Errno::from_raw_os_error(last_errno()))
    } else {
        Ok(())
    }
}

/// `kill(pid, sig)`, ignoring a process that is already gone.
pub fn kill(pid: u32, sig: i32) {
    // SAFETY: sending a signal has no memory-safety preconditions.
    unsafe { libc::kill(pid as libc::pid_t, sig) };
}

/// Sends `sig` to every process of process group `pgid`. Child-safe.
pub fn kill_group(pgid: u32, sig: i32) {
    // SAFETY: sending a signal has no memory-safety preconditions.
    unsafe { libc::kill(-(pgid as libc::pid_t), sig) };
}

/// Makes `pid` (0: the caller) the leader of a new process group. Child-safe
/// (a raw system call).
pub fn new_process_group(pid: u32) -> Result<(), Errno> {
    let pid = rustix::process::Pid::from_raw(pid as i32);
    rustix::process::setpgid(pid, None)
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitStatus {
    Exited(i32),
    Signaled(i32),
}

/// Waits for the child behind `pidfd` to exit and reaps it.
pub fn wait_pidfd(pidfd: BorrowedFd<'_>) -> io::Result<WaitStatus> {
    loop {
        // SAFETY: `info` is a zeroed siginfo_t the kernel fills in; the fd
        // is a live pidfd borrowed for the call.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let rc = unsafe {
            libc::waitid(
                libc::P_PIDFD,
                pidfd.as_raw_fd() as libc::id_t,
                &mut info,
                libc::WEXITED,
            )
        };
        if rc == 0 {
            // SAFETY: after a successful WEXITED waitid the status fields
            // of the union are initialised.
            let status = unsafe { info.si_status() };
            return Ok(match info.si_code {
                libc::CLD_EXITED => WaitStatus::Exited(status),
                _ => WaitStatus::Signaled(status),
            });
        }
        let e = Errno::from_raw_os_error(last_errno());
        if e != Errno::INTR {
            return Err(error("waitid", "pidfd", e));
        }
    }
}

/// `pidfd_send_signal(pidfd, sig)`.
pub fn pidfd_signal(pidfd: BorrowedFd<'_>, sig: i32) -> io::Result<()> {
    // SAFETY: a null siginfo asks the kernel to fill it as kill(2) would.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(error(
            "pidfd_send_signal",
            sig,
            Errno::from_raw_os_error(last_errno()),
        ))
    }
}

/// `prctl(PR_CAPBSET_DROP, cap)`. Child-safe.
pub fn capbset_drop(cap: u32) -> Result<(), Errno> {
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(Errno::from_raw_os_error(last_errno()))
    }
}

/// `prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap)`. Child-safe.
pub fn ambient_raise(cap: u32) -> Result<(), Errno> {
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
            cap as libc::c_ulong,
            0,
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(Errno::from_raw_os_error(last_errno()))
    }
}

/// Blocks every signal in the calling thread. Child-safe.
pub fn block_all_signals() {
    // SAFETY: a filled sigset from sigfillset; no pointers kept.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Waits for any signal (all must be blocked) and returns its number.
/// Child-safe.
pub fn wait_any_signal() -> i32 {
    // SAFETY: a filled sigset; `sigwaitinfo` with a null info pointer.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        libc::sigwaitinfo(&set, std::ptr::null_mut())
    }
}

/// Plain `fork`-like clone (no namespaces), for the container's init.
/// Child-safe (raw syscall, no atfork handlers). Returns 0 in the child.
pub fn fork_raw() -> Result<u32, Errno> {
    // SAFETY: clone with only SIGCHLD and no stack behaves like fork; the
    // caller is the single-threaded container child.
    let rc = unsafe { libc::syscall(libc::SYS_clone, libc::SIGCHLD as libc::c_ulong, 0, 0, 0, 0) };
    if rc < 0 {
        Err(Errno::from_raw_os_error(last_errno()))
    } else {
        Ok(rc as u32)
    }
}

/// Reaps one exited child without blocking: `(pid, status)` where status is
/// the shell-style code (exit code, or 128 + signal). Child-safe.
pub fn reap_any() -> Option<(u32, i32)> {
    let mut status: libc::c_int = 0;
    // SAFETY: waitpid writes the status into a live int.
    let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
    if pid <= 0 {
        return None;
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    Some((pid as u32, code))
}

/// `close(fd)` on a raw fd that the caller owns and will not use again.
/// Child-safe.
pub fn close_raw(fd: i32) {
    // SAFETY: the caller gives up `fd`; closing an int has no memory effects.
    unsafe { libc::close(fd) };
}

/// `unshare(CLONE_NEWCGROUP)`. Child-safe.
pub fn unshare_cgroup() -> Result<(), Errno> {
    // SAFETY: only CLONE_NEWCGROUP; rustix's `unshare_unsafe` is unsafe
    // because of CLONE_FILES, which is not used.
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWCGROUP) }
}

/// Spawns `cmd` with `PR_SET_PDEATHSIG = SIGKILL`, so it dies with the
/// calling thread (for an OCI runtime run in the foreground: if builder is
/// killed, the runtime must not live on).
pub fn spawn_tied(mut cmd: std::process::Command) -> io::Result<std::process::Child> {
    use std::os::unix::process::CommandExt;
    let parent = rustix::process::getpid();
    // SAFETY: the closure runs in the forked child before exec and makes
    // two raw syscalls (prctl, getppid) through rustix, which allocate
    // nothing and take no locks: async-signal-safe, as `pre_exec` requires.
    unsafe {
        cmd.pre_exec(move || {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
            if rustix::process::getppid() != Some(parent) {
                return Err(io::Error::other("parent exited before exec"));
            }
            Ok(())
        });
    }
    cmd.spawn()
}
