//! Image records: the store's `index.json` (an OCI image index) holds one
//! manifest descriptor per image name, the name being the descriptor's
//! `org.opencontainers.image.ref.name` annotation with the full normalised
//! reference (`docker.io/library/busybox:latest`). Keeping names there, and
//! not in a private file, is what lets `skopeo copy oci:ROOT:NAME` and
//! `umoci` read builder's store directly.

use std::collections::BTreeMap;
use std::fs;

use super::{Store, StoreError, lock::IndexLock};
use crate::oci::{Descriptor, Digest, Index, Manifest, MediaType};

/// The annotation that names an image in an OCI layout's index.
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";

/// On an index entry whose manifest builder converted from a Docker schema2
/// manifest: the digest of the manifest as the registry served it. That blob
/// is kept (and is live for `prune`), so the image still has its registry
/// identity (`inspect`'s `digest`) and can be pushed back unchanged.
pub const SOURCE_MANIFEST_ANNOTATION: &str = "dev.builder.source-manifest";

/// Prefix of the name an image without a name is kept under (see
/// [`unnamed_image_name`]). A real name is a normalised reference, which
/// always holds a `/` (`docker.io/library/…`), so the two never collide.
const UNNAMED_PREFIX: &str = "sha256:";

/// The name an image that has none (loaded from an archive without names)
/// is kept under: its image ID, `sha256:<config hex>`. The layout must name
/// every image it keeps (an unnamed entry would be invisible to `images`
/// and collected by `prune`); `set_image` drops this placeholder once the
/// image gets a real name.
pub fn unnamed_image_name(image_id: &Digest) -> String {
    format!("{UNNAMED_PREFIX}{}", image_id.hex())
}

pub(super) const EMPTY_INDEX: &str =
    r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;

/// One named entry of `index.json`: an image, or a manifest list
/// ([`ImageRecord::is_list`]) made by `builder manifest`.
///
/// A record may also stand for one image of a list, under the list's name
/// ([`Store::image_for_platform`]); its descriptor is then the list's entry
/// for that image.
#[derive(Debug, Clone)]
pub struct ImageRecord {
    pub name: String,
    /// The manifest the layout names: an image manifest (OCI, or Docker
    /// schema2 as pulled), or for a list an OCI image index.
    pub manifest: Descriptor,
}

/// Whether a descriptor's media type is that of an index (OCI image index
/// or Docker manifest list) rather than of an image manifest.
pub(super) fn is_index_media_type(media_type: &str) -> bool {
    MediaType::parse(media_type).is_some_and(MediaType::is_index)
}

impl ImageRecord {
    /// Whether this names a manifest list (an image index) rather than an
    /// image: it has no config or layers of its own, only child manifests.
    pub fn is_list(&self) -> bool {
        is_index_media_type(&self.manifest.media_type)
    }

    /// Whether this record is an unnamed image's placeholder
    /// ([`unnamed_image_name`]).
    pub fn is_unnamed(&self) -> bool {
        self.name.starts_with(UNNAMED_PREFIX)
    }

    /// The manifest digest a registry knows this image by: the source
    /// manifest when builder converted it, else the named manifest.
    pub fn registry_digest(&self) -> Digest {
        self.manifest
            .annotation(SOURCE_MANIFEST_ANNOTATION)
            .and_then(|d| Digest::parse(d).ok())
            .unwrap_or_else(|| self.manifest.digest.clone())
    }
}

/// `manifest` as an index entry naming it `name`.
fn named_descriptor(manifest: &Descriptor, name: &str) -> Descriptor {
    let mut descriptor = manifest.clone();
    descriptor.platform = None;
    descriptor
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(REF_NAME_ANNOTATION.to_string(), name.to_string());
    descriptor
}

impl Store {
    fn index_path(&self) -> std::path::PathBuf {
        self.layout_path().join("index.json")
    }

    fn read_index(&self) -> Result<Index, StoreError> {
        let path = self.index_path();
        let bytes = fs::read(&path).map_err(|e| StoreError::io("read", &path, e))?;
        serde_json::from_slice(&bytes).map_err(|source| StoreError::Json { path, source })
    }

    /// Rewrites `index.json` under the index lock; `edit` sees the current
    /// index, so concurrent writers never lose each other's names.
    fn edit_index<T>(&self, edit: impl FnOnce(&mut Index) -> T) -> Result<T, StoreError> {
        self.try_edit_index(|index| Ok(edit(index)))
    }

    /// [`Self::edit_index`] for an edit that may fail: on `Err` nothing is
    /// written.
    pub(super) fn try_edit_index<T>(
        &self,
        edit: impl FnOnce(&mut Index) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let _guard = IndexLock::acquire(&self.builder_dir().join("index.lock"))?;
        let mut index = self.read_index()?;
        let out = edit(&mut index)?;
        let bytes = serde_json::to_vec_pretty(&index).expect("an index always serialises");
        self.write_atomic(&self.index_path(), &bytes)?;
        Ok(out)
    }

    /// Every named entry, images and manifest lists alike, in index order.
    /// A caller that needs an image's manifest or config checks
    /// [`ImageRecord::is_list`] first (or resolves a list to one of its
    /// images with [`Self::image_for_platform`]).
    pub fn list_images(&self) -> Result<Vec<ImageRecord>, StoreError> {
        Ok(self
            .read_index()?
            .manifests
            .into_iter()
            .filter_map(|d| {
                let name = d.annotation(REF_NAME_ANNOTATION)?.to_string();
                Some(ImageRecord { name, manifest: d })
            })
            .collect())
    }

    /// The image or manifest list with exactly this (normalised) name.
    pub fn image(&self, name: &str) -> Result<Option<ImageRecord>, StoreError> {
        Ok(self.list_images()?.into_iter().find(|r| r.name == name))
    }

    /// Names `manifest` as `name`, replacing what the name pointed to before
    /// (and the image's unnamed placeholder, if it had one). The manifest
    /// blob and everything it references must already be stored.
    pub fn set_image(&self, name: &str, manifest: &Descriptor) -> Result<(), StoreError> {
        debug_assert!(self.has_blob(&manifest.digest));
        let descriptor = named_descriptor(manifest, name);
        self.edit_index(|index| {
            index.manifests.retain(|d| {
                let other = d.annotation(REF_NAME_ANNOTATION);
                other != Some(name)
                    && !(d.digest == manifest.digest
                        && other.is_some_and(|n| n.starts_with(UNNAMED_PREFIX)))
            });
            index.manifests.push(descriptor);
        })
    }

    /// Keeps an image that has no name under its placeholder name
    /// ([`unnamed_image_name`]), unless some entry already holds this
    /// manifest (then it has a name, or its placeholder). Returns the name
    /// the image can be found by.
    pub fn add_unnamed_image(
        &self,
        manifest: &Descriptor,
        image_id: &Digest,
    ) -> Result<String, StoreError> {
        debug_assert!(self.has_blob(&manifest.digest));
        let placeholder = unnamed_image_name(image_id);
        let descriptor = named_descriptor(manifest, &placeholder);
        self.edit_index(|index| {
            if let Some(existing) = index
                .manifests
                .iter()
                .find(|d| d.digest == manifest.digest)
                .and_then(|d| d.annotation(REF_NAME_ANNOTATION))
            {
                return existing.to_string();
            }
            index
                .manifests
                .retain(|d| d.annotation(REF_NAME_ANNOTATION) != Some(&placeholder));
            index.manifests.push(descriptor);
            placeholder.clone()
        })
    }

    /// Removes a name; the blobs stay until `prune`. Returns whether the
    /// name existed. Refuses to remove the last name of a mounted image
    /// ([`StoreError::Mounted`]): its mount would outlive any way to name it.
    /// A manifest list that lists the image counts as a name (the image can
    /// be unmounted through it); removing a list is refused likewise while
    /// one of its images is mounted through it and not otherwise named.
    pub fn remove_image(&self, name: &str) -> Result<bool, StoreError> {
        let mounts = self.list_mount_records()?;
        self.try_edit_index(|index| {
            let Some(removed) = index
                .manifests
                .iter()
                .find(|d| d.annotation(REF_NAME_ANNOTATION) == Some(name))
                .cloned()
            else {
                return Ok(false);
            };
            index
                .manifests
                .retain(|d| d.annotation(REF_NAME_ANNOTATION) != Some(name));
            let removed_list = is_index_media_type(&removed.media_type);
            for mount in &mounts {
                let through_this =
                    mount.manifest == removed.digest || (removed_list && mount.name == name);
                if through_this && !self.still_named(index, &mount.manifest)? {
                    return Err(StoreError::Mounted {
                        name: name.to_string(),
                        path: self.mountpoint(&mount.manifest),
                    });
                }
            }
            Ok(true)
        })
    }

    /// Whether `index` (the layout's) names `manifest`, directly or as an
    /// image of a manifest list.
    fn still_named(&self, index: &Index, manifest: &Digest) -> Result<bool, StoreError> {
        for entry in &index.manifests {
            if entry.digest == *manifest {
                return Ok(true);
            }
            if is_index_media_type(&entry.media_type) {
                match self.index(&entry.digest) {
                    Ok((_, list)) if list.manifests.iter().any(|d| d.digest == *manifest) => {
                        return Ok(true);
                    }
                    Ok(_) | Err(StoreError::BlobMissing(_) | StoreError::Json { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(false)
    }

    /// Reads and parses an image's manifest.
    pub fn manifest(&self, digest: &Digest) -> Result<(Vec<u8>, Manifest), StoreError> {
        let bytes = self.read_blob(digest)?;
        let manifest = serde_json::from_slice(&bytes).map_err(|source| StoreError::Json {
            path: self.blob_path(digest),
            source,
        })?;
        Ok((bytes, manifest))
    }

    /// Finds images whose image ID (config digest) or manifest digest (for a
    /// manifest list: index digest) starts with `prefix` (hex, optionally with `sha256:`), as `podman` resolves IDs.
    pub fn images_by_id_prefix(&self, prefix: &str) -> Result<Vec<ImageRecord>, StoreError> {
        let prefix = prefix.strip_prefix("sha256:").unwrap_or(prefix);
        if prefix.len() < 3 || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(Vec::new());
        }
        let mut found = Vec::new();
        for record in self.list_images()? {
            // A list has no image ID: only its index digest identifies it.
            let config_hex = match self.manifest(&record.manifest.digest) {
                Ok((_, m)) if !record.is_list() => m.config.digest.hex().to_string(),
                _ => String::new(),
            };
            if config_hex.starts_with(prefix)
                || record.manifest.digest.hex().starts_with(prefix)
                || record.registry_digest().hex().starts_with(prefix)
            {
                found.push(record);
            }
        }
        Ok(found)
    }
}
