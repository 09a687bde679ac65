//! Building images from a Containerfile (layer 3). This module owns the
//! pieces a build is made of: the build [`context`] (a directory and its
//! ignore file), [`copy`] (COPY/ADD into a fresh upper dir that
//! [`crate::layer::diff()`] turns into a layer), [`remote`] (ADD's URL
//! downloads), [`cache`] keys of steps, and [`config`] (metadata
//! instructions applied to an image config, with their history entries).
//!
//! Terms: a *step* is one instruction of a stage as executed; its *cache
//! key* identifies everything the step's result depends on; the *upper* is
//! the fresh directory a step writes into; the *rootfs* is the merged view
//! of the image the step builds on (read only here).
//!
//! Invariants: nothing here writes outside the upper dir it is given
//! (ADD's downloads go to the scratch directory it is given, and are gone
//! when their plan is dropped); nothing is read from the context outside
//! the context directory (a symlink pointing out is copied as a symlink,
//! never followed out); cache keys never depend on mtimes, absolute paths
//! or the builder's own uid.

use std::fmt;
use std::io;
use std::path::PathBuf;

pub mod cache;
pub mod commit;
pub mod config;
pub mod context;
pub mod copy;
pub mod engine;
pub mod explain;
pub mod remote;
pub mod remote_cache;
pub mod run;

pub use cache::{CacheKey, ContentDigest, StepInputs};
pub use commit::{ImageFormat, LayerRef, WrittenImage};
pub use config::{ConfigError, Metadata, StageConfig, apply_metadata};
pub use context::{Context, Source, SourceKind};
pub use copy::{CopyOptions, CopyPlan, CopySource, plan_copy};
pub use engine::{BaseImages, BuildOptions, Built, build};

/// Where an instruction is in the Containerfile: `FILE:LINE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: String,
    pub line: usize,
}

/// An optional [`Location`], displayed as `FILE:LINE: ` or nothing, so
/// that error messages start with it when the caller knows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct At(pub Option<Location>);

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(l) => write!(f, "{}:{}: ", l.file, l.line),
            None => Ok(()),
        }
    }
}

/// Errors of the build. Variants about an instruction carry [`At`], which
/// the caller fills in with [`BuildError::located`].
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{at}read `{}`", path.display())]
    Io {
        at: At,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{at}write `{}`", path.display())]
    Write {
        at: At,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("build context `{}` is not a directory", path.display())]
    NotADirectory { path: PathBuf },
    #[error("`{}` line {line}: invalid ignore pattern `{pattern}`: {reason}", path.display())]
    IgnorePattern {
        path: PathBuf,
        line: usize,
        pattern: String,
        reason: String,
    },
    #[error("{at}source `{source_path}` not found in the build context")]
    SourceNotFound { at: At, source_path: String },
    #[error("{at}source `{source_path}` is outside the build context")]
    SourceOutside { at: At, source_path: String },
    #[error("{at}invalid source pattern `{source_path}`: {reason}")]
    SourcePattern {
        at: At,
        source_path: String,
        reason: String,
    },
    #[error(
        "{at}destination `{dest}` must be a directory and end with `/` when copying several sources or a wildcard"
    )]
    DestNotDir { at: At, dest: String },
    #[error("{at}destination `{dest}` exists in the image and is not a directory")]
    DestParentNotDir { at: At, dest: String },
    #[error("{at}invalid --chmod `{value}`: expected an octal mode such as 0755")]
    Chmod { at: At, value: String },
    #[error("{at}invalid --chown `{value}`")]
    Chown {
        at: At,
        value: String,
        #[source]
        source: crate::runtime::user::UserError,
    },
    #[error("{at}COPY cannot fetch `{url}`: only ADD takes URL sources")]
    UrlInCopy { at: At, url: String },
    #[error("{at}ADD of `{url}`: no scratch directory was given to download into")]
    UrlWithoutScratch { at: At, url: String },
    #[error(
        "{at}ADD of `{url}`: the URL path names no file, so the destination must be a file path, not a directory"
    )]
    UrlFileName { at: At, url: String },
    #[error("{at}download `{url}`")]
    Download {
        at: At,
        url: String,
        #[source]
        source: io::Error,
    },
    #[error("{at}download `{url}`: its TLS certificate was rejected{advice}")]
    DownloadCertificate {
        at: At,
        url: String,
        /// What to do about it, when we know.
        advice: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{at}download `{url}`: the server answered {status} {reason}")]
    DownloadStatus {
        at: At,
        url: String,
        status: u16,
        reason: String,
    },
    #[error("{at}download `{url}`: checksum mismatch: expected `{expected}`, got `{actual}`")]
    ChecksumMismatch {
        at: At,
        url: String,
        expected: String,
        actual: String,
    },
    #[error("{at}invalid --checksum `{value}`")]
    Checksum {
        at: At,
        value: String,
        #[source]
        source: crate::oci::DigestError,
    },
    #[error("{at}--checksum {reason}")]
    ChecksumMisuse { at: At, reason: &'static str },
    #[error("{at}extract archive `{source_path}`")]
    Extract {
        at: At,
        source_path: String,
        #[source]
        source: crate::layer::LayerError,
    },
    #[error(transparent)]
    Parse(#[from] crate::containerfile::ParseError),
    #[error("{at}{reason}")]
    Config {
        at: At,
        #[source]
        reason: ConfigError,
    },
    #[error("store")]
    Store {
        #[source]
        source: crate::store::StoreError,
    },
    #[error("make layer")]
    Layer {
        #[source]
        source: crate::layer::LayerError,
    },
    #[error("{at}{step}: container")]
    Container {
        at: At,
        step: String,
        #[source]
        source: Box<crate::container::ContainerError>,
    },
    #[error("{at}image `{image}`")]
    Image {
        at: At,
        image: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{at}image `{image}` has no layer {diff_id} unpacked in the store; pull it again")]
    LayerMissing {
        at: At,
        image: String,
        diff_id: crate::oci::DiffId,
    },
    #[error("no stage is called `{target}` (stages: {stages})")]
    UnknownTarget { target: String, stages: String },
    #[error("{at}stage `{stage}` depends on itself")]
    StageCycle { at: At, stage: String },
    #[error("{at}{step} failed: {}{}", exit_text(*code, *oom_limit), tail_text(tail))]
    RunFailed {
        at: At,
        step: String,
        code: i32,
        /// `Some(limit)` when the OOM killer ended it (`Some(None)`: no limit known).
        oom_limit: Option<Option<i64>>,
        tail: Vec<String>,
    },
    #[error("{at}{what} is not supported")]
    Unsupported { at: At, what: String },
    #[error("{reason}")]
    Format { reason: String },
    #[error("the build was interrupted")]
    Interrupted,
    #[error("{what}")]
    RemoteCache {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

fn exit_text(code: i32, oom: Option<Option<i64>>) -> String {
    match oom {
        Some(Some(limit)) => format!(
            "killed by the OOM killer: the memory limit is {} (raise it with --memory)",
            human_bytes(limit)
        ),
        Some(None) => "killed by the OOM killer (out of memory)".to_string(),
        None if code > 128 => format!("exit code {code} (killed by signal {})", code - 128),
        None => format!("exit code {code}"),
    }
}

fn tail_text(tail: &[String]) -> String {
    if tail.is_empty() {
        return " (no output)".to_string();
    }
    let mut s = String::from("; last lines of its output:");
    for line in tail {
        s.push_str("\n  | ");
        s.push_str(line);
    }
    s
}

fn human_bytes(n: i64) -> String {
    const UNITS: [(&str, i64); 3] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (unit, size) in UNITS {
        if n >= size && n % size == 0 {
            return format!("{} {unit}", n / size);
        }
        if n >= size {
            return format!("{:.1} {unit}", n as f64 / size as f64);
        }
    }
    format!("{n} bytes")
}

impl BuildError {
    /// Sets the Containerfile location of an error about an instruction
    /// (errors not about one are returned unchanged).
    pub fn located(mut self, location: Location) -> Self {
        match &mut self {
            Self::Io { at, .. }
            | Self::Write { at, .. }
            | Self::SourceNotFound { at, .. }
            | Self::SourceOutside { at, .. }
            | Self::SourcePattern { at, .. }
            | Self::DestNotDir { at, .. }
            | Self::DestParentNotDir { at, .. }
            | Self::Chmod { at, .. }
            | Self::Chown { at, .. }
            | Self::UrlInCopy { at, .. }
            | Self::UrlWithoutScratch { at, .. }
            | Self::UrlFileName { at, .. }
            | Self::Download { at, .. }
            | Self::DownloadCertificate { at, .. }
            | Self::DownloadStatus { at, .. }
            | Self::ChecksumMismatch { at, .. }
            | Self::Checksum { at, .. }
            | Self::ChecksumMisuse { at, .. }
            | Self::Extract { at, .. }
            | Self::Config { at, .. }
            | Self::Container { at, .. }
            | Self::Image { at, .. }
            | Self::LayerMissing { at, .. }
            | Self::StageCycle { at, .. }
            | Self::RunFailed { at, .. }
            | Self::Unsupported { at, .. } => {
                if at.0.is_none() {
                    at.0 = Some(location)
                }
            }
            Self::NotADirectory { .. }
            | Self::IgnorePattern { .. }
            | Self::Parse(_)
            | Self::Store { .. }
            | Self::Layer { .. }
            | Self::UnknownTarget { .. }
            | Self::Format { .. }
            | Self::RemoteCache { .. }
            | Self::Interrupted => {}
        }
        self
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            at: At::default(),
            path: path.into(),
            source,
        }
    }

    pub(crate) fn store(source: crate::store::StoreError) -> Self {
        Self::Store { source }
    }

    pub(crate) fn layer(source: crate::layer::LayerError) -> Self {
        Self::Layer { source }
    }

    pub(crate) fn write(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Write {
            at: At::default(),
            path: path.into(),
            source,
        }
    }
}
