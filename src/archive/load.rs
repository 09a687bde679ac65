//! `load`: an archive → images in the store. Three phases:
//! 1. plan: read and verify every small document (index, manifests,
//!    configs, `manifest.json`) and list the layers each image needs;
//! 2. stage: read each distinct layer the store lacks once, verifying its
//!    digest and DiffID and unpacking it into a transaction
//!    ([`crate::ingest::stage_layer`]), several at once;
//! 3. commit: only when every layer staged, commit them, store configs and
//!    manifests, and name the images.
//!
//! An error in phase 1 or 2 drops every transaction: the store is as
//! before.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use serde::Deserialize;

use super::source::{Opened, Source, normalise};
use super::{
    ArchiveError, CONTAINERD_NAME_ANNOTATION, DOCKER_MANIFEST_FILE, Format, INDEX_FILE,
    OCI_LAYOUT_FILE, blob_entry,
};
use crate::ingest::{LayerSpec, StagedLayer, Watched, stage_layer, store_manifest};
use crate::layer::compression::{Format as Compressed, MAGIC_LEN};
use crate::oci::{
    Compression, Descriptor, DiffId, Digest, ImageConfig, Index, Manifest, MediaType, Platform,
    media_type,
};
use crate::progress::{BlobOutcome, Reporter};
use crate::reference::ImageRef;
use crate::store::{REF_NAME_ANNOTATION, SOURCE_MANIFEST_ANNOTATION, Store};

/// Largest manifest or index accepted (as from a registry).
const MANIFEST_MAX: u64 = 4 * 1024 * 1024;
/// Largest config, `index.json` or `manifest.json` accepted.
const DOCUMENT_MAX: u64 = 32 * 1024 * 1024;

/// How to load.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// The platform to pick from a multi-platform image in an OCI layout.
    pub platform: Platform,
    /// How many layers to read at once.
    pub concurrency: usize,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            platform: Platform::host(),
            concurrency: 4,
        }
    }
}

/// What a load did.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub format: Format,
    pub images: Vec<LoadedImage>,
    /// Layers read from the archive and committed.
    pub layers_stored: usize,
    /// Layers the store already had (not read).
    pub layers_present: usize,
    /// Names found in the archive that could not be used, and why.
    pub ignored_names: Vec<(String, String)>,
}

/// One image now in the store.
#[derive(Debug, Clone)]
pub struct LoadedImage {
    /// The names it was given; empty when the archive had none for it.
    pub names: Vec<String>,
    /// When it has no name: what the store keeps it under (its ID as
    /// `sha256:…`, or a name it already had).
    pub kept_as: Option<String>,
    /// The image ID (config digest).
    pub id: Digest,
    /// The manifest the store's layout names it by.
    pub manifest: Descriptor,
}

/// Loads every image in the archive (or layout directory) at `path`.
pub fn load(
    store: &Store,
    path: &std::path::Path,
    options: &LoadOptions,
    reporter: &dyn Reporter,
) -> Result<Loaded, ArchiveError> {
    let source = Source::read_from(path, store)?;
    let mut ignored_names = Vec::new();
    let (format, images) = if source.has(INDEX_FILE) && source.has(OCI_LAYOUT_FILE) {
        let format = if path.is_dir() {
            Format::OciDir
        } else {
            Format::OciArchive
        };
        (format, plan_oci(&source, options, &mut ignored_names)?)
    } else if source.has(DOCKER_MANIFEST_FILE) {
        (
            Format::DockerArchive,
            plan_docker(&source, &mut ignored_names)?,
        )
    } else if source.has(INDEX_FILE) {
        // An OCI layout without its `oci-layout` marker: still readable.
        let format = if path.is_dir() {
            Format::OciDir
        } else {
            Format::OciArchive
        };
        (format, plan_oci(&source, options, &mut ignored_names)?)
    } else {
        return Err(ArchiveError::NotAnArchive {
            path: path.to_path_buf(),
            reason: format!(
                "it has neither `{DOCKER_MANIFEST_FILE}` (docker-archive) nor `{INDEX_FILE}` (OCI layout)"
            ),
        });
    };
    if images.is_empty() {
        return Err(ArchiveError::Empty);
    }
    check_one_diff_id_per_blob(&images)?;

    // Phase 2: one job per distinct layer.
    let mut jobs: Vec<Job> = Vec::new();
    let mut job_of: BTreeMap<String, usize> = BTreeMap::new();
    let mut image_layers: Vec<Vec<usize>> = Vec::new();
    for image in &images {
        let mut ids = Vec::new();
        for layer in &image.layers {
            let key = match &layer.spec.digest {
                Some(d) => d.to_string(),
                None => layer.entry.clone(),
            };
            let id = *job_of.entry(key).or_insert_with(|| {
                let mut spec = layer.spec.clone();
                if let Some(d) = &spec.digest {
                    spec.store_blob = !store.has_blob(d);
                }
                spec.unpack = !store.has_layer(&spec.diff_id);
                jobs.push(Job {
                    entry: layer.entry.clone(),
                    media_type: layer.media_type.clone(),
                    spec,
                });
                jobs.len() - 1
            });
            ids.push(id);
        }
        image_layers.push(ids);
    }
    let results = stage_all(store, &source, &jobs, options.concurrency.max(1), reporter)?;

    // Phase 3: commit, then documents, then names.
    let mut layers_stored = 0;
    let mut layers_present = 0;
    let mut done: Vec<(Digest, u64)> = Vec::with_capacity(results.len());
    for result in results {
        match result {
            Staged::Done(staged) => {
                done.push((staged.digest().clone(), staged.size()));
                staged.commit(store)?;
                layers_stored += 1;
            }
            Staged::Present { digest, size } => {
                done.push((digest, size));
                layers_present += 1;
            }
        }
    }
    let mut loaded = Vec::new();
    for (image, layer_jobs) in images.into_iter().zip(image_layers) {
        store.put_blob(&image.config_bytes)?;
        let manifest = match image.manifest {
            PlannedManifest::Stored {
                bytes,
                kind,
                parsed,
                source,
            } => {
                let mut desc = store_manifest(store, &bytes, kind, &parsed)?;
                if let Some((digest, bytes)) = source {
                    store.put_blob(&bytes)?;
                    desc.annotations =
                        Some([(SOURCE_MANIFEST_ANNOTATION.to_string(), digest.to_string())].into());
                }
                desc
            }
            PlannedManifest::Synthesised => {
                let layers = layer_jobs
                    .iter()
                    .map(|&j| {
                        let (digest, size) = &done[j];
                        Descriptor::new(jobs[j].media_type.clone(), digest.clone(), *size)
                    })
                    .collect();
                let manifest = Manifest {
                    schema_version: 2,
                    media_type: Some(media_type::OCI_MANIFEST.to_string()),
                    config: Descriptor::new(
                        media_type::OCI_CONFIG,
                        image.config_digest.clone(),
                        image.config_bytes.len() as u64,
                    ),
                    layers,
                    annotations: None,
                    extra: Default::default(),
                };
                let bytes = serde_json::to_vec(&manifest).expect("a manifest serialises");
                store_manifest(store, &bytes, MediaType::OciManifest, &manifest)?
            }
        };
        for name in &image.names {
            store.set_image(name, &manifest)?;
        }
        let kept_as = if image.names.is_empty() {
            Some(store.add_unnamed_image(&manifest, &image.config_digest)?)
        } else {
            None
        };
        loaded.push(LoadedImage {
            names: image.names,
            kept_as,
            id: image.config_digest,
            manifest,
        });
    }
    Ok(Loaded {
        format,
        images: loaded,
        layers_stored,
        layers_present,
        ignored_names,
    })
}

/// An image as planned from the archive's documents, all verified.
struct Planned {
    names: Vec<String>,
    /// How errors name it: its first name, or where it is in the archive.
    label: String,
    config_bytes: Vec<u8>,
    config_digest: Digest,
    layers: Vec<PlannedLayer>,
    manifest: PlannedManifest,
}

enum PlannedManifest {
    /// The archive's own manifest (OCI layout), stored as it is.
    Stored {
        bytes: Vec<u8>,
        kind: MediaType,
        parsed: Box<Manifest>,
        /// The Docker manifest builder converted it from (builder's own
        /// archives carry it), verified to describe the same image.
        source: Option<(Digest, Vec<u8>)>,
    },
    /// A docker-archive has no manifest: builder writes an OCI one once
    /// the layer digests are known.
    Synthesised,
}

struct PlannedLayer {
    entry: String,
    media_type: String,
    spec: LayerSpec,
}

struct Job {
    entry: String,
    media_type: String,
    spec: LayerSpec,
}

enum Staged {
    Done(StagedLayer),
    /// The store had both the blob and the unpacked layer.
    Present {
        digest: Digest,
        size: u64,
    },
}

// ------------------------------------------------------------------ OCI layout

fn plan_oci(
    source: &Source,
    options: &LoadOptions,
    ignored: &mut Vec<(String, String)>,
) -> Result<Vec<Planned>, ArchiveError> {
    let index_bytes = read_document(source, INDEX_FILE, DOCUMENT_MAX, None)?;
    let index: Index = parse(INDEX_FILE, &index_bytes)?;

    // Index entries → the image manifest each one means, with its names.
    struct Target {
        desc: Descriptor,
        names: Vec<String>,
        source_annotation: Option<String>,
        label: String,
    }
    let mut targets: Vec<Target> = Vec::new();
    for (i, entry) in index.manifests.iter().enumerate() {
        let label = entry
            .annotation(REF_NAME_ANNOTATION)
            .map(str::to_string)
            .unwrap_or_else(|| format!("{INDEX_FILE} entry {i}"));
        let desc = match MediaType::parse(&entry.media_type) {
            Some(MediaType::OciManifest | MediaType::DockerManifest) => entry.clone(),
            Some(MediaType::OciIndex | MediaType::DockerManifestList) => {
                select_platform(source, entry, &options.platform, &label)?
            }
            None => {
                ignored.push((
                    label,
                    format!("media type `{}` is not an image", entry.media_type),
                ));
                continue;
            }
        };
        let name = name_from_annotations(entry, ignored);
        let source_annotation = entry
            .annotation(SOURCE_MANIFEST_ANNOTATION)
            .map(str::to_string);
        match targets.iter_mut().find(|t| t.desc.digest == desc.digest) {
            Some(t) => {
                if let Some(n) = name
                    && !t.names.contains(&n)
                {
                    t.names.push(n);
                }
            }
            None => targets.push(Target {
                desc,
                names: name.into_iter().collect(),
                source_annotation,
                label,
            }),
        }
    }

    let mut planned = Vec::new();
    for target in targets {
        let label = target
            .names
            .first()
            .cloned()
            .unwrap_or(target.label.clone());
        let manifest_bytes = read_blob(source, &target.desc, MANIFEST_MAX, &label)?;
        let entry = blob_entry(&target.desc.digest);
        let manifest: Manifest = parse(&entry, &manifest_bytes)?;
        let kind = MediaType::parse(&target.desc.media_type)
            .or_else(|| manifest.media_type.as_deref().and_then(MediaType::parse))
            .unwrap_or(MediaType::OciManifest);
        let config_bytes = read_blob(source, &manifest.config, DOCUMENT_MAX, &label)?;
        let config: ImageConfig = parse(&blob_entry(&manifest.config.digest), &config_bytes)?;
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(ArchiveError::Invalid {
                entry: blob_entry(&manifest.config.digest),
                reason: format!(
                    "rootfs.diff_ids lists {} layers, manifest {} has {}",
                    config.rootfs.diff_ids.len(),
                    target.desc.digest,
                    manifest.layers.len()
                ),
            });
        }
        let mut layers = Vec::new();
        for (desc, diff_id) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
            let compression =
                Compression::from_layer_media_type(&desc.media_type).ok_or_else(|| {
                    ArchiveError::Unsupported {
                        image: label.clone(),
                        reason: format!(
                            "layer {} has media type `{}`, which builder cannot unpack",
                            desc.digest, desc.media_type
                        ),
                    }
                })?;
            let entry = blob_entry(&desc.digest);
            if !source.has(&entry) {
                return Err(ArchiveError::Missing {
                    entry,
                    needed_by: Some(format!("image `{label}`")),
                });
            }
            layers.push(PlannedLayer {
                entry,
                media_type: desc.media_type.clone(),
                spec: LayerSpec {
                    compression,
                    digest: Some(desc.digest.clone()),
                    size: Some(desc.size),
                    diff_id: diff_id.clone(),
                    store_blob: true,
                    unpack: true,
                },
            });
        }
        let source_manifest = match target.source_annotation {
            Some(d) => source_manifest(source, &d, &manifest, &label)?,
            None => None,
        };
        planned.push(Planned {
            names: target.names,
            label,
            config_digest: manifest.config.digest.clone(),
            config_bytes,
            layers,
            manifest: PlannedManifest::Stored {
                bytes: manifest_bytes,
                kind,
                parsed: Box::new(manifest),
                source: source_manifest,
            },
        });
    }
    Ok(planned)
}

/// The platform's manifest from an image index in the layout.
fn select_platform(
    source: &Source,
    index_desc: &Descriptor,
    platform: &Platform,
    label: &str,
) -> Result<Descriptor, ArchiveError> {
    let bytes = read_blob(source, index_desc, MANIFEST_MAX, label)?;
    let index: Index = parse(&blob_entry(&index_desc.digest), &bytes)?;
    let found = index
        .manifests
        .iter()
        .filter(|d| {
            matches!(
                MediaType::parse(&d.media_type),
                Some(MediaType::OciManifest | MediaType::DockerManifest)
            )
        })
        .find(|d| d.platform.as_ref().is_some_and(|p| platform.matches(p)));
    match found {
        Some(d) => Ok(d.clone()),
        None => {
            let available: Vec<String> = index
                .manifests
                .iter()
                .filter_map(|d| d.platform.as_ref())
                .filter(|p| p.os != "unknown")
                .map(|p| p.to_string())
                .collect();
            Err(ArchiveError::Unsupported {
                image: label.to_string(),
                reason: format!(
                    "its index has no image for {platform} (it has: {}); load with --platform",
                    if available.is_empty() {
                        "none".to_string()
                    } else {
                        available.join(", ")
                    }
                ),
            })
        }
    }
}

/// The Docker manifest a builder archive says the image came from, if the
/// archive holds it; it must describe the same config and layers.
fn source_manifest(
    source: &Source,
    annotation: &str,
    manifest: &Manifest,
    label: &str,
) -> Result<Option<(Digest, Vec<u8>)>, ArchiveError> {
    let Ok(digest) = Digest::parse(annotation) else {
        return Ok(None);
    };
    let entry = blob_entry(&digest);
    let Some(bytes) = source.read_small(&entry, MANIFEST_MAX)? else {
        return Ok(None);
    };
    verify_bytes(&entry, &digest, &bytes)?;
    let docker: Manifest = parse(&entry, &bytes)?;
    let same = docker.config.digest == manifest.config.digest
        && docker.layers.len() == manifest.layers.len()
        && docker
            .layers
            .iter()
            .zip(&manifest.layers)
            .all(|(a, b)| a.digest == b.digest);
    if !same {
        return Err(ArchiveError::Invalid {
            entry,
            reason: format!(
                "it is named as the source of the manifest of image `{label}` but describes another image"
            ),
        });
    }
    Ok(Some((digest, bytes)))
}

/// The image name an index entry gives, if any. containerd's annotation
/// holds a full name; `ref.name` is used when it is a reference rather than
/// a bare tag (`latest`, as `skopeo copy …oci:DIR:latest` writes), which
/// names no repository.
fn name_from_annotations(
    entry: &Descriptor,
    ignored: &mut Vec<(String, String)>,
) -> Option<String> {
    if let Some(full) = entry.annotation(CONTAINERD_NAME_ANNOTATION)
        && let Ok(r) = ImageRef::parse(full)
    {
        return Some(r.to_string());
    }
    let name = entry.annotation(REF_NAME_ANNOTATION)?;
    if !name.contains(['/', ':', '@']) {
        ignored.push((
            name.to_string(),
            "a bare tag names no repository".to_string(),
        ));
        return None;
    }
    match ImageRef::parse(name) {
        Ok(r) => Some(r.to_string()),
        Err(e) => {
            ignored.push((name.to_string(), e.to_string()));
            None
        }
    }
}

// ------------------------------------------------------------------ docker-archive

/// One image of `manifest.json`.
#[derive(Deserialize)]
struct DockerEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

fn plan_docker(
    source: &Source,
    ignored: &mut Vec<(String, String)>,
) -> Result<Vec<Planned>, ArchiveError> {
    let bytes = read_document(source, DOCKER_MANIFEST_FILE, DOCUMENT_MAX, None)?;
    let entries: Vec<DockerEntry> = parse(DOCKER_MANIFEST_FILE, &bytes)?;
    let mut planned: Vec<Planned> = Vec::new();
    for entry in entries {
        let mut names = Vec::new();
        for tag in entry.repo_tags.iter().flatten() {
            match ImageRef::parse(tag) {
                Ok(r) => {
                    let n = r.to_string();
                    if !names.contains(&n) {
                        names.push(n);
                    }
                }
                Err(e) => ignored.push((tag.clone(), e.to_string())),
            }
        }
        let label = names.first().cloned().unwrap_or(entry.config.clone());
        let config_bytes = read_document(source, &entry.config, DOCUMENT_MAX, Some(&label))?;
        let config_digest = Digest::of_bytes(&config_bytes);
        if let Some(p) = planned
            .iter_mut()
            .find(|p| p.config_digest == config_digest)
        {
            for n in names {
                if !p.names.contains(&n) {
                    p.names.push(n);
                }
            }
            continue;
        }
        let config: ImageConfig = parse(&entry.config, &config_bytes)?;
        if config.rootfs.diff_ids.len() != entry.layers.len() {
            return Err(ArchiveError::Invalid {
                entry: entry.config.clone(),
                reason: format!(
                    "rootfs.diff_ids lists {} layers, `{DOCKER_MANIFEST_FILE}` {}",
                    config.rootfs.diff_ids.len(),
                    entry.layers.len()
                ),
            });
        }
        let mut layers = Vec::new();
        for (path, diff_id) in entry.layers.iter().zip(&config.rootfs.diff_ids) {
            let member = normalise(path).ok_or_else(|| ArchiveError::Invalid {
                entry: DOCKER_MANIFEST_FILE.to_string(),
                reason: format!("layer path `{path}` leaves the archive"),
            })?;
            layers.push(docker_layer(source, &member, diff_id, &label)?);
        }
        planned.push(Planned {
            names,
            label,
            config_bytes,
            config_digest,
            layers,
            manifest: PlannedManifest::Synthesised,
        });
    }
    Ok(planned)
}

/// A docker-archive layer file: normally an uncompressed tar (its digest
/// is its DiffID); `docker load` also accepts gzip and zstd ones, whose
/// blob digest nobody states (it is computed while reading).
fn docker_layer(
    source: &Source,
    member: &str,
    diff_id: &DiffId,
    label: &str,
) -> Result<PlannedLayer, ArchiveError> {
    let Some(mut opened) = source.member(member)? else {
        return Err(ArchiveError::Missing {
            entry: member.to_string(),
            needed_by: Some(format!("image `{label}`")),
        });
    };
    let mut head = [0u8; MAGIC_LEN];
    let mut n = 0;
    while n < head.len() {
        match opened.reader.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(source) => {
                return Err(ArchiveError::Read {
                    entry: member.to_string(),
                    source,
                });
            }
        }
    }
    let (compression, digest, media_type) = match Compressed::detect(&head[..n]) {
        Compressed::Plain => (
            Compression::None,
            Some(diff_id.0.clone()),
            media_type::OCI_LAYER_TAR,
        ),
        Compressed::Gzip => (Compression::Gzip, None, media_type::OCI_LAYER_GZIP),
        Compressed::Zstd => (Compression::Zstd, None, media_type::OCI_LAYER_ZSTD),
        other => {
            return Err(ArchiveError::Unsupported {
                image: label.to_string(),
                reason: format!(
                    "layer `{member}` is {}-compressed, which no layer media type allows",
                    other.name()
                ),
            });
        }
    };
    Ok(PlannedLayer {
        entry: member.to_string(),
        media_type: media_type.to_string(),
        spec: LayerSpec {
            compression,
            digest,
            size: Some(opened.size),
            diff_id: diff_id.clone(),
            store_blob: true,
            unpack: true,
        },
    })
}

// ------------------------------------------------------------------ staging

/// One blob must always mean one DiffID (as `pull` insists): otherwise the
/// second DiffID would be named without ever being verified.
fn check_one_diff_id_per_blob(images: &[Planned]) -> Result<(), ArchiveError> {
    let mut seen: BTreeMap<&Digest, (&DiffId, &str)> = BTreeMap::new();
    for image in images {
        for layer in &image.layers {
            let Some(digest) = &layer.spec.digest else {
                continue;
            };
            if let Some((first, _)) = seen.insert(digest, (&layer.spec.diff_id, &image.label))
                && *first != layer.spec.diff_id
            {
                return Err(ArchiveError::Unsupported {
                    image: image.label.clone(),
                    reason: format!(
                        "layer {digest} is listed twice with different diffIDs, {first} and {}",
                        layer.spec.diff_id
                    ),
                });
            }
        }
    }
    Ok(())
}

/// Stages every job on up to `concurrency` threads; the first error stops
/// the others and is returned (every staged transaction is then dropped).
fn stage_all(
    store: &Store,
    source: &Source,
    jobs: &[Job],
    concurrency: usize,
    reporter: &dyn Reporter,
) -> Result<Vec<Staged>, ArchiveError> {
    let next = AtomicUsize::new(0);
    let cancelled = AtomicBool::new(false);
    let results: Mutex<Vec<Option<Staged>>> = Mutex::new((0..jobs.len()).map(|_| None).collect());
    let first_error: Mutex<Option<ArchiveError>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..concurrency.min(jobs.len()) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= jobs.len() || cancelled.load(Ordering::SeqCst) {
                        return;
                    }
                    match stage_job(store, source, &jobs[i], &cancelled, reporter) {
                        Ok(staged) => {
                            results.lock().expect("no panics while held")[i] = Some(staged);
                        }
                        Err(e) => {
                            // Keep the root cause, not a sibling's "cancelled".
                            let was_cancelled = cancelled.swap(true, Ordering::SeqCst);
                            let mut slot = first_error.lock().expect("no panics while held");
                            if slot.is_none() || !was_cancelled {
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
        .map(|r| r.expect("every job ran"))
        .collect())
}

fn stage_job(
    store: &Store,
    source: &Source,
    job: &Job,
    cancelled: &AtomicBool,
    reporter: &dyn Reporter,
) -> Result<Staged, ArchiveError> {
    let spec = &job.spec;
    let progress_key = spec
        .digest
        .clone()
        .unwrap_or_else(|| spec.diff_id.0.clone());
    if !spec.store_blob
        && !spec.unpack
        && let (Some(digest), Some(size)) = (&spec.digest, spec.size)
    {
        reporter.blob_done(digest, BlobOutcome::AlreadyExists);
        return Ok(Staged::Present {
            digest: digest.clone(),
            size,
        });
    }
    let Some(Opened { reader, size }) = source.member(&job.entry)? else {
        return Err(ArchiveError::Missing {
            entry: job.entry.clone(),
            needed_by: None,
        });
    };
    reporter.blob_start(&progress_key, size, "layer");
    let watched = Watched {
        inner: reader,
        cancelled,
        reporter,
        digest: &progress_key,
    };
    let staged = stage_layer(store, watched, spec).map_err(|source| ArchiveError::Layer {
        entry: job.entry.clone(),
        source,
    })?;
    reporter.blob_done(&progress_key, BlobOutcome::Downloaded);
    Ok(Staged::Done(staged))
}

// ------------------------------------------------------------------ documents

/// A document member read whole; missing is an error.
fn read_document(
    source: &Source,
    entry: &str,
    limit: u64,
    needed_by: Option<&str>,
) -> Result<Vec<u8>, ArchiveError> {
    source
        .read_small(entry, limit)?
        .ok_or_else(|| ArchiveError::Missing {
            entry: entry.to_string(),
            needed_by: needed_by.map(|n| format!("image `{n}`")),
        })
}

/// A blob the descriptor names, read whole and verified (digest and size).
fn read_blob(
    source: &Source,
    desc: &Descriptor,
    limit: u64,
    label: &str,
) -> Result<Vec<u8>, ArchiveError> {
    let entry = blob_entry(&desc.digest);
    if desc.size > limit {
        return Err(ArchiveError::Invalid {
            entry,
            reason: format!("{} bytes, more than the {limit} allowed", desc.size),
        });
    }
    let bytes = read_document(source, &entry, desc.size, Some(label)).map_err(|e| match e {
        // A member larger than its descriptor says: report the size.
        ArchiveError::Invalid { entry, .. } => ArchiveError::Invalid {
            entry,
            reason: format!("larger than the {} bytes its descriptor says", desc.size),
        },
        e => e,
    })?;
    verify_bytes(&entry, &desc.digest, &bytes)?;
    Ok(bytes)
}

fn verify_bytes(entry: &str, expected: &Digest, bytes: &[u8]) -> Result<(), ArchiveError> {
    let actual = Digest::of_bytes(bytes);
    if actual != *expected {
        return Err(ArchiveError::Mismatch {
            entry: entry.to_string(),
            expected: expected.clone(),
            actual,
        });
    }
    Ok(())
}

fn parse<T: serde::de::DeserializeOwned>(entry: &str, bytes: &[u8]) -> Result<T, ArchiveError> {
    serde_json::from_slice(bytes).map_err(|e| ArchiveError::Invalid {
        entry: entry.to_string(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(annotations: &[(&str, &str)]) -> Descriptor {
        let mut d = Descriptor::new(media_type::OCI_MANIFEST, Digest::of_bytes(b"m"), 1);
        d.annotations = Some(
            annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        d
    }

    #[test]
    fn names_come_from_references_not_bare_tags() {
        let mut ignored = Vec::new();
        let full = entry(&[(REF_NAME_ANNOTATION, "example.com/a/b:1")]);
        assert_eq!(
            name_from_annotations(&full, &mut ignored).as_deref(),
            Some("example.com/a/b:1")
        );
        let short = entry(&[(REF_NAME_ANNOTATION, "busybox:1.36")]);
        assert_eq!(
            name_from_annotations(&short, &mut ignored).as_deref(),
            Some("docker.io/library/busybox:1.36")
        );
        assert!(ignored.is_empty());
        // Docker 25: a bare tag in ref.name, the name in containerd's.
        let docker = entry(&[
            (REF_NAME_ANNOTATION, "latest"),
            (
                CONTAINERD_NAME_ANNOTATION,
                "docker.io/library/alpine:latest",
            ),
        ]);
        assert_eq!(
            name_from_annotations(&docker, &mut ignored).as_deref(),
            Some("docker.io/library/alpine:latest")
        );
        let bare = entry(&[(REF_NAME_ANNOTATION, "latest")]);
        assert_eq!(name_from_annotations(&bare, &mut ignored), None);
        assert_eq!(ignored.len(), 1, "{ignored:?}");
        let invalid = entry(&[(REF_NAME_ANNOTATION, "Bad/Name:x")]);
        assert_eq!(name_from_annotations(&invalid, &mut ignored), None);
        assert_eq!(ignored.len(), 2, "{ignored:?}");
    }
}
