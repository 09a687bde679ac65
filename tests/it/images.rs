//! Naming and collecting images: `tag`, `rmi`, `images`, `inspect` by name
//! or ID prefix, and `prune` keeping exactly what is still referenced.

use std::fs;

use crate::support::{TestEnv, serve_fixture};

fn names(env: &TestEnv) -> Vec<String> {
    let images = env.builder(&["images", "--json"]).success().json();
    let mut names: Vec<String> = images
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

fn blob_exists(env: &TestEnv, digest: &str) -> bool {
    env.root
        .join("oci/blobs/sha256")
        .join(digest.strip_prefix("sha256:").unwrap())
        .exists()
}

fn layer_exists(env: &TestEnv, diff_id: &str) -> bool {
    env.root
        .join("layers")
        .join(diff_id.strip_prefix("sha256:").unwrap())
        .exists()
}

#[test]
fn tag_adds_names_and_ids_resolve() {
    let env = TestEnv::new();
    let (reference, fixture) = serve_fixture("busybox");
    env.pull_plain(&reference, &[]);
    let id = fixture.image().config_digest.clone();
    env.builder(&["tag", &reference, "example.com/team/bb:1", "bb:2"])
        .success();
    assert_eq!(
        names(&env),
        vec![
            reference.clone(),
            "docker.io/library/bb:2".to_string(),
            "example.com/team/bb:1".to_string()
        ]
    );
    // A short image ID (as `images` shows it) finds the image.
    let short = &id["sha256:".len().."sha256:".len() + 12];
    let inspect = env.builder(&["inspect", short]).success().json();
    assert_eq!(inspect["id"], id.as_str());
    assert_eq!(inspect["names"].as_array().unwrap().len(), 3);
    // Tagging by ID works too.
    env.builder(&["tag", short, "bb:3"]).success();
    assert!(names(&env).contains(&"docker.io/library/bb:3".to_string()));
    // Unknown names fail with a message that says what to do.
    env.builder(&["inspect", "nope:1"])
        .failure()
        .stderr_has("is not in the store");
}

#[test]
fn rmi_untags_and_prune_collects_only_the_unreferenced() {
    let env = TestEnv::new();
    let (base_ref, base) = serve_fixture("busybox");
    let (derived_ref, derived) = serve_fixture("derived");
    env.pull_plain(&base_ref, &[]);
    env.pull_plain(&derived_ref, &[]);
    let shared_layer = &base.image().diff_ids[0];
    assert_eq!(
        &derived.image().diff_ids[0],
        shared_layer,
        "derived shares busybox's base layer"
    );
    let own_layer = derived.image().diff_ids.last().unwrap();
    let own_blob = &derived.image().layers.last().unwrap().1;

    // rmi of the base: the name goes, the data stays until prune, and
    // prune keeps the layer the derived image still uses.
    env.builder(&["rmi", &base_ref]).success();
    assert_eq!(names(&env), vec![derived_ref.clone()]);
    assert!(blob_exists(&env, &base.image().manifest_digest));
    env.builder(&["prune"]).success();
    assert!(!blob_exists(&env, &base.image().manifest_digest));
    assert!(
        layer_exists(&env, shared_layer),
        "a shared layer was pruned"
    );
    assert!(blob_exists(&env, &base.image().layers[0].1));
    env.assert_check_clean();

    // A mounted image keeps its last name (its mount would be unreachable
    // otherwise) and its layers survive prune.
    let mounted = env.mount(&derived_ref);
    env.builder(&["rmi", &derived.image().config_digest])
        .failure()
        .stderr_has("is mounted");
    assert_eq!(names(&env), vec![derived_ref.clone()]);
    env.builder(&["prune"]).success();
    assert!(layer_exists(&env, own_layer) && layer_exists(&env, shared_layer));
    assert!(
        fs::read_dir(&mounted).unwrap().next().is_some(),
        "the mount still shows the rootfs"
    );

    // Unmounted and untagged, nothing is referenced: prune empties the store.
    env.umount(&derived_ref, &mounted);
    env.builder(&["rmi", &derived.image().config_digest])
        .success();
    assert!(names(&env).is_empty());
    let report = env.builder(&["prune", "--json"]).success().json();
    assert!(report["blobs_removed"].as_u64().unwrap() >= 3, "{report}");
    assert!(!layer_exists(&env, own_layer) && !layer_exists(&env, shared_layer));
    assert!(!blob_exists(&env, own_blob));
    assert_eq!(
        fs::read_dir(env.root.join("oci/blobs/sha256"))
            .unwrap()
            .count(),
        0
    );
    env.assert_check_clean();
}

#[test]
fn prune_refuses_while_another_builder_runs() {
    let env = TestEnv::new();
    let (reference, _) = serve_fixture("large");
    // A pull holds the store lock shared for its whole run.
    let mut pull = env.spawn(&["pull", "--tls-verify=false", "-q", &reference]);
    let mut refused = false;
    for _ in 0..200 {
        let run = env.builder(&["prune"]);
        if !run.status.success() {
            assert!(
                run.stderr.contains("locked by another builder process"),
                "{run}"
            );
            assert!(run.stderr.contains("hint:"), "{run}");
            refused = true;
            break;
        }
        if pull.try_wait().unwrap().is_some() {
            break;
        }
    }
    let status = pull.wait().unwrap();
    assert!(status.success(), "the pull must not be disturbed");
    assert!(refused, "prune never saw the pull's lock");
    env.assert_check_clean();
}
