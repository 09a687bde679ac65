//! Layers as tar streams and as directories. This module owns the
//! conversion between a layer's (decompressed) tar and a directory in
//! overlayfs format, which the store uses directly as an overlay lowerdir,
//! both ways: unpacking ([`unpack()`]) and diffing an overlay upper dir into
//! a layer ([`diff()`]); whiteout conversion ([`whiteout`]), compression
//! both ways ([`compression`]), and the [`inventory`] that records an
//! unpacked directory so it can be verified later.
//!
//! It knows nothing of the store, registries or mounts: callers hand it a
//! reader and an empty directory and get back counts and an inventory, or
//! an upper dir and a writer and get back the layer's digests.
//!
//! Invariants:
//! - Nothing is ever written outside the target directory, whatever the tar
//!   says (absolute names, `..`, symlinks planted earlier in the same tar,
//!   hard links pointing out). See [`mod@unpack`] for how, and its hostile-archive
//!   tests.
//! - Overlay xattrs (`trusted.overlay.*`, `user.overlay.*`) are never taken
//!   from a tar; only whiteout entries produce overlay whiteouts and opaque
//!   markers.
//! - The inventory built while unpacking equals [`inventory::scan`] of the
//!   result.
//! - Round trip: [`diff()`] of a directory [`unpack()`] wrote, unpacked again
//!   into an empty directory, scans equal to it.

use std::io;
use std::path::PathBuf;

pub mod compression;
pub mod diff;
pub mod inventory;
pub mod unpack;
pub mod whiteout;

pub use compression::decoder;
pub use diff::{DiffOptions, Diffed, diff};
pub use inventory::{Inventory, Mismatch, compare, scan};
pub use unpack::{UnpackOptions, Unpacked, unpack};
pub use whiteout::OverlayXattr;

/// `dir/name` for layer-relative byte paths (the root is the empty path).
pub(crate) fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(dir.len() + 1 + name.len());
    out.extend_from_slice(dir);
    if !dir.is_empty() {
        out.push(b'/');
    }
    out.extend_from_slice(name);
    out
}

/// Errors of layer unpacking and scanning. Every error about a tar entry
/// names the entry as the tar spells it.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("open layer directory `{}`", path.display())]
    Target {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("read layer tar{}", after.as_ref().map(|a| format!(" after entry `{a}`")).unwrap_or_default())]
    Read {
        /// The last entry read successfully, if any.
        after: Option<String>,
        #[source]
        source: io::Error,
    },
    #[error("tar entry `{entry}` rejected: {reason}")]
    Rejected { entry: String, reason: Reject },
    #[error("unpack tar entry `{entry}`")]
    Entry {
        entry: String,
        #[source]
        source: io::Error,
    },
    #[error("set mode and mtime of directory `{path}`")]
    Finish {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("read `{}` in the upper dir", path.display())]
    Upper {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("`{}` cannot be represented in a layer: {reason}", path.display())]
    Unrepresentable { path: PathBuf, reason: String },
    #[error("write layer")]
    Write {
        #[source]
        source: io::Error,
    },
    #[error("invalid diff options: {reason}")]
    Options { reason: String },
    #[error("scan `{}`", path.display())]
    Scan {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl LayerError {
    /// Builds the "entry rejected" error for one tar entry.
    pub(crate) fn rejecting(entry: &str) -> impl Fn(Reject) -> LayerError + Copy + '_ {
        move |reason| LayerError::Rejected {
            entry: entry.to_string(),
            reason,
        }
    }

    /// Builds the I/O error for one tar entry.
    pub(crate) fn entry_io(entry: &str) -> impl Fn(std::io::Error) -> LayerError + Copy + '_ {
        move |source| LayerError::Entry {
            entry: entry.to_string(),
            source,
        }
    }

    /// The tar entry this error is about, if any.
    pub fn entry(&self) -> Option<&str> {
        match self {
            Self::Rejected { entry, .. } | Self::Entry { entry, .. } => Some(entry),
            _ => None,
        }
    }
}

/// Why a tar entry was refused: it is malformed or tries to reach outside
/// the layer directory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reject {
    #[error("absolute path")]
    Absolute,
    #[error("`..` component would leave the layer")]
    DotDot,
    #[error("path contains a NUL byte")]
    Nul,
    #[error("names the layer root but is not a directory")]
    RootNotDir,
    #[error("link entry without a link target")]
    NoLinkTarget,
    #[error("unsupported tar entry type `{0}`")]
    Unsupported(char),
    #[error("hard link target `{0}` is absolute or leaves the layer")]
    LinkOutside(String),
    #[error("hard link target `{0}` goes through a symlink")]
    LinkThroughSymlink(String),
    #[error("hard link target `{0}` is not an earlier entry of this layer")]
    LinkMissing(String),
    #[error("hard link target `{0}` is a directory")]
    LinkToDir(String),
    #[error("whiteout of an empty name, `.` or `..`")]
    BadWhiteout,
    #[error("a whiteout name is used as a directory")]
    WhiteoutAsDir,
    #[error("whiteout or opaque marker goes through symlink `{0}`")]
    ThroughSymlink(String),
    #[error("too many levels of symlinks resolving `{0}`")]
    SymlinkLoop(String),
    #[error("parent `{0}` is not a directory")]
    NotADirectory(String),
}
