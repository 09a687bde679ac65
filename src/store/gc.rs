//! Garbage collection (`builder prune`): mark everything reachable from the
//! roots, sweep the rest. Roots are the images named in `index.json`, the
//! layers of mounted images and the layers of containers (whose
//! directories `container::remove_dead` deletes first when pruning). Must run with the store lock held exclusively
//! ([`LockMode::ExclusiveNoWait`](super::LockMode)), so no pull can be
//! between writing a blob and naming the image that references it.

use std::collections::BTreeSet;
use std::fs;

use super::{Store, StoreError, txn::remove_tree};
use crate::oci::{DiffId, Digest, ImageConfig};

/// What `prune` removed.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct PruneReport {
    pub blobs_removed: u64,
    pub blob_bytes_removed: u64,
    pub layers_removed: u64,
    pub temp_entries_removed: u64,
}

/// What is reachable from the roots.
#[derive(Debug, Default)]
pub struct Live {
    pub blobs: BTreeSet<Digest>,
    pub layers: BTreeSet<DiffId>,
}

impl Store {
    /// Marks every blob and layer reachable from named images and mounts.
    /// A manifest or config that cannot be read keeps what could be read
    /// live; `check` reports the damage.
    pub fn live_set(&self) -> Result<Live, StoreError> {
        let mut live = Live::default();
        for record in self.list_images()? {
            live.blobs.insert(record.manifest.digest.clone());
            live.blobs.insert(record.registry_digest());
            let Ok((_, manifest)) = self.manifest(&record.manifest.digest) else {
                continue;
            };
            live.blobs.insert(manifest.config.digest.clone());
            live.blobs
                .extend(manifest.layers.iter().map(|l| l.digest.clone()));
            if let Ok(bytes) = self.read_blob(&manifest.config.digest)
                && let Ok(config) = serde_json::from_slice::<ImageConfig>(&bytes)
            {
                live.layers.extend(config.rootfs.diff_ids);
            }
        }
        for record in self.list_mount_records()? {
            live.layers.extend(record.layers);
        }
        for entry in self.list_containers()? {
            if let Some(record) = entry.record {
                live.layers.extend(record.layers);
            }
        }
        Ok(live)
    }

    /// Deletes unreferenced blobs and layers and every temp entry.
    pub fn prune(&self) -> Result<PruneReport, StoreError> {
        let live = self.live_set()?;
        let mut report = PruneReport {
            temp_entries_removed: self.remove_transactions(true)?,
            ..PruneReport::default()
        };
        let (blobs, strays) = self.list_blobs()?;
        for digest in blobs.iter().filter(|d| !live.blobs.contains(d)) {
            let path = self.blob_path(digest);
            let size = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            fs::remove_file(&path).map_err(|e| StoreError::io("remove", &path, e))?;
            report.blobs_removed += 1;
            report.blob_bytes_removed += size;
        }
        // Half-written temp files of older tools (`.tmp-*` from an
        // interrupted atomic write) are not blobs.
        for stray in strays {
            if stray
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(".tmp-"))
            {
                remove_tree(&stray).map_err(|e| StoreError::io("remove", &stray, e))?;
                report.temp_entries_removed += 1;
            }
        }
        for layer in self.list_layers()? {
            if !layer.complete || !live.layers.contains(&layer.diff_id) {
                self.discard_layer_dir(&layer.path)?;
                report.layers_removed += 1;
            }
        }
        Ok(report)
    }
}
