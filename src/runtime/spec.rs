//! Docker-like default OCI specs: the mounts, masked and read-only paths,
//! namespaces and capability set `docker run` gives a container, as one
//! value that both this runtime and runc accept.

use std::path::PathBuf;

use oci_spec::runtime::Spec;
use serde_json::json;

use super::cgroup::Limits;

/// Paths hidden from the container (moby `oci/defaults.go`).
pub const MASKED_PATHS: [&str; 12] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths the container sees read-only.
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// A host path bind-mounted into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub source: PathBuf,
    pub destination: PathBuf,
    pub read_only: bool,
}

/// What varies between containers; everything else is Docker's default.
#[derive(Debug, Clone, Default)]
pub struct ContainerConfig {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub hostname: String,
    /// Capability names; `None` = Docker's default set.
    pub capabilities: Option<Vec<String>>,
    pub no_new_privileges: bool,
    /// Share the host's network namespace instead of a new, empty one.
    pub host_network: bool,
    pub read_only_root: bool,
    pub limits: Limits,
    /// Files bind-mounted at `/etc/hosts`, `/etc/resolv.conf`, `/etc/hostname`.
    pub etc_files: Vec<Bind>,
    pub binds: Vec<Bind>,
    pub tmpfs: Vec<PathBuf>,
    pub terminal: bool,
    /// Initial pty size (rows, columns) when `terminal` is set.
    pub console_size: Option<(u16, u16)>,
    /// `linux.cgroupsPath` for an OCI runtime (this runtime names the
    /// cgroup by `RunOptions::id` instead).
    pub cgroups_path: Option<String>,
}

/// Builds the spec. `rootfs` is recorded as `root.path` (runc reads it).
pub fn docker_spec(c: &ContainerConfig, rootfs: &std::path::Path) -> Spec {
    let caps: Vec<String> = c.capabilities.clone().unwrap_or_else(|| {
        super::caps::DOCKER_DEFAULT
            .iter()
            .map(|s| s.to_string())
            .collect()
    });
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
        json!({"type": "cgroup"}),
    ];
    if !c.host_network {
        namespaces.push(json!({"type": "network"}));
    }
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
    ];
    for b in c.etc_files.iter().chain(&c.binds) {
        let mut options = vec!["rbind", "rprivate"];
        if b.read_only {
            options.push("ro");
        }
        mounts.push(json!({"destination": b.destination, "type": "bind", "source": b.source, "options": options}));
    }
    for t in &c.tmpfs {
        mounts.push(json!({"destination": t, "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "noexec"]}));
    }
    let mut resources = serde_json::Map::new();
    if let Some(m) = c.limits.memory {
        let mut mem = json!({"limit": m});
        if let Some(s) = c.limits.memory_swap {
            mem["swap"] = json!(s);
        }
        resources.insert("memory".into(), mem);
    }
    if let Some(p) = c.limits.pids {
        resources.insert("pids".into(), json!({"limit": p}));
    }
    if let Some(q) = c.limits.cpu_quota {
        resources.insert(
            "cpu".into(),
            json!({"quota": q, "period": c.limits.cpu_period.unwrap_or(100_000)}),
        );
    }
    let mut value = json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": c.terminal,
            "user": {"uid": c.uid, "gid": c.gid, "additionalGids": c.additional_gids},
            "args": c.args,
            "env": c.env,
            "cwd": if c.cwd.is_empty() { "/" } else { c.cwd.as_str() },
            "capabilities": {
                "bounding": caps, "effective": caps, "permitted": caps, "inheritable": [], "ambient": []
            },
            "noNewPrivileges": c.no_new_privileges,
        },
        "root": {"path": rootfs, "readonly": c.read_only_root},
        "hostname": c.hostname,
        "mounts": mounts,
        "linux": {
            "namespaces": namespaces,
            "maskedPaths": MASKED_PATHS,
            "readonlyPaths": READONLY_PATHS,
            "resources": resources,
        },
    });
    if let Some((rows, cols)) = c.console_size {
        value["process"]["consoleSize"] = json!({"height": rows, "width": cols});
    }
    if let Some(path) = &c.cgroups_path {
        value["linux"]["cgroupsPath"] = json!(path);
    }
    serde_json::from_value(value).expect("the default spec is valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_spec_has_dockers_shape() {
        let c = ContainerConfig {
            args: vec!["true".into()],
            hostname: "abc".into(),
            limits: Limits {
                memory: Some(64 << 20),
                pids: Some(32),
                ..Default::default()
            },
            ..Default::default()
        };
        let s = docker_spec(&c, std::path::Path::new("/r"));
        let linux = s.linux().as_ref().unwrap();
        assert_eq!(linux.namespaces().as_ref().unwrap().len(), 6);
        assert_eq!(
            linux.masked_paths().as_ref().unwrap().len(),
            MASKED_PATHS.len()
        );
        let limits = Limits::from_resources(linux.resources().as_ref().unwrap());
        assert_eq!(limits.memory, Some(64 << 20));
        assert_eq!(limits.pids, Some(32));
        let caps = s
            .process()
            .as_ref()
            .unwrap()
            .capabilities()
            .as_ref()
            .unwrap();
        assert_eq!(caps.bounding().as_ref().unwrap().len(), 14);
        let host = docker_spec(
            &ContainerConfig {
                host_network: true,
                ..c
            },
            std::path::Path::new("/r"),
        );
        assert_eq!(
            host.linux()
                .as_ref()
                .unwrap()
                .namespaces()
                .as_ref()
                .unwrap()
                .len(),
            5
        );
    }
}
