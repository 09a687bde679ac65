//! `push`: an image in the store → a registry.
//!
//! Order: every blob the manifest references (the layers and the config)
//! is made present in the destination repository first, on up to
//! `concurrency` scoped threads; the manifest is `PUT` last, so a registry
//! never names an image whose blobs it lacks, and a push killed half-way
//! leaves at most unreferenced blobs behind.
//!
//! Per blob, cheapest first (see `registry::upload` for the HTTP side):
//! `HEAD` (the registry has it: nothing to send), a cross-repository mount
//! from a *mount source*, else an upload of the stored blob file.
//! Mount sources are repositories of the destination registry that should
//! hold the blob: first the names this image itself has in the store under
//! that registry (an image pulled from `reg/a` and pushed to `reg/b` mounts
//! from `reg/a`), then other stored images named under that registry whose
//! manifest lists the blob (a base image's layers), then the repositories
//! this [`Pusher`] has already pushed the blob to (`-t a -t b` pushes of one
//! build). At most [`MAX_MOUNT_SOURCES`] are tried per blob.
//!
//! Identity. Without recompression the manifest is pushed as the exact
//! bytes stored, so its digest — the image's registry identity — survives
//! any number of pull/push hops. For an image pulled as Docker schema2 the
//! store names an OCI conversion (`store::SOURCE_MANIFEST_ANNOTATION`);
//! push sends the original Docker manifest, which the annotation points at.
//!
//! Manifest lists ([`Pusher::push_list`]): each image of the list is pushed
//! by digest into the destination repository, then the index under the
//! destination's tag (a registry refuses an index naming manifests it does
//! not have). The index is sent as stored unless recompression gave an
//! image a new manifest digest; then it is rewritten to name the new ones.
//!
//! Recompression (`compression: Some(…)`): each layer whose compression
//! differs is decoded and re-encoded (`layer::compression`) into a store
//! transaction's temp blob, in one streaming pass that also hashes the
//! decoded tar and checks it against the config's diffID, so the new layer
//! provably has the same content. Those layers get new digests, so the
//! manifest is rewritten as an OCI manifest with the new descriptors (the
//! config, and so the image ID, is unchanged). The temp blobs are pushed
//! from the transaction and dropped with it: the store is not changed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::layer::compression::{Encoder, decoder};
use crate::oci::media_type;
use crate::oci::verify::{HashingReader, HashingWriter};
use crate::oci::{Compression, Descriptor, DiffId, Digest, ImageConfig, Manifest, MediaType};
use crate::progress::{BlobOutcome, Reporter};
use crate::reference::ImageRef;
use crate::registry::{BlobPushed, Client, RegistryError};
use crate::store::{ImageRecord, SOURCE_MANIFEST_ANNOTATION, Store, StoreError, Transaction};

/// How many blobs are pushed at once unless told otherwise.
pub const DEFAULT_CONCURRENCY: usize = 4;

/// The most repositories a blob is offered a mount from before it is
/// uploaded: each refused mount costs a round trip.
pub const MAX_MOUNT_SOURCES: usize = 3;

#[derive(Debug, Clone)]
pub struct PushOptions {
    pub concurrency: usize,
    /// Re-encode layers whose compression differs from this one. `None`
    /// pushes the stored blobs and manifest unchanged.
    pub compression: Option<Compression>,
    /// The level re-encoded layers get; `None` is the default (gzip 5,
    /// zstd 3).
    pub level: Option<i32>,
}

impl Default for PushOptions {
    fn default() -> Self {
        Self {
            concurrency: DEFAULT_CONCURRENCY,
            compression: None,
            level: None,
        }
    }
}

/// The outcome of a successful push.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// The destination, normalised (`registry/repository:tag`).
    pub destination: String,
    /// The manifest as pushed: its digest is what the registry serves.
    pub manifest: Descriptor,
    /// Blobs the registry already had.
    pub present: usize,
    /// Blobs mounted from another repository.
    pub mounted: usize,
    /// Blobs uploaded.
    pub uploaded: usize,
    /// Layers re-encoded for `compression`.
    pub recompressed: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("push `{image}` to `{destination}`")]
    Registry {
        image: String,
        destination: String,
        #[source]
        source: Box<RegistryError>,
    },
    #[error("push `{image}`: store")]
    Store {
        image: String,
        #[source]
        source: StoreError,
    },
    #[error(
        "push `{image}`: its manifest {manifest} has media type `{media_type}`, which push does not support (only image manifests, OCI or Docker schema2)"
    )]
    UnsupportedManifest {
        image: String,
        manifest: Digest,
        media_type: String,
    },
    #[error("push `{image}`: invalid {what} {digest}: {reason}")]
    Invalid {
        image: String,
        what: &'static str,
        digest: Digest,
        reason: String,
    },
    #[error(
        "push `{image}`: layer {blob} has media type `{media_type}`, which cannot be recompressed"
    )]
    UnsupportedLayer {
        image: String,
        blob: Digest,
        media_type: String,
    },
    #[error("push `{image}`: recompress layer {blob}")]
    Recompress {
        image: String,
        blob: Digest,
        #[source]
        source: io::Error,
    },
    #[error(
        "push `{image}`: layer {blob} decompresses to {actual}, but the image config says its diffID is {expected}; the stored blob is corrupt (run `builder check`)"
    )]
    DiffIdMismatch {
        image: String,
        blob: Digest,
        expected: DiffId,
        actual: Digest,
    },
    #[error("push `{image}`: cancelled")]
    Cancelled { image: String },
}

/// The outcome of a successful [`Pusher::push_list`].
#[derive(Debug, Clone)]
pub struct PushedList {
    /// The destination, normalised (`registry/repository:tag`).
    pub destination: String,
    /// The index as pushed: its digest is what the registry serves.
    pub index: Descriptor,
    /// Each image of the list, in index order, as pushed (by digest).
    pub images: Vec<Pushed>,
}

/// Pushes images from one store through one client. It remembers which
/// repositories it has pushed each blob to, so later pushes to the same
/// registry mount instead of uploading.
pub struct Pusher<'a> {
    client: &'a Client,
    store: &'a Store,
    /// blob → (registry, repository) it was pushed to.
    pushed_to: Mutex<HashMap<Digest, Vec<(String, String)>>>,
}

/// Pushes `image` to `destination` (see [`Pusher::push`]).
pub fn push(
    client: &Client,
    store: &Store,
    image: &ImageRecord,
    destination: &ImageRef,
    options: &PushOptions,
    reporter: &dyn Reporter,
) -> Result<Pushed, PushError> {
    Pusher::new(client, store).push(image, destination, options, reporter)
}

/// One blob to make present in the destination.
struct BlobJob {
    /// The descriptor as stored (for a layer to recompress: the old one).
    descriptor: Descriptor,
    what: &'static str,
    /// For a layer to recompress: the compression it has and its diffID.
    recompress: Option<(Compression, DiffId)>,
    mount_from: Vec<String>,
}

/// What a job ended with: the descriptor the manifest lists, and how.
struct JobDone {
    descriptor: Descriptor,
    outcome: BlobOutcome,
    recompressed: bool,
}

struct PushContext<'a> {
    pusher: &'a Pusher<'a>,
    destination: &'a ImageRef,
    image: &'a str,
    target: Option<Compression>,
    level: Option<i32>,
    reporter: &'a dyn Reporter,
    encoder_threads: usize,
}

impl<'a> Pusher<'a> {
    pub fn new(client: &'a Client, store: &'a Store) -> Self {
        Self {
            client,
            store,
            pushed_to: Mutex::default(),
        }
    }

    /// Pushes `image` to `destination`: blobs first (concurrently), then
    /// the manifest.
    pub fn push(
        &self,
        image: &ImageRecord,
        destination: &ImageRef,
        options: &PushOptions,
        reporter: &dyn Reporter,
    ) -> Result<Pushed, PushError> {
        let name = image.name.clone();
        let store_err = |source| PushError::Store {
            image: name.clone(),
            source,
        };
        if image.is_list() {
            // A list is pushed with its images: `push_list`.
            return Err(PushError::UnsupportedManifest {
                image: name,
                manifest: image.manifest.digest.clone(),
                media_type: image.manifest.media_type.clone(),
            });
        }

        // The manifest as a registry knows it: the Docker original when the
        // store names a conversion.
        let (manifest_digest, declared_type) =
            match image.manifest.annotation(SOURCE_MANIFEST_ANNOTATION) {
                Some(source) => {
                    let digest = Digest::parse(source).map_err(|e| PushError::Invalid {
                        image: name.clone(),
                        what: "source manifest annotation of",
                        digest: image.manifest.digest.clone(),
                        reason: e.to_string(),
                    })?;
                    (digest, None)
                }
                None => (
                    image.manifest.digest.clone(),
                    Some(image.manifest.media_type.clone()),
                ),
            };
        let (bytes, manifest) = self.store.manifest(&manifest_digest).map_err(store_err)?;
        let media_type = manifest
            .media_type
            .clone()
            .or(declared_type)
            .unwrap_or_else(|| media_type::OCI_MANIFEST.to_string());
        match MediaType::parse(&media_type) {
            Some(MediaType::OciManifest | MediaType::DockerManifest) => {}
            _ => {
                return Err(PushError::UnsupportedManifest {
                    image: name,
                    manifest: manifest_digest,
                    media_type,
                });
            }
        }

        let config_bytes = self
            .store
            .read_blob(&manifest.config.digest)
            .map_err(store_err)?;
        let invalid_config = |reason: String| PushError::Invalid {
            image: name.clone(),
            what: "image config",
            digest: manifest.config.digest.clone(),
            reason,
        };
        let config: ImageConfig =
            serde_json::from_slice(&config_bytes).map_err(|e| invalid_config(e.to_string()))?;
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(invalid_config(format!(
                "rootfs.diff_ids lists {} layers, the manifest {}",
                config.rootfs.diff_ids.len(),
                manifest.layers.len()
            )));
        }

        let mount_sources = self.mount_sources(image, destination).map_err(store_err)?;
        let sources_for = |digest: &Digest| -> Vec<String> {
            mount_sources
                .get(digest)
                .map(|repos| repos.iter().take(MAX_MOUNT_SOURCES).cloned().collect())
                .unwrap_or_default()
        };

        // One job per distinct blob: the config, then the layers.
        let mut seen = BTreeSet::new();
        let mut jobs = vec![BlobJob {
            descriptor: manifest.config.clone(),
            what: "config",
            recompress: None,
            mount_from: sources_for(&manifest.config.digest),
        }];
        seen.insert(manifest.config.digest.clone());
        for (layer, diff_id) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
            if !seen.insert(layer.digest.clone()) {
                continue;
            }
            let recompress =
                match options.compression {
                    None => None,
                    Some(target) => {
                        let have = Compression::from_layer_media_type(&layer.media_type)
                            .ok_or_else(|| PushError::UnsupportedLayer {
                                image: name.clone(),
                                blob: layer.digest.clone(),
                                media_type: layer.media_type.clone(),
                            })?;
                        (have != target).then(|| (have, diff_id.clone()))
                    }
                };
            jobs.push(BlobJob {
                descriptor: layer.clone(),
                what: "layer",
                mount_from: if recompress.is_some() {
                    Vec::new()
                } else {
                    sources_for(&layer.digest)
                },
                recompress,
            });
        }

        let concurrency = options.concurrency.max(1);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let ctx = PushContext {
            pusher: self,
            destination,
            image: &name,
            target: options.compression,
            level: options.level,
            reporter,
            encoder_threads: (cores / concurrency).max(1),
        };
        let done = run_jobs(&ctx, &jobs, concurrency)?;

        // The manifest: unchanged bytes, or rewritten for new layer blobs.
        let replaced: BTreeMap<&Digest, &Descriptor> = jobs
            .iter()
            .zip(&done)
            .filter(|(_, d)| d.recompressed)
            .map(|(job, d)| (&job.descriptor.digest, &d.descriptor))
            .collect();
        let (push_bytes, push_type) = if replaced.is_empty() {
            (bytes, media_type)
        } else {
            let mut oci: Manifest =
                if MediaType::parse(&media_type) == Some(MediaType::DockerManifest) {
                    manifest.to_oci()
                } else {
                    manifest.clone()
                };
            for layer in &mut oci.layers {
                if let Some(new) = replaced.get(&layer.digest) {
                    *layer = (*new).clone();
                }
            }
            let bytes = serde_json::to_vec(&oci).expect("a manifest serialises");
            (bytes, media_type::OCI_MANIFEST.to_string())
        };
        // A destination pinned by digest names the manifest it pins; a
        // rewritten manifest is put under its own new digest instead.
        let destination = &match destination.digest() {
            Some(_) if !replaced.is_empty() => {
                destination.with_digest(Digest::of_bytes(&push_bytes))
            }
            _ => destination.clone(),
        };
        reporter.status(&format!("writing manifest to {destination}"));
        let digest = self
            .client
            .push_manifest(destination, &push_type, &push_bytes)
            .map_err(|source| PushError::Registry {
                image: name.clone(),
                destination: destination.to_string(),
                source: Box::new(source),
            })?;
        let count = |o: BlobOutcome| done.iter().filter(|d| d.outcome == o).count();
        Ok(Pushed {
            destination: destination.to_string(),
            manifest: Descriptor::new(push_type, digest, push_bytes.len() as u64),
            present: count(BlobOutcome::AlreadyExists),
            mounted: count(BlobOutcome::Mounted),
            uploaded: count(BlobOutcome::Uploaded),
            recompressed: done.iter().filter(|d| d.recompressed).count(),
        })
    }

    /// Pushes a manifest list: each of its images to `destination`'s
    /// repository by digest (blobs first, as [`Self::push`] does, and in
    /// turn, so later images mount or skip the blobs earlier ones sent),
    /// then the index under `destination`'s tag. A registry refuses an index
    /// whose images it lacks, so the index goes last.
    ///
    /// Without recompression the index is pushed as the exact bytes stored,
    /// keeping its digest. With it, an image whose layers were re-encoded
    /// has a new manifest digest, and the index is rewritten with the new
    /// descriptors (platforms and annotations kept).
    pub fn push_list(
        &self,
        list: &ImageRecord,
        destination: &ImageRef,
        options: &PushOptions,
        reporter: &dyn Reporter,
    ) -> Result<PushedList, PushError> {
        let name = list.name.clone();
        let (bytes, mut index) =
            self.store
                .index(&list.manifest.digest)
                .map_err(|source| PushError::Store {
                    image: name.clone(),
                    source,
                })?;
        let mut images = Vec::with_capacity(index.manifests.len());
        let mut rewritten = false;
        for child in &mut index.manifests {
            let label = match &child.platform {
                Some(p) => format!("{name} ({p})"),
                None => format!("{name}@{}", child.digest),
            };
            let record = ImageRecord {
                name: label.clone(),
                manifest: child.clone(),
            };
            if record.is_list() {
                return Err(PushError::UnsupportedManifest {
                    image: label,
                    manifest: child.digest.clone(),
                    media_type: child.media_type.clone(),
                });
            }
            reporter.status(&format!("pushing {label}"));
            // By digest: the list's tag is for the index alone.
            let target = destination.with_digest(child.digest.clone());
            let pushed = self.push(&record, &target, options, reporter)?;
            if pushed.manifest.digest != child.digest {
                child.media_type = pushed.manifest.media_type.clone();
                child.digest = pushed.manifest.digest.clone();
                child.size = pushed.manifest.size;
                rewritten = true;
            }
            images.push(pushed);
        }
        let bytes = if rewritten {
            serde_json::to_vec(&index).expect("an index serialises")
        } else {
            bytes
        };
        let media_type = index
            .media_type
            .clone()
            .unwrap_or_else(|| media_type::OCI_INDEX.to_string());
        reporter.status(&format!("writing manifest list to {destination}"));
        let digest = self
            .client
            .push_manifest(destination, &media_type, &bytes)
            .map_err(|source| PushError::Registry {
                image: name.clone(),
                destination: destination.to_string(),
                source: Box::new(source),
            })?;
        Ok(PushedList {
            destination: destination.to_string(),
            index: Descriptor::new(media_type, digest, bytes.len() as u64),
            images,
        })
    }

    /// Repositories of `destination`'s registry (other than its own) that
    /// should hold each blob, best first (see the module doc).
    fn mount_sources(
        &self,
        image: &ImageRecord,
        destination: &ImageRef,
    ) -> Result<HashMap<Digest, Vec<String>>, StoreError> {
        let mut out: HashMap<Digest, Vec<String>> = HashMap::new();
        let mut add = |digest: &Digest, repo: &str| {
            if repo == destination.repository() {
                return;
            }
            let repos = out.entry(digest.clone()).or_default();
            if !repos.iter().any(|r| r == repo) {
                repos.push(repo.to_string());
            }
        };
        let same_registry = |name: &str| {
            ImageRef::parse(name)
                .ok()
                .filter(|r| r.registry() == destination.registry())
        };
        let records = self.store.list_images()?;
        // This image's own names first, then other images in the registry.
        let (own, others): (Vec<&ImageRecord>, Vec<&ImageRecord>) = records
            .iter()
            .partition(|r| r.manifest.digest == image.manifest.digest);
        for record in own.into_iter().chain(others) {
            let Some(reference) = same_registry(&record.name) else {
                continue;
            };
            let Ok((_, manifest)) = self.store.manifest(&record.manifest.digest) else {
                continue;
            };
            for desc in std::iter::once(&manifest.config).chain(&manifest.layers) {
                add(&desc.digest, reference.repository());
            }
        }
        let pushed_to = self.pushed_to.lock().unwrap_or_else(|e| e.into_inner());
        for (digest, places) in pushed_to.iter() {
            for (registry, repo) in places {
                if registry == destination.registry() {
                    add(digest, repo);
                }
            }
        }
        Ok(out)
    }

    fn remember(&self, digest: &Digest, destination: &ImageRef) {
        let mut pushed_to = self.pushed_to.lock().unwrap_or_else(|e| e.into_inner());
        let place = (
            destination.registry().to_string(),
            destination.repository().to_string(),
        );
        let places = pushed_to.entry(digest.clone()).or_default();
        if !places.contains(&place) {
            places.push(place);
        }
    }
}

/// Runs the blob jobs on up to `concurrency` scoped threads; the first
/// error stops the others at their next job and is returned. The results
/// are in job order.
fn run_jobs(
    ctx: &PushContext<'_>,
    jobs: &[BlobJob],
    concurrency: usize,
) -> Result<Vec<JobDone>, PushError> {
    let next = AtomicUsize::new(0);
    let cancelled = AtomicBool::new(false);
    let results: Mutex<Vec<Option<JobDone>>> = Mutex::new(jobs.iter().map(|_| None).collect());
    let first_error: Mutex<Option<PushError>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..concurrency.min(jobs.len()) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= jobs.len() || cancelled.load(Ordering::SeqCst) {
                        return;
                    }
                    match push_blob(ctx, &jobs[i], &cancelled) {
                        Ok(done) => {
                            results.lock().expect("no panics while held")[i] = Some(done);
                        }
                        Err(e) => {
                            cancelled.store(true, Ordering::SeqCst);
                            let mut slot = first_error.lock().expect("no panics while held");
                            if slot.is_none() || matches!(*slot, Some(PushError::Cancelled { .. }))
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
    if let Some(e) = first_error.into_inner().expect("no panics while held") {
        return Err(e);
    }
    Ok(results
        .into_inner()
        .expect("no panics while held")
        .into_iter()
        .map(|d| d.expect("every job ran"))
        .collect())
}

/// Makes one blob present in the destination.
fn push_blob(
    ctx: &PushContext<'_>,
    job: &BlobJob,
    cancelled: &AtomicBool,
) -> Result<JobDone, PushError> {
    let pusher = ctx.pusher;
    let image = ctx.image.to_string();
    let registry_err = |source| PushError::Registry {
        image: image.clone(),
        destination: ctx.destination.to_string(),
        source: Box::new(source),
    };
    let store_err = |source| PushError::Store {
        image: image.clone(),
        source,
    };

    // The blob to send: the stored one, or a re-encoded one in a
    // transaction that lives until it is sent.
    let mut _txn: Option<Transaction> = None;
    let (descriptor, file, recompressed) = match &job.recompress {
        None => {
            let file = pusher
                .store
                .open_blob(&job.descriptor.digest)
                .map_err(store_err)?;
            (job.descriptor.clone(), file, false)
        }
        Some((have, diff_id)) => {
            let target = ctx.target.expect("recompression has a target");
            ctx.reporter.status(&format!(
                "recompressing layer {} to {}",
                job.descriptor.digest.short(),
                compression_name(target)
            ));
            let (txn, desc) = recompress(ctx, &job.descriptor, *have, target, diff_id)?;
            let file = File::open(txn.blob_path()).map_err(|e| PushError::Recompress {
                image: image.clone(),
                blob: job.descriptor.digest.clone(),
                source: e,
            })?;
            _txn = Some(txn);
            (desc, file, true)
        }
    };
    if cancelled.load(Ordering::SeqCst) {
        return Err(PushError::Cancelled { image });
    }

    let outcome = if pusher
        .client
        .blob_exists(ctx.destination, &descriptor.digest)
        .map_err(registry_err)?
    {
        ctx.reporter
            .blob_done(&descriptor.digest, BlobOutcome::AlreadyExists);
        BlobOutcome::AlreadyExists
    } else {
        ctx.reporter
            .blob_start(&descriptor.digest, descriptor.size, job.what);
        let progress = |n: u64| ctx.reporter.blob_progress(&descriptor.digest, n);
        let pushed = pusher
            .client
            .upload_blob(
                ctx.destination,
                &descriptor,
                &file,
                &job.mount_from,
                &progress,
            )
            .map_err(registry_err)?;
        let outcome = match pushed {
            BlobPushed::Mounted { from } => {
                tracing::debug!(blob = %descriptor.digest, %from, "mounted");
                BlobOutcome::Mounted
            }
            BlobPushed::Uploaded { chunks, recoveries } => {
                tracing::debug!(blob = %descriptor.digest, chunks, recoveries, "uploaded");
                BlobOutcome::Uploaded
            }
        };
        ctx.reporter.blob_done(&descriptor.digest, outcome);
        outcome
    };
    pusher.remember(&descriptor.digest, ctx.destination);
    Ok(JobDone {
        descriptor,
        outcome,
        recompressed,
    })
}

/// Re-encodes a stored layer from `have` to `target` into a new
/// transaction's blob, checking the decoded tar against `diff_id`.
fn recompress(
    ctx: &PushContext<'_>,
    desc: &Descriptor,
    have: Compression,
    target: Compression,
    diff_id: &DiffId,
) -> Result<(Transaction, Descriptor), PushError> {
    let image = ctx.image.to_string();
    let store = ctx.pusher.store;
    let io_err = |source| PushError::Recompress {
        image: image.clone(),
        blob: desc.digest.clone(),
        source,
    };
    let store_err = |source| PushError::Store {
        image: image.clone(),
        source,
    };
    let txn = store.begin().map_err(store_err)?;
    let src = store.open_blob(&desc.digest).map_err(store_err)?;
    let out = txn.create_blob().map_err(store_err)?;
    let mut tar =
        HashingReader::new(decoder(have, BufReader::with_capacity(1 << 20, src)).map_err(io_err)?);
    let sink = HashingWriter::new(BufWriter::with_capacity(1 << 20, out));
    let encoded = std::thread::scope(|scope| -> io::Result<HashingWriter<BufWriter<File>>> {
        // On an error the encoder is dropped: its workers stop.
        let mut encoder = Encoder::new(target, ctx.level, ctx.encoder_threads, sink, scope)?;
        io::copy(&mut tar, &mut encoder)?;
        encoder.finish()
    })
    .map_err(io_err)?;
    let (digest, size, mut file) = encoded.finish();
    file.flush().map_err(io_err)?;
    let (tar_digest, _) = tar.finish().map_err(io_err)?;
    if tar_digest != diff_id.0 {
        return Err(PushError::DiffIdMismatch {
            image,
            blob: desc.digest.clone(),
            expected: diff_id.clone(),
            actual: tar_digest,
        });
    }
    let media_type = match target {
        Compression::None => media_type::OCI_LAYER_TAR,
        Compression::Gzip => media_type::OCI_LAYER_GZIP,
        Compression::Zstd => media_type::OCI_LAYER_ZSTD,
    };
    let mut new = Descriptor::new(media_type, digest, size);
    new.annotations = desc.annotations.clone();
    Ok((txn, new))
}

fn compression_name(c: Compression) -> &'static str {
    match c {
        Compression::None => "uncompressed",
        Compression::Gzip => "gzip",
        Compression::Zstd => "zstd",
    }
}
