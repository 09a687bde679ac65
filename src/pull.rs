//! `pull`: reference → registry → verified blobs and unpacked layers in the
//! store.
//!
//! Each layer is streamed exactly once, straight from the registry into
//! [`crate::ingest::stage_layer`]: hashed (the blob digest) and written to a
//! transaction's temp blob file as it arrives, and in the same pass
//! decompressed, hashed again (the diffID) and unpacked into the
//! transaction's layer directory.
//!
//! Only when both digests match the manifest and the config's
//! `rootfs.diff_ids` are the blob and the layer committed; otherwise the
//! transaction is dropped and nothing is left behind. The manifest is stored
//! and the image named only after every layer is in place, so a killed pull
//! never leaves an image whose layers are missing.
//!
//! Layers download concurrently on scoped threads (blocking I/O; no async
//! runtime is alive when the container runtime forks later).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::ingest::{DigestKind, IngestError, LayerSpec, Watched, stage_layer, store_manifest};
use crate::layer;
use crate::oci::{Compression, Descriptor, DiffId, Digest, ImageConfig, Platform};
use crate::progress::{BlobOutcome, Reporter};
use crate::reference::ImageRef;
use crate::registry::{Client, RegistryError};
use crate::store::{Store, StoreError};

/// How many layers download at once unless told otherwise.
pub const DEFAULT_CONCURRENCY: usize = 4;

pub struct PullOptions {
    pub platform: Platform,
    pub concurrency: usize,
}

impl Default for PullOptions {
    fn default() -> Self {
        Self {
            platform: Platform::host(),
            concurrency: DEFAULT_CONCURRENCY,
        }
    }
}

/// The outcome of a successful pull.
#[derive(Debug, Clone)]
pub struct Pulled {
    pub name: String,
    /// The manifest as the registry served it (its digest is the image's
    /// registry identity, printed by `pull -q`).
    pub manifest: Descriptor,
    pub config_digest: Digest,
    pub layers_downloaded: usize,
    pub layers_present: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("pull `{image}`")]
    Registry {
        image: String,
        #[source]
        source: Box<RegistryError>,
    },
    #[error("pull `{image}`: store")]
    Store {
        image: String,
        #[source]
        source: StoreError,
    },
    #[error(
        "pull `{image}`: {what} {blob} failed verification: expected {expected}, got {actual}; the blob was not stored (the registry served corrupt or tampered data)"
    )]
    DigestMismatch {
        image: String,
        what: &'static str,
        blob: Digest,
        expected: Digest,
        actual: Digest,
    },
    #[error("pull `{image}`: layer {blob} is {actual} bytes, the manifest says {expected}")]
    SizeMismatch {
        image: String,
        blob: Digest,
        expected: u64,
        actual: u64,
    },
    #[error("pull `{image}`: unpack layer {blob}")]
    Unpack {
        image: String,
        blob: Digest,
        #[source]
        source: layer::LayerError,
    },
    #[error("pull `{image}`: read layer {blob}")]
    Read {
        image: String,
        blob: Digest,
        #[source]
        source: io::Error,
    },
    #[error("pull `{image}`: layer {blob} has unsupported media type `{media_type}`")]
    UnsupportedLayer {
        image: String,
        blob: Digest,
        media_type: String,
    },
    #[error("pull `{image}`: invalid image config {config}: {reason}")]
    BadConfig {
        image: String,
        config: Digest,
        reason: String,
    },
    #[error("pull `{image}`: cancelled")]
    Cancelled { image: String },
}

/// Pulls `reference` into `store`.
pub fn pull(
    client: &Client,
    store: &Store,
    reference: &ImageRef,
    options: &PullOptions,
    reporter: &dyn Reporter,
) -> Result<Pulled, PullError> {
    let image = reference.to_string();
    let registry_err = |source| PullError::Registry {
        image: image.clone(),
        source: Box::new(source),
    };
    let store_err = |source| PullError::Store {
        image: image.clone(),
        source,
    };

    reporter.status(&format!("resolving {image}"));
    let resolved = client
        .resolve(reference, &options.platform)
        .map_err(registry_err)?;
    let manifest = resolved.manifest;
    let manifest_desc = Descriptor::new(
        manifest.media_type.as_str(),
        manifest.digest.clone(),
        manifest.bytes.len() as u64,
    );
    let parsed = resolved.parsed;

    // The config: small, fetched whole and verified.
    let config_bytes = if store.has_blob(&parsed.config.digest) {
        store.read_blob(&parsed.config.digest).map_err(store_err)?
    } else {
        let bytes = client
            .fetch_blob_verified_bytes(reference, &parsed.config)
            .map_err(registry_err)?;
        store.put_blob(&bytes).map_err(store_err)?;
        bytes
    };
    let bad_config = |reason: String| PullError::BadConfig {
        image: image.clone(),
        config: parsed.config.digest.clone(),
        reason,
    };
    let config: ImageConfig =
        serde_json::from_slice(&config_bytes).map_err(|e| bad_config(e.to_string()))?;
    if config.rootfs.diff_ids.len() != parsed.layers.len() {
        return Err(bad_config(format!(
            "rootfs.diff_ids lists {} layers, the manifest {}",
            config.rootfs.diff_ids.len(),
            parsed.layers.len()
        )));
    }

    // One job per distinct layer blob; an image may list a layer twice, but
    // one blob must always mean one diffID, or the second would be named
    // without ever being verified.
    let mut seen: BTreeMap<&Digest, &DiffId> = BTreeMap::new();
    for (desc, diff_id) in parsed.layers.iter().zip(&config.rootfs.diff_ids) {
        if let Some(first) = seen.insert(&desc.digest, diff_id)
            && first != diff_id
        {
            return Err(bad_config(format!(
                "layer {} is listed twice with different diffIDs, {first} and {diff_id}",
                desc.digest
            )));
        }
    }
    let mut seen = BTreeSet::new();
    let jobs: Vec<LayerJob> = parsed
        .layers
        .iter()
        .zip(&config.rootfs.diff_ids)
        .filter(|(desc, _)| seen.insert(desc.digest.clone()))
        .map(|(desc, diff_id)| LayerJob {
            descriptor: desc.clone(),
            diff_id: diff_id.clone(),
            need_blob: !store.has_blob(&desc.digest),
            need_layer: !store.has_layer(diff_id),
        })
        .collect();

    let ctx = PullContext {
        client,
        store,
        reference,
        image: &image,
        reporter,
    };
    let downloaded = run_jobs(&ctx, &jobs, options.concurrency.max(1))?;

    // Everything the manifest references is stored: now the manifest, then the name.
    let named =
        store_manifest(store, &manifest.bytes, manifest.media_type, &parsed).map_err(store_err)?;
    store.set_image(&image, &named).map_err(store_err)?;
    Ok(Pulled {
        name: image.clone(),
        manifest: manifest_desc,
        config_digest: parsed.config.digest.clone(),
        layers_downloaded: downloaded,
        layers_present: jobs.len() - downloaded,
    })
}

struct LayerJob {
    descriptor: Descriptor,
    diff_id: DiffId,
    need_blob: bool,
    need_layer: bool,
}

struct PullContext<'a> {
    client: &'a Client,
    store: &'a Store,
    reference: &'a ImageRef,
    image: &'a str,
    reporter: &'a dyn Reporter,
}

/// Runs the layer jobs on up to `concurrency` scoped threads; the first
/// error cancels the rest and is returned. Returns how many layers were
/// downloaded.
fn run_jobs(
    ctx: &PullContext<'_>,
    jobs: &[LayerJob],
    concurrency: usize,
) -> Result<usize, PullError> {
    let next = AtomicUsize::new(0);
    let downloaded = AtomicUsize::new(0);
    let cancelled = AtomicBool::new(false);
    let first_error: Mutex<Option<PullError>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..concurrency.min(jobs.len()) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= jobs.len() || cancelled.load(Ordering::SeqCst) {
                        return;
                    }
                    match fetch_layer(ctx, &jobs[i], &cancelled) {
                        Ok(true) => {
                            downloaded.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(false) => {}
                        Err(e) => {
                            cancelled.store(true, Ordering::SeqCst);
                            let mut slot = first_error.lock().expect("no panics while held");
                            // Keep the root cause, not a "cancelled" from a sibling.
                            if slot.is_none() || matches!(*slot, Some(PullError::Cancelled { .. }))
                            {
                                *slot = Some(e);
                            }
                            return;
                        }
                    }
                }
            });
        }
    });
    match first_error.into_inner().expect("no panics while held") {
        Some(e) => Err(e),
        None => Ok(downloaded.into_inner()),
    }
}

/// Makes sure one layer's blob and unpacked directory are in the store.
/// Returns whether anything was downloaded.
fn fetch_layer(
    ctx: &PullContext<'_>,
    job: &LayerJob,
    cancelled: &AtomicBool,
) -> Result<bool, PullError> {
    let desc = &job.descriptor;
    let image = ctx.image.to_string();
    if !job.need_blob && !job.need_layer {
        ctx.reporter
            .blob_done(&desc.digest, BlobOutcome::AlreadyExists);
        return Ok(false);
    }
    let store_err = |source| PullError::Store {
        image: image.clone(),
        source,
    };
    let compression = Compression::from_layer_media_type(&desc.media_type).ok_or_else(|| {
        PullError::UnsupportedLayer {
            image: image.clone(),
            blob: desc.digest.clone(),
            media_type: desc.media_type.clone(),
        }
    })?;

    // The source: the registry, or the blob we already have when only the
    // unpacked directory is missing.
    let source: Box<dyn Read + Send> = if job.need_blob {
        ctx.reporter.blob_start(&desc.digest, desc.size, "layer");
        let blob = ctx
            .client
            .fetch_blob(ctx.reference, desc)
            .map_err(|source| PullError::Registry {
                image: image.clone(),
                source: Box::new(source),
            })?;
        Box::new(blob)
    } else {
        Box::new(ctx.store.open_blob(&desc.digest).map_err(store_err)?)
    };
    let source = Watched {
        inner: source,
        cancelled,
        reporter: ctx.reporter,
        digest: &desc.digest,
    };
    let spec = LayerSpec {
        compression,
        digest: Some(desc.digest.clone()),
        size: Some(desc.size),
        diff_id: job.diff_id.clone(),
        store_blob: job.need_blob,
        unpack: job.need_layer,
    };
    let staged = stage_layer(ctx.store, source, &spec);
    if cancelled.load(Ordering::SeqCst) {
        return Err(PullError::Cancelled { image });
    }
    let staged = staged.map_err(|e| pull_error(&image, desc, e))?;
    staged.commit(ctx.store).map_err(store_err)?;
    ctx.reporter
        .blob_done(&desc.digest, BlobOutcome::Downloaded);
    Ok(job.need_blob)
}

/// A layer's ingest error as seen by a pull.
fn pull_error(image: &str, desc: &Descriptor, e: IngestError) -> PullError {
    let image = image.to_string();
    let blob = desc.digest.clone();
    match e {
        IngestError::Store(source) => PullError::Store { image, source },
        IngestError::Read(source) => PullError::Read {
            image,
            blob,
            source,
        },
        IngestError::Unpack(source) => PullError::Unpack {
            image,
            blob,
            source,
        },
        IngestError::DigestMismatch {
            what,
            expected,
            actual,
        } => PullError::DigestMismatch {
            image,
            what: match what {
                DigestKind::Blob => "layer",
                DigestKind::DiffId => "uncompressed layer (diffID) of",
            },
            blob,
            expected,
            actual,
        },
        IngestError::SizeMismatch { expected, actual } => PullError::SizeMismatch {
            image,
            blob,
            expected,
            actual,
        },
    }
}
