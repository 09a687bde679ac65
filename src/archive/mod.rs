//! Image archives: `builder save` writes stored images into one, `builder
//! load` imports every image of one into the store.
//!
//! Three formats ([`Format`]):
//! - **oci-archive**: a tar of an OCI image layout (`oci-layout`,
//!   `index.json`, `blobs/sha256/<hex>`), as `skopeo copy oci-archive:` and
//!   `podman save --format oci-archive` read and write. Each image is an
//!   `index.json` entry whose `org.opencontainers.image.ref.name` is its
//!   full name (`docker.io/library/busybox:latest`), as podman writes it.
//! - **oci-dir**: the same layout as a directory (`skopeo copy oci:DIR`).
//! - **docker-archive**: the `docker save` format: `manifest.json`
//!   (`[{Config, RepoTags, Layers}]`), `repositories`, the config as
//!   `<config hex>.json` and each layer as an *uncompressed* tar,
//!   `<diffid hex>/layer.tar`: the layout every `docker load` since 1.10
//!   and `podman load` read (Docker 25 moved to `blobs/sha256/…`, which old
//!   loaders also accept as plain paths; the classic layout needs no OCI
//!   manifest of uncompressed layers).
//!
//! Saving streams every blob from the store into the output once, hashing
//! it on the way: a store blob that no longer matches its digest aborts the
//! save. docker-archive layers are decompressed on the fly; their tar
//! header's size is unknown until the end, so it is written as a
//! placeholder and patched by seeking back (the output is a file). The
//! archive is written under a temp name beside the destination and renamed
//! into place, so a failed save leaves no partial file.
//!
//! Loading autodetects the format (`manifest.json` → docker-archive,
//! `index.json` → OCI layout; a directory is read as it is, a compressed
//! file is first decompressed into the store's temp area). A tar is indexed
//! once (headers only, seeking over data) and then read by offset, so
//! members may come in any order and each layer is read exactly once.
//! Every manifest, config and layer is verified against its digest, and
//! layers go through [`crate::ingest::stage_layer`], exactly as a pull's do.
//! All layers of all images are staged first and committed only when every
//! one of them verified, then the configs and manifests are stored and the
//! images named: a truncated or tampered archive leaves nothing behind.
//!
//! Names: on save, an image asked for by name carries that name (an image
//! asked for by ID carries none, as with `docker save`); on load, names come
//! from `ref.name` annotations (when they are references, not bare tags
//! such as `latest`), containerd's `io.containerd.image.name`, or
//! `RepoTags`. An image with no name is kept under its ID
//! ([`crate::store::unnamed_image_name`]) until `builder tag` names it.
//!
//! docker-archive layers are stored as they come, uncompressed
//! (`application/vnd.oci.image.layer.v1.tar`): the blob digest is then the
//! DiffID, nothing is recompressed (the fastest load), and `builder push
//! --compression` can compress when it matters. The image gets an OCI
//! manifest; its ID (the config digest) is the archive's.

mod load;
mod save;
mod source;
mod writer;

use std::io;
use std::path::{Path, PathBuf};

pub use load::{LoadOptions, Loaded, LoadedImage, load};
pub use save::{SaveImage, SaveTo, Saved, save};

use crate::ingest::IngestError;
use crate::oci::Digest;
use crate::store::StoreError;

/// An archive format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    OciArchive,
    DockerArchive,
    OciDir,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Self::OciArchive => "oci-archive",
            Self::DockerArchive => "docker-archive",
            Self::OciDir => "oci-dir",
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Errors of saving and loading. `entry` is a path inside the archive.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{op} `{}`", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("store")]
    Store(#[from] StoreError),
    #[error("`{}` is not an image archive: {reason}", path.display())]
    NotAnArchive { path: PathBuf, reason: String },
    #[error("archive `{}` is damaged: {reason}", path.display())]
    Damaged { path: PathBuf, reason: String },
    #[error("read `{entry}` in the archive")]
    Read {
        entry: String,
        #[source]
        source: io::Error,
    },
    #[error("the archive has no `{entry}`{}", needed_by.as_ref().map(|n| format!(" ({n} needs it)")).unwrap_or_default())]
    Missing {
        entry: String,
        needed_by: Option<String>,
    },
    #[error("`{entry}` in the archive is invalid: {reason}")]
    Invalid { entry: String, reason: String },
    #[error(
        "`{entry}` in the archive failed verification: expected {expected}, got {actual}; the archive is corrupt or was tampered with"
    )]
    Mismatch {
        entry: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("layer `{entry}` of the archive")]
    Layer {
        entry: String,
        #[source]
        source: IngestError,
    },
    #[error("the archive holds no image")]
    Empty,
    #[error("image {image}: {reason}")]
    Unsupported { image: String, reason: String },
    #[error(
        "stored blob {digest} of image `{image}` failed verification (got {actual}); run `builder check`"
    )]
    StoreCorrupt {
        image: String,
        digest: Digest,
        actual: Digest,
    },
    #[error("`{}` already exists and is not an empty directory", path.display())]
    DestinationExists { path: PathBuf },
}

impl ArchiveError {
    fn io(op: &'static str, path: &Path, source: io::Error) -> Self {
        Self::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Media types of the documents builder writes into archives.
const OCI_LAYOUT_FILE: &str = "oci-layout";
const OCI_LAYOUT_CONTENT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;
const INDEX_FILE: &str = "index.json";
const DOCKER_MANIFEST_FILE: &str = "manifest.json";
const DOCKER_REPOSITORIES_FILE: &str = "repositories";

/// containerd's annotation for an image's full name in an OCI layout
/// (Docker 25's `docker save` writes it; its `ref.name` is the bare tag).
const CONTAINERD_NAME_ANNOTATION: &str = "io.containerd.image.name";

/// `blobs/sha256/<hex>`: where a layout keeps a blob.
fn blob_entry(digest: &Digest) -> String {
    format!("blobs/{}/{}", digest.algorithm(), digest.hex())
}
