//! Mount syscalls: the new mount API (`fsopen`/`fsconfig`/`fsmount`/
//! `move_mount`, `open_tree`, `mount_setattr`) and classic `mount(2)`.
//!
//! Errors name the call and its operand; `fsconfig` failures carry the
//! kernel's message from the filesystem context log, which says far more than
//! `EINVAL` ("overlay: lowerdir+ ...").

#![allow(unsafe_code)]

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::io::Errno;
use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, MountFlags, MountPropagationFlags, MoveMountFlags,
    OpenTreeFlags, UnmountFlags,
};

use super::error::{error, error_with_detail};

/// A filesystem context from `fsopen`, to be configured and then mounted.
#[derive(Debug)]
pub struct FsContext {
    fd: OwnedFd,
    fstype: &'static str,
}

/// `fsopen(fstype, FSOPEN_CLOEXEC)`.
pub fn fs_open(fstype: &'static str) -> io::Result<FsContext> {
    rustix::mount::fsopen(fstype, FsOpenFlags::FSOPEN_CLOEXEC)
        .map(|fd| FsContext { fd, fstype })
        .map_err(|e| error("fsopen", fstype, e))
}

impl FsContext {
    /// `fsconfig(FSCONFIG_SET_STRING, key, value)`. The kernel limits each
    /// value to 256 bytes.
    pub fn set_string(&self, key: &str, value: &Path) -> io::Result<()> {
        rustix::mount::fsconfig_set_string(&self.fd, key, value).map_err(|e| {
            error_with_detail(
                "fsconfig",
                format_args!("{}: {key}={}", self.fstype, value.display()),
                e,
                self.log(),
            )
        })
    }

    /// `fsconfig(FSCONFIG_SET_FLAG, key)`.
    pub fn set_flag(&self, key: &str) -> io::Result<()> {
        rustix::mount::fsconfig_set_flag(&self.fd, key).map_err(|e| {
            error_with_detail(
                "fsconfig",
                format_args!("{}: {key}", self.fstype),
                e,
                self.log(),
            )
        })
    }

    /// `fsconfig(FSCONFIG_CMD_CREATE)`: makes the superblock.
    pub fn create(&self) -> io::Result<()> {
        rustix::mount::fsconfig_create(&self.fd)
            .map_err(|e| error_with_detail("fsconfig create", self.fstype, e, self.log()))
    }

    /// `fsmount`: a detached mount of the created superblock.
    pub fn mount(&self, attrs: MountAttrFlags) -> io::Result<OwnedFd> {
        rustix::mount::fsmount(&self.fd, FsMountFlags::FSMOUNT_CLOEXEC, attrs)
            .map_err(|e| error_with_detail("fsmount", self.fstype, e, self.log()))
    }

    /// Drains the context's message log (lines like `e overlay: ...`).
    fn log(&self) -> Option<String> {
        let mut messages = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            match rustix::io::read(&self.fd, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => messages.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
            }
        }
        if messages.is_empty() {
            None
        } else {
            Some(messages.join("; "))
        }
    }
}

/// `move_mount(mount_fd, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH)`:
/// attaches a detached mount at `target`.
pub fn move_mount_to(mount: BorrowedFd<'_>, target: &Path) -> io::Result<()> {
    rustix::mount::move_mount(
        mount,
        c"",
        rustix::fs::CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(|e| error("move_mount", target.display(), e))
}

/// `open_tree(OPEN_TREE_CLONE)`: a detached bind mount of `source`.
pub fn clone_tree(source: &Path, recursive: bool) -> io::Result<OwnedFd> {
    let mut flags = OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC;
    if recursive {
        flags |= OpenTreeFlags::AT_RECURSIVE;
    }
    rustix::mount::open_tree(rustix::fs::CWD, source, flags)
        .map_err(|e| error("open_tree", source.display(), e))
}

/// `mount_setattr(fd, "", AT_EMPTY_PATH, {attr_set})` on a mount fd, e.g. to
/// make a detached bind mount read-only before it becomes visible.
/// rustix does not wrap `mount_setattr`, hence the raw syscall.
pub fn set_mount_attrs(mount: BorrowedFd<'_>, set: MountAttrFlags, what: &Path) -> io::Result<()> {
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let attr = MountAttr {
        attr_set: u64::from(set.bits()),
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: `mount_setattr(2)` reads `size_of::<MountAttr>()` bytes from a
    // live, properly laid out (`repr(C)`, MOUNT_ATTR_SIZE_VER0 = 32 bytes)
    // struct on our stack; the path is a valid NUL-terminated empty string
    // and the fd is borrowed for the duration of the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            mount.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        let errno = Errno::from_io_error(&io::Error::last_os_error()).unwrap_or(Errno::INVAL);
        Err(error("mount_setattr", what.display(), errno))
    }
}

/// Classic `mount(2)` with a data string (overlay's legacy option string).
pub fn mount(
    source: &str,
    target: &Path,
    fstype: &str,
    flags: MountFlags,
    data: Option<&CStr>,
) -> io::Result<()> {
    rustix::mount::mount(source, target, fstype, flags, data)
        .map_err(|e| error("mount", format_args!("{fstype} on {}", target.display()), e))
}

/// Bind-mounts `source` on `target` (recursively when asked).
pub fn bind(source: &Path, target: &Path, recursive: bool) -> io::Result<()> {
    let r = if recursive {
        rustix::mount::mount_bind_recursive(source, target)
    } else {
        rustix::mount::mount_bind(source, target)
    };
    r.map_err(|e| {
        error(
            "bind mount",
            format_args!("{} on {}", source.display(), target.display()),
            e,
        )
    })
}

/// Changes the propagation of the mount at `target` (e.g. private, recursive).
pub fn set_propagation(target: &Path, flags: MountPropagationFlags) -> io::Result<()> {
    rustix::mount::mount_change(target, flags)
        .map_err(|e| error("change propagation of", target.display(), e))
}

/// `umount2(target, flags)`.
pub fn unmount(target: &Path, detach: bool) -> io::Result<()> {
    let flags = if detach {
        UnmountFlags::DETACH
    } else {
        UnmountFlags::empty()
    };
    rustix::mount::unmount(target, flags).map_err(|e| error("unmount", target.display(), e))
}

/// Classic `mount(2)` performed from `dir` as the working directory, so the
/// data string may hold paths relative to `dir`. A short-lived helper thread
/// unshares its filesystem attributes (`CLONE_FS`) and changes *its* cwd;
/// the process-wide cwd and other threads are never affected. `target` must
/// be absolute.
pub fn mount_from_dir(
    dir: &Path,
    target: &Path,
    fstype: &str,
    flags: MountFlags,
    data: &CStr,
) -> io::Result<()> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // SAFETY: only `CLONE_FS` is unshared (cwd, root, umask of this
                // helper thread). `unshare_unsafe` is unsafe because of
                // `CLONE_FILES`, which would split the fd table; we don't.
                unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::FS) }
                    .map_err(|e| error("unshare", "CLONE_FS", e))?;
                rustix::process::chdir(dir).map_err(|e| error("chdir", dir.display(), e))?;
                mount(fstype, target, fstype, flags, Some(data))
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("mount helper thread panicked")))
    })
}

/// The filesystem magic (`statfs.f_type`) of the filesystem holding `path`.
pub fn fs_magic(path: &Path) -> io::Result<i64> {
    rustix::fs::statfs(path)
        .map(|s| s.f_type)
        .map_err(|e| error("statfs", path.display(), e))
}
