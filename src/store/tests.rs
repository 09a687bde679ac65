//! Unit tests of the store's own contracts, on temp directories.

use std::fs;

use super::*;
use crate::oci::{Descriptor, ImageConfig, media_type};

fn open(dir: &tempfile::TempDir) -> Store {
    Store::open(dir.path(), LockMode::Shared).unwrap()
}

/// Stores an image whose config lists `diff_ids`, with one layer blob each.
fn store_image(store: &Store, name: &str, layers: &[(&[u8], &DiffId)]) -> Descriptor {
    store_image_for(store, name, "", layers)
}

/// [`store_image`] with a config declaring `platform` (`os/arch[/variant]`).
fn store_image_for(
    store: &Store,
    name: &str,
    platform: &str,
    layers: &[(&[u8], &DiffId)],
) -> Descriptor {
    let mut layer_descs = Vec::new();
    for (bytes, _) in layers {
        let d = store.put_blob(bytes).unwrap();
        layer_descs.push(Descriptor::new(
            media_type::OCI_LAYER_TAR,
            d,
            bytes.len() as u64,
        ));
    }
    let mut config = ImageConfig::default();
    let mut parts = platform.split('/');
    config.os = parts.next().unwrap_or("").into();
    config.architecture = parts.next().unwrap_or("").into();
    config.variant = parts.next().map(Into::into);
    config.rootfs.kind = "layers".into();
    config.rootfs.diff_ids = layers.iter().map(|(_, id)| (*id).clone()).collect();
    let config_bytes = serde_json::to_vec(&config).unwrap();
    let config_digest = store.put_blob(&config_bytes).unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "config": Descriptor::new(media_type::OCI_CONFIG, config_digest, config_bytes.len() as u64),
        "layers": layer_descs,
    });
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let digest = store.put_blob(&bytes).unwrap();
    let desc = Descriptor::new(media_type::OCI_MANIFEST, digest, bytes.len() as u64);
    store.set_image(name, &desc).unwrap();
    desc
}

fn commit_test_layer(store: &Store, diff_id: &DiffId, file: &str) {
    let txn = store.begin().unwrap();
    fs::write(txn.layer_dir().join(file), b"content").unwrap();
    assert_eq!(
        store.commit_layer(&txn, diff_id, b"{}").unwrap(),
        layers::LayerCommit::Committed
    );
}

#[test]
fn open_creates_an_oci_layout() {
    let dir = tempfile::tempdir().unwrap();
    let _store = open(&dir);
    let layout: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.path().join("oci/oci-layout")).unwrap()).unwrap();
    assert_eq!(layout["imageLayoutVersion"], "1.0.0");
    let index: crate::oci::Index =
        serde_json::from_slice(&fs::read(dir.path().join("oci/index.json")).unwrap()).unwrap();
    assert!(index.manifests.is_empty());
    assert_eq!(
        fs::read_to_string(dir.path().join("version"))
            .unwrap()
            .trim(),
        "1"
    );
    assert!(dir.path().join("oci/blobs/sha256").is_dir());
}

#[test]
fn refuses_an_unknown_layout_version() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(&dir));
    fs::write(dir.path().join("version"), "99\n").unwrap();
    let err = Store::open(dir.path(), LockMode::Shared).err().unwrap();
    assert!(
        matches!(err, StoreError::UnsupportedVersion { .. }),
        "{err}"
    );
}

#[test]
fn blobs_are_content_addressed_read_only_and_verified() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let digest = store.put_blob(b"hello").unwrap();
    assert_eq!(digest, crate::oci::Digest::of_bytes(b"hello"));
    assert_eq!(store.read_blob(&digest).unwrap(), b"hello");
    assert_eq!(store.verify_blob(&digest).unwrap(), 5);
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(store.blob_path(&digest))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o444);
    // Corrupt it behind the store's back: verification names both digests.
    fs::set_permissions(store.blob_path(&digest), fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(store.blob_path(&digest), b"hellO").unwrap();
    match store.verify_blob(&digest) {
        Err(StoreError::BlobMismatch {
            expected, actual, ..
        }) => {
            assert_eq!(expected, digest);
            assert_eq!(actual, crate::oci::Digest::of_bytes(b"hellO"));
        }
        other => panic!("expected a mismatch, got {other:?}"),
    }
}

#[test]
fn dropped_transactions_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let txn = store.begin().unwrap();
    fs::write(txn.blob_path(), b"partial").unwrap();
    fs::write(txn.layer_dir().join("f"), b"partial").unwrap();
    drop(txn);
    assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
}

#[test]
fn layers_commit_once_and_a_second_commit_is_discarded() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let id = DiffId(crate::oci::Digest::of_bytes(b"layer"));
    assert!(!store.has_layer(&id));
    commit_test_layer(&store, &id, "a");
    assert!(store.has_layer(&id));
    assert!(store.layer_diff_path(&id).join("a").is_file());
    assert!(!store.layer_path(&id).join("incomplete").exists());
    // A concurrent puller that unpacked the same layer.
    let txn = store.begin().unwrap();
    fs::write(txn.layer_dir().join("b"), b"x").unwrap();
    assert_eq!(
        store.commit_layer(&txn, &id, b"{}").unwrap(),
        layers::LayerCommit::AlreadyPresent
    );
    assert!(!store.layer_diff_path(&id).join("b").exists());
}

#[test]
fn a_layer_with_the_incomplete_marker_is_absent_and_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let id = DiffId(crate::oci::Digest::of_bytes(b"layer"));
    commit_test_layer(&store, &id, "old");
    fs::write(store.layer_path(&id).join("incomplete"), b"").unwrap();
    assert!(!store.has_layer(&id));
    commit_test_layer(&store, &id, "new");
    assert!(store.layer_diff_path(&id).join("new").exists());
    assert!(!store.layer_diff_path(&id).join("old").exists());
}

#[test]
fn names_are_replaced_removed_and_found_by_id_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let id = DiffId(crate::oci::Digest::of_bytes(b"l1"));
    let a = store_image(&store, "example.com/a:1", &[(b"l1", &id)]);
    let b = store_image(&store, "example.com/b:1", &[]);
    store.set_image("example.com/a:1", &b).unwrap();
    let images = store.list_images().unwrap();
    assert_eq!(images.len(), 2, "{images:?}");
    assert_eq!(
        store
            .image("example.com/a:1")
            .unwrap()
            .unwrap()
            .manifest
            .digest,
        b.digest
    );
    assert!(store.remove_image("example.com/a:1").unwrap());
    assert!(!store.remove_image("example.com/a:1").unwrap());
    store.set_image("example.com/a:2", &a).unwrap();
    let found = store.images_by_id_prefix(&a.digest.hex()[..10]).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].name, "example.com/a:2");
}

#[test]
fn prune_keeps_what_names_and_mounts_reference() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let kept = DiffId(crate::oci::Digest::of_bytes(b"kept"));
    let dropped = DiffId(crate::oci::Digest::of_bytes(b"dropped"));
    let mounted = DiffId(crate::oci::Digest::of_bytes(b"mounted"));
    for id in [&kept, &dropped, &mounted] {
        commit_test_layer(&store, id, "f");
    }
    let live = store_image(&store, "x/live:1", &[(b"kept-blob", &kept)]);
    let dead = store_image(&store, "x/dead:1", &[(b"dropped-blob", &dropped)]);
    store.remove_image("x/dead:1").unwrap();
    store
        .add_mount_record(&MountRecord {
            name: "x/gone:1".into(),
            manifest: crate::oci::Digest::of_bytes(b"m"),
            layers: vec![mounted.clone()],
        })
        .unwrap();
    let leftover = store.begin().unwrap();
    std::mem::forget(leftover); // as if its process had been killed

    drop(store);
    let store = Store::open(dir.path(), LockMode::ExclusiveNoWait).unwrap();
    let report = store.prune(false).unwrap();
    assert!(store.has_blob(&live.digest));
    assert!(!store.has_blob(&dead.digest));
    assert!(store.has_layer(&kept) && store.has_layer(&mounted));
    assert!(!store.layer_path(&dropped).exists());
    assert_eq!(report.layers_removed, 1);
    assert_eq!(
        report.blobs_removed, 3,
        "dead manifest, its config and its layer blob"
    );
    assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
}

#[test]
fn prune_fails_fast_while_another_process_uses_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let _shared = open(&dir);
    // flock locks belong to open file descriptions, so a second open in the
    // same process behaves like another process.
    let err = Store::open(dir.path(), LockMode::ExclusiveNoWait)
        .err()
        .unwrap();
    assert!(matches!(err, StoreError::Busy { .. }), "{err}");
}

#[test]
fn open_removes_only_dead_and_old_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let tmp = dir.path().join("tmp");
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
    // A live transaction, even an old one, holds its lock.
    let live = store.begin().unwrap();
    fs::File::open(live.dir())
        .unwrap()
        .set_modified(old)
        .unwrap();
    // What a killed process leaves: a directory whose lock nobody holds.
    let dead_old = tmp.join("txn-dead-old");
    let dead_young = tmp.join("txn-dead-young");
    for d in [&dead_old, &dead_young] {
        fs::create_dir_all(d.join("layer/diff")).unwrap();
        fs::write(d.join("lock"), b"").unwrap();
    }
    fs::File::open(&dead_old)
        .unwrap()
        .set_modified(old)
        .unwrap();
    drop(store);
    let _store = open(&dir);
    assert!(live.dir().exists(), "a locked transaction is never removed");
    assert!(
        !dead_old.exists(),
        "an unlocked old transaction is a leftover"
    );
    assert!(
        dead_young.exists(),
        "a young one may be between mkdir and flock"
    );
}

/// Runs `f` on `n` threads released together, each with its own `Store`
/// (flock locks and transactions behave per open file, like processes).
fn race<T: Send>(n: usize, f: impl Fn() -> T + Sync) -> Vec<T> {
    let barrier = std::sync::Barrier::new(n);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    f()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn concurrent_commits_of_one_layer_all_succeed_and_publish_it_once() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..100u32 {
        let id = DiffId(crate::oci::Digest::of_bytes(&round.to_le_bytes()));
        if round % 2 == 1 {
            // Every other round starts from a leftover of an interrupted prune.
            let leftover = dir.path().join("layers").join(id.hex());
            fs::create_dir_all(leftover.join("diff")).unwrap();
            fs::write(leftover.join("incomplete"), b"").unwrap();
        }
        let results = race(3, || {
            let store = Store::open(dir.path(), LockMode::Shared).unwrap();
            let txn = store.begin().unwrap();
            for i in 0..10 {
                fs::write(txn.layer_dir().join(format!("f{i}")), b"x").unwrap();
            }
            store
                .commit_layer(&txn, &id, b"{}")
                .map_err(|e| e.to_string())
        });
        let committed = results
            .iter()
            .filter(|r| matches!(r, Ok(layers::LayerCommit::Committed)))
            .count();
        assert!(
            results.iter().all(Result::is_ok),
            "round {round}: {results:?}"
        );
        assert_eq!(committed, 1, "round {round}: {results:?}");
        let store = open(&dir);
        assert!(store.has_layer(&id), "round {round}");
        assert_eq!(
            fs::read_dir(store.layer_diff_path(&id)).unwrap().count(),
            10
        );
    }
}

#[test]
fn concurrent_opens_remove_each_leftover_once_without_failing() {
    for _ in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        drop(open(&dir));
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
        for i in 0..20 {
            let d = dir.path().join(format!("tmp/txn-dead-{i}"));
            for j in 0..5 {
                fs::create_dir_all(d.join(format!("layer/diff/d{j}"))).unwrap();
                fs::write(d.join(format!("layer/diff/d{j}/f")), b"x").unwrap();
            }
            fs::write(d.join("lock"), b"").unwrap();
            fs::File::open(&d).unwrap().set_modified(old).unwrap();
        }
        let results = race(3, || {
            Store::open(dir.path(), LockMode::Shared)
                .map(drop)
                .map_err(|e| e.to_string())
        });
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }
}

#[test]
fn layer_and_temp_directories_are_private_to_root() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("layers")).unwrap();
    fs::set_permissions(dir.path().join("layers"), fs::Permissions::from_mode(0o755)).unwrap();
    let _store = open(&dir);
    for private in ["layers", "tmp", "mounts"] {
        let mode = fs::metadata(dir.path().join(private))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700, "{private}");
    }
    let mode = fs::metadata(dir.path().join("oci"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0o055, "oci/ stays readable for other tools");
}

#[test]
fn prune_removes_interrupted_atomic_writes_everywhere_they_happen() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(&dir));
    fs::create_dir_all(dir.path().join("mounts/abc")).unwrap();
    let leftovers = [".tmp-a", "oci/.tmp-b", "mounts/abc/.tmp-c"].map(|p| dir.path().join(p));
    for p in &leftovers {
        fs::write(p, b"half").unwrap();
    }
    let store = Store::open(dir.path(), LockMode::ExclusiveNoWait).unwrap();
    let report = store.prune(false).unwrap();
    assert_eq!(report.temp_entries_removed, 3);
    for p in &leftovers {
        assert!(!p.exists(), "{}", p.display());
    }
}

// ------------------------------------------------------------ manifest lists

impl Store {
    /// `builder tag`: the same descriptor under another name.
    fn tag_for_test(&self, new: &str, old: &str) {
        let record = self.image(old).unwrap().unwrap();
        self.set_image(new, &record.manifest).unwrap();
    }
}

fn list_children(store: &Store, name: &str) -> Vec<Descriptor> {
    let record = store.image(name).unwrap().unwrap();
    assert!(record.is_list());
    store.index(&record.manifest.digest).unwrap().1.manifests
}

fn add(store: &Store, list: &str, image: &str, platform: Option<&str>) -> ListAdded {
    let record = store.image(image).unwrap().unwrap();
    let platform = match platform {
        Some(p) => crate::oci::Platform::parse(p).unwrap(),
        None => store.image_platform(&record).unwrap(),
    };
    let entry = store.list_entry_for(&record, platform).unwrap();
    store.add_to_list(list, entry).unwrap()
}

#[test]
fn a_list_is_an_index_named_in_the_layout_and_replaces_by_platform() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let created = store.create_list("x/app:1").unwrap();
    assert_eq!(created.media_type, media_type::OCI_INDEX);
    let (bytes, index) = store.index(&created.digest).unwrap();
    assert!(index.manifests.is_empty());
    assert_eq!(created.size, bytes.len() as u64);
    // The name cannot be taken twice, by a list or over an image.
    assert!(matches!(
        store.create_list("x/app:1"),
        Err(StoreError::NameInUse { list: true, .. })
    ));
    let amd = store_image_for(&store, "x/amd:1", "linux/amd64", &[]);
    let arm = store_image_for(&store, "x/arm:1", "linux/arm64/v8", &[]);
    assert!(matches!(
        store.create_list("x/amd:1"),
        Err(StoreError::NameInUse { list: false, .. })
    ));

    let first = add(&store, "x/app:1", "x/amd:1", None);
    assert!(first.replaced.is_none());
    add(&store, "x/app:1", "x/arm:1", None);
    let children = list_children(&store, "x/app:1");
    let summary: Vec<(String, crate::oci::Digest)> = children
        .iter()
        .map(|d| (d.platform.as_ref().unwrap().to_string(), d.digest.clone()))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("linux/amd64".to_string(), amd.digest.clone()),
            ("linux/arm64/v8".to_string(), arm.digest.clone())
        ]
    );
    assert!(
        children
            .iter()
            .all(|d| d.media_type == media_type::OCI_MANIFEST && d.annotations.is_none())
    );
    // linux/arm64 is the same platform as linux/arm64/v8: replaced in place.
    let again = add(&store, "x/app:1", "x/amd:1", Some("linux/arm64"));
    assert_eq!(again.replaced.unwrap().digest, arm.digest);
    let children = list_children(&store, "x/app:1");
    assert_eq!(children.len(), 2);
    assert_eq!(children[1].digest, amd.digest);
    // The layout names the newest index blob; the entry stays an index.
    let record = store.image("x/app:1").unwrap().unwrap();
    assert_eq!(record.manifest.digest, again.list.digest);
    assert_eq!(record.manifest.media_type, media_type::OCI_INDEX);

    // Adding to an image, or a list to a list, is refused.
    let entry = store
        .list_entry_for(
            &store.image("x/arm:1").unwrap().unwrap(),
            crate::oci::Platform::host(),
        )
        .unwrap();
    assert!(matches!(
        store.add_to_list("x/amd:1", entry.clone()),
        Err(StoreError::NotAList { .. })
    ));
    assert!(matches!(
        store.add_to_list("x/none:1", entry),
        Err(StoreError::NameNotFound(_))
    ));
    assert!(matches!(
        store.list_entry_for(&record, crate::oci::Platform::host()),
        Err(StoreError::ListInList { .. })
    ));
}

#[test]
fn an_image_config_without_a_platform_needs_one_given() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store_image(&store, "x/bare:1", &[]);
    let record = store.image("x/bare:1").unwrap().unwrap();
    assert!(matches!(
        store.image_platform(&record),
        Err(StoreError::NoPlatform { .. })
    ));
}

#[test]
fn a_list_resolves_to_its_image_for_a_platform() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let amd = store_image_for(&store, "x/amd:1", "linux/amd64", &[]);
    let arm = store_image_for(&store, "x/arm:1", "linux/arm64/v8", &[]);
    store.create_list("x/app:1").unwrap();
    add(&store, "x/app:1", "x/amd:1", None);
    add(&store, "x/app:1", "x/arm:1", None);
    let list = store.image("x/app:1").unwrap().unwrap();
    let platform = |p| crate::oci::Platform::parse(p).unwrap();
    let got = store
        .image_for_platform(&list, &platform("linux/arm64"))
        .unwrap();
    assert_eq!(
        (got.name.as_str(), &got.manifest.digest),
        ("x/app:1", &arm.digest)
    );
    assert!(!got.is_list());
    let got = store
        .image_for_platform(&list, &platform("linux/amd64"))
        .unwrap();
    assert_eq!(got.manifest.digest, amd.digest);
    let err = store
        .image_for_platform(&list, &platform("linux/s390x"))
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("linux/s390x") && msg.contains("linux/amd64, linux/arm64/v8"),
        "{msg}"
    );
    // An image is itself, whatever the platform.
    let image = store.image("x/amd:1").unwrap().unwrap();
    let same = store
        .image_for_platform(&image, &platform("linux/s390x"))
        .unwrap();
    assert_eq!(same.manifest.digest, amd.digest);
}

#[test]
fn prune_keeps_the_images_of_a_list_that_alone_names_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let (a, b, gone) = (
        DiffId(crate::oci::Digest::of_bytes(b"a")),
        DiffId(crate::oci::Digest::of_bytes(b"b")),
        DiffId(crate::oci::Digest::of_bytes(b"gone")),
    );
    for id in [&a, &b, &gone] {
        commit_test_layer(&store, id, "f");
    }
    let amd = store_image_for(&store, "x/amd:1", "linux/amd64", &[(b"blob-a", &a)]);
    let arm = store_image_for(&store, "x/arm:1", "linux/arm64", &[(b"blob-b", &b)]);
    let replaced = store_image_for(&store, "x/old:1", "linux/arm64", &[(b"blob-gone", &gone)]);
    store.create_list("x/app:1").unwrap();
    let empty_index = store.image("x/app:1").unwrap().unwrap().manifest.digest;
    add(&store, "x/app:1", "x/amd:1", None);
    add(&store, "x/app:1", "x/old:1", None);
    add(&store, "x/app:1", "x/arm:1", None); // replaces x/old for linux/arm64
    let list = store.image("x/app:1").unwrap().unwrap().manifest.digest;
    for name in ["x/amd:1", "x/arm:1", "x/old:1"] {
        assert!(store.remove_image(name).unwrap());
    }
    drop(store);
    let store = Store::open(dir.path(), LockMode::ExclusiveNoWait).unwrap();
    store.prune(false).unwrap();
    for kept in [&list, &amd.digest, &arm.digest] {
        assert!(store.has_blob(kept), "{kept} is kept");
    }
    for (_, m) in [
        store.manifest(&amd.digest).unwrap(),
        store.manifest(&arm.digest).unwrap(),
    ] {
        assert!(store.has_blob(&m.config.digest));
        assert!(m.layers.iter().all(|l| store.has_blob(&l.digest)));
    }
    assert!(store.has_layer(&a) && store.has_layer(&b));
    assert!(!store.has_blob(&replaced.digest) && !store.layer_path(&gone).exists());
    assert!(
        !store.has_blob(&empty_index),
        "older index blobs are garbage"
    );
    // Without the list's name, everything goes.
    drop(store);
    let store = open(&dir);
    assert!(store.remove_image("x/app:1").unwrap());
    drop(store);
    let store = Store::open(dir.path(), LockMode::ExclusiveNoWait).unwrap();
    store.prune(false).unwrap();
    assert_eq!(store.list_blobs().unwrap().0, Vec::new());
    assert!(!store.layer_path(&a).exists());
}

#[test]
fn removing_a_list_refuses_while_its_image_is_mounted_through_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let amd = store_image_for(&store, "x/amd:1", "linux/amd64", &[]);
    store.create_list("x/app:1").unwrap();
    add(&store, "x/app:1", "x/amd:1", None);
    store
        .add_mount_record(&MountRecord {
            name: "x/app:1".into(),
            manifest: amd.digest.clone(),
            layers: Vec::new(),
        })
        .unwrap();
    // The image's own name still reaches the mount: the list may go...
    store.tag_for_test("x/app:2", "x/app:1");
    assert!(store.remove_image("x/app:2").unwrap());
    // ...but not once the list is the only way to it.
    assert!(store.remove_image("x/amd:1").unwrap());
    let err = store.remove_image("x/app:1").unwrap_err();
    assert!(matches!(err, StoreError::Mounted { .. }), "{err}");
    assert!(store.image("x/app:1").unwrap().is_some());
}
