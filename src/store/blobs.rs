//! Blobs: `blobs/sha256/<hex>`, written once, read-only afterwards.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;

use super::{Store, StoreError, Transaction, sync_dir};
use crate::oci::Digest;
use crate::oci::verify::HashingReader;

impl Store {
    /// Moves the transaction's blob file into place as `digest`.
    ///
    /// The caller has hashed the bytes while writing them (downloads are
    /// hashed in the same pass that unpacks them) and passes the digest it
    /// verified, so the blob is not read a second time here.
    pub fn commit_blob(&self, txn: &Transaction, digest: &Digest) -> Result<(), StoreError> {
        let src = txn.blob_path();
        let file = File::open(&src).map_err(|e| StoreError::io("open", &src, e))?;
        file.sync_all()
            .map_err(|e| StoreError::io("fsync", &src, e))?;
        fs::set_permissions(&src, fs::Permissions::from_mode(0o444))
            .map_err(|e| StoreError::io("chmod", &src, e))?;
        let dst = self.blob_path(digest);
        // Renaming over an existing blob is harmless: same digest, same bytes.
        fs::rename(&src, &dst).map_err(|e| StoreError::io("rename into place", &dst, e))?;
        sync_dir(dst.parent().expect("blob path has a parent"))
    }

    /// Stores a small blob held in memory (a manifest, a config) and returns
    /// its digest. A no-op when the blob is already there.
    pub fn put_blob(&self, bytes: &[u8]) -> Result<Digest, StoreError> {
        let digest = Digest::of_bytes(bytes);
        if self.has_blob(&digest) {
            return Ok(digest);
        }
        let txn = self.begin()?;
        let path = txn.blob_path();
        let mut file = File::create(&path).map_err(|e| StoreError::io("create", &path, e))?;
        file.write_all(bytes)
            .map_err(|e| StoreError::io("write", &path, e))?;
        drop(file);
        self.commit_blob(&txn, &digest)?;
        Ok(digest)
    }

    /// Reads a whole blob (for manifests and configs: small by nature).
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>, StoreError> {
        let path = self.blob_path(digest);
        fs::read(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StoreError::BlobMissing(digest.clone()),
            _ => StoreError::io("read", &path, e),
        })
    }

    pub fn open_blob(&self, digest: &Digest) -> Result<File, StoreError> {
        let path = self.blob_path(digest);
        File::open(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StoreError::BlobMissing(digest.clone()),
            _ => StoreError::io("open", &path, e),
        })
    }

    /// Re-hashes a stored blob; an error describes any mismatch.
    pub fn verify_blob(&self, digest: &Digest) -> Result<u64, StoreError> {
        let path = self.blob_path(digest);
        let file = self.open_blob(digest)?;
        let reader = HashingReader::new(io::BufReader::with_capacity(1 << 20, file));
        let (actual, bytes) = reader
            .finish()
            .map_err(|e| StoreError::io("read", &path, e))?;
        if &actual != digest {
            return Err(StoreError::BlobMismatch {
                expected: digest.clone(),
                actual,
                bytes,
            });
        }
        Ok(bytes)
    }

    /// Every blob digest in the store. Files whose names are not valid
    /// digests are reported by `check`, not listed here.
    pub fn list_blobs(&self) -> Result<(Vec<Digest>, Vec<std::path::PathBuf>), StoreError> {
        let dir = self.layout_path().join("blobs/sha256");
        let mut digests = Vec::new();
        let mut strays = Vec::new();
        for entry in fs::read_dir(&dir).map_err(|e| StoreError::io("read directory", &dir, e))? {
            let entry = entry.map_err(|e| StoreError::io("read directory", &dir, e))?;
            match entry.file_name().to_str().map(Digest::from_hex) {
                Some(Ok(d)) => digests.push(d),
                _ => strays.push(entry.path()),
            }
        }
        digests.sort();
        Ok((digests, strays))
    }
}
