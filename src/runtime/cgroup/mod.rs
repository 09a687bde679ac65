//! Control groups for containers: detect the host's mode once, create
//! `builder/<container-id>`, apply limits, attach, read OOM kills, kill all
//! and remove.
//!
//! Modes (as crun's `detect_cgroup_mode`, by filesystem magic):
//! - unified: the root (`/sys/fs/cgroup`) is a cgroup2 filesystem;
//! - hybrid: the root is a tmpfs holding v1 controller hierarchies and a
//!   cgroup2 `unified/` (this machine); limits go to the v1 controllers;
//! - legacy: a tmpfs with v1 controllers only.
//!
//! In hybrid mode a container without limits gets a cgroup in the unified
//! (v2) hierarchy only, which needs no controller to track and kill its
//! processes: the child is then born in it (`clone3(CLONE_INTO_CGROUP)`),
//! whereas joining a v1 cgroup means a write to `cgroup.procs`, which takes
//! the kernel's cgroup-wide threadgroup lock for writing and waits for an
//! RCU grace period — up to ~10 ms on a busy machine, more than the rest of
//! a container start.
//!
//! Every function takes the root it works under, so the v2 code runs in unit
//! tests against a plain temp directory of files, and detection runs against
//! fake roots. Invariants: a [`Cgroup`] never outlives [`Cgroup::remove`]
//! on any path (the runtime calls it on success, failure and unwind).
//!
//! `builder/` is shared by concurrent processes: whoever removes the last
//! child removes it too (`rmdir` fails with `EBUSY` while another container
//! has a child there, which is the signal to leave it), and a creator whose
//! `mkdir` of the child fails with `ENOENT` because the parent vanished in
//! between creates the parent again and retries. So no empty `builder/` is
//! left behind after the last container.

mod v1;
mod v2;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::sys;

/// The default cgroup root.
pub const ROOT: &str = "/sys/fs/cgroup";

/// The parent of every container cgroup, under each hierarchy.
pub const PARENT: &str = "builder";

const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
const TMPFS_MAGIC: i64 = 0x0102_1994;

/// How the host's cgroups are set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Unified,
    Hybrid,
    Legacy,
}

/// Resource limits; `None` leaves the kernel default (unlimited).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of memory.
    pub memory: Option<i64>,
    /// Bytes of memory + swap; defaults to `memory` so an OOM kills instead
    /// of swapping.
    pub memory_swap: Option<i64>,
    /// Maximum number of tasks.
    pub pids: Option<i64>,
    /// CFS quota and period in microseconds (`--cpus 0.5` = 50000/100000).
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<u64>,
}

impl Limits {
    /// Limits from an OCI spec's `linux.resources`.
    pub fn from_resources(r: &oci_spec::runtime::LinuxResources) -> Limits {
        let memory = r.memory().as_ref();
        let cpu = r.cpu().as_ref();
        Limits {
            memory: memory.and_then(|m| m.limit()).filter(|&v| v > 0),
            memory_swap: memory.and_then(|m| m.swap()).filter(|&v| v > 0),
            pids: r.pids().as_ref().map(|p| p.limit()).filter(|&v| v > 0),
            cpu_quota: cpu.and_then(|c| c.quota()).filter(|&v| v > 0),
            cpu_period: cpu.and_then(|c| c.period()),
        }
    }

    /// Whether no limit at all is set.
    pub fn is_unlimited(&self) -> bool {
        self.memory.is_none() && self.pids.is_none() && self.cpu_quota.is_none()
    }

    /// Memory + swap as applied: the requested value, else equal to memory.
    fn memory_swap_effective(&self) -> Option<i64> {
        self.memory.map(|m| self.memory_swap.unwrap_or(m).max(m))
    }
}

/// Errors naming the cgroup file or directory involved.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("detect cgroup mode under `{root}`")]
    Detect {
        root: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("create cgroup `{path}`")]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("write `{value}` to `{path}`")]
    Write {
        path: PathBuf,
        value: String,
        #[source]
        source: io::Error,
    },
    #[error("read `{path}`")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("remove cgroup `{path}`: still busy after {waited_ms} ms")]
    Busy { path: PathBuf, waited_ms: u128 },
    #[error("remove cgroup `{path}`")]
    Remove {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl CgroupError {
    /// Whether the cause is a missing file or directory.
    fn is_not_found(&self) -> bool {
        let source = match self {
            CgroupError::Detect { source, .. }
            | CgroupError::Create { source, .. }
            | CgroupError::Write { source, .. }
            | CgroupError::Read { source, .. }
            | CgroupError::Remove { source, .. } => source,
            CgroupError::Busy { .. } => return false,
        };
        source.kind() == io::ErrorKind::NotFound
    }
}

/// Classifies a cgroup root from the filesystem magic of the root and, if
/// present, of its `unified/` subdirectory.
pub fn classify(root_magic: i64, unified_magic: Option<i64>) -> Mode {
    if root_magic == CGROUP2_SUPER_MAGIC {
        Mode::Unified
    } else if unified_magic == Some(CGROUP2_SUPER_MAGIC) {
        Mode::Hybrid
    } else {
        Mode::Legacy
    }
}

/// Detects the mode of the cgroup tree mounted at `root`.
pub fn detect(root: &Path) -> Result<Mode, CgroupError> {
    let err = |source| CgroupError::Detect {
        root: root.to_owned(),
        source,
    };
    let root_magic = sys::mount::fs_magic(root).map_err(err)?;
    let unified = if root_magic == TMPFS_MAGIC {
        sys::mount::fs_magic(&root.join("unified")).ok()
    } else {
        None
    };
    Ok(classify(root_magic, unified))
}

/// The host's mode, detected once per process.
pub fn host_mode() -> Result<Mode, CgroupError> {
    static MODE: OnceLock<Mode> = OnceLock::new();
    if let Some(m) = MODE.get() {
        return Ok(*m);
    }
    let m = detect(Path::new(ROOT))?;
    Ok(*MODE.get_or_init(|| m))
}

/// One container's cgroup, in one (v2) or several (v1) hierarchies.
#[derive(Debug)]
pub enum Cgroup {
    V1(v1::Cgroup),
    V2(v2::Cgroup),
}

impl Cgroup {
    /// Creates `<root>/…/builder/<id>` with `limits` applied. On failure,
    /// whatever was created is removed again.
    pub fn create(
        root: &Path,
        mode: Mode,
        id: &str,
        limits: &Limits,
    ) -> Result<Cgroup, CgroupError> {
        match mode {
            Mode::Unified => v2::Cgroup::create(root, id, limits).map(Cgroup::V2),
            Mode::Hybrid if limits.is_unlimited() => {
                v2::Cgroup::create(&root.join("unified"), id, limits).map(Cgroup::V2)
            }
            Mode::Hybrid | Mode::Legacy => v1::Cgroup::create(root, id, limits).map(Cgroup::V1),
        }
    }

    /// The `cgroup.procs` files to write `0` into, i.e. "move the writer
    /// here" (the container's child does it before anything else).
    pub fn procs_files(&self) -> Vec<PathBuf> {
        match self {
            Cgroup::V1(c) => c.dirs().map(|d| d.join("cgroup.procs")).collect(),
            Cgroup::V2(c) => vec![c.dir().join("cgroup.procs")],
        }
    }

    /// Moves process `pid` into the cgroup.
    pub fn attach(&self, pid: u32) -> Result<(), CgroupError> {
        for f in self.procs_files() {
            write(&f, &pid.to_string())?;
        }
        Ok(())
    }

    /// How many processes the kernel's OOM killer killed in this cgroup.
    pub fn oom_kills(&self) -> Result<u64, CgroupError> {
        match self {
            Cgroup::V1(c) => c.oom_kills(),
            Cgroup::V2(c) => c.oom_kills(),
        }
    }

    /// The pids currently in the cgroup.
    pub fn pids(&self) -> Result<Vec<u32>, CgroupError> {
        let file = match self {
            Cgroup::V1(c) => c.tracking_dir().join("cgroup.procs"),
            Cgroup::V2(c) => c.dir().join("cgroup.procs"),
        };
        let text = read(&file)?;
        Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
    }

    /// SIGKILLs every process in the cgroup (v2: `cgroup.kill`; v1: each
    /// pid of `cgroup.procs`).
    pub fn kill_all(&self) -> Result<(), CgroupError> {
        match self {
            Cgroup::V2(c) if c.has_kill() => write(&c.dir().join("cgroup.kill"), "1"),
            _ => {
                for pid in self.pids()? {
                    sys::process::kill(pid, libc::SIGKILL);
                }
                Ok(())
            }
        }
    }

    /// Kills what is left and removes the cgroup directories, retrying
    /// while dying processes keep them busy (up to `timeout`).
    pub fn remove(self, timeout: Duration) -> Result<(), CgroupError> {
        let dirs: Vec<PathBuf> = match &self {
            Cgroup::V1(c) => c.dirs().collect(),
            Cgroup::V2(c) => vec![c.dir().to_owned()],
        };
        let start = Instant::now();
        for dir in dirs {
            remove_dir_retrying(&dir, start, timeout, || {
                let _ = self.kill_all();
            })?;
            if let Some(parent) = dir.parent() {
                remove_parent_if_empty(parent);
            }
        }
        Ok(())
    }

    /// The v2 directory, for `clone3(CLONE_INTO_CGROUP)`.
    pub fn v2_dir(&self) -> Option<&Path> {
        match self {
            Cgroup::V2(c) => Some(c.dir()),
            Cgroup::V1(_) => None,
        }
    }
}

/// Container ids that have a cgroup under `builder/` (in the pids
/// hierarchy for v1), so a later run can clean up after a killed builder.
pub fn list(root: &Path, mode: Mode) -> Result<Vec<String>, CgroupError> {
    let parent = match mode {
        Mode::Unified => root.join(PARENT),
        Mode::Hybrid | Mode::Legacy => root.join("pids").join(PARENT),
    };
    let entries = match std::fs::read_dir(&parent) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(CgroupError::Read {
                path: parent,
                source,
            });
        }
    };
    Ok(entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect())
}

/// Reopens the cgroup of container `id` (after a crash) so it can be killed
/// and removed.
pub fn open_existing(root: &Path, mode: Mode, id: &str) -> Cgroup {
    match mode {
        Mode::Unified => Cgroup::V2(v2::Cgroup::existing(root, id)),
        Mode::Hybrid | Mode::Legacy => Cgroup::V1(v1::Cgroup::existing(root, id)),
    }
}

/// Removes container `id`'s cgroup from every hierarchy under `root`
/// (whatever created it: this runtime only uses `pids`, `memory` and `cpu`,
/// but an OCI runtime given `cgroupsPath = /builder/<id>` joins all of
/// them), killing what is left in it, and then the `builder/` parents that
/// became empty. For cleaning up after a builder that was killed.
pub fn remove_everywhere(
    root: &Path,
    mode: Mode,
    id: &str,
    timeout: Duration,
) -> Result<(), CgroupError> {
    let hierarchies: Vec<PathBuf> = match mode {
        Mode::Unified => vec![root.to_owned()],
        Mode::Hybrid | Mode::Legacy => match std::fs::read_dir(root) {
            Ok(entries) => entries
                .filter_map(Result::ok)
                // `cpu,cpuacct`-style names are symlinks to a real hierarchy.
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect(),
            Err(source) => {
                return Err(CgroupError::Read {
                    path: root.to_owned(),
                    source,
                });
            }
        },
    };
    let start = Instant::now();
    for h in hierarchies {
        let parent = h.join(PARENT);
        let dir = parent.join(id);
        if dir.is_dir() {
            let kill = || {
                if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
                    for pid in text.lines().filter_map(|l| l.trim().parse().ok()) {
                        sys::process::kill(pid, libc::SIGKILL);
                    }
                }
            };
            kill();
            remove_dir_retrying(&dir, start, timeout, kill)?;
        }
        remove_parent_if_empty(&parent);
    }
    Ok(())
}

/// Removes, in every hierarchy, the container cgroups under `builder/`
/// that hold no process and are older than `min_age`, then the emptied
/// parents. These are left by a builder killed while its store was
/// deleted (or never used again), so no container record leads to them. A
/// live container's cgroup holds its process from the first instant of its
/// life, and a cgroup with a process cannot be removed anyway (`EBUSY`);
/// the age keeps clear of one being created right now. Returns how many
/// were removed.
pub fn remove_abandoned(root: &Path, mode: Mode, min_age: Duration) -> usize {
    let hierarchies: Vec<PathBuf> = match mode {
        Mode::Unified => vec![root.to_owned()],
        Mode::Hybrid | Mode::Legacy => std::fs::read_dir(root)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default(),
    };
    let mut removed = 0;
    for h in hierarchies {
        let parent = h.join(PARENT);
        let Ok(entries) = std::fs::read_dir(&parent) else {
            continue;
        };
        for e in entries.filter_map(Result::ok) {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().unwrap_or_default() >= min_age);
            let empty = std::fs::read_to_string(e.path().join("cgroup.procs"))
                .is_ok_and(|p| p.trim().is_empty());
            if old && empty && std::fs::remove_dir(e.path()).is_ok() {
                tracing::debug!("removed abandoned cgroup `{}`", e.path().display());
                removed += 1;
            }
        }
        remove_parent_if_empty(&parent);
    }
    removed
}

/// `rmdir` of a cgroup, retrying while it is busy (processes still dying):
/// `nudge` runs between attempts, until `timeout` after `start`.
fn remove_dir_retrying(
    dir: &Path,
    start: Instant,
    timeout: Duration,
    nudge: impl Fn(),
) -> Result<(), CgroupError> {
    let mut pause = Duration::from_micros(200);
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                if start.elapsed() > timeout {
                    return Err(CgroupError::Busy {
                        path: dir.to_owned(),
                        waited_ms: start.elapsed().as_millis(),
                    });
                }
                nudge();
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(20));
            }
            Err(source) => {
                return Err(CgroupError::Remove {
                    path: dir.to_owned(),
                    source,
                });
            }
        }
    }
}

/// The machine-wide lock that keeps the shared `builder/` parents alive:
/// held shared while an OCI runtime (runc) creates a container's cgroup
/// below them — runc, unlike our runtime, cannot retry when a parent
/// vanishes between its mkdir and its first write — and taken exclusively,
/// without waiting, to remove a parent.
const PARENT_LOCK: &str = "/run/builder-cgroup-parents.lock";

/// A shared hold on `PARENT_LOCK`; `None` if the lock file cannot be
/// made (then nothing is protected, as before there was a lock).
pub fn hold_parents() -> Option<std::fs::File> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(PARENT_LOCK)
        .ok()?;
    f.lock_shared().ok()?;
    Some(f)
}

/// Removes the shared `builder/` parent once its last child is gone. In
/// cgroupfs `rmdir` of a cgroup with children fails with `EBUSY` (a plain
/// directory, as in the unit tests' fake roots, with `ENOTEMPTY`): another
/// container still uses it, which is fine. Skipped while an OCI runtime is
/// creating a cgroup below it ([`hold_parents`]).
fn remove_parent_if_empty(parent: &Path) {
    if parent.file_name() != Some(std::ffi::OsStr::new(PARENT)) {
        return;
    }
    // Only the machine's real cgroup tree is shared with runc (the unit
    // tests' fake roots are not).
    let _exclusive = if parent.starts_with(ROOT) {
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(PARENT_LOCK);
        match lock {
            Ok(f) => match f.try_lock() {
                Ok(()) => Some(f),
                Err(_) => return,
            },
            Err(_) => None,
        }
    } else {
        None
    };
    match std::fs::remove_dir(parent) {
        Ok(()) => {}
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EBUSY) | Some(libc::ENOTEMPTY) | Some(libc::ENOENT) | Some(libc::EEXIST)
            ) => {}
        Err(e) => tracing::debug!("rmdir `{}`: {e}", parent.display()),
    }
}

/// Creates `dir` below the shared `parent`: `prepare_parent` makes the
/// parent exist (and configures it); when the child's `mkdir` fails with
/// `ENOENT` because another process removed the (then empty) parent in
/// between, the whole sequence is retried.
fn create_child(
    parent: &Path,
    dir: &Path,
    prepare_parent: impl Fn() -> Result<(), CgroupError>,
) -> Result<(), CgroupError> {
    let mut attempt = 0;
    loop {
        // Configuring the parent fails the same way if it vanishes midway.
        match prepare_parent() {
            Ok(()) => {}
            Err(e) if e.is_not_found() && attempt < 100 => {
                attempt += 1;
                continue;
            }
            Err(e) => return Err(e),
        }
        match std::fs::create_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound && attempt < 100 => {
                tracing::debug!(
                    "`{}` vanished while creating a child; retrying",
                    parent.display()
                );
                attempt += 1;
            }
            Err(source) => {
                return Err(CgroupError::Create {
                    path: dir.to_owned(),
                    source,
                });
            }
        }
    }
}

fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    std::fs::write(path, value).map_err(|source| CgroupError::Write {
        path: path.to_owned(),
        value: value.to_owned(),
        source,
    })
}

fn read(path: &Path) -> Result<String, CgroupError> {
    std::fs::read_to_string(path).map_err(|source| CgroupError::Read {
        path: path.to_owned(),
        source,
    })
}

fn mkdir(path: &Path) -> Result<(), CgroupError> {
    match std::fs::create_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(CgroupError::Create {
            path: path.to_owned(),
            source,
        }),
    }
}

/// The value of `key` in a flat-keyed file (`memory.events`, `memory.oom_control`).
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_modes() {
        assert_eq!(classify(CGROUP2_SUPER_MAGIC, None), Mode::Unified);
        assert_eq!(
            classify(TMPFS_MAGIC, Some(CGROUP2_SUPER_MAGIC)),
            Mode::Hybrid
        );
        assert_eq!(classify(TMPFS_MAGIC, None), Mode::Legacy);
        assert_eq!(classify(TMPFS_MAGIC, Some(TMPFS_MAGIC)), Mode::Legacy);
    }

    #[test]
    fn keyed_files() {
        let t = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(keyed(t, "oom_kill"), Some(3));
        assert_eq!(keyed(t, "under_oom"), Some(0));
        assert_eq!(keyed(t, "nope"), None);
    }

    #[test]
    fn the_last_container_removes_the_shared_parent() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("pids")).unwrap();
        let parent = t.path().join("pids").join(PARENT);
        let a = Cgroup::create(t.path(), Mode::Legacy, "a", &Limits::default()).unwrap();
        let b = Cgroup::create(t.path(), Mode::Legacy, "b", &Limits::default()).unwrap();
        a.remove(Duration::from_secs(1)).unwrap();
        assert!(parent.join("b").is_dir() && !parent.join("a").exists());
        b.remove(Duration::from_secs(1)).unwrap();
        assert!(!parent.exists(), "empty `builder/` left behind");
        assert!(t.path().join("pids").is_dir());
    }

    #[test]
    fn a_parent_that_vanishes_is_created_again() {
        let t = tempfile::tempdir().unwrap();
        let parent = t.path().join(PARENT);
        let dir = parent.join("c");
        let calls = std::cell::Cell::new(0);
        // The first preparation "loses" the parent to a concurrent remover
        // before the child's mkdir; the second while configuring it.
        create_child(&parent, &dir, || {
            calls.set(calls.get() + 1);
            match calls.get() {
                1 => Ok(()),
                2 => read(&parent.join("cgroup.controllers")).map(|_| ()),
                _ => mkdir(&parent),
            }
        })
        .unwrap();
        assert_eq!(calls.get(), 3);
        assert!(dir.is_dir());
    }

    #[test]
    fn stale_cgroups_are_removed_from_every_hierarchy() {
        let t = tempfile::tempdir().unwrap();
        for h in ["pids", "devices", "unified"] {
            std::fs::create_dir_all(t.path().join(h).join(PARENT).join("dead")).unwrap();
        }
        std::fs::create_dir_all(t.path().join("pids").join(PARENT).join("alive")).unwrap();
        remove_everywhere(t.path(), Mode::Hybrid, "dead", Duration::from_secs(1)).unwrap();
        assert!(t.path().join("pids").join(PARENT).join("alive").is_dir());
        assert!(!t.path().join("devices").join(PARENT).exists());
        assert!(!t.path().join("unified").join(PARENT).exists());
        assert!(!t.path().join("pids").join(PARENT).join("dead").exists());
    }

    #[test]
    fn swap_defaults_to_memory() {
        let l = Limits {
            memory: Some(64 << 20),
            ..Default::default()
        };
        assert_eq!(l.memory_swap_effective(), Some(64 << 20));
        let l = Limits {
            memory: Some(64 << 20),
            memory_swap: Some(128 << 20),
            ..Default::default()
        };
        assert_eq!(l.memory_swap_effective(), Some(128 << 20));
        assert_eq!(Limits::default().memory_swap_effective(), None);
    }
}
