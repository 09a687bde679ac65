//! Mounts as values and guards that unmount on drop.
//!
//! Terms: an [`Overlay`] is a value (lowers topmost first, as overlayfs wants,
//! an optional upper and work dir). Building its parameters is pure and unit
//! tested without root ([`Overlay::params`], `Overlay::legacy_data`);
//! [`Overlay::mount`] performs it and returns a [`MountGuard`].
//!
//! How an overlay is mounted:
//! - Preferred: the new mount API, `fsopen("overlay")` and one
//!   `fsconfig("lowerdir+", path)` per layer (Linux ≥ 6.8). Each value may be
//!   up to 256 bytes but there is no limit on the number of layers.
//! - Fallback (older kernels, detected once per process): classic `mount(2)`
//!   whose option string must fit in one page (4096 bytes). When absolute
//!   paths don't fit, the lowers are reached through a temporary directory of
//!   symlinks named `0`, `1`, … and a helper thread with its own cwd
//!   (`unshare(CLONE_FS)`) mounts with relative paths, so about 1000 layers
//!   fit and the process-wide cwd is never touched.
//! - One lower and no upper: overlayfs refuses to mount a single lower without
//!   an upper, so this becomes a read-only bind mount of that lower (a
//!   bottom layer holds no whiteouts to hide).
//!
//! Every overlay is mounted with `redirect_dir=off`, `index=off` and
//! `metacopy=off` (skipped when the kernel does not know one): an upper dir
//! must stay diffable into an OCI layer, and those features write upper
//! entries a layer cannot represent.
//!
//! Invariants: a [`MountGuard`] unmounts its target exactly once (on drop or
//! [`MountGuard::unmount`]) unless made persistent with
//! [`MountGuard::into_persistent`]; a busy mount is detached lazily
//! (`MNT_DETACH`) rather than left behind.

mod guard;
mod overlay;

pub use guard::{MountGuard, unmount};
pub use overlay::{MountApi, Overlay, OverlayParam};

use std::io;
use std::path::PathBuf;

/// Attributes of the mount itself (as opposed to overlay options).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MountFlags {
    pub read_only: bool,
    pub nosuid: bool,
    pub nodev: bool,
    pub noexec: bool,
}

impl MountFlags {
    /// A read-only mount, nothing else.
    pub const READ_ONLY: MountFlags = MountFlags {
        read_only: true,
        nosuid: false,
        nodev: false,
        noexec: false,
    };

    fn attrs(self) -> rustix::mount::MountAttrFlags {
        use rustix::mount::MountAttrFlags as A;
        let mut a = A::empty();
        if self.read_only {
            a |= A::MOUNT_ATTR_RDONLY;
        }
        if self.nosuid {
            a |= A::MOUNT_ATTR_NOSUID;
        }
        if self.nodev {
            a |= A::MOUNT_ATTR_NODEV;
        }
        if self.noexec {
            a |= A::MOUNT_ATTR_NOEXEC;
        }
        a
    }

    fn legacy(self) -> rustix::mount::MountFlags {
        use rustix::mount::MountFlags as M;
        let mut m = M::empty();
        if self.read_only {
            m |= M::RDONLY;
        }
        if self.nosuid {
            m |= M::NOSUID;
        }
        if self.nodev {
            m |= M::NODEV;
        }
        if self.noexec {
            m |= M::NOEXEC;
        }
        m
    }
}

/// Errors of this module; each names the mount target or the offending path.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("overlay on `{target}` has no lower directories")]
    NoLowers { target: PathBuf },
    #[error("overlay on `{target}` has an upper dir but no work dir (or the reverse)")]
    UpperWithoutWork { target: PathBuf },
    #[error("path `{path}` contains `,`, `:` or `\\`, which overlay's option string cannot carry")]
    UnsafePath { path: PathBuf },
    #[error(
        "overlay options for `{target}` need {len} bytes, over the one-page limit of mount(2) even with short paths"
    )]
    OptionsTooLong { target: PathBuf, len: usize },
    #[error("mount overlay on `{target}`")]
    Overlay {
        target: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("bind-mount `{source_path}` read-only on `{target}`")]
    Bind {
        source_path: PathBuf,
        target: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("prepare short lower paths for `{target}`")]
    ShortPaths {
        target: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("unmount `{target}`")]
    Unmount {
        target: PathBuf,
        #[source]
        source: io::Error,
    },
}
