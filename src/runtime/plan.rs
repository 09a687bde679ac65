//! Parent side preparation: turns an OCI `Spec` and a rootfs path into a
//! [`ChildPlan`] whose every string is already a `CString`, so the child
//! never allocates.
//!
//! Mount targets inside the image are resolved here, with the rootfs as
//! `/` (symlinks cannot lead outside it), and missing mount points are
//! created now, in the rootfs (i.e. the container's upper dir); their
//! container paths are returned so a caller can keep them out of layers.
//! Targets under a tmpfs the child mounts itself (`/dev/pts` under `/dev`)
//! are created by the child in that tmpfs.

use std::collections::VecDeque;
use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::Spec;
use rustix::mount::{MountFlags, MountPropagationFlags};

use super::RuntimeError;
use super::caps;
use crate::sys::process::CStrArray;

/// Default `PATH` when the process environment has none (Docker's).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// One mount-related action of the child, before `pivot_root`.
#[derive(Debug)]
pub enum Step {
    /// Creates a directory in a tmpfs the child mounted (`EEXIST` is fine).
    Mkdir {
        path: CString,
    },
    Mount {
        source: CString,
        target: CString,
        fstype: CString,
        flags: MountFlags,
        data: Option<CString>,
    },
    /// `MS_REMOUNT | MS_BIND | flags`: applies flags to a bind mount.
    Remount {
        target: CString,
        flags: MountFlags,
    },
    Propagation {
        target: CString,
        flags: MountPropagationFlags,
    },
    /// A character device in the container's `/dev` tmpfs.
    Mknod {
        path: CString,
        major: u32,
        minor: u32,
    },
    Symlink {
        target: CString,
        link: CString,
    },
    /// Hides a path: `null` (the container's own `/dev/null` when it has a
    /// `/dev` tmpfs, so no host device shows in its mount table) over a
    /// file, an empty read-only tmpfs over a directory, nothing if it does
    /// not exist.
    Mask {
        path: CString,
        null: CString,
    },
    /// Bind-mounts a path on itself read-only; nothing if it does not exist.
    ReadOnly {
        path: CString,
    },
}

/// Capability sets as masks, and the bounding set as the numbers to drop.
#[derive(Debug, Default)]
pub struct CapPlan {
    pub drop_bounding: Vec<u32>,
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub ambient: Vec<u32>,
}

/// Everything the child needs, prepared by the parent.
#[derive(Debug)]
pub struct ChildPlan {
    /// A pidfd of the parent process: the child checks it right after
    /// setting its parent-death signal, which is not inherited and so
    /// misses a parent that died before it was set.
    pub parent: Option<OwnedFd>,
    pub cgroup_procs: Vec<OwnedFd>,
    pub new_cgroupns: bool,
    pub hostname: Option<CString>,
    pub loopback: bool,
    pub rootfs: CString,
    pub root_propagation: MountPropagationFlags,
    pub steps: Vec<Step>,
    pub readonly_root: bool,
    pub cwd: CString,
    pub rlimits: Vec<(rustix::process::Resource, rustix::process::Rlimit)>,
    pub terminal: Option<TerminalPlan>,
    pub stdio: Option<[i32; 3]>,
    pub caps: CapPlan,
    pub groups: Vec<rustix::process::Gid>,
    pub gid: rustix::process::Gid,
    pub uid: rustix::process::Uid,
    pub no_new_privs: bool,
    pub init: bool,
    pub exec_paths: Vec<CString>,
    pub argv: CStrArray,
    pub envp: CStrArray,
    /// Write end of the failure pipe (close-on-exec).
    pub report: Option<OwnedFd>,
}

/// `process.terminal`: the child allocates a pty in the container's own
/// devpts (so `tty` names a `/dev/pts` path the container can see), makes
/// it its controlling terminal and stdio, and sends the master end to the
/// parent over `socket` (`SCM_RIGHTS`).
#[derive(Debug)]
pub struct TerminalPlan {
    pub socket: OwnedFd,
    /// `process.consoleSize`, set on the pty before the command starts.
    pub rows: u16,
    pub cols: u16,
}

/// The plan plus what preparing it changed in the rootfs.
#[derive(Debug)]
pub struct Prepared {
    pub plan: ChildPlan,
    /// Container paths of mount points created in the rootfs, in creation order.
    pub created: Vec<PathBuf>,
    /// Clone flags for the namespaces to create.
    pub clone_flags: u64,
    /// Human descriptions of `plan.steps`, for error messages.
    pub step_names: Vec<String>,
}

pub fn cstr(s: impl AsRef<[u8]>) -> Result<CString, RuntimeError> {
    CString::new(s.as_ref()).map_err(|_| RuntimeError::Spec {
        reason: format!(
            "`{}` contains a NUL byte",
            String::from_utf8_lossy(s.as_ref())
        ),
    })
}

fn spec_err(reason: impl Into<String>) -> RuntimeError {
    RuntimeError::Spec {
        reason: reason.into(),
    }
}

/// Flags, propagation, bind-ness and fs data of OCI mount options.
#[derive(Debug, PartialEq, Eq)]
pub struct MountOptions {
    pub flags: MountFlags,
    pub propagation: Option<MountPropagationFlags>,
    pub bind: bool,
    pub recursive: bool,
    pub data: Vec<String>,
}

pub fn parse_options(options: &[String]) -> MountOptions {
    let mut o = MountOptions {
        flags: MountFlags::empty(),
        propagation: None,
        bind: false,
        recursive: false,
        data: Vec::new(),
    };
    for opt in options {
        let set = match opt.as_str() {
            "ro" => Some(MountFlags::RDONLY),
            "nosuid" => Some(MountFlags::NOSUID),
            "nodev" => Some(MountFlags::NODEV),
            "noexec" => Some(MountFlags::NOEXEC),
            "sync" => Some(MountFlags::SYNCHRONOUS),
            "dirsync" => Some(MountFlags::DIRSYNC),
            "noatime" => Some(MountFlags::NOATIME),
            "nodiratime" => Some(MountFlags::NODIRATIME),
            "relatime" => Some(MountFlags::RELATIME),
            "strictatime" => Some(MountFlags::STRICTATIME),
            _ => None,
        };
        if let Some(f) = set {
            o.flags |= f;
            continue;
        }
        let prop = match opt.as_str() {
            "private" => Some(MountPropagationFlags::PRIVATE),
            "rprivate" => Some(MountPropagationFlags::PRIVATE | MountPropagationFlags::REC),
            "shared" => Some(MountPropagationFlags::SHARED),
            "rshared" => Some(MountPropagationFlags::SHARED | MountPropagationFlags::REC),
            "slave" => Some(MountPropagationFlags::DOWNSTREAM),
            "rslave" => Some(MountPropagationFlags::DOWNSTREAM | MountPropagationFlags::REC),
            "unbindable" => Some(MountPropagationFlags::UNBINDABLE),
            "runbindable" => Some(MountPropagationFlags::UNBINDABLE | MountPropagationFlags::REC),
            _ => None,
        };
        if let Some(p) = prop {
            o.propagation = Some(p);
            continue;
        }
        match opt.as_str() {
            "rw" => o.flags.remove(MountFlags::RDONLY),
            "suid" => o.flags.remove(MountFlags::NOSUID),
            "dev" => o.flags.remove(MountFlags::NODEV),
            "exec" => o.flags.remove(MountFlags::NOEXEC),
            "bind" => o.bind = true,
            "rbind" => {
                o.bind = true;
                o.recursive = true;
            }
            "defaults" | "atime" => {}
            other => o.data.push(other.to_owned()),
        }
    }
    o
}

/// Resolves container path `dest` inside `root` the way the container will
/// see it: symlinks are followed with `root` as `/` and `..` stops at it.
/// Components that do not exist are taken literally. Returns the path
/// relative to `root`.
pub fn resolve_in_root(root: &Path, dest: &Path) -> io::Result<PathBuf> {
    let mut queue: VecDeque<OsString> = VecDeque::new();
    let push_front = |q: &mut VecDeque<OsString>, p: &Path| {
        for c in p.components().rev() {
            match c {
                Component::Normal(n) => q.push_front(n.to_owned()),
                Component::ParentDir => q.push_front("..".into()),
                _ => {}
            }
        }
    };
    push_front(&mut queue, dest);
    let mut current = PathBuf::new();
    let mut links = 0;
    while let Some(c) = queue.pop_front() {
        if c == ".." {
            current.pop();
            continue;
        }
        let candidate = current.join(&c);
        match std::fs::symlink_metadata(root.join(&candidate)) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > 40 {
                    return Err(io::Error::from_raw_os_error(libc::ELOOP));
                }
                let target = std::fs::read_link(root.join(&candidate))?;
                if target.is_absolute() {
                    current = PathBuf::new();
                }
                push_front(&mut queue, &target);
            }
            _ => current = candidate,
        }
    }
    Ok(current)
}

/// Makes `rel` (relative to `root`, already resolved) exist, as a directory
/// or an empty file; returns the container paths it created.
fn ensure_mount_point(root: &Path, rel: &Path, file: bool) -> io::Result<Vec<PathBuf>> {
    let mut created = Vec::new();
    let mut at = PathBuf::new();
    let parts: Vec<_> = rel.components().collect();
    for (i, c) in parts.iter().enumerate() {
        at.push(c);
        let host = root.join(&at);
        if std::fs::symlink_metadata(&host).is_ok() {
            continue;
        }
        if i + 1 == parts.len() && file {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&host)?;
        } else {
            std::fs::create_dir(&host)?;
        }
        created.push(Path::new("/").join(&at));
    }
    Ok(created)
}

/// Options the runtime needs beyond the spec.
#[derive(Debug)]
pub struct PlanInput<'a> {
    pub spec: &'a Spec,
    pub rootfs: &'a Path,
    pub cgroup_procs: Vec<OwnedFd>,
    /// The child's end of the socket the pty master is sent through; must
    /// be given when the spec asks for a terminal.
    pub terminal_socket: Option<OwnedFd>,
    /// Raw fds (kept open by the caller) to become the command's 0, 1, 2.
    pub stdio: Option<[i32; 3]>,
    pub init: bool,
}

pub fn prepare(input: PlanInput<'_>) -> Result<Prepared, RuntimeError> {
    let PlanInput {
        spec,
        rootfs,
        cgroup_procs,
        terminal_socket,
        stdio,
        init,
    } = input;
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| spec_err("no `process`"))?;
    let args = process.args().clone().unwrap_or_default();
    if args.is_empty() {
        return Err(spec_err("no command to run (empty `process.args`)"));
    }
    let linux = spec.linux().clone().unwrap_or_default();

    // Namespaces.
    let mut clone_flags = 0u64;
    let mut new_cgroupns = false;
    let mut loopback = false;
    for ns in linux.namespaces().clone().unwrap_or_default() {
        use oci_spec::runtime::LinuxNamespaceType as T;
        if let Some(path) = ns.path() {
            return Err(spec_err(format!(
                "joining the existing namespace `{}` is not supported",
                path.display()
            )));
        }
        clone_flags |= match ns.typ() {
            T::Mount => libc::CLONE_NEWNS as u64,
            T::Pid => libc::CLONE_NEWPID as u64,
            T::Uts => libc::CLONE_NEWUTS as u64,
            T::Ipc => libc::CLONE_NEWIPC as u64,
            T::Network => {
                loopback = true;
                libc::CLONE_NEWNET as u64
            }
            T::Cgroup => {
                new_cgroupns = true;
                0
            }
            other => return Err(spec_err(format!("namespace `{other:?}` is not supported"))),
        };
    }
    if clone_flags & libc::CLONE_NEWNS as u64 == 0 {
        return Err(spec_err("a mount namespace is required"));
    }

    let rootfs = std::path::absolute(rootfs).map_err(|source| RuntimeError::Prepare {
        path: rootfs.to_owned(),
        source,
    })?;
    let mut steps = Vec::new();
    let mut names = Vec::new();
    let mut created = Vec::new();
    let rootfs_c = cstr(rootfs.as_os_str().as_bytes())?;
    // The rootfs becomes a mount point of its own for pivot_root.
    steps.push(Step::Mount {
        source: rootfs_c.clone(),
        target: rootfs_c.clone(),
        fstype: cstr("")?,
        flags: MountFlags::BIND | MountFlags::REC,
        data: None,
    });
    names.push(format!(
        "bind-mount the rootfs `{}` on itself",
        rootfs.display()
    ));

    // Container dirs where the child mounted a fresh tmpfs: targets below
    // them are created by the child.
    let mut fresh_tmpfs: Vec<PathBuf> = Vec::new();
    for m in spec.mounts().clone().unwrap_or_default() {
        let dest = m.destination().clone();
        if !dest.is_absolute() {
            return Err(spec_err(format!(
                "mount destination `{}` is not absolute",
                dest.display()
            )));
        }
        let opts = parse_options(&m.options().clone().unwrap_or_default());
        let typ = m.typ().clone().unwrap_or_else(|| "bind".into());
        let bind = opts.bind || typ == "bind";
        if typ == "cgroup" || typ == "cgroup2" {
            tracing::debug!("skipping {typ} mount at `{}`", dest.display());
            continue;
        }
        let source = m.source().clone().unwrap_or_else(|| PathBuf::from(&typ));
        let under_tmpfs = fresh_tmpfs
            .iter()
            .any(|t| dest.starts_with(t) && dest != *t);
        let target = if under_tmpfs {
            let host = rootfs.join(dest.strip_prefix("/").unwrap());
            steps.push(Step::Mkdir {
                path: cstr(host.as_os_str().as_bytes())?,
            });
            names.push(format!("create mount point `{}`", dest.display()));
            host
        } else {
            let rel = resolve_in_root(&rootfs, &dest).map_err(|source| RuntimeError::Prepare {
                path: dest.clone(),
                source,
            })?;
            let is_file = bind && std::fs::metadata(&source).is_ok_and(|m| !m.is_dir());
            let made = ensure_mount_point(&rootfs, &rel, is_file).map_err(|source| {
                RuntimeError::Prepare {
                    path: dest.clone(),
                    source,
                }
            })?;
            created.extend(made);
            rootfs.join(rel)
        };
        let target_c = cstr(target.as_os_str().as_bytes())?;
        let what = format!("mount {typ} on `{}`", dest.display());
        if bind {
            let mut flags = MountFlags::BIND;
            if opts.recursive {
                flags |= MountFlags::REC;
            }
            steps.push(Step::Mount {
                source: cstr(source.as_os_str().as_bytes())?,
                target: target_c.clone(),
                fstype: cstr("")?,
                flags,
                data: None,
            });
            names.push(format!(
                "bind-mount `{}` on `{}`",
                source.display(),
                dest.display()
            ));
            if !opts.flags.is_empty() {
                steps.push(Step::Remount {
                    target: target_c.clone(),
                    flags: opts.flags,
                });
                names.push(format!(
                    "remount `{}` with {:?}",
                    dest.display(),
                    opts.flags
                ));
            }
        } else {
            let data = if opts.data.is_empty() {
                None
            } else {
                Some(cstr(opts.data.join(","))?)
            };
            steps.push(Step::Mount {
                source: cstr(source.as_os_str().as_bytes())?,
                target: target_c.clone(),
                fstype: cstr(&typ)?,
                flags: opts.flags,
                data,
            });
            names.push(what);
            if typ == "tmpfs" {
                fresh_tmpfs.push(dest.clone());
            }
        }
        if let Some(p) = opts.propagation {
            steps.push(Step::Propagation {
                target: target_c.clone(),
                flags: p,
            });
            names.push(format!("set propagation of `{}`", dest.display()));
        }
        if dest == Path::new("/dev") && typ == "tmpfs" {
            dev_nodes(&target, &mut steps, &mut names)?;
        }
    }
    let has_dev_tmpfs = spec
        .mounts()
        .iter()
        .flatten()
        .any(|m| m.destination() == Path::new("/dev") && m.typ().as_deref() == Some("tmpfs"));
    let null = if has_dev_tmpfs {
        cstr(rootfs.join("dev/null").as_os_str().as_bytes())?
    } else {
        cstr("/dev/null")?
    };
    for p in linux.masked_paths().clone().unwrap_or_default() {
        steps.push(Step::Mask {
            null: null.clone(),
            path: cstr(
                rootfs
                    .join(p.trim_start_matches('/'))
                    .as_os_str()
                    .as_bytes(),
            )?,
        });
        names.push(format!("mask `{p}`"));
    }
    for p in linux.readonly_paths().clone().unwrap_or_default() {
        steps.push(Step::ReadOnly {
            path: cstr(
                rootfs
                    .join(p.trim_start_matches('/'))
                    .as_os_str()
                    .as_bytes(),
            )?,
        });
        names.push(format!("make `{p}` read-only"));
    }

    // Working directory: created if missing, as Docker does for `-w`.
    let cwd = if process.cwd().as_os_str().is_empty() {
        PathBuf::from("/")
    } else {
        process.cwd().clone()
    };
    if !cwd.is_absolute() {
        return Err(spec_err(format!(
            "working directory `{}` is not absolute",
            cwd.display()
        )));
    }
    let rel = resolve_in_root(&rootfs, &cwd).map_err(|source| RuntimeError::Prepare {
        path: cwd.clone(),
        source,
    })?;
    created.extend(ensure_mount_point(&rootfs, &rel, false).map_err(|source| {
        RuntimeError::Prepare {
            path: cwd.clone(),
            source,
        }
    })?);

    // Credentials and capabilities.
    let user = process.user();
    let caps = cap_plan(process.capabilities().as_ref())?;

    // Environment and the executable's candidate paths (execvpe's search,
    // done inside the container after pivot_root).
    let env = process.env().clone().unwrap_or_default();
    let path_var = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    let exec_paths = if args[0].contains('/') {
        vec![cstr(&args[0])?]
    } else {
        path_var
            .split(':')
            .map(|d| if d.is_empty() { "." } else { d })
            .map(|d| cstr(format!("{}/{}", d.trim_end_matches('/'), args[0])))
            .collect::<Result<_, _>>()?
    };

    let rlimits = rlimits(process.rlimits().as_deref().unwrap_or(&[]))?;
    let terminal = match (process.terminal().unwrap_or(false), terminal_socket) {
        (false, _) => None,
        (true, None) => {
            return Err(spec_err(
                "`process.terminal` is set but the caller takes no terminal",
            ));
        }
        (true, Some(socket)) => {
            let size = process.console_size();
            Some(TerminalPlan {
                socket,
                rows: size.map(|s| s.height()).unwrap_or(0) as u16,
                cols: size.map(|s| s.width()).unwrap_or(0) as u16,
            })
        }
    };
    let propagation = match linux.rootfs_propagation().as_deref() {
        Some("shared") | Some("rshared") => MountPropagationFlags::SHARED,
        Some("slave") | Some("rslave") => MountPropagationFlags::DOWNSTREAM,
        _ => MountPropagationFlags::PRIVATE,
    } | MountPropagationFlags::REC;

    let plan = ChildPlan {
        parent: rustix::process::pidfd_open(
            rustix::process::getpid(),
            rustix::process::PidfdFlags::empty(),
        )
        .ok(),
        cgroup_procs,
        new_cgroupns,
        hostname: spec.hostname().as_deref().map(cstr).transpose()?,
        loopback,
        rootfs: rootfs_c,
        root_propagation: propagation,
        steps,
        readonly_root: spec
            .root()
            .as_ref()
            .and_then(|r| r.readonly())
            .unwrap_or(false),
        cwd: cstr(cwd.as_os_str().as_bytes())?,
        rlimits,
        terminal,
        stdio,
        caps,
        groups: user
            .additional_gids()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(rustix::process::Gid::from_raw)
            .collect(),
        gid: rustix::process::Gid::from_raw(user.gid()),
        uid: rustix::process::Uid::from_raw(user.uid()),
        no_new_privs: process.no_new_privileges().unwrap_or(false),
        init,
        exec_paths,
        argv: CStrArray::new(args.iter().map(cstr).collect::<Result<_, _>>()?),
        envp: CStrArray::new(env.iter().map(cstr).collect::<Result<_, _>>()?),
        report: None,
    };
    Ok(Prepared {
        plan,
        created,
        clone_flags,
        step_names: names,
    })
}

/// `/dev` contents after its tmpfs is mounted: the standard character
/// devices, the `/proc/self/fd` links and `ptmx` pointing into devpts.
fn dev_nodes(
    dev: &Path,
    steps: &mut Vec<Step>,
    names: &mut Vec<String>,
) -> Result<(), RuntimeError> {
    for (name, major, minor) in [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ] {
        steps.push(Step::Mknod {
            path: cstr(dev.join(name).as_os_str().as_bytes())?,
            major,
            minor,
        });
        names.push(format!("create device `/dev/{name}`"));
    }
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        steps.push(Step::Symlink {
            target: cstr(target)?,
            link: cstr(dev.join(link).as_os_str().as_bytes())?,
        });
        names.push(format!("create symlink `/dev/{link}`"));
    }
    Ok(())
}

fn cap_plan(c: Option<&oci_spec::runtime::LinuxCapabilities>) -> Result<CapPlan, RuntimeError> {
    let names =
        |set: &Option<oci_spec::runtime::Capabilities>| -> Result<Vec<String>, RuntimeError> {
            set.iter()
                .flatten()
                .map(|c| {
                    serde_json::to_value(c)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .ok_or_else(|| spec_err(format!("capability {c:?}")))
                })
                .collect()
        };
    let mask = |v: Vec<String>| -> Result<u64, RuntimeError> {
        caps::mask(v.iter().map(String::as_str))
            .map_err(|n| spec_err(format!("unknown capability `{n}`")))
    };
    let Some(c) = c else {
        // No capabilities object: the process keeps none.
        return Ok(CapPlan {
            drop_bounding: (0..=caps::last()).collect(),
            ..Default::default()
        });
    };
    let bounding = mask(names(c.bounding())?)?;
    let ambient = mask(names(c.ambient())?)?;
    Ok(CapPlan {
        drop_bounding: (0..=caps::last())
            .filter(|b| bounding & (1 << b) == 0)
            .collect(),
        effective: mask(names(c.effective())?)?,
        permitted: mask(names(c.permitted())?)?,
        inheritable: mask(names(c.inheritable())?)?,
        ambient: (0..=caps::last())
            .filter(|b| ambient & (1 << b) != 0)
            .collect(),
    })
}

/// Spec rlimits clamped to our current hard limits: without
/// CAP_SYS_RESOURCE a raise fails, and a container must not get more than
/// builder has anyway.
fn rlimits(
    list: &[oci_spec::runtime::PosixRlimit],
) -> Result<Vec<(rustix::process::Resource, rustix::process::Rlimit)>, RuntimeError> {
    use oci_spec::runtime::PosixRlimitType as T;
    use rustix::process::Resource as R;
    list.iter()
        .map(|l| {
            let res = match l.typ() {
                T::RlimitCpu => R::Cpu,
                T::RlimitFsize => R::Fsize,
                T::RlimitData => R::Data,
                T::RlimitStack => R::Stack,
                T::RlimitCore => R::Core,
                T::RlimitRss => R::Rss,
                T::RlimitNproc => R::Nproc,
                T::RlimitNofile => R::Nofile,
                T::RlimitMemlock => R::Memlock,
                T::RlimitAs => R::As,
                T::RlimitLocks => R::Locks,
                T::RlimitSigpending => R::Sigpending,
                T::RlimitMsgqueue => R::Msgqueue,
                T::RlimitNice => R::Nice,
                T::RlimitRtprio => R::Rtprio,
                T::RlimitRttime => R::Rttime,
            };
            let cur = rustix::process::getrlimit(res);
            let hard = match cur.maximum {
                Some(h) => l.hard().min(h),
                None => l.hard(),
            };
            let soft = l.soft().min(hard);
            Ok((
                res,
                rustix::process::Rlimit {
                    current: Some(soft),
                    maximum: Some(hard),
                },
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn options_split_into_flags_propagation_and_data() {
        let o = parse_options(
            &[
                "nosuid",
                "noexec",
                "mode=755",
                "size=65536k",
                "rprivate",
                "ro",
            ]
            .map(String::from),
        );
        assert_eq!(
            o.flags,
            MountFlags::NOSUID | MountFlags::NOEXEC | MountFlags::RDONLY
        );
        assert_eq!(
            o.propagation,
            Some(MountPropagationFlags::PRIVATE | MountPropagationFlags::REC)
        );
        assert_eq!(o.data, vec!["mode=755", "size=65536k"]);
        let b = parse_options(&["rbind".into(), "rw".into()]);
        assert!(b.bind && b.recursive && b.flags.is_empty());
    }

    #[test]
    fn resolution_stays_inside_the_root() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join("real/etc")).unwrap();
        symlink("/real/etc", r.join("etc")).unwrap();
        symlink("../../../../../../host", r.join("real/escape")).unwrap();
        symlink("/etc/../../..", r.join("up")).unwrap();
        symlink("loop2", r.join("loop1")).unwrap();
        symlink("loop1", r.join("loop2")).unwrap();
        let res = |p: &str| resolve_in_root(r, Path::new(p)).unwrap();
        assert_eq!(res("/etc/hosts"), PathBuf::from("real/etc/hosts"));
        assert_eq!(res("/real/escape/x"), PathBuf::from("host/x"));
        assert_eq!(res("/up/proc"), PathBuf::from("proc"));
        assert_eq!(res("/../../x"), PathBuf::from("x"));
        let err = resolve_in_root(r, Path::new("/loop1/x")).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ELOOP));
    }

    #[test]
    fn mount_points_are_created_and_reported() {
        let t = tempfile::tempdir().unwrap();
        let made = ensure_mount_point(t.path(), Path::new("etc/hosts"), true).unwrap();
        assert_eq!(
            made,
            vec![PathBuf::from("/etc"), PathBuf::from("/etc/hosts")]
        );
        assert!(t.path().join("etc/hosts").is_file());
        assert!(
            ensure_mount_point(t.path(), Path::new("etc/hosts"), true)
                .unwrap()
                .is_empty()
        );
    }
}
