//! The on-disk store: content-addressed blobs, image records, unpacked layer
//! directories, locks and garbage collection. store-layout.md is the full
//! description; in short:
//!
//! ```text
//! ROOT/oci/{oci-layout,index.json,blobs/sha256/<hex>}   an OCI image layout: every blob, image names
//! ROOT/version                                          version of this layout
//! ROOT/lock                                             store lock (shared; exclusive for prune)
//! ROOT/index.lock                                       serialises rewrites of oci/index.json
//! ROOT/layers/<diffid-hex>/{diff/,inventory.json}       unpacked layers, overlay format
//! ROOT/tmp/<txn>/                                       in-flight writes, each flocked by its owner
//! ROOT/mounts/<manifest-hex>/                           `builder mount` records and mountpoints
//! ROOT/empty/                                           an empty lowerdir for one-layer images
//! ROOT/containers/<id>/                                 one container: record, lock, upper/work/merged, bundle
//! ```
//!
//! The OCI layout is a subdirectory, not the root itself, because layout
//! readers walk every file below a layout (oci-image-tool opens each one):
//! unpacked layers hold whiteout devices, fifos and dangling symlinks that
//! such a walk cannot open, or would block on.
//!
//! Invariants:
//! - Only this module writes under the store root (other modules fill a
//!   [`Transaction`]'s directory, which this module then commits).
//! - Every write goes to `tmp/` first and is renamed into place; a
//!   blob is fsynced and so is its directory. Readers therefore see a blob or
//!   layer completely or not at all.
//! - A reference is written only after what it references: layers and blobs
//!   before the manifest, the manifest before `index.json`.
//! - Paths are built only from validated digests (`oci::Digest`).
//! - Every process holds the store lock shared; `prune` holds it exclusive,
//!   so garbage collection never races a pull.
//!
//! The store knows nothing of tar, HTTP or processes.

mod blobs;
mod cache;
mod containers;
mod error;
mod images;
mod layers;
mod lists;
mod lock;
mod mounts;
mod txn;

pub mod gc;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub use cache::{CACHE_DIR, CacheEntry, CacheRecord};
pub use containers::{
    CONTAINERS_DIR, ContainerEntry, ContainerLock, ContainerRecord, ContainerState,
    is_container_id, is_valid_container_name,
};
pub use error::StoreError;
pub use images::{
    ImageRecord, REF_NAME_ANNOTATION, SOURCE_MANIFEST_ANNOTATION, unnamed_image_name,
};
pub use layers::LayerEntry;
pub use lists::{ListAdded, Reached};
pub use lock::LockMode;
pub use mounts::MountRecord;
pub use txn::Transaction;

use crate::oci::{DiffId, Digest};

/// The version of the store layout. Bump it when that
/// layout changes incompatibly; `Store::open` refuses other versions.
pub const LAYOUT_VERSION: &str = "1";

/// Directories below the root that hold unpacked image content, and so are
/// private to root (mode 0700).
const PRIVATE_DIRS: [&str; 3] = ["layers", "tmp", "mounts"];

/// Prefix of the temp file `write_atomic` renames into place.
const ATOMIC_TEMP_PREFIX: &str = ".tmp-";

/// The store's OCI image layout directory, below the root.
pub const LAYOUT_DIR: &str = "oci";

/// The OCI image-layout marker file content.
const OCI_LAYOUT: &str = r#"{"imageLayoutVersion":"1.0.0"}"#;

/// An open store. Holding it holds the store lock (shared or exclusive).
pub struct Store {
    root: PathBuf,
    _lock: lock::StoreLock,
}

impl Store {
    /// Opens (creating if needed) the store at `root` and takes the store
    /// lock in `mode`. Leftover temp entries from dead processes are removed.
    pub fn open(root: &Path, mode: LockMode) -> Result<Self, StoreError> {
        for dir in [
            root.join(LAYOUT_DIR).join("blobs/sha256"),
            root.join("empty"),
            root.join(containers::CONTAINERS_DIR),
        ] {
            fs::create_dir_all(&dir).map_err(|e| StoreError::io("create directory", &dir, e))?;
        }
        // Unpacked layers keep the image's setuid files and device nodes,
        // so only root may reach them: a 0666 block device in an image
        // must not become a way in for every local user (containers/storage
        // keeps its layers at 0700 for the same reason). Re-applied on every
        // open, so an older or hand-made store gets fixed too.
        for dir in PRIVATE_DIRS.iter().map(|d| root.join(d)) {
            fs::create_dir_all(&dir).map_err(|e| StoreError::io("create directory", &dir, e))?;
            let private = fs::Permissions::from_mode(0o700);
            fs::set_permissions(&dir, private)
                .map_err(|e| StoreError::io("chmod 0700", &dir, e))?;
        }
        let lock = lock::StoreLock::acquire(&root.join("lock"), mode)?;
        let store = Self {
            root: root.to_path_buf(),
            _lock: lock,
        };
        store.init_files()?;
        store.remove_stale_transactions()?;
        Ok(store)
    }

    fn init_files(&self) -> Result<(), StoreError> {
        let version_path = self.builder_dir().join("version");
        match fs::read_to_string(&version_path) {
            Ok(v) if v.trim() == LAYOUT_VERSION => {}
            Ok(v) => {
                return Err(StoreError::UnsupportedVersion {
                    path: version_path,
                    found: v.trim().to_string(),
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.write_atomic(&version_path, format!("{LAYOUT_VERSION}\n").as_bytes())?;
            }
            Err(e) => return Err(StoreError::io("read", &version_path, e)),
        }
        let layout = self.layout_path().join("oci-layout");
        if !layout.exists() {
            self.write_atomic(&layout, OCI_LAYOUT.as_bytes())?;
        }
        let index = self.layout_path().join("index.json");
        if !index.exists() {
            let _guard = lock::IndexLock::acquire(&self.builder_dir().join("index.lock"))?;
            if !index.exists() {
                self.write_atomic(&index, images::EMPTY_INDEX.as_bytes())?;
            }
        }
        Ok(())
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The OCI image layout inside the store: what `skopeo copy
    /// oci:ROOT/oci:NAME …` and `umoci --image ROOT/oci:NAME` read.
    pub fn layout_path(&self) -> PathBuf {
        self.root.join(LAYOUT_DIR)
    }

    /// Where builder's own state lives (the root, beside the layout).
    fn builder_dir(&self) -> PathBuf {
        self.root.clone()
    }

    /// Where transactions and other scratch files live (on the store's
    /// filesystem, which holds the layers, so it has room for one).
    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.builder_dir().join("tmp")
    }

    /// Path of a blob, whether or not it exists.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.layout_path()
            .join("blobs")
            .join(digest.algorithm())
            .join(digest.hex())
    }

    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Directory of an unpacked layer (its `diff/` is the overlay lowerdir).
    pub fn layer_path(&self, diff_id: &DiffId) -> PathBuf {
        self.builder_dir().join("layers").join(diff_id.hex())
    }

    /// The overlay lowerdir of an unpacked layer.
    pub fn layer_diff_path(&self, diff_id: &DiffId) -> PathBuf {
        self.layer_path(diff_id).join("diff")
    }

    /// An always-empty directory. overlayfs refuses a read-only mount with a
    /// single lowerdir, so a one-layer image is mounted over this as a
    /// second, bottom lower (a bind mount would show the layer's whiteout
    /// devices instead of hiding them).
    pub fn empty_dir(&self) -> PathBuf {
        self.builder_dir().join("empty")
    }

    /// Whether the layer is unpacked and committed (no incomplete marker).
    pub fn has_layer(&self, diff_id: &DiffId) -> bool {
        let dir = self.layer_path(diff_id);
        dir.join("diff").is_dir() && !dir.join(layers::INCOMPLETE_MARKER).exists()
    }

    /// Writes `bytes` to `path` via a temp file in the same directory,
    /// fsyncing the file and the directory.
    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
        let dir = path.parent().expect("store paths have a parent");
        let mut tmp = tempfile::Builder::new()
            .prefix(ATOMIC_TEMP_PREFIX)
            .tempfile_in(dir)
            .map_err(|e| StoreError::io("create temp file in", dir, e))?;
        use std::io::Write;
        tmp.write_all(bytes)
            .map_err(|e| StoreError::io("write", tmp.path(), e))?;
        tmp.as_file()
            .sync_all()
            .map_err(|e| StoreError::io("fsync", tmp.path(), e))?;
        tmp.persist(path)
            .map_err(|e| StoreError::io("rename into place", path, e.error))?;
        sync_dir(dir)
    }
}

impl Store {
    /// Replaces `path` by a rename from a temp file, without fsync: readers
    /// see the old or the new content, never a mix, but a power loss may
    /// leave either (for records that describe runs, not data).
    fn write_replace(&self, path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
        let dir = path.parent().expect("store paths have a parent");
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(dir)
            .map_err(|e| StoreError::io("create temp file in", dir, e))?;
        use std::io::Write;
        tmp.write_all(bytes)
            .map_err(|e| StoreError::io("write", tmp.path(), e))?;
        tmp.persist(path)
            .map_err(|e| StoreError::io("rename into place", path, e.error))?;
        Ok(())
    }
}

/// Reads a JSON record the store wrote; `Ok(None)` when it does not exist.
fn read_json_record<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, StoreError> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| StoreError::Json {
                path: path.to_path_buf(),
                source,
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::io("read", path, e)),
    }
}

/// fsyncs a directory so a rename into it survives a crash.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io("fsync directory", dir, e))
}

#[cfg(test)]
mod tests;
