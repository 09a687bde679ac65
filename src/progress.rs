//! Progress events. Libraries report what happens through [`Reporter`];
//! only `cli` turns events into bars or log lines, so library code never
//! touches the terminal.

/// Receives progress events. Implementations must be cheap and thread-safe:
/// layer downloads report from several threads at once.
pub trait Reporter: Send + Sync {
    /// A blob transfer starts; `size` is the descriptor's size.
    fn blob_start(&self, _digest: &crate::oci::Digest, _size: u64, _what: &str) {}
    /// `bytes` more bytes of the blob arrived.
    fn blob_progress(&self, _digest: &crate::oci::Digest, _bytes: u64) {}
    /// The blob is verified and stored (or was already there).
    fn blob_done(&self, _digest: &crate::oci::Digest, _outcome: BlobOutcome) {}
    /// A free-form status line ("resolving busybox", "writing manifest").
    fn status(&self, _message: &str) {}
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobOutcome {
    Downloaded,
    AlreadyExists,
}

/// Discards every event.
pub struct NoProgress;
impl Reporter for NoProgress {}
