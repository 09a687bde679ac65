//! `builder check` finds corruption: every other test trusts a clean check,
//! so this table proves it can fail. Each case pulls a fresh copy of the
//! multilayer fixture, damages the store behind builder's back, and expects
//! exit 1 with a report naming the damaged object.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::support::{TestEnv, serve_fixture};

/// The first regular file (by path) below `dir`, whose size is > 0.
fn some_file(dir: &Path) -> PathBuf {
    let mut files: Vec<PathBuf> = walk(dir)
        .into_iter()
        .filter(|p| {
            let m = fs::symlink_metadata(p).unwrap();
            m.is_file() && m.len() > 0
        })
        .collect();
    files.sort();
    files
        .into_iter()
        .next()
        .expect("a layer with a non-empty file")
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if fs::symlink_metadata(&path).unwrap().is_dir() {
            out.extend(walk(&path));
        }
        out.push(path);
    }
    out
}

fn make_writable(path: &Path) {
    let mode = fs::metadata(path).unwrap().permissions().mode();
    fs::set_permissions(path, fs::Permissions::from_mode(mode | 0o200)).unwrap();
}

struct Case {
    name: &'static str,
    /// Damages the store; returns the text the report must contain.
    damage: fn(&Path, &Layout) -> String,
}

/// Paths of the pulled image inside the store.
struct Layout {
    layer_blob: PathBuf,
    layer_hex: String,
    config_blob: PathBuf,
    layer_dir: PathBuf,
}

const CASES: &[Case] = &[
    Case {
        name: "a layer blob's bytes changed",
        damage: |_, l| {
            make_writable(&l.layer_blob);
            let mut bytes = fs::read(&l.layer_blob).unwrap();
            let mid = bytes.len() / 2;
            bytes[mid] ^= 0x01;
            fs::write(&l.layer_blob, bytes).unwrap();
            format!("blob sha256:{}", l.layer_hex)
        },
    },
    Case {
        name: "a referenced blob deleted",
        damage: |_, l| {
            fs::remove_file(&l.config_blob).unwrap();
            "is missing".into()
        },
    },
    Case {
        name: "a file in an unpacked layer rewritten, same size",
        damage: |_, l| {
            let file = some_file(&l.layer_dir);
            let mut bytes = fs::read(&file).unwrap();
            bytes[0] ^= 0x01;
            fs::write(&file, bytes).unwrap();
            file.strip_prefix(&l.layer_dir)
                .unwrap()
                .display()
                .to_string()
        },
    },
    Case {
        name: "a file in an unpacked layer deleted",
        damage: |_, l| {
            let file = some_file(&l.layer_dir);
            fs::remove_file(&file).unwrap();
            file.strip_prefix(&l.layer_dir)
                .unwrap()
                .display()
                .to_string()
        },
    },
    Case {
        name: "a file's mode changed",
        damage: |_, l| {
            let file = some_file(&l.layer_dir);
            let mode = fs::metadata(&file).unwrap().permissions().mode();
            fs::set_permissions(&file, fs::Permissions::from_mode(mode ^ 0o001)).unwrap();
            file.strip_prefix(&l.layer_dir)
                .unwrap()
                .display()
                .to_string()
        },
    },
    Case {
        name: "a file added to an unpacked layer",
        damage: |_, l| {
            fs::write(l.layer_dir.join("planted"), b"x").unwrap();
            "planted".into()
        },
    },
    Case {
        name: "a layer left marked incomplete",
        damage: |_, l| {
            fs::write(l.layer_dir.parent().unwrap().join("incomplete"), b"").unwrap();
            "incomplete".into()
        },
    },
    Case {
        name: "a stray file among the blobs",
        damage: |root, _| {
            fs::write(root.join("oci/blobs/sha256/not-a-digest"), b"x").unwrap();
            "not-a-digest".into()
        },
    },
];

#[test]
fn check_reports_each_kind_of_corruption() {
    let (reference, fixture) = serve_fixture("multilayer");
    let image = fixture.image();
    let (_, layer_digest, _) = &image.layers[0];
    let layer_hex = layer_digest.strip_prefix("sha256:").unwrap().to_string();
    let diff_hex = image.diff_ids[0].strip_prefix("sha256:").unwrap();
    let config_hex = image.config_digest.strip_prefix("sha256:").unwrap();
    for case in CASES {
        let env = TestEnv::new();
        env.pull_plain(&reference, &[]);
        env.assert_check_clean();
        let layout = Layout {
            layer_blob: env.root.join("oci/blobs/sha256").join(&layer_hex),
            layer_hex: layer_hex.clone(),
            config_blob: env.root.join("oci/blobs/sha256").join(config_hex),
            layer_dir: env.root.join("layers").join(diff_hex).join("diff"),
        };
        let needle = (case.damage)(&env.root, &layout);
        let run = env.builder(&["check"]);
        assert_eq!(
            run.status.code(),
            Some(1),
            "{}: check must exit 1:\n{run}",
            case.name
        );
        assert!(
            run.stdout.contains(&needle),
            "{}: the report does not name `{needle}`:\n{run}",
            case.name
        );
        let json = env.builder(&["check", "--json"]);
        assert!(
            !json.json()["problems"].as_array().unwrap().is_empty(),
            "{}: --json lists no problem:\n{json}",
            case.name
        );
    }
}
