//! `pull`: reference → registry → verified blobs and unpacked layers in the
//! store.
//!
//! Each layer is streamed exactly once. The bytes from the registry are
//! hashed (the blob digest) and written to a transaction's temp blob file as
//! they arrive, and in the same pass decompressed, hashed again (the diffID)
//! and unpacked into the transaction's layer directory:
//!
//! ```text
//! registry ─► TeeHashingReader ─► decoder ─► HashingReader ─► layer::unpack ─► txn/layer/diff
//!                  │ sha256 = blob digest        │ sha256 = diffID
//!                  └─► txn/blob
//! ```
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
use std::io::{self, BufWriter, Read, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::layer;
use crate::oci::verify::{HashingReader, TeeHashingReader};
use crate::oci::{
    Compression, Descriptor, DiffId, Digest, ImageConfig, MediaType, Platform, media_type,
};
use crate::progress::{BlobOutcome, Reporter};
use crate::reference::ImageRef;
use crate::registry::{Client, RegistryError};
use crate::store::{SOURCE_MANIFEST_ANNOTATION, Store, StoreError};

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
    store.put_blob(&manifest.bytes).map_err(store_err)?;
    let named = if manifest.media_type == MediaType::DockerManifest {
        // The layout names an OCI form of a Docker manifest (see
        // `Manifest::to_oci`); the original stays stored and referenced.
        let oci_bytes = serde_json::to_vec(&parsed.to_oci()).expect("a manifest serialises");
        let digest = store.put_blob(&oci_bytes).map_err(store_err)?;
        let mut desc = Descriptor::new(media_type::OCI_MANIFEST, digest, oci_bytes.len() as u64);
        desc.annotations = Some(
            [(
                SOURCE_MANIFEST_ANNOTATION.to_string(),
                manifest.digest.to_string(),
            )]
            .into(),
        );
        desc
    } else {
        manifest_desc.clone()
    };
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
    let read_err = |source| PullError::Read {
        image: image.clone(),
        blob: desc.digest.clone(),
        source,
    };
    let compression = Compression::from_layer_media_type(&desc.media_type).ok_or_else(|| {
        PullError::UnsupportedLayer {
            image: image.clone(),
            blob: desc.digest.clone(),
            media_type: desc.media_type.clone(),
        }
    })?;

    let txn = ctx.store.begin().map_err(store_err)?;
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
    let sink: Box<dyn Write + Send> = if job.need_blob {
        let file = txn.create_blob().map_err(store_err)?;
        Box::new(BufWriter::with_capacity(1 << 20, file))
    } else {
        Box::new(io::sink())
    };
    let mut tee = TeeHashingReader::new(source, sink);

    let unpacked = decode_and_unpack(&mut tee, compression, job, &txn);
    if cancelled.load(Ordering::SeqCst) {
        return Err(PullError::Cancelled { image });
    }
    // Finish the compressed stream even after an unpack error: a digest
    // mismatch is the root cause to report when the bytes were tampered with.
    let finished = tee.finish();
    let (diff_id, inventory) = match unpacked {
        Ok(done) => done,
        Err(e) => {
            if let Ok((actual, ..)) = &finished
                && *actual != desc.digest
            {
                return Err(mismatch(
                    &image,
                    "layer",
                    desc,
                    &desc.digest,
                    actual.clone(),
                ));
            }
            return Err(e.into_pull_error(&image, &desc.digest));
        }
    };
    let (blob_digest, blob_size, mut sink) = finished.map_err(read_err)?;
    sink.flush().map_err(read_err)?;
    drop(sink);

    if blob_size != desc.size {
        return Err(PullError::SizeMismatch {
            image,
            blob: desc.digest.clone(),
            expected: desc.size,
            actual: blob_size,
        });
    }
    if blob_digest != desc.digest {
        return Err(mismatch(&image, "layer", desc, &desc.digest, blob_digest));
    }
    if diff_id != job.diff_id.0 {
        return Err(mismatch(
            &image,
            "uncompressed layer (diffID) of",
            desc,
            &job.diff_id.0,
            diff_id,
        ));
    }
    if job.need_blob {
        ctx.store
            .commit_blob(&txn, &desc.digest)
            .map_err(store_err)?;
    }
    if let Some(inventory) = inventory {
        let json = serde_json::to_vec(&inventory).expect("an inventory serialises");
        ctx.store
            .commit_layer(&txn, &job.diff_id, &json)
            .map_err(store_err)?;
    }
    ctx.reporter
        .blob_done(&desc.digest, BlobOutcome::Downloaded);
    Ok(job.need_blob)
}

fn mismatch(
    image: &str,
    what: &'static str,
    desc: &Descriptor,
    expected: &Digest,
    actual: Digest,
) -> PullError {
    PullError::DigestMismatch {
        image: image.to_string(),
        what,
        blob: desc.digest.clone(),
        expected: expected.clone(),
        actual,
    }
}

enum DecodeError {
    Io(io::Error),
    Unpack(layer::LayerError),
}

impl DecodeError {
    fn into_pull_error(self, image: &str, blob: &Digest) -> PullError {
        match self {
            Self::Io(source) => PullError::Read {
                image: image.to_string(),
                blob: blob.clone(),
                source,
            },
            Self::Unpack(source) => PullError::Unpack {
                image: image.to_string(),
                blob: blob.clone(),
                source,
            },
        }
    }
}

/// Decompresses the stream, hashes the tar (the diffID) and, when the layer
/// is not yet unpacked, unpacks it into the transaction.
fn decode_and_unpack<R: Read>(
    compressed: &mut R,
    compression: Compression,
    job: &LayerJob,
    txn: &crate::store::Transaction,
) -> Result<(Digest, Option<layer::Inventory>), DecodeError> {
    let decoder = layer::compression::decoder(compression, compressed).map_err(DecodeError::Io)?;
    let mut tar = HashingReader::new(decoder);
    let inventory = if job.need_layer {
        let unpacked = layer::unpack(&mut tar, &txn.layer_dir(), &layer::UnpackOptions::default())
            .map_err(DecodeError::Unpack)?;
        Some(unpacked.inventory)
    } else {
        None
    };
    let (diff_id, _) = tar.finish().map_err(DecodeError::Io)?;
    Ok((diff_id, inventory))
}

/// Reports progress for, and lets a sibling's failure cancel, a download.
struct Watched<'a, R> {
    inner: R,
    cancelled: &'a AtomicBool,
    reporter: &'a dyn Reporter,
    digest: &'a Digest,
}

impl<R: Read> Read for Watched<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.cancelled.load(Ordering::Relaxed) {
            // Not `Interrupted`: `io::copy` would retry that forever.
            return Err(io::Error::other("pull cancelled"));
        }
        let n = self.inner.read(buf)?;
        self.reporter.blob_progress(self.digest, n as u64);
        Ok(n)
    }
}
