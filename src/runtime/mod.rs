//! The container runtime: runs one process described by an OCI runtime
//! `Spec` in a prepared rootfs, in new namespaces and a cgroup, and tears
//! everything down when it exits. It never sees images or layers.
//!
//! Lifecycle of [`run`]: create the cgroup (`cgroup`) → prepare the
//! [`plan::ChildPlan`] (resolve and create mount points in the rootfs) →
//! `clone3` with the namespace flags (and `CLONE_INTO_CGROUP` for a v2
//! cgroup) → the child (`init`) sets its parent-death signal and checks
//! builder is still alive, joins a v1 cgroup, mounts, `pivot_root`s,
//! allocates its pty when asked, drops privileges and `execve`s → the
//! parent reads the failure pipe (EOF = exec succeeded), receives the pty
//! master (`RunOptions::terminal`), forwards SIGINT/SIGTERM/SIGHUP/SIGQUIT,
//! waits through a pidfd → reads OOM kills → kills what is left in the
//! cgroup and removes it. PID 1 of the new PID
//! namespace is the command (or a tiny init), so when it exits the kernel
//! kills every other process of the container; the cgroup kill is the
//! second line.
//!
//! Terminal (`process.terminal`): the pty comes from the container's own
//! devpts instance, opened by the child after `pivot_root`, so `tty` in the
//! container names a `/dev/pts/N` it can see; the child sends the master
//! over a unix socket (`SCM_RIGHTS`) and closes its copy before exec.
//!
//! Why clone in-process and not a re-exec of our binary: builder may have
//! other threads (downloads, progress bars) when it runs a container. A
//! child of `fork`/`clone` in a threaded process may only do
//! async-signal-safe work, so the child here does exactly that: the parent
//! prepares every path, argument and environment string as a `CString`
//! before the clone, and the child (`init`) only issues raw system calls
//! (rustix `linux_raw`, never glibc's `setuid` and its thread broadcast),
//! reports failures as three integers and ends in `execve` or `_exit`. This
//! costs nothing beyond the syscalls themselves, whereas re-executing the
//! builder binary would add a second exec, dynamic loading and runtime
//! start-up, and a serialisation of the plan, to every `RUN` step.
//!
//! Exit status: a code passes through; death by signal N is 128 + N; a
//! command that is not found is an error with exit code 127, one that
//! cannot be executed 126 (the child reports the errno of `execve`).
//!
//! Terms: the *rootfs* is the directory that becomes `/`; *mount points
//! created* are files and dirs that did not exist in the rootfs and had to
//! be made for a mount (reported in [`Outcome::created`] so `build` can
//! keep them out of layers).

pub mod caps;
pub mod cgroup;
mod channel;
mod init;
pub mod plan;
pub mod spec;
pub mod user;

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use oci_spec::runtime::Spec;

use crate::sys;
use cgroup::{Cgroup, CgroupError, Limits};
use channel::{ChildFailure, MESSAGE_LEN, Stage};

/// How [`run`] is carried out beyond the spec.
#[derive(Debug)]
pub struct RunOptions {
    /// Container id; names the cgroup `builder/<id>`.
    pub id: String,
    /// The cgroup tree to use (default `/sys/fs/cgroup`).
    pub cgroup_root: PathBuf,
    /// Run a minimal init as PID 1 that forwards signals and reaps.
    pub init: bool,
    /// Forward SIGINT/SIGTERM/SIGHUP/SIGQUIT received by builder.
    pub forward_signals: bool,
    /// stdin, stdout, stderr of the command; `None` inherits ours.
    /// Ignored when the spec asks for a terminal.
    pub stdio: Option<[OwnedFd; 3]>,
    /// Where the pty master goes when the spec sets `process.terminal`:
    /// sent once the command has been executed, so the receiver can copy
    /// I/O while [`run`] waits.
    pub terminal: Option<std::sync::mpsc::Sender<OwnedFd>>,
}

impl RunOptions {
    pub fn new(id: impl Into<String>) -> RunOptions {
        RunOptions {
            id: id.into(),
            cgroup_root: PathBuf::from(cgroup::ROOT),
            init: false,
            forward_signals: true,
            stdio: None,
            terminal: None,
        }
    }
}

/// How the container's main process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Exited(i32),
    Signaled(i32),
}

impl ExitStatus {
    /// The shell convention: the code, or 128 + signal.
    pub fn code(self) -> i32 {
        match self {
            ExitStatus::Exited(c) => c,
            ExitStatus::Signaled(s) => 128 + s,
        }
    }
}

/// The result of a container run that got as far as executing its command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub status: ExitStatus,
    /// The kernel OOM killer killed a process of the container.
    pub oom_killed: bool,
    /// The memory limit in effect, for reporting an OOM kill.
    pub memory_limit: Option<i64>,
    /// Container paths created in the rootfs as mount points or as the
    /// working directory.
    pub created: Vec<PathBuf>,
}

/// Errors of the runtime. [`RuntimeError::exit_code`] maps them to the
/// status `builder run` exits with.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("invalid runtime spec: {reason}")]
    Spec { reason: String },
    #[error("prepare `{path}` in the rootfs")]
    Prepare {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error("start the container process")]
    Spawn {
        #[source]
        source: io::Error,
    },
    #[error("set up the container: {step}")]
    Setup {
        step: String,
        #[source]
        source: io::Error,
    },
    #[error("command `{command}` not found in the container (searched {searched})")]
    CommandNotFound { command: String, searched: String },
    #[error("command `{path}` cannot be executed in the container")]
    NotExecutable {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("wait for the container process")]
    Wait {
        #[source]
        source: io::Error,
    },
}

impl RuntimeError {
    /// 127 for a command not found, 126 for one that cannot run, 125 for
    /// failures of the runtime itself (Docker's convention).
    pub fn exit_code(&self) -> i32 {
        match self {
            RuntimeError::CommandNotFound { .. } => 127,
            RuntimeError::NotExecutable { .. } => 126,
            _ => 125,
        }
    }
}

/// Removes the cgroup on every path out of [`run`], panics included.
struct CgroupGuard(Option<Cgroup>);

impl CgroupGuard {
    fn get(&self) -> &Cgroup {
        self.0.as_ref().expect("cgroup present until removed")
    }

    fn remove(mut self) -> Result<(), CgroupError> {
        let cg = self.0.take().expect("cgroup present until removed");
        let _ = cg.kill_all();
        cg.remove(Duration::from_secs(5))
    }
}

impl Drop for CgroupGuard {
    fn drop(&mut self) {
        if let Some(cg) = self.0.take() {
            let _ = cg.kill_all();
            if let Err(e) = cg.remove(Duration::from_secs(5)) {
                tracing::warn!("{e}");
            }
        }
    }
}

/// Runs `spec`'s process in `rootfs` and waits for it.
pub fn run(spec: &Spec, rootfs: &Path, opts: &RunOptions) -> Result<Outcome, RuntimeError> {
    let mode = if opts.cgroup_root == Path::new(cgroup::ROOT) {
        cgroup::host_mode()?
    } else {
        cgroup::detect(&opts.cgroup_root)?
    };
    let limits = spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().as_ref())
        .map(Limits::from_resources)
        .unwrap_or_default();
    let cg = CgroupGuard(Some(Cgroup::create(
        &opts.cgroup_root,
        mode,
        &opts.id,
        &limits,
    )?));

    // A v2 cgroup is entered at birth (CLONE_INTO_CGROUP); v1 ones by the
    // child writing to `cgroup.procs` first thing.
    let cgroup_dir = match cg.get().v2_dir() {
        Some(dir) => Some(
            std::fs::File::open(dir)
                .map(OwnedFd::from)
                .map_err(|source| CgroupError::Write {
                    path: dir.to_owned(),
                    value: "CLONE_INTO_CGROUP".into(),
                    source,
                })?,
        ),
        None => None,
    };
    let mut procs = Vec::new();
    let v1_procs = if cgroup_dir.is_some() {
        Vec::new()
    } else {
        cg.get().procs_files()
    };
    for f in v1_procs {
        let fd = std::fs::OpenOptions::new()
            .write(true)
            .open(&f)
            .map_err(|source| CgroupError::Write {
                path: f.clone(),
                value: "0".into(),
                source,
            })?;
        procs.push(OwnedFd::from(fd));
    }
    let wants_terminal = spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false);
    let (terminal_parent, terminal_child) = if wants_terminal && opts.terminal.is_some() {
        let (a, b) = sys::tty::socket_pair().map_err(|source| RuntimeError::Spawn { source })?;
        (Some(a), Some(b))
    } else {
        (None, None)
    };
    let mut prepared = plan::prepare(plan::PlanInput {
        spec,
        rootfs,
        cgroup_procs: procs,
        terminal_socket: terminal_child,
        stdio: opts
            .stdio
            .as_ref()
            .map(|s| [0, 1, 2].map(|i| std::os::fd::AsRawFd::as_raw_fd(&s[i]))),
        init: opts.init,
    })?;
    let (report_r, report_w) =
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| {
            RuntimeError::Spawn {
                source: sys::error::error("pipe", "child report", e),
            }
        })?;
    prepared.plan.report = Some(report_w);
    let signals = if opts.forward_signals {
        Some(sys::signal::SignalPipe::open().map_err(|source| RuntimeError::Spawn { source })?)
    } else {
        None
    };

    let child = sys::process::clone_child(
        prepared.clone_flags,
        cgroup_dir.as_ref().map(|fd| fd.as_fd()),
        init::child_main,
        &prepared.plan,
    )
    .map_err(|source| RuntimeError::Spawn { source })?;
    // The child has its copies; ours would keep the pipe from reaching EOF.
    prepared.plan.report = None;
    prepared.plan.cgroup_procs.clear();
    prepared.plan.terminal = None;

    if let Some(failure) = read_failure(&report_r) {
        let _ = sys::process::wait_pidfd(child.pidfd.as_fd());
        return Err(describe(&prepared, spec, failure));
    }
    drop(report_r);
    if let (Some(socket), Some(sink)) = (&terminal_parent, &opts.terminal) {
        match sys::tty::recv_fd(socket) {
            Ok(Some(master)) => {
                let _ = sink.send(master);
            }
            Ok(None) => tracing::warn!("the container sent no pty"),
            Err(e) => tracing::warn!("receive the container's pty: {e}"),
        }
    }

    let status = wait(&child, signals.as_ref())?;
    let oom_killed = cg.get().oom_kills().unwrap_or(0) > 0;
    cg.remove()?;
    Ok(Outcome {
        status,
        oom_killed,
        memory_limit: limits.memory,
        created: prepared.created,
    })
}

/// Reads the child's failure message; `None` at EOF (exec succeeded).
fn read_failure(fd: &OwnedFd) -> Option<ChildFailure> {
    let mut buf = [0u8; MESSAGE_LEN];
    let mut got = 0;
    while got < MESSAGE_LEN {
        match rustix::io::read(fd, &mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => break,
        }
    }
    ChildFailure::decode(&buf[..got])
}

fn wait(
    child: &sys::process::Child,
    signals: Option<&sys::signal::SignalPipe>,
) -> Result<ExitStatus, RuntimeError> {
    use rustix::event::{PollFd, PollFlags, poll};
    if let Some(signals) = signals {
        let sigfd = signals.fd();
        loop {
            let mut fds = [
                PollFd::new(&child.pidfd, PollFlags::IN),
                PollFd::new(&sigfd, PollFlags::IN),
            ];
            match poll(&mut fds, None) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => {
                    return Err(RuntimeError::Wait {
                        source: sys::error::error("poll", "pidfd", e),
                    });
                }
            }
            let exited = !fds[0].revents().is_empty();
            for sig in signals.drain() {
                tracing::debug!("forwarding signal {sig} to the container");
                let _ = sys::process::pidfd_signal(child.pidfd.as_fd(), sig);
            }
            if exited {
                break;
            }
        }
    }
    match sys::process::wait_pidfd(child.pidfd.as_fd()) {
        Ok(sys::process::WaitStatus::Exited(c)) => Ok(ExitStatus::Exited(c)),
        Ok(sys::process::WaitStatus::Signaled(s)) => Ok(ExitStatus::Signaled(s)),
        Err(source) => Err(RuntimeError::Wait { source }),
    }
}

/// Turns the child's three integers into an error naming the failed step.
fn describe(prepared: &plan::Prepared, spec: &Spec, f: ChildFailure) -> RuntimeError {
    let errno = io::Error::from_raw_os_error(f.errno);
    let plan = &prepared.plan;
    let command = spec
        .process()
        .as_ref()
        .and_then(|p| p.args().as_ref())
        .and_then(|a| a.first().cloned())
        .unwrap_or_default();
    let path_at = |i: u32| {
        plan.exec_paths
            .get(i as usize)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|| command.clone())
    };
    let step = match f.stage {
        Stage::Exec if f.errno == libc::ENOENT => {
            let searched = if command.contains('/') {
                "the given path".to_owned()
            } else {
                let dirs: Vec<String> = plan
                    .exec_paths
                    .iter()
                    .map(|p| {
                        let s = p.to_string_lossy();
                        s.rsplit_once('/')
                            .map(|(d, _)| d.to_owned())
                            .unwrap_or_default()
                    })
                    .collect();
                format!("PATH={}", dirs.join(":"))
            };
            return RuntimeError::CommandNotFound { command, searched };
        }
        Stage::Exec => {
            return RuntimeError::NotExecutable {
                path: path_at(f.index),
                source: errno,
            };
        }
        Stage::Mount if f.index == u32::MAX => "make the mount tree private".to_owned(),
        Stage::Mount => prepared
            .step_names
            .get(f.index as usize)
            .cloned()
            .unwrap_or_else(|| format!("mount step {}", f.index)),
        Stage::JoinCgroup => "join the container's cgroup".into(),
        Stage::CgroupNamespace => "create the cgroup namespace".into(),
        Stage::Hostname => "set the hostname".into(),
        Stage::Loopback => "bring up the loopback interface".into(),
        Stage::PivotRoot => "pivot_root into the rootfs".into(),
        Stage::ReadOnlyRoot => "make the root filesystem read-only".into(),
        Stage::Chdir => format!(
            "change to the working directory `{}`",
            plan.cwd.to_string_lossy()
        ),
        Stage::Rlimit => format!("set resource limit #{}", f.index),
        Stage::Terminal => "make the pty the controlling terminal".into(),
        Stage::Capabilities => format!("set capabilities (capability {})", f.index),
        Stage::Groups => "set supplementary groups".into(),
        Stage::Gid => format!("set gid {}", plan.gid.as_raw()),
        Stage::Uid => format!("set uid {}", plan.uid.as_raw()),
        Stage::NoNewPrivs => "set no_new_privs".into(),
        Stage::ParentDeath => "set the parent-death signal".into(),
        Stage::CloseFds => "close inherited file descriptors".into(),
        Stage::Init => "start the init process".into(),
    };
    RuntimeError::Setup {
        step,
        source: errno,
    }
}
