//! The mount guard: unmounts on drop unless made persistent.

use std::path::{Path, PathBuf};

use super::MountError;
use crate::sys;

/// Owns one mount at `target`. Dropping it unmounts; a mount still busy
/// (some process has its cwd or an open file in it) is detached lazily
/// with `MNT_DETACH`, so it vanishes from the mount table now and is freed
/// when the last user goes. Leaving it mounted would leak it forever.
#[derive(Debug)]
#[must_use = "dropping the guard unmounts at once"]
pub struct MountGuard {
    target: PathBuf,
    armed: bool,
}

impl MountGuard {
    pub(crate) fn new(target: PathBuf) -> Self {
        MountGuard {
            target,
            armed: true,
        }
    }

    /// Where the mount is.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Unmounts now and reports failure (drop only logs it).
    pub fn unmount(mut self) -> Result<(), MountError> {
        self.armed = false;
        unmount(&self.target)
    }

    /// Keeps the mount after the guard and the process are gone (for
    /// `builder mount`); [`unmount`] removes it later.
    pub fn into_persistent(mut self) -> PathBuf {
        self.armed = false;
        std::mem::take(&mut self.target)
    }

    /// Same as [`MountGuard::into_persistent`].
    pub fn leak(self) -> PathBuf {
        self.into_persistent()
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        if self.armed
            && let Err(e) = unmount(&self.target)
        {
            tracing::warn!("{e}: {:?}", std::error::Error::source(&e));
        }
    }
}

/// Unmounts `target`; if it is busy, detaches it lazily (`MNT_DETACH`).
pub fn unmount(target: &Path) -> Result<(), MountError> {
    let err = |source| MountError::Unmount {
        target: target.to_owned(),
        source,
    };
    match sys::mount::unmount(target, false) {
        Ok(()) => Ok(()),
        Err(e) if sys::error::errno(&e) == Some(rustix::io::Errno::BUSY) => {
            tracing::debug!("`{}` busy, detaching lazily", target.display());
            sys::mount::unmount(target, true).map_err(err)
        }
        Err(e) => Err(err(e)),
    }
}
