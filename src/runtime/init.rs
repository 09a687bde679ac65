//! Child side: runs in the freshly cloned process, inside the new
//! namespaces, and ends in `execve` of the container's command.
//!
//! Invariant: nothing here allocates, locks or formats. Every path and
//! string comes prepared in the [`ChildPlan`]; every call is one raw system
//! call (rustix's `linux_raw` backend, or the child-safe functions of
//! `sys::process`, `sys::net`); a failure is reported as a fixed-size
//! [`ChildFailure`] through the close-on-exec pipe and the process ends
//! with `_exit`. See the module doc of `runtime` for why.

use std::convert::Infallible;

use rustix::io::Errno;
use rustix::mount::{MountFlags, UnmountFlags};

use super::channel::{ChildFailure, Stage};
use super::plan::{ChildPlan, Step};
use crate::sys;

/// Entry point of the cloned child. Never returns.
pub fn child_main(plan: &ChildPlan) -> ! {
    let Err(failure) = setup_and_exec(plan);
    if let Some(fd) = &plan.report {
        let _ = rustix::io::write(fd, &failure.encode());
    }
    let code = match (failure.stage, failure.errno) {
        (Stage::Exec, libc::ENOENT) => 127,
        (Stage::Exec, _) => 126,
        _ => 125,
    };
    sys::process::exit_now(code)
}

fn fail(stage: Stage, index: u32, errno: Errno) -> ChildFailure {
    ChildFailure {
        stage,
        index,
        errno: errno.raw_os_error(),
    }
}

fn at(stage: Stage) -> impl Fn(Errno) -> ChildFailure {
    move |e| fail(stage, 0, e)
}

fn setup_and_exec(plan: &ChildPlan) -> Result<Infallible, ChildFailure> {
    // First of all: die with builder. If builder died before this line,
    // the signal will never come; its pidfd then reads as exited (getppid
    // cannot tell: the parent is outside our PID namespace, so it is 0).
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
        .map_err(at(Stage::ParentDeath))?;
    if let Some(parent) = &plan.parent {
        let mut fds = [rustix::event::PollFd::new(
            parent,
            rustix::event::PollFlags::IN,
        )];
        let zero = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        if rustix::event::poll(&mut fds, Some(&zero)).unwrap_or(0) > 0 {
            sys::process::exit_now(125);
        }
    }
    for fd in &plan.cgroup_procs {
        rustix::io::write(fd, b"0").map_err(at(Stage::JoinCgroup))?;
    }
    if plan.new_cgroupns {
        sys::process::unshare_cgroup().map_err(at(Stage::CgroupNamespace))?;
    }
    if let Some(name) = &plan.hostname {
        rustix::system::sethostname(name.to_bytes()).map_err(at(Stage::Hostname))?;
    }
    if plan.loopback {
        sys::net::loopback_up().map_err(at(Stage::Loopback))?;
    }
    rustix::process::umask(rustix::fs::Mode::empty());
    rustix::mount::mount_change(c"/", plan.root_propagation)
        .map_err(|e| fail(Stage::Mount, u32::MAX, e))?;
    for (i, step) in plan.steps.iter().enumerate() {
        run_step(step).map_err(|e| fail(Stage::Mount, i as u32, e))?;
    }

    // pivot_root(".", "."): the old root ends up stacked on the new one and
    // is detached right away, so no directory for it is needed in the
    // image (pivot_root(2), "NOTES").
    rustix::process::chdir(plan.rootfs.as_c_str()).map_err(at(Stage::PivotRoot))?;
    rustix::process::pivot_root(c".", c".").map_err(at(Stage::PivotRoot))?;
    rustix::mount::unmount(c".", UnmountFlags::DETACH).map_err(at(Stage::PivotRoot))?;
    rustix::process::chdir(c"/").map_err(at(Stage::PivotRoot))?;
    if plan.readonly_root {
        rustix::mount::mount_remount(c"/", MountFlags::BIND | MountFlags::RDONLY, c"")
            .map_err(at(Stage::ReadOnlyRoot))?;
    }
    rustix::process::chdir(plan.cwd.as_c_str()).map_err(at(Stage::Chdir))?;

    for (i, (res, limit)) in plan.rlimits.iter().enumerate() {
        rustix::process::setrlimit(*res, *limit).map_err(|e| fail(Stage::Rlimit, i as u32, e))?;
    }
    if let Some(fds) = plan.stdio {
        for (target, fd) in fds.into_iter().enumerate() {
            if fd != target as i32 {
                sys::process::dup2(fd, target as i32).map_err(at(Stage::Terminal))?;
            }
        }
    }
    if let Some(t) = &plan.terminal {
        terminal(t).map_err(at(Stage::Terminal))?;
    }
    // Credentials (runc's order): shrink the bounding set, keep permitted
    // caps across setuid, switch ids, then set the final sets.
    for &cap in &plan.caps.drop_bounding {
        match sys::process::capbset_drop(cap) {
            Ok(()) | Err(Errno::INVAL) => {} // a capability this kernel lacks
            Err(e) => return Err(fail(Stage::Capabilities, cap, e)),
        }
    }
    rustix::thread::set_keep_capabilities(true).map_err(at(Stage::Capabilities))?;
    rustix::thread::set_thread_groups(&plan.groups).map_err(at(Stage::Groups))?;
    rustix::thread::set_thread_res_gid(plan.gid, plan.gid, plan.gid).map_err(at(Stage::Gid))?;
    rustix::thread::set_thread_res_uid(plan.uid, plan.uid, plan.uid).map_err(at(Stage::Uid))?;
    rustix::thread::set_keep_capabilities(false).map_err(at(Stage::Capabilities))?;
    let sets = rustix::thread::CapabilitySets {
        effective: rustix::thread::CapabilitySet::from_bits_retain(plan.caps.effective),
        permitted: rustix::thread::CapabilitySet::from_bits_retain(plan.caps.permitted),
        inheritable: rustix::thread::CapabilitySet::from_bits_retain(plan.caps.inheritable),
    };
    rustix::thread::set_capabilities(None, sets).map_err(at(Stage::Capabilities))?;
    for &cap in &plan.caps.ambient {
        sys::process::ambient_raise(cap).map_err(|e| fail(Stage::Capabilities, cap, e))?;
    }
    if plan.no_new_privs {
        rustix::thread::set_no_new_privs(true).map_err(at(Stage::NoNewPrivs))?;
    }
    // Setting ids clears the parent-death signal; set it again.
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
        .map_err(at(Stage::ParentDeath))?;
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
    sys::process::cloexec_from(3).map_err(at(Stage::CloseFds))?;

    if plan.init {
        sys::process::block_all_signals();
        let pid = sys::process::fork_raw().map_err(at(Stage::Init))?;
        // Without a terminal the command leads its own process group, and
        // init signals the group (as `tini -g`): a Ctrl-C then reaches a
        // shell's foreground child as it would on a terminal (a build's RUN).
        // Not when stdin is builder's own terminal: a process group that is
        // not the terminal's foreground group would be stopped reading it.
        // Both sides call setpgid, so neither the exec nor a signal can come
        // first.
        let group = plan.terminal.is_none() && !sys::tty::stdin_is_terminal();
        if group {
            let _ = sys::process::new_process_group(if pid == 0 { 0 } else { pid });
        }
        if pid != 0 {
            run_init(plan, pid, group);
        }
    }
    sys::process::reset_signals();
    Err(exec(plan))
}

/// Allocates a pty from the container's devpts (`/dev/ptmx` is the
/// symlink to `pts/ptmx` made with `/dev`), makes its user side our
/// controlling terminal and stdio, and sends the master to the parent.
/// The master is closed here right after sending: the copy in flight keeps
/// it open, and the container never holds its own master.
fn terminal(t: &super::plan::TerminalPlan) -> Result<(), Errno> {
    use rustix::pty::OpenptFlags;
    let master = rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY)?;
    rustix::pty::unlockpt(&master)?;
    if t.rows > 0 && t.cols > 0 {
        rustix::termios::tcsetwinsize(
            &master,
            rustix::termios::Winsize {
                ws_row: t.rows,
                ws_col: t.cols,
                ws_xpixel: 0,
                ws_ypixel: 0,
            },
        )?;
    }
    let user_side =
        rustix::pty::ioctl_tiocgptpeer(&master, OpenptFlags::RDWR | OpenptFlags::NOCTTY)?;
    rustix::process::setsid()?;
    rustix::process::ioctl_tiocsctty(&user_side)?;
    let raw = std::os::fd::AsRawFd::as_raw_fd(&user_side);
    for target in 0..3 {
        sys::process::dup2(raw, target)?;
    }
    sys::tty::send_fd(&t.socket, &master)?;
    drop(master);
    if raw > 2 {
        drop(user_side);
    } else {
        // It already is one of our stdio descriptors.
        std::mem::forget(user_side);
    }
    Ok(())
}

/// `execvpe`'s search over the prepared candidates: ENOENT/ENOTDIR move
/// on, EACCES is remembered (126 if nothing else is found), anything else
/// is final.
fn exec(plan: &ChildPlan) -> ChildFailure {
    let mut denied = None;
    for (i, path) in plan.exec_paths.iter().enumerate() {
        let e = sys::process::execve(path, &plan.argv, &plan.envp);
        match e {
            Errno::NOENT | Errno::NOTDIR => {}
            Errno::ACCESS => denied = denied.or(Some(i as u32)),
            other => return fail(Stage::Exec, i as u32, other),
        }
    }
    match denied {
        Some(i) => fail(Stage::Exec, i, Errno::ACCESS),
        None => fail(Stage::Exec, 0, Errno::NOENT),
    }
}

/// A minimal init (`--init`): PID 1 forwards every signal to the command
/// (to its process group when `group`) and reaps orphans; it exits with the
/// command's status (128 + signal when killed), after which the kernel
/// kills the rest of the namespace.
fn run_init(plan: &ChildPlan, main: u32, group: bool) -> ! {
    // Our copy of the report pipe must go, or the parent would not see EOF
    // when the command's exec succeeds.
    if let Some(fd) = &plan.report {
        sys::process::close_raw(std::os::fd::AsRawFd::as_raw_fd(fd));
    }
    loop {
        let sig = sys::process::wait_any_signal();
        if sig == libc::SIGCHLD {
            while let Some((pid, code)) = sys::process::reap_any() {
                if pid == main {
                    sys::process::exit_now(code);
                }
            }
        } else if sig > 0 && group {
            sys::process::kill_group(main, sig);
        } else if sig > 0 {
            sys::process::kill(main, sig);
        }
    }
}

fn run_step(step: &Step) -> Result<(), Errno> {
    match step {
        Step::Mkdir { path } => {
            match rustix::fs::mkdir(path.as_c_str(), rustix::fs::Mode::from_raw_mode(0o755)) {
                Ok(()) | Err(Errno::EXIST) => Ok(()),
                Err(e) => Err(e),
            }
        }
        Step::Mount {
            source,
            target,
            fstype,
            flags,
            data,
        } => rustix::mount::mount(
            source.as_c_str(),
            target.as_c_str(),
            fstype.as_c_str(),
            *flags,
            data.as_deref(),
        ),
        Step::Remount { target, flags } => {
            rustix::mount::mount_remount(target.as_c_str(), MountFlags::BIND | *flags, c"")
        }
        Step::Propagation { target, flags } => {
            rustix::mount::mount_change(target.as_c_str(), *flags)
        }
        Step::Mknod { path, major, minor } => rustix::fs::mknodat(
            rustix::fs::CWD,
            path.as_c_str(),
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::from_raw_mode(0o666),
            rustix::fs::makedev(*major, *minor),
        ),
        Step::Symlink { target, link } => {
            rustix::fs::symlinkat(target.as_c_str(), rustix::fs::CWD, link.as_c_str())
        }
        Step::Mask { path, null } => match rustix::fs::stat(path.as_c_str()) {
            Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(e),
            Ok(st) if rustix::fs::FileType::from_raw_mode(st.st_mode).is_dir() => {
                // As runc: read-only is all it takes, the tmpfs is empty.
                rustix::mount::mount(
                    c"tmpfs",
                    path.as_c_str(),
                    c"tmpfs",
                    MountFlags::RDONLY,
                    None,
                )
            }
            Ok(_) => rustix::mount::mount_bind(null.as_c_str(), path.as_c_str()),
        },
        Step::ReadOnly { path } => {
            match rustix::mount::mount_bind_recursive(path.as_c_str(), path.as_c_str()) {
                Err(Errno::NOENT) => Ok(()),
                Err(e) => Err(e),
                Ok(()) => rustix::mount::mount_remount(
                    path.as_c_str(),
                    MountFlags::BIND
                        | MountFlags::RDONLY
                        | MountFlags::NOSUID
                        | MountFlags::NODEV
                        | MountFlags::NOEXEC,
                    c"",
                ),
            }
        }
    }
}
