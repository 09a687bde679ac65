//! cgroup v2 (unified): one directory, `<root>/builder/<id>`, with the
//! controllers enabled in `cgroup.subtree_control` of its ancestors.

use std::io;
use std::path::{Path, PathBuf};

use super::{CgroupError, Limits, PARENT, create_child, keyed, mkdir, read, write};

#[derive(Debug)]
pub struct Cgroup {
    dir: PathBuf,
}

/// Controllers the limits need.
const CONTROLLERS: [&str; 3] = ["pids", "memory", "cpu"];

impl Cgroup {
    pub fn create(root: &Path, id: &str, limits: &Limits) -> Result<Cgroup, CgroupError> {
        let parent = root.join(PARENT);
        let dir = parent.join(id);
        create_child(&parent, &dir, || {
            mkdir(&parent)?;
            enable_controllers(root)?;
            enable_controllers(&parent)
        })?;
        let cg = Cgroup { dir };
        if let Err(e) = cg.apply(limits) {
            let _ = std::fs::remove_dir(&cg.dir);
            super::remove_parent_if_empty(&parent);
            return Err(e);
        }
        Ok(cg)
    }

    pub fn existing(root: &Path, id: &str) -> Cgroup {
        Cgroup {
            dir: root.join(PARENT).join(id),
        }
    }

    fn apply(&self, limits: &Limits) -> Result<(), CgroupError> {
        if let Some(pids) = limits.pids {
            write(&self.dir.join("pids.max"), &pids.to_string())?;
        }
        if let Some(mem) = limits.memory {
            write(&self.dir.join("memory.max"), &mem.to_string())?;
            // memory.swap.max counts swap alone; absent when swap is off.
            let swap_file = self.dir.join("memory.swap.max");
            if let Some(total) = limits.memory_swap_effective()
                && swap_file.exists()
            {
                write(&swap_file, &(total - mem).to_string())?;
            }
        }
        if let Some(quota) = limits.cpu_quota {
            let period = limits.cpu_period.unwrap_or(100_000);
            write(&self.dir.join("cpu.max"), &format!("{quota} {period}"))?;
        }
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `cgroup.kill` exists from Linux 5.14.
    pub fn has_kill(&self) -> bool {
        self.dir.join("cgroup.kill").exists()
    }

    /// `oom_kill` of `memory.events`.
    pub fn oom_kills(&self) -> Result<u64, CgroupError> {
        let file = self.dir.join("memory.events");
        match std::fs::read_to_string(&file) {
            Ok(text) => Ok(keyed(&text, "oom_kill").unwrap_or(0)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(source) => Err(CgroupError::Read { path: file, source }),
        }
    }
}

/// Enables in `dir`'s `cgroup.subtree_control` the controllers we need
/// that `dir` offers (its `cgroup.controllers`) and that are not on yet.
fn enable_controllers(dir: &Path) -> Result<(), CgroupError> {
    let available = read(&dir.join("cgroup.controllers"))?;
    let control = dir.join("cgroup.subtree_control");
    let enabled = read(&control)?;
    let on: Vec<&str> = enabled.split_whitespace().collect();
    let want: Vec<String> = CONTROLLERS
        .iter()
        .filter(|c| available.split_whitespace().any(|a| a == **c) && !on.contains(c))
        .map(|c| format!("+{c}"))
        .collect();
    if want.is_empty() {
        return Ok(());
    }
    write(&control, &want.join(" "))
}

#[cfg(test)]
mod tests {
    use super::super::{Cgroup as AnyCgroup, Mode};
    use super::*;

    /// A fake cgroup2 root: plain files where cgroupfs has its interface.
    fn fake_root() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(
            t.path().join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .unwrap();
        std::fs::write(t.path().join("cgroup.subtree_control"), "").unwrap();
        let parent = t.path().join(PARENT);
        std::fs::create_dir(&parent).unwrap();
        std::fs::write(parent.join("cgroup.controllers"), "cpu memory pids\n").unwrap();
        std::fs::write(parent.join("cgroup.subtree_control"), "memory\n").unwrap();
        t
    }

    fn populate(dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        for f in [
            "memory.swap.max",
            "memory.events",
            "cgroup.procs",
            "cgroup.kill",
        ] {
            std::fs::write(dir.join(f), "").unwrap();
        }
    }

    #[test]
    fn limits_are_written_in_v2_format() {
        let root = fake_root();
        let dir = root.path().join(PARENT).join("c1");
        populate(&dir);
        let limits = Limits {
            memory: Some(64 << 20),
            memory_swap: None,
            pids: Some(32),
            cpu_quota: Some(50_000),
            cpu_period: Some(100_000),
        };
        let cg = AnyCgroup::create(root.path(), Mode::Unified, "c1", &limits).unwrap();
        let r = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
        assert_eq!(r("memory.max"), "67108864");
        assert_eq!(r("memory.swap.max"), "0");
        assert_eq!(r("pids.max"), "32");
        assert_eq!(r("cpu.max"), "50000 100000");
        let rs = |p: &Path| std::fs::read_to_string(p.join("cgroup.subtree_control")).unwrap();
        assert_eq!(rs(root.path()), "+pids +memory +cpu");
        assert_eq!(rs(&root.path().join(PARENT)), "+pids +cpu");
        assert_eq!(cg.v2_dir(), Some(dir.as_path()));
        assert_eq!(cg.procs_files(), vec![dir.join("cgroup.procs")]);
    }

    #[test]
    fn swap_limit_is_total_minus_memory() {
        let root = fake_root();
        let dir = root.path().join(PARENT).join("c2");
        populate(&dir);
        let limits = Limits {
            memory: Some(100),
            memory_swap: Some(300),
            ..Default::default()
        };
        AnyCgroup::create(root.path(), Mode::Unified, "c2", &limits).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("memory.swap.max")).unwrap(),
            "200"
        );
        assert!(
            !dir.join("pids.max").exists(),
            "unset limits are not written"
        );
    }

    #[test]
    fn oom_kills_and_kill_and_attach() {
        let root = fake_root();
        let dir = root.path().join(PARENT).join("c3");
        populate(&dir);
        let cg = AnyCgroup::create(root.path(), Mode::Unified, "c3", &Limits::default()).unwrap();
        assert_eq!(cg.oom_kills().unwrap(), 0);
        std::fs::write(
            dir.join("memory.events"),
            "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n",
        )
        .unwrap();
        assert_eq!(cg.oom_kills().unwrap(), 1);
        cg.kill_all().unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("cgroup.kill")).unwrap(),
            "1"
        );
        cg.attach(4242).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("cgroup.procs")).unwrap(),
            "4242"
        );
        std::fs::write(dir.join("cgroup.procs"), "7\n8\n").unwrap();
        assert_eq!(cg.pids().unwrap(), vec![7, 8]);
    }

    #[test]
    fn list_and_reopen_leftovers() {
        let root = fake_root();
        populate(&root.path().join(PARENT).join("old"));
        assert_eq!(
            super::super::list(root.path(), Mode::Unified).unwrap(),
            vec!["old"]
        );
        let cg = super::super::open_existing(root.path(), Mode::Unified, "old");
        assert_eq!(
            cg.v2_dir(),
            Some(root.path().join(PARENT).join("old").as_path())
        );
    }
}
