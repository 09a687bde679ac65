//! An image's root filesystem as one overlay of its unpacked layers: the
//! read-only view that `builder mount` leaves mounted (as `podman image
//! mount` does), and — in the container runtime issue — the base of every
//! container's writable rootfs.
//!
//! The layers are the store's `layers/<diffid>/diff` directories,
//! already in overlayfs format, so nothing is copied: the mount is the
//! assembly.

use std::path::{Path, PathBuf};

use crate::mount::{self, MountError, MountFlags, Overlay};
use crate::oci::{DiffId, ImageConfig};
use crate::store::{ImageRecord, MountRecord, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("image `{image}`")]
    Store {
        image: String,
        #[source]
        source: StoreError,
    },
    #[error("image `{image}`: config {config} is not valid JSON")]
    Config {
        image: String,
        config: crate::oci::Digest,
        #[source]
        source: serde_json::Error,
    },
    #[error("image `{image}`: layer {layer} is not unpacked in the store; pull the image again")]
    LayerMissing { image: String, layer: DiffId },
    #[error("image `{image}`")]
    Mount {
        image: String,
        #[source]
        source: MountError,
    },
    #[error(
        "`{image}` is a manifest list, not an image; name one of its images, or resolve it for a platform first"
    )]
    ManifestList { image: String },
    #[error("image `{image}` is not mounted")]
    NotMounted { image: String },
}

/// The image's layers, bottom first, checked to be unpacked. A manifest
/// list is refused: callers resolve it to one of its images first
/// (`Store::image_for_platform`).
pub fn image_layers(store: &Store, image: &ImageRecord) -> Result<Vec<DiffId>, RootfsError> {
    if image.is_list() {
        return Err(RootfsError::ManifestList {
            image: image.name.clone(),
        });
    }
    let store_err = |source| RootfsError::Store {
        image: image.name.clone(),
        source,
    };
    let (_, manifest) = store.manifest(&image.manifest.digest).map_err(store_err)?;
    let bytes = store
        .read_blob(&manifest.config.digest)
        .map_err(store_err)?;
    let config: ImageConfig =
        serde_json::from_slice(&bytes).map_err(|source| RootfsError::Config {
            image: image.name.clone(),
            config: manifest.config.digest.clone(),
            source,
        })?;
    if let Some(missing) = config
        .rootfs
        .diff_ids
        .iter()
        .find(|id| !store.has_layer(id))
    {
        return Err(RootfsError::LayerMissing {
            image: image.name.clone(),
            layer: missing.clone(),
        });
    }
    Ok(config.rootfs.diff_ids)
}

/// The overlay lowerdirs for `layers` (bottom first): topmost first, as
/// overlayfs wants them, each layer once, and never fewer than two (see
/// `Store::empty_dir`).
///
/// Images may list a layer twice (Docker's empty layer is common); the
/// kernel refuses the same lowerdir twice. Keeping only the topmost
/// occurrence gives the same tree: everything the lower copy contributes,
/// the upper copy contributes again above whatever lies between.
pub fn lower_dirs(store: &Store, layers: &[DiffId]) -> Vec<PathBuf> {
    let mut seen = std::collections::HashSet::new();
    let mut lowers: Vec<PathBuf> = layers
        .iter()
        .rev()
        .filter(|id| seen.insert(*id))
        .map(|id| store.layer_diff_path(id))
        .collect();
    if lowers.len() < 2 {
        lowers.push(store.empty_dir());
    }
    lowers
}

/// Mounts the image read-only at its mountpoint in the store and returns the
/// path. Mounting an image that is already mounted returns the same path.
pub fn mount_image(store: &Store, image: &ImageRecord) -> Result<PathBuf, RootfsError> {
    let store_err = |source| RootfsError::Store {
        image: image.name.clone(),
        source,
    };
    let mountpoint = store.mountpoint(&image.manifest.digest);
    if store
        .mount_record(&image.manifest.digest)
        .map_err(store_err)?
        .is_some()
        && is_mountpoint(&mountpoint)
    {
        return Ok(mountpoint);
    }
    let layers = image_layers(store, image)?;
    // The record goes first, so a crash leaves something `umount` and
    // `prune` know about, and prune keeps these layers while mounted.
    let record = MountRecord {
        name: image.name.clone(),
        manifest: image.manifest.digest.clone(),
        layers: layers.clone(),
    };
    let target = store.add_mount_record(&record).map_err(store_err)?;
    let overlay = Overlay {
        lowers: lower_dirs(store, &layers),
        upper: None,
        work: None,
    };
    match overlay.mount(&target, MountFlags::READ_ONLY) {
        Ok(guard) => Ok(guard.into_persistent()),
        Err(source) => {
            let _ = store.remove_mount_record(&image.manifest.digest);
            Err(RootfsError::Mount {
                image: image.name.clone(),
                source,
            })
        }
    }
}

/// Unmounts an image mounted by [`mount_image`] and forgets the mount.
pub fn unmount_image(store: &Store, image: &ImageRecord) -> Result<(), RootfsError> {
    if image.is_list() {
        return Err(RootfsError::ManifestList {
            image: image.name.clone(),
        });
    }
    let store_err = |source| RootfsError::Store {
        image: image.name.clone(),
        source,
    };
    if store
        .mount_record(&image.manifest.digest)
        .map_err(store_err)?
        .is_none()
    {
        return Err(RootfsError::NotMounted {
            image: image.name.clone(),
        });
    }
    let mountpoint = store.mountpoint(&image.manifest.digest);
    if is_mountpoint(&mountpoint) {
        mount::unmount(&mountpoint).map_err(|source| RootfsError::Mount {
            image: image.name.clone(),
            source,
        })?;
    }
    store
        .remove_mount_record(&image.manifest.digest)
        .map_err(store_err)
}

/// Whether `path` is the mountpoint of a mount in this mount namespace.
fn is_mountpoint(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let wanted = path.to_string_lossy();
    // Field 5 is the mountpoint, with space, tab, newline and backslash
    // escaped as octal (proc(5)).
    info.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .any(|field| unescape_mountinfo(field) == wanted)
}

fn unescape_mountinfo(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut rest = field;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest
            .get(i + 1..i + 4)
            .and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(byte) => {
                out.push(byte as char);
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_layers_appear_once_at_their_topmost_place() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), crate::store::LockMode::Shared).unwrap();
        let id = |b: &[u8]| DiffId(crate::oci::Digest::of_bytes(b));
        let (a, b) = (id(b"a"), id(b"b"));
        let lowers = lower_dirs(&store, &[a.clone(), b.clone(), a.clone()]);
        assert_eq!(
            lowers,
            vec![store.layer_diff_path(&a), store.layer_diff_path(&b)]
        );
        let single = lower_dirs(&store, &[a.clone(), a.clone()]);
        assert_eq!(single, vec![store.layer_diff_path(&a), store.empty_dir()]);
    }

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape_mountinfo(r"/a\040b\011c\134d"), "/a b\tc\\d");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
    }
}
