//! Records of images mounted by `builder mount`: such a mount outlives the
//! process that made it, so the store keeps `mounts/<manifest-hex>/`
//! with `record.json` and the `merged/` mountpoint. `prune` treats recorded
//! layers as live, so a mounted image's layers are never collected.

use std::fs;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Store, StoreError, read_json_record, txn::remove_tree};
use crate::oci::{DiffId, Digest};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MountRecord {
    pub name: String,
    pub manifest: Digest,
    pub layers: Vec<DiffId>,
}

const RECORD_FILE: &str = "record.json";

impl Store {
    fn mount_dir(&self, manifest: &Digest) -> PathBuf {
        self.builder_dir().join("mounts").join(manifest.hex())
    }

    /// The mountpoint for an image's read-only rootfs.
    pub fn mountpoint(&self, manifest: &Digest) -> PathBuf {
        self.mount_dir(manifest).join("merged")
    }

    /// Records a mount (before mounting, so a crash leaves a record that
    /// `umount` or `prune` can clean) and creates its mountpoint.
    pub fn add_mount_record(&self, record: &MountRecord) -> Result<PathBuf, StoreError> {
        let dir = self.mount_dir(&record.manifest);
        let merged = dir.join("merged");
        fs::create_dir_all(&merged).map_err(|e| StoreError::io("create", &merged, e))?;
        let bytes = serde_json::to_vec_pretty(record).expect("a mount record serialises");
        self.write_atomic(&dir.join(RECORD_FILE), &bytes)?;
        Ok(merged)
    }

    pub fn mount_record(&self, manifest: &Digest) -> Result<Option<MountRecord>, StoreError> {
        let path = self.mount_dir(manifest).join(RECORD_FILE);
        read_json_record(&path)
    }

    /// Removes a mount record and its (already unmounted) mountpoint.
    pub fn remove_mount_record(&self, manifest: &Digest) -> Result<(), StoreError> {
        let dir = self.mount_dir(manifest);
        remove_tree(&dir).map_err(|e| StoreError::io("remove", &dir, e))
    }

    pub fn list_mount_records(&self) -> Result<Vec<MountRecord>, StoreError> {
        let dir = self.builder_dir().join("mounts");
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(|e| StoreError::io("read directory", &dir, e))? {
            let entry = entry.map_err(|e| StoreError::io("read directory", &dir, e))?;
            let Some(Ok(digest)) = entry.file_name().to_str().map(Digest::from_hex) else {
                continue;
            };
            if let Some(record) = self.mount_record(&digest)? {
                out.push(record);
            }
        }
        Ok(out)
    }
}
