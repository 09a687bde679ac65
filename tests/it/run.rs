//! Acceptance tests of `builder run` / `ps` / `rm` through the real CLI,
//! with images pulled from a real docker-registry (the busybox fixture, and
//! images derived from it here with umoci or written as an OCI layout).
//!
//! Issue 3, acceptance items (the runtime-level tests in `runtime.rs`
//! cover the same items on a bare rootfs, plus limits and caps in depth):
//! 1. isolation (`isolation_through_the_cli`);
//! 2. writes go to the upper only (`writes_go_to_the_container_upper_only`);
//! 3. limits (`oom_kill_is_reported`, `pids_and_cpu_limits_through_the_cli`);
//! 4. caps, masked and read-only paths (`isolation_through_the_cli`,
//!    `capabilities_and_security_options`);
//! 5. users (`users_by_name_uid_and_group`);
//! 6. exit codes, signals, `-t` (`exit_codes`, `signals_are_forwarded`,
//!    `tty_allocates_a_pty_and_follows_resizes`);
//! 7. teardown, also after `kill -9` of builder (every test checks it;
//!    `kill_9_of_builder_is_cleaned_up_by_the_next_command`);
//! 8. ten concurrent runs (`ten_concurrent_runs_on_one_store`);
//! 9. 200+ layers (`an_image_with_201_layers_runs`);
//! 10. runc parity (`runc_gives_the_same_answers`).
//!
//! Plus Docker's entrypoint/cmd/env/workdir/user rules
//! (`entrypoint_cmd_env_workdir_follow_docker`), `--rm`, `ps -a` and `rm`
//! (`rm_ps_and_names`), volumes, tmpfs and a read-only root
//! (`volumes_tmpfs_and_read_only_root`).

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

use crate::support::{Registry, Run, TestEnv, fixtures, process, serve_fixture};

/// The busybox fixture, pushed to the shared registry.
fn busybox() -> String {
    serve_fixture("busybox").0
}

/// An env with busybox pulled.
fn env_with_busybox() -> (TestEnv, String) {
    let env = TestEnv::new();
    let image = busybox();
    env.pull_plain(&image, &[]);
    (env, image)
}

/// `builder run --rm ARGS…`, asserting exit status `code` and that the
/// container left nothing behind.
#[track_caller]
fn run_expect(env: &TestEnv, args: &[&str], code: i32) -> Run {
    let mut full = vec!["run", "--rm"];
    full.extend_from_slice(args);
    let before = container_ids(env);
    let run = env.builder(&full);
    assert_eq!(run.status.code(), Some(code), "exit status:\n{run}");
    assert_torn_down(env);
    assert_eq!(
        container_ids(env),
        before,
        "--rm left a container directory"
    );
    run
}

/// Container IDs in the store (directory names).
fn container_ids(env: &TestEnv) -> Vec<String> {
    let mut ids: Vec<String> = fs::read_dir(env.root.join("containers"))
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

/// Cgroups of builder containers whose ID starts with `prefix`, in any
/// hierarchy.
pub(crate) fn cgroups_of(prefix: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for h in fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let parent = h.path().join("builder");
        if let Ok(entries) = fs::read_dir(&parent) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir())
                    && e.file_name().to_string_lossy().starts_with(prefix)
                {
                    found.push(e.path());
                }
            }
        }
    }
    found
}

/// No mount below the env's directory, and no cgroup of any container this
/// store has or had (IDs from the store, plus hostnames printed by tests).
#[track_caller]
fn assert_torn_down(env: &TestEnv) {
    assert_eq!(env.mounts(), Vec::<PathBuf>::new(), "mounts left behind");
    for id in container_ids(env) {
        assert_eq!(
            cgroups_of(&id),
            Vec::<PathBuf>::new(),
            "cgroups left behind"
        );
    }
}

/// Processes whose command line contains `token`.
pub(crate) fn processes_with(token: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(cmdline) = fs::read(e.path().join("cmdline")) {
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            // builder's own command line holds the container's command too.
            if text.contains(token) && !text.contains("--root") {
                pids.push(pid);
            }
        }
    }
    pids
}

/// Waits until the store has exactly one container and its cgroup holds at
/// least `min_procs` processes; returns its ID and those pids.
fn wait_running(env: &TestEnv, min_procs: usize) -> (String, Vec<u32>) {
    process::wait_for(Duration::from_secs(20), || {
        let ids = container_ids(env);
        let id = ids.first()?;
        // Hybrid without limits: the unified hierarchy; with limits: v1
        // `pids`; a unified host: the root.
        let procs = [
            "/sys/fs/cgroup/unified/builder",
            "/sys/fs/cgroup/pids/builder",
            "/sys/fs/cgroup/builder",
        ]
        .iter()
        .find_map(|p| fs::read_to_string(Path::new(p).join(id).join("cgroup.procs")).ok())?;
        let pids: Vec<u32> = procs.lines().filter_map(|l| l.parse().ok()).collect();
        (pids.len() >= min_procs).then(|| (id.clone(), pids))
    })
    .expect("the container never started")
}

// ------------------------------------------------------------ exit codes

#[test]
fn exit_codes() {
    let (env, image) = env_with_busybox();
    run_expect(&env, &[&image, "true"], 0);
    run_expect(&env, &[&image, "false"], 1);
    run_expect(&env, &[&image, "sh", "-c", "exit 42"], 42);
    run_expect(&env, &[&image, "no-such-command"], 127)
        .stderr_has("command `no-such-command` not found in the container");
    run_expect(&env, &[&image, "/etc/passwd"], 126).stderr_has("`/etc/passwd` cannot be executed");
    // PID 1 ignores signals it has no handler for; under --init the shell
    // is not PID 1 and dies of its own SIGKILL.
    run_expect(&env, &["--init", &image, "sh", "-c", "kill -9 $$"], 137);
    // builder's own failures: 125.
    run_expect(&env, &["--pull=never", "no-such-image:1"], 125).stderr_has("not in the store");
    run_expect(&env, &["-w", "relative", &image, "true"], 125).stderr_has("not an absolute path");
    run_expect(&env, &["-u", "nobody-here", &image, "true"], 125)
        .stderr_has("user `nobody-here` not found");

    // Killed from outside: 128 + 9.
    let mut child = env.spawn(&["run", "--rm", &image, "sleep", "4321"]);
    let (_, pids) = wait_running(&env, 1);
    for pid in pids {
        process::run_ok({
            let mut c = Command::new("kill");
            c.args(["-9", &pid.to_string()]);
            c
        });
    }
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(137));
    assert_torn_down(&env);
    assert!(container_ids(&env).is_empty(), "--rm left its directory");
}

#[test]
fn stdin_is_connected_only_with_interactive() {
    let (env, image) = env_with_busybox();
    let with = env
        .builder_stdin(
            &["run", "--rm", "-i", &image, "sh", "-c", "cat; echo end"],
            "hello\n",
        )
        .success();
    assert_eq!(with.stdout, "hello\nend\n");
    let without = env
        .builder_stdin(
            &["run", "--rm", &image, "sh", "-c", "cat; echo end"],
            "hello\n",
        )
        .success();
    assert_eq!(without.stdout, "end\n", "stdin is /dev/null without -i");
    assert_torn_down(&env);
}

#[test]
fn signals_are_forwarded() {
    let (env, image) = env_with_busybox();
    // SIGTERM to builder reaches the shell (PID 1), which traps it.
    let child = env.spawn(&[
        "run",
        "--rm",
        &image,
        "sh",
        "-c",
        "trap 'exit 42' TERM; touch /ready; while :; do sleep 0.05; done",
    ]);
    let (id, _) = wait_running(&env, 1);
    let ready = env.root.join("containers").join(&id).join("upper/ready");
    process::wait_for(Duration::from_secs(10), || ready.exists().then_some(()))
        .expect("the shell never got ready");
    unsafe_free_kill(child.id(), "TERM");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(42), "{out:?}");
    assert_torn_down(&env);

    // SIGINT, through --init, kills `sleep`: 128 + 2.
    let mut child = env.spawn(&["run", "--rm", "--init", &image, "sleep", "5678"]);
    wait_running(&env, 2);
    unsafe_free_kill(child.id(), "INT");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{status:?}");
    assert_torn_down(&env);
    assert!(processes_with("sleep 5678").is_empty());
}

/// `kill -SIG pid` via the kill(1) command.
fn unsafe_free_kill(pid: u32, sig: &str) {
    let mut c = Command::new("kill");
    c.args([&format!("-{sig}"), &pid.to_string()]);
    process::run_ok(c);
}

#[test]
fn oom_kill_is_reported() {
    let (env, image) = env_with_busybox();
    let run = run_expect(
        &env,
        &[
            "-m",
            "64m",
            &image,
            "sh",
            "-c",
            "head -c 300000000 /dev/zero | tail -c 200000000 >/dev/null",
        ],
        137,
    );
    let run = run.stderr_has("killed: out of memory (limit 64 MiB)");
    assert!(!run.stdout.contains("killed"), "{run}");
    // Under the limit nothing is reported.
    let run = run_expect(&env, &["-m", "64m", &image, "true"], 0);
    assert!(!run.stderr.contains("out of memory"), "{run}");
}

#[test]
fn pids_and_cpu_limits_through_the_cli() {
    let (env, image) = env_with_busybox();
    // A fork bomb is contained and the run ends at once. The bomb starts
    // in a child shell: once the limit is reached a shell that cannot fork
    // exits 2, which must not be the main shell (it forks only once, first).
    let start = Instant::now();
    let run = run_expect(
        &env,
        &[
            "--pids-limit",
            "32",
            &image,
            "sh",
            "-c",
            "sh -c 'b() { b | b & }; b'; i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; echo survived",
        ],
        0,
    );
    assert!(run.stdout.ends_with("survived\n"), "{run}");
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
    // --cpus 0.5 sets the CFS quota of the container's cgroup (this
    // machine's v1 `cpu` hierarchy), seen from outside while it runs.
    let mut child = env.spawn(&["run", "--rm", "--cpus", "0.5", &image, "sleep", "3"]);
    let (id, _) = wait_running(&env, 1);
    let cpu = Path::new("/sys/fs/cgroup/cpu/builder").join(&id);
    let quota = fs::read_to_string(cpu.join("cpu.cfs_quota_us")).unwrap();
    let period = fs::read_to_string(cpu.join("cpu.cfs_period_us")).unwrap();
    assert_eq!((quota.trim(), period.trim()), ("50000", "100000"));
    assert!(child.wait().unwrap().success());
    assert_torn_down(&env);
}

// ------------------------------------------------------------ isolation

#[test]
fn isolation_through_the_cli() {
    let (env, image) = env_with_busybox();
    let marker = env.scratch("host-only").join("secret");
    fs::write(&marker, "host").unwrap();
    let run = run_expect(
        &env,
        &[
            "-h",
            "boxy",
            &image,
            "sh",
            "-c",
            &format!(
                "echo pid=$$; ps -o pid,comm | tail -n +2 | wc -l; hostname; \
                 cat {m} /proc/1/root{m} 2>&1 | grep -c 'No such file'; \
                 busybox ip link | grep -c '^[0-9]'; \
                 cut -d' ' -f5 /proc/self/mountinfo | tr '\\n' ' '; echo; \
                 grep -E '^Cap(Bnd|Eff)' /proc/self/status; \
                 cat /proc/kcore /proc/keys /proc/timer_list 2>/dev/null | wc -c; \
                 (echo 1 > /proc/sys/kernel/domainname) 2>/dev/null && echo writable || echo refused",
                m = marker.display()
            ),
        ],
        0,
    );
    let lines: Vec<&str> = run.out().lines().collect();
    assert_eq!(lines[0], "pid=1", "{run}");
    // sh, ps, tail, wc: nothing of the host.
    let procs: u32 = lines[1].trim().parse().unwrap();
    assert!(procs <= 4, "{run}");
    assert_eq!(lines[2], "boxy");
    assert_eq!(lines[3], "2", "host file reachable:\n{run}");
    assert_eq!(lines[4], "1", "only lo with --network none:\n{run}");
    let mounts: Vec<&str> = lines[5].split_whitespace().collect();
    assert_eq!(mounts[0], "/");
    assert!(
        !mounts
            .iter()
            .any(|m| m.contains(env.root.to_str().unwrap())),
        "{mounts:?}"
    );
    assert_eq!(lines[6], "CapEff:\t00000000a80425fb");
    assert_eq!(lines[7], "CapBnd:\t00000000a80425fb");
    assert_eq!(lines[8].trim(), "0", "masked paths readable:\n{run}");
    assert_eq!(lines[9], "refused");

    // --network host shares the host's interfaces.
    let host_ifaces = fs::read_to_string("/proc/net/dev").unwrap().lines().count() - 2;
    let run = run_expect(
        &env,
        &[
            "--network",
            "host",
            &image,
            "sh",
            "-c",
            "tail -n +3 /proc/net/dev | wc -l",
        ],
        0,
    );
    assert_eq!(run.out().trim(), host_ifaces.to_string());
}

#[test]
fn capabilities_and_security_options() {
    let (env, image) = env_with_busybox();
    let caps = |extra: &[&str]| {
        let mut args = extra.to_vec();
        args.extend([
            image.as_str(),
            "sh",
            "-c",
            "grep -E '^(CapBnd|NoNewPrivs)' /proc/self/status",
        ]);
        run_expect(&env, &args, 0).out().to_string()
    };
    assert_eq!(caps(&[]), "CapBnd:\t00000000a80425fb\nNoNewPrivs:\t0");
    assert_eq!(
        caps(&[
            "--cap-add",
            "NET_ADMIN",
            "--cap-drop",
            "CHOWN",
            "--cap-drop",
            "kill"
        ]),
        "CapBnd:\t00000000a80435da\nNoNewPrivs:\t0"
    );
    assert_eq!(
        caps(&["--security-opt", "no-new-privileges"]),
        "CapBnd:\t00000000a80425fb\nNoNewPrivs:\t1"
    );
    assert_eq!(
        caps(&["--no-new-privileges", "--cap-drop", "ALL"]),
        "CapBnd:\t0000000000000000\nNoNewPrivs:\t1"
    );
    run_expect(&env, &["--cap-add", "BOGUS", &image, "true"], 125)
        .stderr_has("unknown capability `BOGUS`");
    run_expect(
        &env,
        &["--security-opt", "seccomp=x.json", &image, "true"],
        125,
    )
    .stderr_has("unsupported --security-opt");
}

#[test]
fn volumes_tmpfs_and_read_only_root() {
    let (env, image) = env_with_busybox();
    let vol = env.scratch("vol");
    let ro = env.scratch("ro");
    fs::write(ro.join("f"), "from host\n").unwrap();
    let run = run_expect(
        &env,
        &[
            "--read-only",
            "-v",
            &format!("{}:/data", vol.display()),
            "-v",
            &format!("{}:/in:ro", ro.display()),
            "--tmpfs",
            "/scratch",
            &image,
            "sh",
            "-c",
            "touch /etc/x 2>/dev/null && echo rw || echo ro; echo v > /data/f; cat /in/f; \
             touch /in/g 2>/dev/null && echo in-rw || echo in-ro; touch /scratch/f && echo tmpfs-ok",
        ],
        0,
    );
    assert_eq!(run.out(), "ro\nfrom host\nin-ro\ntmpfs-ok");
    assert_eq!(fs::read_to_string(vol.join("f")).unwrap(), "v\n");
    run_expect(&env, &["-v", "named:/data", &image, "true"], 125).stderr_has("named volumes");
}

// ------------------------------------------------------------ upper only

/// Inventories of every unpacked layer of the store.
fn layer_inventories(env: &TestEnv) -> BTreeMap<String, builder::layer::inventory::Inventory> {
    fs::read_dir(env.root.join("layers"))
        .unwrap()
        .flatten()
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let inv = builder::layer::inventory::scan(&e.path().join("diff")).unwrap();
            (name, inv)
        })
        .collect()
}

#[test]
fn writes_go_to_the_container_upper_only() {
    let (env, image) = env_with_busybox();
    let before = layer_inventories(&env);
    assert!(!before.is_empty());
    env.builder(&[
        "run",
        "--name",
        "writer",
        &image,
        "sh",
        "-c",
        "echo changed > /etc/group; echo name > /etc/hostname; rm /etc/passwd; rm -rf /usr; \
         mkdir -p /new/dir; echo x > /new/dir/f",
    ])
    .success();
    assert_torn_down(&env);
    let after = layer_inventories(&env);
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    for (layer, inv) in &before {
        let diff = builder::layer::inventory::compare(inv, &after[layer]);
        assert!(diff.is_empty(), "layer {layer} changed: {diff:?}");
    }
    env.assert_check_clean();

    // The changes are in the kept container's upper dir, for inspection.
    let ids = container_ids(&env);
    assert_eq!(ids.len(), 1);
    let upper = env.root.join("containers").join(&ids[0]).join("upper");
    assert_eq!(
        fs::read_to_string(upper.join("etc/group")).unwrap(),
        "changed\n"
    );
    // /etc/hostname is builder's file bind-mounted over the image's.
    let dir = upper.parent().unwrap();
    assert_eq!(fs::read_to_string(dir.join("hostname")).unwrap(), "name\n");
    assert_eq!(fs::read_to_string(upper.join("new/dir/f")).unwrap(), "x\n");
    use std::os::unix::fs::FileTypeExt;
    assert!(
        fs::symlink_metadata(upper.join("etc/passwd"))
            .unwrap()
            .file_type()
            .is_char_device(),
        "a deleted file is a whiteout in the upper"
    );
    env.builder(&["rm", "writer"]).success();
    assert!(container_ids(&env).is_empty());
    assert_torn_down(&env);
}

// ------------------------------------------------------------ rm, ps, names

#[test]
fn rm_ps_and_names() {
    let (env, image) = env_with_busybox();
    run_expect(&env, &[&image, "true"], 0);
    assert!(container_ids(&env).is_empty(), "--rm left a directory");

    env.builder(&["run", "--name", "kept", &image, "sh", "-c", "exit 3"])
        .failure();
    env.builder(&["run", &image, "echo", "unnamed"]).success();
    let ps = env.builder(&["ps"]).success();
    assert_eq!(ps.out().lines().count(), 1, "only the header: {ps}");
    let ps = env.builder(&["ps", "-a"]).success();
    let kept = ps
        .out()
        .lines()
        .find(|l| l.contains(" kept "))
        .unwrap_or_else(|| panic!("{ps}"));
    assert!(kept.contains("Exited (3)") && kept.contains(&image), "{ps}");
    let ids = env.builder(&["ps", "-aq"]).success();
    assert_eq!(ids.out().lines().count(), 2);

    // Names are unique; a taken one is refused and the name is kept.
    env.builder(&["run", "--name", "kept", &image, "true"])
        .failure()
        .stderr_has("already used");
    env.builder(&["run", "--name", "bad/name", &image, "true"])
        .failure()
        .stderr_has("not a valid container name");

    // A container whose setup failed is kept too, and says why.
    env.builder(&[
        "run",
        "--name",
        "baduser",
        "-u",
        "nobody-here",
        &image,
        "true",
    ])
    .failure();
    let ps = env.builder(&["ps", "-a"]).success();
    let bad = ps
        .out()
        .lines()
        .find(|l| l.contains(" baduser "))
        .unwrap_or_else(|| panic!("{ps}"));
    assert!(bad.contains("Failed (125)"), "{ps}");
    env.builder(&["rm", "baduser"]).success();

    // rm by name and by ID prefix.
    env.builder(&["rm", "kept"]).success();
    let rest = env.builder(&["ps", "-aq"]).success();
    let short = rest.out().trim().to_string();
    env.builder(&["rm", &short[..6]]).success();
    assert!(container_ids(&env).is_empty());
    env.builder(&["rm", "kept"])
        .failure()
        .stderr_has("no container `kept`");
    assert_torn_down(&env);

    // `prune` removes stopped containers too.
    env.builder(&["run", &image, "true"]).success();
    let prune = env.builder(&["prune"]).success();
    assert!(prune.out().contains("Removed 1 containers"), "{prune}");
    assert!(container_ids(&env).is_empty());
}

#[test]
fn rm_refuses_a_running_container_unless_forced() {
    let (env, image) = env_with_busybox();
    let mut child = env.spawn(&["run", "--name", "busy", &image, "sleep", "2468"]);
    wait_running(&env, 1);
    let ps = env.builder(&["ps"]).success();
    let line = ps.out().lines().nth(1).unwrap_or_else(|| panic!("{ps}"));
    assert!(line.contains(" busy ") && line.contains("Up "), "{ps}");
    env.builder(&["rm", "busy"])
        .failure()
        .stderr_has("is running");
    env.builder(&["rm", "-f", "busy"]).success();
    assert_eq!(child.wait().unwrap().code(), Some(137));
    assert!(container_ids(&env).is_empty());
    assert!(processes_with("sleep 2468").is_empty());
    assert_torn_down(&env);
}

// ------------------------------------------------------------ kill -9

#[test]
fn kill_9_of_builder_is_cleaned_up_by_the_next_command() {
    let (env, image) = env_with_busybox();
    for (flags, token) in [
        (&["--rm"][..], "sleep 3141"),
        (&["--name", "kept"][..], "sleep 2718"),
    ] {
        let mut args = vec!["run"];
        args.extend_from_slice(flags);
        args.extend([image.as_str(), "sh", "-c", token]);
        let mut child = env.spawn(&args);
        let (id, _) = wait_running(&env, 1);
        child.kill().unwrap(); // SIGKILL to builder
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(9));
        // The container's processes die with builder (parent-death signal
        // on its PID 1); its mount and cgroup stay until the next command.
        process::wait_for(Duration::from_secs(10), || {
            processes_with(token).is_empty().then_some(())
        })
        .unwrap_or_else(|| {
            panic!(
                "container processes outlived builder: {:?}",
                processes_with(token)
            )
        });
        assert!(
            !env.mounts().is_empty(),
            "the rootfs should still be mounted"
        );
        assert!(!cgroups_of(&id).is_empty(), "the cgroup should still exist");

        // Any command cleans up.
        env.builder(&["images"]).success();
        assert_torn_down(&env);
        assert!(cgroups_of(&id).is_empty());
        if flags[0] == "--rm" {
            assert!(container_ids(&env).is_empty(), "--rm container dir left");
        } else {
            assert_eq!(container_ids(&env), vec![id.clone()]);
            let ps = env.builder(&["ps", "-a"]).success();
            assert!(ps.out().contains("Killed with its builder"), "{ps}");
        }
    }
    // prune removes the kept one.
    env.builder(&["prune"]).success();
    assert!(container_ids(&env).is_empty());

    // And prune alone, right after a kill, cleans everything too.
    let mut child = env.spawn(&["run", &image, "sleep", "1618"]);
    let (id, _) = wait_running(&env, 1);
    child.kill().unwrap();
    child.wait().unwrap();
    process::wait_for(Duration::from_secs(10), || {
        processes_with("sleep 1618").is_empty().then_some(())
    })
    .expect("container outlived builder");
    env.builder(&["prune"]).success();
    assert!(container_ids(&env).is_empty());
    assert!(cgroups_of(&id).is_empty());
    assert_eq!(env.mounts(), Vec::<PathBuf>::new());
}

/// A container cgroup no store knows about (its builder was killed and its
/// store deleted) is removed by any builder command once it is empty and
/// a minute old; a young one is left alone (it may be starting).
#[test]
fn abandoned_cgroups_are_removed() {
    let env = TestEnv::new();
    let parent = Path::new("/sys/fs/cgroup/unified/builder");
    let ids = [
        format!("{:064x}", std::process::id()),
        format!("{:063x}f", std::process::id()),
    ];
    for id in &ids {
        // Another builder may remove the shared parent at any moment.
        process::wait_for(Duration::from_secs(5), || {
            let _ = fs::create_dir(parent);
            fs::create_dir(parent.join(id)).ok()
        })
        .expect("create a test cgroup");
    }
    let old = parent.join(&ids[0]);
    let mut touch = Command::new("touch");
    touch.args(["-d", "2020-01-01"]).arg(&old);
    process::run_ok(touch);
    env.builder(&["images"]).success();
    assert!(!old.exists(), "an old empty cgroup was kept");
    assert!(parent.join(&ids[1]).exists(), "a young cgroup was removed");
    fs::remove_dir(parent.join(&ids[1])).unwrap();
    let _ = fs::remove_dir(parent);
}

// ------------------------------------------------------------ concurrency

#[test]
fn ten_concurrent_runs_on_one_store() {
    let (env, image) = env_with_busybox();
    let children: Vec<_> = (0..10)
        .map(|i| {
            env.spawn(&[
                "run",
                "--rm",
                "--name",
                &format!("c{i}"),
                &image,
                "sh",
                "-c",
                &format!("echo {i} > /mine; cat /mine; hostname"),
            ])
        })
        .collect();
    let mut hostnames = Vec::new();
    for (i, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "run {i}: {:?}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let mut lines = stdout.lines();
        assert_eq!(lines.next(), Some(i.to_string().as_str()));
        hostnames.push(lines.next().unwrap().to_string());
    }
    hostnames.sort();
    hostnames.dedup();
    assert_eq!(hostnames.len(), 10, "each container has its own ID");
    assert!(container_ids(&env).is_empty());
    assert_torn_down(&env);
    for h in hostnames {
        assert!(cgroups_of(&h).is_empty());
    }
}

// ------------------------------------------------------------ many layers

/// Writes an OCI layout: the busybox fixture plus `extra` tiny layers, each
/// adding `/l/N` and rewriting `/layer-order` to N. Returns its directory.
fn many_layer_layout(dir: &Path, extra: usize) -> PathBuf {
    let fixture = fixtures::ensure().get("busybox");
    let src = fixture.source.strip_prefix("oci:").unwrap();
    let src = Path::new(src.rsplit_once(':').map(|(p, _)| p).unwrap_or(src));
    let read_blob = |d: &str| {
        fs::read(
            src.join("blobs/sha256")
                .join(d.trim_start_matches("sha256:")),
        )
        .unwrap()
    };
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(src.join("index.json")).unwrap()).unwrap();
    let manifest_digest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&read_blob(&manifest_digest)).unwrap();
    let mut config: serde_json::Value =
        serde_json::from_slice(&read_blob(manifest["config"]["digest"].as_str().unwrap())).unwrap();

    let out = dir.join("layout");
    let blobs = out.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| -> (String, u64) {
        let hex = hex::encode(Sha256::digest(bytes));
        fs::write(blobs.join(&hex), bytes).unwrap();
        (format!("sha256:{hex}"), bytes.len() as u64)
    };
    for l in manifest["layers"].as_array().unwrap() {
        put(&read_blob(l["digest"].as_str().unwrap()));
    }
    for n in 1..=extra {
        let mut tar = tar::Builder::new(Vec::new());
        let mut add = |path: &str, body: &[u8], kind: tar::EntryType, mode: u32| {
            let mut h = tar::Header::new_ustar();
            h.set_size(body.len() as u64);
            h.set_mode(mode);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(1_704_067_200);
            h.set_entry_type(kind);
            h.set_cksum();
            tar.append_data(&mut h, path, body).unwrap();
        };
        add("l/", b"", tar::EntryType::Directory, 0o755);
        add(&format!("l/{n}"), b"", tar::EntryType::Regular, 0o644);
        add(
            "layer-order",
            format!("{n}\n").as_bytes(),
            tar::EntryType::Regular,
            0o644,
        );
        let bytes = tar.into_inner().unwrap();
        let (digest, size) = put(&bytes);
        manifest["layers"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": digest,
                "size": size,
            }));
        config["rootfs"]["diff_ids"]
            .as_array_mut()
            .unwrap()
            .push(digest.into());
        config["history"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"created": "2024-01-01T00:00:00Z", "created_by": format!("layer {n}")}));
    }
    let config_bytes = serde_json::to_vec(&config).unwrap();
    let (cd, cs) = put(&config_bytes);
    manifest["config"]["digest"] = cd.into();
    manifest["config"]["size"] = cs.into();
    let manifest_bytes = serde_json::to_vec(&manifest).unwrap();
    let (md, ms) = put(&manifest_bytes);
    fs::write(out.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": md, "size": ms,
            "annotations": {"org.opencontainers.image.ref.name": "latest"}
        }]
    });
    fs::write(out.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    out
}

#[test]
fn an_image_with_201_layers_runs() {
    let env = TestEnv::new();
    let layout = many_layer_layout(&env.scratch("many"), 200);
    let registry = Registry::shared();
    registry.push_oci(&layout, "latest", "run/many-layers:latest");
    let image = registry.reference("run/many-layers:latest");
    let run = run_expect(
        &env,
        &[
            "--tls-verify=false",
            &image,
            "sh",
            "-c",
            "cat /layer-order; ls /l | wc -l; echo hi > /l/w; cat /l/w",
        ],
        0,
    );
    assert_eq!(run.out(), "200\n200\nhi", "{run}");
    let layers = fs::read_dir(env.root.join("layers")).unwrap().count();
    assert_eq!(layers, 201);
}

// ------------------------------------------------------------ derived image

/// busybox plus users (alice with supplementary groups) and a config with
/// Entrypoint, Cmd, Env, WorkingDir and User, made with umoci.
fn users_image() -> String {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE
        .get_or_init(|| {
            let fixture = fixtures::ensure().get("busybox");
            let src = fixture.source.strip_prefix("oci:").unwrap();
            let src = src.rsplit_once(':').map(|(p, _)| p).unwrap_or(src);
            let work = crate::support::scratch_root().join("run-users-image");
            let _ = fs::remove_dir_all(&work);
            fs::create_dir_all(&work).unwrap();
            let layout = work.join("layout");
            let sh = |script: &str| {
                let mut c = Command::new("sh");
                c.args(["-euc", script]);
                process::run_ok(c);
            };
            sh(&format!("cp -a {src} {}", layout.display()));
            sh(&format!(
                "umoci unpack --image {l}:latest {w}/bundle >/dev/null
                 r={w}/bundle/rootfs
                 printf '%s\\n' root:x:0:0:root:/root:/bin/sh alice:x:1000:1000::/home/alice:/bin/sh \
                    nobody:x:65534:65534:nobody:/nonexistent:/bin/false >$r/etc/passwd
                 printf '%s\\n' root:x:0: alice:x:1000: wheel:x:10:alice audio:x:29:alice nogroup:x:65534: >$r/etc/group
                 mkdir -p $r/home/alice && chown 1000:1000 $r/home/alice
                 umoci repack --image {l}:latest {w}/bundle >/dev/null
                 umoci config --image {l}:latest --config.entrypoint /bin/sh --config.entrypoint -c \
                    --config.entrypoint 'echo \"ep:$0:$*\"; id; pwd; echo HOME=$HOME FOO=$FOO' \
                    --config.cmd default-arg --config.env FOO=image --config.workingdir /srv/app \
                    --config.user alice >/dev/null",
                l = layout.display(),
                w = work.display()
            ));
            let registry = Registry::shared();
            registry.push_oci(&layout, "latest", "run/users:latest");
            registry.reference("run/users:latest")
        })
        .clone()
}

#[test]
fn entrypoint_cmd_env_workdir_follow_docker() {
    let env = TestEnv::new();
    let image = users_image();
    env.pull_plain(&image, &[]);
    let alice = "uid=1000(alice) gid=1000(alice) groups=10(wheel),29(audio)";
    // The image's config as is: entrypoint + cmd, its user, workdir (created), env.
    let run = run_expect(&env, &[&image], 0);
    assert_eq!(
        run.out(),
        format!("ep:default-arg:\n{alice}\n/srv/app\nHOME=/home/alice FOO=image")
    );
    // Arguments replace Cmd only; -e overrides the image's env; -w and -u.
    let run = run_expect(
        &env,
        &[
            "-e", "FOO=cli", "-w", "/tmp/w", "-u", "root", &image, "a", "b",
        ],
        0,
    );
    assert_eq!(
        run.out(),
        "ep:a:b\nuid=0(root) gid=0(root)\n/tmp/w\nHOME=/root FOO=cli"
    );
    // --entrypoint drops the image's Cmd; arguments follow it.
    let run = run_expect(&env, &["--entrypoint", "/bin/echo", &image], 0);
    assert_eq!(run.out(), "");
    let run = run_expect(&env, &["--entrypoint", "/bin/echo", &image, "x", "y"], 0);
    assert_eq!(run.out(), "x y");
    let run = run_expect(&env, &["--entrypoint", "", &image, "env"], 0);
    let env_lines: Vec<&str> = run.out().lines().collect();
    for want in [
        "FOO=image",
        "HOME=/home/alice",
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ] {
        assert!(env_lines.contains(&want), "{want} missing: {run}");
    }
    assert!(
        env_lines.iter().any(|l| l.starts_with("HOSTNAME=")),
        "{run}"
    );
    // --env-file and a bare -e KEY taken from builder's environment.
    let file = env.scratch("envs").join("list");
    fs::write(&file, "# comment\nFROM_FILE=1\nFOO=file\n").unwrap();
    let mut cmd = env.command(&[
        "run",
        "--rm",
        "--env-file",
        file.to_str().unwrap(),
        "-e",
        "PASSED",
        "-e",
        "NOT_SET_ANYWHERE",
        "--entrypoint",
        "",
        &image,
        "env",
    ]);
    cmd.env("PASSED", "through").env_remove("NOT_SET_ANYWHERE");
    let out = process::output(cmd).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    for want in ["FROM_FILE=1", "FOO=file", "PASSED=through"] {
        assert!(text.lines().any(|l| l == want), "{want} missing:\n{text}");
    }
    assert!(!text.contains("NOT_SET_ANYWHERE"), "{text}");
    assert_torn_down(&env);
}

#[test]
fn users_by_name_uid_and_group() {
    let env = TestEnv::new();
    let image = users_image();
    env.pull_plain(&image, &[]);
    let id = |user: &str| {
        run_expect(
            &env,
            &[
                "--entrypoint",
                "",
                "-u",
                user,
                &image,
                "sh",
                "-c",
                "id; echo $HOME",
            ],
            0,
        )
        .out()
        .to_string()
    };
    let alice = "uid=1000(alice) gid=1000(alice) groups=10(wheel),29(audio)\n/home/alice";
    assert_eq!(id("alice"), alice);
    assert_eq!(id("1000"), alice);
    // An explicit group: no supplementary groups (as Docker/runc).
    assert_eq!(id("1000:29"), "uid=1000(alice) gid=29(audio)\n/home/alice");
    assert_eq!(
        id("alice:wheel"),
        "uid=1000(alice) gid=10(wheel)\n/home/alice"
    );
    // Numeric ids work without passwd entries.
    assert_eq!(id("4242:4343"), "uid=4242 gid=4343\n/");
    assert_eq!(id("root"), "uid=0(root) gid=0(root)\n/root");
    run_expect(&env, &["-u", "alice:nogroup-here", &image], 125)
        .stderr_has("group `nogroup-here` not found");
}

// ------------------------------------------------------------ runc parity

#[test]
fn runc_gives_the_same_answers() {
    let env = TestEnv::new();
    let image = users_image();
    env.pull_plain(&image, &[]);
    let probe = "id; pwd; hostname; env | sort; grep -E '^(Cap|NoNewPrivs)' /proc/self/status; \
                 cut -d' ' -f5,6 /proc/self/mountinfo | sort; ls /dev | tr '\\n' ' '; echo; \
                 tail -n +3 /proc/net/dev | cut -d: -f1; umask; ulimit -n; cat /etc/hostname";
    for extra in [
        &["-u", "root"][..],
        &["-u", "alice", "-w", "/home/alice"][..],
        &[
            "-u",
            "4242:4343",
            "--no-new-privileges",
            "--cap-drop",
            "ALL",
            "--cap-add",
            "CHOWN",
        ][..],
        &["--read-only", "-e", "FOO=bar baz"][..],
    ] {
        let with = |runtime: Option<&str>| {
            let mut args: Vec<&str> = vec!["-h", "probe"];
            if let Some(r) = runtime {
                args.extend(["--runtime", r]);
            }
            args.extend_from_slice(extra);
            args.extend(["--entrypoint", "", &image, "sh", "-c", probe]);
            run_expect(&env, &args, 0).stdout
        };
        let ours = with(None);
        let theirs = with(Some("runc"));
        assert_eq!(
            ours, theirs,
            "builder (left) vs runc (right) with {extra:?}"
        );
        assert!(ours.contains("probe"), "{ours}");
    }
    // runc made the container's cgroups (cgroupsPath /builder/<id> in every
    // hierarchy); none is left, nor an empty `builder/` of ours.
    env.builder(&[
        "run",
        "--name",
        "by-runc",
        "--runtime",
        "runc",
        &image,
        "true",
    ])
    .success();
    let ids = container_ids(&env);
    assert_eq!(ids.len(), 1);
    assert_eq!(cgroups_of(&ids[0]), Vec::<PathBuf>::new());
    env.builder(&["rm", "by-runc"]).success();
    assert_torn_down(&env);
}

// ------------------------------------------------------------ terminal

#[allow(unsafe_code)] // pre_exec, as in support::process
fn spawn_on_pty(env: &TestEnv, args: &[&str], slave: &OwnedFd) -> std::process::Child {
    use std::os::unix::process::CommandExt;
    let mut cmd = env.command(args);
    cmd.stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave.try_clone().unwrap()));
    // SAFETY: runs between fork and exec; setsid and TIOCSCTTY are single
    // raw syscalls through rustix (no allocation, no locks).
    unsafe {
        cmd.pre_exec(|| {
            rustix::process::setsid()?;
            let stdin = std::os::fd::BorrowedFd::borrow_raw(0);
            rustix::process::ioctl_tiocsctty(stdin)?;
            Ok(())
        });
    }
    process::spawn(cmd).unwrap()
}

/// Reads from the pty master until `needle` shows up (or 20 s pass).
fn read_until(master: &mut fs::File, seen: &mut String, needle: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut buf = [0u8; 4096];
    while !seen.contains(needle) {
        if Instant::now() > deadline {
            return false;
        }
        use rustix::event::{PollFd, PollFlags, Timespec, poll};
        let mut fds = [PollFd::new(&*master, PollFlags::IN)];
        let t = Timespec {
            tv_sec: 0,
            tv_nsec: 100_000_000,
        };
        if poll(&mut fds, Some(&t)).unwrap_or(0) == 0 {
            continue;
        }
        match master.read(&mut buf) {
            Ok(0) | Err(_) => return seen.contains(needle),
            Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
    true
}

#[test]
fn tty_allocates_a_pty_and_follows_resizes() {
    use rustix::pty::OpenptFlags;
    use rustix::termios::{Winsize, tcgetattr, tcsetwinsize};
    let (env, image) = env_with_busybox();
    let master =
        rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)
            .unwrap();
    rustix::pty::grantpt(&master).unwrap();
    rustix::pty::unlockpt(&master).unwrap();
    let name = rustix::pty::ptsname(&master, Vec::new()).unwrap();
    let slave: OwnedFd = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(name.to_str().unwrap())
        .unwrap()
        .into();
    let size = |rows, cols| Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    tcsetwinsize(&master, size(24, 80)).unwrap();
    let before = tcgetattr(&slave).unwrap();

    let mut child = spawn_on_pty(
        &env,
        &[
            "run",
            "--rm",
            "-it",
            &image,
            "sh",
            "-c",
            "tty; stty size; read line; stty size; echo got=$line; exit 7",
        ],
        &slave,
    );
    let mut m = fs::File::from(master.try_clone().unwrap());
    let mut seen = String::new();
    assert!(read_until(&mut m, &mut seen, "24 80"), "no size: {seen:?}");
    // A resize of builder's terminal reaches the container's pty.
    tcsetwinsize(&master, size(40, 100)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    m.write_all(b"hello\r").unwrap();
    assert!(
        read_until(&mut m, &mut seen, "got=hello"),
        "no echo: {seen:?}"
    );
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(7), "{seen:?}");
    let lines: Vec<&str> = seen.lines().map(|l| l.trim_end_matches('\r')).collect();
    assert!(lines[0].starts_with("/dev/pts/"), "{seen:?}");
    assert_eq!(lines[1], "24 80");
    assert!(lines.contains(&"40 100"), "resize not seen: {seen:?}");
    // builder restored its terminal's settings.
    let after = tcgetattr(&slave).unwrap();
    assert_eq!(
        (after.input_modes, after.output_modes, after.local_modes),
        (before.input_modes, before.output_modes, before.local_modes)
    );
    assert_torn_down(&env);

    // Without -t: not a terminal, output passes through unchanged.
    let run = run_expect(&env, &[&image, "sh", "-c", "tty; printf 'a\\nb'"], 0);
    assert_eq!(run.stdout, "not a tty\na\nb");
}

// ------------------------------------------------------------ pull policy

#[test]
fn pull_policies() {
    let env = TestEnv::new();
    let image = busybox();
    run_expect(&env, &["--pull=never", &image, "true"], 125).stderr_has("not in the store");
    let run = run_expect(&env, &["--tls-verify=false", &image, "echo", "pulled"], 0);
    assert_eq!(run.out(), "pulled");
    assert!(run.stderr.contains("pulling"), "{run}");
    let run = run_expect(&env, &["--pull=never", &image, "echo", "local"], 0);
    assert_eq!(run.out(), "local");
    run_expect(
        &env,
        &["--pull=always", "--tls-verify=false", &image, "true"],
        0,
    );
}

/// A panic in builder while a container exists (created and mounted) unwinds
/// through `Container`'s drop: the overlay is unmounted and, with
/// `auto_remove`, the container's directory and record are gone. (A builder
/// that dies without unwinding is `kill_9_of_builder_is_cleaned_up_by_the_next_command`.)
#[test]
fn a_panic_in_builder_leaves_no_mount_or_container_behind() {
    use builder::container::{Config, Container, RootfsSource};
    use builder::store::{LockMode, Store};

    let env = TestEnv::new();
    let (reference, _) = serve_fixture("busybox");
    env.pull_plain(&reference, &[]);
    let store = Store::open(&env.root, LockMode::Shared).unwrap();
    let image = store.image(&reference).unwrap().expect("pulled image");
    let layers = builder::rootfs::image_layers(&store, &image).unwrap();
    let config = Config {
        rootfs: RootfsSource {
            name: image.name.clone(),
            id: None,
            layers,
        },
        args: vec!["true".into()],
        auto_remove: true,
        ..Config::default()
    };
    let mut seen_mounted = false;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let container = Container::create(&store, &config).unwrap();
        seen_mounted = !env.mounts().is_empty();
        let _still_alive = &container;
        panic!("a bug in builder while a container exists");
    }));
    assert!(result.is_err(), "the closure panicked");
    assert!(
        seen_mounted,
        "the container's rootfs was mounted before the panic"
    );
    assert_eq!(
        env.mounts(),
        Vec::<PathBuf>::new(),
        "mounts left after the panic"
    );
    let containers = env.root.join("containers");
    let left: Vec<_> = fs::read_dir(&containers)
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "container directories left: {left:?}");
    drop(store);
    let ps = env.builder(&["ps", "-a", "-q"]).success();
    assert_eq!(ps.out(), "", "no container record survives");
}
