//! cgroup v1 (legacy and hybrid): one directory per controller hierarchy,
//! `<root>/<controller>/builder/<id>`.
//!
//! `pids` is always joined: it tracks every process of the container (for
//! kill-all and removal) at almost no cost. `memory` and `cpu` are joined
//! only when limited, which keeps a plain run at one mkdir.

use std::path::{Path, PathBuf};

use super::{CgroupError, Limits, PARENT, create_child, keyed, mkdir, read, write};

#[derive(Debug)]
pub struct Cgroup {
    /// `(controller, directory)`, `pids` first.
    dirs: Vec<(&'static str, PathBuf)>,
}

impl Cgroup {
    pub fn create(root: &Path, id: &str, limits: &Limits) -> Result<Cgroup, CgroupError> {
        let mut controllers = vec!["pids"];
        if limits.memory.is_some() {
            controllers.push("memory");
        }
        if limits.cpu_quota.is_some() {
            controllers.push("cpu");
        }
        let mut cg = Cgroup { dirs: Vec::new() };
        for c in controllers {
            let parent = root.join(c).join(PARENT);
            let dir = parent.join(id);
            if let Err(e) = create_child(&parent, &dir, || mkdir(&parent)) {
                cg.cleanup();
                return Err(e);
            }
            cg.dirs.push((c, dir));
        }
        if let Err(e) = cg.apply(limits) {
            cg.cleanup();
            return Err(e);
        }
        Ok(cg)
    }

    pub fn existing(root: &Path, id: &str) -> Cgroup {
        let dirs = ["pids", "memory", "cpu"]
            .into_iter()
            .map(|c| (c, root.join(c).join(PARENT).join(id)))
            .filter(|(_, d)| d.is_dir())
            .collect();
        Cgroup { dirs }
    }

    fn dir_of(&self, controller: &str) -> Option<&Path> {
        self.dirs
            .iter()
            .find(|(c, _)| *c == controller)
            .map(|(_, d)| d.as_path())
    }

    fn apply(&self, limits: &Limits) -> Result<(), CgroupError> {
        if let (Some(dir), Some(pids)) = (self.dir_of("pids"), limits.pids) {
            write(&dir.join("pids.max"), &pids.to_string())?;
        }
        if let (Some(dir), Some(mem)) = (self.dir_of("memory"), limits.memory) {
            write(&dir.join("memory.limit_in_bytes"), &mem.to_string())?;
            // Without swap accounting the file is absent and memory alone
            // already bounds the container.
            let memsw = dir.join("memory.memsw.limit_in_bytes");
            if let Some(swap) = limits.memory_swap_effective()
                && memsw.exists()
            {
                write(&memsw, &swap.to_string())?;
            }
        }
        if let (Some(dir), Some(quota)) = (self.dir_of("cpu"), limits.cpu_quota) {
            let period = limits.cpu_period.unwrap_or(100_000);
            write(&dir.join("cpu.cfs_period_us"), &period.to_string())?;
            write(&dir.join("cpu.cfs_quota_us"), &quota.to_string())?;
        }
        Ok(())
    }

    pub fn dirs(&self) -> impl Iterator<Item = PathBuf> + '_ {
        self.dirs.iter().map(|(_, d)| d.clone())
    }

    /// The hierarchy that sees every process of the container.
    pub fn tracking_dir(&self) -> &Path {
        self.dirs
            .first()
            .map(|(_, d)| d.as_path())
            .unwrap_or(Path::new("/nonexistent"))
    }

    /// `oom_kill` of `memory.oom_control` (Linux ≥ 4.13); 0 without a
    /// memory cgroup.
    pub fn oom_kills(&self) -> Result<u64, CgroupError> {
        match self.dir_of("memory") {
            Some(dir) => {
                Ok(keyed(&read(&dir.join("memory.oom_control"))?, "oom_kill").unwrap_or(0))
            }
            None => Ok(0),
        }
    }

    fn cleanup(&self) {
        for (_, d) in self.dirs.iter().rev() {
            let _ = std::fs::remove_dir(d);
            if let Some(parent) = d.parent() {
                super::remove_parent_if_empty(parent);
            }
        }
    }
}
