//! flock-based locks. Three kinds, none of which is ever held while waiting
//! for another of a higher kind, so there is no lock-order deadlock:
//! 1. the store lock (`lock`): shared by every process, exclusive for
//!    `prune`;
//! 2. the index lock (`index.lock`): exclusive for the few
//!    milliseconds of an `index.json` read-modify-write;
//! 3. a transaction lock (`tmp/<txn>/lock`): exclusive, held by the
//!    process writing that transaction for its whole life. A transaction
//!    whose lock can be taken belongs to a dead process and may be removed.
//!
//! flock locks are released by the kernel when the process dies (even by
//! `kill -9`), which is what makes leftover detection reliable.

use std::fs::{File, OpenOptions};
use std::path::Path;

use super::StoreError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    Shared,
    /// Exclusive; fails at once with [`StoreError::Busy`] rather than waiting,
    /// so `prune` does not hang behind a long pull.
    ExclusiveNoWait,
}

fn open_lock_file(path: &Path) -> Result<File, StoreError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| StoreError::io("open lock file", path, e))
}

pub(super) struct StoreLock {
    _file: File,
}

impl StoreLock {
    pub(super) fn acquire(path: &Path, mode: LockMode) -> Result<Self, StoreError> {
        let file = open_lock_file(path)?;
        match mode {
            LockMode::Shared => file
                .lock_shared()
                .map_err(|e| StoreError::io("lock", path, e))?,
            LockMode::ExclusiveNoWait => match file.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(StoreError::Busy {
                        path: path.to_path_buf(),
                    });
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(StoreError::io("lock", path, e));
                }
            },
        }
        Ok(Self { _file: file })
    }
}

/// Held for the duration of an `index.json` rewrite.
pub(super) struct IndexLock {
    _file: File,
}

impl IndexLock {
    pub(super) fn acquire(path: &Path) -> Result<Self, StoreError> {
        let file = open_lock_file(path)?;
        file.lock().map_err(|e| StoreError::io("lock", path, e))?;
        Ok(Self { _file: file })
    }
}

/// An exclusive flock on a directory itself (opened read-only), held for a
/// short critical section such as creating a container.
pub(super) struct DirLock {
    _file: File,
}

impl DirLock {
    pub(super) fn acquire(dir: &Path) -> Result<Self, StoreError> {
        let file = File::open(dir).map_err(|e| StoreError::io("open", dir, e))?;
        file.lock().map_err(|e| StoreError::io("lock", dir, e))?;
        Ok(Self { _file: file })
    }
}

/// Tries to take an exclusive lock without waiting: `Ok(None)` when another
/// process holds it or the lock file does not exist (yet).
pub(super) fn try_exclusive(path: &Path) -> Result<Option<File>, StoreError> {
    let file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::io("open lock file", path, e)),
    };
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(StoreError::io("lock", path, e)),
    }
}
