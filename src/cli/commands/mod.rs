//! One function per subcommand, plus what they share: opening the store,
//! resolving a user's image argument, building a registry client.

mod archive;
mod build;
mod check;
mod containerfile;
mod containers;
mod images;
mod login;
mod manifest;
mod mount;
mod pull;
mod push;
mod run;

use std::process::ExitCode;

use anyhow::{Context, Result, bail};

use super::args::{Cli, Command, PullPolicy, RegistryArgs};
use crate::oci::Platform;
use crate::pull::{PullOptions, pull as pull_image};
use crate::reference::ImageRef;
use crate::registry::credentials::{AuthFiles, Credential};
use crate::registry::{Client, RegistryOptions};
use crate::store::{ImageRecord, LockMode, Store};

pub fn run(cli: Cli) -> Result<ExitCode> {
    let root = super::default_root(cli.root);
    let open = |mode| -> Result<Store> {
        let store =
            Store::open(&root, mode).with_context(|| format!("open store `{}`", root.display()))?;
        // Every command cleans up after builders killed mid-run (their
        // mounts and cgroups); a failure here must not stop the command.
        if let Err(e) = crate::container::reap(&store) {
            tracing::warn!("clean up containers of killed builders: {e}");
        }
        Ok(store)
    };
    match cli.command {
        Command::Run(args) => match open(LockMode::Shared) {
            Ok(store) => Ok(run::run(&store, *args)),
            // builder's own failure: 125, not 1.
            Err(e) => {
                super::report_error(&e);
                Ok(ExitCode::from(125))
            }
        },
        Command::Build(args) => build::build(&open(LockMode::Shared)?, *args),
        Command::Ps(args) => containers::ps(&open(LockMode::Shared)?, args),
        Command::Rm(args) => containers::rm(&open(LockMode::Shared)?, args),
        Command::Pull(args) => pull::pull(&open(LockMode::Shared)?, args),
        Command::Push(args) => push::push(&open(LockMode::Shared)?, args),
        Command::Images(args) => images::images(&open(LockMode::Shared)?, args),
        Command::Inspect(args) => images::inspect(&open(LockMode::Shared)?, args),
        Command::Tag(args) => images::tag(&open(LockMode::Shared)?, args),
        Command::Rmi(args) => images::rmi(&open(LockMode::Shared)?, args),
        Command::Manifest(cmd) => manifest::run(&open(LockMode::Shared)?, cmd),
        Command::Save(args) => archive::save(&open(LockMode::Shared)?, args),
        Command::Load(args) => archive::load(&open(LockMode::Shared)?, args),
        Command::Prune(args) => images::prune(&open(LockMode::ExclusiveNoWait)?, args),
        Command::Mount(args) => mount::mount(&open(LockMode::Shared)?, args),
        Command::Umount(args) => mount::umount(&open(LockMode::Shared)?, args),
        Command::Check(args) => check::check(&open(LockMode::Shared)?, args),
        Command::Login(args) => login::login(args),
        Command::Logout(args) => login::logout(args),
        Command::Containerfile(cmd) => containerfile::run(cmd),
    }
}

/// Finds the stored image a user means: a name (normalised as a
/// reference, so `busybox` finds `docker.io/library/busybox:latest`), or
/// an unambiguous prefix of an image ID or manifest digest.
fn find_image(store: &Store, input: &str) -> Result<ImageRecord> {
    if let Ok(reference) = ImageRef::parse(input)
        && let Some(record) = store.image(&reference.to_string())?
    {
        return Ok(record);
    }
    let mut found = store.images_by_id_prefix(input)?;
    // Several names for one image are one image.
    found.dedup_by(|a, b| a.manifest.digest == b.manifest.digest);
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => bail!(
            "image `{input}` is not in the store (see `builder images`, or `builder pull {input}`)"
        ),
        n => bail!("`{input}` matches {n} images; give more of the ID or a full name"),
    }
}

/// The image a user means, for `platform`: [`find_image`], and for a
/// manifest list the list's image for that platform (under the list's name).
fn find_image_for(store: &Store, input: &str, platform: &Platform) -> Result<ImageRecord> {
    let record = find_image(store, input)?;
    Ok(store.image_for_platform(&record, platform)?)
}

/// An image by name or ID, pulled according to `policy`. A manifest list in
/// the store gives its image for `platform` (never a pull: the list is what
/// the name means here).
#[allow(clippy::print_stderr)]
fn image_by_policy(
    store: &Store,
    input: &str,
    policy: PullPolicy,
    platform: &Platform,
    registry: &RegistryArgs,
    quiet: bool,
) -> Result<ImageRecord> {
    let pull = || -> Result<ImageRecord> {
        let reference = ImageRef::parse(input)?;
        let client = registry_client(registry)?;
        let reporter = crate::cli::progress::reporter(quiet);
        let options = PullOptions {
            platform: platform.clone(),
            ..PullOptions::default()
        };
        let pulled = pull_image(&client, store, &reference, &options, reporter.as_ref())?;
        store
            .image(&pulled.name)?
            .ok_or_else(|| anyhow::anyhow!("image `{}` vanished right after the pull", pulled.name))
    };
    match policy {
        PullPolicy::Always => pull(),
        PullPolicy::Never => find_image_for(store, input, platform),
        PullPolicy::Missing => match find_image(store, input) {
            Ok(record) => Ok(store.image_for_platform(&record, platform)?),
            Err(_) if ImageRef::parse(input).is_ok() => {
                if !quiet {
                    eprintln!("Image `{input}` is not in the store; pulling it");
                }
                pull()
            }
            Err(e) => Err(e),
        },
    }
}

/// Normalises a user's name for an image (`busybox` → `docker.io/library/busybox:latest`).
fn normalise_name(input: &str) -> Result<String> {
    Ok(ImageRef::parse(input)?.to_string())
}

/// A registry client configured from the command line and config files.
fn registry_client(args: &RegistryArgs) -> Result<Client> {
    let credentials = match &args.creds {
        None => None,
        Some(creds) => {
            let (user, password) = match creds.split_once(':') {
                Some((u, p)) => (u.to_string(), p.to_string()),
                None => (creds.clone(), read_password("password: ")?),
            };
            Some(Credential::new(user, password))
        }
    };
    Ok(Client::new(RegistryOptions {
        tls_verify: args.tls_verify,
        cert_dir: args.cert_dir.clone(),
        insecure_registries: insecure_registries(),
        credentials,
        auth_files: args.authfile.as_ref().map(AuthFiles::single),
        ..RegistryOptions::default()
    }))
}

/// Registries marked insecure in `/etc/containers/registries.conf` (the
/// `[[registry]] location=… insecure=true` and the older
/// `[registries.insecure] registries=[…]` forms), or in the file named by
/// `BUILDER_REGISTRIES_CONF`.
fn insecure_registries() -> Vec<String> {
    let path = std::env::var_os("BUILDER_REGISTRIES_CONF")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/etc/containers/registries.conf".into());
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Vec::new();
    };
    match parse_insecure_registries(&text) {
        Ok(list) => list,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "ignoring unreadable registries.conf");
            Vec::new()
        }
    }
}

fn parse_insecure_registries(text: &str) -> Result<Vec<String>, toml::de::Error> {
    #[derive(serde::Deserialize, Default)]
    struct Conf {
        #[serde(default)]
        registry: Vec<Entry>,
        #[serde(default)]
        registries: Option<V1>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        location: Option<String>,
        prefix: Option<String>,
        #[serde(default)]
        insecure: bool,
    }
    #[derive(serde::Deserialize, Default)]
    struct V1 {
        insecure: Option<List>,
    }
    #[derive(serde::Deserialize, Default)]
    struct List {
        #[serde(default)]
        registries: Vec<String>,
    }
    let conf: Conf = toml::from_str(text)?;
    let mut out: Vec<String> = conf
        .registry
        .into_iter()
        .filter(|e| e.insecure)
        .filter_map(|e| e.location.or(e.prefix))
        .collect();
    if let Some(list) = conf.registries.and_then(|r| r.insecure) {
        out.extend(list.registries);
    }
    Ok(out)
}

fn read_password(prompt: &str) -> Result<String> {
    use std::io::{BufRead, IsTerminal, Write};
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        let mut err = std::io::stderr();
        let _ = write!(err, "{prompt}");
        let _ = err.flush();
    }
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .context("read password from stdin")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_registries_conf_forms() {
        let v2 = r#"
            unqualified-search-registries = ["docker.io"]
            [[registry]]
            location = "127.0.0.1:5000"
            insecure = true
            [[registry]]
            location = "quay.io"
        "#;
        assert_eq!(
            parse_insecure_registries(v2).unwrap(),
            vec!["127.0.0.1:5000"]
        );
        let v1 = r#"
            [registries.insecure]
            registries = ["reg.local:5000"]
        "#;
        assert_eq!(
            parse_insecure_registries(v1).unwrap(),
            vec!["reg.local:5000"]
        );
    }
}
