//! Test support: real helper processes, fixtures made by independent tools,
//! and the `builder` command runner.
//!
//! Scratch space: everything a test process creates (registry storage, store
//! roots, unpacked trees) lives under [`scratch_root`], which is
//! `/dev/shm/builder-it/<pid>/` (tmpfs, so big trees are cheap to create and
//! delete; the disk is ext4 without a journal). `BUILDER_TEST_SCRATCH`
//! overrides the parent directory. Directories of dead test processes are
//! swept (after lazily unmounting anything left mounted in them) the first
//! time a process asks for its own.

#![allow(dead_code)] // not every test module uses every helper

pub mod env;
pub mod examples;
pub mod fixtures;
pub mod process;
pub mod registry;
pub mod tree;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

#[allow(unused_imports)]
pub use env::{Run, TestEnv};
#[allow(unused_imports)]
pub use registry::Registry;

/// Pushes fixture `name` to the shared plain registry as
/// `fixture/<name>:latest` (once per test process) and returns the
/// reference to pull and the fixture.
pub fn serve_fixture(name: &str) -> (String, &'static fixtures::Fixture) {
    let fixture = fixtures::ensure().get(name);
    let registry = Registry::shared();
    let repo_tag = format!("fixture/{name}:latest");
    registry.push_fixture(fixture, &repo_tag);
    (registry.reference(&repo_tag), fixture)
}

/// This process's scratch directory (created on first use).
pub fn scratch_root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let parent = parent_of_scratch();
        fs::create_dir_all(&parent)
            .unwrap_or_else(|e| panic!("create scratch dir {}: {e}", parent.display()));
        sweep_dead(&parent);
        let own = parent.join(std::process::id().to_string());
        // A dir with our pid is from a dead process whose pid was reused.
        remove_tree(&own);
        fs::create_dir_all(&own).unwrap_or_else(|e| panic!("create {}: {e}", own.display()));
        remove_at_exit();
        own
    })
}

/// Removes this process's scratch root when the test binary exits normally
/// (libtest returns from `main` or calls `exit`, both of which run `atexit`
/// handlers). Killed runs are swept by the next run instead.
#[allow(unsafe_code)] // see `process::spawn` for why tests may use unsafe
fn remove_at_exit() {
    extern "C" fn cleanup() {
        if let Some(root) = ROOT_FOR_EXIT.get() {
            remove_tree(root);
        }
    }
    let own = parent_of_scratch().join(std::process::id().to_string());
    let _ = ROOT_FOR_EXIT.set(own);
    // SAFETY: `atexit` only stores the function pointer; `cleanup` is a plain
    // `extern "C" fn` that touches no thread-locals and cannot unwind across
    // the FFI boundary (`remove_tree` ignores every error).
    unsafe {
        libc::atexit(cleanup);
    }
}

static ROOT_FOR_EXIT: OnceLock<PathBuf> = OnceLock::new();

fn parent_of_scratch() -> PathBuf {
    match std::env::var_os("BUILDER_TEST_SCRATCH") {
        Some(p) => PathBuf::from(p),
        None if Path::new("/dev/shm").is_dir() => PathBuf::from("/dev/shm/builder-it"),
        None => std::env::temp_dir().join("builder-it"),
    }
}

/// Removes scratch dirs of test processes that no longer run.
fn sweep_dead(parent: &Path) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            remove_tree(&entry.path());
        }
    }
}

/// Unmounts (lazily) every mount at or below `dir`, deepest first.
pub fn unmount_below(dir: &Path) {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mountinfo)
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in points {
        let _ = rustix::mount::unmount(&p, rustix::mount::UnmountFlags::DETACH);
    }
}

/// Mount points below `dir` that are currently mounted.
pub fn mounts_below(dir: &Path) -> Vec<PathBuf> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mountinfo)
        .filter(|p| p.starts_with(dir))
        .collect()
}

/// One line of /proc/self/mountinfo.
#[derive(Debug, Clone)]
pub struct MountInfo {
    pub mount_point: PathBuf,
    pub fs_type: String,
    /// `ro` in the per-mount or the superblock options.
    pub read_only: bool,
    pub options: String,
}

/// The (topmost) mount at exactly `path`, if any.
pub fn mount_info(path: &Path) -> Option<MountInfo> {
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().rev().find_map(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        let mount_point = unescape_mountinfo(fields.get(4)?);
        if mount_point != path {
            return None;
        }
        let per_mount = fields.get(5)?;
        let sep = fields.iter().position(|f| *f == "-")?;
        let fs_type = fields.get(sep + 1)?.to_string();
        let super_opts = fields.get(sep + 3).copied().unwrap_or("");
        let read_only =
            per_mount.split(',').any(|o| o == "ro") || super_opts.split(',').any(|o| o == "ro");
        Some(MountInfo {
            mount_point,
            fs_type,
            read_only,
            options: format!("{per_mount} {super_opts}"),
        })
    })
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> PathBuf {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    use std::os::unix::ffi::OsStringExt;
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

/// Unmounts anything below `dir`, then removes it; ignores errors.
pub fn remove_tree(dir: &Path) {
    if dir.exists() {
        unmount_below(dir);
        let _ = fs::remove_dir_all(dir);
    }
}
