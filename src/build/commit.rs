//! Committing what a step wrote: a directory of changes (a RUN's overlay
//! upper, or the fresh directory a COPY filled) → one layer blob and one
//! unpacked layer in the store; and a finished stage → config, manifest and
//! names.
//!
//! A layer is diffed once: the tar streams through the hasher (DiffID),
//! the compressor and the hasher again (blob digest) into the
//! transaction's blob file, and the directory itself, tidied to hold
//! exactly what the tar says ([`crate::layer::Diffed::tidy_upper`]),
//! becomes the unpacked layer by rename. Nothing is unpacked a second time.
//!
//! Invariant: blobs and layers are committed before the manifest that
//! names them, and the manifest before the name (as a pull does), so a
//! crash at any point leaves at worst unreferenced content for `prune`.

use std::path::{Path, PathBuf};

use super::BuildError;
use crate::layer::{self, DiffOptions};
use crate::oci::image::{Descriptor, Manifest};
use crate::oci::{DiffId, Digest, ImageConfig, media_type};
use crate::store::{SOURCE_MANIFEST_ANNOTATION, Store, Transaction};

/// A layer of the image being built: its blob and its DiffID.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerRef {
    pub blob: Descriptor,
    pub diff_id: DiffId,
}

/// The manifest format of the built image.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ImageFormat {
    #[default]
    Oci,
    /// Docker schema 2 (`--format docker`): Docker media types, and the
    /// Docker-format config fields (which builder writes in both formats).
    Docker,
}

/// Diffs `dir` against `lowers` (topmost first) into the transaction's
/// blob, makes `dir` the transaction's layer (unless it already is) and
/// commits both. `settle` runs once the diff has read `dir` and before
/// anything changes it: a RUN's overlay is unmounted by then.
pub fn commit_dir(
    store: &Store,
    txn: &Transaction,
    dir: &Path,
    lowers: &[PathBuf],
    opts: &DiffOptions,
    settle: impl FnOnce() -> Result<(), BuildError>,
) -> Result<LayerRef, BuildError> {
    let blob_path = txn.blob_path();
    let file = txn.create_blob().map_err(BuildError::store)?;
    let diffed = layer::diff(dir, lowers, &file, opts).map_err(BuildError::layer)?;
    file.sync_all()
        .map_err(|e| BuildError::write(&blob_path, e))?;
    drop(file);
    settle()?;
    let as_recorded = diffed.tidy_upper(dir).map_err(BuildError::layer)?;
    if dir != txn.layer_dir() {
        txn.adopt_layer_dir(dir).map_err(BuildError::store)?;
    }
    store
        .commit_blob(txn, &diffed.digest)
        .map_err(BuildError::store)?;
    let recorded = std::time::Instant::now();
    let mut inventory = if as_recorded {
        diffed.inventory
    } else {
        tracing::debug!(dir = %dir.display(), "the upper changed while it was committed; scanning it for the inventory");
        layer::inventory::scan(&txn.layer_dir()).map_err(BuildError::layer)?
    };
    // Adoption made the root 0755 root:root after the diff recorded it.
    inventory
        .refresh_root(&txn.layer_dir())
        .map_err(BuildError::layer)?;
    let json = serde_json::to_vec(&inventory).expect("an inventory serialises");
    store
        .commit_layer(txn, &diffed.diff_id, &json)
        .map_err(BuildError::store)?;
    tracing::debug!(
        layer = %diffed.diff_id,
        inventory_ms = recorded.elapsed().as_millis() as u64,
        "layer inventoried and committed"
    );
    Ok(LayerRef {
        blob: Descriptor::new(diffed.media_type, diffed.digest, diffed.size),
        diff_id: diffed.diff_id,
    })
}

/// A new blob for an unpacked build layer, in another compression: the
/// layer directory (an adopted upper, in overlay format) is diffed again
/// against `lowers`. The tar is the same as the first time (same tree,
/// same rules), which the DiffID proves; `None` if it is not.
pub fn recompress(
    store: &Store,
    diff_id: &DiffId,
    lowers: &[PathBuf],
    opts: &DiffOptions,
) -> Result<Option<LayerRef>, BuildError> {
    let txn = store.begin().map_err(BuildError::store)?;
    let blob_path = txn.blob_path();
    let file = txn.create_blob().map_err(BuildError::store)?;
    let diffed = layer::diff(&store.layer_diff_path(diff_id), lowers, &file, opts)
        .map_err(BuildError::layer)?;
    if &diffed.diff_id != diff_id {
        tracing::debug!(layer = %diff_id, got = %diffed.diff_id, "layer re-diffed to another tar; not reused");
        return Ok(None);
    }
    file.sync_all()
        .map_err(|e| BuildError::write(&blob_path, e))?;
    drop(file);
    store
        .commit_blob(&txn, &diffed.digest)
        .map_err(BuildError::store)?;
    Ok(Some(LayerRef {
        blob: Descriptor::new(diffed.media_type, diffed.digest, diffed.size),
        diff_id: diffed.diff_id,
    }))
}

/// What [`write_image`] stored.
#[derive(Debug, Clone)]
pub struct WrittenImage {
    /// The config digest: the image ID.
    pub image_id: Digest,
    /// The manifest as stored in the requested format (for `--format
    /// docker`, the Docker manifest; the layout names its OCI form).
    pub manifest: Descriptor,
    /// What the layout names.
    pub named: Descriptor,
}

/// Stores the config and manifest of an image and names it `names`.
pub fn write_image(
    store: &Store,
    config: &ImageConfig,
    layers: &[LayerRef],
    format: ImageFormat,
    names: &[String],
) -> Result<WrittenImage, BuildError> {
    let config_bytes = serde_json::to_vec(config).expect("a config serialises");
    let image_id = store.put_blob(&config_bytes).map_err(BuildError::store)?;
    let oci = Manifest {
        schema_version: 2,
        media_type: Some(media_type::OCI_MANIFEST.to_string()),
        config: Descriptor::new(
            media_type::OCI_CONFIG,
            image_id.clone(),
            config_bytes.len() as u64,
        ),
        layers: layers.iter().map(|l| l.blob.clone()).collect(),
        annotations: None,
        extra: Default::default(),
    };
    let (manifest, named) = match format {
        ImageFormat::Oci => {
            let bytes = serde_json::to_vec(&oci).expect("a manifest serialises");
            let digest = store.put_blob(&bytes).map_err(BuildError::store)?;
            let desc = Descriptor::new(media_type::OCI_MANIFEST, digest, bytes.len() as u64);
            (desc.clone(), desc)
        }
        ImageFormat::Docker => {
            let docker = to_docker(&oci)?;
            let bytes = serde_json::to_vec(&docker).expect("a manifest serialises");
            let digest = store.put_blob(&bytes).map_err(BuildError::store)?;
            let desc = Descriptor::new(media_type::DOCKER_MANIFEST, digest, bytes.len() as u64);
            // The layout names the OCI form, as for a pulled Docker image
            // (readers such as skopeo 1.9 skip Docker-typed entries).
            let oci_bytes = serde_json::to_vec(&docker.to_oci()).expect("a manifest serialises");
            let oci_digest = store.put_blob(&oci_bytes).map_err(BuildError::store)?;
            let mut named =
                Descriptor::new(media_type::OCI_MANIFEST, oci_digest, oci_bytes.len() as u64);
            named.annotations = Some(
                [(
                    SOURCE_MANIFEST_ANNOTATION.to_string(),
                    desc.digest.to_string(),
                )]
                .into(),
            );
            (desc, named)
        }
    };
    for name in names {
        store.set_image(name, &named).map_err(BuildError::store)?;
    }
    Ok(WrittenImage {
        image_id,
        manifest,
        named,
    })
}

/// The Docker schema 2 form of an OCI manifest. zstd layers have no Docker
/// media type.
fn to_docker(oci: &Manifest) -> Result<Manifest, BuildError> {
    let mut layers = Vec::with_capacity(oci.layers.len());
    for l in &oci.layers {
        let media_type = match l.media_type.as_str() {
            media_type::OCI_LAYER_GZIP | media_type::DOCKER_LAYER_GZIP => {
                media_type::DOCKER_LAYER_GZIP
            }
            media_type::OCI_LAYER_TAR | media_type::DOCKER_LAYER_TAR => {
                media_type::DOCKER_LAYER_TAR
            }
            media_type::OCI_LAYER_NONDIST_GZIP | media_type::DOCKER_LAYER_FOREIGN_GZIP => {
                media_type::DOCKER_LAYER_FOREIGN_GZIP
            }
            other => {
                return Err(BuildError::Format {
                    reason: format!(
                        "layer {} has media type `{other}`, which Docker schema 2 cannot name; build with --format oci, or --compression gzip",
                        l.digest
                    ),
                });
            }
        };
        layers.push(Descriptor {
            media_type: media_type.to_string(),
            ..l.clone()
        });
    }
    Ok(Manifest {
        schema_version: 2,
        media_type: Some(media_type::DOCKER_MANIFEST.to_string()),
        config: Descriptor {
            media_type: media_type::DOCKER_CONFIG.to_string(),
            ..oci.config.clone()
        },
        layers,
        annotations: None,
        extra: Default::default(),
    })
}
