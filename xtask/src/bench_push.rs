//! `cargo xtask bench push [--runs N]`: `builder push` of the large fixture
//! next to `skopeo copy oci:DIR docker://…` and `buildah push`, in the same
//! run, into one local docker-registry; everything on tmpfs.
//!
//! Terms:
//! - *cold*: the destination registry is empty: hyperfine's `--prepare`
//!   (untimed) removes its storage before every run. The registry has no
//!   blob descriptor cache configured, so nothing survives in its memory.
//! - *warm*: the registry has every blob (one untimed warm-up push per tool,
//!   each to its own tag); only the manifest is written again.
//!
//! The image reaches each tool's store untimed: builder pulls it from a
//! source registry that is stopped before timing (so its name offers no
//! mount source in the destination), buildah pulls the fixture's OCI layout
//! into an isolated `--root`, skopeo reads a copy of that layout on tmpfs.
//! The scratch directory is removed, and buildah's root unmounted, on every
//! path.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{
    Result, bench_runs, capture, cpu_count, describe_fixture, fixtures, git_commit,
    release_builder, run, run_silently, start_registry, tool_version, write_bench_section,
};

/// (command name, median seconds) per benchmarked command.
type Medians = Vec<(String, f64)>;

/// Medians (seconds) by command name from a hyperfine CSV
/// (`command,mean,stddev,median,user,system,min,max`).
fn read_named_medians(csv: &Path) -> Result<Medians> {
    let text = fs::read_to_string(csv).map_err(|e| format!("read {}: {e}", csv.display()))?;
    text.lines()
        .skip(1)
        .map(|line| {
            let cols: Vec<&str> = line.split(',').collect();
            let median = cols
                .get(3)
                .and_then(|m| m.parse().ok())
                .ok_or(format!("bad hyperfine CSV line {line:?}"))?;
            Ok((cols[0].to_string(), median))
        })
        .collect()
}

/// `cargo xtask bench push [--runs N]`: pushes of the large fixture.
///
/// The image is pulled into builder's store (from a source registry that
/// is then stopped) and into an isolated buildah root; skopeo reads the
/// fixture's OCI layout. Each cold run starts from an empty destination
/// registry (its storage, on tmpfs, is removed; the registry has no blob
/// descriptor cache, so nothing survives in memory either). Warm runs push
/// what the registry already has.
pub fn bench_push(args: &[String]) -> Result {
    let runs = bench_runs(args, 5)?;
    let fixtures = fixtures()?;
    let builder = release_builder()?;
    let description = describe_fixture(&fixtures, "large")?;

    let scratch = PathBuf::from(format!(
        "/dev/shm/builder-bench-push-{}",
        std::process::id()
    ));
    for d in ["src-registry", "dst-registry"] {
        fs::create_dir_all(scratch.join(d))
            .map_err(|e| format!("create {}: {e}", scratch.display()))?;
    }
    // skopeo reads the layout from tmpfs, as builder reads its store.
    let layout = scratch.join("layout");
    let mut cp = Command::new("cp");
    cp.arg("-a").arg(fixtures.join("large")).arg(&layout);
    run(cp)?;
    let store = scratch.join("builder-store");
    let (br, brr) = (
        scratch.join("buildah-root"),
        scratch.join("buildah-runroot"),
    );
    let buildah = format!(
        "buildah --root {} --runroot {} --storage-driver overlay",
        br.display(),
        brr.display()
    );
    let sh = |script: &str| {
        let mut c = Command::new("sh");
        c.arg("-c").arg(script);
        c
    };
    let load_before = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let result = (|| -> Result<(Medians, Medians)> {
        // builder's store: a pull from a registry that is gone afterwards, so
        // the image's name offers no mount source in the destination.
        let src = start_registry(&scratch.join("src-registry"))?;
        let source = format!("{}/bench/large:latest", src.addr);
        let mut seed = Command::new("skopeo");
        seed.args(["copy", "--quiet", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:latest", layout.display()))
            .arg(format!("docker://{source}"));
        run(seed)?;
        let mut pull = Command::new(&builder);
        pull.arg("--root")
            .arg(&store)
            .args(["pull", "-q", "--tls-verify=false", &source])
            .env("BUILDER_NO_PROGRESS", "1");
        run_silently(pull)?;
        drop(src);
        // buildah's storage: the same image from the layout.
        run_silently(sh(&format!(
            "{buildah} pull -q oci:{}:latest",
            layout.display()
        )))?;
        let image_id = {
            let mut jq = Command::new("jq");
            jq.args(["-r", ".manifests[0].digest"])
                .arg(layout.join("index.json"));
            let manifest = capture(jq)?;
            let mut jq = Command::new("jq");
            jq.args(["-r", ".config.digest"]).arg(
                layout
                    .join("blobs/sha256")
                    .join(manifest.trim().trim_start_matches("sha256:")),
            );
            capture(jq)?
                .trim()
                .trim_start_matches("sha256:")
                .to_string()
        };

        let dst_dir = scratch.join("dst-registry");
        let dst = start_registry(&dst_dir)?;
        let to = |tool: &str| format!("{}/bench/large:{tool}", dst.addr);
        let builder_cmd = format!(
            "{} --root {} push -q --tls-verify=false {source} {}",
            builder.display(),
            store.display(),
            to("builder")
        );
        let skopeo_cmd = format!(
            "skopeo copy --quiet --dest-tls-verify=false oci:{}:latest docker://{}",
            layout.display(),
            to("skopeo")
        );
        let buildah_cmd = format!(
            "{buildah} push -q --tls-verify=false {image_id} docker://{}",
            to("buildah")
        );
        let hyperfine = |csv: &Path, prepare: Option<String>, warmup: bool| {
            let mut h = Command::new("hyperfine");
            h.arg("--runs")
                .arg(runs.to_string())
                .args(["--style", "basic", "--export-csv"])
                .arg(csv);
            if let Some(p) = prepare {
                h.arg("--prepare").arg(p);
            }
            if warmup {
                h.args(["--warmup", "1"]);
            }
            h.args(["-n", "builder push"])
                .arg(&builder_cmd)
                .args(["-n", "skopeo copy"])
                .arg(&skopeo_cmd)
                .args(["-n", "buildah push"])
                .arg(&buildah_cmd)
                .env("BUILDER_NO_PROGRESS", "1");
            h
        };
        let cold_csv = scratch.join("cold.csv");
        run(hyperfine(
            &cold_csv,
            Some(format!("rm -rf {}/data/docker", dst_dir.display())),
            false,
        ))?;
        let warm_csv = scratch.join("warm.csv");
        run(hyperfine(&warm_csv, None, true))?;
        drop(dst);
        Ok((
            read_named_medians(&cold_csv)?,
            read_named_medians(&warm_csv)?,
        ))
    })();
    let load_after = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let _ = sh(&format!(
        "{buildah} rmi -af >/dev/null 2>&1; umount -R -l {} 2>/dev/null",
        br.display()
    ))
    .status();
    let _ = fs::remove_dir_all(&scratch);
    let (cold, warm) = result?;

    let report = bench_push_report(&description, &cold, &warm, runs, &load_before, &load_after);
    println!("\n{report}");
    if runs < 5 {
        println!("(fewer than 5 runs: BENCHMARKS.md not written)");
    } else {
        write_bench_section("push", &report)?;
        println!("wrote the push section of BENCHMARKS.md");
    }
    Ok(())
}

fn bench_push_report(
    description: &str,
    cold: &[(String, f64)],
    warm: &[(String, f64)],
    runs: usize,
    load_before: &str,
    load_after: &str,
) -> String {
    let get = |set: &[(String, f64)], name: &str| {
        set.iter()
            .find(|(n, _)| n == name)
            .map_or(f64::NAN, |(_, m)| *m)
    };
    let ms = |s: f64| format!("{:.0} ms", s * 1000.0);
    let row = |label: &str, set: &[(String, f64)]| {
        let (b, s, p) = (
            get(set, "builder push"),
            get(set, "skopeo copy"),
            get(set, "buildah push"),
        );
        format!(
            "| {label} | {} | {} | {} | {:.2}× | {:.2}× |\n",
            ms(b),
            ms(s),
            ms(p),
            b / s,
            b / p
        )
    };
    let mut r = String::new();
    r += "## `builder push`\n\n";
    r += &format!(
        "Written by `cargo xtask bench push`. Each time is the median of {runs} runs (hyperfine). \
         The image is the `large` fixture ({description}). All three tools push to the same local \
         docker-registry (127.0.0.1, plain HTTP, storage on tmpfs), each to its own tag. A cold run \
         starts from an emptied registry (its storage removed before every run); a warm run pushes \
         what the registry already has (after one warm-up push).\n\n"
    );
    r += "- `builder push`: from builder's store (tmpfs): HEAD per blob, upload (16 MiB chunks), manifest unchanged.\n";
    r += "- `skopeo copy oci:DIR docker://…`: from the fixture's OCI layout, upload only.\n";
    r += "- `buildah push`: from an isolated buildah root (overlay, tmpfs); recompresses the layers.\n\n";
    r += "| push | builder push | skopeo copy | buildah push | builder / skopeo | builder / buildah |\n";
    r += "| --- | ---: | ---: | ---: | ---: | ---: |\n";
    r += &row("cold (empty registry)", cold);
    r += &row("warm (every blob present)", warm);
    let (cold_b, cold_s) = (get(cold, "builder push"), get(cold, "skopeo copy"));
    let warm_b = get(warm, "builder push");
    r += "\nTargets (issue 5): cold push ≤ 1.0× skopeo copy; warm push ≤ 50 ms.\n";
    r += &format!(
        "- cold ≤ 1.0× skopeo: {}\n- warm ≤ 50 ms: {}\n",
        if cold_b <= cold_s { "met" } else { "NOT met" },
        if warm_b <= 0.050 { "met" } else { "NOT met" }
    );
    let cpus = cpu_count();
    let commit = git_commit();
    r += "\n### Machine state\n\n";
    r += &format!("- date: {}\n", tool_version("date", "-u"));
    r += &format!("- commit: {commit}\n");
    r += &format!("- kernel: {}\n", tool_version("uname", "-r"));
    r += &format!("- CPUs: {cpus} (shared with other work on this machine)\n");
    r += &format!(
        "- load average before / after: {} / {}\n",
        load_before.trim(),
        load_after.trim()
    );
    r += "- filesystem: tmpfs for every store, the layout and the registry\n";
    r += &format!(
        "- tools: {}; {}; {}; {}\n",
        tool_version("skopeo", "--version"),
        tool_version("buildah", "--version"),
        tool_version("docker-registry", "--version"),
        tool_version("hyperfine", "--version")
    );
    r
}
