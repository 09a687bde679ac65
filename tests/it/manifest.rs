//! `builder manifest`: manifest lists of the multiarch fixture's two
//! platforms, pulled one by one with `--platform` and named locally. What a
//! list holds (`manifest inspect`, the layout's `index.json`), how the other
//! commands treat it (`images`, `inspect`, `mount` by platform, a build's
//! `FROM`), that it alone keeps its images through `prune`, the errors that
//! guard it, and `manifest push` to a real docker-registry, read back by
//! `skopeo inspect --raw` and by `builder pull --platform` (acceptance
//! item 6 of the CI issue).

use std::fs;
use std::process::Command;

use serde_json::Value;

use crate::support::{Registry, TestEnv, fixtures, process, serve_fixture};

const LIST: &str = "example.com/app:multi";
const AMD: &str = "example.com/app:amd64";
const ARM: &str = "example.com/app:arm64";

/// Pulls each platform of the multiarch fixture and names it `AMD` / `ARM`;
/// the pulled reference itself is untagged again.
fn pull_both_platforms(env: &TestEnv) -> &'static fixtures::Fixture {
    let (reference, fixture) = serve_fixture("multiarch");
    for (platform, name) in [("linux/amd64", AMD), ("linux/arm64", ARM)] {
        env.pull_plain(&reference, &["--platform", platform]);
        env.builder(&["tag", &reference, name]).success();
    }
    env.builder(&["rmi", &reference]).success();
    fixture
}

fn create_list_of_both(env: &TestEnv) {
    let created = env.builder(&["manifest", "create", LIST]).success();
    assert!(created.out().starts_with("sha256:"), "{created}");
    for image in [AMD, ARM] {
        env.builder(&["manifest", "add", LIST, image]).success();
    }
}

fn blob_exists(env: &TestEnv, digest: &str) -> bool {
    env.root
        .join("oci/blobs/sha256")
        .join(digest.strip_prefix("sha256:").unwrap())
        .is_file()
}

fn layer_exists(env: &TestEnv, diff_id: &str) -> bool {
    env.root
        .join("layers")
        .join(diff_id.strip_prefix("sha256:").unwrap())
        .join("diff")
        .is_dir()
}

/// `(platform, digest, media type)` of each entry of an index.
fn entries(index: &Value) -> Vec<(String, String, String)> {
    index["manifests"]
        .as_array()
        .expect("an index has manifests")
        .iter()
        .map(|m| {
            let p = &m["platform"];
            let mut platform = format!(
                "{}/{}",
                p["os"].as_str().unwrap(),
                p["architecture"].as_str().unwrap()
            );
            if let Some(v) = p["variant"].as_str() {
                platform = format!("{platform}/{v}");
            }
            (
                platform,
                m["digest"].as_str().unwrap().to_string(),
                m["mediaType"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_list_of_two_platforms_is_an_index_in_the_layout() {
    let env = TestEnv::new();
    let fixture = pull_both_platforms(&env);
    create_list_of_both(&env);
    let amd = fixture.platform("linux/amd64");
    let arm = fixture.platform("linux/arm64/v8");
    const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

    // Each platform comes from the image's config (the fixture's arm64
    // config names no variant).
    let index = env.builder(&["manifest", "inspect", LIST]).success().json();
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(index["mediaType"], OCI_INDEX);
    assert_eq!(
        entries(&index),
        vec![
            (
                "linux/amd64".into(),
                amd.manifest_digest.clone(),
                OCI_MANIFEST.into()
            ),
            (
                "linux/arm64".into(),
                arm.manifest_digest.clone(),
                OCI_MANIFEST.into()
            ),
        ]
    );

    // The layout names the list with an index descriptor whose blob is
    // exactly what `manifest inspect` printed.
    let layout: Value =
        serde_json::from_slice(&fs::read(env.root.join("oci/index.json")).unwrap()).unwrap();
    let entry = layout["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == LIST)
        .expect("index.json names the list");
    assert_eq!(entry["mediaType"], OCI_INDEX);
    let digest = entry["digest"].as_str().unwrap();
    let blob = fs::read(
        env.root
            .join("oci/blobs/sha256")
            .join(digest.strip_prefix("sha256:").unwrap()),
    )
    .unwrap();
    assert_eq!(entry["size"], blob.len());
    assert_eq!(serde_json::from_slice::<Value>(&blob).unwrap(), index);
    // skopeo reads the store's list as an OCI layout index.
    let raw = crate::support::process::run_ok({
        let mut cmd = std::process::Command::new("skopeo");
        cmd.args(["inspect", "--raw"])
            .arg(format!("oci:{}:{LIST}", env.root.join("oci").display()));
        cmd
    });
    assert_eq!(serde_json::from_str::<Value>(&raw).unwrap(), index);

    // `images` shows the list with its platforms; `inspect` shows its index.
    let images = env.builder(&["images", "--json"]).success().json();
    let row = images
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == LIST)
        .expect("images lists the list");
    assert_eq!(row["kind"], "manifest list");
    assert_eq!(row["digest"], digest);
    assert_eq!(
        row["platforms"],
        serde_json::json!(["linux/amd64", "linux/arm64"])
    );
    let table = env.builder(&["images"]).success();
    assert!(
        table
            .stdout
            .lines()
            .any(|l| l.starts_with(LIST) && l.ends_with("manifest list: linux/amd64,linux/arm64")),
        "{table}"
    );
    let inspect = env.builder(&["inspect", LIST]).success().json();
    assert_eq!(inspect["kind"], "manifest list");
    assert_eq!(inspect["digest"], digest);
    assert_eq!(inspect["index"], index);

    // Adding an image again for a platform the list has replaces that entry.
    env.builder(&["manifest", "add", "--platform", "linux/arm64/v8", LIST, AMD])
        .success()
        .stderr_has("Replaced");
    let index = env.builder(&["manifest", "inspect", LIST]).success().json();
    assert_eq!(
        entries(&index)
            .into_iter()
            .map(|(p, d, _)| (p, d))
            .collect::<Vec<_>>(),
        vec![
            ("linux/amd64".into(), amd.manifest_digest.clone()),
            ("linux/arm64/v8".into(), amd.manifest_digest.clone()),
        ]
    );
    env.assert_check_clean();
}

/// A list mounts (and so runs) as its image for the asked platform, this
/// machine's by default; a platform it lacks is an error naming the ones it
/// has.
#[test]
fn a_list_mounts_its_image_for_a_platform() {
    let env = TestEnv::new();
    pull_both_platforms(&env);
    create_list_of_both(&env);
    let host_arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => panic!("the multiarch fixture has no image for this host ({other})"),
    };
    let root = env.mount(LIST);
    assert_eq!(
        fs::read_to_string(root.join("etc/arch")).unwrap().trim(),
        host_arch
    );
    env.umount(LIST, &root);

    let run = env
        .builder(&["mount", "--platform", "linux/arm64", LIST])
        .success();
    let root = std::path::PathBuf::from(run.out());
    assert_eq!(
        fs::read_to_string(root.join("etc/arch")).unwrap().trim(),
        "arm64"
    );
    // Only the list reaches this mount once the image's own name is gone,
    // so the list cannot be removed until it is unmounted.
    env.builder(&["rmi", ARM]).success();
    env.builder(&["manifest", "rm", LIST])
        .failure()
        .stderr_has("is mounted");
    env.builder(&["umount", "--platform", "linux/arm64", LIST])
        .success();
    assert!(crate::support::mount_info(&root).is_none());
    env.builder(&["manifest", "rm", LIST]).success();

    env.builder(&["manifest", "create", LIST]).success();
    env.builder(&["manifest", "add", LIST, AMD]).success();
    env.builder(&["mount", "--platform", "linux/s390x", LIST])
        .failure()
        .stderr_has("has no image for linux/s390x")
        .stderr_has("(it has: linux/amd64)");
    // `run` resolves a list the same way, before any container exists.
    env.builder(&["run", "--rm", "--platform", "linux/s390x", LIST, "true"])
        .failure()
        .stderr_has("has no image for linux/s390x");
    assert!(env.mounts().is_empty(), "{:?}", env.mounts());
}

/// With the images' own names gone, the list alone keeps both images'
/// manifests, configs, layer blobs and unpacked layers through `prune`;
/// once the list goes too, they are collected.
#[test]
fn prune_keeps_what_only_a_list_names() {
    let env = TestEnv::new();
    let fixture = pull_both_platforms(&env);
    create_list_of_both(&env);
    env.builder(&["rmi", AMD, ARM]).success();
    let images = env.builder(&["images", "--json"]).success().json();
    assert_eq!(images.as_array().unwrap().len(), 1, "{images:#}");

    env.builder(&["prune"]).success();
    for image in &fixture.platforms {
        assert!(blob_exists(&env, &image.manifest_digest), "{image:?}");
        assert!(blob_exists(&env, &image.config_digest), "{image:?}");
        for (_, digest, _) in &image.layers {
            assert!(blob_exists(&env, digest), "{image:?}");
        }
        for diff_id in &image.diff_ids {
            assert!(layer_exists(&env, diff_id), "{image:?}");
        }
    }
    let check = env.builder(&["check", "--json"]).success().json();
    assert_eq!(check["lists_checked"], 1);
    assert_eq!(check["images_checked"], 0);
    env.assert_check_clean();

    // `check` looks at each child: a missing one is reported against the
    // list, with the child's digest and platform.
    let arm = fixture.platform("linux/arm64/v8");
    let config = env
        .root
        .join("oci/blobs/sha256")
        .join(arm.config_digest.strip_prefix("sha256:").unwrap());
    let saved = fs::read(&config).unwrap();
    fs::remove_file(&config).unwrap();
    let run = env.builder(&["check", "--json"]).failure();
    let problems = run.json()["problems"].clone();
    let problems = problems.as_array().unwrap();
    assert!(!problems.is_empty(), "{run}");
    for problem in problems {
        assert_eq!(problem["object"], format!("manifest list {LIST}"), "{run}");
        let text = problem["problem"].as_str().unwrap();
        assert!(
            text.starts_with(&format!("image {} (linux/arm64): ", arm.manifest_digest))
                && text.contains(&arm.config_digest),
            "{run}"
        );
    }
    fs::write(&config, saved).unwrap();
    env.assert_check_clean();

    env.builder(&["manifest", "rm", LIST]).success();
    env.builder(&["prune"]).success();
    for image in &fixture.platforms {
        assert!(!blob_exists(&env, &image.manifest_digest), "{image:?}");
        for diff_id in &image.diff_ids {
            assert!(!layer_exists(&env, diff_id), "{image:?}");
        }
    }
}

/// A Docker schema2 image is listed under its registry identity (the Docker
/// manifest as pulled), not the OCI conversion the store names, so a pushed
/// list references what the registry holds.
#[test]
fn a_docker_image_is_listed_by_its_docker_manifest() {
    let env = TestEnv::new();
    let (reference, fixture) = serve_fixture("docker");
    env.pull_plain(&reference, &[]);
    env.builder(&["manifest", "create", LIST]).success();
    env.builder(&["manifest", "add", LIST, &reference])
        .success();
    let index = env.builder(&["manifest", "inspect", LIST]).success().json();
    assert_eq!(
        entries(&index),
        vec![(
            "linux/amd64".into(),
            fixture.digest(),
            "application/vnd.docker.distribution.manifest.v2+json".into()
        )]
    );
    env.builder(&["rmi", &reference]).success();
    env.builder(&["prune"]).success();
    env.assert_check_clean();
    // The list alone kept the Docker manifest's layers: mounted through it,
    // the rootfs is the one the image mounts as under its pulled name.
    let via_list = env.mount(LIST);
    env.pull_plain(&reference, &[]);
    let via_name = env.mount(&reference);
    assert_ne!(via_list, via_name);
    crate::support::tree::assert_same(&via_name, &via_list);
    env.umount(LIST, &via_list);
    env.umount(&reference, &via_name);
}

#[test]
fn misuse_is_refused_with_what_to_do() {
    let env = TestEnv::new();
    pull_both_platforms(&env);
    env.builder(&["manifest", "create", LIST]).success();
    env.builder(&["manifest", "create", LIST])
        .failure()
        .stderr_has("already names a manifest list");
    env.builder(&["manifest", "create", AMD])
        .failure()
        .stderr_has("already names an image");
    env.builder(&["manifest", "add", AMD, ARM])
        .failure()
        .stderr_has("is an image, not a manifest list");
    env.builder(&["manifest", "add", LIST, LIST])
        .failure()
        .stderr_has("holds images, not other lists");
    env.builder(&["manifest", "add", "nope/list:1", AMD])
        .failure()
        .stderr_has("is not in the store");
    env.builder(&["manifest", "add", "--platform", "linux", LIST, AMD])
        .failure()
        .stderr_has("invalid platform `linux`");
    env.builder(&["manifest", "inspect", AMD])
        .failure()
        .stderr_has("is an image, not a manifest list");
    env.builder(&["manifest", "rm", AMD])
        .failure()
        .stderr_has("is an image, not a manifest list");
    let out = env.scratch("out").join("list.tar");
    env.builder(&["save", LIST, "-o", out.to_str().unwrap()])
        .failure()
        .stderr_has("is a manifest list; `save` writes images");
    // Nothing above changed the empty list.
    let index = env.builder(&["manifest", "inspect", LIST]).success().json();
    assert_eq!(index["manifests"], serde_json::json!([]));
    env.assert_check_clean();
}

/// A build `FROM` a list in the store starts from the list's image for the
/// build's `--platform` (never pulling: the list is what the name means).
#[test]
fn a_build_from_a_list_uses_the_image_for_its_platform() {
    let env = TestEnv::new();
    let fixture = pull_both_platforms(&env);
    create_list_of_both(&env);
    let ctx = env.scratch("ctx");
    fs::write(
        ctx.join("Containerfile"),
        format!("FROM {LIST}\nCOPY f /f\n"),
    )
    .unwrap();
    fs::write(ctx.join("f"), "added\n").unwrap();
    for (platform, fixture_platform, tag) in [
        ("linux/arm64", "linux/arm64/v8", "local/built:arm64"),
        ("linux/amd64", "linux/amd64", "local/built:amd64"),
    ] {
        let mut cmd = env.command(&["build", "--pull=never", "--platform", platform, "-t", tag]);
        cmd.arg(&ctx).env_remove("SOURCE_DATE_EPOCH");
        env.run_command(cmd).success();
        let inspect = env.builder(&["inspect", tag]).success().json();
        let base = fixture.platform(fixture_platform);
        let diff_ids = inspect["config"]["rootfs"]["diff_ids"].as_array().unwrap();
        assert_eq!(diff_ids.len(), base.diff_ids.len() + 1, "{inspect:#}");
        assert_eq!(
            diff_ids[..base.diff_ids.len()],
            base.diff_ids[..],
            "{platform}"
        );
    }
    let mut cmd = env.command(&["build", "--pull=never", "--platform", "linux/s390x"]);
    cmd.arg(&ctx).env_remove("SOURCE_DATE_EPOCH");
    env.run_command(cmd)
        .failure()
        .stderr_has("has no image for linux/s390x");
}

// ------------------------------------------------------------------ push

fn skopeo_raw(reference: &str) -> Value {
    let mut cmd = Command::new("skopeo");
    cmd.args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{reference}"));
    let raw = process::run_ok(cmd);
    serde_json::from_str(&raw).unwrap_or_else(|e| panic!("skopeo printed no JSON ({e}):\n{raw}"))
}

/// Acceptance item 6: a list of two images pushes (images by digest, then
/// the index under the tag, byte for byte), `skopeo inspect --raw` shows an
/// index with both platforms, and `builder pull --platform` of the pushed
/// list gets each platform's image.
#[test]
fn manifest_push_sends_both_images_then_the_index() {
    let registry = Registry::start_plain();
    let env = TestEnv::new();
    let fixture = pull_both_platforms(&env);
    create_list_of_both(&env);
    let stored = env.builder(&["manifest", "inspect", LIST]).success().json();
    let list_digest = env.builder(&["inspect", LIST]).success().json()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let dest = registry.reference("multi/app:1");
    let digestfile = env.scratch("out").join("digest");
    let run = env
        .builder(&[
            "manifest",
            "push",
            "--tls-verify=false",
            "--digestfile",
            digestfile.to_str().unwrap(),
            LIST,
            &dest,
        ])
        .success()
        .stderr_has("(2 images)");
    // Without recompression the index keeps its digest.
    assert_eq!(run.out(), list_digest, "{run}");
    assert_eq!(fs::read_to_string(&digestfile).unwrap().trim(), list_digest);

    let raw = skopeo_raw(&dest);
    assert_eq!(raw, stored, "the registry serves the stored index");
    assert_eq!(raw["mediaType"], "application/vnd.oci.image.index.v1+json");
    let platforms: Vec<String> = entries(&raw).into_iter().map(|e| e.0).collect();
    assert_eq!(platforms, vec!["linux/amd64", "linux/arm64"]);
    assert_eq!(
        registry.manifest_digest("multi/app", "1"),
        list_digest,
        "the tag names the index"
    );
    // Each image is in the repository under its own digest.
    for image in &fixture.platforms {
        let child = skopeo_raw(&format!(
            "{}/multi/app@{}",
            registry.addr, image.manifest_digest
        ));
        assert_eq!(child["config"]["digest"], *image.config_digest);
    }

    // A fresh store pulls each platform from the pushed list.
    for (platform, want) in [
        ("linux/arm64", "linux/arm64/v8"),
        ("linux/amd64", "linux/amd64"),
    ] {
        let fresh = TestEnv::new();
        let digest = fresh.pull_plain(&dest, &["--platform", platform]);
        let image = fixture.platform(want);
        assert_eq!(digest, image.manifest_digest, "{platform}");
        let root = fresh.mount(&dest);
        assert_eq!(
            fs::read_to_string(root.join("etc/arch")).unwrap().trim(),
            want.split('/').nth(1).unwrap()
        );
        fresh.umount(&dest, &root);
    }

    // `builder push LIST` pushes the list too (here to a second tag: every
    // blob and image is already there, only the index is put again).
    let dest2 = registry.reference("multi/app:2");
    let again = env
        .builder(&["push", "--tls-verify=false", LIST, &dest2])
        .success()
        .stderr_has("0 uploaded");
    assert_eq!(again.out(), list_digest, "{again}");
    assert_eq!(skopeo_raw(&dest2), stored);
}

/// `--compression zstd` re-encodes the images' layers, so each image gets a
/// new manifest digest, and the pushed index is rewritten to name them
/// (platforms kept); pulled back, each platform is still its own image.
#[test]
fn manifest_push_with_recompression_rewrites_the_index() {
    let registry = Registry::start_plain();
    let env = TestEnv::new();
    let fixture = pull_both_platforms(&env);
    create_list_of_both(&env);
    let stored = env.builder(&["inspect", LIST]).success().json();
    let dest = registry.reference("multi/zstd:1");
    let run = env
        .builder(&[
            "manifest",
            "push",
            "--tls-verify=false",
            "--compression",
            "zstd",
            LIST,
            &dest,
        ])
        .success();
    assert_ne!(run.out(), stored["digest"].as_str().unwrap(), "{run}");
    assert_eq!(registry.manifest_digest("multi/zstd", "1"), run.out());
    let raw = skopeo_raw(&dest);
    let pushed = entries(&raw);
    assert_eq!(
        pushed.iter().map(|e| e.0.as_str()).collect::<Vec<_>>(),
        vec!["linux/amd64", "linux/arm64"]
    );
    for ((platform, digest, media_type), want) in
        pushed.iter().zip(["linux/amd64", "linux/arm64/v8"])
    {
        let image = fixture.platform(want);
        assert_ne!(*digest, image.manifest_digest, "{platform}: recompressed");
        assert_eq!(media_type, "application/vnd.oci.image.manifest.v1+json");
        let child = skopeo_raw(&format!("{}/multi/zstd@{digest}", registry.addr));
        assert_eq!(
            child["config"]["digest"], *image.config_digest,
            "{platform}"
        );
        for layer in child["layers"].as_array().unwrap() {
            assert_eq!(
                layer["mediaType"], "application/vnd.oci.image.layer.v1.tar+zstd",
                "{platform}"
            );
        }
        let fresh = TestEnv::new();
        assert_eq!(
            fresh.pull_plain(&dest, &["--platform", platform]),
            *digest,
            "{platform}"
        );
        let inspect = fresh.builder(&["inspect", &dest]).success().json();
        assert_eq!(inspect["id"], *image.config_digest, "{platform}");
    }
    // The store's list is unchanged.
    assert_eq!(env.builder(&["inspect", LIST]).success().json(), stored);
}

/// A list holding a Docker schema2 image pushes it as the Docker manifest
/// (the digest the index names), and the registry accepts the index.
#[test]
fn manifest_push_of_a_docker_image_keeps_its_digest() {
    let registry = Registry::start_plain();
    let env = TestEnv::new();
    pull_both_platforms(&env);
    let (docker_ref, docker) = serve_fixture("docker");
    env.pull_plain(&docker_ref, &[]);
    env.builder(&["manifest", "create", LIST]).success();
    env.builder(&["manifest", "add", LIST, &docker_ref])
        .success();
    env.builder(&["manifest", "add", LIST, ARM]).success();
    let dest = registry.reference("multi/docker:1");
    env.builder(&["manifest", "push", "--tls-verify=false", LIST, &dest])
        .success();
    let raw = skopeo_raw(&dest);
    assert_eq!(entries(&raw)[0].1, docker.digest());
    let child = skopeo_raw(&format!(
        "{}/multi/docker@{}",
        registry.addr,
        docker.digest()
    ));
    assert_eq!(
        child["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    let fresh = TestEnv::new();
    assert_eq!(
        fresh.pull_plain(&dest, &["--platform", "linux/amd64"]),
        docker.digest()
    );
}

#[test]
fn manifest_push_of_an_image_or_to_a_digest_is_refused() {
    let env = TestEnv::new();
    pull_both_platforms(&env);
    env.builder(&["manifest", "create", LIST]).success();
    env.builder(&[
        "manifest",
        "push",
        "--tls-verify=false",
        AMD,
        "127.0.0.1:1/x:1",
    ])
    .failure()
    .stderr_has("is an image, not a manifest list");
    let pinned = format!("127.0.0.1:1/x@sha256:{}", "a".repeat(64));
    env.builder(&["manifest", "push", "--tls-verify=false", LIST, &pinned])
        .failure()
        .stderr_has("a destination names a tag, not a digest");
}
