//! Container directories: `containers/<id>/`, one per container that
//! `builder run` or a build's RUN step creates. The store owns their
//! creation, record, lock and removal; the `container` module fills them
//! (overlay upper/work dirs, the mountpoint, the files bind-mounted at
//! `/etc/…`, the OCI bundle's `config.json`), as `layer` fills a
//! transaction's directory.
//!
//! Liveness: the process running a container holds `containers/<id>/lock`
//! (flock, exclusive) from creation until it has torn the container down.
//! flock dies with its process, even on `kill -9`, so a container whose
//! lock can be taken belongs to a builder that died: its mount and cgroup
//! may be left over, and the next builder command (or `prune`) cleans them
//! (`container::reap`). Creation, name checks and removal are serialised by
//! an flock on the `containers/` directory itself, so a half-created
//! container (directory made, lock not yet taken) is never seen as dead.
//!
//! `container.json` is replaced by rename but not fsynced: it describes a
//! run, not data; after a power loss an unreadable record only means
//! `builder rm` / `prune` removes the directory.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Store, StoreError, lock, read_json_record, txn::remove_tree};
use crate::oci::{DiffId, Digest};

/// The directory of containers, below the root.
pub const CONTAINERS_DIR: &str = "containers";
const RECORD_FILE: &str = "container.json";
const LOCK_FILE: &str = "lock";

/// What a container is and how far it got.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ContainerRecord {
    /// 64 lowercase hex digits; the first 12 are the short ID.
    pub id: String,
    /// Unique among the store's containers.
    pub name: String,
    /// The image as the user named it (or the build stage it belongs to).
    pub image: String,
    /// The image ID (config digest), when the container runs an image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_id: Option<Digest>,
    /// The rootfs layers, bottom first: kept live for `prune`.
    pub layers: Vec<DiffId>,
    /// The process's argv.
    pub command: Vec<String>,
    /// Unix seconds.
    pub created: u64,
    /// Remove the directory when the container ends (`--rm`).
    #[serde(default)]
    pub auto_remove: bool,
    /// The OCI runtime binary that runs it; `None` = builder's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    pub state: ContainerState,
}

/// Where a container is in its life.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum ContainerState {
    /// Directory and rootfs being prepared.
    Created,
    Running {
        started: u64,
    },
    /// The process ended with `code` (128 + N for signal N).
    Exited {
        code: i32,
        finished: u64,
        #[serde(default)]
        oom_killed: bool,
    },
    /// It never ran its command: setup failed, or the command could not be
    /// executed (`code` is what `builder run` exited with).
    Failed {
        code: i32,
        error: String,
        finished: u64,
    },
    /// The builder process running it died (`kill -9`); a later builder
    /// command tore down what it left.
    Killed {
        finished: u64,
    },
}

/// A container directory held by this process (its `lock` flocked).
/// Dropping it releases the lock and leaves the directory.
#[derive(Debug)]
pub struct ContainerLock {
    id: String,
    dir: PathBuf,
    _file: File,
}

impl ContainerLock {
    pub fn id(&self) -> &str {
        &self.id
    }
    /// `containers/<id>/`: the OCI bundle directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// The overlay upperdir: everything the container wrote.
    pub fn upper(&self) -> PathBuf {
        self.dir.join("upper")
    }
    /// The overlay workdir.
    pub fn work(&self) -> PathBuf {
        self.dir.join("work")
    }
    /// The rootfs mountpoint.
    pub fn merged(&self) -> PathBuf {
        self.dir.join("merged")
    }
}

/// A container directory found in the store.
#[derive(Debug, Clone)]
pub struct ContainerEntry {
    pub id: String,
    /// `None` when `container.json` is missing or unreadable.
    pub record: Option<ContainerRecord>,
    /// A builder process holds its lock.
    pub alive: bool,
}

/// Whether `id` is a valid container ID (64 lowercase hex digits).
pub fn is_container_id(id: &str) -> bool {
    id.len() == 64
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Docker's rule for container names: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
pub fn is_valid_container_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

impl Store {
    fn containers_dir(&self) -> PathBuf {
        self.builder_dir().join(CONTAINERS_DIR)
    }

    /// `containers/<id>/`, whether or not it exists.
    pub fn container_dir(&self, id: &str) -> Result<PathBuf, StoreError> {
        if !is_container_id(id) {
            return Err(StoreError::BadContainerId(id.to_owned()));
        }
        Ok(self.containers_dir().join(id))
    }

    /// Creates `containers/<id>/` with `upper/`, `work/`, `merged/` and
    /// the record, and returns it locked by this process. Fails if the
    /// directory or the name is taken.
    pub fn create_container(&self, record: &ContainerRecord) -> Result<ContainerLock, StoreError> {
        if !is_valid_container_name(&record.name) {
            return Err(StoreError::BadContainerName(record.name.clone()));
        }
        let dir = self.container_dir(&record.id)?;
        let _guard = lock::DirLock::acquire(&self.containers_dir())?;
        if let Some(other) = self
            .list_containers_unlocked()?
            .into_iter()
            .filter_map(|e| e.record)
            .find(|r| r.name == record.name)
        {
            return Err(StoreError::ContainerNameInUse {
                name: record.name.clone(),
                id: other.id,
            });
        }
        fs::create_dir(&dir).map_err(|e| StoreError::io("create", &dir, e))?;
        let lock_path = dir.join(LOCK_FILE);
        let file = File::create(&lock_path).map_err(|e| StoreError::io("create", &lock_path, e))?;
        file.lock()
            .map_err(|e| StoreError::io("lock", &lock_path, e))?;
        let held = ContainerLock {
            id: record.id.clone(),
            dir,
            _file: file,
        };
        for sub in [held.upper(), held.work(), held.merged()] {
            fs::create_dir(&sub).map_err(|e| StoreError::io("create", &sub, e))?;
        }
        self.update_container(&held, record)?;
        Ok(held)
    }

    /// Replaces the record of a container this process holds.
    pub fn update_container(
        &self,
        held: &ContainerLock,
        record: &ContainerRecord,
    ) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec_pretty(record).expect("a container record serialises");
        self.write_replace(&held.dir.join(RECORD_FILE), &bytes)
    }

    /// The record of container `id`, if it exists and is readable.
    pub fn container(&self, id: &str) -> Result<Option<ContainerRecord>, StoreError> {
        let path = self.container_dir(id)?.join(RECORD_FILE);
        read_json_record(&path)
    }

    /// Every container directory, sorted by creation time (oldest first).
    pub fn list_containers(&self) -> Result<Vec<ContainerEntry>, StoreError> {
        let _guard = lock::DirLock::acquire(&self.containers_dir())?;
        self.list_containers_unlocked()
    }

    fn list_containers_unlocked(&self) -> Result<Vec<ContainerEntry>, StoreError> {
        let dir = self.containers_dir();
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(|e| StoreError::io("read directory", &dir, e))? {
            let entry = entry.map_err(|e| StoreError::io("read directory", &dir, e))?;
            let Some(id) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if !is_container_id(&id) {
                continue;
            }
            let alive = lock::try_exclusive(&entry.path().join(LOCK_FILE))?.is_none()
                && entry.path().join(LOCK_FILE).exists();
            let record = self.container(&id).ok().flatten();
            out.push(ContainerEntry { id, record, alive });
        }
        out.sort_by_key(|e| (e.record.as_ref().map(|r| r.created), e.id.clone()));
        Ok(out)
    }

    /// Takes the lock of container `id` if no live process holds it (its
    /// builder ended or died); `None` while it runs.
    pub fn lock_container(&self, id: &str) -> Result<Option<ContainerLock>, StoreError> {
        let dir = self.container_dir(id)?;
        let _guard = lock::DirLock::acquire(&self.containers_dir())?;
        if !dir.is_dir() {
            return Ok(None);
        }
        let lock_path = dir.join(LOCK_FILE);
        // A container whose lock file is missing was interrupted between
        // mkdir and flock (a crash) and is dead; give it a lock file.
        if !lock_path.exists() {
            File::create(&lock_path).map_err(|e| StoreError::io("create", &lock_path, e))?;
        }
        Ok(lock::try_exclusive(&lock_path)?.map(|file| ContainerLock {
            id: id.to_owned(),
            dir,
            _file: file,
        }))
    }

    /// Removes a container's directory. Its rootfs must be unmounted: a
    /// mount at `merged/` is refused rather than deleted through. The
    /// directory is renamed into `tmp/` first (it keeps its flocked lock
    /// file), so a removal cut short is finished by `Store::open` or
    /// `prune` like any dead transaction.
    pub fn remove_container(&self, held: ContainerLock) -> Result<(), StoreError> {
        let merged = held.merged();
        if is_mount_boundary(&held.dir, &merged) {
            return Err(StoreError::ContainerMounted { path: merged });
        }
        let trash = self.tmp_dir().join(format!("container-{}", held.id));
        {
            let _guard = lock::DirLock::acquire(&self.containers_dir())?;
            let _ = remove_tree(&trash);
            fs::rename(&held.dir, &trash).map_err(|e| StoreError::io("rename", &held.dir, e))?;
        }
        remove_tree(&trash).map_err(|e| StoreError::io("remove", &trash, e))
    }
}

/// Whether `child` is on another filesystem than `parent` (something is
/// mounted there).
fn is_mount_boundary(parent: &Path, child: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (fs::symlink_metadata(parent), fs::symlink_metadata(child)) {
        (Ok(p), Ok(c)) => p.dev() != c.dev(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::LockMode;

    fn record(id: char, name: &str) -> ContainerRecord {
        ContainerRecord {
            id: id.to_string().repeat(64),
            name: name.into(),
            image: "img".into(),
            image_id: None,
            layers: vec![],
            command: vec!["true".into()],
            created: 1,
            auto_remove: false,
            runtime: None,
            state: ContainerState::Created,
        }
    }

    #[test]
    fn create_list_lock_remove() {
        let t = tempfile::tempdir().unwrap();
        let store = Store::open(t.path(), LockMode::Shared).unwrap();
        let held = store.create_container(&record('a', "one")).unwrap();
        assert!(held.upper().is_dir() && held.work().is_dir() && held.merged().is_dir());
        let err = store.create_container(&record('b', "one")).unwrap_err();
        assert!(
            matches!(err, StoreError::ContainerNameInUse { .. }),
            "{err}"
        );
        let list = store.list_containers().unwrap();
        assert_eq!(list.len(), 1);
        assert!(list[0].alive, "held by this process");
        assert!(store.lock_container(held.id()).unwrap().is_none());

        let id = held.id().to_owned();
        drop(held);
        assert!(!store.list_containers().unwrap()[0].alive);
        let again = store.lock_container(&id).unwrap().expect("dead now");
        let mut r = store.container(&id).unwrap().unwrap();
        r.state = ContainerState::Exited {
            code: 3,
            finished: 2,
            oom_killed: false,
        };
        store.update_container(&again, &r).unwrap();
        assert_eq!(store.container(&id).unwrap().unwrap(), r);
        store.remove_container(again).unwrap();
        assert!(store.list_containers().unwrap().is_empty());
        assert!(fs::read_dir(t.path().join("tmp")).unwrap().next().is_none());
    }

    #[test]
    fn ids_and_names_are_checked() {
        assert!(is_container_id(&"0a".repeat(32)));
        assert!(!is_container_id("../x"));
        assert!(!is_container_id(&"A".repeat(64)));
        assert!(is_valid_container_name("web_1.a-b"));
        assert!(!is_valid_container_name("-x"));
        assert!(!is_valid_container_name("a/b"));
        assert!(!is_valid_container_name(""));
    }
}
