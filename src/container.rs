//! Containers: an image's layers → a writable overlay rootfs in the store →
//! one process run by the runtime → teardown. The one code path shared by
//! `builder run` and every RUN step of a build, so the two cannot drift.
//!
//! Lifecycle of a [`Container`]:
//! 1. [`Container::create`]: a fresh ID, `containers/<id>/` created and
//!    locked by this process (`Store::create_container`), the record
//!    written, the image's unpacked layers checked, the overlay mounted at
//!    `merged/` (layers as lowers, topmost first; `upper/` and `work/` in
//!    the container's directory), the user resolved against the image's own
//!    `/etc/passwd` and `/etc/group`, `/etc/hostname`, `/etc/hosts` and
//!    `/etc/resolv.conf` written beside it (bind-mounted, never written into
//!    the image), and the OCI runtime spec written as `config.json`, so the
//!    directory is an OCI bundle;
//! 2. [`Container::start`]: the process runs to its end, by builder's own
//!    runtime (`runtime::run`) or by an OCI runtime such as runc handed the
//!    same bundle; the record says `running`, then `exited` (or `failed`);
//! 3. [`Container::unmount`] (a build diffs `upper/` after it), then
//!    [`Container::remove`] or [`Container::keep`]; dropping a container
//!    does the same on every other path (errors, panics): the rootfs is
//!    unmounted and an `auto_remove` container's directory deleted.
//!
//! Teardown after a builder that died (`kill -9`): the container's lock is
//! then free. Its process died with builder (the runtime sets the
//! parent-death signal; PID 1 dying ends the PID namespace), but the
//! overlay mount, the cgroup and the directory remain. [`reap`] (run by the
//! next builder command) unmounts and removes the cgroup, and deletes the
//! directory of an `--rm` container or marks the others `killed`;
//! [`remove_dead`] (prune) deletes them all. A cgroup whose store is gone
//! (so no record leads to it) is removed by any builder once it is empty
//! and a minute old.
//!
//! Terms: a container's *ID* is 64 hex digits (the first 12 are the short
//! ID and the default hostname); its *name* is unique in the store.

use std::ffi::OsString;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use oci_spec::runtime::Spec;

use crate::mount::{self, MountError, MountFlags, MountGuard, Overlay};
use crate::oci::{DiffId, Digest};
use crate::rootfs;
use crate::runtime::cgroup::{self, CgroupError, Limits};
use crate::runtime::spec::{Bind, ContainerConfig, docker_spec};
use crate::runtime::user::UserError;
use crate::runtime::{self, ExitStatus, RunOptions, RuntimeError};
use crate::store::{ContainerLock, ContainerRecord, ContainerState, Store, StoreError};
use crate::sys;

pub use crate::runtime::Outcome;

/// Age after which an empty container cgroup that no store knows about is
/// removed by any builder command (see `cgroup::remove_abandoned`).
const ABANDONED_AFTER: Duration = Duration::from_secs(60);

/// How long teardown waits for a dying container's cgroup to empty.
const CGROUP_TIMEOUT: Duration = Duration::from_secs(10);

/// What the rootfs is made of.
#[derive(Debug, Clone, Default)]
pub struct RootfsSource {
    /// The image as named by the user (or a build stage's name), for records.
    pub name: String,
    /// The image ID (config digest), when there is an image.
    pub id: Option<Digest>,
    /// Unpacked layers in the store, bottom first.
    pub layers: Vec<DiffId>,
}

/// The network a container gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Network {
    /// A new network namespace with only `lo`, up.
    #[default]
    None,
    /// The host's network namespace.
    Host,
}

/// Who runs the process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Runtime {
    /// builder's own runtime (`runtime::run`).
    #[default]
    Builtin,
    /// An OCI runtime binary (runc, crun…) given the container's directory
    /// as its bundle: `RUNTIME --root DIR/runtime run --bundle DIR ID`.
    Oci(PathBuf),
}

/// Everything that makes one container.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// Unique name; default: the short ID.
    pub name: Option<String>,
    pub rootfs: RootfsSource,
    /// The full argv (entrypoint and command already combined).
    pub args: Vec<String>,
    /// `KEY=VALUE` entries. `PATH`, `HOME` and `HOSTNAME` are added when
    /// absent (and `TERM` with a terminal), as Docker does.
    pub env: Vec<String>,
    /// Absolute working directory, created if missing; empty = `/`.
    pub workdir: String,
    /// `user[:group]` by name or number, resolved in the image; empty = root.
    pub user: String,
    /// Default: the short ID.
    pub hostname: Option<String>,
    pub network: Network,
    pub limits: Limits,
    /// Capability names; `None` = Docker's default set.
    pub capabilities: Option<Vec<String>>,
    pub no_new_privileges: bool,
    pub read_only: bool,
    /// A tiny init as PID 1 that forwards signals and reaps.
    pub init: bool,
    pub volumes: Vec<Bind>,
    pub tmpfs: Vec<PathBuf>,
    /// Allocate a pty of this size (rows, columns; 0 = unknown).
    pub terminal: Option<(u16, u16)>,
    /// Remove the container's directory when it ends (`--rm`).
    pub auto_remove: bool,
    pub runtime: Runtime,
}

/// Where the process's stdin, stdout and stderr go.
#[derive(Debug)]
pub enum Stdio {
    /// builder's own.
    Inherit,
    /// These three descriptors.
    Fds([OwnedFd; 3]),
    /// The pty (`Config::terminal` must be set): its master is sent here
    /// once the command runs, for the caller to copy I/O while
    /// [`Container::start`] waits. An OCI runtime manages the pty itself
    /// (use [`Stdio::Inherit`] with it).
    Terminal(std::sync::mpsc::Sender<OwnedFd>),
}

/// Errors of the container module. [`ContainerError::exit_code`] gives
/// `builder run`'s exit status for each.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("image `{image}`: layer {layer} is not unpacked in the store; pull the image again")]
    LayerMissing { image: String, layer: DiffId },
    #[error("mount the rootfs of container {id}")]
    Mount {
        id: String,
        #[source]
        source: MountError,
    },
    #[error("resolve user `{user}` in image `{image}`")]
    User {
        user: String,
        image: String,
        #[source]
        source: UserError,
    },
    #[error("invalid container configuration: {0}")]
    Invalid(String),
    #[error("write `{path}`")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("run the OCI runtime `{runtime}`")]
    OciRuntime {
        runtime: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error("no container `{0}` (see `builder ps -a`)")]
    NotFound(String),
    #[error("`{input}` matches {count} containers; give more of the ID or the name")]
    Ambiguous { input: String, count: usize },
    #[error(
        "container `{name}` is running (held by another builder process); stop it first, or use `builder rm -f`"
    )]
    Running { name: String },
    #[error("container `{name}` is still running {waited_s} s after SIGKILL")]
    WontDie { name: String, waited_s: u64 },
}

impl ContainerError {
    /// 127 (command not found) and 126 (not executable) from the runtime,
    /// 125 for every failure of builder itself (Docker's convention).
    pub fn exit_code(&self) -> i32 {
        match self {
            ContainerError::Runtime(e) => e.exit_code(),
            _ => 125,
        }
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A fresh container ID: 32 random bytes in hex.
fn new_id() -> String {
    let mut bytes = [0u8; 32];
    let mut filled = 0;
    while filled < bytes.len() {
        match rustix::rand::getrandom(&mut bytes[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => {}
            // getrandom(2) cannot fail on Linux ≥ 3.17 once the pool is
            // ready; fall back to time and pid rather than panic.
            Err(_) => {
                let t = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_nanos();
                let seed = t ^ ((std::process::id() as u128) << 64);
                bytes[..16].copy_from_slice(&seed.to_le_bytes());
                break;
            }
        }
    }
    hex::encode(bytes)
}

/// `KEY` of a `KEY=VALUE` entry.
fn env_key(entry: &str) -> &str {
    entry.split_once('=').map(|(k, _)| k).unwrap_or(entry)
}

/// Overrides `base` with `extra` by key (keeping the position of replaced
/// entries), as Docker merges `-e` into an image's `Env`.
pub fn merge_env(base: &[String], extra: &[String]) -> Vec<String> {
    let mut out: Vec<String> = base.to_vec();
    for e in extra {
        match out.iter_mut().find(|o| env_key(o) == env_key(e)) {
            Some(slot) => *slot = e.clone(),
            None => out.push(e.clone()),
        }
    }
    out
}

/// What `docker run` takes from its command line to override an image's
/// config.
#[derive(Debug, Clone, Default)]
pub struct ProcessOverrides {
    /// `--entrypoint`: replaces the image's entrypoint and drops its `Cmd`;
    /// `Some("")` clears the entrypoint.
    pub entrypoint: Option<String>,
    /// `COMMAND ARG…` after the image: replaces the image's `Cmd`.
    pub command: Vec<String>,
    /// `-e` / `--env-file` entries, `KEY=VALUE`.
    pub env: Vec<String>,
    /// `-w`.
    pub workdir: Option<String>,
    /// `-u`.
    pub user: Option<String>,
}

/// The process an image runs with Docker's rules applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessConfig {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub workdir: String,
    pub user: String,
}

/// Docker's rules: argv = entrypoint + cmd, where `--entrypoint` replaces
/// the image's entrypoint and resets its `Cmd`, and a command given on the
/// command line replaces `Cmd`; env = the image's with overrides by key;
/// workdir and user from the overrides, else the image.
pub fn docker_process(
    image: Option<&crate::oci::image::ContainerConfig>,
    o: &ProcessOverrides,
) -> Result<ProcessConfig, ContainerError> {
    let (entrypoint, image_cmd) = match &o.entrypoint {
        Some(e) if e.is_empty() => (Vec::new(), Vec::new()),
        Some(e) => (vec![e.clone()], Vec::new()),
        None => (
            image.and_then(|c| c.entrypoint.clone()).unwrap_or_default(),
            image.and_then(|c| c.cmd.clone()).unwrap_or_default(),
        ),
    };
    let cmd = if o.command.is_empty() {
        image_cmd
    } else {
        o.command.clone()
    };
    let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if args.is_empty() {
        return Err(ContainerError::Invalid(
            "no command: the image has neither an entrypoint nor a command; give one after the image"
                .into(),
        ));
    }
    let image_env = image.and_then(|c| c.env.clone()).unwrap_or_default();
    let workdir = match &o.workdir {
        Some(w) if !w.starts_with('/') => {
            return Err(ContainerError::Invalid(format!(
                "the working directory `{w}` is not an absolute path"
            )));
        }
        Some(w) => w.clone(),
        None => match image.and_then(|c| c.working_dir.clone()) {
            Some(w) if !w.is_empty() && !w.starts_with('/') => format!("/{w}"),
            Some(w) => w,
            None => String::new(),
        },
    };
    Ok(ProcessConfig {
        args,
        env: merge_env(&image_env, &o.env),
        workdir,
        user: o
            .user
            .clone()
            .or_else(|| image.and_then(|c| c.user.clone()))
            .unwrap_or_default(),
    })
}

/// One container of the store, held (locked) by this process.
pub struct Container<'s> {
    store: &'s Store,
    held: Option<ContainerLock>,
    record: ContainerRecord,
    mount: Option<MountGuard>,
    spec: Spec,
    runtime: Runtime,
    init: bool,
}

impl std::fmt::Debug for Container<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Container")
            .field("id", &self.record.id)
            .field("name", &self.record.name)
            .finish()
    }
}

impl<'s> Container<'s> {
    /// Creates the container: directory, record, mounted rootfs, resolved
    /// user, `/etc` files and the runtime spec (see the module doc).
    pub fn create(store: &'s Store, config: &Config) -> Result<Container<'s>, ContainerError> {
        if config.args.is_empty() {
            return Err(ContainerError::Invalid("no command to run".into()));
        }
        if !config.workdir.is_empty() && !config.workdir.starts_with('/') {
            return Err(ContainerError::Invalid(format!(
                "the working directory `{}` is not an absolute path",
                config.workdir
            )));
        }
        for v in &config.volumes {
            if !v.destination.is_absolute() {
                return Err(ContainerError::Invalid(format!(
                    "volume destination `{}` is not an absolute path",
                    v.destination.display()
                )));
            }
        }
        if let Some(missing) = config.rootfs.layers.iter().find(|id| !store.has_layer(id)) {
            return Err(ContainerError::LayerMissing {
                image: config.rootfs.name.clone(),
                layer: missing.clone(),
            });
        }
        let id = new_id();
        let short = id[..12].to_owned();
        let record = ContainerRecord {
            id: id.clone(),
            name: config.name.clone().unwrap_or_else(|| short.clone()),
            image: config.rootfs.name.clone(),
            image_id: config.rootfs.id.clone(),
            layers: config.rootfs.layers.clone(),
            command: config.args.clone(),
            created: now(),
            auto_remove: config.auto_remove,
            runtime: match &config.runtime {
                Runtime::Builtin => None,
                Runtime::Oci(p) => Some(p.to_string_lossy().into_owned()),
            },
            state: ContainerState::Created,
        };
        let held = store.create_container(&record)?;
        let mut container = Container {
            store,
            held: Some(held),
            record,
            mount: None,
            spec: Spec::default(),
            runtime: config.runtime.clone(),
            init: config.init,
        };
        // From here on, dropping `container` tears down what was made.
        if let Err(e) = container.prepare(config, &short) {
            container.set_state(e.failed_state());
            return Err(e);
        }
        Ok(container)
    }

    fn held(&self) -> &ContainerLock {
        self.held.as_ref().expect("held until removed or kept")
    }

    fn prepare(&mut self, config: &Config, short: &str) -> Result<(), ContainerError> {
        let held = self.held();
        let merged = held.merged();
        let overlay = Overlay {
            lowers: rootfs::lower_dirs(self.store, &config.rootfs.layers),
            upper: Some(held.upper()),
            work: Some(held.work()),
        };
        let guard = overlay
            .mount(&merged, MountFlags::default())
            .map_err(|source| ContainerError::Mount {
                id: self.record.id.clone(),
                source,
            })?;
        self.mount = Some(guard);
        let held = self.held();

        let user = runtime::user::resolve(&merged, &config.user).map_err(|source| {
            ContainerError::User {
                user: config.user.clone(),
                image: config.rootfs.name.clone(),
                source,
            }
        })?;
        let hostname = config.hostname.clone().unwrap_or_else(|| short.to_owned());

        let mut env = Vec::with_capacity(config.env.len() + 4);
        if !config.env.iter().any(|e| env_key(e) == "PATH") {
            env.push(format!("PATH={}", runtime::plan::DEFAULT_PATH));
        }
        env.push(format!("HOSTNAME={hostname}"));
        env = merge_env(&env, &config.env);
        if config.terminal.is_some() && !env.iter().any(|e| env_key(e) == "TERM") {
            env.push("TERM=xterm".into());
        }
        if !env.iter().any(|e| env_key(e) == "HOME") {
            env.push(format!("HOME={}", user.home));
        }

        let write = |name: &str, bytes: &[u8]| -> Result<Bind, ContainerError> {
            let path = held.dir().join(name);
            std::fs::write(&path, bytes).map_err(|source| ContainerError::Write {
                path: path.clone(),
                source,
            })?;
            Ok(Bind {
                source: path,
                destination: Path::new("/etc").join(name),
                read_only: false,
            })
        };
        let hosts = match config.network {
            Network::Host => std::fs::read("/etc/hosts").unwrap_or_default(),
            Network::None => {
                b"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n".to_vec()
            }
        };
        let etc_files = vec![
            write("hostname", format!("{hostname}\n").as_bytes())?,
            write("hosts", &hosts)?,
            write(
                "resolv.conf",
                &std::fs::read("/etc/resolv.conf").unwrap_or_default(),
            )?,
        ];

        let c = ContainerConfig {
            args: config.args.clone(),
            env,
            cwd: if config.workdir.is_empty() {
                "/".into()
            } else {
                config.workdir.clone()
            },
            uid: user.uid,
            gid: user.gid,
            additional_gids: user.additional_gids,
            hostname,
            capabilities: config.capabilities.clone(),
            no_new_privileges: config.no_new_privileges,
            host_network: config.network == Network::Host,
            read_only_root: config.read_only,
            limits: config.limits,
            etc_files,
            binds: config.volumes.clone(),
            tmpfs: config.tmpfs.clone(),
            terminal: config.terminal.is_some(),
            console_size: config.terminal.filter(|(r, c)| *r > 0 && *c > 0),
            cgroups_path: Some(format!("/{}/{}", cgroup::PARENT, self.record.id)),
        };
        let spec = docker_spec(&c, &merged);
        let path = held.dir().join("config.json");
        let bytes = serde_json::to_vec_pretty(&spec).expect("a spec serialises");
        std::fs::write(&path, bytes).map_err(|source| ContainerError::Write { path, source })?;
        self.spec = spec;
        Ok(())
    }

    pub fn id(&self) -> &str {
        &self.record.id
    }

    pub fn name(&self) -> &str {
        &self.record.name
    }

    pub fn record(&self) -> &ContainerRecord {
        &self.record
    }

    /// The OCI runtime spec the process runs with.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// The container's directory (an OCI bundle).
    pub fn dir(&self) -> &Path {
        self.held().dir()
    }

    /// The overlay upperdir: what the container wrote.
    pub fn upper_dir(&self) -> PathBuf {
        self.held().upper()
    }

    /// The rootfs mountpoint.
    pub fn rootfs(&self) -> PathBuf {
        self.held().merged()
    }

    fn set_state(&mut self, state: ContainerState) {
        self.record.state = state;
        if let Some(held) = &self.held
            && let Err(e) = self.store.update_container(held, &self.record)
        {
            tracing::warn!("record state of container {}: {e}", self.record.id);
        }
    }

    /// Runs the container's process to its end. The record tells how it
    /// ended; an OOM kill shows in the outcome.
    pub fn start(&mut self, stdio: Stdio) -> Result<Outcome, ContainerError> {
        self.set_state(ContainerState::Running { started: now() });
        let result = match &self.runtime {
            Runtime::Builtin => self.run_builtin(stdio),
            Runtime::Oci(path) => {
                let path = path.clone();
                self.run_oci(&path, stdio)
            }
        };
        let state = match &result {
            Ok(o) => ContainerState::Exited {
                code: o.status.code(),
                finished: now(),
                oom_killed: o.oom_killed,
            },
            Err(e) => ContainerError::failed_state(e),
        };
        self.set_state(state);
        result
    }

    fn run_builtin(&self, stdio: Stdio) -> Result<Outcome, ContainerError> {
        let mut opts = RunOptions::new(self.record.id.clone());
        opts.init = self.init;
        match stdio {
            Stdio::Inherit => {}
            Stdio::Fds(fds) => opts.stdio = Some(fds),
            Stdio::Terminal(sink) => opts.terminal = Some(sink),
        }
        Ok(runtime::run(&self.spec, &self.rootfs(), &opts)?)
    }

    /// `RUNTIME --root DIR/runtime run --bundle DIR ID`, in the foreground,
    /// with SIGINT/SIGTERM/SIGHUP/SIGQUIT forwarded to it (runc passes them
    /// on to the container).
    fn run_oci(&self, runtime_path: &Path, stdio: Stdio) -> Result<Outcome, ContainerError> {
        let err = |source| ContainerError::OciRuntime {
            runtime: runtime_path.to_owned(),
            source,
        };
        let dir = self.dir().to_owned();
        let mut cmd = std::process::Command::new(runtime_path);
        cmd.arg("--root")
            .arg(dir.join("runtime"))
            .arg("run")
            .arg("--bundle")
            .arg(&dir)
            .arg(&self.record.id);
        match stdio {
            Stdio::Inherit => {}
            Stdio::Fds([i, o, e]) => {
                cmd.stdin(i).stdout(o).stderr(e);
            }
            Stdio::Terminal(_) => {
                return Err(ContainerError::Invalid(
                    "an OCI runtime allocates the terminal itself; pass builder's own stdio".into(),
                ));
            }
        }
        let signals = sys::signal::SignalPipe::open().map_err(err)?;
        // Keeps the shared cgroup parents from being removed while runc
        // creates this container's cgroup below them.
        let parents = cgroup::hold_parents();
        let mut child = sys::process::spawn_tied(cmd).map_err(err)?;
        let status = loop {
            use rustix::event::{PollFd, PollFlags, Timespec, poll};
            let sigfd = signals.fd();
            let mut fds = [PollFd::new(&sigfd, PollFlags::IN)];
            let timeout = Timespec {
                tv_sec: 0,
                tv_nsec: 20_000_000,
            };
            let _ = poll(&mut fds, Some(&timeout));
            for sig in signals.drain() {
                sys::process::kill(child.id(), sig);
            }
            if let Some(status) = child.try_wait().map_err(err)? {
                break status;
            }
        };
        drop(signals);
        drop(parents);
        // runc removes its cgroups but not the shared `builder/` parents.
        if let Ok(mode) = cgroup::host_mode() {
            let _ = cgroup::remove_everywhere(
                Path::new(cgroup::ROOT),
                mode,
                &self.record.id,
                CGROUP_TIMEOUT,
            );
        }
        use std::os::unix::process::ExitStatusExt;
        let status = match (status.code(), status.signal()) {
            (Some(c), _) => ExitStatus::Exited(c),
            (None, Some(s)) => ExitStatus::Signaled(s),
            (None, None) => ExitStatus::Exited(125),
        };
        Ok(Outcome {
            status,
            oom_killed: false,
            memory_limit: None,
            created: Vec::new(),
        })
    }

    /// Unmounts the rootfs (a build then diffs [`Container::upper_dir`]).
    pub fn unmount(&mut self) -> Result<(), ContainerError> {
        match self.mount.take() {
            Some(guard) => guard.unmount().map_err(|source| ContainerError::Mount {
                id: self.record.id.clone(),
                source,
            }),
            None => Ok(()),
        }
    }

    /// Starts unmounting the rootfs on a thread of `scope`. A build diffs
    /// the upper dir meanwhile: reading the upper does not need the overlay
    /// gone (unmounting a big tree takes tens of ms), changing it does, so
    /// whoever changes the upper joins the handle first.
    pub fn unmount_on<'scope>(
        &mut self,
        scope: &'scope std::thread::Scope<'scope, '_>,
    ) -> std::thread::ScopedJoinHandle<'scope, Result<(), ContainerError>> {
        let guard = self.mount.take();
        let id = self.record.id.clone();
        scope.spawn(move || match guard {
            Some(guard) => guard
                .unmount()
                .map_err(|source| ContainerError::Mount { id, source }),
            None => Ok(()),
        })
    }

    /// Unmounts and deletes the container's directory.
    pub fn remove(mut self) -> Result<(), ContainerError> {
        self.unmount()?;
        let held = self.held.take().expect("held until removed or kept");
        self.store.remove_container(held)?;
        Ok(())
    }

    /// Unmounts and leaves the directory (for `builder rm` / `prune`).
    pub fn keep(mut self) -> Result<(), ContainerError> {
        self.unmount()?;
        self.held = None;
        Ok(())
    }
}

impl ContainerError {
    fn failed_state(&self) -> ContainerState {
        let mut error = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(s) = source {
            error.push_str(": ");
            error.push_str(&s.to_string());
            source = s.source();
        }
        ContainerState::Failed {
            code: self.exit_code(),
            error,
            finished: now(),
        }
    }
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        if self.held.is_none() {
            return;
        }
        if matches!(
            self.record.state,
            ContainerState::Created | ContainerState::Running { .. }
        ) {
            self.set_state(ContainerState::Failed {
                code: 125,
                error: "builder stopped before the container ended".into(),
                finished: now(),
            });
        }
        if let Some(guard) = self.mount.take()
            && let Err(e) = guard.unmount()
        {
            tracing::warn!("container {}: {e}", self.record.id);
            return;
        }
        if self.record.auto_remove
            && let Some(held) = self.held.take()
            && let Err(e) = self.store.remove_container(held)
        {
            tracing::warn!("remove container {}: {e}", self.record.id);
        }
    }
}

/// Creates a container, runs its process, and removes it (`auto_remove`)
/// or keeps its directory. What `builder run` does.
pub fn run(store: &Store, config: &Config, stdio: Stdio) -> Result<Outcome, ContainerError> {
    let mut container = Container::create(store, config)?;
    let result = container.start(stdio);
    let teardown = if config.auto_remove {
        container.remove()
    } else {
        container.keep()
    };
    let outcome = result?;
    teardown?;
    Ok(outcome)
}

/// Whether something is mounted at `merged/` of a container directory.
fn is_mounted(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (
        std::fs::symlink_metadata(dir),
        std::fs::symlink_metadata(dir.join("merged")),
    ) {
        (Ok(d), Ok(m)) => d.dev() != m.dev(),
        _ => false,
    }
}

/// Undoes what a dead container left in the host: its rootfs mount, its
/// cgroups in every hierarchy, and an OCI runtime's state for it.
fn teardown_dead(
    held: &ContainerLock,
    record: Option<&ContainerRecord>,
) -> Result<(), ContainerError> {
    let dir = held.dir();
    if let Some(runtime) = record.and_then(|r| r.runtime.as_ref())
        && dir.join("runtime").join(held.id()).exists()
    {
        let _ = std::process::Command::new(runtime)
            .arg("--root")
            .arg(dir.join("runtime"))
            .args(["delete", "--force", held.id()])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
    let mode = cgroup::host_mode()?;
    cgroup::remove_everywhere(Path::new(cgroup::ROOT), mode, held.id(), CGROUP_TIMEOUT)?;
    // Unmount after the processes are gone, so the mount is not busy.
    // (Several mounts may be stacked there; a bounded loop, in case one
    // cannot be seen to go.)
    for _ in 0..8 {
        if !is_mounted(dir) {
            break;
        }
        mount::unmount(&held.merged()).map_err(|source| ContainerError::Mount {
            id: held.id().to_owned(),
            source,
        })?;
    }
    Ok(())
}

/// Cleans up after builder processes that died while running a container
/// (see the module doc): returns the IDs it tore down. Containers that are
/// alive or ended normally are left alone.
pub fn reap(store: &Store) -> Result<Vec<String>, ContainerError> {
    let mut reaped = Vec::new();
    for entry in store.list_containers()? {
        let unfinished = match &entry.record {
            Some(r) => matches!(
                r.state,
                ContainerState::Created | ContainerState::Running { .. }
            ),
            None => true,
        };
        if entry.alive || !unfinished {
            continue;
        }
        let Some(held) = store.lock_container(&entry.id)? else {
            continue; // taken by another builder meanwhile
        };
        // The record as it is now, under the lock.
        let record = store.container(&entry.id).ok().flatten();
        teardown_dead(&held, record.as_ref())?;
        match record {
            Some(mut r) if !r.auto_remove => {
                r.state = ContainerState::Killed { finished: now() };
                store.update_container(&held, &r)?;
            }
            _ => store.remove_container(held)?,
        }
        tracing::info!("cleaned up container {} left by a killed builder", entry.id);
        reaped.push(entry.id);
    }
    if let Ok(mode) = cgroup::host_mode() {
        cgroup::remove_abandoned(Path::new(cgroup::ROOT), mode, ABANDONED_AFTER);
    }
    Ok(reaped)
}

/// Deletes every container whose builder is gone, tearing down what a
/// killed one left (for `prune`, which holds the store alone). Returns how
/// many were removed.
pub fn remove_dead(store: &Store) -> Result<usize, ContainerError> {
    let mut removed = 0;
    for entry in store.list_containers()? {
        if entry.alive {
            continue;
        }
        let Some(held) = store.lock_container(&entry.id)? else {
            continue;
        };
        teardown_dead(&held, entry.record.as_ref())?;
        store.remove_container(held)?;
        removed += 1;
    }
    Ok(removed)
}

/// The container a user means: an exact name, or a unique prefix of an ID.
pub fn find(store: &Store, input: &str) -> Result<crate::store::ContainerEntry, ContainerError> {
    let all = store.list_containers()?;
    if let Some(e) = all
        .iter()
        .find(|e| e.record.as_ref().is_some_and(|r| r.name == input))
    {
        return Ok(e.clone());
    }
    let matches: Vec<_> = if input.is_empty() {
        Vec::new()
    } else {
        all.into_iter()
            .filter(|e| e.id.starts_with(input))
            .collect()
    };
    match matches.len() {
        0 => Err(ContainerError::NotFound(input.to_owned())),
        1 => Ok(matches.into_iter().next().expect("one match")),
        count => Err(ContainerError::Ambiguous {
            input: input.to_owned(),
            count,
        }),
    }
}

/// `builder rm`: removes a container that is not running; with `force`, a
/// running one is killed first (its cgroup gets SIGKILL; its builder then
/// tears it down and exits with 137).
pub fn remove(store: &Store, input: &str, force: bool) -> Result<String, ContainerError> {
    let entry = find(store, input)?;
    let name = entry
        .record
        .as_ref()
        .map(|r| r.name.clone())
        .unwrap_or_else(|| entry.id.clone());
    let mut held = store.lock_container(&entry.id)?;
    if held.is_none() {
        if !force {
            return Err(ContainerError::Running { name });
        }
        let mode = cgroup::host_mode()?;
        let start = std::time::Instant::now();
        while held.is_none() {
            kill_cgroup(mode, &entry.id);
            if start.elapsed() > CGROUP_TIMEOUT {
                return Err(ContainerError::WontDie {
                    name,
                    waited_s: CGROUP_TIMEOUT.as_secs(),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
            held = store.lock_container(&entry.id)?;
        }
    }
    let held = held.expect("locked above");
    let record = store.container(&entry.id).ok().flatten();
    teardown_dead(&held, record.as_ref())?;
    store.remove_container(held)?;
    Ok(entry.id)
}

/// SIGKILLs every process in container `id`'s cgroups.
fn kill_cgroup(mode: cgroup::Mode, id: &str) {
    let root = Path::new(cgroup::ROOT);
    let hierarchies: Vec<PathBuf> = match mode {
        cgroup::Mode::Unified => vec![root.to_owned()],
        _ => std::fs::read_dir(root)
            .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default(),
    };
    for h in hierarchies {
        let procs = h.join(cgroup::PARENT).join(id).join("cgroup.procs");
        if let Ok(text) = std::fs::read_to_string(procs) {
            for pid in text.lines().filter_map(|l| l.trim().parse().ok()) {
                sys::process::kill(pid, libc::SIGKILL);
            }
        }
    }
}

/// `KEY=VALUE` lines of an env file (Docker's format: `#` comments and
/// blank lines skipped; a bare `KEY` takes the value from `lookup`, and is
/// dropped when that has none).
pub fn parse_env_file(text: &str, lookup: impl Fn(&str) -> Option<OsString>) -> Vec<String> {
    text.lines()
        .map(|l| l.trim_start())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| resolve_env_entry(l, &lookup))
        .collect()
}

/// One `-e` value: `KEY=VALUE` as is; a bare `KEY` takes its value from
/// `lookup` (builder's environment) or is dropped.
pub fn resolve_env_entry(entry: &str, lookup: impl Fn(&str) -> Option<OsString>) -> Option<String> {
    if entry.contains('=') {
        return Some(entry.to_owned());
    }
    lookup(entry).map(|v| format!("{entry}={}", v.to_string_lossy()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::image::ContainerConfig as ImageConfig;

    fn image() -> ImageConfig {
        ImageConfig {
            entrypoint: Some(vec!["/ep".into(), "-x".into()]),
            cmd: Some(vec!["default".into()]),
            env: Some(vec!["PATH=/bin".into(), "FOO=image".into()]),
            working_dir: Some("/srv".into()),
            user: Some("alice".into()),
            ..Default::default()
        }
    }

    fn args(img: Option<&ImageConfig>, o: ProcessOverrides) -> Vec<String> {
        docker_process(img, &o).unwrap().args
    }

    #[test]
    fn entrypoint_and_cmd_follow_docker() {
        let img = image();
        assert_eq!(
            args(Some(&img), ProcessOverrides::default()),
            ["/ep", "-x", "default"]
        );
        let cmd = ProcessOverrides {
            command: vec!["a".into(), "b".into()],
            ..Default::default()
        };
        assert_eq!(args(Some(&img), cmd.clone()), ["/ep", "-x", "a", "b"]);
        // --entrypoint drops the image's Cmd.
        let ep = ProcessOverrides {
            entrypoint: Some("/other".into()),
            ..Default::default()
        };
        assert_eq!(args(Some(&img), ep), ["/other"]);
        let ep_cmd = ProcessOverrides {
            entrypoint: Some("/other".into()),
            command: vec!["z".into()],
            ..Default::default()
        };
        assert_eq!(args(Some(&img), ep_cmd), ["/other", "z"]);
        // --entrypoint "" clears it; the command alone runs.
        let cleared = ProcessOverrides {
            entrypoint: Some(String::new()),
            command: vec!["sh".into()],
            ..Default::default()
        };
        assert_eq!(args(Some(&img), cleared), ["sh"]);
        let nothing = docker_process(
            None,
            &ProcessOverrides {
                entrypoint: Some(String::new()),
                ..Default::default()
            },
        );
        assert!(matches!(nothing, Err(ContainerError::Invalid(_))));
    }

    #[test]
    fn env_workdir_and_user_override_the_image() {
        let img = image();
        let p = docker_process(
            Some(&img),
            &ProcessOverrides {
                env: vec!["FOO=cli".into(), "NEW=1".into()],
                workdir: Some("/w".into()),
                user: Some("1:2".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(p.env, ["PATH=/bin", "FOO=cli", "NEW=1"]);
        assert_eq!((p.workdir.as_str(), p.user.as_str()), ("/w", "1:2"));
        let p = docker_process(Some(&img), &ProcessOverrides::default()).unwrap();
        assert_eq!((p.workdir.as_str(), p.user.as_str()), ("/srv", "alice"));
        let relative = docker_process(
            Some(&img),
            &ProcessOverrides {
                workdir: Some("rel".into()),
                ..Default::default()
            },
        );
        assert!(matches!(relative, Err(ContainerError::Invalid(_))));
    }

    #[test]
    fn env_files_and_bare_keys() {
        let lookup = |k: &str| (k == "HOSTVAR").then(|| OsString::from("h"));
        let text = "# comment\n\nA=1\n  B=two words\nHOSTVAR\nUNSET\n";
        assert_eq!(
            parse_env_file(text, lookup),
            ["A=1", "B=two words", "HOSTVAR=h"]
        );
        assert_eq!(resolve_env_entry("X=", lookup), Some("X=".into()));
    }

    #[test]
    fn ids_are_random_hex() {
        let (a, b) = (new_id(), new_id());
        assert_ne!(a, b);
        assert!(crate::store::is_container_id(&a));
    }
}
