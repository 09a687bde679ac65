//! Manifest lists (`builder manifest`): a name in `index.json` whose entry
//! is an OCI image index instead of an image manifest.
//!
//! The index blob lists one image manifest per platform. A child is named
//! by its registry identity (the Docker original of a converted image, see
//! [`SOURCE_MANIFEST_ANNOTATION`]), so the list can be pushed as is: a
//! registry checks that every manifest an index references exists, under
//! the digest the index gives. Children need no name of their own; the list
//! keeps them, their configs, layer blobs and unpacked layers live
//! (`gc::live_set`).
//!
//! Invariant: an index blob is immutable like every blob; changing a list
//! writes a new index blob and renames the list to it, in one
//! read-modify-write of `index.json` under the index lock, so two
//! concurrent `manifest add`s to one list never lose an entry.

use super::images::{REF_NAME_ANNOTATION, SOURCE_MANIFEST_ANNOTATION, is_index_media_type};
use super::{ImageRecord, Store, StoreError};
use crate::oci::{Descriptor, Digest, ImageConfig, Index, Manifest, Platform, media_type};

/// What [`Store::add_to_list`] did.
#[derive(Debug, Clone)]
pub struct ListAdded {
    /// The list's new index descriptor (as named in `index.json`).
    pub list: Descriptor,
    /// The entry added, with its platform.
    pub entry: Descriptor,
    /// The entry it replaced (same platform), if any.
    pub replaced: Option<Descriptor>,
}

impl Store {
    /// Reads and parses an index blob (a manifest list's).
    pub fn index(&self, digest: &Digest) -> Result<(Vec<u8>, Index), StoreError> {
        let bytes = self.read_blob(digest)?;
        let index = serde_json::from_slice(&bytes).map_err(|source| StoreError::Json {
            path: self.blob_path(digest),
            source,
        })?;
        Ok((bytes, index))
    }

    /// Names a new, empty manifest list `name`. Fails if the name is taken
    /// (by an image or a list): replacing an image by an empty list is
    /// never what was meant.
    pub fn create_list(&self, name: &str) -> Result<Descriptor, StoreError> {
        let bytes = serde_json::to_vec(&Index {
            schema_version: 2,
            media_type: Some(media_type::OCI_INDEX.to_string()),
            manifests: Vec::new(),
            annotations: None,
            extra: Default::default(),
        })
        .expect("an index serialises");
        let digest = self.put_blob(&bytes)?;
        let mut descriptor = Descriptor::new(media_type::OCI_INDEX, digest, bytes.len() as u64);
        descriptor.annotations = Some([(REF_NAME_ANNOTATION.to_string(), name.to_string())].into());
        self.try_edit_index(|index| {
            if let Some(existing) = index
                .manifests
                .iter()
                .find(|d| d.annotation(REF_NAME_ANNOTATION) == Some(name))
            {
                return Err(StoreError::NameInUse {
                    name: name.to_string(),
                    list: is_index_media_type(&existing.media_type),
                });
            }
            index.manifests.push(descriptor.clone());
            Ok(())
        })?;
        Ok(descriptor)
    }

    /// The platform an image's config declares (`os`, `architecture`,
    /// `variant`), normalised as `--platform` is.
    pub fn image_platform(&self, image: &ImageRecord) -> Result<Platform, StoreError> {
        if image.is_list() {
            return Err(StoreError::ListInList {
                name: image.name.clone(),
            });
        }
        let (_, manifest) = self.manifest(&image.manifest.digest)?;
        let bytes = self.read_blob(&manifest.config.digest)?;
        let config: ImageConfig =
            serde_json::from_slice(&bytes).map_err(|source| StoreError::Json {
                path: self.blob_path(&manifest.config.digest),
                source,
            })?;
        let mut text = format!("{}/{}", config.os, config.architecture);
        if let Some(variant) = &config.variant {
            text.push('/');
            text.push_str(variant);
        }
        Platform::parse(&text).map_err(|_| StoreError::NoPlatform {
            name: image.name.clone(),
            config: manifest.config.digest.clone(),
        })
    }

    /// The descriptor a list gives `image` for `platform`: its registry
    /// identity (the Docker original of a converted image), with its media
    /// type and size.
    pub fn list_entry_for(
        &self,
        image: &ImageRecord,
        platform: Platform,
    ) -> Result<Descriptor, StoreError> {
        if image.is_list() {
            return Err(StoreError::ListInList {
                name: image.name.clone(),
            });
        }
        let mut entry = if image
            .manifest
            .annotation(SOURCE_MANIFEST_ANNOTATION)
            .is_some()
        {
            let digest = image.registry_digest();
            let (bytes, manifest) = self.manifest(&digest)?;
            let media_type = manifest
                .media_type
                .unwrap_or_else(|| media_type::DOCKER_MANIFEST.to_string());
            Descriptor::new(media_type, digest, bytes.len() as u64)
        } else {
            let d = &image.manifest;
            Descriptor::new(d.media_type.clone(), d.digest.clone(), d.size)
        };
        entry.platform = Some(platform);
        Ok(entry)
    }

    /// Adds `entry` (from [`Self::list_entry_for`]) to the list `list`,
    /// replacing an entry for the same platform, and renames the list to the
    /// new index blob.
    pub fn add_to_list(&self, list: &str, entry: Descriptor) -> Result<ListAdded, StoreError> {
        debug_assert!(self.has_blob(&entry.digest));
        let platform = entry.platform.clone().expect("a list entry has a platform");
        self.try_edit_index(|index| {
            let named = index
                .manifests
                .iter_mut()
                .find(|d| d.annotation(REF_NAME_ANNOTATION) == Some(list))
                .ok_or_else(|| StoreError::NameNotFound(list.to_string()))?;
            if !is_index_media_type(&named.media_type) {
                return Err(StoreError::NotAList {
                    name: list.to_string(),
                });
            }
            let (_, mut children) = self.index(&named.digest)?;
            let same_platform = |d: &Descriptor| {
                d.platform
                    .as_ref()
                    .is_some_and(|p| p.matches(&platform) && platform.matches(p))
            };
            let replaced = match children.manifests.iter().position(same_platform) {
                Some(i) => Some(std::mem::replace(&mut children.manifests[i], entry.clone())),
                None => {
                    children.manifests.push(entry.clone());
                    None
                }
            };
            let bytes = serde_json::to_vec(&children).expect("an index serialises");
            named.digest = self.put_blob(&bytes)?;
            named.size = bytes.len() as u64;
            Ok(ListAdded {
                list: named.clone(),
                entry,
                replaced,
            })
        })
    }

    /// The image a record stands for on `platform`: the record itself for an
    /// image, else the list's entry for that platform, under the list's
    /// name (so a mount or container made from it says which name it came
    /// through).
    pub fn image_for_platform(
        &self,
        record: &ImageRecord,
        platform: &Platform,
    ) -> Result<ImageRecord, StoreError> {
        if !record.is_list() {
            return Ok(record.clone());
        }
        let (_, index) = self.index(&record.manifest.digest)?;
        let images = index
            .manifests
            .iter()
            .filter(|d| !is_index_media_type(&d.media_type));
        let found = images
            .clone()
            .find(|d| d.platform.as_ref().is_some_and(|p| platform.matches(p)));
        match found {
            Some(child) => Ok(ImageRecord {
                name: record.name.clone(),
                manifest: child.clone(),
            }),
            None => Err(StoreError::PlatformNotInList {
                name: record.name.clone(),
                platform: platform.to_string(),
                available: images
                    .filter_map(|d| d.platform.as_ref().map(Platform::to_string))
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    /// Every manifest and index a named entry reaches: for an image, its
    /// manifest; for a list, its index and each child. Nested indexes (which
    /// builder never writes, but a hand-made layout may hold) are followed
    /// a few levels deep. A blob that is missing or not valid JSON is
    /// returned as an `Err` inside the result, for `check` to report and
    /// `prune` to tolerate; other read errors abort.
    pub fn reachable(&self, record: &ImageRecord) -> Result<Vec<Reached>, StoreError> {
        let mut out = Vec::new();
        self.reach(&record.manifest, 0, &mut out)?;
        Ok(out)
    }

    fn reach(
        &self,
        descriptor: &Descriptor,
        depth: usize,
        out: &mut Vec<Reached>,
    ) -> Result<(), StoreError> {
        const MAX_DEPTH: usize = 4;
        if !is_index_media_type(&descriptor.media_type) {
            let manifest =
                damage_as_value(self.manifest(&descriptor.digest).map(|(_, m)| Box::new(m)))?;
            out.push(Reached::Image {
                descriptor: descriptor.clone(),
                manifest,
            });
            return Ok(());
        }
        let index = damage_as_value(self.index(&descriptor.digest).map(|(_, i)| i))?;
        let children = match &index {
            Ok(index) if depth < MAX_DEPTH => index.manifests.clone(),
            _ => Vec::new(),
        };
        out.push(Reached::Index {
            descriptor: descriptor.clone(),
            error: index.err(),
        });
        for child in &children {
            self.reach(child, depth + 1, out)?;
        }
        Ok(())
    }
}

/// One manifest or index reached from a named entry ([`Store::reachable`]).
#[derive(Debug)]
pub enum Reached {
    /// An image manifest, parsed, or why it could not be.
    Image {
        descriptor: Descriptor,
        manifest: Result<Box<Manifest>, StoreError>,
    },
    /// An index (a manifest list); `error` says why it could not be read.
    Index {
        descriptor: Descriptor,
        error: Option<StoreError>,
    },
}

/// Damage `check` reports (a missing blob, invalid JSON) as an inner `Err`;
/// any other error as the outer one.
fn damage_as_value<T>(result: Result<T, StoreError>) -> Result<Result<T, StoreError>, StoreError> {
    match result {
        Ok(v) => Ok(Ok(v)),
        Err(e @ (StoreError::BlobMissing(_) | StoreError::Json { .. })) => Ok(Err(e)),
        Err(e) => Err(e),
    }
}
