//! `layer::diff` on a real overlay upper: the kernel does the copy-ups,
//! whiteouts and opaque dirs while plain file calls change the merged view;
//! the diff must list exactly what changed, and the layer applied over the
//! same lowers must give back the merged view.

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use builder::layer::inventory::{Inventory, Kind};
use builder::layer::{self, DiffOptions, UnpackOptions};
use builder::mount::{MountFlags, Overlay};
use builder::oci::{Compression, Digest};

fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("builder-diff-")
        .tempdir_in("/dev/shm")
        .unwrap()
}

fn mounted(target: &Path) -> bool {
    let target = target.to_str().unwrap();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(target))
}

fn write(path: &Path, data: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, data).unwrap();
}

fn mkdir(path: &Path, mode: u32) {
    fs::create_dir_all(path).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Two lowers (index 0 is topmost), as an image's layers.
fn make_lowers(root: &Path) -> Vec<PathBuf> {
    let (l0, l1) = (root.join("l0"), root.join("l1"));
    for l in [&l0, &l1] {
        mkdir(l, 0o755);
    }
    write(&l1.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n");
    write(&l1.join("etc/gone"), "to be deleted\n");
    write(&l1.join("usr/share/doc/pkg/README"), "version 1\n");
    write(&l1.join("usr/share/doc/pkg/LICENSE"), "MIT\n");
    write(&l1.join("olddir/a"), "a\n");
    write(&l1.join("olddir/sub/c"), "c\n");
    write(&l1.join("bin/tool"), "#!/bin/sh\necho tool\n");
    mkdir(&l1.join("tmp"), 0o1777);
    mkdir(&l1.join("usr/share/doc"), 0o750);
    write(&l0.join("etc/hostname"), "box\n");
    vec![l0, l1]
}

/// An inventory with mtimes cut to whole seconds (what a layer keeps, as
/// Docker's) and the root's entry dropped (a layer does not carry `/`).
fn normalized(mut inv: Inventory) -> Inventory {
    inv.entries.retain(|e| !e.path.as_bytes().is_empty());
    for e in &mut inv.entries {
        if let Some(m) = &mut e.mtime {
            m.1 = 0;
        }
    }
    inv
}

#[test]
fn diff_of_a_real_overlay_upper_applies_back_to_the_merged_view() {
    let tmp = scratch();
    let lowers = make_lowers(tmp.path());
    let (upper, work, merged) = (
        tmp.path().join("upper"),
        tmp.path().join("work"),
        tmp.path().join("merged"),
    );
    for d in [&upper, &work, &merged] {
        mkdir(d, 0o755);
    }
    let guard = Overlay {
        lowers: lowers.clone(),
        upper: Some(upper.clone()),
        work: Some(work),
    }
    .mount(&merged, MountFlags::default())
    .unwrap();

    // What a RUN step does, through the merged view.
    fs::remove_file(merged.join("etc/gone")).unwrap();
    fs::remove_dir_all(merged.join("olddir")).unwrap();
    fs::create_dir(merged.join("olddir")).unwrap();
    write(&merged.join("olddir/new"), "replaced\n");
    fs::OpenOptions::new()
        .append(true)
        .open(merged.join("usr/share/doc/pkg/README"))
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"version 2\n"))
        .unwrap();
    write(&merged.join("tmp/scratch"), "temporary\n");
    fs::remove_file(merged.join("tmp/scratch")).unwrap();
    write(&merged.join("data/x"), "linked\n");
    fs::hard_link(merged.join("data/x"), merged.join("data/y")).unwrap();
    rustix::fs::lsetxattr(
        merged.join("bin/tool"),
        "user.origin",
        b"test",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    fs::set_permissions(merged.join("bin/tool"), fs::Permissions::from_mode(0o4755)).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        merged.join("tmp/fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o640),
        0,
    )
    .unwrap();
    let merged_before = layer::scan(&merged).unwrap();
    guard.unmount().unwrap();
    assert!(!mounted(&merged));

    let layer_file = tmp.path().join("layer.tar.gz");
    let diffed = layer::diff(
        &upper,
        &lowers,
        fs::File::create(&layer_file).unwrap(),
        &DiffOptions {
            threads: 2,
            ..DiffOptions::default()
        },
    )
    .unwrap();
    let blob = fs::read(&layer_file).unwrap();
    assert_eq!(diffed.digest, Digest::of_bytes(&blob));
    assert_eq!(diffed.size, blob.len() as u64);
    let mut tar_bytes = Vec::new();
    layer::decoder(Compression::Gzip, &blob[..])
        .unwrap()
        .read_to_end(&mut tar_bytes)
        .unwrap();
    assert_eq!(diffed.diff_id.0, Digest::of_bytes(&tar_bytes));

    // The exact entry list: (name, type, link target, mode, xattrs).
    let mut listed = Vec::new();
    let mut archive = tar::Archive::new(&tar_bytes[..]);
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let xattrs: Vec<String> = e
            .pax_extensions()
            .unwrap()
            .map(|p| {
                p.map(|r| {
                    let r = r.unwrap();
                    format!("{}={}", r.key().unwrap(), r.value().unwrap())
                })
                .collect()
            })
            .unwrap_or_default();
        let h = e.header();
        listed.push(format!(
            "{} {} {:o}{}{}",
            String::from_utf8_lossy(&e.path_bytes()),
            h.entry_type().as_byte() as char,
            h.mode().unwrap(),
            e.link_name_bytes()
                .map(|l| format!(" -> {}", String::from_utf8_lossy(&l)))
                .unwrap_or_default(),
            if xattrs.is_empty() {
                String::new()
            } else {
                format!(" {}", xattrs.join(","))
            },
        ));
    }
    let expected = [
        "bin/ 5 755",
        "bin/tool 0 4755 SCHILY.xattr.user.origin=test",
        "data/ 5 755",
        "data/x 0 644",
        "data/y 1 644 -> data/x",
        "etc/ 5 755",
        "etc/.wh.gone 0 0",
        "olddir/ 5 755",
        "olddir/.wh..wh..opq 0 0",
        "olddir/new 0 644",
        "tmp/ 5 1777",
        "tmp/fifo 6 640",
        "usr/ 5 755",
        "usr/share/ 5 755",
        "usr/share/doc/ 5 750",
        "usr/share/doc/pkg/ 5 755",
        "usr/share/doc/pkg/README 0 644",
    ];
    assert_eq!(listed, expected);
    assert_eq!(diffed.entries, expected.len() as u64);

    // Apply: unpack as a new top layer, mount it over the same lowers.
    let layer_dir = tmp.path().join("layer");
    mkdir(&layer_dir, 0o755);
    let unpacked =
        layer::unpack(&mut &tar_bytes[..], &layer_dir, &UnpackOptions::default()).unwrap();
    assert_eq!(unpacked.entries, expected.len() as u64);
    let applied = tmp.path().join("applied");
    mkdir(&applied, 0o755);
    let mut stack = vec![layer_dir];
    stack.extend(lowers.iter().cloned());
    let guard = Overlay {
        lowers: stack,
        upper: None,
        work: None,
    }
    .mount(&applied, MountFlags::READ_ONLY)
    .unwrap();
    let applied_inv = layer::scan(&applied);
    guard.unmount().unwrap();
    assert!(!mounted(&applied));
    let (before, after) = (normalized(merged_before), normalized(applied_inv.unwrap()));
    let mismatches = layer::compare(&before, &after);
    assert!(mismatches.is_empty(), "{mismatches:#?}");
    // The comparison saw the interesting entries.
    let kind = |p: &str| {
        before
            .entries
            .iter()
            .find(|e| e.path.as_bytes() == p.as_bytes())
            .map(|e| e.kind)
    };
    assert_eq!(kind("tmp/fifo"), Some(Kind::Fifo));
    assert_eq!(kind("etc/gone"), None);
    assert_eq!(kind("olddir/a"), None);
    assert_eq!(kind("usr/share/doc/pkg/LICENSE"), Some(Kind::File));
}
