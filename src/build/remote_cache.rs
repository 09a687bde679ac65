//! The registry-backed build cache (`--cache-to` / `--cache-from`): the
//! records of a build's layer steps, shared through a registry by machines
//! that start with empty stores (CI fleets).
//!
//! The artifact is one OCI image manifest, tagged where `--cache-to` says:
//! `artifactType` [`ARTIFACT_TYPE`], the empty config
//! (`application/vnd.oci.empty.v1+json`, `{}`), and as layers first one
//! JSON blob of type [`RECORDS_MEDIA_TYPE`] — a list of
//! `{"key": RECORD-KEY, "record": {layer, diff_id, created, created_by}}`
//! exactly as `cache/steps/<key>.json` holds them locally — then every
//! layer blob those records name. Record keys depend only on the build's
//! inputs (content digests, never paths, mtimes, store roots or uids; see
//! `super::cache`) and on the compression and timestamp asked for, so they
//! match across machines.
//!
//! Import fetches the manifest and the records blob only. A step whose key
//! has a remote record is a hit; its layer is downloaded (verified and
//! unpacked through `ingest`, as a pull) only when something needs it: a
//! later step that must run on top of it, or the final image. Layers of
//! steps that are hits and that nothing builds on (a build stage whose
//! result is only copied from) are never downloaded.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::{BuildError, LayerRef};
use crate::ingest::{LayerSpec, stage_layer};
use crate::oci::image::{Descriptor, Manifest};
use crate::oci::{Compression, Digest, media_type};
use crate::reference::ImageRef;
use crate::registry::Client;
use crate::store::{CacheRecord, Store};

/// The cache artifact's `artifactType`.
pub const ARTIFACT_TYPE: &str = "application/vnd.dev.builder.cache.v1";
/// The media type of the records blob.
pub const RECORDS_MEDIA_TYPE: &str = "application/vnd.dev.builder.cache.records.v1+json";
const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
const EMPTY_JSON: &[u8] = b"{}";

/// One exported record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemoteRecord {
    pub key: String,
    pub record: CacheRecord,
}

/// A cache imported from a registry.
pub struct RemoteCache {
    client: Client,
    source: ImageRef,
    records: HashMap<String, CacheRecord>,
}

impl std::fmt::Debug for RemoteCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteCache")
            .field("source", &self.source.to_string())
            .field("records", &self.records.len())
            .finish()
    }
}

fn registry_err(what: &str, source: crate::registry::RegistryError) -> BuildError {
    BuildError::RemoteCache {
        what: what.to_string(),
        source: Box::new(source),
    }
}

impl RemoteCache {
    /// Fetches the cache artifact at `source` (its manifest and records).
    pub fn import(client: Client, source: ImageRef) -> Result<RemoteCache, BuildError> {
        let what = format!("import the build cache `{source}`");
        let fetched = client
            .fetch_manifest(&source)
            .map_err(|e| registry_err(&what, e))?;
        let manifest: Manifest =
            serde_json::from_slice(&fetched.bytes).map_err(|e| BuildError::RemoteCache {
                what: what.clone(),
                source: Box::new(e),
            })?;
        let records_desc = manifest
            .layers
            .iter()
            .find(|l| l.media_type == RECORDS_MEDIA_TYPE)
            .ok_or_else(|| BuildError::RemoteCache {
                what: what.clone(),
                source: format!(
                    "`{source}` is not a builder build cache (no {RECORDS_MEDIA_TYPE} layer)"
                )
                .into(),
            })?;
        let bytes = client
            .fetch_blob_verified_bytes(&source, records_desc)
            .map_err(|e| registry_err(&what, e))?;
        let list: Vec<RemoteRecord> =
            serde_json::from_slice(&bytes).map_err(|e| BuildError::RemoteCache {
                what: what.clone(),
                source: Box::new(e),
            })?;
        Ok(RemoteCache {
            client,
            source,
            records: list.into_iter().map(|r| (r.key, r.record)).collect(),
        })
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn get(&self, key: &str) -> Option<&CacheRecord> {
        self.records.get(key)
    }

    /// Downloads, verifies, unpacks and commits `layer` (and records it in
    /// the local cache under `key`), unless the store has it already.
    pub fn fetch_layer(&self, store: &Store, layer: &LayerRef) -> Result<(), BuildError> {
        if store.has_layer(&layer.diff_id) && store.has_blob(&layer.blob.digest) {
            return Ok(());
        }
        let what = format!(
            "download layer {} from `{}`",
            layer.blob.digest, self.source
        );
        let compression =
            Compression::from_layer_media_type(&layer.blob.media_type).ok_or_else(|| {
                BuildError::RemoteCache {
                    what: what.clone(),
                    source: format!("unknown layer media type `{}`", layer.blob.media_type).into(),
                }
            })?;
        let reader = self
            .client
            .fetch_blob(&self.source, &layer.blob)
            .map_err(|e| registry_err(&what, e))?;
        let spec = LayerSpec {
            compression,
            digest: Some(layer.blob.digest.clone()),
            size: Some(layer.blob.size),
            diff_id: layer.diff_id.clone(),
            store_blob: !store.has_blob(&layer.blob.digest),
            unpack: !store.has_layer(&layer.diff_id),
        };
        let staged = stage_layer(store, reader, &spec).map_err(|e| BuildError::RemoteCache {
            what: what.clone(),
            source: Box::new(e),
        })?;
        staged.commit(store).map_err(BuildError::store)
    }
}

/// Pushes `records` (record key → record) and their layer blobs to
/// `target` as the cache artifact; returns the artifact's manifest digest.
pub fn export(
    client: &Client,
    store: &Store,
    target: &ImageRef,
    records: &BTreeMap<String, CacheRecord>,
) -> Result<Digest, BuildError> {
    let what = format!("export the build cache to `{target}`");
    let list: Vec<RemoteRecord> = records
        .iter()
        .map(|(key, record)| RemoteRecord {
            key: key.clone(),
            record: record.clone(),
        })
        .collect();
    let records_bytes = serde_json::to_vec(&list).expect("records serialise");
    let records_digest = store.put_blob(&records_bytes).map_err(BuildError::store)?;
    let empty_digest = store.put_blob(EMPTY_JSON).map_err(BuildError::store)?;
    let records_desc = Descriptor::new(
        RECORDS_MEDIA_TYPE,
        records_digest,
        records_bytes.len() as u64,
    );
    let empty_desc = Descriptor::new(EMPTY_MEDIA_TYPE, empty_digest, EMPTY_JSON.len() as u64);
    let mut layers = vec![records_desc];
    for record in records.values() {
        if !layers.iter().any(|l| l.digest == record.layer.digest) {
            layers.push(record.layer.clone());
        }
    }
    for desc in std::iter::once(&empty_desc).chain(&layers) {
        if client
            .blob_exists(target, &desc.digest)
            .map_err(|e| registry_err(&what, e))?
        {
            continue;
        }
        let file = store.open_blob(&desc.digest).map_err(BuildError::store)?;
        client
            .upload_blob(target, desc, &file, &[], &|_| {})
            .map_err(|e| registry_err(&what, e))?;
    }
    let mut manifest = Manifest {
        schema_version: 2,
        media_type: Some(media_type::OCI_MANIFEST.to_string()),
        config: empty_desc,
        layers,
        annotations: None,
        extra: Default::default(),
    };
    manifest.extra.insert(
        "artifactType".to_string(),
        serde_json::Value::String(ARTIFACT_TYPE.to_string()),
    );
    let bytes = serde_json::to_vec(&manifest).expect("a manifest serialises");
    client
        .push_manifest(target, media_type::OCI_MANIFEST, &bytes)
        .map_err(|e| registry_err(&what, e))
}
