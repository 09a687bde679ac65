//! The build cache: `cache/steps/<key>.json`, one record per build step
//! that made a layer, and `cache/builds/<id>.json`, what the last build of
//! a Containerfile looked like (for `build --explain-cache`). The store
//! owns where they live, their liveness and their removal; the `build`
//! module decides what keys and build records mean (the store treats a
//! build record as opaque JSON).
//!
//! A step record names its layer by blob descriptor and DiffID; both stay
//! live for `prune` while the record exists, and `prune --all` drops every
//! record first. A record is written after its blob and layer are
//! committed, so a crash leaves at worst an unreferenced layer, never a
//! record naming nothing. Records are replaced by rename without fsync:
//! after a power loss a lost record only costs a cache miss.

use std::fs;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Store, StoreError, read_json_record};
use crate::oci::{DiffId, image::Descriptor};

/// The cache directory, below the root.
pub const CACHE_DIR: &str = "cache";
const STEPS_DIR: &str = "steps";
const BUILDS_DIR: &str = "builds";

/// What a cached step produced.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CacheRecord {
    /// The layer blob (media type, digest, size).
    pub layer: Descriptor,
    pub diff_id: DiffId,
    /// The history entry's time, reused on a hit so that a rebuild from
    /// cache gives the same image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    pub created_by: String,
}

/// A step record found in the store.
#[derive(Debug, Clone)]
pub struct CacheEntry {
    /// The key in hex, as the file is named.
    pub key: String,
    /// `None` when the record cannot be read (`check` reports it).
    pub record: Option<CacheRecord>,
    pub path: PathBuf,
}

fn is_hex_name(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl Store {
    fn cache_dir(&self, sub: &str) -> PathBuf {
        self.root().join(CACHE_DIR).join(sub)
    }

    fn cache_path(&self, sub: &str, key: &str) -> Result<PathBuf, StoreError> {
        if !is_hex_name(key) {
            return Err(StoreError::BadCacheKey(key.to_string()));
        }
        Ok(self.cache_dir(sub).join(format!("{key}.json")))
    }

    /// The step record for `key` (64 hex digits), if any.
    pub fn cache_get(&self, key: &str) -> Result<Option<CacheRecord>, StoreError> {
        read_json_record(&self.cache_path(STEPS_DIR, key)?)
    }

    /// Records a step. Its blob and layer must already be committed.
    pub fn cache_put(&self, key: &str, record: &CacheRecord) -> Result<(), StoreError> {
        debug_assert!(self.has_blob(&record.layer.digest) && self.has_layer(&record.diff_id));
        let path = self.cache_path(STEPS_DIR, key)?;
        let dir = self.cache_dir(STEPS_DIR);
        fs::create_dir_all(&dir).map_err(|e| StoreError::io("create directory", &dir, e))?;
        let bytes = serde_json::to_vec_pretty(record).expect("a cache record serialises");
        self.write_replace(&path, &bytes)
    }

    /// Every step record.
    pub fn list_cache(&self) -> Result<Vec<CacheEntry>, StoreError> {
        let dir = self.cache_dir(STEPS_DIR);
        let read = match fs::read_dir(&dir) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StoreError::io("read directory", &dir, e)),
        };
        let mut out = Vec::new();
        for entry in read {
            let entry = entry.map_err(|e| StoreError::io("read directory", &dir, e))?;
            let name = entry.file_name();
            let Some(key) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            if !is_hex_name(key) {
                continue;
            }
            let path = entry.path();
            let record = match read_json_record(&path) {
                Ok(r) => r,
                Err(StoreError::Json { .. }) => None,
                Err(e) => return Err(e),
            };
            out.push(CacheEntry {
                key: key.to_string(),
                record,
                path,
            });
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// Removes every step and build record; returns how many step records
    /// there were. For `prune --all`.
    pub fn clear_cache(&self) -> Result<u64, StoreError> {
        let n = self.list_cache()?.len() as u64;
        let dir = self.root().join(CACHE_DIR);
        super::txn::remove_tree(&dir).map_err(|e| StoreError::io("remove", &dir, e))?;
        Ok(n)
    }

    /// The build record `id` (64 hex digits) as stored, if any.
    pub fn build_record(&self, id: &str) -> Result<Option<serde_json::Value>, StoreError> {
        read_json_record(&self.cache_path(BUILDS_DIR, id)?)
    }

    /// Replaces the build record `id`.
    pub fn put_build_record(&self, id: &str, record: &serde_json::Value) -> Result<(), StoreError> {
        let path = self.cache_path(BUILDS_DIR, id)?;
        let dir = self.cache_dir(BUILDS_DIR);
        fs::create_dir_all(&dir).map_err(|e| StoreError::io("create directory", &dir, e))?;
        let bytes = serde_json::to_vec_pretty(record).expect("JSON serialises");
        self.write_replace(&path, &bytes)
    }
}
