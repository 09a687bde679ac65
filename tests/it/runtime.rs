//! The container runtime on a real busybox rootfs (static busybox copied
//! into a temp dir on /dev/shm) under an overlay: isolation, writes to the
//! upper only, cgroup v1 limits of this machine, capabilities, masked and
//! read-only paths, users, exit codes, signals, teardown.

use std::fs;
use std::io::{Read, Seek};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use builder::mount::{MountFlags, MountGuard, Overlay};
use builder::runtime::cgroup::{self, Limits};
use builder::runtime::spec::{Bind, ContainerConfig, docker_spec};
use builder::runtime::{self, ExitStatus, Outcome, RunOptions, RuntimeError};

const PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A busybox rootfs (the lower) with a fresh upper, overlay-mounted.
struct Fixture {
    dir: tempfile::TempDir,
    lower: PathBuf,
    upper: PathBuf,
    mnt: Option<MountGuard>,
    id: String,
}

fn unique_id() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn build_lower(lower: &Path) {
    for d in ["bin", "etc", "tmp", "home/alice", "root"] {
        fs::create_dir_all(lower.join(d)).unwrap();
    }
    fs::copy("/bin/busybox", lower.join("bin/busybox")).unwrap();
    let list = std::process::Command::new("/bin/busybox")
        .arg("--list")
        .output()
        .unwrap();
    for applet in String::from_utf8(list.stdout).unwrap().lines() {
        if applet != "busybox" {
            std::os::unix::fs::symlink("busybox", lower.join("bin").join(applet)).unwrap();
        }
    }
    fs::write(
        lower.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n",
    )
    .unwrap();
    fs::write(
        lower.join("etc/group"),
        "root:x:0:\nalice:x:1000:\nwheel:x:10:alice\naudio:x:29:alice\n",
    )
    .unwrap();
    fs::write(lower.join("etc/keep"), "original\n").unwrap();
    fs::write(lower.join("etc/doomed"), "bye\n").unwrap();
    fs::write(lower.join("notexec"), "#!/bin/sh\necho hi\n").unwrap();
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::Builder::new()
            .prefix("builder-rt-")
            .tempdir_in("/dev/shm")
            .unwrap();
        let lower = dir.path().join("lower");
        build_lower(&lower);
        Fixture::with_lowers(dir, vec![lower])
    }

    fn with_lowers(dir: tempfile::TempDir, lowers: Vec<PathBuf>) -> Fixture {
        let (upper, work, mnt) = (
            dir.path().join("upper"),
            dir.path().join("work"),
            dir.path().join("rootfs"),
        );
        for d in [&upper, &work, &mnt] {
            fs::create_dir_all(d).unwrap();
        }
        let guard = Overlay {
            lowers: lowers.clone(),
            upper: Some(upper.clone()),
            work: Some(work),
        }
        .mount(&mnt, MountFlags::default())
        .unwrap();
        Fixture {
            lower: lowers.last().unwrap().clone(),
            dir,
            upper,
            mnt: Some(guard),
            id: unique_id(),
        }
    }

    fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    fn config(&self, args: &[&str]) -> ContainerConfig {
        let etc = self.dir.path().join("etc-files");
        fs::create_dir_all(&etc).unwrap();
        fs::write(etc.join("hosts"), "127.0.0.1 localhost\n").unwrap();
        fs::write(etc.join("hostname"), "ctr\n").unwrap();
        fs::write(etc.join("resolv.conf"), "nameserver 127.0.0.53\n").unwrap();
        ContainerConfig {
            args: args.iter().map(|s| s.to_string()).collect(),
            env: vec![PATH.into(), "HOME=/root".into()],
            cwd: "/".into(),
            hostname: "ctr".into(),
            etc_files: ["hosts", "hostname", "resolv.conf"]
                .map(|f| Bind {
                    source: etc.join(f),
                    destination: PathBuf::from("/etc").join(f),
                    read_only: false,
                })
                .to_vec(),
            ..Default::default()
        }
    }

    /// Runs and returns the outcome with the command's stdout+stderr.
    fn run_cfg(&self, c: &ContainerConfig, init: bool) -> (Result<Outcome, RuntimeError>, String) {
        let spec = docker_spec(c, &self.rootfs());
        let out = tempfile::tempfile().unwrap();
        let stdin = fs::File::open("/dev/null").unwrap();
        let mut opts = RunOptions::new(self.id.clone());
        opts.init = init;
        opts.forward_signals = false;
        opts.stdio = Some([
            OwnedFd::from(stdin),
            OwnedFd::from(out.try_clone().unwrap()),
            OwnedFd::from(out.try_clone().unwrap()),
        ]);
        let r = runtime::run(&spec, &self.rootfs(), &opts);
        let mut out = out;
        out.rewind().unwrap();
        let mut s = String::new();
        out.read_to_string(&mut s).unwrap();
        self.assert_torn_down();
        (r, s)
    }

    fn sh(&self, script: &str) -> (Outcome, String) {
        let (r, out) = self.run_cfg(&self.config(&["sh", "-c", script]), false);
        (
            r.unwrap_or_else(|e| panic!("{e}: {:?}", std::error::Error::source(&e))),
            out,
        )
    }

    /// No cgroup of this container remains in any hierarchy.
    fn assert_torn_down(&self) {
        for c in ["pids", "memory", "cpu", "unified"] {
            let d = Path::new(cgroup::ROOT)
                .join(c)
                .join(cgroup::PARENT)
                .join(&self.id);
            assert!(!d.exists(), "leftover cgroup {}", d.display());
        }
        // Only the rootfs overlay itself may be mounted under our dir.
        let ours = self.dir.path().to_str().unwrap().to_owned();
        let extra: Vec<String> = fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(String::from))
            .filter(|m| m.starts_with(&ours) && *m != self.rootfs().to_str().unwrap())
            .collect();
        assert!(extra.is_empty(), "leftover mounts {extra:?}");
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(g) = self.mnt.take() {
            g.unmount().unwrap();
        }
    }
}

#[test]
fn command_is_pid_1_and_sees_only_its_processes() {
    let f = Fixture::new();
    let (o, out) = f.sh("echo pid=$$; sleep 0.2 & ls -d /proc/[0-9]* | tr '\\n' ' '");
    assert_eq!(o.status, ExitStatus::Exited(0));
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("pid=1"));
    // sh (1), sleep, ls (and tr) — all with small pids of the new namespace.
    let procs: Vec<u32> = lines
        .next()
        .unwrap()
        .split_whitespace()
        .map(|p| p.trim_start_matches("/proc/").parse().unwrap())
        .collect();
    assert!(
        procs.contains(&1) && procs.len() <= 4 && procs.iter().all(|&p| p < 10),
        "{procs:?}"
    );
}

#[test]
fn hostname_mounts_and_network_are_the_containers() {
    let f = Fixture::new();
    let (o, out) = f.sh(
        "hostname; cat /etc/hostname /etc/hosts; cut -d' ' -f5 /proc/self/mountinfo | tr '\\n' ' '; echo; \
         ip link | grep -c '^[0-9]'; ip link show lo | grep -c UP; tail -n +3 /proc/net/dev | cut -d: -f1",
    );
    assert_eq!(o.status, ExitStatus::Exited(0), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(&lines[..3], ["ctr", "ctr", "127.0.0.1 localhost"]);
    let mounts: Vec<&str> = lines[3].split_whitespace().collect();
    assert_eq!(mounts[0], "/");
    for m in [
        "/proc",
        "/dev",
        "/dev/pts",
        "/sys",
        "/dev/mqueue",
        "/dev/shm",
        "/etc/hosts",
    ] {
        assert!(mounts.contains(&m), "{m} missing from {mounts:?}");
    }
    assert!(
        !mounts.iter().any(|m| m.contains("/dev/shm/builder-rt")),
        "host path leaked: {mounts:?}"
    );
    assert_eq!(lines[4], "1", "only one interface");
    assert_eq!(lines[5], "1", "lo is up");
    assert_eq!(lines[6].trim(), "lo");
    // The bind-mount targets were created in the upper and reported.
    assert!(
        o.created.contains(&PathBuf::from("/etc/hosts")),
        "{:?}",
        o.created
    );
    assert!(f.upper.join("etc/hosts").exists());
}

#[test]
fn host_files_are_unreachable() {
    let f = Fixture::new();
    let host_marker = f.dir.path().join("host-secret");
    fs::write(&host_marker, "secret").unwrap();
    let (o, out) = f.sh(&format!(
        "ls /work /proc/1/root/work {m} /proc/1/root{m} 2>&1 | grep -c 'No such file'; \
         cat /proc/1/root/etc/keep; readlink /proc/1/root; ls /proc/1/root/../../ | tr '\\n' ' '",
        m = host_marker.display()
    ));
    assert_eq!(o.status, ExitStatus::Exited(0), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "4", "{out}");
    assert_eq!(lines[1], "original");
    assert_eq!(lines[2], "/");
    assert!(
        lines[3].contains("notexec") && !lines[3].contains("work"),
        "{out}"
    );
}

#[test]
fn writes_go_to_the_upper_only() {
    let f = Fixture::new();
    let before = tree_digest(&f.lower);
    let (o, out) = f.sh("echo changed > /etc/keep; rm /etc/doomed; mkdir -p /new/dir; echo x > /new/dir/f; rm -rf /home");
    assert_eq!(o.status, ExitStatus::Exited(0), "{out}");
    assert_eq!(tree_digest(&f.lower), before, "the lower layer changed");
    assert_eq!(
        fs::read_to_string(f.upper.join("etc/keep")).unwrap(),
        "changed\n"
    );
    assert!(f.upper.join("new/dir/f").exists());
    use std::os::unix::fs::FileTypeExt;
    assert!(
        fs::symlink_metadata(f.upper.join("etc/doomed"))
            .unwrap()
            .file_type()
            .is_char_device()
    );
}

/// Paths, types, modes and contents of a tree, as one string.
fn tree_digest(root: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let mut out = String::new();
    for e in walkdir::WalkDir::new(root).sort_by_file_name() {
        let e = e.unwrap();
        let m = e.path().symlink_metadata().unwrap();
        out.push_str(&format!(
            "{} {:o} {}",
            e.path().display(),
            m.mode(),
            m.size()
        ));
        if m.is_file() {
            out.push_str(&format!(" {:?}", fs::read(e.path()).unwrap()));
        }
        out.push('\n');
    }
    out
}

#[test]
fn memory_limit_oom_kill_is_reported() {
    let f = Fixture::new();
    let mut c = f.config(&[
        "sh",
        "-c",
        "head -c 300000000 /dev/zero | tail -c 200000000 >/dev/null",
    ]);
    c.limits = Limits {
        memory: Some(64 << 20),
        ..Default::default()
    };
    let (r, out) = f.run_cfg(&c, false);
    let o = r.unwrap();
    assert!(o.oom_killed, "{o:?} {out}");
    assert_eq!(o.status.code(), 137, "{out}");
    assert_eq!(o.memory_limit, Some(64 << 20));
}

#[test]
fn fork_bomb_is_contained_by_pids_limit() {
    let f = Fixture::new();
    let limited = |script: &str| {
        let mut c = f.config(&["sh", "-c", script]);
        c.limits = Limits {
            pids: Some(32),
            ..Default::default()
        };
        let (r, out) = f.run_cfg(&c, false);
        (r.unwrap(), out)
    };
    // Counting with builtins only (a glob), since no fork is left.
    let (o, out) = limited(
        "(for i in $(seq 100); do sleep 5 & done) 2>/dev/null; set -- /proc/[0-9]*; echo $#",
    );
    assert_eq!(o.status, ExitStatus::Exited(0), "{out}");
    let n: u32 = out.trim().parse().unwrap();
    assert!((28..=32).contains(&n), "{n} processes under pids.max=32");

    // The real thing: the shell survives and the run ends at once, the
    // bomb's processes killed with the namespace. The bomb starts in a
    // child shell, so the main shell forks only once, before the limit is
    // reached (a shell that cannot fork exits 2).
    let start = Instant::now();
    let (o, out) = limited(
        "sh -c 'b() { b | b & }; b'; i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; echo survived",
    );
    assert_eq!(o.status, ExitStatus::Exited(0), "{out}");
    assert!(out.ends_with("survived\n"), "{out}");
    // Not a speed check: a bomb that escaped the limit would keep the run
    // (or the machine) busy far longer than this on any load.
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "the contained fork bomb took {:?}",
        start.elapsed()
    );
}

#[test]
fn cpus_set_the_cfs_quota() {
    let f = Fixture::new();
    let mut c = f.config(&["sleep", "1"]);
    c.limits = Limits {
        cpu_quota: Some(50_000),
        cpu_period: Some(100_000),
        ..Default::default()
    };
    let dir = Path::new(cgroup::ROOT)
        .join("cpu")
        .join(cgroup::PARENT)
        .join(&f.id);
    let seen = std::thread::scope(|s| {
        let watcher = s.spawn(|| {
            // The cgroup directory appears before its limits are written:
            // keep reading until the quota is set (or the run is over).
            let start = Instant::now();
            let mut last = None;
            while start.elapsed() < Duration::from_secs(5) {
                if let (Ok(q), Ok(p)) = (
                    fs::read_to_string(dir.join("cpu.cfs_quota_us")),
                    fs::read_to_string(dir.join("cpu.cfs_period_us")),
                ) {
                    let seen = (q.trim().to_owned(), p.trim().to_owned());
                    if seen.0 != "-1" {
                        return Some(seen);
                    }
                    last = Some(seen);
                } else if last.is_some() {
                    break; // the cgroup is gone: the run ended
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            last
        });
        let (r, _) = f.run_cfg(&c, false);
        assert_eq!(r.unwrap().status, ExitStatus::Exited(0));
        watcher.join().unwrap()
    });
    assert_eq!(seen, Some(("50000".into(), "100000".into())));
}

#[test]
fn capabilities_match_dockers_default_set() {
    let f = Fixture::new();
    let (_, out) = f.sh("grep -E '^Cap(Bnd|Eff|Prm|Inh|Amb)' /proc/self/status");
    let caps: Vec<&str> = out.lines().collect();
    assert_eq!(
        caps,
        [
            "CapInh:\t0000000000000000",
            "CapPrm:\t00000000a80425fb",
            "CapEff:\t00000000a80425fb",
            "CapBnd:\t00000000a80425fb",
            "CapAmb:\t0000000000000000",
        ]
    );
    let mut c = f.config(&["sh", "-c", "grep -E '^Cap(Bnd|Eff)' /proc/self/status"]);
    c.capabilities = Some(
        runtime::caps::docker_set(&["NET_ADMIN".into()], &["CHOWN".into(), "KILL".into()]).unwrap(),
    );
    let (_, out) = f.run_cfg(&c, false);
    assert!(out.contains("CapBnd:\t00000000a80435da"), "{out}");
    // A non-root user keeps the bounding set but no effective caps.
    c = f.config(&["sh", "-c", "grep -E '^Cap(Bnd|Eff)' /proc/self/status"]);
    c.uid = 1000;
    c.gid = 1000;
    let (_, out) = f.run_cfg(&c, false);
    assert_eq!(
        out,
        "CapEff:\t0000000000000000\nCapBnd:\t00000000a80425fb\n"
    );
}

#[test]
fn masked_and_read_only_paths() {
    // Masking must hide something that is there on the host.
    assert!(!fs::read("/proc/timer_list").unwrap().is_empty());
    assert!(
        Path::new("/sys/firmware")
            .read_dir()
            .unwrap()
            .next()
            .is_some()
    );
    let f = Fixture::new();
    let (o, out) = f.sh(
        "cat /proc/timer_list | wc -c; cat /proc/keys | wc -c; ls /sys/firmware | wc -l; \
         (echo 1 > /proc/sys/kernel/domainname) 2>/dev/null && echo writable || echo refused; \
         (echo h > /proc/sysrq-trigger) 2>/dev/null && echo writable || echo refused; \
         touch /sys/x 2>/dev/null && echo writable || echo refused",
    );
    assert_eq!(o.status, ExitStatus::Exited(0), "{out}");
    assert_eq!(out, "0\n0\n0\nrefused\nrefused\nrefused\n");
}

#[test]
fn users_by_name_uid_and_group() {
    let f = Fixture::new();
    let id = |user: &str| {
        let u = runtime::user::resolve(&f.rootfs(), user).unwrap();
        let mut c = f.config(&["sh", "-c", "id; echo $HOME; pwd"]);
        c.uid = u.uid;
        c.gid = u.gid;
        c.additional_gids = u.additional_gids;
        c.env = vec![PATH.into(), format!("HOME={}", u.home)];
        c.cwd = "/work/dir".into();
        let (r, out) = f.run_cfg(&c, false);
        assert_eq!(r.unwrap().status, ExitStatus::Exited(0), "{out}");
        out
    };
    let alice =
        "uid=1000(alice) gid=1000(alice) groups=10(wheel),29(audio)\n/home/alice\n/work/dir\n";
    assert_eq!(id("alice"), alice);
    assert_eq!(id("1000"), alice);
    // An explicit group means no supplementary groups (as runc/Docker).
    assert_eq!(
        id("1000:29"),
        "uid=1000(alice) gid=29(audio)\n/home/alice\n/work/dir\n"
    );
    assert_eq!(id("4242:4343"), "uid=4242 gid=4343\n/\n/work/dir\n");
}

#[test]
fn exit_codes() {
    let f = Fixture::new();
    for (script, code) in [("true", 0), ("false", 1), ("exit 42", 42)] {
        assert_eq!(f.sh(script).0.status, ExitStatus::Exited(code), "{script}");
    }
    // PID 1 cannot be SIGKILLed from inside its namespace; a child can.
    assert!(f.sh("sh -c 'kill -9 $$'; echo $?").1.ends_with("\n137\n"));
    assert_eq!(ExitStatus::Signaled(9).code(), 137);
    // Killed from outside: the status is the signal.
    // Without limits, a hybrid host tracks the container in the unified
    // hierarchy; with limits, in the v1 controllers (pids first).
    let dirs = ["unified", "pids", ""].map(|h| {
        Path::new(cgroup::ROOT)
            .join(h)
            .join(cgroup::PARENT)
            .join(&f.id)
    });
    let status = std::thread::scope(|s| {
        s.spawn(|| {
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(5) {
                if let Some(p) = dirs
                    .iter()
                    .find_map(|d| fs::read_to_string(d.join("cgroup.procs")).ok())
                    && let Some(pid) = p.lines().next()
                {
                    let _ = std::process::Command::new("kill")
                        .args(["-9", pid])
                        .status();
                    return;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        f.run_cfg(&f.config(&["sleep", "5"]), false)
            .0
            .unwrap()
            .status
    });
    assert_eq!(status, ExitStatus::Signaled(9));

    let (r, _) = f.run_cfg(&f.config(&["no-such-command"]), false);
    let e = r.unwrap_err();
    assert_eq!(e.exit_code(), 127, "{e}");
    assert!(e.to_string().contains("`no-such-command` not found"), "{e}");
    let (r, _) = f.run_cfg(&f.config(&["/notexec"]), false);
    let e = r.unwrap_err();
    assert_eq!(e.exit_code(), 126, "{e}");
    let (r, _) = f.run_cfg(&f.config(&["/bin"]), false);
    assert_eq!(r.unwrap_err().exit_code(), 126);
    // With the tiny init, the status passes through it.
    let (r, _) = f.run_cfg(&f.config(&["sh", "-c", "exit 42"]), true);
    assert_eq!(r.unwrap().status, ExitStatus::Exited(42));
    let (r, _) = f.run_cfg(&f.config(&["sh", "-c", "echo $$; kill -9 $$"]), true);
    assert_eq!(r.unwrap().status.code(), 137);
    let (r, _) = f.run_cfg(&f.config(&["nope"]), true);
    assert_eq!(r.unwrap_err().exit_code(), 127);
}

#[test]
fn setup_failure_names_the_step() {
    let f = Fixture::new();
    let mut c = f.config(&["true"]);
    c.binds.push(Bind {
        source: f.dir.path().join("does-not-exist"),
        destination: "/mnt/x".into(),
        read_only: true,
    });
    let (r, _) = f.run_cfg(&c, false);
    let e = r.unwrap_err();
    assert!(e.to_string().contains("does-not-exist"), "{e}");
}

#[test]
fn read_only_root_volumes_and_tmpfs() {
    let f = Fixture::new();
    let vol = f.dir.path().join("vol");
    fs::create_dir(&vol).unwrap();
    let mut c = f.config(&[
        "sh",
        "-c",
        "touch /etc/x 2>/dev/null && echo rw || echo ro; echo v > /vol/f; touch /scratch/f && echo tmpfs-ok",
    ]);
    c.read_only_root = true;
    c.binds.push(Bind {
        source: vol.clone(),
        destination: "/vol".into(),
        read_only: false,
    });
    c.tmpfs.push("/scratch".into());
    let (r, out) = f.run_cfg(&c, false);
    assert_eq!(r.unwrap().status, ExitStatus::Exited(0), "{out}");
    assert_eq!(out, "ro\ntmpfs-ok\n");
    assert_eq!(fs::read_to_string(vol.join("f")).unwrap(), "v\n");
}

#[test]
fn two_hundred_fifty_layer_rootfs_runs() {
    let dir = tempfile::Builder::new()
        .prefix("builder-rt-")
        .tempdir_in("/dev/shm")
        .unwrap();
    let base = dir
        .path()
        .join("layers")
        .join(format!("{:064x}", 0))
        .join("diff");
    build_lower(&base);
    let mut lowers: Vec<PathBuf> = (1..250)
        .map(|i| {
            let d = dir
                .path()
                .join("layers")
                .join(format!("{i:064x}"))
                .join("diff");
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join(format!("layer-{i}")), "").unwrap();
            d
        })
        .rev()
        .collect();
    lowers.push(base);
    let f = Fixture::with_lowers(dir, lowers);
    let (o, out) = f.sh("ls / | grep -c '^layer-'");
    assert_eq!(o.status, ExitStatus::Exited(0));
    assert_eq!(out, "249\n");
}

#[test]
fn ten_concurrent_runs() {
    let fixtures: Vec<Fixture> = (0..10).map(|_| Fixture::new()).collect();
    std::thread::scope(|s| {
        for f in &fixtures {
            s.spawn(move || {
                let (o, out) = f.sh("echo $$ $(hostname)");
                assert_eq!(o.status, ExitStatus::Exited(0));
                assert_eq!(out, "1 ctr\n");
            });
        }
    });
}

/// Runs in a child test process (see `signals_are_forwarded`): a container
/// whose shell traps TERM, so a forwarded SIGTERM gives exit code 42.
#[test]
fn signal_forwarding_child() {
    if std::env::var_os("BUILDER_SIGNAL_CHILD").is_none() {
        return; // only meaningful inside `signals_are_forwarded`
    }
    let f = Fixture::new();
    let c = f.config(&[
        "sh",
        "-c",
        "trap 'exit 42' TERM; echo ready > /ready-flag; while :; do sleep 0.05; done",
    ]);
    let spec = docker_spec(&c, &f.rootfs());
    let opts = RunOptions::new(f.id.clone());
    fs::write(
        std::env::var("BUILDER_SIGNAL_CHILD").unwrap(),
        f.upper.to_str().unwrap(),
    )
    .unwrap();
    let o = runtime::run(&spec, &f.rootfs(), &opts).unwrap();
    assert_eq!(o.status, ExitStatus::Exited(42));
    f.assert_torn_down();
}

#[test]
fn signals_are_forwarded() {
    let tmp = tempfile::tempdir().unwrap();
    let note = tmp.path().join("upper");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "runtime::signal_forwarding_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("BUILDER_SIGNAL_CHILD", &note)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let ready = loop {
        if let Ok(upper) = fs::read_to_string(&note)
            && Path::new(&upper).join("ready-flag").exists()
        {
            break true;
        }
        if start.elapsed() > Duration::from_secs(10) {
            break false;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(ready, "container never became ready");
    // SAFETY-free: a plain signal to our own child.
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert!(status.success(), "child test failed: {status:?}");
}

/// Acceptance 10: the same spec run by runc gives the same answers to an
/// in-container probe.
#[test]
fn same_answers_as_runc() {
    let f = Fixture::new();
    let probe = "id; pwd; hostname; env | sort; grep -E '^(Cap|NoNewPrivs)' /proc/self/status; \
                 cut -d' ' -f5,6 /proc/self/mountinfo | sort; ls /dev | tr '\\n' ' '; echo; \
                 cat /proc/net/dev | tail -n +3 | cut -d: -f1; umask; ulimit -n";
    for (user, cwd) in [
        ((0, 0, vec![]), "/"),
        ((1000, 29, vec![10u32, 29]), "/home/alice"),
        ((4242, 4343, vec![]), "/"),
    ] {
        let mut c = f.config(&["sh", "-c", probe]);
        (c.uid, c.gid, c.additional_gids) = user.clone();
        c.cwd = cwd.into();
        c.env.push("FOO=bar baz".into());
        let (r, ours) = f.run_cfg(&c, false);
        assert_eq!(r.unwrap().status, ExitStatus::Exited(0), "{ours}");

        let bundle = f.dir.path().join("bundle");
        fs::create_dir_all(&bundle).unwrap();
        let spec = docker_spec(&c, &f.rootfs());
        fs::write(
            bundle.join("config.json"),
            serde_json::to_vec(&spec).unwrap(),
        )
        .unwrap();
        let out = std::process::Command::new("runc")
            .args(["--root", f.dir.path().join("runc-state").to_str().unwrap()])
            .args([
                "run",
                "--bundle",
                bundle.to_str().unwrap(),
                &format!("{}-runc", f.id),
            ])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let theirs = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "runc failed: {theirs}");
        let (ours, theirs) = (normalise(&ours), normalise(&theirs));
        assert_eq!(
            ours, theirs,
            "ours (left) vs runc (right) for user {user:?}"
        );
    }
}

/// Mount sources differ by nature (runc names the rootfs by its path).
fn normalise(s: &str) -> String {
    s.lines()
        .map(|l| {
            if l.starts_with('/') && l.contains(' ') {
                l.split(' ').next().unwrap()
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Mode detection against fake roots made of real filesystems: a cgroup2
/// mount (unified), a tmpfs with a cgroup2 `unified/` (hybrid), a bare
/// tmpfs (legacy).
#[test]
fn cgroup_mode_detection_on_fake_roots() {
    use builder::runtime::cgroup::{Mode, detect};
    let tmp = tempfile::Builder::new()
        .prefix("builder-cgmode-")
        .tempdir_in("/dev/shm")
        .unwrap();
    let mount = |src: &str, fstype: &str, target: &Path| {
        fs::create_dir_all(target).unwrap();
        let st = std::process::Command::new("mount")
            .args(["-t", fstype, src, target.to_str().unwrap()])
            .status()
            .unwrap();
        assert!(st.success(), "mount {fstype} on {}", target.display());
    };
    let unified = tmp.path().join("unified-root");
    let hybrid = tmp.path().join("hybrid-root");
    let legacy = tmp.path().join("legacy-root");
    mount("cgroup2", "cgroup2", &unified);
    mount("tmpfs", "tmpfs", &hybrid);
    mount("cgroup2", "cgroup2", &hybrid.join("unified"));
    mount("tmpfs", "tmpfs", &legacy);
    fs::create_dir(legacy.join("unified")).unwrap();
    let got = [detect(&unified), detect(&hybrid), detect(&legacy)].map(|r| r.unwrap());
    for m in [hybrid.join("unified"), hybrid, legacy, unified] {
        builder::mount::unmount(&m).unwrap();
    }
    assert_eq!(got, [Mode::Unified, Mode::Hybrid, Mode::Legacy]);
    assert_eq!(
        detect(Path::new(cgroup::ROOT)).unwrap(),
        Mode::Hybrid,
        "this machine is hybrid"
    );
}
