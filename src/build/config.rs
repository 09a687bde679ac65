//! Metadata instructions applied to an image config, each with the
//! `history` entry BuildKit writes for it (`created_by` in BuildKit's own
//! words, `empty_layer: true`).
//!
//! Input is an already expanded [`Metadata`]; the engine expands words
//! with the stage's scope. Docker-format fields the OCI config lacks
//! (`Healthcheck`, `OnBuild`, `Shell`) go into [`ContainerConfig::extra`],
//! where BuildKit puts them too.
//!
//! Rules kept from BuildKit's `dispatch*`: ENTRYPOINT resets a CMD
//! inherited from the base image (not one set earlier in the same stage);
//! shell-form CMD/ENTRYPOINT/HEALTHCHECK run through the current SHELL
//! (default `/bin/sh -c`); WORKDIR is resolved against the current one;
//! EXPOSE defaults to `/tcp` and expands ranges; MAINTAINER is the
//! `maintainer` label (and the config's `author`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::containerfile::Command;
use crate::oci::ImageConfig;
use crate::oci::image::{ContainerConfig, History};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid port `{0}` in EXPOSE: expected PORT[-PORT][/tcp|udp|sctp]")]
    Port(String),
    #[error("WORKDIR needs a path")]
    EmptyWorkdir,
}

/// A metadata instruction with its words expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Metadata {
    Env(Vec<(String, String)>),
    Label(Vec<(String, String)>),
    Maintainer(String),
    Expose(Vec<String>),
    Volume(Vec<String>),
    Workdir(String),
    User(String),
    Cmd(Command),
    Entrypoint(Command),
    Shell(Vec<String>),
    StopSignal(String),
    /// `None` is `HEALTHCHECK NONE`.
    Healthcheck(Option<Healthcheck>),
    /// The trigger's text as stored.
    Onbuild(String),
    /// ARG as recorded in history: `NAME` or `NAME=VALUE`.
    Arg(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Healthcheck {
    pub command: Command,
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
    pub start_period: Option<Duration>,
    pub start_interval: Option<Duration>,
    pub retries: Option<u32>,
}

/// The config of a stage being built.
#[derive(Debug, Clone)]
pub struct StageConfig {
    pub image: ImageConfig,
    /// CMD was set in this stage (so ENTRYPOINT keeps it).
    cmd_set: bool,
}

const DEFAULT_SHELL: [&str; 2] = ["/bin/sh", "-c"];

/// Applies `m` to `stage` and appends its history entry.
pub fn apply_metadata(
    stage: &mut StageConfig,
    m: &Metadata,
    created: Option<String>,
) -> Result<(), ConfigError> {
    stage.apply(m, created)
}

impl StageConfig {
    pub fn new(base: ImageConfig) -> Self {
        StageConfig {
            image: base,
            cmd_set: false,
        }
    }

    /// The current SHELL (default `/bin/sh -c`): what shell-form commands
    /// run with.
    pub fn shell(&self) -> Vec<String> {
        self.image
            .config
            .as_ref()
            .and_then(|c| c.extra.get("Shell"))
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_else(|| DEFAULT_SHELL.iter().map(|s| s.to_string()).collect())
    }

    fn argv(&self, c: &Command) -> Vec<String> {
        match c {
            Command::Exec(v) => v.clone(),
            Command::Shell(text) => {
                let mut v = self.shell();
                v.push(text.clone());
                v
            }
        }
    }

    /// Applies one metadata instruction and records its history entry.
    pub fn apply(&mut self, m: &Metadata, created: Option<String>) -> Result<(), ConfigError> {
        let created_by = self.apply_inner(m)?;
        self.image.history.push(History {
            created,
            created_by: Some(created_by),
            comment: Some("buildkit.dockerfile.v0".to_owned()),
            empty_layer: true,
            ..Default::default()
        });
        Ok(())
    }

    fn apply_inner(&mut self, m: &Metadata) -> Result<String, ConfigError> {
        let argv = match m {
            Metadata::Cmd(c) | Metadata::Entrypoint(c) => self.argv(c),
            Metadata::Healthcheck(Some(h)) => match &h.command {
                Command::Exec(v) => std::iter::once("CMD".to_owned()).chain(v.clone()).collect(),
                Command::Shell(t) => vec!["CMD-SHELL".to_owned(), t.clone()],
            },
            _ => Vec::new(),
        };
        let old_workdir = self
            .image
            .config
            .as_ref()
            .and_then(|c| c.working_dir.clone())
            .unwrap_or_default();
        let cmd_set = self.cmd_set;
        let c: &mut ContainerConfig = self.image.config.get_or_insert_with(Default::default);
        Ok(match m {
            Metadata::Env(kv) => {
                let env = c.env.get_or_insert_with(Vec::new);
                for (k, v) in kv {
                    let entry = format!("{k}={v}");
                    match env.iter_mut().find(|e| e.split('=').next() == Some(k)) {
                        Some(e) => *e = entry,
                        None => env.push(entry),
                    }
                }
                format!("ENV {}", join_kv(kv))
            }
            Metadata::Label(kv) => {
                let labels = c.labels.get_or_insert_with(BTreeMap::new);
                for (k, v) in kv {
                    labels.insert(k.clone(), v.clone());
                }
                format!("LABEL {}", join_kv(kv))
            }
            Metadata::Maintainer(who) => {
                c.labels
                    .get_or_insert_with(BTreeMap::new)
                    .insert("maintainer".to_owned(), who.clone());
                self.image.author = Some(who.clone());
                format!("MAINTAINER {who}")
            }
            Metadata::Expose(ports) => {
                let mut all = Vec::new();
                for p in ports {
                    all.extend(parse_ports(p)?);
                }
                let map = c.exposed_ports.get_or_insert_with(BTreeMap::new);
                for p in &all {
                    map.insert(p.clone(), json!({}));
                }
                format!("EXPOSE [{}]", all.join(" "))
            }
            Metadata::Volume(v) => {
                let map = c.volumes.get_or_insert_with(BTreeMap::new);
                for p in v {
                    map.insert(p.clone(), json!({}));
                }
                format!("VOLUME [{}]", v.join(" "))
            }
            Metadata::Workdir(w) => {
                if w.is_empty() {
                    return Err(ConfigError::EmptyWorkdir);
                }
                let joined = if w.starts_with('/') {
                    w.clone()
                } else {
                    format!(
                        "{}/{w}",
                        if old_workdir.is_empty() {
                            "/"
                        } else {
                            &old_workdir
                        }
                    )
                };
                let wd = super::context::go_clean(&joined);
                c.working_dir = Some(wd.clone());
                format!("WORKDIR {wd}")
            }
            Metadata::User(u) => {
                c.user = Some(u.clone());
                format!("USER {u}")
            }
            Metadata::Cmd(_) => {
                c.cmd = Some(argv.clone());
                self.cmd_set = true;
                format!("CMD {}", go_quote_list(&argv))
            }
            Metadata::Entrypoint(_) => {
                c.entrypoint = Some(argv.clone());
                if !cmd_set {
                    c.cmd = None;
                }
                format!("ENTRYPOINT {}", go_quote_list(&argv))
            }
            Metadata::Shell(s) => {
                c.extra.insert("Shell".to_owned(), json!(s));
                format!("SHELL [{}]", s.join(" "))
            }
            Metadata::StopSignal(s) => {
                c.stop_signal = Some(s.clone());
                format!("STOPSIGNAL {s}")
            }
            Metadata::Healthcheck(None) => {
                c.extra
                    .insert("Healthcheck".to_owned(), json!({"Test": ["NONE"]}));
                // BuildKit prints the Go struct: `&{["NONE"] "0s" "0s" "0s" "0s" '\x00'}`.
                "HEALTHCHECK &{[\"NONE\"] \"0s\" \"0s\" \"0s\" \"0s\" '\\x00'}".to_owned()
            }
            Metadata::Healthcheck(Some(h)) => {
                let mut obj = serde_json::Map::new();
                obj.insert("Test".to_owned(), json!(argv));
                for (k, d) in [
                    ("Interval", h.interval),
                    ("Timeout", h.timeout),
                    ("StartPeriod", h.start_period),
                    ("StartInterval", h.start_interval),
                ] {
                    if let Some(d) = d.filter(|d| !d.is_zero()) {
                        obj.insert(k.to_owned(), json!(d.as_nanos() as u64));
                    }
                }
                if let Some(r) = h.retries.filter(|r| *r != 0) {
                    obj.insert("Retries".to_owned(), json!(r));
                }
                c.extra.insert("Healthcheck".to_owned(), Value::Object(obj));
                let d = |d: Option<Duration>| format!("\"{}\"", go_duration(d.unwrap_or_default()));
                format!(
                    "HEALTHCHECK &{{{} {} {} {} {} '\\x{:02x}'}}",
                    go_quote_list(&argv),
                    d(h.interval),
                    d(h.timeout),
                    d(h.start_period),
                    d(h.start_interval),
                    h.retries.unwrap_or(0)
                )
            }
            Metadata::Onbuild(t) => {
                let list = c
                    .extra
                    .entry("OnBuild".to_owned())
                    .or_insert_with(|| json!([]));
                if let Value::Array(a) = list {
                    a.push(json!(t));
                } else {
                    *list = json!([t]);
                }
                format!("ONBUILD {t}")
            }
            Metadata::Arg(decls) => format!("ARG {}", decls.join(" ")),
        })
    }
}

fn join_kv(kv: &[(String, String)]) -> String {
    kv.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `PORT[-PORT][/PROTO]` → `["PORT/proto", …]`.
fn parse_ports(s: &str) -> Result<Vec<String>, ConfigError> {
    let bad = || ConfigError::Port(s.to_owned());
    let (range, proto) = match s.split_once('/') {
        Some((r, p)) => (r, p.to_ascii_lowercase()),
        None => (s, "tcp".to_owned()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(bad());
    }
    let (lo, hi) = match range.split_once('-') {
        Some((a, b)) => (a, b),
        None => (range, range),
    };
    let lo: u16 = lo.parse().map_err(|_| bad())?;
    let hi: u16 = hi.parse().map_err(|_| bad())?;
    if hi < lo {
        return Err(bad());
    }
    Ok((lo..=hi).map(|p| format!("{p}/{proto}")).collect())
}

/// Go's `fmt.Sprintf("%q", []string{…})`: `["a" "b"]`.
fn go_quote_list(v: &[String]) -> String {
    let items: Vec<String> = v.iter().map(|s| go_quote(s)).collect();
    format!("[{}]", items.join(" "))
}

/// Go's `strconv.Quote` for the characters that occur in commands.
fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c == '\x7f' => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `time.Duration.String` for whole and fractional seconds.
fn go_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".to_owned();
    }
    let total = d.as_secs();
    let (h, m, s) = (total / 3600, (total / 60) % 60, total % 60);
    let nanos = d.subsec_nanos();
    if total == 0 {
        return if nanos.is_multiple_of(1_000_000) {
            format!("{}ms", nanos / 1_000_000)
        } else if nanos.is_multiple_of(1000) {
            format!("{}µs", nanos / 1000)
        } else {
            format!("{nanos}ns")
        };
    }
    let mut secs = s.to_string();
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        secs = format!("{s}.{}", frac.trim_end_matches('0'));
    }
    match (h, m) {
        (0, 0) => format!("{secs}s"),
        (0, m) => format!("{m}m{secs}s"),
        (h, m) => format!("{h}h{m}m{secs}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> StageConfig {
        let img: ImageConfig = serde_json::from_str(
            r#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},
                "config":{"Env":["PATH=/bin","A=0"],"Cmd":["sh"],"WorkingDir":"/srv"}}"#,
        )
        .unwrap();
        StageConfig::new(img)
    }

    fn kv(k: &str, v: &str) -> (String, String) {
        (k.to_owned(), v.to_owned())
    }

    fn last(s: &StageConfig) -> &str {
        let h = s.image.history.last().unwrap();
        assert!(h.empty_layer);
        h.created_by.as_deref().unwrap()
    }

    fn cfg(s: &StageConfig) -> &ContainerConfig {
        s.image.config.as_ref().unwrap()
    }

    #[test]
    fn env_replaces_and_appends() {
        let mut s = base();
        s.apply(&Metadata::Env(vec![kv("A", "1"), kv("B", "x y")]), None)
            .unwrap();
        assert_eq!(
            cfg(&s).env.as_ref().unwrap(),
            &["PATH=/bin", "A=1", "B=x y"]
        );
        assert_eq!(last(&s), "ENV A=1 B=x y");
    }

    #[test]
    fn label_and_maintainer() {
        let mut s = base();
        s.apply(&Metadata::Label(vec![kv("a", "b")]), None).unwrap();
        assert_eq!(last(&s), "LABEL a=b");
        s.apply(&Metadata::Maintainer("me <m@x>".into()), None)
            .unwrap();
        let labels = cfg(&s).labels.as_ref().unwrap();
        assert_eq!(labels["a"], "b");
        assert_eq!(labels["maintainer"], "me <m@x>");
        assert_eq!(last(&s), "MAINTAINER me <m@x>");
    }

    #[test]
    fn expose_normalises_and_validates() {
        let mut s = base();
        s.apply(
            &Metadata::Expose(vec!["80".into(), "53/UDP".into(), "8000-8001".into()]),
            None,
        )
        .unwrap();
        let ports: Vec<&String> = cfg(&s).exposed_ports.as_ref().unwrap().keys().collect();
        assert_eq!(ports, ["53/udp", "80/tcp", "8000/tcp", "8001/tcp"]);
        assert_eq!(last(&s), "EXPOSE [80/tcp 53/udp 8000/tcp 8001/tcp]");
        for bad in ["http", "80/foo", "9-8", "70000"] {
            assert!(
                s.apply(&Metadata::Expose(vec![bad.into()]), None).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn volume_workdir_user_stopsignal() {
        let mut s = base();
        s.apply(
            &Metadata::Volume(vec!["/data".into(), "/logs".into()]),
            None,
        )
        .unwrap();
        assert_eq!(last(&s), "VOLUME [/data /logs]");
        assert!(cfg(&s).volumes.as_ref().unwrap().contains_key("/logs"));
        s.apply(&Metadata::Workdir("app/../lib/".into()), None)
            .unwrap();
        assert_eq!(cfg(&s).working_dir.as_deref(), Some("/srv/lib"));
        assert_eq!(last(&s), "WORKDIR /srv/lib");
        s.apply(&Metadata::Workdir("/abs".into()), None).unwrap();
        assert_eq!(cfg(&s).working_dir.as_deref(), Some("/abs"));
        s.apply(&Metadata::User("app:staff".into()), None).unwrap();
        assert_eq!(cfg(&s).user.as_deref(), Some("app:staff"));
        assert_eq!(last(&s), "USER app:staff");
        s.apply(&Metadata::StopSignal("SIGTERM".into()), None)
            .unwrap();
        assert_eq!(cfg(&s).stop_signal.as_deref(), Some("SIGTERM"));
        assert_eq!(last(&s), "STOPSIGNAL SIGTERM");
    }

    #[test]
    fn entrypoint_resets_an_inherited_cmd_but_not_one_set_in_the_stage() {
        let mut s = base();
        s.apply(
            &Metadata::Entrypoint(Command::Exec(vec!["/run".into()])),
            None,
        )
        .unwrap();
        assert_eq!(cfg(&s).cmd, None);
        assert_eq!(last(&s), "ENTRYPOINT [\"/run\"]");
        let mut s = base();
        s.apply(&Metadata::Cmd(Command::Exec(vec!["--x".into()])), None)
            .unwrap();
        s.apply(
            &Metadata::Entrypoint(Command::Exec(vec!["/run".into()])),
            None,
        )
        .unwrap();
        assert_eq!(cfg(&s).cmd.as_deref(), Some(&["--x".to_owned()][..]));
    }

    #[test]
    fn shell_form_uses_the_current_shell() {
        let mut s = base();
        s.apply(&Metadata::Cmd(Command::Shell("echo \"hi\"".into())), None)
            .unwrap();
        assert_eq!(
            cfg(&s).cmd.as_ref().unwrap(),
            &["/bin/sh", "-c", "echo \"hi\""]
        );
        assert_eq!(last(&s), r#"CMD ["/bin/sh" "-c" "echo \"hi\""]"#);
        s.apply(
            &Metadata::Shell(vec!["/bin/bash".into(), "-ec".into()]),
            None,
        )
        .unwrap();
        assert_eq!(last(&s), "SHELL [/bin/bash -ec]");
        assert_eq!(cfg(&s).extra["Shell"], json!(["/bin/bash", "-ec"]));
        s.apply(
            &Metadata::Entrypoint(Command::Shell("exec app".into())),
            None,
        )
        .unwrap();
        assert_eq!(
            cfg(&s).entrypoint.as_ref().unwrap(),
            &["/bin/bash", "-ec", "exec app"]
        );
    }

    #[test]
    fn healthcheck_and_none() {
        let mut s = base();
        let h = Healthcheck {
            command: Command::Shell("curl -f localhost".into()),
            interval: Some(Duration::from_secs(90)),
            timeout: Some(Duration::from_millis(1500)),
            start_period: None,
            start_interval: None,
            retries: Some(3),
        };
        s.apply(&Metadata::Healthcheck(Some(h)), None).unwrap();
        assert_eq!(
            cfg(&s).extra["Healthcheck"],
            json!({"Test": ["CMD-SHELL", "curl -f localhost"], "Interval": 90_000_000_000u64,
                   "Timeout": 1_500_000_000u64, "Retries": 3})
        );
        assert_eq!(
            last(&s),
            r#"HEALTHCHECK &{["CMD-SHELL" "curl -f localhost"] "1m30s" "1.5s" "0s" "0s" '\x03'}"#
        );
        s.apply(&Metadata::Healthcheck(None), None).unwrap();
        assert_eq!(cfg(&s).extra["Healthcheck"], json!({"Test": ["NONE"]}));
    }

    #[test]
    fn onbuild_accumulates_and_arg_is_history_only() {
        let mut s = base();
        s.apply(&Metadata::Onbuild("RUN make".into()), None)
            .unwrap();
        s.apply(&Metadata::Onbuild("COPY . /src".into()), None)
            .unwrap();
        assert_eq!(cfg(&s).extra["OnBuild"], json!(["RUN make", "COPY . /src"]));
        assert_eq!(last(&s), "ONBUILD COPY . /src");
        let before = serde_json::to_value(cfg(&s)).unwrap();
        s.apply(
            &Metadata::Arg(vec!["V=1".into(), "W".into()]),
            Some("1970-01-01T00:00:00Z".into()),
        )
        .unwrap();
        assert_eq!(serde_json::to_value(cfg(&s)).unwrap(), before);
        assert_eq!(last(&s), "ARG V=1 W");
        assert_eq!(s.image.history.len(), 3);
        assert_eq!(
            s.image.history[2].created.as_deref(),
            Some("1970-01-01T00:00:00Z")
        );
    }

    #[test]
    fn go_formatting_helpers() {
        assert_eq!(go_duration(Duration::from_secs(3600 * 2 + 5)), "2h0m5s");
        assert_eq!(go_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(go_quote("a\\b\n"), r#""a\\b\n""#);
    }
}
