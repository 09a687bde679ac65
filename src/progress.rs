//! Progress events. Libraries report what happens through [`Reporter`];
//! only `cli` turns events into bars or log lines, so library code never
//! touches the terminal.

/// Receives progress events. Implementations must be cheap and thread-safe:
/// layer downloads report from several threads at once.
pub trait Reporter: Send + Sync {
    /// A blob transfer (download or upload) starts; `size` is the
    /// descriptor's size.
    fn blob_start(&self, _digest: &crate::oci::Digest, _size: u64, _what: &str) {}
    /// `bytes` more bytes of the blob arrived.
    fn blob_progress(&self, _digest: &crate::oci::Digest, _bytes: u64) {}
    /// The blob is verified and stored, or pushed (or was already there).
    fn blob_done(&self, _digest: &crate::oci::Digest, _outcome: BlobOutcome) {}
    /// A free-form status line ("resolving busybox", "writing manifest").
    fn status(&self, _message: &str) {}
    /// A build step starts, is found in the cache, or ends.
    fn step(&self, _event: &StepEvent) {}
    /// Output of the RUN step in progress (stdout and stderr, as it comes).
    fn step_output(&self, _bytes: &[u8]) {}
}

/// Where a build step is: `[stage n/m]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepId {
    /// The stage's name, or its index as text.
    pub stage: String,
    /// Whether the build has more than one stage (then the stage is shown).
    pub multi_stage: bool,
    /// 1-based; FROM is step 1.
    pub number: usize,
    pub total: usize,
}

impl std::fmt::Display for StepId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.multi_stage {
            write!(f, "[{} {}/{}]", self.stage, self.number, self.total)
        } else {
            write!(f, "[{}/{}]", self.number, self.total)
        }
    }
}

/// A build step's progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepEvent {
    /// The step starts; `text` is the instruction as written.
    Started { id: StepId, text: String },
    /// The step's result came from the build cache.
    Cached { id: StepId },
    /// The step finished (it ran, or was a metadata step).
    Done {
        id: StepId,
        elapsed: std::time::Duration,
    },
    /// Why a step missed the cache (`--explain-cache`).
    Explain { id: StepId, reason: String },
    /// The image is being written.
    Committing { what: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobOutcome {
    Downloaded,
    AlreadyExists,
    /// Pushed: sent to the registry.
    Uploaded,
    /// Pushed: mounted from another repository of the same registry.
    Mounted,
}

/// Discards every event.
pub struct NoProgress;
impl Reporter for NoProgress {}
