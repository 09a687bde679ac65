//! Unpacked layers: `layers/<diffid-hex>/` holding `diff/` (the
//! overlay lowerdir, in overlayfs whiteout format) and `inventory.json` (a
//! record of the tree, written by the `layer` module, used by `check`).
//! A directory that still holds the `incomplete` marker is not a layer.

use std::fs;
use std::path::{Path, PathBuf};

use super::{Store, StoreError, Transaction, sync_dir, txn::remove_tree};
use crate::oci::DiffId;

pub(super) use super::txn::INCOMPLETE_MARKER;

/// Name of the inventory file beside `diff/`.
pub const INVENTORY_FILE: &str = "inventory.json";

/// A layer directory found in the store.
#[derive(Debug, Clone)]
pub struct LayerEntry {
    pub diff_id: DiffId,
    pub path: PathBuf,
    pub complete: bool,
}

impl LayerEntry {
    pub fn diff_path(&self) -> PathBuf {
        self.path.join("diff")
    }
    pub fn inventory_path(&self) -> PathBuf {
        self.path.join(INVENTORY_FILE)
    }
}

/// What `commit_layer` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerCommit {
    Committed,
    /// Another process committed the same layer first; ours was discarded.
    AlreadyPresent,
}

impl Store {
    /// Moves the transaction's unpacked layer into place as `diff_id`, with
    /// its inventory. The caller has verified that the tar it unpacked
    /// hashes to `diff_id`.
    pub fn commit_layer(
        &self,
        txn: &Transaction,
        diff_id: &DiffId,
        inventory_json: &[u8],
    ) -> Result<LayerCommit, StoreError> {
        let staged = txn.dir().join("layer");
        let inventory = staged.join(INVENTORY_FILE);
        fs::write(&inventory, inventory_json)
            .map_err(|e| StoreError::io("write", &inventory, e))?;
        // One syncfs flushes every file of the unpacked tree; far cheaper
        // than an fsync per file, and it runs before the rename that
        // publishes the layer.
        let staged_dir = fs::File::open(&staged).map_err(|e| StoreError::io("open", &staged, e))?;
        rustix::fs::syncfs(&staged_dir).map_err(|e| StoreError::io("syncfs", &staged, e.into()))?;

        // The marker goes before the rename, so the rename alone publishes
        // a complete layer: nothing incomplete ever appears in `layers/`
        // except during `discard_layer_dir` (under the exclusive lock).
        let marker = staged.join(INCOMPLETE_MARKER);
        fs::remove_file(&marker).map_err(|e| StoreError::io("remove", &marker, e))?;
        let dst = self.layer_path(diff_id);
        for _ in 0..3 {
            if self.has_layer(diff_id) {
                return Ok(LayerCommit::AlreadyPresent);
            }
            if dst.exists() {
                // Layers only ever appear complete (one rename publishes
                // them), so an existing one without the marker is
                // complete: another process won.
                if self.has_layer(diff_id) {
                    return Ok(LayerCommit::AlreadyPresent);
                }
                // A crash leftover of an interrupted `prune`.
                self.remove_incomplete_leftover(&dst)?;
            }
            match fs::rename(&staged, &dst) {
                Ok(()) => {
                    sync_dir(dst.parent().expect("layer path has a parent"))?;
                    return Ok(LayerCommit::Committed);
                }
                // Another process published the same layer first (or put a
                // leftover back): look again.
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTEMPTY | libc::EEXIST)) => {
                    tracing::debug!(layer = %diff_id, "layer committed concurrently");
                }
                Err(e) => return Err(StoreError::io("rename into place", &dst, e)),
            }
        }
        if self.has_layer(diff_id) {
            return Ok(LayerCommit::AlreadyPresent);
        }
        Err(StoreError::io(
            "rename into place",
            &dst,
            std::io::Error::other("the destination kept reappearing incomplete"),
        ))
    }

    /// Removes a layer directory safely: it is first marked incomplete and
    /// renamed into `tmp/`, so a crash halfway never leaves a layer that
    /// looks complete but is not. Only for a caller holding the store lock
    /// exclusively (`prune`).
    pub(super) fn discard_layer_dir(&self, dir: &Path) -> Result<(), StoreError> {
        let marker = dir.join(INCOMPLETE_MARKER);
        fs::write(&marker, b"").map_err(|e| StoreError::io("create", &marker, e))?;
        self.move_to_trash(dir)
    }

    /// Moves an incomplete layer directory aside and deletes it. Another
    /// committer may have replaced the leftover with its complete layer
    /// between our look and our rename; then that layer is put back.
    fn remove_incomplete_leftover(&self, dst: &Path) -> Result<(), StoreError> {
        let trash = tempfile::Builder::new()
            .prefix("trash-")
            .tempdir_in(self.tmp_dir())
            .map_err(|e| StoreError::io("create trash directory in", &self.tmp_dir(), e))?
            .keep();
        let moved = trash.join("layer");
        match fs::rename(dst, &moved) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                let _ = fs::remove_dir(&trash);
                return Err(StoreError::io("rename", dst, e));
            }
        }
        if moved.is_dir() && !moved.join(INCOMPLETE_MARKER).exists() {
            // Not a leftover after all: publish it again (or, if yet another
            // committer published meanwhile, drop this copy).
            match fs::rename(&moved, dst) {
                Ok(()) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTEMPTY | libc::EEXIST)) => {}
                Err(e) => return Err(StoreError::io("rename back into place", dst, e)),
            }
        }
        remove_tree(&trash).map_err(|e| StoreError::io("remove", &trash, e))
    }

    /// Renames `dir` to a unique name in `tmp/` and deletes it there. A
    /// directory that is already gone (another process moved it) is fine.
    fn move_to_trash(&self, dir: &Path) -> Result<(), StoreError> {
        let trash = tempfile::Builder::new()
            .prefix("trash-")
            .tempdir_in(self.tmp_dir())
            .map_err(|e| StoreError::io("create trash directory in", &self.tmp_dir(), e))?
            .keep();
        let target = trash.join("layer");
        match fs::rename(dir, &target) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                let _ = fs::remove_dir(&trash);
                return Err(StoreError::io("rename", dir, e));
            }
        }
        remove_tree(&trash).map_err(|e| StoreError::io("remove", &trash, e))
    }

    /// Every layer directory, complete or not.
    pub fn list_layers(&self) -> Result<Vec<LayerEntry>, StoreError> {
        let dir = self.builder_dir().join("layers");
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(|e| StoreError::io("read directory", &dir, e))? {
            let entry = entry.map_err(|e| StoreError::io("read directory", &dir, e))?;
            let Some(Ok(digest)) = entry.file_name().to_str().map(crate::oci::Digest::from_hex)
            else {
                continue;
            };
            let diff_id = DiffId(digest);
            out.push(LayerEntry {
                complete: self.has_layer(&diff_id),
                path: entry.path(),
                diff_id,
            });
        }
        out.sort_by(|a, b| a.diff_id.cmp(&b.diff_id));
        Ok(out)
    }
}
