use std::io;
use std::path::{Path, PathBuf};

use crate::oci::Digest;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{op} `{}`", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "store at `{}` has layout version {found}, this builder understands version {}; use a builder release that matches, or a fresh --root",
        path.display(),
        super::LAYOUT_VERSION
    )]
    UnsupportedVersion { path: PathBuf, found: String },
    #[error("store `{}` is locked by another builder process (prune needs it alone)", path.display())]
    Busy { path: PathBuf },
    #[error("blob {expected} failed verification: got {actual}, {bytes} bytes")]
    BlobMismatch {
        expected: Digest,
        actual: Digest,
        bytes: u64,
    },
    #[error("blob {0} is not in the store")]
    BlobMissing(Digest),
    #[error("`{}` is not valid JSON", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("`{0}` is not a cache key (64 lowercase hex digits)")]
    BadCacheKey(String),
    #[error("`{0}` is not a container ID (64 lowercase hex digits)")]
    BadContainerId(String),
    #[error(
        "`{0}` is not a valid container name (letters, digits, `_`, `.`, `-`; starting with a letter or digit)"
    )]
    BadContainerName(String),
    #[error("the container name `{name}` is already used by container {}; remove it with `builder rm {name}` or pick another name", &id[..12])]
    ContainerNameInUse { name: String, id: String },
    #[error("container rootfs `{}` is still mounted", path.display())]
    ContainerMounted { path: PathBuf },
    #[error("`{0}` is not in the store (see `builder images`)")]
    NameNotFound(String),
    #[error(
        "`{name}` already names {}; remove it first (`builder rmi {name}`) or pick another name",
        if *list { "a manifest list" } else { "an image" }
    )]
    NameInUse { name: String, list: bool },
    #[error(
        "`{name}` is an image, not a manifest list (create one with `builder manifest create`)"
    )]
    NotAList { name: String },
    #[error(
        "`{name}` is a manifest list; a manifest list holds images, not other lists (add its images one by one)"
    )]
    ListInList { name: String },
    #[error(
        "image `{name}`: its config {config} names no valid platform (os and architecture); give one with --platform"
    )]
    NoPlatform { name: String, config: Digest },
    #[error(
        "manifest list `{name}` has no image for {platform} (it has: {}); add one with `builder manifest add`, or pick a platform with --platform",
        if available.is_empty() { "none" } else { available.as_str() }
    )]
    PlatformNotInList {
        name: String,
        platform: String,
        available: String,
    },
    #[error("image `{name}` is mounted at `{}`; run `builder umount {name}` first", path.display())]
    Mounted { name: String, path: PathBuf },
}

impl StoreError {
    pub(crate) fn io(op: &'static str, path: &Path, source: io::Error) -> Self {
        Self::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}
