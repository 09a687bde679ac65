//! Tests of [`diff`]: the round trip with [`unpack`](crate::layer::unpack())
//! over every entry kind, determinism (repeat, other mtimes with a
//! timestamp, thread counts), the pax format as GNU tar reads it, whiteout
//! and opaque handling, exclusions, and refusals. The real-overlay test is
//! in tests/it/diff.rs (this module may not use `mount`).
//!
//! These run as root (as in CI): they create devices, set `trusted.*` and
//! `security.*` xattrs and chown.

use super::*;
use crate::layer::inventory::{Inventory, compare, scan};
use crate::layer::{UnpackOptions, unpack};
use std::io::Cursor;
use std::os::unix::fs::PermissionsExt;

const T0: u64 = 1_600_000_000;

fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("builder-diff-")
        .tempdir_in("/dev/shm")
        .unwrap()
}

/// A layer tar with every kind of entry `diff` must reproduce.
fn rich_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let long_dir = format!("deep/{}", "d".repeat(120));
    let long_file = format!("{long_dir}/{}", "f".repeat(150));
    let mut add = |kind: tar::EntryType,
                   name: &str,
                   data: &[u8],
                   mode: u32,
                   owner: (u64, u64),
                   link: Option<&str>,
                   xattrs: &[(&str, &[u8])]| {
        if !xattrs.is_empty() {
            let recs: Vec<(String, &[u8])> = xattrs
                .iter()
                .map(|(n, v)| (format!("SCHILY.xattr.{n}"), *v))
                .collect();
            b.append_pax_extensions(recs.iter().map(|(k, v)| (k.as_str(), *v)))
                .unwrap();
        }
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(owner.0);
        h.set_gid(owner.1);
        h.set_mtime(T0 + name.len() as u64);
        h.set_size(data.len() as u64);
        match (kind, link) {
            (tar::EntryType::Char, _) => {
                h.set_device_major(1).unwrap();
                h.set_device_minor(3).unwrap();
            }
            (tar::EntryType::Block, _) => {
                h.set_device_major(7).unwrap();
                h.set_device_minor(0).unwrap();
            }
            _ => {}
        }
        match link {
            Some(t) => b.append_link(&mut h, name, t).unwrap(),
            None => b.append_data(&mut h, name, data).unwrap(),
        }
    };
    use tar::EntryType as E;
    add(E::Directory, "etc", b"", 0o755, (0, 0), None, &[]);
    add(
        E::Regular,
        "etc/passwd",
        b"root:x:0:0\n",
        0o644,
        (0, 0),
        None,
        &[],
    );
    add(E::Regular, "etc/.wh.gone", b"", 0o644, (0, 0), None, &[]);
    add(E::Directory, "opq", b"", 0o750, (12, 34), None, &[]);
    add(
        E::Regular,
        "opq/.wh..wh..opq",
        b"",
        0o644,
        (0, 0),
        None,
        &[],
    );
    add(E::Regular, "opq/new", b"new", 0o600, (12, 34), None, &[]);
    add(E::Directory, "bin", b"", 0o755, (0, 0), None, &[]);
    add(
        E::Regular,
        "bin/ping",
        b"\x7fELF ping",
        0o4755,
        (0, 0),
        None,
        &[(
            "security.capability",
            b"\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
        )],
    );
    add(E::Regular, "bin/sg", b"sgid", 0o2711, (0, 50), None, &[]);
    add(E::Link, "bin/ping6", b"", 0, (0, 0), Some("bin/ping"), &[]);
    add(
        E::Symlink,
        "bin/sh",
        b"",
        0o777,
        (0, 0),
        Some("/bin/busybox"),
        &[],
    );
    add(
        E::Directory,
        "tmp",
        b"",
        0o1777,
        (0, 0),
        None,
        &[("user.note", b"sticky")],
    );
    add(E::Fifo, "tmp/fifo", b"", 0o640, (1000, 1000), None, &[]);
    add(E::Directory, "dev", b"", 0o755, (0, 0), None, &[]);
    add(E::Char, "dev/null", b"", 0o666, (0, 0), None, &[]);
    add(E::Block, "dev/loop0", b"", 0o660, (0, 6), None, &[]);
    add(E::Directory, "deep", b"", 0o755, (0, 0), None, &[]);
    add(E::Directory, &long_dir, b"", 0o700, (0, 0), None, &[]);
    add(
        E::Regular,
        &long_file,
        b"long",
        0o644,
        (3_000_000, 3_000_001),
        None,
        &[],
    );
    let long_target = "t".repeat(200);
    add(
        E::Symlink,
        "deep/longlink",
        b"",
        0o777,
        (0, 0),
        Some(&long_target),
        &[],
    );
    add(
        E::Link,
        "deep/hl-long",
        b"",
        0,
        (0, 0),
        Some(&long_file),
        &[],
    );
    b.into_inner().unwrap()
}

/// A lower in which `etc/gone` exists, so the whiteout deletes something.
fn lower_with_gone(root: &Path) -> PathBuf {
    let lower = root.join("lower");
    std::fs::create_dir_all(lower.join("etc")).unwrap();
    std::fs::write(lower.join("etc/gone"), b"old").unwrap();
    std::fs::create_dir_all(lower.join("opq")).unwrap();
    std::fs::write(lower.join("opq/old"), b"old").unwrap();
    lower
}

fn unpack_into(tar: &[u8], dir: &Path) -> Inventory {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let unpacked = unpack(&mut Cursor::new(tar), dir, &UnpackOptions::default()).unwrap();
    assert!(compare(&unpacked.inventory, &scan(dir).unwrap()).is_empty());
    unpacked.inventory
}

/// Also checks [`Diffed::inventory`]: a copy of the upper (`cp -a`: same
/// xattrs, hard links, mtimes), tidied, scans to exactly that inventory.
fn diff_to_vec(upper: &Path, lowers: &[PathBuf], opts: &DiffOptions) -> (Vec<u8>, Diffed) {
    let mut out = Vec::new();
    let d = diff(upper, lowers, &mut out, opts).unwrap();
    let copy = tempfile::tempdir().unwrap();
    let tidied = copy.path().join("upper");
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(upper)
        .arg(&tidied)
        .status()
        .unwrap();
    assert!(status.success(), "cp -a {}", upper.display());
    assert!(d.tidy_upper(&tidied).unwrap(), "tidying found a surprise");
    let scanned = scan(&tidied).unwrap();
    let mismatches = compare(&d.inventory, &scanned);
    assert!(mismatches.is_empty(), "{mismatches:#?}");
    (out, d)
}

fn decompress(c: Compression, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    crate::layer::decoder(c, data)
        .unwrap()
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// (name, type, link target, mode, uid, gid, mtime, pax records) of every
/// entry, pax headers folded into their entry.
#[allow(clippy::type_complexity)]
fn listing(
    tar_bytes: &[u8],
) -> Vec<(
    String,
    char,
    String,
    u32,
    u64,
    u64,
    u64,
    Vec<(String, Vec<u8>)>,
)> {
    let mut a = tar::Archive::new(tar_bytes);
    a.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let pax: Vec<(String, Vec<u8>)> = match e.pax_extensions().unwrap() {
                Some(p) => p
                    .map(|r| {
                        let r = r.unwrap();
                        (r.key().unwrap().to_string(), r.value_bytes().to_vec())
                    })
                    .collect(),
                None => Vec::new(),
            };
            let h = e.header();
            (
                String::from_utf8(e.path_bytes().into_owned()).unwrap(),
                h.entry_type().as_byte() as char,
                e.link_name_bytes()
                    .map(|l| String::from_utf8(l.into_owned()).unwrap())
                    .unwrap_or_default(),
                h.mode().unwrap(),
                h.uid().unwrap(),
                h.gid().unwrap(),
                h.mtime().unwrap(),
                pax,
            )
        })
        .collect()
}

/// Raw type flags of every header, pax headers included.
fn raw_types(tar_bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + 512 <= tar_bytes.len() {
        let h = tar::Header::from_byte_slice(&tar_bytes[off..off + 512]);
        if h.as_bytes().iter().all(|&b| b == 0) {
            break;
        }
        out.push(h.entry_type().as_byte());
        let size = h.entry_size().unwrap();
        off += 512 + size.div_ceil(512) as usize * 512;
    }
    out
}

fn sort_key(name: &str) -> Vec<u8> {
    match name.strip_suffix(".wh..wh..opq") {
        Some(dir) => [dir.as_bytes(), b"\0"].concat(),
        None => name.trim_end_matches('/').as_bytes().to_vec(),
    }
}

#[test]
fn round_trip_with_unpack_over_every_entry_kind() {
    let tmp = scratch();
    let lower = lower_with_gone(tmp.path());
    let t = rich_tar();
    let first = unpack_into(&t, &tmp.path().join("a"));
    for c in [Compression::Gzip, Compression::Zstd, Compression::None] {
        let opts = DiffOptions {
            compression: c,
            threads: 2,
            ..DiffOptions::default()
        };
        let (blob, d) = diff_to_vec(&tmp.path().join("a"), std::slice::from_ref(&lower), &opts);
        assert_eq!(d.digest, Digest::of_bytes(&blob), "{c:?}");
        assert_eq!(d.size, blob.len() as u64);
        let tar_bytes = decompress(c, &blob);
        assert_eq!(d.diff_id.0, Digest::of_bytes(&tar_bytes), "{c:?}");
        assert_eq!(
            d.media_type,
            match c {
                Compression::Gzip => media_type::OCI_LAYER_GZIP,
                Compression::Zstd => media_type::OCI_LAYER_ZSTD,
                Compression::None => media_type::OCI_LAYER_TAR,
            }
        );
        let b = tmp.path().join(format!("b-{c:?}"));
        let second = unpack_into(&tar_bytes, &b);
        let diffs = compare(&first, &second);
        assert!(diffs.is_empty(), "{c:?}: {diffs:#?}");
        assert_eq!(d.entries, listing(&tar_bytes).len() as u64);
    }
}

#[test]
fn entries_are_sorted_pax_formatted_and_exact() {
    let tmp = scratch();
    let lower = lower_with_gone(tmp.path());
    unpack_into(&rich_tar(), &tmp.path().join("a"));
    let opts = DiffOptions {
        compression: Compression::None,
        ..DiffOptions::default()
    };
    let (tar_bytes, _) = diff_to_vec(&tmp.path().join("a"), &[lower], &opts);
    let list = listing(&tar_bytes);
    let names: Vec<&str> = list.iter().map(|e| e.0.as_str()).collect();
    let long_dir = format!("deep/{}/", "d".repeat(120));
    let long_file = format!("{long_dir}{}", "f".repeat(150));
    let mut expected = vec![
        "bin/",
        "bin/ping",
        "bin/ping6",
        "bin/sg",
        "bin/sh",
        "deep/",
        &long_dir,
        &long_file,
        "deep/hl-long",
        "deep/longlink",
        "dev/",
        "dev/loop0",
        "dev/null",
        "etc/",
        "etc/.wh.gone",
        "etc/passwd",
        "opq/",
        "opq/.wh..wh..opq",
        "opq/new",
        "tmp/",
        "tmp/fifo",
    ];
    expected.sort_by_key(|n| sort_key(n));
    assert_eq!(names, expected);
    let keys: Vec<Vec<u8>> = names.iter().map(|n| sort_key(n)).collect();
    assert!(
        keys.windows(2).all(|w| w[0] < w[1]),
        "not sorted: {names:?}"
    );

    let by = |n: &str| list.iter().find(|e| e.0 == n).unwrap();
    assert_eq!(by("bin/ping").3, 0o4755);
    assert_eq!(by("bin/sg").3, 0o2711);
    assert_eq!(by("tmp/").3, 0o1777);
    assert_eq!(by("opq/").3, 0o750);
    assert_eq!((by("opq/").4, by("opq/").5), (12, 34));
    assert_eq!(by("bin/ping6").1, '1');
    assert_eq!(by("bin/ping6").2, "bin/ping");
    assert_eq!(by("deep/hl-long").1, '1');
    assert_eq!(by("deep/hl-long").2, long_file);
    assert_eq!(by("bin/sh").1, '2');
    assert_eq!(by("bin/sh").2, "/bin/busybox");
    assert_eq!(by("deep/longlink").2, "t".repeat(200));
    assert_eq!(by("tmp/fifo").1, '6');
    assert_eq!(by("dev/null").1, '3');
    assert_eq!(by("dev/loop0").1, '4');
    assert_eq!((by(&long_file).4, by(&long_file).5), (3_000_000, 3_000_001));
    assert_eq!(by("etc/passwd").6, T0 + "etc/passwd".len() as u64);
    // xattrs as SCHILY records; overlay's own (the opaque xattr on opq/) never.
    assert_eq!(by("bin/ping").7.len(), 1);
    assert_eq!(by("bin/ping").7[0].0, "SCHILY.xattr.security.capability");
    assert_eq!(
        by("tmp/").7,
        vec![("SCHILY.xattr.user.note".to_string(), b"sticky".to_vec())]
    );
    assert!(
        list.iter()
            .all(|e| e.7.iter().all(|(k, _)| !k.contains("overlay")))
    );
    // Long names through pax, never GNU L/K records; empty user/group names.
    let types = raw_types(&tar_bytes);
    assert!(types.contains(&b'x'));
    assert!(
        !types.contains(&b'L') && !types.contains(&b'K'),
        "{types:?}"
    );
    let mut a = tar::Archive::new(&tar_bytes[..]);
    for e in a.entries().unwrap() {
        let e = e.unwrap();
        assert_eq!(e.header().username_bytes(), Some(&b""[..]));
        assert_eq!(e.header().groupname_bytes(), Some(&b""[..]));
        assert!(e.header().as_ustar().is_some(), "not a ustar header");
    }
}

#[test]
fn gnu_tar_lists_the_layer_without_warnings() {
    let tmp = scratch();
    let lower = lower_with_gone(tmp.path());
    unpack_into(&rich_tar(), &tmp.path().join("a"));
    for (c, flag) in [(Compression::None, "-tvf"), (Compression::Gzip, "-tzvf")] {
        let opts = DiffOptions {
            compression: c,
            ..DiffOptions::default()
        };
        let (blob, _) = diff_to_vec(&tmp.path().join("a"), std::slice::from_ref(&lower), &opts);
        let file = tmp.path().join("layer.tar");
        std::fs::write(&file, &blob).unwrap();
        let out = std::process::Command::new("tar")
            .arg(flag)
            .arg(&file)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{c:?}: {stderr}");
        assert!(stderr.is_empty(), "{c:?}: tar warned: {stderr}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("bin/ping6 link to bin/ping"), "{stdout}");
        assert!(stdout.contains(&"f".repeat(150)), "{stdout}");
        assert!(stdout.contains("3000000/3000001"), "{stdout}");
        assert!(stdout.contains("-rwsr-xr-x"), "{stdout}");
    }
}

#[test]
fn same_tree_gives_same_bytes_and_timestamp_hides_mtimes() {
    let tmp = scratch();
    let lower = lower_with_gone(tmp.path());
    let lowers = std::slice::from_ref(&lower);
    let t = rich_tar();
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    unpack_into(&t, &a);
    unpack_into(&t, &b);
    // b: the same content, every mtime different (later).
    for e in walkdir::WalkDir::new(&b) {
        let e = e.unwrap();
        let later = rustix::fs::Timestamps {
            last_access: rustix::fs::Timespec {
                tv_sec: 1_700_000_000,
                tv_nsec: 5,
            },
            last_modification: rustix::fs::Timespec {
                tv_sec: 1_700_000_000,
                tv_nsec: 5,
            },
        };
        rustix::fs::utimensat(
            rustix::fs::CWD,
            e.path(),
            &later,
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .unwrap();
    }
    for c in [Compression::Gzip, Compression::Zstd] {
        let plain = DiffOptions {
            compression: c,
            threads: 2,
            ..DiffOptions::default()
        };
        let (x1, d1) = diff_to_vec(&a, lowers, &plain);
        let (x2, d2) = diff_to_vec(&a, lowers, &plain);
        assert_eq!(x1, x2, "{c:?}: repeat");
        assert_eq!(d1, d2);
        let one_thread = DiffOptions {
            threads: 1,
            ..plain.clone()
        };
        assert_eq!(diff_to_vec(&a, lowers, &one_thread).0, x1, "{c:?}: threads");
        let (y, dy) = diff_to_vec(&b, lowers, &plain);
        assert_ne!(
            dy.diff_id, d1.diff_id,
            "{c:?}: mtimes must show without a timestamp"
        );
        assert_ne!(y, x1);

        let stamped = DiffOptions {
            timestamp: Some(1_000_000_000),
            ..plain.clone()
        };
        let (sa, da) = diff_to_vec(&a, lowers, &stamped);
        let (sb, db) = diff_to_vec(&b, lowers, &stamped);
        assert_eq!(sa, sb, "{c:?}: clamped trees differ");
        // The inventories record each tree's own (unclamped) mtimes.
        let layer_only = |d: Diffed| Diffed {
            inventory: Inventory {
                version: d.inventory.version,
                entries: Vec::new(),
            },
            ..d
        };
        assert_ne!(da.inventory, db.inventory);
        assert_eq!(layer_only(da), layer_only(db));
        let tar_bytes = decompress(c, &sa);
        assert!(listing(&tar_bytes).iter().all(|e| e.6 == 1_000_000_000));
    }
    // A timestamp later than some mtimes clamps only those.
    let (tar_bytes, _) = diff_to_vec(
        &a,
        lowers,
        &DiffOptions {
            compression: Compression::None,
            timestamp: Some((T0 + 10) as i64),
            ..DiffOptions::default()
        },
    );
    let list = listing(&tar_bytes);
    let mtime = |n: &str| list.iter().find(|e| e.0 == n).unwrap().6;
    assert_eq!(mtime("bin/sg"), T0 + 6);
    assert_eq!(mtime("etc/passwd"), T0 + 10);
}

/// An upper dir written by hand the way overlayfs writes one.
fn whiteout(dir: &Path, name: &str) {
    let fd = sysfs::open_dir(dir).unwrap();
    sysfs::mknodat(
        fd.as_fd(),
        Path::new(name),
        sysfs::FileType::CharacterDevice,
        0,
        0,
        0,
    )
    .unwrap();
}

use std::os::fd::AsFd;

#[test]
fn whiteouts_of_nothing_are_dropped_and_deleted_lower_whiteouts_too() {
    let tmp = scratch();
    let upper = tmp.path().join("upper");
    let (l0, l1) = (tmp.path().join("l0"), tmp.path().join("l1"));
    for d in [&upper, &l0, &l1] {
        std::fs::create_dir_all(d.join("d")).unwrap();
    }
    std::fs::write(l1.join("d/in-l1"), b"x").unwrap();
    std::fs::write(l1.join("d/deleted-in-l0"), b"x").unwrap();
    whiteout(&l0.join("d"), "deleted-in-l0");
    for n in ["in-l1", "deleted-in-l0", "never-existed"] {
        whiteout(&upper.join("d"), n);
    }
    let opts = DiffOptions {
        compression: Compression::None,
        ..DiffOptions::default()
    };
    let (tar_bytes, d) = diff_to_vec(&upper, &[l0, l1], &opts);
    let names: Vec<String> = listing(&tar_bytes).into_iter().map(|e| e.0).collect();
    assert_eq!(names, ["d/", "d/.wh.in-l1"]);
    assert_eq!(d.entries, 2);
}

#[test]
fn excluded_mount_points_are_left_out_only_while_empty() {
    let tmp = scratch();
    let (upper, lower) = (tmp.path().join("upper"), tmp.path().join("lower"));
    std::fs::create_dir_all(lower.join("etc")).unwrap();
    std::fs::create_dir_all(upper.join("etc")).unwrap();
    std::fs::create_dir_all(upper.join("proc")).unwrap();
    std::fs::create_dir_all(upper.join("sys/kernel")).unwrap();
    std::fs::create_dir_all(upper.join("run")).unwrap();
    std::fs::write(upper.join("run/keep"), b"the step wrote this").unwrap();
    std::fs::write(upper.join("etc/hosts"), b"").unwrap();
    std::fs::write(upper.join("etc/resolv.conf"), b"nameserver 1.1.1.1\n").unwrap();
    let exclude = ["/etc/hosts", "etc/resolv.conf", "./proc", "sys", "run"]
        .iter()
        .map(PathBuf::from)
        .collect();
    let opts = DiffOptions {
        compression: Compression::None,
        exclude,
        ..DiffOptions::default()
    };
    let (tar_bytes, _) = diff_to_vec(&upper, std::slice::from_ref(&lower), &opts);
    let names: Vec<String> = listing(&tar_bytes).into_iter().map(|e| e.0).collect();
    // resolv.conf has content and run/ is not empty: kept. sys/ holds a
    // directory that is not excluded: kept.
    assert_eq!(
        names,
        [
            "etc/",
            "etc/resolv.conf",
            "run/",
            "run/keep",
            "sys/",
            "sys/kernel/"
        ]
    );
    // With only the empty mount point inside, the copied-up etc/ goes too.
    std::fs::remove_file(upper.join("etc/resolv.conf")).unwrap();
    let (tar_bytes, _) = diff_to_vec(&upper, &[lower], &opts);
    let names: Vec<String> = listing(&tar_bytes).into_iter().map(|e| e.0).collect();
    assert_eq!(names, ["run/", "run/keep", "sys/", "sys/kernel/"]);
}

fn diff_err(upper: &Path) -> LayerError {
    diff(upper, &[], Vec::new(), &DiffOptions::default()).unwrap_err()
}

#[test]
fn redirect_metacopy_and_reserved_names_are_refused() {
    let tmp = scratch();
    let upper = tmp.path().join("upper");
    std::fs::create_dir_all(upper.join("moved")).unwrap();
    sysfs::lsetxattr(&upper.join("moved"), b"trusted.overlay.redirect", b"/orig").unwrap();
    let err = diff_err(&upper);
    let msg = err.to_string();
    assert!(matches!(err, LayerError::Unrepresentable { .. }), "{err:?}");
    assert!(
        msg.contains("trusted.overlay.redirect") && msg.contains("moved"),
        "{msg}"
    );

    std::fs::remove_dir(upper.join("moved")).unwrap();
    std::fs::write(upper.join("meta"), b"").unwrap();
    sysfs::lsetxattr(&upper.join("meta"), b"trusted.overlay.metacopy", b"").unwrap();
    let msg = diff_err(&upper).to_string();
    assert!(
        msg.contains("trusted.overlay.metacopy") && msg.contains("meta"),
        "{msg}"
    );

    std::fs::remove_file(upper.join("meta")).unwrap();
    std::fs::write(upper.join(".wh.sneaky"), b"").unwrap();
    let msg = diff_err(&upper).to_string();
    assert!(
        msg.contains(".wh.sneaky") && msg.contains("whiteout"),
        "{msg}"
    );

    // In the user namespace, the same rules apply to user.overlay.*, and
    // user.overlay.opaque makes a directory opaque.
    std::fs::remove_file(upper.join(".wh.sneaky")).unwrap();
    std::fs::create_dir(upper.join("o")).unwrap();
    sysfs::lsetxattr(&upper.join("o"), b"user.overlay.opaque", b"y").unwrap();
    sysfs::lsetxattr(&upper.join("o"), b"trusted.overlay.opaque", b"y").unwrap();
    let user = DiffOptions {
        compression: Compression::None,
        overlay_xattr: OverlayXattr::User,
        ..DiffOptions::default()
    };
    let (tar_bytes, _) = diff_to_vec(&upper, &[], &user);
    let list = listing(&tar_bytes);
    let names: Vec<&str> = list.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(names, ["o/", "o/.wh..wh..opq"]);
    assert!(
        list.iter().all(|e| e.7.is_empty()),
        "overlay xattrs leaked: {list:?}"
    );

    let bad_level = DiffOptions {
        level: Some(42),
        ..DiffOptions::default()
    };
    let err = diff(&upper, &[], Vec::new(), &bad_level).unwrap_err();
    assert!(err.to_string().contains("gzip level 42"), "{err}");
}

#[test]
fn ustar_split_and_pax_records() {
    assert_eq!(split_ustar(b"short"), Some((&b""[..], &b"short"[..])));
    let name = [&b"p".repeat(150)[..], b"/", &b"n".repeat(90)].concat();
    assert_eq!(split_ustar(&name), Some((&name[..150], &name[151..])));
    let dir = [&b"p".repeat(150)[..], b"/", &b"n".repeat(99), b"/"].concat();
    assert_eq!(split_ustar(&dir), Some((&dir[..150], &dir[151..])));
    assert_eq!(split_ustar(&b"x".repeat(101)), None);
    assert_eq!(split_ustar(&[&b"p".repeat(160)[..], b"/n"].concat()), None);
    let mut rec = Vec::new();
    pax_record(&mut rec, b"path", b"abc");
    assert_eq!(rec, b"12 path=abc\n");
    rec.clear();
    // 7-byte key+value+3 = 97; 97 + 2 digits = 99; 99 + 2 = 101 → 3 digits.
    pax_record(&mut rec, b"k", &b"v".repeat(94));
    assert_eq!(&rec[..4], b"101 ");
    assert_eq!(rec.len(), 101);
}

/// Accepts `left` bytes, then fails like a full disk.
struct FailAfter {
    left: usize,
}

impl Write for FailAfter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Err(io::Error::other("disk full"));
        }
        let n = buf.len().min(self.left);
        self.left -= n;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_failing_writer_is_an_error_not_a_panic() {
    let tmp = scratch();
    let upper = tmp.path().join("upper");
    std::fs::create_dir_all(upper.join("d")).unwrap();
    // Enough incompressible data for several gzip chunks.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let data: Vec<u8> = (0..3 * compression::GZIP_CHUNK)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect();
    std::fs::write(upper.join("d/big"), &data).unwrap();
    for c in [Compression::Gzip, Compression::Zstd, Compression::None] {
        for left in [0, 100, 2 << 20] {
            let opts = DiffOptions {
                compression: c,
                threads: 2,
                ..DiffOptions::default()
            };
            let err = diff(&upper, &[], FailAfter { left }, &opts).unwrap_err();
            assert!(
                matches!(err, LayerError::Write { .. }),
                "{c:?} after {left}: {err:?}"
            );
        }
    }
}

/// [`Diffed::inventory`] against the real thing: the upper itself is
/// tidied (not a copy) and scanned. It holds what tidying changes or what
/// a copy would hide: a socket and an excluded empty mount point (both
/// removed), the latter hard-linked to a kept file (its group shrinks to
/// one), overlay-internal xattrs (removed) next to a user xattr and the
/// opaque marker (kept), a hard-linked symlink, and a root with its own
/// mode and xattrs.
#[test]
fn the_inventory_is_the_tidied_upper() {
    let tmp = scratch();
    let upper = tmp.path().join("upper");
    std::fs::create_dir_all(upper.join("etc")).unwrap();
    std::fs::create_dir_all(upper.join("opq")).unwrap();
    std::fs::set_permissions(&upper, std::fs::Permissions::from_mode(0o775)).unwrap();
    sysfs::lsetxattr(&upper, b"user.note", b"root").unwrap();
    sysfs::lsetxattr(&upper, b"trusted.overlay.impure", b"y").unwrap();
    sysfs::lsetxattr(&upper.join("opq"), b"trusted.overlay.opaque", b"y").unwrap();
    std::fs::write(upper.join("kept"), b"kept").unwrap();
    sysfs::lsetxattr(&upper.join("kept"), b"user.tag", b"v").unwrap();
    sysfs::lsetxattr(&upper.join("kept"), b"trusted.overlay.origin", b"\x00x").unwrap();
    std::fs::write(upper.join("etc/hosts"), b"").unwrap();
    std::fs::hard_link(upper.join("etc/hosts"), upper.join("also-hosts")).unwrap();
    std::os::unix::fs::symlink("kept", upper.join("link")).unwrap();
    std::fs::hard_link(upper.join("link"), upper.join("link2")).unwrap();
    let socket = std::os::unix::net::UnixListener::bind(upper.join("sock")).unwrap();
    let opts = DiffOptions {
        compression: Compression::None,
        exclude: vec![PathBuf::from("etc/hosts")],
        ..DiffOptions::default()
    };
    let d = diff(&upper, &[], Vec::new(), &opts).unwrap();
    drop(socket);
    assert!(d.tidy_upper(&upper).unwrap());
    let scanned = scan(&upper).unwrap();
    let mismatches = compare(&d.inventory, &scanned);
    assert!(mismatches.is_empty(), "{mismatches:#?}");
    let entry = |p: &str| {
        d.inventory
            .entries
            .iter()
            .find(|e| e.path.as_bytes() == p.as_bytes())
            .unwrap_or_else(|| panic!("{p} not in the inventory"))
            .clone()
    };
    assert_eq!(entry("").mode, 0o775);
    assert_eq!(entry("kept").xattrs.len(), 1, "origin removed, tag kept");
    assert_eq!(entry("opq").xattrs.len(), 1, "the opaque marker stays");
    assert_eq!(
        entry("link2").link,
        Some(crate::layer::inventory::ByteStr(b"link".to_vec()))
    );
    assert_eq!(entry("also-hosts").link, None, "its other name was removed");
    assert!(
        d.inventory
            .entries
            .iter()
            .all(|e| e.path.as_bytes() != b"sock" && e.path.as_bytes() != b"etc/hosts")
    );
}
