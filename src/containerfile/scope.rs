//! ARG and ENV scoping: which variables a word sees while a Containerfile is
//! built, with Docker's rules.
//!
//! - *Global scope*: the ARGs before the first FROM ([`GlobalScope`]). They
//!   and the automatic platform ARGs ([`PLATFORM_ARGS`]) are what FROM
//!   lines (image and `--platform`) expand with. Nothing else sees them.
//! - *Stage scope* ([`StageScope`]): starts with the base image's ENV.
//!   `ARG NAME` declares NAME in the stage; its value is, in order of
//!   precedence, the `--build-arg` value, the automatic value of a
//!   platform ARG, the declaration's default (expanded), or — only when the
//!   declaration has no default — the global ARG's value. A declared ARG
//!   without any value is unset. ENV always wins over an ARG of the same
//!   name, whatever their order.
//! - The proxy ARGs ([`PROXY_ARGS`]) given with `--build-arg` reach RUN
//!   commands without being declared ([`StageScope::run_env`]), but are not
//!   used for expansion unless declared, and never stored in the image.
//!   The platform ARGs must be declared in a stage to be seen there.
//!
//! ARG values are visible to RUN and to expansion but never become part of
//! the image config: only [`StageScope::env`] does.

use std::collections::BTreeMap;

use super::error::ParseError;
use super::expand::Env;
use super::instruction::Containerfile;
use super::syntax::{ArgDecl, KeyValue};
use crate::oci::Platform;

/// Proxy settings usable as build args without an ARG instruction.
pub const PROXY_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// Set automatically from the build and target platforms.
pub const PLATFORM_ARGS: &[&str] = &[
    "TARGETPLATFORM",
    "TARGETOS",
    "TARGETARCH",
    "TARGETVARIANT",
    "BUILDPLATFORM",
    "BUILDOS",
    "BUILDARCH",
    "BUILDVARIANT",
];

/// The ARGs Docker defines without a declaration in the file.
pub fn is_predefined(name: &str) -> bool {
    PROXY_ARGS.contains(&name) || PLATFORM_ARGS.contains(&name)
}

/// `--build-arg NAME=VALUE` values given to the build.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildArgs {
    values: BTreeMap<String, String>,
}

impl BuildArgs {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.values.insert(name.into(), value.into());
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// Build args that no ARG in the file declares and that are not
    /// predefined: almost always a typo, worth a warning (BuildKit warns
    /// "build-args were not consumed"). Names are compared as written.
    pub fn unused(&self, cf: &Containerfile) -> Vec<&str> {
        let declared: Vec<&str> = cf
            .global_args
            .iter()
            .map(|d| d.name.text.as_str())
            .chain(cf.stages.iter().flat_map(|s| {
                s.instructions.iter().flat_map(|i| match &i.value {
                    super::Instruction::Arg(decls) => {
                        decls.iter().map(|d| d.name.text.as_str()).collect()
                    }
                    _ => Vec::new(),
                })
            }))
            .collect();
        self.values
            .keys()
            .map(String::as_str)
            .filter(|k| !is_predefined(k) && !declared.contains(k))
            .collect()
    }
}

impl FromIterator<(String, String)> for BuildArgs {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Self {
        Self {
            values: iter.into_iter().collect(),
        }
    }
}

/// The platforms behind the automatic ARGs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformArgs {
    /// Where the build runs (`BUILD*`).
    pub build: Platform,
    /// What the image is for (`TARGET*`).
    pub target: Platform,
}

impl PlatformArgs {
    /// Both platforms the machine's own.
    pub fn host() -> Self {
        Self {
            build: Platform::host(),
            target: Platform::host(),
        }
    }

    /// `TARGETPLATFORM=linux/arm64`, `TARGETOS=linux`, … (variant empty when
    /// the platform has none).
    pub fn values(&self) -> Vec<(String, String)> {
        let mut out = Vec::with_capacity(8);
        for (prefix, p) in [("TARGET", &self.target), ("BUILD", &self.build)] {
            let mut full = format!("{}/{}", p.os, p.architecture);
            if let Some(v) = &p.variant {
                full.push('/');
                full.push_str(v);
            }
            out.push((format!("{prefix}PLATFORM"), full));
            out.push((format!("{prefix}OS"), p.os.clone()));
            out.push((format!("{prefix}ARCH"), p.architecture.clone()));
            out.push((
                format!("{prefix}VARIANT"),
                p.variant.clone().unwrap_or_default(),
            ));
        }
        out
    }
}

/// Looks a name up in an ordered list of `(name, value)`.
fn find<'a>(list: &'a [(String, String)], name: &str) -> Option<&'a str> {
    list.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Sets a name in an ordered list, in place if present.
fn upsert<T>(list: &mut Vec<(String, T)>, name: String, value: T) {
    match list.iter_mut().find(|(k, _)| *k == name) {
        Some(slot) => slot.1 = value,
        None => list.push((name, value)),
    }
}

/// The ARGs before the first FROM, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalScope {
    /// Declared global ARGs in order; `None` = declared without a value.
    args: Vec<(String, Option<String>)>,
    platform: Vec<(String, String)>,
    build_args: BuildArgs,
}

impl GlobalScope {
    pub fn new(
        cf: &Containerfile,
        build_args: &BuildArgs,
        platform: &PlatformArgs,
    ) -> Result<Self, ParseError> {
        let mut scope = Self {
            args: Vec::new(),
            platform: platform.values(),
            build_args: build_args.clone(),
        };
        for decl in &cf.global_args {
            let name = cf.expand(&decl.name, &scope)?;
            let value = match scope.given(&name) {
                Some(v) => Some(v),
                None => match &decl.default {
                    Some(d) => Some(cf.expand(d, &scope)?),
                    None => None,
                },
            };
            upsert(&mut scope.args, name, value);
        }
        Ok(scope)
    }

    /// A value given from outside the file: a build arg, else an automatic
    /// platform value.
    fn given(&self, name: &str) -> Option<String> {
        self.build_args
            .get(name)
            .or_else(|| find(&self.platform, name))
            .map(str::to_string)
    }

    /// A global ARG's value (`None` if not declared or declared without one).
    pub fn value(&self, name: &str) -> Option<&str> {
        self.args
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_deref())
    }

    /// The scope of a new stage whose base image has environment `base_env`.
    pub fn stage(&self, base_env: &[(String, String)]) -> StageScope {
        let mut env = Vec::with_capacity(base_env.len());
        for (k, v) in base_env {
            upsert(&mut env, k.clone(), v.clone());
        }
        StageScope {
            env,
            args: Vec::new(),
            global: self.clone(),
        }
    }
}

/// What FROM lines see: declared global ARGs with values, and the
/// automatic platform ARGs.
impl Env for GlobalScope {
    fn lookup(&self, name: &str) -> Option<&str> {
        match self.args.iter().find(|(k, _)| k == name) {
            Some((_, Some(v))) => Some(v),
            _ => find(&self.platform, name),
        }
    }
}

/// Variables inside one stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageScope {
    /// The image config's environment: base image ENV, then ENV
    /// instructions (a name keeps its first position).
    env: Vec<(String, String)>,
    /// ARGs declared in this stage, in order; `None` = no value.
    args: Vec<(String, Option<String>)>,
    global: GlobalScope,
}

impl StageScope {
    /// Applies `ARG` declarations.
    pub fn declare(&mut self, cf: &Containerfile, decls: &[ArgDecl]) -> Result<(), ParseError> {
        for decl in decls {
            let name = cf.expand(&decl.name, &*self)?;
            let value = match self.global.given(&name) {
                Some(v) => Some(v),
                None => match &decl.default {
                    Some(d) => Some(cf.expand(d, &*self)?),
                    None => self.global.value(&name).map(str::to_string),
                },
            };
            upsert(&mut self.args, name, value);
        }
        Ok(())
    }

    /// Expands `KEY=VALUE` pairs (LABEL, or ENV before applying): every
    /// pair sees the scope as it was before the instruction, as in Docker
    /// (`ENV A=1 B=$A` gives B the *old* A).
    pub fn expand_pairs(
        &self,
        cf: &Containerfile,
        pairs: &[KeyValue],
    ) -> Result<Vec<(String, String)>, ParseError> {
        pairs
            .iter()
            .map(|p| Ok((cf.expand(&p.key, self)?, cf.expand(&p.value, self)?)))
            .collect()
    }

    /// Applies an ENV instruction; returns the expanded pairs.
    pub fn apply_env(
        &mut self,
        cf: &Containerfile,
        pairs: &[KeyValue],
    ) -> Result<Vec<(String, String)>, ParseError> {
        let expanded = self.expand_pairs(cf, pairs)?;
        for (k, v) in &expanded {
            upsert(&mut self.env, k.clone(), v.clone());
        }
        Ok(expanded)
    }

    /// The environment the image config records.
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    /// Declared ARGs that have a value, in declaration order: what a step's
    /// cache key must include.
    pub fn args(&self) -> Vec<(String, String)> {
        self.args
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| (k.clone(), v.clone())))
            .collect()
    }

    /// The environment of a RUN command: ENV, then ARGs that ENV does not
    /// shadow, then proxy build args that are neither.
    pub fn run_env(&self) -> Vec<(String, String)> {
        let mut out = self.env.clone();
        for (k, v) in self.args() {
            if find(&out, &k).is_none() {
                out.push((k, v));
            }
        }
        for name in PROXY_ARGS {
            if find(&out, name).is_none()
                && let Some(v) = self.global.build_args.get(name)
            {
                out.push((name.to_string(), v.to_string()));
            }
        }
        out
    }
}

/// ENV first, then ARGs with values.
impl Env for StageScope {
    fn lookup(&self, name: &str) -> Option<&str> {
        find(&self.env, name).or_else(|| {
            self.args
                .iter()
                .find(|(k, _)| k == name)
                .and_then(|(_, v)| v.as_deref())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::containerfile::{Instruction, parse};

    fn platforms() -> PlatformArgs {
        PlatformArgs {
            build: Platform::parse("linux/amd64").unwrap(),
            target: Platform::parse("linux/arm/v7").unwrap(),
        }
    }

    fn build_args(pairs: &[(&str, &str)]) -> BuildArgs {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Runs the stage's ARG and ENV instructions; returns the scope.
    fn run_stage(cf: &Containerfile, global: &GlobalScope, stage: usize) -> StageScope {
        let mut scope = global.stage(&[("PATH".into(), "/bin".into())]);
        for i in &cf.stages[stage].instructions {
            match &i.value {
                Instruction::Arg(d) => scope.declare(cf, d).unwrap(),
                Instruction::Env(p) => {
                    scope.apply_env(cf, p).unwrap();
                }
                _ => {}
            }
        }
        scope
    }

    #[test]
    fn global_args_feed_from_lines_and_build_args_override() {
        let cf = parse(
            "f",
            "ARG REG=docker.io\nARG TAG=1.${MINOR:-0}\nARG IMG=$REG/busybox:$TAG\nFROM $IMG\n",
        )
        .unwrap();
        let g = GlobalScope::new(&cf, &BuildArgs::new(), &platforms()).unwrap();
        assert_eq!(
            cf.expand(&cf.stages[0].base, &g).unwrap(),
            "docker.io/busybox:1.0"
        );
        let g = GlobalScope::new(&cf, &build_args(&[("TAG", "2")]), &platforms()).unwrap();
        assert_eq!(
            cf.expand(&cf.stages[0].base, &g).unwrap(),
            "docker.io/busybox:2"
        );
    }

    #[test]
    fn platform_args_in_global_scope_and_declared_stages() {
        let cf = parse(
            "f",
            "FROM --platform=$BUILDPLATFORM x-$TARGETARCH\nRUN a\nFROM y\nARG TARGETVARIANT TARGETOS=ignored\n",
        )
        .unwrap();
        let g = GlobalScope::new(&cf, &BuildArgs::new(), &platforms()).unwrap();
        let s0 = &cf.stages[0];
        assert_eq!(
            cf.expand(s0.platform.as_ref().unwrap(), &g).unwrap(),
            "linux/amd64"
        );
        assert_eq!(cf.expand(&s0.base, &g).unwrap(), "x-arm");
        assert_eq!(run_stage(&cf, &g, 0).lookup("TARGETARCH"), None);
        let s1 = run_stage(&cf, &g, 1);
        assert_eq!(s1.lookup("TARGETVARIANT"), Some("v7"));
        assert_eq!(s1.lookup("TARGETOS"), Some("linux"));
    }

    #[test]
    fn stage_args_inherit_globals_only_when_redeclared_without_default() {
        let cf = parse(
            "f",
            "ARG V=global\nFROM a\nRUN x\nFROM b\nARG V\nFROM c\nARG V=own\n",
        )
        .unwrap();
        let g = GlobalScope::new(&cf, &BuildArgs::new(), &platforms()).unwrap();
        assert_eq!(run_stage(&cf, &g, 0).lookup("V"), None);
        assert_eq!(run_stage(&cf, &g, 1).lookup("V"), Some("global"));
        assert_eq!(run_stage(&cf, &g, 2).lookup("V"), Some("own"));
        let g = GlobalScope::new(&cf, &build_args(&[("V", "cli")]), &platforms()).unwrap();
        assert_eq!(run_stage(&cf, &g, 1).lookup("V"), Some("cli"));
        assert_eq!(run_stage(&cf, &g, 2).lookup("V"), Some("cli"));
    }

    #[test]
    fn env_wins_over_arg_and_env_pairs_see_old_values() {
        let cf = parse(
            "f",
            "FROM a\nENV X=env\nARG X=arg Y=y\nENV A=1\nENV A=2 B=$A C=$X$Y PATH=$PATH:/x\n",
        )
        .unwrap();
        let g = GlobalScope::new(&cf, &BuildArgs::new(), &platforms()).unwrap();
        let s = run_stage(&cf, &g, 0);
        assert_eq!(s.lookup("X"), Some("env"));
        let env: Vec<String> = s.env().iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(env, ["PATH=/bin:/x", "X=env", "A=2", "B=1", "C=envy"]);
        assert_eq!(
            s.args(),
            [
                ("X".to_string(), "arg".to_string()),
                ("Y".into(), "y".into())
            ]
        );
    }

    #[test]
    fn run_env_has_args_and_undeclared_proxies_but_config_env_does_not() {
        let cf = parse("f", "FROM a\nARG V=1\n").unwrap();
        let ba = build_args(&[("http_proxy", "http://p:3128"), ("OTHER", "x")]);
        let g = GlobalScope::new(&cf, &ba, &platforms()).unwrap();
        let s = run_stage(&cf, &g, 0);
        let run: Vec<String> = s
            .run_env()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        assert_eq!(run, ["PATH=/bin", "V=1", "http_proxy=http://p:3128"]);
        assert_eq!(s.env().len(), 1);
        assert_eq!(s.lookup("http_proxy"), None);
        assert_eq!(ba.unused(&cf), ["OTHER"]);
    }
}
