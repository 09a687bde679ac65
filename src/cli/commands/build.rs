use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};

use super::{image_by_policy, normalise_name};
use crate::build::{self, BaseImages, BuildError, BuildOptions, Context, ImageFormat};
use crate::cli::args::{
    BuildArgs, CompressionArg, ImageFormatArg, NetworkMode, PullPolicy, RegistryArgs,
};
use crate::container::Network;
use crate::containerfile::BuildArgs as ArgValues;
use crate::oci::{Compression, Platform};
use crate::progress::{BlobOutcome, NoProgress, Reporter, StepEvent};
use crate::store::{ImageRecord, Store};

/// Exit status of an interrupted build (128 + SIGINT, as shells report it).
const EXIT_INTERRUPTED: u8 = 130;

#[allow(clippy::print_stdout, clippy::print_stderr)]
pub fn build(store: &Store, args: BuildArgs) -> Result<ExitCode> {
    let started = Instant::now();
    let (label, text, file_path) = read_containerfile(&args)?;
    let cf = crate::containerfile::parse(&label, &text)?;
    let context_dir = &args.context;
    let ignore = Context::ignore_file_for(context_dir, file_path.as_deref());
    let ctx = Context::open(context_dir, ignore.as_deref())?;

    let mut values = ArgValues::new();
    for a in &args.build_args {
        match a.split_once('=') {
            Some((k, v)) => values.set(k, v),
            None => {
                if let Some(v) = std::env::var_os(a) {
                    values.set(a.clone(), v.to_string_lossy().into_owned());
                }
            }
        }
    }
    if !args.quiet {
        for w in &cf.warnings {
            eprintln!("warning: {label}:{}: {}", w.line, w.message);
        }
        let unused = values.unused(&cf);
        if !unused.is_empty() {
            eprintln!(
                "warning: build arguments not declared by any ARG: {}",
                unused.join(", ")
            );
        }
    }
    let platform = match &args.platform {
        Some(p) => Platform::parse(p)?,
        None => Platform::host(),
    };
    let timestamp =
        match args.timestamp {
            Some(t) => Some(t),
            None => match std::env::var("SOURCE_DATE_EPOCH") {
                Ok(v) if !v.is_empty() => Some(v.trim().parse().with_context(|| {
                    format!("SOURCE_DATE_EPOCH `{v}` is not a number of seconds")
                })?),
                _ => None,
            },
        };
    let identity = format!(
        "{}\0{}",
        match &file_path {
            Some(p) => absolute(p).display().to_string(),
            None => "-".to_string(),
        },
        absolute(context_dir).display()
    );
    let mut opts = BuildOptions::new(identity);
    opts.build_args = values;
    opts.target = args.target.clone();
    opts.names = args
        .tags
        .iter()
        .map(|t| normalise_name(t))
        .collect::<Result<_>>()?;
    opts.no_cache = args.no_cache;
    opts.no_cache_stages = args.no_cache_filter.clone();
    opts.explain_cache = args.explain_cache;
    opts.platform = platform;
    opts.network = match args.network {
        NetworkMode::Host => Network::Host,
        NetworkMode::None => Network::None,
    };
    opts.limits = super::run::limits(args.memory.as_deref(), args.pids_limit, args.cpus)?;
    opts.format = match args.format {
        ImageFormatArg::Oci => ImageFormat::Oci,
        ImageFormatArg::Docker => ImageFormat::Docker,
    };
    opts.compression = match args.compression {
        CompressionArg::Gzip => Compression::Gzip,
        CompressionArg::Zstd => Compression::Zstd,
        CompressionArg::None => Compression::None,
    };
    if let Some(level) = args.compression_level {
        if opts.compression == Compression::None {
            bail!("--compression-level needs --compression gzip or zstd");
        }
        crate::layer::compression::effective_level(opts.compression, Some(level))
            .map_err(|e| anyhow::anyhow!("--compression-level: {e}"))?;
    }
    opts.compression_level = args.compression_level;
    if opts.format == ImageFormat::Docker && opts.compression == Compression::Zstd {
        bail!("--format docker cannot hold zstd layers; use --compression gzip or --format oci");
    }
    opts.timestamp = timestamp;

    let mut outputs = args
        .outputs
        .iter()
        .map(|o| Output::parse(o))
        .collect::<Result<Vec<_>>>()?;
    if args.push && !outputs.contains(&Output::Registry) {
        outputs.push(Output::Registry);
    }
    if outputs.contains(&Output::Registry) && opts.names.is_empty() {
        bail!("--push needs at least one -t REGISTRY/REPOSITORY:TAG to push to");
    }
    let cache_ref = |r: &str| -> Result<crate::reference::ImageRef> {
        // A cache reference without a tag means `:buildcache`, not `:latest`.
        let with_tag =
            if r.contains('@') || r.rsplit('/').next().is_some_and(|last| last.contains(':')) {
                r.to_string()
            } else {
                format!("{r}:buildcache")
            };
        Ok(crate::reference::ImageRef::parse(&with_tag)?)
    };
    if let Some(from) = &args.cache_from {
        let source = cache_ref(from)?;
        let client = super::registry_client(&args.registry)?;
        match build::remote_cache::RemoteCache::import(client, source) {
            Ok(remote) => {
                if !args.quiet {
                    eprintln!("Imported {} cache records from {from}", remote.len());
                }
                opts.cache_from = Some(std::sync::Arc::new(remote));
            }
            // A missing cache is normal on a first build: warn and go on.
            Err(e) if !args.quiet => {
                eprintln!(
                    "warning: no build cache from `{from}`: {:#}",
                    anyhow::Error::from(e)
                )
            }
            Err(_) => {}
        }
    }
    let images = CliImages {
        policy: args.pull,
        registry: &args.registry,
        quiet: args.quiet,
    };
    let reporter: Box<dyn Reporter> = if args.quiet {
        Box::new(NoProgress)
    } else {
        Box::new(StepLines {
            blobs: crate::cli::progress::reporter(false),
        })
    };
    let built = match build::build(store, &cf, &ctx, &opts, &images, reporter.as_ref()) {
        Ok(b) => b,
        Err(BuildError::Interrupted) => {
            eprintln!("error: the build was interrupted; nothing was committed");
            return Ok(ExitCode::from(EXIT_INTERRUPTED));
        }
        Err(e) => return Err(e.into()),
    };
    let id = built.image.image_id.to_string();
    if let Some(path) = &args.iidfile {
        std::fs::write(path, &id).with_context(|| format!("write `{}`", path.display()))?;
    }
    for output in &outputs {
        export(store, &built, output, &args, reporter.as_ref())?;
    }
    if let Some(to) = &args.cache_to {
        let target = cache_ref(to)?;
        let client = super::registry_client(&args.registry)?;
        let digest = build::remote_cache::export(&client, store, &target, &built.cache_records)
            .with_context(|| format!("push the build cache to `{to}`"))?;
        if !args.quiet {
            eprintln!(
                "Exported {} cache records to {target} ({digest})",
                built.cache_records.len()
            );
        }
    }
    if !args.quiet {
        let names = if built.names.is_empty() {
            String::new()
        } else {
            format!(" as {}", built.names.join(", "))
        };
        eprintln!(
            "Built {}{names} in {:.2}s ({} steps run, {} from cache)",
            built.image.image_id.short(),
            started.elapsed().as_secs_f64(),
            built.steps_run,
            built.steps_cached,
        );
    }
    println!("{id}");
    Ok(ExitCode::SUCCESS)
}

/// Where `--output` sends the built image.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Output {
    /// Push every name.
    Registry,
    /// An OCI archive (tar), or an OCI layout directory.
    Oci(PathBuf),
    /// A docker-archive (`docker load` format).
    Docker(PathBuf),
}

impl Output {
    fn parse(spec: &str) -> Result<Output> {
        let mut kind = None;
        let mut dest = None;
        for part in spec.split(',') {
            match part.split_once('=') {
                Some(("type", v)) => kind = Some(v.to_string()),
                Some(("dest", v)) => dest = Some(PathBuf::from(v)),
                _ => bail!(
                    "invalid --output `{spec}`: expected type=registry, type=oci,dest=PATH or type=docker,dest=FILE"
                ),
            }
        }
        let need_dest = |kind: &str| {
            dest.clone()
                .ok_or_else(|| anyhow::anyhow!("--output type={kind} needs dest=PATH (`{spec}`)"))
        };
        match kind.as_deref() {
            Some("registry") | Some("image") if dest.is_none() => Ok(Output::Registry),
            Some("oci") => Ok(Output::Oci(need_dest("oci")?)),
            Some("docker") => Ok(Output::Docker(need_dest("docker")?)),
            _ => bail!(
                "invalid --output `{spec}`: expected type=registry, type=oci,dest=PATH or type=docker,dest=FILE"
            ),
        }
    }
}

/// Sends the built image to one `--output`.
#[allow(clippy::print_stderr)]
fn export(
    store: &Store,
    built: &build::Built,
    output: &Output,
    args: &BuildArgs,
    reporter: &dyn Reporter,
) -> Result<()> {
    match output {
        Output::Registry => {
            let client = super::registry_client(&args.registry)?;
            for name in &built.names {
                let image = store
                    .image(name)?
                    .ok_or_else(|| anyhow::anyhow!("image `{name}` vanished after the build"))?;
                let destination = crate::reference::ImageRef::parse(name)?;
                let pushed = crate::push::push(
                    &client,
                    store,
                    &image,
                    &destination,
                    &crate::push::PushOptions::default(),
                    reporter,
                )?;
                if !args.quiet {
                    eprintln!("Pushed {} ({})", pushed.destination, pushed.manifest.digest);
                }
            }
            Ok(())
        }
        Output::Oci(path) | Output::Docker(path) => {
            use crate::archive::{Format, SaveImage, SaveTo, save};
            let format = match output {
                Output::Docker(_) => Format::DockerArchive,
                _ if path.is_dir() || path.to_string_lossy().ends_with('/') => Format::OciDir,
                _ => Format::OciArchive,
            };
            let images: Vec<SaveImage> = if built.names.is_empty() {
                vec![SaveImage {
                    name: None,
                    manifest: built.image.named.clone(),
                }]
            } else {
                built
                    .names
                    .iter()
                    .map(|n| SaveImage {
                        name: Some(n.clone()),
                        manifest: built.image.named.clone(),
                    })
                    .collect()
            };
            save(store, &images, format, SaveTo::Path(path), reporter)
                .with_context(|| format!("write the image to `{}`", path.display()))?;
            if !args.quiet {
                eprintln!("Wrote {} {}", format.name(), path.display());
            }
            Ok(())
        }
    }
}

fn absolute(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

/// (label for messages, text, path when it is a file).
fn read_containerfile(args: &BuildArgs) -> Result<(String, String, Option<PathBuf>)> {
    if args.file.as_deref() == Some(Path::new("-")) {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("read the Containerfile from stdin")?;
        return Ok(("-".into(), text, None));
    }
    let path = match &args.file {
        Some(p) => p.clone(),
        None => {
            let containerfile = args.context.join("Containerfile");
            if containerfile.exists() {
                containerfile
            } else {
                args.context.join("Dockerfile")
            }
        }
    };
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "read the Containerfile `{}` (give one with -f FILE)",
            path.display()
        )
    })?;
    Ok((path.display().to_string(), text, Some(path)))
}

/// Base images through the store, pulled as `--pull` says.
struct CliImages<'a> {
    policy: PullPolicy,
    registry: &'a RegistryArgs,
    quiet: bool,
}

impl BaseImages for CliImages<'_> {
    fn image(
        &self,
        store: &Store,
        name: &str,
        platform: &Platform,
    ) -> Result<ImageRecord, Box<dyn std::error::Error + Send + Sync>> {
        image_by_policy(
            store,
            name,
            self.policy,
            platform,
            self.registry,
            self.quiet,
        )
        .map_err(|e| format!("{e:#}").into())
    }
}

/// Step lines on stderr (BuildKit's plain progress, roughly); blob events
/// of base image pulls go to the usual pull reporter.
struct StepLines {
    blobs: Box<dyn Reporter>,
}

#[allow(clippy::print_stderr)]
impl Reporter for StepLines {
    fn blob_start(&self, digest: &crate::oci::Digest, size: u64, what: &str) {
        self.blobs.blob_start(digest, size, what)
    }
    fn blob_progress(&self, digest: &crate::oci::Digest, bytes: u64) {
        self.blobs.blob_progress(digest, bytes)
    }
    fn blob_done(&self, digest: &crate::oci::Digest, outcome: BlobOutcome) {
        self.blobs.blob_done(digest, outcome)
    }
    fn status(&self, message: &str) {
        self.blobs.status(message)
    }
    fn step(&self, event: &StepEvent) {
        match event {
            StepEvent::Started { id, text } => eprintln!("{id} {text}"),
            StepEvent::Cached { id } => eprintln!("{id} CACHED"),
            StepEvent::Done { id, elapsed } => {
                if elapsed.as_millis() >= 100 {
                    eprintln!("{id} DONE {:.1}s", elapsed.as_secs_f64());
                }
            }
            StepEvent::Explain { id, reason } => eprintln!("{id} cache miss: {reason}"),
            StepEvent::Committing { what } => eprintln!("{what}"),
        }
    }
    fn step_output(&self, bytes: &[u8]) {
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(bytes);
        let _ = err.flush();
    }
}
