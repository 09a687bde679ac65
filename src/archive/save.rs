//! `save`: stored images → an archive (see the parent module for the
//! formats). Every blob is hashed while it is copied; a stored blob that no
//! longer matches its digest stops the save.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufReader, Read};
use std::path::Path;

use serde::Serialize;

use super::writer::{CopyError, DirSink, Sink, StreamSink, TarSink};
use super::{
    ArchiveError, DOCKER_MANIFEST_FILE, DOCKER_REPOSITORIES_FILE, Format, INDEX_FILE,
    OCI_LAYOUT_CONTENT, OCI_LAYOUT_FILE, blob_entry,
};
use crate::layer;
use crate::oci::verify::HashingReader;
use crate::oci::{Compression, Descriptor, DiffId, Digest, ImageConfig, Index, Manifest};
use crate::progress::{BlobOutcome, Reporter};
use crate::reference::ImageRef;
use crate::store::{REF_NAME_ANNOTATION, SOURCE_MANIFEST_ANNOTATION, Store};

/// One image to save.
#[derive(Debug, Clone)]
pub struct SaveImage {
    /// The name to give it in the archive; `None` saves it unnamed (asked
    /// for by ID).
    pub name: Option<String>,
    /// The manifest descriptor the store's layout names it by.
    pub manifest: Descriptor,
}

/// What `save` wrote.
#[derive(Debug, Clone)]
pub struct Saved {
    /// Distinct images (one image under two names counts once).
    pub images: usize,
    /// Blobs (OCI) or layer tars and configs (docker-archive) written.
    pub blobs: usize,
}

/// An image read back from the store, verified.
struct Loaded {
    names: Vec<String>,
    label: String,
    manifest_desc: Descriptor,
    manifest_bytes: Vec<u8>,
    manifest: Manifest,
    config_bytes: Vec<u8>,
    diff_ids: Vec<DiffId>,
    /// The Docker manifest it was converted from, when the store keeps one.
    source_manifest: Option<(Digest, Vec<u8>)>,
}

/// Where `save` writes.
#[derive(Debug, Clone, Copy)]
pub enum SaveTo<'a> {
    /// A file (the tar formats) or a directory (`oci-dir`), made under a
    /// temp name and renamed into place when complete.
    Path(&'a Path),
    /// The tar formats only, written as they are made.
    Stdout,
}

/// Writes `images` from `store` to `dest` in `format`.
pub fn save(
    store: &Store,
    images: &[SaveImage],
    format: Format,
    dest: SaveTo<'_>,
    reporter: &dyn Reporter,
) -> Result<Saved, ArchiveError> {
    let images = gather(store, images)?;
    let mut sink: Box<dyn Sink> =
        match (format, dest) {
            (Format::OciArchive | Format::DockerArchive, SaveTo::Path(path)) => {
                Box::new(TarSink::create(path)?)
            }
            (Format::OciArchive | Format::DockerArchive, SaveTo::Stdout) => Box::new(
                StreamSink::new(std::io::stdout().lock(), "stdout", store.tmp_dir()),
            ),
            (Format::OciDir, SaveTo::Path(path)) => Box::new(DirSink::create(path)?),
            (Format::OciDir, SaveTo::Stdout) => {
                return Err(ArchiveError::Unsupported {
                    image: "-".into(),
                    reason: "oci-dir is a directory and cannot go to stdout; give `-o DIR`".into(),
                });
            }
        };
    let blobs = match format {
        Format::OciArchive | Format::OciDir => write_oci(store, &images, sink.as_mut(), reporter)?,
        Format::DockerArchive => write_docker(store, &images, sink.as_mut(), reporter)?,
    };
    sink.finish()?;
    Ok(Saved {
        images: images.len(),
        blobs,
    })
}

/// Reads and verifies each image's manifest and config; one entry per
/// distinct manifest, with every name it was asked for under.
fn gather(store: &Store, wanted: &[SaveImage]) -> Result<Vec<Loaded>, ArchiveError> {
    let mut out: Vec<Loaded> = Vec::new();
    for want in wanted {
        if let Some(existing) = out
            .iter_mut()
            .find(|l| l.manifest_desc.digest == want.manifest.digest)
        {
            if let Some(name) = &want.name
                && !existing.names.contains(name)
            {
                existing.names.push(name.clone());
            }
            continue;
        }
        let label = want
            .name
            .clone()
            .unwrap_or_else(|| want.manifest.digest.to_string());
        let manifest_bytes = read_verified(store, &want.manifest.digest, &label)?;
        let manifest: Manifest =
            serde_json::from_slice(&manifest_bytes).map_err(|e| ArchiveError::Unsupported {
                image: label.clone(),
                reason: format!("manifest {} is not valid: {e}", want.manifest.digest),
            })?;
        let config_bytes = read_verified(store, &manifest.config.digest, &label)?;
        let config: ImageConfig =
            serde_json::from_slice(&config_bytes).map_err(|e| ArchiveError::Unsupported {
                image: label.clone(),
                reason: format!("config {} is not valid: {e}", manifest.config.digest),
            })?;
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(ArchiveError::Unsupported {
                image: label,
                reason: format!(
                    "its config lists {} diffIDs for {} layers",
                    config.rootfs.diff_ids.len(),
                    manifest.layers.len()
                ),
            });
        }
        let source_manifest = match want
            .manifest
            .annotation(SOURCE_MANIFEST_ANNOTATION)
            .and_then(|d| Digest::parse(d).ok())
        {
            Some(d) if store.has_blob(&d) => {
                let bytes = read_verified(store, &d, &label)?;
                Some((d, bytes))
            }
            _ => None,
        };
        out.push(Loaded {
            names: want.name.iter().cloned().collect(),
            label,
            manifest_desc: want.manifest.clone(),
            manifest_bytes,
            manifest,
            config_bytes,
            diff_ids: config.rootfs.diff_ids,
            source_manifest,
        });
    }
    Ok(out)
}

/// A small stored blob, checked against its digest.
fn read_verified(store: &Store, digest: &Digest, image: &str) -> Result<Vec<u8>, ArchiveError> {
    let bytes = store.read_blob(digest)?;
    let actual = Digest::of_bytes(&bytes);
    if actual != *digest {
        return Err(ArchiveError::StoreCorrupt {
            image: image.to_string(),
            digest: digest.clone(),
            actual,
        });
    }
    Ok(bytes)
}

/// The OCI layout: `oci-layout`, `index.json`, then the blobs (manifests
/// and configs before layers, so a streaming reader meets them first).
fn write_oci(
    store: &Store,
    images: &[Loaded],
    sink: &mut dyn Sink,
    reporter: &dyn Reporter,
) -> Result<usize, ArchiveError> {
    let mut index = Index {
        schema_version: 2,
        media_type: Some(crate::oci::media_type::OCI_INDEX.to_string()),
        manifests: Vec::new(),
        annotations: None,
        extra: Default::default(),
    };
    for image in images {
        let mut desc = image.manifest_desc.clone();
        // Keep only what describes the image itself: the store's own name
        // annotation is replaced by the names asked for.
        let mut annotations: BTreeMap<String, String> = desc.annotations.take().unwrap_or_default();
        annotations.remove(REF_NAME_ANNOTATION);
        if image.source_manifest.is_none() {
            annotations.remove(SOURCE_MANIFEST_ANNOTATION);
        }
        let entry = |name: Option<&String>| {
            let mut a = annotations.clone();
            if let Some(name) = name {
                a.insert(REF_NAME_ANNOTATION.to_string(), name.clone());
            }
            Descriptor {
                annotations: (!a.is_empty()).then_some(a),
                ..desc.clone()
            }
        };
        if image.names.is_empty() {
            index.manifests.push(entry(None));
        }
        for name in &image.names {
            index.manifests.push(entry(Some(name)));
        }
    }
    let index_bytes = serde_json::to_vec(&index).expect("an index serialises");
    sink.bytes(OCI_LAYOUT_FILE, OCI_LAYOUT_CONTENT)?;
    sink.bytes(INDEX_FILE, &index_bytes)?;
    sink.dir("blobs")?;
    sink.dir("blobs/sha256")?;

    let mut written: BTreeSet<Digest> = BTreeSet::new();
    for image in images {
        let mut small = vec![
            (&image.manifest_desc.digest, &image.manifest_bytes),
            (&image.manifest.config.digest, &image.config_bytes),
        ];
        if let Some((d, bytes)) = &image.source_manifest {
            small.push((d, bytes));
        }
        for (digest, bytes) in small {
            if written.insert(digest.clone()) {
                sink.bytes(&blob_entry(digest), bytes)?;
            }
        }
    }
    for image in images {
        for layer in &image.manifest.layers {
            if !written.insert(layer.digest.clone()) {
                continue;
            }
            copy_blob(
                store,
                image,
                layer,
                &blob_entry(&layer.digest),
                sink,
                reporter,
            )?;
        }
    }
    Ok(written.len())
}

/// Copies a stored blob into the archive, verifying its digest and size.
fn copy_blob(
    store: &Store,
    image: &Loaded,
    layer: &Descriptor,
    entry: &str,
    sink: &mut dyn Sink,
    reporter: &dyn Reporter,
) -> Result<(), ArchiveError> {
    reporter.blob_start(&layer.digest, layer.size, "layer");
    let path = store.blob_path(&layer.digest);
    let file = store.open_blob(&layer.digest)?;
    let len = file
        .metadata()
        .map_err(|e| ArchiveError::io("stat", &path, e))?
        .len();
    let mut hashing = HashingReader::new(Progress {
        inner: BufReader::with_capacity(1 << 20, file),
        reporter,
        digest: &layer.digest,
    });
    if len != layer.size {
        return Err(ArchiveError::Unsupported {
            image: image.label.clone(),
            reason: format!(
                "stored blob {} is {len} bytes, its manifest says {}; run `builder check`",
                layer.digest, layer.size
            ),
        });
    }
    match sink.sized(entry, layer.size, &mut hashing) {
        Ok(()) => {}
        Err(CopyError::Read(e)) => return Err(ArchiveError::io("read", &path, e)),
        Err(CopyError::Write(e)) => return Err(e),
    }
    let (actual, _) = hashing
        .finish()
        .map_err(|e| ArchiveError::io("read", &path, e))?;
    if actual != layer.digest {
        return Err(ArchiveError::StoreCorrupt {
            image: image.label.clone(),
            digest: layer.digest.clone(),
            actual,
        });
    }
    reporter.blob_done(&layer.digest, BlobOutcome::Downloaded);
    Ok(())
}

/// One image in `manifest.json`.
#[derive(Serialize)]
struct DockerManifestEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags")]
    repo_tags: Vec<String>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

/// The `docker save` layout: each layer as `<diffid>/layer.tar`
/// (uncompressed), each config as `<id>.json`, then `manifest.json` and
/// `repositories`.
fn write_docker(
    store: &Store,
    images: &[Loaded],
    sink: &mut dyn Sink,
    reporter: &dyn Reporter,
) -> Result<usize, ArchiveError> {
    let mut written: BTreeSet<String> = BTreeSet::new();
    let mut entries = Vec::new();
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for image in images {
        let mut layer_paths = Vec::new();
        for (layer, diff_id) in image.manifest.layers.iter().zip(&image.diff_ids) {
            let dir = diff_id.0.hex().to_string();
            let path = format!("{dir}/layer.tar");
            if written.insert(path.clone()) {
                sink.dir(&dir)?;
                write_docker_layer(store, image, layer, diff_id, &path, sink, reporter)?;
            }
            layer_paths.push(path);
        }
        let config = format!("{}.json", image.manifest.config.digest.hex());
        if written.insert(config.clone()) {
            sink.bytes(&config, &image.config_bytes)?;
        }
        // Docker's tags must be tags: a name pinned by digest has none.
        let mut repo_tags = Vec::new();
        for name in &image.names {
            if let Ok(r) = ImageRef::parse(name)
                && let (Some(tag), None) = (r.tag(), r.digest())
            {
                repo_tags.push(name.clone());
                if let Some(top) = image.diff_ids.last() {
                    repositories
                        .entry(r.name())
                        .or_default()
                        .insert(tag.to_string(), top.0.hex().to_string());
                }
            }
        }
        entries.push(DockerManifestEntry {
            config,
            repo_tags,
            layers: layer_paths,
        });
    }
    let manifest = serde_json::to_vec(&entries).expect("manifest.json serialises");
    sink.bytes(DOCKER_MANIFEST_FILE, &manifest)?;
    let repositories = serde_json::to_vec(&repositories).expect("repositories serialises");
    sink.bytes(DOCKER_REPOSITORIES_FILE, &repositories)?;
    Ok(written.len())
}

/// Writes one layer as an uncompressed tar, decompressing the stored blob
/// on the fly; both the blob digest and the DiffID are verified.
fn write_docker_layer(
    store: &Store,
    image: &Loaded,
    layer: &Descriptor,
    diff_id: &DiffId,
    entry: &str,
    sink: &mut dyn Sink,
    reporter: &dyn Reporter,
) -> Result<(), ArchiveError> {
    let compression = Compression::from_layer_media_type(&layer.media_type).ok_or_else(|| {
        ArchiveError::Unsupported {
            image: image.label.clone(),
            reason: format!(
                "layer {} has media type `{}`, which builder cannot decompress",
                layer.digest, layer.media_type
            ),
        }
    })?;
    if compression == Compression::None {
        // The blob is the tar: copy it as it is (and its digest must be
        // the DiffID).
        if layer.digest != diff_id.0 {
            return Err(ArchiveError::Unsupported {
                image: image.label.clone(),
                reason: format!(
                    "uncompressed layer {} does not match its diffID {diff_id}",
                    layer.digest
                ),
            });
        }
        return copy_blob(store, image, layer, entry, sink, reporter);
    }
    reporter.blob_start(&layer.digest, layer.size, "layer");
    let path = store.blob_path(&layer.digest);
    let read_err = |e| ArchiveError::io("read", &path, e);
    let file = store.open_blob(&layer.digest)?;
    let mut blob = HashingReader::new(Progress {
        inner: BufReader::with_capacity(1 << 20, file),
        reporter,
        digest: &layer.digest,
    });
    let copied = {
        let decoder = layer::compression::decoder(compression, &mut blob).map_err(read_err)?;
        let mut tar = HashingReader::new(decoder);
        match sink.streamed(entry, &mut tar) {
            Ok(_) => tar.finish().map(|(d, _)| d).map_err(CopyError::Read),
            Err(e) => Err(e),
        }
    };
    // The decoder may stop before the blob's last bytes: hash those too.
    // A blob that does not hash to its digest is the root cause of any
    // decompression error, so it is checked first.
    let (blob_digest, _) = blob.finish().map_err(read_err)?;
    let corrupt = |digest: &Digest, actual| ArchiveError::StoreCorrupt {
        image: image.label.clone(),
        digest: digest.clone(),
        actual,
    };
    if blob_digest != layer.digest {
        return Err(corrupt(&layer.digest, blob_digest));
    }
    let tar_digest = match copied {
        Ok(d) => d,
        Err(CopyError::Read(e)) => return Err(ArchiveError::io("decompress", &path, e)),
        Err(CopyError::Write(e)) => return Err(e),
    };
    if tar_digest != diff_id.0 {
        return Err(corrupt(&diff_id.0, tar_digest));
    }
    reporter.blob_done(&layer.digest, BlobOutcome::Downloaded);
    Ok(())
}

/// Reports bytes read from a stored blob.
struct Progress<'a, R> {
    inner: R,
    reporter: &'a dyn Reporter,
    digest: &'a Digest,
}

impl<R: Read> Read for Progress<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.reporter.blob_progress(self.digest, n as u64);
        Ok(n)
    }
}
