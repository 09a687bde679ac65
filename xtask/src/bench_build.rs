//! `cargo xtask bench build [--runs N]`: `builder build` next to
//! `buildah bud --runtime runc --layers` on the same Containerfiles, in the
//! same run, everything on tmpfs.
//!
//! Terms:
//! - *cold*: the base image (the busybox fixture, pulled from a local
//!   docker-registry) is in the tool's store, and nothing else is: every
//!   timed run starts from a fresh store (builder `--root`, buildah
//!   `--root`/`--runroot`) into which hyperfine's `--prepare` step, untimed,
//!   pulled and tagged the base. Both tools get exactly this; neither is
//!   timed with `--no-cache`, which would still read a warm store.
//! - *warm*: the store holds the base and one earlier build of the same file.
//!
//! Invariants: nothing outside the scratch directory on `/dev/shm` is
//! written (buildah's and builder's `TMPDIR` point into it too: buildah
//! stages its commits in `/var/tmp` otherwise, on this machine's disk);
//! the registry is stopped and the scratch directory removed on every
//! path; a mount left under it is reported, then lazily unmounted.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::{
    Result, bench_runs, busy_share, capture, cpu_count, fixtures, git_commit, release_builder, run,
    start_registry, tool_version, write_bench_section,
};

/// The `--network` both tools get: builder's default. builder has no bridge
/// networking, so buildah's default (a netavark/CNI bridge per RUN) would
/// time a feature builder lacks.
const NETWORK: &str = "host";

/// Files in the (d) tree, and their size: 100 directories of 200 files of
/// 10 000 bytes, slices of the image's own static busybox binary (so the
/// data compresses like real binaries, ~2×). One `dd` per seed file and one
/// `cp -r` per copy: a loop of 20 000 `dd`s would take ~9 s here and time
/// the shell, not the commit.
const TREE_FILES: u64 = 20_000;
const TREE_BYTES: u64 = 200_000_000;
const GEN_TREE: &str = "mkdir -p /data/d0 && i=0 && while [ $i -lt 200 ]; do \
    dd if=/bin/busybox of=/data/d0/f$i bs=10000 count=1 skip=$((i % 198)) 2>/dev/null; i=$((i+1)); done \
    && for k in $(seq 1 99); do cp -r /data/d0 /data/d$k; done";

/// (d) built by builder with other layer compressions: (key, option).
const D_VARIANTS: [(&str, &str); 3] = [
    ("d-gzip-1", "--compression-level 1"),
    ("d-zstd", "--compression zstd"),
    ("d-none", "--compression none"),
];

/// How many `RUN true` steps (e) has.
const RUN_STEPS: usize = 20;

/// The small build context: a few text files under `src/`.
const SMALL_FILES: usize = 5;

fn containerfiles() -> Vec<(&'static str, &'static str, String)> {
    let runs: String = (0..RUN_STEPS).map(|_| "RUN true\n").collect();
    vec![
        (
            "small",
            "a",
            "FROM busybox\nCOPY src/ /app/\nRUN cat /app/*.txt | sha256sum > /app/sum\n\
             ENV APP=/app MODE=bench\nWORKDIR /app\nCMD [\"cat\", \"/app/sum\"]\n"
                .to_string(),
        ),
        (
            "small",
            "f",
            "FROM busybox AS build\nCOPY src/ /src/\n\
             RUN mkdir /out && cat /src/*.txt > /out/bundle.txt && sha256sum /out/bundle.txt > /out/bundle.sum\n\
             FROM busybox\nCOPY --from=build /out/ /app/\nCMD [\"cat\", \"/app/bundle.sum\"]\n"
                .to_string(),
        ),
        ("big", "d", format!("FROM busybox\nRUN {GEN_TREE}\n")),
        (
            "big",
            "d0",
            format!("FROM busybox\nRUN {GEN_TREE} && rm -rf /data\n"),
        ),
        ("big", "e", format!("FROM busybox\n{runs}CMD [\"sh\"]\n")),
        ("big", "e0", "FROM busybox\nCMD [\"sh\"]\n".to_string()),
    ]
}

/// One hyperfine result row, in seconds.
struct Row {
    name: String,
    median: f64,
    stddev: f64,
}

/// One command for hyperfine: its name, its command line and the untimed
/// step run before each of its runs.
struct Timed {
    name: String,
    cmd: String,
    prepare: String,
}

/// The paths and command lines of one bench run.
struct Bench {
    scratch: PathBuf,
    builder: PathBuf,
    reference: String,
    runs: usize,
}

impl Bench {
    fn ctx(&self, which: &str) -> PathBuf {
        self.scratch.join(format!("ctx-{which}"))
    }

    fn file(&self, ctx: &str, name: &str) -> PathBuf {
        self.ctx(ctx).join(format!("{name}.Containerfile"))
    }

    fn builder_store(&self, key: &str) -> PathBuf {
        self.scratch.join(format!("builder-{key}"))
    }

    /// `buildah` with its own storage (root, runroot) for `key`.
    fn buildah(&self, key: &str) -> String {
        let dir = self.scratch.join(format!("buildah-{key}"));
        format!(
            "buildah --root {d}/root --runroot {d}/runroot --storage-driver overlay",
            d = dir.display()
        )
    }

    fn builder_cli(&self, key: &str) -> String {
        format!(
            "{} --root {}",
            self.builder.display(),
            self.builder_store(key).display()
        )
    }

    /// A fresh builder store for `key` holding only the base image.
    fn builder_reset(&self, key: &str) -> String {
        let b = self.builder_cli(key);
        format!(
            "rm -rf {store} && {b} pull -q --tls-verify=false {r} >/dev/null && {b} tag {r} busybox",
            store = self.builder_store(key).display(),
            r = self.reference
        )
    }

    /// A fresh buildah storage for `key` holding only the base image.
    fn buildah_reset(&self, key: &str) -> String {
        let b = self.buildah(key);
        format!(
            "rm -rf {dir} && {b} pull -q --tls-verify=false {r} >/dev/null && {b} tag {r} docker.io/library/busybox:latest",
            dir = self.scratch.join(format!("buildah-{key}")).display(),
            r = self.reference
        )
    }

    fn builder_build(&self, key: &str, ctx: &str, file: &str) -> String {
        self.builder_build_with(key, ctx, file, "")
    }

    /// [`Bench::builder_build`] with `extra` options.
    fn builder_build_with(&self, key: &str, ctx: &str, file: &str, extra: &str) -> String {
        format!(
            "{} build -q --pull=never --network {NETWORK}{extra} -f {} -t bench-{file} {}",
            self.builder_cli(key),
            self.file(ctx, file).display(),
            self.ctx(ctx).display()
        )
    }

    fn buildah_bud(&self, key: &str, ctx: &str, file: &str) -> String {
        format!(
            "{} bud --runtime runc --layers --pull=never --network {NETWORK} -q -f {} -t bench-{file} {}",
            self.buildah(key),
            self.file(ctx, file).display(),
            self.ctx(ctx).display()
        )
    }

    /// The builder and buildah commands of a cold build of `file`, each
    /// in its own store named after the file.
    fn cold(&self, ctx: &str, file: &str) -> [Timed; 2] {
        [
            Timed {
                name: format!("builder {file}"),
                cmd: self.builder_build(file, ctx, file),
                prepare: self.builder_reset(file),
            },
            Timed {
                name: format!("buildah {file}"),
                cmd: self.buildah_bud(file, ctx, file),
                prepare: self.buildah_reset(file),
            },
        ]
    }

    /// Runs `cmds` in one hyperfine invocation and returns its rows.
    fn hyperfine(&self, key: &str, warmup: usize, cmds: &[Timed]) -> Result<Vec<Row>> {
        let csv = self.scratch.join(format!("{key}.csv"));
        let mut h = Command::new("hyperfine");
        h.arg("--runs")
            .arg(self.runs.to_string())
            .arg("--warmup")
            .arg(warmup.to_string())
            .args(["--style", "basic", "--export-csv"])
            .arg(&csv);
        for c in cmds {
            h.arg("--prepare").arg(&c.prepare);
        }
        for c in cmds {
            h.arg("-n").arg(&c.name).arg(&c.cmd);
        }
        self.env(&mut h);
        run(h)?;
        read_rows(&csv)
    }

    /// The environment every builder and buildah command runs in.
    fn env(&self, c: &mut Command) {
        c.env("TMPDIR", self.scratch.join("tmp"))
            .env("BUILDER_NO_PROGRESS", "1")
            .env_remove("BUILDER_ROOT");
    }

    /// Runs a shell command line in the bench environment, returning stdout.
    fn sh(&self, line: &str) -> Result<String> {
        let mut c = Command::new("sh");
        c.arg("-c").arg(line);
        self.env(&mut c);
        capture(c)
    }

    /// Checks what `builder run --rm IMAGE CMD…` prints in store `key`.
    fn expect_run(&self, key: &str, image: &str, cmd: &str, want: &str) -> Result {
        let line = format!("{} run --rm {image} {cmd}", self.builder_cli(key));
        let got = self.sh(&line)?;
        if got.trim() != want.trim() {
            return Err(format!(
                "{line}: printed {:?}, expected {want:?}: the built image is wrong, its timing meaningless",
                got.trim()
            ));
        }
        Ok(())
    }

    /// sha256 of the small context's `src/*.txt`, concatenated in glob order.
    fn src_sum(&self) -> Result<String> {
        let out = self.sh(&format!(
            "cat {}/src/*.txt | sha256sum",
            self.ctx("small").display()
        ))?;
        Ok(out.split_whitespace().next().unwrap_or("").to_string())
    }
}

/// Rows of a hyperfine CSV (`command,mean,stddev,median,user,system,min,max`).
fn read_rows(csv: &Path) -> Result<Vec<Row>> {
    let text = fs::read_to_string(csv).map_err(|e| format!("read {}: {e}", csv.display()))?;
    text.lines()
        .skip(1)
        .map(|line| {
            let cols: Vec<&str> = line.split(',').collect();
            let num = |i: usize| cols.get(i).and_then(|v| v.parse::<f64>().ok());
            match (num(3), num(2)) {
                (Some(median), Some(stddev)) => Ok(Row {
                    name: cols[0].to_string(),
                    median,
                    stddev,
                }),
                _ => Err(format!(
                    "bad hyperfine CSV line {line:?} in {}",
                    csv.display()
                )),
            }
        })
        .collect()
}

/// Medians by command name, over every hyperfine invocation of the run.
#[derive(Default)]
struct Results {
    rows: Vec<Row>,
}

impl Results {
    fn get(&self, name: &str) -> Result<&Row> {
        self.rows
            .iter()
            .find(|r| r.name == name)
            .ok_or(format!("no result for `{name}`"))
    }

    fn median(&self, name: &str) -> Result<f64> {
        self.get(name).map(|r| r.median)
    }
}

/// What the report needs besides the medians.
struct Extras {
    /// `rm -rf` of the (d) tree on tmpfs, seconds (measured once).
    rm_tree: f64,
    /// `tar | pigz -6 -p 2` output size for the (d) tree, bytes.
    pigz_bytes: u64,
    /// builder's (d) layer blob: size and media type.
    builder_layer: String,
    /// The same for each of [`D_VARIANTS`]: (key, layer).
    variant_layers: Vec<(String, String)>,
    leftover_mounts: Vec<String>,
    busy_before: f64,
    busy_after: f64,
    load_before: String,
    load_after: String,
}

/// `cargo xtask bench build [--runs N]`.
pub fn bench_build(args: &[String]) -> Result {
    let runs = bench_runs(args, 5)?;
    let fixtures = fixtures()?;
    let builder = release_builder()?;
    let help = Command::new(&builder)
        .args(["build", "--help"])
        .output()
        .map_err(|e| format!("run {} build --help: {e}", builder.display()))?;
    if !help.status.success() {
        return Err(format!(
            "{} has no `build` command yet: {}",
            builder.display(),
            String::from_utf8_lossy(&help.stderr).trim()
        ));
    }
    let scratch = PathBuf::from(format!(
        "/dev/shm/builder-bench-build-{}",
        std::process::id()
    ));
    fs::create_dir_all(scratch.join("registry"))
        .and_then(|()| fs::create_dir_all(scratch.join("tmp")))
        .map_err(|e| format!("create {}: {e}", scratch.display()))?;
    let mut extras = Extras {
        rm_tree: f64::NAN,
        pigz_bytes: 0,
        builder_layer: String::new(),
        variant_layers: Vec::new(),
        leftover_mounts: Vec::new(),
        busy_before: f64::NAN,
        busy_after: f64::NAN,
        load_before: String::new(),
        load_after: String::new(),
    };
    let mut results = Results::default();
    let outcome = measure(
        &scratch,
        &fixtures,
        builder,
        runs,
        &mut results,
        &mut extras,
    );
    extras.leftover_mounts = unmount_under(&scratch);
    let _ = fs::remove_dir_all(&scratch);
    outcome?;

    let report = report(&results, &extras, runs)?;
    println!("\n{report}");
    if runs < 5 {
        println!("(fewer than 5 runs: BENCHMARKS.md not written)");
    } else {
        write_bench_section("build", &report)?;
        println!("wrote the build section of BENCHMARKS.md");
    }
    Ok(())
}

fn measure(
    scratch: &Path,
    fixtures: &Path,
    builder: PathBuf,
    runs: usize,
    results: &mut Results,
    extras: &mut Extras,
) -> Result {
    let registry = start_registry(&scratch.join("registry"))?;
    let reference = format!("{}/bench/busybox:latest", registry.addr);
    let mut push = Command::new("skopeo");
    push.args(["copy", "--quiet", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:latest", fixtures.join("busybox").display()))
        .arg(format!("docker://{reference}"));
    run(push)?;
    let b = Bench {
        scratch: scratch.to_path_buf(),
        builder,
        reference,
        runs,
    };

    for which in ["small", "big"] {
        fs::create_dir_all(b.ctx(which).join("src")).map_err(|e| e.to_string())?;
    }
    for n in 1..=SMALL_FILES {
        let text: String = (0..100)
            .map(|l| format!("file {n}, line {l}: some source text to copy\n"))
            .collect();
        let path = b.ctx("small").join(format!("src/f{n}.txt"));
        fs::write(&path, text).map_err(|e| format!("write {}: {e}", path.display()))?;
    }
    for (ctx, name, text) in containerfiles() {
        let path = b.file(ctx, name);
        fs::write(&path, text).map_err(|e| format!("write {}: {e}", path.display()))?;
    }

    extras.busy_before = busy_share(Duration::from_secs(2));
    extras.load_before = fs::read_to_string("/proc/loadavg").unwrap_or_default();

    // (a) small build, cold.
    results
        .rows
        .extend(b.hyperfine("a", 0, &b.cold("small", "a"))?);
    let sum = b.src_sum()?;
    b.expect_run(
        "a",
        "bench-a",
        "sh -c 'echo $APP $MODE $(pwd); cat sum'",
        &format!("/app bench /app\n{sum}  -"),
    )?;

    // (b) no-op rebuild and (c) one COPYed file changed: a store warmed by
    // one untimed build of (a).
    let warm = [
        (
            "builder",
            b.builder_reset("warm"),
            b.builder_build("warm", "small", "a"),
        ),
        (
            "buildah",
            b.buildah_reset("warm"),
            b.buildah_bud("warm", "small", "a"),
        ),
    ];
    for (_, reset, build) in &warm {
        b.sh(&format!("{reset} && {build} >/dev/null"))?;
    }
    let noop: Vec<Timed> = warm
        .iter()
        .map(|(tool, _, build)| Timed {
            name: format!("{tool} b"),
            cmd: build.clone(),
            prepare: "true".into(),
        })
        .collect();
    results.rows.extend(b.hyperfine("b", 1, &noop)?);
    // A new content each run (the clock in ns), so no run hits a cache
    // entry an earlier run made.
    let touch = format!("date +%s%N > {}/src/f3.txt", b.ctx("small").display());
    let changed: Vec<Timed> = warm
        .iter()
        .map(|(tool, _, build)| Timed {
            name: format!("{tool} c"),
            cmd: build.clone(),
            prepare: touch.clone(),
        })
        .collect();
    results.rows.extend(b.hyperfine("c", 0, &changed)?);
    // buildah's runs changed the file after builder's last one: one more
    // (untimed) builder build must pick that change up.
    b.sh(&format!("{} >/dev/null", warm[0].2))?;
    let sum = b.src_sum()?;
    b.expect_run("warm", "bench-a", "cat sum", &format!("{sum}  -"))?;
    remove_stores(&b, &["a", "warm"]);

    // (d) the big RUN, and (d0) the same RUN deleting its tree, so the
    // difference is the commit of 20k files / 200 MB (plus the in-step
    // `rm -rf`, measured separately below).
    let mut d: Vec<Timed> = Vec::new();
    let [bd, hd] = b.cold("big", "d");
    let [bd0, hd0] = b.cold("big", "d0");
    d.extend([bd, bd0, hd, hd0]);
    // (d) in builder's other compressions, in their own cold stores.
    for (key, option) in D_VARIANTS {
        d.push(Timed {
            name: format!("builder {key}"),
            cmd: b.builder_build_with(key, "big", "d", &format!(" {option}")),
            prepare: b.builder_reset(key),
        });
    }
    results.rows.extend(b.hyperfine("d", 0, &d)?);
    b.expect_run(
        "d",
        "bench-d",
        "sh -c 'find /data -type f | wc -l; cat /data/*/* | wc -c'",
        &format!("{TREE_FILES}\n{TREE_BYTES}"),
    )?;
    let layer_of = |key: &str| -> Result<String> {
        Ok(b.sh(&format!(
            "{} inspect bench-d | jq -r '.. | objects | select(has(\"layers\")) | .layers[-1] | \"\\(.size) bytes, \\(.mediaType)\"' | head -1",
            b.builder_cli(key)
        ))?
        .trim()
        .to_string())
    };
    extras.builder_layer = layer_of("d")?;
    for (key, _) in D_VARIANTS {
        extras
            .variant_layers
            .push((key.to_string(), layer_of(key)?));
    }

    // The reference for the commit: tar | pigz over a copy of the very tree
    // builder committed, on tmpfs.
    let tree = scratch.join("tree");
    fs::create_dir_all(&tree).map_err(|e| e.to_string())?;
    let rootfs = b.sh(&format!("{} mount bench-d", b.builder_cli("d")))?;
    let copied = b.sh(&format!("cp -a {}/data {}/", rootfs.trim(), tree.display()));
    b.sh(&format!("{} umount bench-d", b.builder_cli("d")))?;
    copied?;
    let tar = format!(
        "tar -C {} -c data | pigz -6 -p 2 > /dev/null",
        tree.display()
    );
    results.rows.extend(b.hyperfine(
        "tar",
        0,
        &[Timed {
            name: "tar | pigz".into(),
            cmd: tar,
            prepare: "true".into(),
        }],
    )?);
    extras.pigz_bytes = b
        .sh(&format!(
            "tar -C {} -c data | pigz -6 -p 2 | wc -c",
            tree.display()
        ))?
        .trim()
        .parse()
        .map_err(|e| format!("pigz size: {e}"))?;
    let t = Instant::now();
    fs::remove_dir_all(&tree).map_err(|e| format!("remove {}: {e}", tree.display()))?;
    extras.rm_tree = t.elapsed().as_secs_f64();
    remove_stores(&b, &["d", "d0"]);
    remove_stores(&b, &D_VARIANTS.map(|(key, _)| key));

    // (e) 20 × `RUN true`, and (e0) the same file without them.
    let mut e: Vec<Timed> = Vec::new();
    let [be, he] = b.cold("big", "e");
    let [be0, he0] = b.cold("big", "e0");
    e.extend([be, be0, he, he0]);
    results.rows.extend(b.hyperfine("e", 0, &e)?);
    remove_stores(&b, &["e", "e0"]);

    // (f) two stages, `COPY --from`.
    results
        .rows
        .extend(b.hyperfine("f", 0, &b.cold("small", "f"))?);
    let sum = b.src_sum()?;
    b.expect_run(
        "f",
        "bench-f",
        "cat /app/bundle.sum",
        &format!("{sum}  /out/bundle.txt"),
    )?;

    extras.load_after = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    extras.busy_after = busy_share(Duration::from_secs(2));
    drop(registry);
    Ok(())
}

/// Deletes the stores of finished scenarios, so tmpfs (RAM) holds only the
/// current one.
fn remove_stores(b: &Bench, keys: &[&str]) {
    for key in keys {
        let _ = fs::remove_dir_all(b.builder_store(key));
        let _ = fs::remove_dir_all(b.scratch.join(format!("buildah-{key}")));
    }
}

/// Mount points under `dir` (deepest first), each lazily unmounted; a
/// non-empty result is a leftover worth reporting.
fn unmount_under(dir: &Path) -> Vec<String> {
    let prefix = format!("{}/", dir.display());
    let mut found: Vec<String> = fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&prefix))
        .map(str::to_string)
        .collect();
    found.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in &found {
        let _ = Command::new("umount").args(["-l", m]).status();
    }
    found
}

fn ms(s: f64) -> String {
    if s.abs() < 0.1 {
        format!("{:.1} ms", s * 1000.0)
    } else {
        format!("{:.0} ms", s * 1000.0)
    }
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "**NOT met**" }
}

fn report(r: &Results, x: &Extras, runs: usize) -> Result<String> {
    let m = |n: &str| r.median(n);
    let mut o = String::new();
    o += "## `builder build`\n\n";
    let _ = write!(
        o,
        "Written by `cargo xtask bench build`. Each time is the median of {runs} runs ± their standard deviation (hyperfine), \
         builder (release build) and `buildah bud --runtime runc --layers` in the same hyperfine \
         invocation, on the same Containerfiles and contexts. **Everything is on tmpfs** \
         (`/dev/shm`; this machine's disk is ext4 without a journal, where deleting and recreating \
         big trees back to back, as every cold run does, would time the disk, not the tools): both stores (builder `--root`; buildah its own `--root`/`--runroot`, \
         overlay driver), the contexts, `TMPDIR` of both tools, and the local docker-registry the \
         base image comes from. Both get `--pull=never --network {NETWORK}` and `-q`.\n\n\
         *Cold* = a fresh store per run holding only the base image (busybox fixture, pulled \
         and tagged `busybox` in hyperfine's untimed `--prepare`): no cache entry, the same for \
         both tools. *Warm* = that store after one untimed build of the same file.\n\n"
    );
    o += "| scenario | builder | buildah | builder / buildah | target | |\n";
    o += "| --- | ---: | ---: | ---: | --- | --- |\n";
    let mut row = |label: &str, key: &str, target: &str, met: Option<bool>| -> Result {
        let (bv, hv) = (
            r.get(&format!("builder {key}"))?,
            r.get(&format!("buildah {key}"))?,
        );
        let _ = writeln!(
            o,
            "| {label} | {} ± {} | {} ± {} | {:.2}× | {target} | {} |",
            ms(bv.median),
            ms(bv.stddev),
            ms(hv.median),
            ms(hv.stddev),
            bv.median / hv.median,
            met.map(verdict).unwrap_or("")
        );
        Ok(())
    };
    let ratio =
        |k: &str| -> Result<f64> { Ok(m(&format!("builder {k}"))? / m(&format!("buildah {k}"))?) };
    row(
        "(a) small build, cold: COPY 5 files, RUN, ENV, WORKDIR, CMD",
        "a",
        "≤ 0.33× buildah",
        Some(ratio("a")? <= 0.33),
    )?;
    row(
        "(b) no-op rebuild (every step cached)",
        "b",
        "builder ≤ 50 ms",
        Some(m("builder b")? <= 0.050),
    )?;
    row(
        "(c) rebuild after one COPYed file changed (COPY, RUN, ENV, WORKDIR, CMD redone)",
        "c",
        "",
        None,
    )?;
    row(
        "(d) RUN writing 20 000 files / 200 MB, cold",
        "d",
        "≤ 0.5× buildah",
        Some(ratio("d")? <= 0.5),
    )?;
    row(
        "(d0) the same RUN ending in `rm -rf /data` (empty layer), cold",
        "d0",
        "",
        None,
    )?;
    row(
        &format!("(e) {RUN_STEPS} × `RUN true`, cold"),
        "e",
        "",
        None,
    )?;
    row("(e0) the same file without the RUNs, cold", "e0", "", None)?;
    row(
        "(f) two stages, `COPY --from`, cold",
        "f",
        "≤ 0.33× buildah",
        Some(ratio("f")? <= 0.33),
    )?;

    // (d) in other compressions, against buildah's (d).
    o += "\n**(d) in builder's other layer compressions** (own cold stores, same hyperfine run), \
          against buildah's (d) above. `--compression none` stores the layer uncompressed, as \
          buildah's store does.\n\n";
    o += "| builder option | builder | builder / buildah (d) | layer |\n| --- | ---: | ---: | --- |\n";
    let buildah_d = m("buildah d")?;
    for (key, option) in D_VARIANTS {
        let v = r.get(&format!("builder {key}"))?;
        let _ = writeln!(
            o,
            "| `{option}` | {} ± {} | {:.2}× | {} |",
            ms(v.median),
            ms(v.stddev),
            v.median / buildah_d,
            x.variant_layers
                .iter()
                .find(|(k, _)| k == key)
                .map_or("?", |(_, l)| l.as_str())
        );
    }

    // Per-RUN overhead: the difference isolates what a RUN step adds (a
    // container start, an empty diff, a cache record); total / N would also
    // charge each step a share of FROM and of writing the image.
    let steps = RUN_STEPS as f64;
    let per_run = |tool: &str| -> Result<(f64, f64)> {
        let (e, e0) = (m(&format!("{tool} e"))?, m(&format!("{tool} e0"))?);
        Ok(((e - e0) / steps, e / steps))
    };
    let (bp, bt) = per_run("builder")?;
    let (hp, ht) = per_run("buildah")?;
    o += "\n**Per-RUN overhead** = ((e) − (e0)) / 20: what one `RUN true` step adds (start a \
          container, diff an empty upper directory, record the cache entry and the layer). \
          (e) / 20 also charges each step a twentieth of FROM and of writing the image.\n\n";
    o += "| | builder | buildah | builder / buildah | target | |\n| --- | ---: | ---: | ---: | --- | --- |\n";
    let _ = writeln!(
        o,
        "| ((e) − (e0)) / 20 | {} | {} | {:.2}× | builder ≤ 15 ms | {} |",
        ms(bp),
        ms(hp),
        bp / hp,
        verdict(bp <= 0.015)
    );
    let _ = writeln!(
        o,
        "| (e) / 20 | {} | {} | {:.2}× | | |",
        ms(bt),
        ms(ht),
        bt / ht
    );

    // The commit of (d).
    let commit = |tool: &str| -> Result<f64> {
        Ok(m(&format!("{tool} d"))? - m(&format!("{tool} d0"))? + x.rm_tree)
    };
    let (bc, hc) = (commit("builder")?, commit("buildah")?);
    let tar = m("tar | pigz")?;
    let tree_mb = TREE_BYTES as f64 / 1e6;
    o += "\n**Commit of (d)** ≈ (d) − (d0) + the `rm -rf` that (d0) did inside its RUN \
          (the same tree deleted on the host's tmpfs, measured once: ";
    o += &ms(x.rm_tree);
    o += "). Reference: `tar -c DIR | pigz -6 -p 2 > /dev/null` over a copy of the tree builder \
          committed (taken from `builder mount`), on tmpfs.\n\n";
    o += "| | time | MB/s of tree | target | |\n| --- | ---: | ---: | --- | --- |\n";
    let _ = writeln!(
        o,
        "| builder commit ({}) | {} | {:.0} | ≤ tar \\| pigz | {} |",
        if x.builder_layer.is_empty() {
            "layer: ?".to_string()
        } else {
            format!("layer: {}", x.builder_layer)
        },
        ms(bc),
        tree_mb / bc,
        verdict(bc <= tar)
    );
    let _ = writeln!(
        o,
        "| buildah commit (uncompressed, see below) | {} | {:.0} | | |",
        ms(hc),
        tree_mb / hc
    );
    let _ = writeln!(
        o,
        "| `tar \\| pigz -6 -p 2` ({} bytes out) | {} | {:.0} | | |",
        x.pigz_bytes,
        ms(tar),
        tree_mb / tar
    );

    o += "\nScenario notes:\n\
          - (a)/(b)/(c)/(f) use a context of 5 small text files; (c) writes a new line (the clock in ns) \
          to one of them before each run, so every run misses the cache from COPY on, and no run can \
          hit an entry an earlier run made.\n";
    let _ = writeln!(
        o,
        "- (d)'s RUN writes 100 directories × 200 files × 10 000 bytes, slices of the image's static \
         busybox binary (compresses like binaries, ~2×: `pigz -6` makes {:.0} MB of the {tree_mb:.0} MB), \
         with 200 `dd`s and 99 `cp -r`s, so the RUN itself is short next to the commit.",
        x.pigz_bytes as f64 / 1e6
    );
    o += "- buildah commits into containers-storage, which keeps layers **uncompressed** (`bud` \
          defaults to `--disable-compression`; it compresses only when pushing), while builder's \
          store is an OCI layout holding compressed blobs: builder's commit does the compression \
          buildah defers. builder's default is gzip at libdeflate level 5, in 1 MiB pieces on \
          every core (`layer::compression`).\n";
    o += "- After each builder scenario the bench checks the image with `builder run` (the files, \
          ENV, WORKDIR, the RUN's output, the (d) tree's 20 000 files and 200 000 000 bytes).\n";
    if !x.leftover_mounts.is_empty() {
        o += "- **Mounts were left under the bench directory** (lazily unmounted by the bench): ";
        o += &x
            .leftover_mounts
            .iter()
            .map(|m| format!("`{m}`"))
            .collect::<Vec<_>>()
            .join(", ");
        o += "\n";
    }

    o += "\nThe Containerfiles (`(d)`'s RUN abbreviated as GEN):\n\n```\n";
    let runs_block: String = (0..RUN_STEPS).map(|_| "RUN true\n").collect();
    for (_, name, text) in containerfiles() {
        let text = text.replace(GEN_TREE, "GEN").replace(
            &runs_block,
            &format!("RUN true    # … {RUN_STEPS} of these lines\n"),
        );
        let _ = writeln!(o, "# ({name})\n{}", text.trim_end());
    }
    let _ = writeln!(o, "# GEN = {GEN_TREE}\n```");

    let commit_id = git_commit();
    let cpus = cpu_count();
    o += "\n### Machine state\n\n";
    let _ = writeln!(o, "- date: {}", tool_version("date", "-u"));
    let _ = writeln!(o, "- commit: {commit_id}");
    let _ = writeln!(
        o,
        "- kernel: {}; CPUs: {cpus} (shared with other jobs)",
        tool_version("uname", "-r")
    );
    let _ = writeln!(
        o,
        "- machine busy (/proc/stat, 2 s) before / after: {:.0} % / {:.0} %",
        x.busy_before * 100.0,
        x.busy_after * 100.0
    );
    let _ = writeln!(
        o,
        "- load average before / after: {} / {}",
        x.load_before.trim(),
        x.load_after.trim()
    );
    o += "- filesystem: tmpfs (`/dev/shm`) for stores, contexts, TMPDIR, registry and the tar reference tree\n";
    let _ = writeln!(
        o,
        "- tools: {}; {}; {}; {}",
        tool_version("buildah", "--version"),
        tool_version("runc", "--version"),
        tool_version("pigz", "--version"),
        tool_version("hyperfine", "--version")
    );
    Ok(o)
}
