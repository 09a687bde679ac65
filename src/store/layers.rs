//! Unpacked layers: `layers/<diffid-hex>/` holding `diff/` (the
//! overlay lowerdir, in overlayfs whiteout format) and `inventory.json` (a
//! record of the tree, written by the `layer` module, used by `check`).
//! A directory that still holds the `incomplete` marker is not a layer.

use std::fs;
use std::path::PathBuf;

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

        let dst = self.layer_path(diff_id);
        if dst.exists() {
            if self.has_layer(diff_id) {
                return Ok(LayerCommit::AlreadyPresent);
            }
            // A leftover with the incomplete marker (a crash mid-commit, or
            // mid-prune): replace it.
            self.discard_layer_dir(&dst)?;
        }
        match fs::rename(&staged, &dst) {
            Ok(()) => {}
            // Lost a race with another process committing the same layer.
            Err(e) if dst.exists() && self.has_layer(diff_id) => {
                tracing::debug!(layer = %diff_id, error = %e, "layer committed concurrently");
                return Ok(LayerCommit::AlreadyPresent);
            }
            Err(e) => return Err(StoreError::io("rename into place", &dst, e)),
        }
        let marker = dst.join(INCOMPLETE_MARKER);
        fs::remove_file(&marker).map_err(|e| StoreError::io("remove", &marker, e))?;
        sync_dir(&dst)?;
        sync_dir(dst.parent().expect("layer path has a parent"))?;
        Ok(LayerCommit::Committed)
    }

    /// Removes a layer directory safely: it is first marked incomplete and
    /// renamed into `tmp/`, so a crash halfway never leaves a layer that
    /// looks complete but is not.
    pub(super) fn discard_layer_dir(&self, dir: &std::path::Path) -> Result<(), StoreError> {
        let marker = dir.join(INCOMPLETE_MARKER);
        fs::write(&marker, b"").map_err(|e| StoreError::io("create", &marker, e))?;
        let trash = self.tmp_dir().join(format!(
            "trash-{}",
            dir.file_name().and_then(|n| n.to_str()).unwrap_or("layer")
        ));
        let _ = remove_tree(&trash);
        fs::rename(dir, &trash).map_err(|e| StoreError::io("rename", dir, e))?;
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
