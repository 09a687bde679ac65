//! `login` / `logout`: credentials in the containers `auth.json` format.

use std::process::ExitCode;

use anyhow::{Context, Result, bail};

use super::{read_password, registry_client};
use crate::cli::args::{LoginArgs, LogoutArgs};
use crate::registry::credentials::{self, Credential};

#[allow(clippy::print_stderr)]
pub fn login(args: LoginArgs) -> Result<ExitCode> {
    let username = match args.username {
        Some(u) => u,
        None => read_password("username: ")?,
    };
    let password = match (args.password, args.password_stdin) {
        (Some(_), true) => bail!("give either --password or --password-stdin, not both"),
        (Some(p), false) => p,
        (None, _) => read_password("password: ")?,
    };
    if username.is_empty() || password.is_empty() {
        bail!("user name and password must not be empty");
    }
    // Check the credentials against the registry before storing them.
    let mut registry_args = args.registry_args.clone();
    registry_args.creds = Some(format!("{username}:{password}"));
    let client = registry_client(&registry_args)?;
    client
        .ping(&args.registry)
        .with_context(|| format!("log in to `{}`", args.registry))?;
    let path = auth_file(args.registry_args.authfile);
    credentials::store_in(&path, &args.registry, &Credential::new(username, password))
        .with_context(|| format!("save credentials to `{}`", path.display()))?;
    eprintln!("Login Succeeded");
    Ok(ExitCode::SUCCESS)
}

#[allow(clippy::print_stderr)]
pub fn logout(args: LogoutArgs) -> Result<ExitCode> {
    let path = auth_file(args.authfile);
    let removed = credentials::remove_from(&path, &args.registry)
        .with_context(|| format!("remove credentials from `{}`", path.display()))?;
    if !removed {
        bail!(
            "not logged in to `{}` (no entry in `{}`)",
            args.registry,
            path.display()
        );
    }
    eprintln!("Removed login credentials for {}", args.registry);
    Ok(ExitCode::SUCCESS)
}

/// `--authfile`/`REGISTRY_AUTH_FILE`, else the containers default.
fn auth_file(explicit: Option<std::path::PathBuf>) -> std::path::PathBuf {
    explicit.unwrap_or_else(credentials::default_auth_file)
}
