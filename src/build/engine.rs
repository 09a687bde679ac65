//! The build engine: a parsed Containerfile, a context and options → an
//! image in the store.
//!
//! Stages are built on demand, starting from the target (`--target`, else
//! the last stage): a stage that another one names in `FROM` or
//! `COPY --from` is built when it is first needed, once, so stages the
//! target does not need are never built. A stage's state is an
//! `ImageState`: the config so far (with `rootfs.diff_ids` and history),
//! its layers, and the cache key of its last step.
//!
//! Every instruction extends the key chain (see [`super::cache`]); only
//! steps that make a layer (RUN, COPY, ADD) are looked up in and recorded to
//! the store's build cache, since metadata steps cost nothing to redo. A hit
//! reuses the layer and the history entry's time, so a rebuild from cache
//! gives the same image ID. ARG values enter the keys of RUN steps (they are
//! RUN's environment), and of any step whose expanded words they change.
//!
//! Interruption: the engine listens for SIGINT/SIGTERM/SIGHUP/SIGQUIT for
//! the whole build (a RUN's container gets them forwarded by the runtime)
//! and stops at the next step boundary with [`BuildError::Interrupted`];
//! every container, mount and transaction is released by its guard.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::time::Instant;

use super::cache::{CacheKey, StepInputs};
use super::commit::{self, ImageFormat, LayerRef, WrittenImage};
use super::config::{Healthcheck as ConfigHealthcheck, Metadata, StageConfig};
use super::context::Context;
use super::copy::{CopyOptions, CopySource, plan_copy};
use super::explain::{BuildRecord, StepRecord};
use super::run::run_step;
use super::{At, BuildError, Location};
use crate::container::{self, Container, Network, RootfsSource};
use crate::containerfile::{
    self, BuildArgs, Command, Containerfile, GlobalScope, Healthcheck, ImageSource, Instruction,
    Located, PlatformArgs, RunCommand, StageScope,
};
use crate::layer::{DiffOptions, compression};
use crate::oci::image::ContainerConfig;
use crate::oci::{Compression, Digest, ImageConfig, Platform, time};
use crate::progress::{Reporter, StepEvent, StepId};
use crate::rootfs;
use crate::runtime::cgroup::Limits;
use crate::store::{CacheRecord, ImageRecord, Store};
use crate::sys;

/// Finds (and if the policy says so, pulls) the images a build names in
/// FROM and `COPY --from`. The CLI implements it with its pull options.
pub trait BaseImages {
    fn image(
        &self,
        store: &Store,
        name: &str,
        platform: &Platform,
    ) -> Result<ImageRecord, Box<dyn std::error::Error + Send + Sync>>;
}

/// How to build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub build_args: BuildArgs,
    /// The stage to build; default the last.
    pub target: Option<String>,
    /// Normalised names to give the image.
    pub names: Vec<String>,
    /// Do not look steps up in the cache (results are still recorded).
    pub no_cache: bool,
    /// Stages (by name or index) whose steps are not looked up.
    pub no_cache_stages: Vec<String>,
    /// Report why each missed step missed.
    pub explain_cache: bool,
    /// The platform the image is for.
    pub platform: Platform,
    /// The default network of RUN steps.
    pub network: Network,
    pub limits: Limits,
    pub format: ImageFormat,
    pub compression: Compression,
    /// `None`: the compression's default level.
    pub compression_level: Option<i32>,
    /// `SOURCE_DATE_EPOCH`: layer mtimes clamped and every `created` set to it.
    pub timestamp: Option<i64>,
    /// What identifies "the same Containerfile" across builds, for
    /// `--explain-cache` (the file's and the context's absolute paths).
    pub identity: String,
    /// A registry cache to take hits from (`--cache-from`).
    pub cache_from: Option<std::sync::Arc<super::remote_cache::RemoteCache>>,
}

impl BuildOptions {
    pub fn new(identity: impl Into<String>) -> Self {
        BuildOptions {
            build_args: BuildArgs::new(),
            target: None,
            names: Vec::new(),
            no_cache: false,
            no_cache_stages: Vec::new(),
            explain_cache: false,
            platform: Platform::host(),
            network: Network::Host,
            limits: Limits::default(),
            format: ImageFormat::Oci,
            compression: Compression::Gzip,
            compression_level: None,
            timestamp: None,
            identity: identity.into(),
            cache_from: None,
        }
    }
}

/// What a build produced.
#[derive(Debug, Clone)]
pub struct Built {
    pub image: WrittenImage,
    pub names: Vec<String>,
    /// Steps that ran (RUN, COPY, ADD) and steps found in the cache.
    pub steps_run: usize,
    pub steps_cached: usize,
    /// Containers started (RUN steps that ran).
    pub containers_started: usize,
    /// The cache records of the layer steps of every stage built (record
    /// key → record), for `--cache-to`.
    pub cache_records: BTreeMap<String, CacheRecord>,
}

/// The state of a stage after some of its steps.
#[derive(Debug, Clone)]
struct ImageState {
    config: StageConfig,
    layers: Vec<LayerRef>,
    key: CacheKey,
    /// For container records: the stage or image this came from.
    name: String,
    /// When the newest layer of the state was made (a cached step keeps
    /// its original time; a base image brings its own `created`). Metadata
    /// steps and the config take it, so a rebuild from cache gives the same
    /// image ID, as with BuildKit.
    time: Option<String>,
}

impl ImageState {
    fn diff_ids(&self) -> Vec<crate::oci::DiffId> {
        self.layers.iter().map(|l| l.diff_id.clone()).collect()
    }

    fn container_config(&self) -> &ContainerConfig {
        static EMPTY: std::sync::OnceLock<ContainerConfig> = std::sync::OnceLock::new();
        self.config
            .image
            .config
            .as_ref()
            .unwrap_or_else(|| EMPTY.get_or_init(ContainerConfig::default))
    }

    fn workdir(&self) -> String {
        self.container_config()
            .working_dir
            .clone()
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".to_string())
    }
}

/// Builds the target stage of `cf` and names the image.
pub fn build(
    store: &Store,
    cf: &Containerfile,
    ctx: &Context,
    opts: &BuildOptions,
    images: &dyn BaseImages,
    reporter: &dyn Reporter,
) -> Result<Built, BuildError> {
    let signals = sys::signal::SignalPipe::open().map_err(|e| BuildError::io("signal pipe", e))?;
    let target = match &opts.target {
        None => cf
            .stages
            .len()
            .checked_sub(1)
            .ok_or_else(|| BuildError::Unsupported {
                at: At::default(),
                what: "a Containerfile without FROM".into(),
            })?,
        Some(t) => cf
            .stage_by_name(t)
            .or_else(|| t.parse::<usize>().ok().filter(|i| *i < cf.stages.len()))
            .ok_or_else(|| BuildError::UnknownTarget {
                target: t.clone(),
                stages: stage_names(cf),
            })?,
    };
    let platform_args = PlatformArgs {
        build: Platform::host(),
        target: opts.platform.clone(),
    };
    let global = GlobalScope::new(cf, &opts.build_args, &platform_args)?;
    let previous = if opts.explain_cache {
        store
            .build_record(&BuildRecord::id(&opts.identity))
            .map_err(BuildError::store)?
            .and_then(|v| serde_json::from_value::<BuildRecord>(v).ok())
    } else {
        None
    };
    let mut engine = Engine {
        store,
        cf,
        ctx,
        opts,
        images,
        reporter,
        signals,
        global,
        done: HashMap::new(),
        active: HashSet::new(),
        multi_stage: cf.stages.len() > 1,
        record: BuildRecord::default(),
        previous,
        steps_run: 0,
        steps_cached: 0,
        containers_started: 0,
        used_records: BTreeMap::new(),
    };
    let state = engine.stage(target, None)?;
    engine.check_interrupt()?;

    engine.materialize(&state.layers)?;
    let mut config = state.config.image.clone();
    config.created = Some(engine.created_at(&state));
    config.rootfs.kind = "layers".into();
    config.rootfs.diff_ids = state.diff_ids();
    reporter.step(&StepEvent::Committing {
        what: "writing the image".into(),
    });
    let image = commit::write_image(store, &config, &state.layers, opts.format, &opts.names)?;
    if let Err(e) = store.put_build_record(
        &BuildRecord::id(&opts.identity),
        &serde_json::to_value(&engine.record).expect("a build record serialises"),
    ) {
        tracing::warn!("could not save the build record for --explain-cache: {e}");
    }
    Ok(Built {
        image,
        names: opts.names.clone(),
        steps_run: engine.steps_run,
        steps_cached: engine.steps_cached,
        containers_started: engine.containers_started,
        cache_records: engine.used_records,
    })
}

fn stage_names(cf: &Containerfile) -> String {
    cf.stages
        .iter()
        .map(|s| s.name.clone().unwrap_or_else(|| s.index.to_string()))
        .collect::<Vec<_>>()
        .join(", ")
}

struct Engine<'a> {
    store: &'a Store,
    cf: &'a Containerfile,
    ctx: &'a Context,
    opts: &'a BuildOptions,
    images: &'a dyn BaseImages,
    reporter: &'a dyn Reporter,
    signals: sys::signal::SignalPipe,
    global: GlobalScope,
    /// Stages built so far.
    done: HashMap<usize, ImageState>,
    /// Stages being built (for cycles).
    active: HashSet<usize>,
    multi_stage: bool,
    record: BuildRecord,
    previous: Option<BuildRecord>,
    steps_run: usize,
    steps_cached: usize,
    containers_started: usize,
    used_records: BTreeMap<String, CacheRecord>,
}

impl Engine<'_> {
    /// Makes sure every layer of `layers` is in the store: a hit from the
    /// registry cache is downloaded only now, when something needs it.
    fn materialize(&self, layers: &[LayerRef]) -> Result<(), BuildError> {
        for layer in layers {
            if self.store.has_layer(&layer.diff_id) && self.store.has_blob(&layer.blob.digest) {
                continue;
            }
            match &self.opts.cache_from {
                Some(remote) => remote.fetch_layer(self.store, layer)?,
                None => {
                    return Err(BuildError::LayerMissing {
                        at: At::default(),
                        image: "the build cache".into(),
                        diff_id: layer.diff_id.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    /// The record of a layer step: the local cache, else the same step
    /// cached in another compression (re-encoded), else the registry cache.
    fn find_record(
        &self,
        state: &ImageState,
        key: &CacheKey,
    ) -> Result<Option<CacheRecord>, BuildError> {
        if let Some(r) = self
            .store
            .cache_get(&self.record_key(key))
            .map_err(BuildError::store)?
            && self.store.has_blob(&r.layer.digest)
            && self.store.has_layer(&r.diff_id)
        {
            return Ok(Some(r));
        }
        if let Some(r) = self.recompressed(state, key)? {
            return Ok(Some(r));
        }
        Ok(self
            .opts
            .cache_from
            .as_ref()
            .and_then(|remote| remote.get(&self.record_key(key)).cloned()))
    }
    fn check_interrupt(&self) -> Result<(), BuildError> {
        if self.signals.drain().is_empty() {
            Ok(())
        } else {
            Err(BuildError::Interrupted)
        }
    }

    /// `created` for a step that makes something now: the fixed
    /// timestamp, or now.
    fn created(&self) -> String {
        match self.opts.timestamp {
            Some(t) => time::rfc3339(t, 0),
            None => time::now_rfc3339(),
        }
    }

    /// `created` for a metadata step and the config: the fixed timestamp,
    /// else the time of the state's newest layer (see [`ImageState::time`]).
    fn created_at(&self, state: &ImageState) -> String {
        match (self.opts.timestamp, &state.time) {
            (Some(t), _) => time::rfc3339(t, 0),
            (None, Some(t)) => t.clone(),
            (None, None) => time::now_rfc3339(),
        }
    }

    /// The name of a step's record in the store's cache: the step's key
    /// (which depends only on the build's inputs) with the options that
    /// change the layer's bytes, so a hit always has the form asked for.
    fn record_key(&self, key: &CacheKey) -> String {
        self.record_key_for(key, self.opts.compression, self.opts.compression_level)
    }

    /// `level` `None` is the compression's default level, named as a
    /// number, so a record made at the default and one made with that
    /// level given explicitly are the same record.
    fn record_key_for(
        &self,
        key: &CacheKey,
        compression: Compression,
        level: Option<i32>,
    ) -> String {
        use sha2::Digest as _;
        let level = compression::effective_level(compression, level)
            .ok()
            .flatten();
        let mut h = sha2::Sha256::new();
        h.update(b"builder-cache-record-v2\0");
        h.update(key.hex().as_bytes());
        h.update(format!("\0{compression:?}\0{level:?}\0{:?}", self.opts.timestamp).as_bytes());
        hex::encode(h.finalize())
    }

    fn location(&self, line: usize) -> Location {
        Location {
            file: self.cf.label.clone(),
            line,
        }
    }

    fn diff_options(&self, exclude: Vec<PathBuf>) -> DiffOptions {
        DiffOptions {
            compression: self.opts.compression,
            level: self.opts.compression_level,
            timestamp: self.opts.timestamp,
            exclude,
            ..DiffOptions::default()
        }
    }

    /// The state at the end of stage `index`, built if not yet.
    fn stage(
        &mut self,
        index: usize,
        needed_at: Option<Location>,
    ) -> Result<ImageState, BuildError> {
        if let Some(s) = self.done.get(&index) {
            return Ok(s.clone());
        }
        let stage = &self.cf.stages[index];
        let stage_label = stage.name.clone().unwrap_or_else(|| index.to_string());
        if !self.active.insert(index) {
            return Err(BuildError::StageCycle {
                at: At(needed_at),
                stage: stage_label,
            });
        }
        let from_loc = self.location(stage.line);
        let base = self.cf.expand(&stage.base, &self.global)?;
        let platform = match &stage.platform {
            Some(word) => {
                let p = self.cf.expand(word, &self.global)?;
                Platform::parse(&p).map_err(|e| BuildError::Image {
                    at: At(Some(from_loc.clone())),
                    image: base.clone(),
                    source: Box::new(e),
                })?
            }
            None => self.opts.platform.clone(),
        };
        let started = Instant::now();
        let mut state = match self.cf.resolve_base(index, &base) {
            ImageSource::Scratch => self.scratch(),
            ImageSource::Stage(j) => {
                let mut s = self.stage(j, Some(from_loc.clone()))?;
                s.name = stage_label.clone();
                s
            }
            ImageSource::Image(name) => self.base_image(&name, &platform, &from_loc)?,
        };
        // Stages this one copies from are built first when their names are
        // known now (almost always: `--from` words rarely use stage ARGs),
        // so each stage's step lines come out together.
        for located in &stage.instructions {
            if let Instruction::Copy(c) = &located.value
                && let Some(word) = &c.from
                && let Ok(from) = self.cf.expand(word, &self.global)
                && let ImageSource::Stage(j) = self.cf.resolve_from(&from)
                && j != index
            {
                self.stage(j, Some(self.location(located.line)))?;
            }
        }
        let triggers = onbuild_triggers(&state.config.image);
        if !triggers.is_empty()
            && let Some(c) = state.config.image.config.as_mut()
        {
            c.extra.remove("OnBuild");
        }
        let total = stage.instructions.len() + triggers.len() + 1;
        let multi_stage = self.multi_stage;
        let id = |number| StepId {
            stage: stage_label.clone(),
            multi_stage,
            number,
            total,
        };
        self.reporter.step(&StepEvent::Started {
            id: id(1),
            text: stage.source.clone(),
        });
        self.reporter.step(&StepEvent::Done {
            id: id(1),
            elapsed: started.elapsed(),
        });
        let env: Vec<(String, String)> = state
            .container_config()
            .env
            .iter()
            .flatten()
            .map(|e| match e.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (e.clone(), String::new()),
            })
            .collect();
        let mut scope = self.global.stage(&env);
        let mut number = 1;
        for trigger in &triggers {
            number += 1;
            let parsed = parse_trigger(trigger, &self.cf.label, stage.line)?;
            for located in &parsed {
                let located = Located {
                    line: stage.line,
                    end_line: stage.line,
                    source: format!("ONBUILD {}", located.source),
                    value: located.value.clone(),
                };
                self.step(&mut state, &mut scope, &located, id(number), index)?;
            }
        }
        for located in &stage.instructions {
            number += 1;
            self.step(&mut state, &mut scope, located, id(number), index)?;
        }
        self.active.remove(&index);
        self.done.insert(index, state.clone());
        Ok(state)
    }

    fn scratch(&self) -> ImageState {
        let image = ImageConfig {
            architecture: self.opts.platform.architecture.clone(),
            os: self.opts.platform.os.clone(),
            variant: self.opts.platform.variant.clone(),
            ..ImageConfig::default()
        };
        ImageState {
            config: StageConfig::new(image),
            layers: Vec::new(),
            key: CacheKey::base("scratch"),
            name: "scratch".into(),
            time: None,
        }
    }

    /// An image from the store (pulled if needed) as a starting state.
    fn base_image(
        &self,
        name: &str,
        platform: &Platform,
        at: &Location,
    ) -> Result<ImageState, BuildError> {
        let (image_id, config, layers) = self.image_parts(name, platform, at)?;
        let mut config = config;
        let time = config.created.take();
        Ok(ImageState {
            config: StageConfig::new(config),
            layers,
            key: CacheKey::base(&image_id.to_string()),
            name: name.to_string(),
            time,
        })
    }

    /// An image's ID, config and layers, each layer unpacked in the store.
    fn image_parts(
        &self,
        name: &str,
        platform: &Platform,
        at: &Location,
    ) -> Result<(Digest, ImageConfig, Vec<LayerRef>), BuildError> {
        let image_err = |source: Box<dyn std::error::Error + Send + Sync>| BuildError::Image {
            at: At(Some(at.clone())),
            image: name.to_string(),
            source,
        };
        let record = self
            .images
            .image(self.store, name, platform)
            .map_err(image_err)?;
        let (_, manifest) = self
            .store
            .manifest(&record.manifest.digest)
            .map_err(|e| image_err(Box::new(e)))?;
        let bytes = self
            .store
            .read_blob(&manifest.config.digest)
            .map_err(|e| image_err(Box::new(e)))?;
        let config: ImageConfig =
            serde_json::from_slice(&bytes).map_err(|e| image_err(Box::new(e)))?;
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(image_err(
                format!(
                    "its config lists {} layers and its manifest {}",
                    config.rootfs.diff_ids.len(),
                    manifest.layers.len()
                )
                .into(),
            ));
        }
        let mut layers = Vec::with_capacity(manifest.layers.len());
        for (blob, diff_id) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
            if !self.store.has_layer(diff_id) {
                return Err(BuildError::LayerMissing {
                    at: At(Some(at.clone())),
                    image: name.to_string(),
                    diff_id: diff_id.clone(),
                });
            }
            layers.push(LayerRef {
                blob: blob.clone(),
                diff_id: diff_id.clone(),
            });
        }
        Ok((manifest.config.digest, config, layers))
    }

    /// Whether steps of stage `index` may be looked up in the cache.
    fn cache_allowed(&self, index: usize) -> bool {
        if self.opts.no_cache {
            return false;
        }
        let stage = &self.cf.stages[index];
        !self.opts.no_cache_stages.iter().any(|s| {
            stage.name.as_deref() == Some(s.to_lowercase().as_str()) || *s == index.to_string()
        })
    }

    /// One instruction.
    fn step(
        &mut self,
        state: &mut ImageState,
        scope: &mut StageScope,
        located: &Located<Instruction>,
        id: StepId,
        stage_index: usize,
    ) -> Result<(), BuildError> {
        self.check_interrupt()?;
        let loc = self.location(located.line);
        let started = Instant::now();
        self.reporter.step(&StepEvent::Started {
            id: id.clone(),
            text: first_line(&located.source),
        });
        let result = self.step_inner(state, scope, located, &id, stage_index);
        let result = result.map_err(|e| e.located(loc));
        if let Ok(cached) = &result
            && !cached
        {
            self.reporter.step(&StepEvent::Done {
                id,
                elapsed: started.elapsed(),
            });
        }
        result.map(|_| ())
    }

    /// Returns whether the step was a cache hit.
    fn step_inner(
        &mut self,
        state: &mut ImageState,
        scope: &mut StageScope,
        located: &Located<Instruction>,
        id: &StepId,
        stage_index: usize,
    ) -> Result<bool, BuildError> {
        let cf = self.cf;
        let meta = match &located.value {
            Instruction::Run(run) => return self.run(state, scope, located, run, id, stage_index),
            Instruction::Copy(c) => {
                let from = c.from.as_ref().map(|w| cf.expand(w, &*scope)).transpose()?;
                let copy = CopyStep {
                    sources: &c.sources,
                    dest: &c.dest,
                    chown: c.chown.as_ref(),
                    chmod: c.chmod.as_ref(),
                    checksum: None,
                    from,
                    add: false,
                };
                return self.copy(state, scope, located, copy, id, stage_index);
            }
            Instruction::Add(a) => {
                let checksum = a
                    .checksum
                    .as_ref()
                    .map(|w| cf.expand(w, &*scope))
                    .transpose()?;
                let copy = CopyStep {
                    sources: &a.sources,
                    dest: &a.dest,
                    chown: a.chown.as_ref(),
                    chmod: a.chmod.as_ref(),
                    checksum,
                    from: None,
                    add: true,
                };
                return self.copy(state, scope, located, copy, id, stage_index);
            }
            Instruction::Env(pairs) => Metadata::Env(scope.apply_env(cf, pairs)?),
            Instruction::Arg(decls) => {
                scope.declare(cf, decls)?;
                let names: Vec<String> = decls
                    .iter()
                    .map(|d| cf.expand(&d.name, &*scope))
                    .collect::<Result<_, _>>()?;
                let values: BTreeMap<String, String> = scope.args().into_iter().collect();
                Metadata::Arg(
                    names
                        .into_iter()
                        .map(|n| match values.get(&n) {
                            Some(v) => format!("{n}={v}"),
                            None => n,
                        })
                        .collect(),
                )
            }
            Instruction::Label(pairs) => Metadata::Label(scope.expand_pairs(cf, pairs)?),
            Instruction::Expose(words) => {
                let mut ports = Vec::new();
                for w in words {
                    ports.extend(cf.expand_fields(w, &*scope)?);
                }
                Metadata::Expose(ports)
            }
            Instruction::Volume(words) => Metadata::Volume(
                words
                    .iter()
                    .map(|w| cf.expand(w, &*scope))
                    .collect::<Result<_, _>>()?,
            ),
            Instruction::Workdir(w) => Metadata::Workdir(cf.expand(w, &*scope)?),
            Instruction::User(w) => Metadata::User(cf.expand(w, &*scope)?),
            Instruction::StopSignal(w) => Metadata::StopSignal(cf.expand(w, &*scope)?),
            Instruction::Cmd(c) => Metadata::Cmd(c.clone()),
            Instruction::Entrypoint(c) => Metadata::Entrypoint(c.clone()),
            Instruction::Shell(v) => Metadata::Shell(v.clone()),
            Instruction::Healthcheck(Healthcheck::None) => Metadata::Healthcheck(None),
            Instruction::Healthcheck(Healthcheck::Check {
                command,
                interval,
                timeout,
                start_period,
                start_interval,
                retries,
            }) => Metadata::Healthcheck(Some(ConfigHealthcheck {
                command: command.clone(),
                interval: *interval,
                timeout: *timeout,
                start_period: *start_period,
                start_interval: *start_interval,
                retries: *retries,
            })),
            Instruction::Onbuild(o) => Metadata::Onbuild(o.source.clone()),
            Instruction::Maintainer(m) => Metadata::Maintainer(m.clone()),
        };
        let created = self.created_at(state);
        state
            .config
            .apply(&meta, Some(created))
            .map_err(|reason| BuildError::Config {
                at: At::default(),
                reason,
            })?;
        // ARG's key names the ARGs, not their values: a value reaches the
        // keys of the RUN steps that see it and of the words it changes.
        let key_text = match &meta {
            Metadata::Arg(_) => match &located.value {
                Instruction::Arg(decls) => format!(
                    "ARG {}",
                    decls
                        .iter()
                        .map(|d| d.name.text.clone())
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
                _ => unreachable!("an ARG's metadata comes from an ARG"),
            },
            _ => state
                .config
                .image
                .history
                .last()
                .and_then(|h| h.created_by.clone())
                .unwrap_or_default(),
        };
        let key = StepInputs {
            parent: &state.key,
            instruction: &key_text,
            args: &[],
            content: None,
        }
        .key();
        self.record_step(stage_index, id, &key_text, &key, &state.key, &[], &[]);
        state.key = key;
        if matches!(meta, Metadata::Workdir(_)) {
            return self.workdir_layer(state, id, stage_index);
        }
        Ok(false)
    }

    /// WORKDIR creates its directory, owned by the USER, when the image
    /// lacks it, as BuildKit and Buildah do: a layer holding the new
    /// directories (and, unchanged, the existing ones above them), under
    /// the WORKDIR step's key. Returns whether it came from the cache.
    fn workdir_layer(
        &mut self,
        state: &mut ImageState,
        id: &StepId,
        stage_index: usize,
    ) -> Result<bool, BuildError> {
        let workdir = state.workdir();
        if workdir == "/" {
            return Ok(false);
        }
        let key = state.key.clone();
        let found = if self.cache_allowed(stage_index) {
            self.find_record(state, &key)?
        } else {
            None
        };
        if let Some(record) = found {
            self.used_records
                .insert(self.record_key(&key), record.clone());
            state.layers.push(LayerRef {
                blob: record.layer,
                diff_id: record.diff_id,
            });
            if let Some(h) = state.config.image.history.last_mut() {
                h.empty_layer = false;
                if self.opts.timestamp.is_none() && record.created.is_some() {
                    h.created = record.created.clone();
                    state.time = record.created;
                }
            }
            self.steps_cached += 1;
            self.reporter.step(&StepEvent::Cached { id: id.clone() });
            return Ok(true);
        }
        // State made of registry-cache hits not downloaded yet: the build
        // that exported them ran this very step on the same state, and it
        // has no record, so the directory existed and no layer is needed.
        // (Looking would mean downloading layers nothing else may need.)
        if state
            .layers
            .iter()
            .any(|l| !self.store.has_layer(&l.diff_id))
            && self.opts.cache_from.is_some()
        {
            return Ok(false);
        }
        self.materialize(&state.layers)?;
        let view = View::mount(self.store, &state.diff_ids(), &state.name)?;
        let root = view.path();
        let rel = crate::runtime::plan::resolve_in_root(&root, std::path::Path::new(&workdir))
            .map_err(|e| BuildError::io(&workdir, e))?;
        if root.join(&rel).is_dir() {
            return Ok(false);
        }
        let user = state.container_config().user.clone().unwrap_or_default();
        let owner = if user.is_empty() {
            (0, 0)
        } else {
            let u = crate::runtime::user::resolve(&root, &user).map_err(|source| {
                BuildError::Chown {
                    at: At::default(),
                    value: user.clone(),
                    source,
                }
            })?;
            (u.uid, u.gid)
        };
        let txn = self.store.begin().map_err(BuildError::store)?;
        let layer_dir = txn.layer_dir();
        make_workdir(&root, &layer_dir, &rel, owner)?;
        drop(view);
        let layer = self.commit_txn_layer(state, &txn)?;
        let history = state
            .config
            .image
            .history
            .last_mut()
            .expect("WORKDIR's history entry was just added");
        history.empty_layer = false;
        let created = self.created();
        history.created = Some(created.clone());
        state.time = Some(created);
        let history = state
            .config
            .image
            .history
            .last()
            .expect("WORKDIR's history entry was just added");
        let record = CacheRecord {
            layer: layer.blob.clone(),
            diff_id: layer.diff_id.clone(),
            created: history.created.clone(),
            created_by: history.created_by.clone().unwrap_or_default(),
        };
        self.store
            .cache_put(&self.record_key(&key), &record)
            .map_err(BuildError::store)?;
        self.used_records.insert(self.record_key(&key), record);
        state.layers.push(layer);
        self.steps_run += 1;
        Ok(false)
    }

    #[allow(clippy::too_many_arguments)]
    fn record_step(
        &mut self,
        stage: usize,
        id: &StepId,
        text: &str,
        key: &CacheKey,
        parent: &CacheKey,
        args: &[(String, String)],
        files: &[(String, String)],
    ) {
        self.record.steps.push(StepRecord {
            stage,
            number: id.number,
            text: text.to_string(),
            key: key.hex(),
            parent: parent.hex(),
            args: args.to_vec(),
            files: files.to_vec(),
        });
    }

    /// Looks `key` up; on a hit extends `state` and reports it.
    fn lookup(
        &mut self,
        state: &mut ImageState,
        key: &CacheKey,
        id: &StepId,
        stage_index: usize,
    ) -> Result<bool, BuildError> {
        if !self.cache_allowed(stage_index) {
            return Ok(false);
        }
        let Some(record) = self.find_record(state, key)? else {
            return Ok(false);
        };
        self.used_records
            .insert(self.record_key(key), record.clone());
        state.layers.push(LayerRef {
            blob: record.layer.clone(),
            diff_id: record.diff_id.clone(),
        });
        let created = match self.opts.timestamp {
            Some(_) => Some(self.created()),
            None => record.created.clone(),
        };
        if created.is_some() {
            state.time = created.clone();
        }
        state.config.image.history.push(crate::oci::image::History {
            created,
            created_by: Some(record.created_by.clone()),
            comment: Some("buildkit.dockerfile.v0".into()),
            ..Default::default()
        });
        state.key = key.clone();
        self.steps_cached += 1;
        self.reporter.step(&StepEvent::Cached { id: id.clone() });
        Ok(true)
    }

    /// The step cached in another compression (or at another level), its
    /// layer re-diffed into a blob of the asked one (and recorded): cheaper
    /// than running the step again, and the layer stays the same.
    fn recompressed(
        &self,
        state: &ImageState,
        key: &CacheKey,
    ) -> Result<Option<CacheRecord>, BuildError> {
        let wanted = self.record_key(key);
        for other in [Compression::Gzip, Compression::Zstd, Compression::None] {
            let other_key = self.record_key_for(key, other, None);
            if other_key == wanted {
                continue;
            }
            let Some(record) = self
                .store
                .cache_get(&other_key)
                .map_err(BuildError::store)?
            else {
                continue;
            };
            if !self.store.has_layer(&record.diff_id) {
                continue;
            }
            let lowers = rootfs::lower_dirs(self.store, &state.diff_ids());
            let Some(layer) = commit::recompress(
                self.store,
                &record.diff_id,
                &lowers,
                &self.diff_options(Vec::new()),
            )?
            else {
                continue;
            };
            let converted = CacheRecord {
                layer: layer.blob,
                diff_id: layer.diff_id,
                ..record
            };
            self.store
                .cache_put(&self.record_key(key), &converted)
                .map_err(BuildError::store)?;
            return Ok(Some(converted));
        }
        Ok(None)
    }

    /// After a miss: says why, when asked.
    fn explain(
        &self,
        id: &StepId,
        stage_index: usize,
        text: &str,
        args: &[(String, String)],
        files: &[(String, String)],
        parent: &CacheKey,
    ) {
        if !self.opts.explain_cache {
            return;
        }
        let reason = super::explain::why(
            self.previous.as_ref(),
            &self.record,
            stage_index,
            id.number,
            text,
            args,
            files,
            &parent.hex(),
            !self.cache_allowed(stage_index),
        );
        self.reporter.step(&StepEvent::Explain {
            id: id.clone(),
            reason,
        });
    }

    /// Commits what a step wrote into the transaction's layer dir (COPY,
    /// ADD, WORKDIR) as a layer on top of `state`.
    fn commit_txn_layer(
        &self,
        state: &ImageState,
        txn: &crate::store::Transaction,
    ) -> Result<LayerRef, BuildError> {
        let lowers = rootfs::lower_dirs(self.store, &state.diff_ids());
        commit::commit_dir(
            self.store,
            txn,
            &txn.layer_dir(),
            &lowers,
            &self.diff_options(Vec::new()),
            || Ok(()),
        )
    }

    /// Records a freshly made layer in `state` and the cache.
    fn add_layer(
        &mut self,
        state: &mut ImageState,
        layer: LayerRef,
        key: CacheKey,
        created_by: String,
    ) -> Result<(), BuildError> {
        let created = self.created();
        state.time = Some(created.clone());
        let record = CacheRecord {
            layer: layer.blob.clone(),
            diff_id: layer.diff_id.clone(),
            created: Some(created.clone()),
            created_by: created_by.clone(),
        };
        self.store
            .cache_put(&self.record_key(&key), &record)
            .map_err(BuildError::store)?;
        self.used_records.insert(self.record_key(&key), record);
        state.layers.push(layer);
        state.config.image.history.push(crate::oci::image::History {
            created: Some(created),
            created_by: Some(created_by),
            comment: Some("buildkit.dockerfile.v0".into()),
            ..Default::default()
        });
        state.key = key;
        self.steps_run += 1;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn run(
        &mut self,
        state: &mut ImageState,
        scope: &StageScope,
        located: &Located<Instruction>,
        run: &containerfile::Run,
        id: &StepId,
        stage_index: usize,
    ) -> Result<bool, BuildError> {
        let shell = state.config.shell();
        let mut script: Option<String> = None;
        let argv: Vec<String> = match run.effective() {
            RunCommand::Exec(v) => v,
            RunCommand::Shell(text) => shell.iter().cloned().chain([text]).collect(),
            RunCommand::Script(body) if body.starts_with("#!") => {
                script = Some(body);
                vec![SCRIPT_PATH.to_string()]
            }
            RunCommand::Script(body) => shell.iter().cloned().chain([body]).collect(),
        };
        let network = match run.network {
            containerfile::Network::Default => self.opts.network,
            containerfile::Network::None => Network::None,
            containerfile::Network::Host => Network::Host,
        };
        if run.security == containerfile::Security::Insecure {
            return Err(BuildError::Unsupported {
                at: At::default(),
                what: "RUN --security=insecure".into(),
            });
        }
        let args = scope.args();
        let created_by = match &script {
            Some(body) => format!("RUN {} # buildkit", body.trim_end()),
            None => match &run.command {
                Command::Exec(_) => format!(
                    "RUN {} # buildkit",
                    serde_json::to_string(&argv).expect("strings serialise")
                ),
                Command::Shell(_) => format!("RUN {} # buildkit", argv.join(" ")),
            },
        };
        let key_text = format!(
            "RUN {}{}",
            serde_json::to_string(&argv).expect("strings serialise"),
            match (&script, run.network) {
                (Some(s), _) => format!(" script={s:?}"),
                (None, containerfile::Network::Default) => String::new(),
                (None, n) => format!(" network={n:?}"),
            }
        );
        let key = StepInputs {
            parent: &state.key,
            instruction: &key_text,
            args: &args,
            content: None,
        }
        .key();
        let parent = state.key.clone();
        self.record_step(stage_index, id, &key_text, &key, &parent, &args, &[]);
        if self.lookup(state, &key, id, stage_index)? {
            return Ok(true);
        }
        self.explain(id, stage_index, &key_text, &args, &[], &parent);

        self.materialize(&state.layers)?;
        let step_text = format!("{id} {}", first_line(&located.source));
        let c = state.container_config();
        let env: Vec<String> = scope
            .run_env()
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        // A `#!` heredoc is run as a file, bind-mounted read-only from a
        // scratch file that lives as long as the step.
        let script_file = match &script {
            Some(body) => Some(write_script(self.store, body)?),
            None => None,
        };
        let volumes = match &script_file {
            Some((_, path)) => vec![crate::runtime::spec::Bind {
                source: path.clone(),
                destination: PathBuf::from(SCRIPT_PATH),
                read_only: true,
            }],
            None => Vec::new(),
        };
        let config = container::Config {
            rootfs: RootfsSource {
                name: format!("build {}", state.name),
                id: None,
                layers: state.diff_ids(),
            },
            args: argv,
            env,
            workdir: state.workdir(),
            user: c.user.clone().unwrap_or_default(),
            network,
            limits: self.opts.limits,
            init: true,
            auto_remove: true,
            volumes,
            ..Default::default()
        };
        let started = Instant::now();
        let finished = match run_step(self.store, &config, &step_text, self.reporter) {
            Ok(f) => f,
            // A RUN ended by the Ctrl-C the runtime forwarded to it.
            Err(e) => {
                self.check_interrupt()?;
                return Err(e);
            }
        };
        self.containers_started += 1;
        let ran = started.elapsed();
        self.check_interrupt()?;
        let mut container = finished.container;
        let upper = container.upper_dir();
        let lowers = rootfs::lower_dirs(self.store, &state.diff_ids());
        let txn = self.store.begin().map_err(BuildError::store)?;
        let opts = self.diff_options(finished.created_mount_points);
        let layer = std::thread::scope(|scope| {
            let mut unmounting = Some(container.unmount_on(scope));
            let mut settle = || match unmounting.take().map(|h| h.join()) {
                None | Some(Ok(Ok(()))) => Ok(()),
                Some(Ok(Err(source))) => Err(BuildError::Container {
                    at: At::default(),
                    step: step_text.clone(),
                    source: Box::new(source),
                }),
                Some(Err(_)) => Err(BuildError::io(
                    "unmount the RUN's rootfs",
                    std::io::Error::other("the unmounting thread panicked"),
                )),
            };
            let committed =
                commit::commit_dir(self.store, &txn, &upper, &lowers, &opts, &mut settle);
            // A diff that failed before settling still waits for the
            // unmount, and says if it failed too (the container's removal
            // then finds the rootfs still mounted).
            if committed.is_err()
                && let Err(e) = settle()
            {
                tracing::warn!("{e}: {:?}", std::error::Error::source(&e));
            }
            committed
        })?;
        drop(txn);
        tracing::debug!(
            step = %step_text,
            run_ms = ran.as_millis() as u64,
            commit_ms = (started.elapsed() - ran).as_millis() as u64,
            "RUN step committed"
        );
        container.remove().map_err(|source| BuildError::Container {
            at: At::default(),
            step: step_text,
            source: Box::new(source),
        })?;
        self.add_layer(state, layer, key, created_by)?;
        Ok(false)
    }

    #[allow(clippy::too_many_arguments)]
    fn copy(
        &mut self,
        state: &mut ImageState,
        scope: &StageScope,
        located: &Located<Instruction>,
        copy: CopyStep<'_>,
        id: &StepId,
        stage_index: usize,
    ) -> Result<bool, BuildError> {
        let cf = self.cf;
        let loc = self.location(located.line);
        let mut sources = Vec::with_capacity(copy.sources.len());
        for s in copy.sources {
            sources.push(match s {
                containerfile::Source::Path(w) => CopySource::Path(cf.expand(w, scope)?),
                containerfile::Source::Heredoc(h) => CopySource::Heredoc {
                    name: h.name.clone(),
                    content: cf.expand_heredoc(h, scope)?,
                },
            });
        }
        let dest = cf.expand(copy.dest, scope)?;
        let chown = copy.chown.map(|w| cf.expand(w, scope)).transpose()?;
        let chmod = copy.chmod.map(|w| cf.expand(w, scope)).transpose()?;

        // Where sources come from: the context, or another stage's or
        // image's root filesystem. The key is computed without mounting
        // anything: for the context, from a plan against an empty root
        // (the parent key already covers the image the files land in, and
        // `--chown` enters as written); for `--from`, from the source
        // stage's key or image ID and the paths (BuildKit keys them so
        // too). So a hit mounts nothing, and a build from a remote cache
        // never needs a skipped stage's layers.
        let (from_layers, from_identity) = match &copy.from {
            None => (None, None),
            Some(from) => match cf.resolve_from(from) {
                ImageSource::Stage(j) if j == stage_index => {
                    return Err(BuildError::StageCycle {
                        at: At::default(),
                        stage: from.clone(),
                    });
                }
                ImageSource::Stage(j) => {
                    let s = self.stage(j, Some(loc.clone()))?;
                    (
                        Some(s.layers.clone()),
                        Some(format!("stage {}", s.key.hex())),
                    )
                }
                ImageSource::Scratch => (Some(Vec::new()), Some("scratch".to_string())),
                ImageSource::Image(name) => {
                    let platform = self.opts.platform.clone();
                    let (image_id, _, layers) = self.image_parts(&name, &platform, &loc)?;
                    (Some(layers), Some(format!("image {image_id}")))
                }
            },
        };
        let workdir = state.workdir();
        let has_url = copy.add
            && sources
                .iter()
                .any(|s| matches!(s, CopySource::Path(p) if super::remote::is_url(p)));
        let keyword = if copy.add { "ADD" } else { "COPY" };
        let source_words: Vec<String> = sources
            .iter()
            .map(|s| match s {
                CopySource::Path(p) => p.clone(),
                CopySource::Heredoc { name, .. } => format!("<<{name}"),
            })
            .collect();
        let key_text = format!(
            "{keyword} from={from_identity:?} chown={chown:?} chmod={chmod:?} checksum={:?} workdir={workdir:?} sources={source_words:?} dest={dest:?}",
            copy.checksum
        );
        // The layer's transaction, begun before planning: an ADD downloads
        // its URLs into the transaction's scratch dir while planning (the
        // cache key covers the bytes received).
        let txn = self.store.begin().map_err(BuildError::store)?;
        let scratch = if copy.add {
            Some(txn.scratch_dir().map_err(BuildError::store)?)
        } else {
            None
        };
        let mut view = None;
        let mut planned = None;
        let (content, files) = if from_identity.is_some() {
            (None, Vec::new())
        } else if has_url {
            // Downloads happen while planning: plan once, for real.
            self.materialize(&state.layers)?;
            let v = View::mount(self.store, &state.diff_ids(), &state.name)?;
            let rootfs = v.path();
            let plan = plan_copy(
                self.ctx,
                &CopyOptions {
                    scratch: scratch.as_deref(),
                    checksum: copy.checksum.clone(),
                    sources: sources.clone(),
                    dest: dest.clone(),
                    workdir: &workdir,
                    chown: chown.clone(),
                    chmod: chmod.clone(),
                    add: copy.add,
                    rootfs: &rootfs,
                },
            )?;
            let (c, f) = plan.content()?;
            view = Some(v);
            planned = Some(plan);
            (Some(c), f)
        } else {
            let empty = self.store.empty_dir();
            let plan = plan_copy(
                self.ctx,
                &CopyOptions {
                    scratch: None,
                    checksum: copy.checksum.clone(),
                    sources: sources.clone(),
                    dest: dest.clone(),
                    workdir: &workdir,
                    chown: None,
                    chmod: None,
                    add: copy.add,
                    rootfs: &empty,
                },
            )?;
            let (c, f) = plan.content()?;
            (Some(c), f)
        };
        let key = StepInputs {
            parent: &state.key,
            instruction: &key_text,
            args: &[],
            content: content.as_ref(),
        }
        .key();
        let parent = state.key.clone();
        self.record_step(stage_index, id, &key_text, &key, &parent, &[], &files);
        if self.lookup(state, &key, id, stage_index)? {
            return Ok(true);
        }
        self.explain(id, stage_index, &key_text, &[], &files, &parent);

        self.materialize(&state.layers)?;
        let from_view = match &from_layers {
            Some(layers) => {
                self.materialize(layers)?;
                let ids: Vec<_> = layers.iter().map(|l| l.diff_id.clone()).collect();
                Some(View::mount(self.store, &ids, "copy --from")?)
            }
            None => None,
        };
        let from_ctx = match &from_view {
            Some(v) => Some(Context::directory(&v.path())?),
            None => None,
        };
        let ctx = from_ctx.as_ref().unwrap_or(self.ctx);
        let view = match view {
            Some(v) => v,
            None => View::mount(self.store, &state.diff_ids(), &state.name)?,
        };
        let rootfs = view.path();
        let plan = match planned {
            Some(p) => p,
            None => plan_copy(
                ctx,
                &CopyOptions {
                    scratch: scratch.as_deref(),
                    checksum: copy.checksum.clone(),
                    sources,
                    dest: dest.clone(),
                    workdir: &workdir,
                    chown: chown.clone(),
                    chmod: chmod.clone(),
                    add: copy.add,
                    rootfs: &rootfs,
                },
            )?,
        };
        plan.apply(&txn.layer_dir())?;
        drop(view);
        drop(from_view);
        let layer = self.commit_txn_layer(state, &txn)?;
        let created_by = format!("{} # buildkit", first_line(&located.source));
        self.add_layer(state, layer, key, created_by)?;
        Ok(false)
    }
}

/// Where a `#!` RUN heredoc is mounted in the container (BuildKit uses
/// `/dev/pipes/`; /dev is a tmpfs, so the mount point never reaches a layer).
const SCRIPT_PATH: &str = "/dev/pipes/script";

/// Writes a `#!` heredoc as the blob file of a transaction that lives as
/// long as the step: the store owns everything below its root, and a
/// transaction is removed however builder ends.
fn write_script(
    store: &Store,
    body: &str,
) -> Result<(crate::store::Transaction, PathBuf), BuildError> {
    use std::os::unix::fs::PermissionsExt;
    let txn = store.begin().map_err(BuildError::store)?;
    let path = txn.blob_path();
    std::fs::write(&path, body).map_err(|e| BuildError::write(&path, e))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| BuildError::write(&path, e))?;
    Ok((txn, path))
}

/// Writes into `layer_dir` the directories of `rel` (relative to `root`):
/// those `root` has, with their metadata unchanged; the missing ones new,
/// 0755, owned by `owner`.
fn make_workdir(
    root: &std::path::Path,
    layer_dir: &std::path::Path,
    rel: &std::path::Path,
    owner: (u32, u32),
) -> Result<(), BuildError> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let mut cur = PathBuf::new();
    let mut copied = Vec::new();
    for comp in rel.components() {
        cur.push(comp);
        let src = root.join(&cur);
        let dst = layer_dir.join(&cur);
        let w = |e| BuildError::write(&dst, e);
        std::fs::create_dir(&dst).map_err(w)?;
        let (uid, gid, mode) = match std::fs::symlink_metadata(&src) {
            Ok(md) if md.is_dir() => {
                copied.push((dst.clone(), md.mtime(), md.mtime_nsec()));
                (md.uid(), md.gid(), md.mode() & 0o7777)
            }
            Ok(_) => {
                return Err(BuildError::write(
                    &src,
                    std::io::Error::other("WORKDIR: a non-directory is in the way"),
                ));
            }
            Err(_) => (owner.0, owner.1, 0o755),
        };
        std::os::unix::fs::lchown(&dst, Some(uid), Some(gid)).map_err(w)?;
        std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(mode)).map_err(w)?;
    }
    // Existing directories keep their mtimes (creating children changed them).
    for (dst, sec, nsec) in copied.into_iter().rev() {
        let parent = dst.parent().unwrap_or(layer_dir);
        let dir = sys::fs::open_dir(parent).map_err(|e| BuildError::write(parent, e))?;
        let name = dst
            .file_name()
            .map(std::path::Path::new)
            .unwrap_or(std::path::Path::new("."));
        sys::fs::utimensat_nofollow(std::os::fd::AsFd::as_fd(&dir), name, sec, nsec as u32)
            .map_err(|e| BuildError::write(&dst, e))?;
    }
    Ok(())
}

/// A COPY or ADD, before expansion.
struct CopyStep<'a> {
    sources: &'a [containerfile::Source],
    dest: &'a containerfile::RawWord,
    chown: Option<&'a containerfile::RawWord>,
    chmod: Option<&'a containerfile::RawWord>,
    checksum: Option<String>,
    /// Expanded `--from`.
    from: Option<String>,
    add: bool,
}

/// A read-only view of some layers for one step: a container that never
/// runs, so a builder killed meanwhile leaves a mount the next command's
/// `container::reap` removes.
struct View<'s> {
    container: Container<'s>,
}

impl<'s> View<'s> {
    fn mount(
        store: &'s Store,
        layers: &[crate::oci::DiffId],
        name: &str,
    ) -> Result<View<'s>, BuildError> {
        let config = container::Config {
            rootfs: RootfsSource {
                name: format!("build view of {name}"),
                id: None,
                layers: layers.to_vec(),
            },
            args: vec!["/bin/true".into()],
            auto_remove: true,
            ..Default::default()
        };
        let container =
            Container::create(store, &config).map_err(|source| BuildError::Container {
                at: At::default(),
                step: format!("mount {name}"),
                source: Box::new(source),
            })?;
        Ok(View { container })
    }

    fn path(&self) -> PathBuf {
        self.container.rootfs()
    }
}

/// The instructions of the ONBUILD triggers an image carries.
fn onbuild_triggers(config: &ImageConfig) -> Vec<String> {
    config
        .config
        .as_ref()
        .and_then(|c| c.extra.get("OnBuild"))
        .and_then(|v| serde_json::from_value::<Vec<String>>(v.clone()).ok())
        .unwrap_or_default()
}

/// Parses one ONBUILD trigger as an instruction of a stage.
fn parse_trigger(
    trigger: &str,
    label: &str,
    line: usize,
) -> Result<Vec<Located<Instruction>>, BuildError> {
    let text = format!("FROM scratch\n{trigger}\n");
    let cf = containerfile::parse(&format!("{label}:{line} (ONBUILD)"), &text)?;
    Ok(cf.stages.into_iter().flat_map(|s| s.instructions).collect())
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").to_string()
}
