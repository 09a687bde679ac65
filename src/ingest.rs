//! `ingest`: how image content from outside — a registry download, an
//! archive member — enters the store. Shared by `pull` and `archive`, so
//! both verify and unpack layers the same way.
//!
//! A layer is read exactly once. The bytes are hashed (the blob digest) and
//! copied into a transaction's blob file as they are read, and in the same
//! pass decompressed, hashed again (the DiffID) and unpacked into the
//! transaction's layer directory:
//!
//! ```text
//! source ─► TeeHashingReader ─► decoder ─► HashingReader ─► layer::unpack ─► txn/layer/diff
//!               │ sha256 = blob digest        │ sha256 = DiffID
//!               └─► txn/blob
//! ```
//!
//! [`stage_layer`] stops there: it returns a [`StagedLayer`] holding the
//! verified transaction, and nothing is in the store yet. Committing is a
//! separate step ([`StagedLayer::commit`]), so a caller may verify every
//! layer of an archive before any of them becomes visible; dropping a
//! staged layer discards it.
//!
//! Terms: the *blob* is the layer as stored and transferred (often
//! compressed); its *digest* names it; the *DiffID* is the digest of the
//! uncompressed tar (the config's `rootfs.diff_ids`).
//!
//! Invariants:
//! - Nothing is staged unless its blob digest, size (when the caller knows
//!   them) and DiffID all match.
//! - A layer's blob and unpacked directory are committed together, blob
//!   first, from one transaction.

use std::io::{self, BufWriter, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::layer::{self, Inventory};
use crate::oci::verify::{HashingReader, TeeHashingReader};
use crate::oci::{Compression, Descriptor, DiffId, Digest, MediaType, media_type};
use crate::progress::Reporter;
use crate::store::{SOURCE_MANIFEST_ANNOTATION, Store, StoreError, Transaction};

/// What a caller knows about a layer it wants in the store.
#[derive(Debug, Clone)]
pub struct LayerSpec {
    /// How the blob is compressed (from its media type, or sniffed).
    pub compression: Compression,
    /// The blob's digest, verified when given. `None` when nobody states it
    /// (a compressed layer file in a docker-archive): the blob is then
    /// named by what it hashes to, and only the DiffID is verified.
    pub digest: Option<Digest>,
    /// The blob's size, verified when given.
    pub size: Option<u64>,
    /// The DiffID the image config lists for it; always verified.
    pub diff_id: DiffId,
    /// Whether to keep the blob (false when the store already has it).
    pub store_blob: bool,
    /// Whether to unpack it (false when the layer is already unpacked).
    pub unpack: bool,
}

/// Why a layer was not staged.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("store")]
    Store(#[source] StoreError),
    #[error("read layer")]
    Read(#[source] io::Error),
    #[error("unpack layer")]
    Unpack(#[source] layer::LayerError),
    /// `what` says which hash: the blob's or the uncompressed tar's.
    #[error("{what} failed verification: expected {expected}, got {actual}")]
    DigestMismatch {
        what: DigestKind,
        expected: Digest,
        actual: Digest,
    },
    #[error("layer is {actual} bytes, {expected} were announced")]
    SizeMismatch { expected: u64, actual: u64 },
}

/// Which of a layer's two hashes failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestKind {
    /// The blob as stored and transferred.
    Blob,
    /// The uncompressed tar (the DiffID).
    DiffId,
}

impl std::fmt::Display for DigestKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Blob => "layer",
            Self::DiffId => "uncompressed layer (diffID)",
        })
    }
}

/// A layer verified into a transaction, not yet visible in the store.
pub struct StagedLayer {
    txn: Transaction,
    digest: Digest,
    size: u64,
    diff_id: DiffId,
    store_blob: bool,
    inventory: Option<Inventory>,
}

impl StagedLayer {
    /// The blob's digest (as verified, or as computed when none was given).
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// The blob's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn diff_id(&self) -> &DiffId {
        &self.diff_id
    }

    /// Moves the blob and the unpacked directory into place.
    pub fn commit(self, store: &Store) -> Result<(), StoreError> {
        if self.store_blob {
            store.commit_blob(&self.txn, &self.digest)?;
        }
        if let Some(inventory) = self.inventory {
            let json = serde_json::to_vec(&inventory).expect("an inventory serialises");
            store.commit_layer(&self.txn, &self.diff_id, &json)?;
        }
        Ok(())
    }
}

/// Reads one layer blob from `source` into a new transaction: hashed,
/// kept (if `spec.store_blob`), decompressed, hashed again and unpacked
/// (if `spec.unpack`), in one pass. Returns it staged when every hash and
/// the size match `spec`.
pub fn stage_layer<R: Read>(
    store: &Store,
    source: R,
    spec: &LayerSpec,
) -> Result<StagedLayer, IngestError> {
    let txn = store.begin().map_err(IngestError::Store)?;
    let sink: Box<dyn Write> = if spec.store_blob {
        let file = txn.create_blob().map_err(IngestError::Store)?;
        Box::new(BufWriter::with_capacity(1 << 20, file))
    } else {
        Box::new(io::sink())
    };
    let mut tee = TeeHashingReader::new(source, sink);
    let unpacked = decode_and_unpack(&mut tee, spec, &txn);
    // Finish the compressed stream even after an unpack error: a digest
    // mismatch is the root cause to report when the bytes were tampered with.
    let finished = tee.finish();
    let (diff_id, inventory) = match unpacked {
        Ok(done) => done,
        Err(e) => {
            if let (Ok((actual, ..)), Some(expected)) = (&finished, &spec.digest)
                && actual != expected
            {
                return Err(IngestError::DigestMismatch {
                    what: DigestKind::Blob,
                    expected: expected.clone(),
                    actual: actual.clone(),
                });
            }
            return Err(e);
        }
    };
    let (digest, size, mut sink) = finished.map_err(IngestError::Read)?;
    sink.flush().map_err(IngestError::Read)?;
    drop(sink);

    if let Some(expected) = spec.size
        && size != expected
    {
        return Err(IngestError::SizeMismatch {
            expected,
            actual: size,
        });
    }
    if let Some(expected) = &spec.digest
        && digest != *expected
    {
        return Err(IngestError::DigestMismatch {
            what: DigestKind::Blob,
            expected: expected.clone(),
            actual: digest,
        });
    }
    if diff_id != spec.diff_id.0 {
        return Err(IngestError::DigestMismatch {
            what: DigestKind::DiffId,
            expected: spec.diff_id.0.clone(),
            actual: diff_id,
        });
    }
    Ok(StagedLayer {
        txn,
        digest,
        size,
        diff_id: spec.diff_id.clone(),
        store_blob: spec.store_blob,
        inventory,
    })
}

/// Decompresses the stream, hashes the tar (the DiffID) and, when asked,
/// unpacks it into the transaction.
fn decode_and_unpack<R: Read>(
    compressed: &mut R,
    spec: &LayerSpec,
    txn: &Transaction,
) -> Result<(Digest, Option<Inventory>), IngestError> {
    let decoder =
        layer::compression::decoder(spec.compression, compressed).map_err(IngestError::Read)?;
    let mut tar = HashingReader::new(decoder);
    let inventory = if spec.unpack {
        let unpacked = layer::unpack(&mut tar, &txn.layer_dir(), &layer::UnpackOptions::default())
            .map_err(IngestError::Unpack)?;
        Some(unpacked.inventory)
    } else {
        None
    };
    let (diff_id, _) = tar.finish().map_err(IngestError::Read)?;
    Ok((diff_id, inventory))
}

/// Stores a manifest and returns the descriptor the store's layout should
/// name. A Docker schema2 manifest is kept byte for byte (its digest is the
/// image's registry identity) and the layout names its OCI form, with
/// [`SOURCE_MANIFEST_ANNOTATION`] pointing back at it (layout readers such as
/// skopeo 1.9 skip Docker-typed entries). Everything the manifest
/// references must already be stored.
pub fn store_manifest(
    store: &Store,
    bytes: &[u8],
    kind: MediaType,
    parsed: &crate::oci::Manifest,
) -> Result<Descriptor, StoreError> {
    let digest = store.put_blob(bytes)?;
    if kind != MediaType::DockerManifest {
        return Ok(Descriptor::new(kind.as_str(), digest, bytes.len() as u64));
    }
    let oci_bytes = serde_json::to_vec(&parsed.to_oci()).expect("a manifest serialises");
    let oci_digest = store.put_blob(&oci_bytes)?;
    let mut desc = Descriptor::new(media_type::OCI_MANIFEST, oci_digest, oci_bytes.len() as u64);
    desc.annotations = Some([(SOURCE_MANIFEST_ANNOTATION.to_string(), digest.to_string())].into());
    Ok(desc)
}

/// A source reader that reports progress and stops with an error once
/// `cancelled` is set (a sibling job failed).
pub struct Watched<'a, R> {
    pub inner: R,
    pub cancelled: &'a AtomicBool,
    pub reporter: &'a dyn Reporter,
    pub digest: &'a Digest,
}

impl<R: Read> Read for Watched<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.cancelled.load(Ordering::Relaxed) {
            // Not `Interrupted`: `io::copy` would retry that forever.
            return Err(io::Error::other("cancelled"));
        }
        let n = self.inner.read(buf)?;
        self.reporter.blob_progress(self.digest, n as u64);
        Ok(n)
    }
}
