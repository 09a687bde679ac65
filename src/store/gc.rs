//! Garbage collection (`builder prune`): mark everything reachable from the
//! roots, sweep the rest. Roots are the images and manifest lists named in
//! `index.json` (a list keeps every child image it lists), the
//! layers of mounted images, the build cache's layers (unless
//! `prune --all` drops the cache first) and the layers of containers (whose
//! directories `container::remove_dead` deletes first when pruning). Must run with the store lock held exclusively
//! ([`LockMode::ExclusiveNoWait`](super::LockMode)), so no pull can be
//! between writing a blob and naming the image that references it.

use std::collections::BTreeSet;
use std::fs;

use super::{Reached, Store, StoreError, txn::remove_tree};
use crate::oci::{DiffId, Digest, ImageConfig};

/// What `prune` removed.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct PruneReport {
    pub blobs_removed: u64,
    pub blob_bytes_removed: u64,
    pub layers_removed: u64,
    pub temp_entries_removed: u64,
    pub cache_records_removed: u64,
}

/// What is reachable from the roots.
#[derive(Debug, Default)]
pub struct Live {
    pub blobs: BTreeSet<Digest>,
    pub layers: BTreeSet<DiffId>,
}

impl Store {
    /// Marks every blob and layer reachable from named images and mounts.
    ///
    /// A manifest or config that is missing or not valid JSON keeps what
    /// could be read live (`check` reports the damage). Any other read error
    /// (EIO, EACCES, EMFILE…) aborts: guessing would collect live data.
    pub fn live_set(&self) -> Result<Live, StoreError> {
        let mut live = Live::default();
        for record in self.list_images()? {
            live.blobs.insert(record.registry_digest());
            // A manifest list keeps its index and, through it, each child
            // image's manifest, config, layer blobs and unpacked layers.
            for reached in self.reachable(&record)? {
                let manifest = match reached {
                    Reached::Index { descriptor, .. } => {
                        live.blobs.insert(descriptor.digest);
                        continue;
                    }
                    Reached::Image {
                        descriptor,
                        manifest,
                    } => {
                        live.blobs.insert(descriptor.digest);
                        match manifest {
                            Ok(m) => m,
                            Err(_) => continue,
                        }
                    }
                };
                live.blobs.insert(manifest.config.digest.clone());
                live.blobs
                    .extend(manifest.layers.iter().map(|l| l.digest.clone()));
                let Some(bytes) = tolerate_damage(self.read_blob(&manifest.config.digest))? else {
                    continue;
                };
                if let Ok(config) = serde_json::from_slice::<ImageConfig>(&bytes) {
                    live.layers.extend(config.rootfs.diff_ids);
                }
            }
        }
        for record in self.list_mount_records()? {
            live.blobs.insert(record.manifest.clone());
            live.layers.extend(record.layers);
        }
        for entry in self.list_containers()? {
            if let Some(record) = entry.record {
                live.layers.extend(record.layers);
            }
        }
        for entry in self.list_cache()? {
            if let Some(record) = entry.record {
                live.blobs.insert(record.layer.digest);
                live.layers.insert(record.diff_id);
            }
        }
        Ok(live)
    }

    /// Deletes unreferenced blobs and layers and every temp entry; with
    /// `all`, the build cache first (else the cache keeps its layers).
    pub fn prune(&self, all: bool) -> Result<PruneReport, StoreError> {
        let cache_records_removed = if all { self.clear_cache()? } else { 0 };
        let live = self.live_set()?;
        let mut report = PruneReport {
            temp_entries_removed: self.remove_transactions(true)?,
            cache_records_removed,
            ..PruneReport::default()
        };
        let (blobs, _strays) = self.list_blobs()?;
        for digest in blobs.iter().filter(|d| !live.blobs.contains(d)) {
            let path = self.blob_path(digest);
            let size = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            fs::remove_file(&path).map_err(|e| StoreError::io("remove", &path, e))?;
            report.blobs_removed += 1;
            report.blob_bytes_removed += size;
        }
        report.temp_entries_removed += self.remove_atomic_write_leftovers()?;
        // A stray non-digest file in blobs/ (`_strays`) is reported by
        // `check`, not deleted: it is not ours to judge.
        for layer in self.list_layers()? {
            if !layer.complete || !live.layers.contains(&layer.diff_id) {
                self.discard_layer_dir(&layer.path)?;
                report.layers_removed += 1;
            }
        }
        Ok(report)
    }
}

/// `Ok(None)` for damage `check` reports (a missing blob, invalid JSON);
/// every other error is returned.
fn tolerate_damage<T>(result: Result<T, StoreError>) -> Result<Option<T>, StoreError> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(StoreError::BlobMissing(_) | StoreError::Json { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

impl Store {
    /// Removes `.tmp-*` files that an interrupted `write_atomic` left beside
    /// its target (the root, `oci/`, `mounts/<hex>/`). Only under the
    /// exclusive lock: a live writer's temp file looks the same.
    fn remove_atomic_write_leftovers(&self) -> Result<u64, StoreError> {
        let mut dirs = vec![self.root().to_path_buf(), self.layout_path()];
        let mounts = self.root().join("mounts");
        for entry in
            fs::read_dir(&mounts).map_err(|e| StoreError::io("read directory", &mounts, e))?
        {
            dirs.push(
                entry
                    .map_err(|e| StoreError::io("read directory", &mounts, e))?
                    .path(),
            );
        }
        let mut removed = 0;
        for dir in dirs.iter().filter(|d| d.is_dir()) {
            for entry in fs::read_dir(dir).map_err(|e| StoreError::io("read directory", dir, e))? {
                let path = entry
                    .map_err(|e| StoreError::io("read directory", dir, e))?
                    .path();
                let is_temp = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(super::ATOMIC_TEMP_PREFIX));
                if is_temp {
                    remove_tree(&path).map_err(|e| StoreError::io("remove", &path, e))?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }
}
