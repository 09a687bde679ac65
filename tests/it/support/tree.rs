//! Comparing two root filesystems entry by entry.
//!
//! [`snapshot`] records, for every path below a root (not following
//! symlinks): the file type, permission bits (including setuid/setgid/
//! sticky), owner, size and sha256 of regular files, mtime of regular files,
//! symlink targets, device numbers, xattrs, and which paths are hardlinks of
//! each other. [`diff`] lists every difference as one readable line.
//!
//! Deliberately not compared: directory sizes and mtimes (they depend on the
//! filesystem and on the order entries were created), atimes/ctimes, and the
//! overlay's own `trusted.overlay.*` / `user.overlay.*` xattrs. File mtimes
//! are compared unless both snapshots pass through [`forget_mtimes`] (trees
//! written by two different builds).

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

/// What a path is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File {
        size: u64,
        sha256: String,
        mtime: i64,
    },
    Symlink {
        target: PathBuf,
    },
    Fifo,
    CharDevice {
        major: u32,
        minor: u32,
    },
    BlockDevice {
        major: u32,
        minor: u32,
    },
    Socket,
}

/// One path's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    /// `st_mode & 0o7777`.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub xattrs: BTreeMap<String, Vec<u8>>,
    /// Other paths in the same tree that are the same inode (non-directories
    /// with more than one link), sorted; empty when not hardlinked.
    pub hardlinks: Vec<PathBuf>,
}

/// A tree: root-relative path (`/` for the root itself) → entry.
pub type Tree = BTreeMap<PathBuf, Entry>;

/// Records every entry below `root`, including `root` itself as `/`.
pub fn snapshot(root: &Path) -> Tree {
    let mut tree = Tree::new();
    let mut inodes: BTreeMap<(u64, u64), Vec<PathBuf>> = BTreeMap::new();
    for item in walkdir::WalkDir::new(root)
        .follow_links(false)
        .sort_by_file_name()
    {
        let item = item.unwrap_or_else(|e| panic!("walk {}: {e}", root.display()));
        let path = item.path();
        let rel = Path::new("/").join(path.strip_prefix(root).unwrap());
        let meta =
            fs::symlink_metadata(path).unwrap_or_else(|e| panic!("lstat {}: {e}", path.display()));
        let ft = meta.file_type();
        let kind = if ft.is_dir() {
            Kind::Dir
        } else if ft.is_file() {
            Kind::File {
                size: meta.len(),
                sha256: sha256_file(path),
                mtime: meta.mtime(),
            }
        } else if ft.is_symlink() {
            Kind::Symlink {
                target: fs::read_link(path).unwrap(),
            }
        } else if ft.is_fifo() {
            Kind::Fifo
        } else if ft.is_char_device() {
            let (major, minor) = dev_numbers(meta.rdev());
            Kind::CharDevice { major, minor }
        } else if ft.is_block_device() {
            let (major, minor) = dev_numbers(meta.rdev());
            Kind::BlockDevice { major, minor }
        } else {
            Kind::Socket
        };
        if !ft.is_dir() && meta.nlink() > 1 {
            inodes
                .entry((meta.dev(), meta.ino()))
                .or_default()
                .push(rel.clone());
        }
        tree.insert(
            rel,
            Entry {
                kind,
                mode: meta.mode() & 0o7777,
                uid: meta.uid(),
                gid: meta.gid(),
                xattrs: xattrs(path),
                hardlinks: Vec::new(),
            },
        );
    }
    for paths in inodes.values().filter(|p| p.len() > 1) {
        for p in paths {
            tree.get_mut(p).unwrap().hardlinks =
                paths.iter().filter(|q| *q != p).cloned().collect();
        }
    }
    tree
}

fn dev_numbers(rdev: u64) -> (u32, u32) {
    (rustix::fs::major(rdev), rustix::fs::minor(rdev))
}

fn sha256_file(path: &Path) -> String {
    let mut f = fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    hex::encode(h.finalize())
}

/// The xattrs of `path` (not following symlinks), minus overlayfs's own.
pub fn xattrs(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut all = xattrs_raw(path);
    all.retain(|name, _| {
        !name.starts_with("trusted.overlay.") && !name.starts_with("user.overlay.")
    });
    all
}

/// Every xattr of `path` (not following symlinks), overlay ones included.
pub fn xattrs_raw(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut names = vec![0u8; 64 * 1024];
    let n = match rustix::fs::llistxattr(path, &mut names) {
        Ok(n) => n,
        Err(e) if e == rustix::io::Errno::NOTSUP => return BTreeMap::new(),
        Err(e) => panic!("llistxattr {}: {e}", path.display()),
    };
    let mut out = BTreeMap::new();
    for name in names[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let name = String::from_utf8_lossy(name).into_owned();
        let mut value = vec![0u8; 64 * 1024];
        let len = rustix::fs::lgetxattr(path, name.as_str(), &mut value)
            .unwrap_or_else(|e| panic!("lgetxattr {} {name}: {e}", path.display()));
        value.truncate(len);
        out.insert(name, value);
    }
    out
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::Dir => write!(f, "directory"),
            Kind::File { size, sha256, .. } => {
                write!(f, "file ({size} bytes, sha256 {})", &sha256[..12])
            }
            Kind::Symlink { target } => write!(f, "symlink -> {}", target.display()),
            Kind::Fifo => write!(f, "fifo"),
            Kind::CharDevice { major, minor } => write!(f, "char device {major}:{minor}"),
            Kind::BlockDevice { major, minor } => write!(f, "block device {major}:{minor}"),
            Kind::Socket => write!(f, "socket"),
        }
    }
}

fn show_xattrs(x: &BTreeMap<String, Vec<u8>>) -> String {
    let parts: Vec<String> = x
        .iter()
        .map(|(k, v)| match std::str::from_utf8(v) {
            Ok(s) if s.chars().all(|c| !c.is_control()) => format!("{k}={s:?}"),
            _ => format!("{k}=0x{}", hex::encode(v)),
        })
        .collect();
    format!("{{{}}}", parts.join(", "))
}

/// Every difference between `expected` and `actual`, one line each.
pub fn diff(expected: &Tree, actual: &Tree) -> Vec<String> {
    let mut out = Vec::new();
    for (path, e) in expected {
        let p = path.display();
        let Some(a) = actual.get(path) else {
            out.push(format!("missing: {p} ({})", e.kind));
            continue;
        };
        match (&e.kind, &a.kind) {
            (
                Kind::File {
                    size: es,
                    sha256: eh,
                    mtime: em,
                },
                Kind::File {
                    size: as_,
                    sha256: ah,
                    mtime: am,
                },
            ) => {
                if es != as_ || eh != ah {
                    out.push(format!("{p}: content: expected {}, got {}", e.kind, a.kind));
                }
                if em != am {
                    out.push(format!("{p}: mtime: expected {em}, got {am}"));
                }
            }
            (ek, ak) if ek != ak => out.push(format!("{p}: expected {ek}, got {ak}")),
            _ => {}
        }
        if e.mode != a.mode {
            out.push(format!(
                "{p}: mode: expected {:04o}, got {:04o}",
                e.mode, a.mode
            ));
        }
        if (e.uid, e.gid) != (a.uid, a.gid) {
            out.push(format!(
                "{p}: owner: expected {}:{}, got {}:{}",
                e.uid, e.gid, a.uid, a.gid
            ));
        }
        if e.xattrs != a.xattrs {
            out.push(format!(
                "{p}: xattrs: expected {}, got {}",
                show_xattrs(&e.xattrs),
                show_xattrs(&a.xattrs)
            ));
        }
        if e.hardlinks != a.hardlinks {
            out.push(format!(
                "{p}: hardlinked with: expected {:?}, got {:?}",
                e.hardlinks, a.hardlinks
            ));
        }
    }
    for (path, a) in actual {
        if !expected.contains_key(path) {
            out.push(format!("unexpected: {} ({})", path.display(), a.kind));
        }
    }
    out
}

/// Sets every file's mtime to 0, for trees written separately from the same
/// recipe (two builders running one Containerfile), where what was written
/// matters and when does not.
pub fn forget_mtimes(tree: &mut Tree) {
    for entry in tree.values_mut() {
        if let Kind::File { mtime, .. } = &mut entry.kind {
            *mtime = 0;
        }
    }
}

/// Panics listing every difference (the first 60) if the trees differ.
#[track_caller]
pub fn assert_same(expected_root: &Path, actual_root: &Path) {
    assert_trees_same(
        &snapshot(expected_root),
        &snapshot(actual_root),
        &expected_root.display().to_string(),
        &actual_root.display().to_string(),
    );
}

/// [`assert_same`] for snapshots already taken (and perhaps filtered);
/// the labels name the two trees in the message.
#[track_caller]
pub fn assert_trees_same(expected: &Tree, actual: &Tree, expected_label: &str, actual_label: &str) {
    let diffs = diff(expected, actual);
    if !diffs.is_empty() {
        let shown: Vec<&str> = diffs.iter().take(60).map(String::as_str).collect();
        panic!(
            "{actual_label} differs from {expected_label} in {} ways ({} entries expected, {} found):\n  {}{}",
            diffs.len(),
            expected.len(),
            actual.len(),
            shown.join("\n  "),
            if diffs.len() > 60 { "\n  ..." } else { "" }
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    /// The comparison must notice each kind of difference it claims to check.
    #[test]
    fn diff_reports_each_kind_of_difference() {
        let base = tempfile::tempdir_in(crate::support::scratch_root()).unwrap();
        let make = |name: &str| {
            let r = base.path().join(name);
            fs::create_dir_all(r.join("d")).unwrap();
            fs::write(r.join("d/f"), "content").unwrap();
            fs::write(r.join("mode"), "m").unwrap();
            fs::write(r.join("own"), "o").unwrap();
            fs::write(r.join("x"), "x").unwrap();
            fs::write(r.join("h1"), "h").unwrap();
            fs::hard_link(r.join("h1"), r.join("h2")).unwrap();
            symlink("/target", r.join("l")).unwrap();
            r
        };
        let a = make("a");
        let b = make("b");
        // Align mtimes, then check that identical trees compare equal.
        for rel in ["d/f", "mode", "own", "x", "h1"] {
            let t = fs::metadata(a.join(rel)).unwrap().modified().unwrap();
            fs::File::options()
                .write(true)
                .open(b.join(rel))
                .unwrap()
                .set_modified(t)
                .unwrap();
        }
        assert_eq!(diff(&snapshot(&a), &snapshot(&b)), Vec::<String>::new());

        // Only mtimes differ: reported, until both sides forget them.
        let t = fs::metadata(a.join("x")).unwrap().modified().unwrap();
        let earlier = t - std::time::Duration::from_secs(3600);
        let fx = fs::File::options().write(true).open(b.join("x")).unwrap();
        fx.set_modified(earlier).unwrap();
        let (mut sa, mut sb) = (snapshot(&a), snapshot(&b));
        let d = diff(&sa, &sb);
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(d[0].starts_with("/x: mtime: expected"), "{d:?}");
        forget_mtimes(&mut sa);
        forget_mtimes(&mut sb);
        assert_eq!(diff(&sa, &sb), Vec::<String>::new());
        fx.set_modified(t).unwrap();

        fs::write(b.join("d/f"), "changed").unwrap();
        fs::set_permissions(b.join("mode"), fs::Permissions::from_mode(0o4755)).unwrap();
        std::os::unix::fs::lchown(b.join("own"), Some(1000), Some(1000)).unwrap();
        rustix::fs::lsetxattr(b.join("x"), "user.k", b"v", rustix::fs::XattrFlags::empty())
            .unwrap();
        fs::remove_file(b.join("h2")).unwrap();
        fs::write(b.join("h2"), "h").unwrap();
        fs::remove_file(b.join("l")).unwrap();
        symlink("/other", b.join("l")).unwrap();
        fs::write(b.join("extra"), "").unwrap();
        fs::remove_dir_all(a.join("d")).ok();
        fs::create_dir(a.join("d")).unwrap();
        fs::write(a.join("d/f"), "content").unwrap();
        fs::write(a.join("only-a"), "").unwrap();

        let d = diff(&snapshot(&a), &snapshot(&b)).join("\n");
        for needle in [
            "/d/f: content",
            "/mode: mode: expected 0",
            "got 4755",
            "/own: owner: expected 0:0, got 1000:1000",
            "/x: xattrs: expected {}, got {user.k=\"v\"}",
            "/h1: hardlinked with: expected [\"/h2\"], got []",
            "/l: expected symlink -> /target, got symlink -> /other",
            "missing: /only-a",
            "unexpected: /extra",
        ] {
            assert!(d.contains(needle), "diff lacks {needle:?}:\n{d}");
        }
    }
}
