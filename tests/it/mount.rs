//! Real overlay mounts: 1, 2 and 250 lowers, through the new mount API and
//! the legacy option string, read-only and with an upper; guards unmount.

use std::fs;
use std::path::{Path, PathBuf};

use builder::mount::{self, MountApi, MountFlags, Overlay};

fn mounted(target: &Path) -> bool {
    let target = target.to_str().unwrap();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(target))
}

/// `n` lower dirs named like store layers; lower `i` holds `only-<i>` and a
/// shared `f` containing `i`, so the topmost (index 0) must win.
fn make_lowers(root: &Path, n: usize) -> Vec<PathBuf> {
    (0..n)
        .map(|i| {
            let dir = root.join(format!("{i:064x}")).join("diff");
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join(format!("only-{i}")), "x").unwrap();
            fs::write(dir.join("f"), i.to_string()).unwrap();
            dir
        })
        .collect()
}

fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("builder-mount-")
        .tempdir_in("/dev/shm")
        .unwrap()
}

fn check_stack(target: &Path, n: usize) {
    assert_eq!(fs::read_to_string(target.join("f")).unwrap(), "0");
    for i in [0, n / 2, n - 1] {
        assert!(
            target.join(format!("only-{i}")).exists(),
            "only-{i} missing"
        );
    }
}

fn read_only_stack(n: usize, api: MountApi) {
    let tmp = scratch();
    let lowers = make_lowers(&tmp.path().join("layers"), n);
    let target = tmp.path().join("mnt");
    fs::create_dir(&target).unwrap();
    let guard = Overlay {
        lowers,
        upper: None,
        work: None,
    }
    .mount_with(&target, MountFlags::READ_ONLY, api)
    .unwrap();
    assert!(mounted(&target));
    check_stack(&target, n);
    let err = fs::write(target.join("new"), "x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    drop(guard);
    assert!(!mounted(&target), "guard did not unmount");
}

fn writable_stack(n: usize, api: MountApi) {
    let tmp = scratch();
    let lowers = make_lowers(&tmp.path().join("layers"), n);
    let (upper, work, target) = (
        tmp.path().join("u"),
        tmp.path().join("w"),
        tmp.path().join("m"),
    );
    for d in [&upper, &work, &target] {
        fs::create_dir(d).unwrap();
    }
    let guard = Overlay {
        lowers: lowers.clone(),
        upper: Some(upper.clone()),
        work: Some(work),
    }
    .mount_with(&target, MountFlags::default(), api)
    .unwrap();
    check_stack(&target, n);
    fs::write(target.join("f"), "changed").unwrap();
    fs::remove_file(target.join(format!("only-{}", n - 1))).unwrap();
    guard.unmount().unwrap();
    assert!(!mounted(&target));
    // The lowers are untouched, the upper has the copy-up and the whiteout.
    assert_eq!(fs::read_to_string(lowers[0].join("f")).unwrap(), "0");
    assert!(lowers[n - 1].join(format!("only-{}", n - 1)).exists());
    assert_eq!(fs::read_to_string(upper.join("f")).unwrap(), "changed");
    let wh = fs::symlink_metadata(upper.join(format!("only-{}", n - 1))).unwrap();
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
}

#[test]
fn one_lower_read_only_is_a_bind_mount() {
    read_only_stack(1, MountApi::Auto);
}

#[test]
fn two_lowers_read_only() {
    read_only_stack(2, MountApi::New);
    read_only_stack(2, MountApi::Legacy);
}

#[test]
fn two_hundred_fifty_lowers_new_api() {
    read_only_stack(250, MountApi::New);
    writable_stack(250, MountApi::New);
}

#[test]
fn two_hundred_fifty_lowers_legacy_short_paths() {
    // Absolute store paths for 250 layers need ~24 KiB, six pages.
    read_only_stack(250, MountApi::Legacy);
    writable_stack(250, MountApi::Legacy);
}

#[test]
fn writable_overlay_with_two_lowers() {
    writable_stack(2, MountApi::Auto);
}

#[test]
fn one_lower_with_upper_is_an_overlay() {
    writable_stack(1, MountApi::Auto);
}

#[test]
fn persistent_mount_outlives_guard_until_unmounted() {
    let tmp = scratch();
    let lowers = make_lowers(tmp.path(), 3);
    let target = tmp.path().join("mnt");
    fs::create_dir(&target).unwrap();
    let guard = Overlay {
        lowers,
        ..Default::default()
    }
    .mount(&target, MountFlags::READ_ONLY)
    .unwrap();
    let path = guard.into_persistent();
    assert!(mounted(&path));
    mount::unmount(&path).unwrap();
    assert!(!mounted(&path));
}

#[test]
fn busy_mount_is_detached_by_the_guard() {
    let tmp = scratch();
    let lowers = make_lowers(tmp.path(), 2);
    let target = tmp.path().join("mnt");
    fs::create_dir(&target).unwrap();
    let guard = Overlay {
        lowers,
        ..Default::default()
    }
    .mount(&target, MountFlags::READ_ONLY)
    .unwrap();
    let open = fs::File::open(target.join("f")).unwrap();
    drop(guard);
    assert!(!mounted(&target), "busy mount left in the table");
    drop(open);
}

#[test]
fn missing_lower_names_the_path() {
    let tmp = scratch();
    let target = tmp.path().join("mnt");
    fs::create_dir(&target).unwrap();
    let err = Overlay {
        lowers: vec![tmp.path().join("nope"), tmp.path().to_owned()],
        ..Default::default()
    }
    .mount(&target, MountFlags::READ_ONLY)
    .unwrap_err();
    let chain = format!("{err}: {}", std::error::Error::source(&err).unwrap());
    assert!(chain.contains("nope"), "{chain}");
    assert!(!mounted(&target));
}
