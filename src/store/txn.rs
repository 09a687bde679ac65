//! Transactions: a private directory under `tmp/` where one process
//! writes a blob and/or unpacks a layer before the store commits them.
//!
//! Protocol (store-layout.md, "Crash safety"):
//! 1. `mkdir tmp/<random>/`, create `lock` in it and flock it
//!    exclusively, create the `incomplete` marker;
//! 2. the caller writes `blob` and/or fills `layer/`;
//! 3. commit renames them into `blobs/` and `layers/` (after fsync);
//! 4. drop removes the transaction directory with whatever is left.
//!
//! A transaction directory whose lock can be taken belongs to a dead process.
//! `Store::open` removes such leftovers once they are older than
//! [`STALE_AFTER`] (the age check closes the window between step 1's mkdir
//! and flock); `prune`, which holds the store alone, removes all of them.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::{Store, StoreError, lock};

/// How old an unlocked transaction must be before `Store::open` removes it.
const STALE_AFTER: Duration = Duration::from_secs(10);

const LOCK_FILE: &str = "lock";
pub(super) const INCOMPLETE_MARKER: &str = "incomplete";

/// An in-flight write. Dropping it without committing discards everything.
pub struct Transaction {
    dir: PathBuf,
    _lock: File,
}

impl Transaction {
    /// Where the caller writes a blob before [`Store::commit_blob`].
    pub fn blob_path(&self) -> PathBuf {
        self.dir.join("blob")
    }

    /// Creates the blob file for the caller to write.
    pub fn create_blob(&self) -> Result<File, StoreError> {
        let path = self.blob_path();
        File::create(&path).map_err(|e| StoreError::io("create", &path, e))
    }

    /// The directory the caller unpacks a layer into before
    /// [`Store::commit_layer`]; created empty.
    pub fn layer_dir(&self) -> PathBuf {
        self.dir.join("layer").join("diff")
    }

    /// A directory for files the caller needs while preparing the commit
    /// (an ADD's downloads); created on first use, removed with the
    /// transaction.
    pub fn scratch_dir(&self) -> Result<PathBuf, StoreError> {
        let dir = self.dir.join("scratch");
        fs::create_dir_all(&dir).map_err(|e| StoreError::io("create", &dir, e))?;
        Ok(dir)
    }

    /// Makes `dir` (a directory on the store's filesystem, e.g. a
    /// container's overlay upper after a build step) the transaction's
    /// layer directory, by rename: a layer made by a build is never
    /// unpacked a second time. Its root becomes 0755, owned by root, like
    /// any layer's.
    pub fn adopt_layer_dir(&self, dir: &Path) -> Result<(), StoreError> {
        let target = self.layer_dir();
        fs::remove_dir(&target).map_err(|e| StoreError::io("remove", &target, e))?;
        fs::rename(dir, &target).map_err(|e| StoreError::io("rename", dir, e))?;
        use std::os::unix::fs::PermissionsExt;
        std::os::unix::fs::lchown(&target, Some(0), Some(0))
            .map_err(|e| StoreError::io("chown", &target, e))?;
        fs::set_permissions(&target, fs::Permissions::from_mode(0o755))
            .map_err(|e| StoreError::io("chmod", &target, e))
    }

    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        // Best effort: a leftover is removed by the next `Store::open` or `prune`.
        if let Err(e) = remove_tree(&self.dir) {
            tracing::debug!(dir = %self.dir.display(), error = %e, "could not remove transaction");
        }
    }
}

impl Store {
    /// Starts a transaction.
    pub fn begin(&self) -> Result<Transaction, StoreError> {
        let dir = tempfile::Builder::new()
            .prefix("txn-")
            .tempdir_in(self.tmp_dir())
            .map_err(|e| StoreError::io("create transaction in", &self.tmp_dir(), e))?
            .keep();
        let lock_path = dir.join(LOCK_FILE);
        let lock = File::create(&lock_path).map_err(|e| StoreError::io("create", &lock_path, e))?;
        lock.lock()
            .map_err(|e| StoreError::io("lock", &lock_path, e))?;
        let layer_diff = dir.join("layer").join("diff");
        fs::create_dir_all(&layer_diff).map_err(|e| StoreError::io("create", &layer_diff, e))?;
        // A layer tar without a `./` entry leaves the root's mode as created,
        // and it becomes the image's `/`: make it 0755 whatever the umask.
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&layer_diff, fs::Permissions::from_mode(0o755))
            .map_err(|e| StoreError::io("chmod", &layer_diff, e))?;
        let marker = dir.join("layer").join(INCOMPLETE_MARKER);
        File::create(&marker).map_err(|e| StoreError::io("create", &marker, e))?;
        Ok(Transaction { dir, _lock: lock })
    }

    /// Removes transactions left by dead processes (see the module doc).
    /// With `all`, removes every transaction: only for a caller holding the
    /// store lock exclusively.
    pub(super) fn remove_transactions(&self, all: bool) -> Result<u64, StoreError> {
        let tmp = self.tmp_dir();
        let entries = fs::read_dir(&tmp).map_err(|e| StoreError::io("read directory", &tmp, e))?;
        let mut removed = 0;
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::io("read directory", &tmp, e))?;
            let path = entry.path();
            if !all {
                let old_enough = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .map(|t| SystemTime::now().duration_since(t).unwrap_or_default() > STALE_AFTER)
                    .unwrap_or(false);
                if !old_enough || lock::try_exclusive(&path.join(LOCK_FILE))?.is_none() {
                    continue;
                }
            }
            // Claim the leftover with a rename first: several processes may
            // open the store at once and find the same leftover, and only
            // the one whose rename succeeds deletes it.
            let claimed = tmp.join(format!(".removing-{}", unique_suffix()));
            match fs::rename(&path, &claimed) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StoreError::io("rename", &path, e)),
            }
            remove_tree(&claimed).map_err(|e| StoreError::io("remove", &claimed, e))?;
            removed += 1;
        }
        Ok(removed)
    }

    pub(super) fn remove_stale_transactions(&self) -> Result<(), StoreError> {
        self.remove_transactions(false).map(|_| ())
    }
}

/// A name no other process will pick: pid plus a per-process counter.
fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Removes a file or a directory tree, without following symlinks. Unpacked
/// layers contain read-only directories, so permissions are widened first.
pub(super) fn remove_tree(path: &Path) -> std::io::Result<()> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
        Ok(m) if m.is_dir() => match fs::remove_dir_all(path) {
            Ok(()) => Ok(()),
            Err(_) => {
                make_dirs_writable(path)?;
                fs::remove_dir_all(path)
            }
        },
        Ok(_) => fs::remove_file(path),
    }
}

fn make_dirs_writable(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for entry in walkdir::WalkDir::new(path).follow_links(false) {
        let entry = entry?;
        if entry.file_type().is_dir() {
            let mode = entry.metadata()?.permissions().mode();
            if mode & 0o700 != 0o700 {
                fs::set_permissions(entry.path(), fs::Permissions::from_mode(mode | 0o700))?;
            }
        }
    }
    Ok(())
}
