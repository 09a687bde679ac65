//! Registry credentials on disk: the containers `auth.json` (read and
//! written, as podman/skopeo/buildah do) and Docker's `~/.docker/config.json`
//! (read only).
//!
//! Both files share one shape: `{"auths": {"KEY": {"auth": base64("user:password")}}}`.
//! A KEY is a registry (`quay.io`, `127.0.0.1:5000`), a registry with a
//! repository namespace (`quay.io/org`, the containers format allows that to
//! hold different credentials per namespace), or Docker's URL form
//! (`https://index.docker.io/v1/`). Lookup tries the most specific key first.
//!
//! Search order, as containers/image does it: `$REGISTRY_AUTH_FILE` if set
//! (and then only it); else `$XDG_RUNTIME_DIR/containers/auth.json` (or
//! `/run/containers/$UID/auth.json` without `XDG_RUNTIME_DIR`), then
//! `$XDG_CONFIG_HOME/containers/auth.json`, then `~/.docker/config.json`.
//! The first file with a matching entry wins. `store` and `remove` write the
//! first location only.
//!
//! Environment variables are read only in [`AuthFiles::from_env`] and
//! [`default_auth_file`]; everything else takes paths, so tests never touch
//! the process environment.
//!
//! Not supported: Docker credential helpers (`credsStore`, `credHelpers`) and
//! `identitytoken` (OAuth2 refresh tokens); entries using them are skipped.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::reference;

/// A user name and password (or token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub username: String,
    pub password: String,
}

impl Credential {
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            password: password.into(),
        }
    }

    /// The value of an `Authorization: Basic …` header (and of an auth file's
    /// `auth` field): base64 of `user:password`.
    pub fn basic_token(&self) -> String {
        BASE64.encode(format!("{}:{}", self.username, self.password))
    }
}

/// Never prints the password, so credentials cannot leak into logs or error
/// chains through `{:?}`.
impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("read credentials file `{path}`")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("parse credentials file `{path}`")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("credentials file `{path}` is not a JSON object with an `auths` object")]
    Shape { path: PathBuf },
    #[error(
        "invalid `auth` entry for `{key}` in `{path}`: expected base64 of `user:password`; run `builder login` again"
    )]
    BadAuth { path: PathBuf, key: String },
    #[error("write credentials file `{path}`")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The files credentials are read from, in search order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthFiles {
    pub files: Vec<PathBuf>,
}

impl AuthFiles {
    /// The default search list, from the process environment.
    pub fn from_env() -> Self {
        Self::from_vars(|k| std::env::var_os(k), rustix::process::getuid().as_raw())
    }

    /// Only `path` (`--authfile`).
    pub fn single(path: impl Into<PathBuf>) -> Self {
        Self {
            files: vec![path.into()],
        }
    }

    /// The search list for the given environment and user id.
    pub fn from_vars(var: impl Fn(&str) -> Option<OsString>, uid: u32) -> Self {
        let var = |k: &str| var(k).filter(|v| !v.is_empty());
        if let Some(file) = var("REGISTRY_AUTH_FILE") {
            return Self::single(file);
        }
        let mut files = vec![auth_file_from_vars(&var, uid)];
        let home = var("HOME").map(PathBuf::from);
        let config_home = var("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(".config")));
        if let Some(dir) = config_home {
            files.push(dir.join("containers/auth.json"));
        }
        if let Some(home) = home {
            files.push(home.join(".docker/config.json"));
        }
        Self { files }
    }

    /// The credential for `registry` (and optionally a repository in it,
    /// for namespace-scoped entries).
    pub fn lookup(
        &self,
        registry: &str,
        repository: Option<&str>,
    ) -> Result<Option<Credential>, CredentialsError> {
        lookup(&self.files, registry, repository)
    }
}

/// Where `store` and `remove` write: `$REGISTRY_AUTH_FILE`, else
/// `$XDG_RUNTIME_DIR/containers/auth.json`, else
/// `/run/containers/$UID/auth.json` (podman's choice: a tmpfs that is
/// cleared at boot, so a login does not outlive the machine's uptime).
pub fn default_auth_file() -> PathBuf {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(file) = var("REGISTRY_AUTH_FILE") {
        return PathBuf::from(file);
    }
    auth_file_from_vars(&var, rustix::process::getuid().as_raw())
}

fn auth_file_from_vars(var: &impl Fn(&str) -> Option<OsString>, uid: u32) -> PathBuf {
    match var("XDG_RUNTIME_DIR") {
        Some(dir) => PathBuf::from(dir).join("containers/auth.json"),
        None => PathBuf::from(format!("/run/containers/{uid}/auth.json")),
    }
}

/// The credential for `registry` from the default files (see the module doc).
pub fn load(registry: &str) -> Result<Option<Credential>, CredentialsError> {
    AuthFiles::from_env().lookup(registry, None)
}

/// Saves a credential for `registry` in the default auth file; returns the
/// file's path.
pub fn store(registry: &str, credential: &Credential) -> Result<PathBuf, CredentialsError> {
    let path = default_auth_file();
    store_in(&path, registry, credential)?;
    Ok(path)
}

/// Removes `registry`'s credential from the default auth file. Returns
/// whether there was one.
pub fn remove(registry: &str) -> Result<bool, CredentialsError> {
    remove_from(&default_auth_file(), registry)
}

/// Looks `registry` (and `repository`) up in `files`, in order: in each file
/// the most specific key wins (`reg/ns/repo`, then `reg/ns`, then `reg`),
/// and the first file with a match decides. Missing files are skipped.
pub fn lookup(
    files: &[PathBuf],
    registry: &str,
    repository: Option<&str>,
) -> Result<Option<Credential>, CredentialsError> {
    let registry = reference::normalize_registry(registry);
    // Most specific first: registry/a/b/c, registry/a/b, registry/a, registry.
    let mut wanted = Vec::new();
    if let Some(repo) = repository {
        let parts: Vec<&str> = repo.split('/').collect();
        for n in (1..=parts.len()).rev() {
            wanted.push(format!("{registry}/{}", parts[..n].join("/")));
        }
    }
    wanted.push(registry);

    for path in files {
        let Some(auths) = read_auths(path)? else {
            continue;
        };
        for want in &wanted {
            for (key, entry) in &auths {
                if normalize_key(key) != *want {
                    continue;
                }
                if let Some(cred) = decode_entry(path, key, entry)? {
                    return Ok(Some(cred));
                }
            }
        }
    }
    Ok(None)
}

/// Writes `credential` for `registry` into the auth file at `path`, keeping
/// every other entry and field. The file is replaced atomically (temp file,
/// fsync, rename) with mode 0600, its directory created with mode 0700.
pub fn store_in(
    path: &Path,
    registry: &str,
    credential: &Credential,
) -> Result<(), CredentialsError> {
    let registry = reference::normalize_registry(registry);
    let mut doc = read_document(path)?.unwrap_or_else(|| serde_json::json!({}));
    let auths = auths_mut(&mut doc, path)?;
    auths.retain(|k, _| normalize_key(k) != registry);
    auths.insert(
        registry,
        serde_json::json!({ "auth": credential.basic_token() }),
    );
    write_document(path, &doc)
}

/// Removes every entry for `registry` from the auth file at `path`. Returns
/// whether one existed; a missing file means there was none.
pub fn remove_from(path: &Path, registry: &str) -> Result<bool, CredentialsError> {
    let registry = reference::normalize_registry(registry);
    let Some(mut doc) = read_document(path)? else {
        return Ok(false);
    };
    let auths = auths_mut(&mut doc, path)?;
    let before = auths.len();
    auths.retain(|k, _| normalize_key(k) != registry);
    if auths.len() == before {
        return Ok(false);
    }
    write_document(path, &doc)?;
    Ok(true)
}

/// Maps an auth-file key to the form lookups compare against: Docker's URL
/// keys (`https://index.docker.io/v1/`) become a bare host, and the Docker
/// Hub aliases become `docker.io`. Podman's `registry/namespace` keys keep
/// their path.
fn normalize_key(key: &str) -> String {
    let (is_url, rest) = match key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
    {
        Some(rest) => (true, rest),
        None => (false, key),
    };
    let rest = rest.trim_end_matches('/');
    let (host, path) = match rest.split_once('/') {
        // A URL's path is an API version (`/v1/`), not a namespace.
        Some((host, _)) if is_url => (host, None),
        Some((host, path)) => (host, Some(path)),
        None => (rest, None),
    };
    let host = reference::normalize_registry(host);
    match path {
        Some(p) => format!("{host}/{p}"),
        None => host,
    }
}

fn decode_entry(
    path: &Path,
    key: &str,
    entry: &serde_json::Value,
) -> Result<Option<Credential>, CredentialsError> {
    let bad = || CredentialsError::BadAuth {
        path: path.to_path_buf(),
        key: key.to_string(),
    };
    let Some(auth) = entry.get("auth").and_then(|a| a.as_str()) else {
        // An entry without `auth` belongs to a credential helper or holds an
        // identity token: neither is supported, so it gives no credential.
        return Ok(None);
    };
    if auth.is_empty() {
        return Ok(None);
    }
    let decoded = BASE64.decode(auth.trim()).map_err(|_| bad())?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
    let (user, pass) = decoded.split_once(':').ok_or_else(bad)?;
    Ok(Some(Credential::new(user, pass)))
}

fn read_document(path: &Path) -> Result<Option<serde_json::Value>, CredentialsError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(CredentialsError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    // An empty file is what `touch` leaves; treat it as no entries.
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Some(serde_json::json!({})));
    }
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| CredentialsError::Parse {
            path: path.to_path_buf(),
            source,
        })
}

fn read_auths(
    path: &Path,
) -> Result<Option<BTreeMap<String, serde_json::Value>>, CredentialsError> {
    let Some(doc) = read_document(path)? else {
        return Ok(None);
    };
    let shape = || CredentialsError::Shape {
        path: path.to_path_buf(),
    };
    match doc {
        serde_json::Value::Object(mut map) => match map.remove("auths") {
            None | Some(serde_json::Value::Null) => Ok(Some(BTreeMap::new())),
            Some(serde_json::Value::Object(auths)) => Ok(Some(auths.into_iter().collect())),
            Some(_) => Err(shape()),
        },
        _ => Err(shape()),
    }
}

fn auths_mut<'a>(
    doc: &'a mut serde_json::Value,
    path: &Path,
) -> Result<&'a mut serde_json::Map<String, serde_json::Value>, CredentialsError> {
    let shape = || CredentialsError::Shape {
        path: path.to_path_buf(),
    };
    let obj = doc.as_object_mut().ok_or_else(shape)?;
    let auths = obj.entry("auths").or_insert_with(|| serde_json::json!({}));
    if auths.is_null() {
        *auths = serde_json::json!({});
    }
    auths.as_object_mut().ok_or_else(shape)
}

fn write_document(path: &Path, doc: &serde_json::Value) -> Result<(), CredentialsError> {
    let err = |source| CredentialsError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(err)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".auth.json.")
        .permissions(fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)
        .map_err(err)?;
    let mut text = serde_json::to_vec_pretty(doc).expect("a JSON value always serialises");
    text.push(b'\n');
    tmp.write_all(&text).map_err(err)?;
    tmp.as_file().sync_all().map_err(err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    // The rename is durable only once the directory is synced.
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    fn b64(s: &str) -> String {
        BASE64.encode(s)
    }

    #[test]
    fn search_list_follows_containers_image() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(name, _)| *name == k)
                    .map(|(_, v)| OsString::from(v))
            }
        };
        let files = AuthFiles::from_vars(
            env(&[("REGISTRY_AUTH_FILE", "/a/auth.json"), ("HOME", "/h")]),
            0,
        );
        assert_eq!(files.files, vec![PathBuf::from("/a/auth.json")]);

        let files = AuthFiles::from_vars(
            env(&[("XDG_RUNTIME_DIR", "/run/user/1000"), ("HOME", "/h")]),
            1000,
        );
        assert_eq!(
            files.files,
            vec![
                PathBuf::from("/run/user/1000/containers/auth.json"),
                PathBuf::from("/h/.config/containers/auth.json"),
                PathBuf::from("/h/.docker/config.json"),
            ]
        );

        let files = AuthFiles::from_vars(
            env(&[
                ("HOME", "/root"),
                ("XDG_CONFIG_HOME", "/cfg"),
                ("XDG_RUNTIME_DIR", ""),
            ]),
            0,
        );
        assert_eq!(
            files.files,
            vec![
                PathBuf::from("/run/containers/0/auth.json"),
                PathBuf::from("/cfg/containers/auth.json"),
                PathBuf::from("/root/.docker/config.json"),
            ]
        );
    }

    #[test]
    fn lookup_reads_both_formats_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let auth = dir.path().join("containers/auth.json");
        let docker = dir.path().join("docker/config.json");
        write(
            &auth,
            &format!(
                r#"{{"auths": {{
                    "127.0.0.1:5000": {{"auth": "{}"}},
                    "quay.io/team": {{"auth": "{}"}},
                    "quay.io": {{"auth": "{}"}}
                }}}}"#,
                b64("alice:s3cret:with:colons"),
                b64("team:tpass"),
                b64("any:apass"),
            ),
        );
        write(
            &docker,
            &format!(
                r#"{{"auths": {{
                    "https://index.docker.io/v1/": {{"auth": "{}"}},
                    "127.0.0.1:5000": {{"auth": "{}"}},
                    "helper.example.com": {{}}
                }}, "credsStore": "desktop"}}"#,
                b64("hubuser:hubpass"),
                b64("shadowed:x"),
            ),
        );
        let files = AuthFiles {
            files: vec![
                dir.path().join("missing.json"),
                auth.clone(),
                docker.clone(),
            ],
        };
        let get = |reg: &str, repo: Option<&str>| files.lookup(reg, repo).unwrap();

        assert_eq!(
            get("127.0.0.1:5000", None),
            Some(Credential::new("alice", "s3cret:with:colons"))
        );
        for name in ["docker.io", "index.docker.io", "registry-1.docker.io"] {
            assert_eq!(
                get(name, None),
                Some(Credential::new("hubuser", "hubpass")),
                "{name}"
            );
        }
        assert_eq!(
            get("quay.io", Some("team/app")),
            Some(Credential::new("team", "tpass"))
        );
        assert_eq!(
            get("quay.io", Some("other/app")),
            Some(Credential::new("any", "apass"))
        );
        assert_eq!(get("helper.example.com", None), None);
        assert_eq!(get("unknown.example.com", None), None);
    }

    #[test]
    fn broken_files_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.json");
        write(&path, "{not json");
        let err = lookup(std::slice::from_ref(&path), "x.io", None).unwrap_err();
        assert!(matches!(err, CredentialsError::Parse { .. }), "{err}");
        assert!(err.to_string().contains(&path.display().to_string()));

        write(&path, r#"{"auths": {"x.io": {"auth": "!!!"}}}"#);
        let err = lookup(std::slice::from_ref(&path), "x.io", None).unwrap_err();
        assert!(
            err.to_string().contains("invalid `auth` entry for `x.io`"),
            "{err}"
        );

        write(
            &path,
            &format!(
                r#"{{"auths": {{"x.io": {{"auth": "{}"}}}}}}"#,
                b64("nocolon")
            ),
        );
        assert!(lookup(std::slice::from_ref(&path), "x.io", None).is_err());

        write(&path, r#"{"auths": []}"#);
        let err = lookup(std::slice::from_ref(&path), "x.io", None).unwrap_err();
        assert!(matches!(err, CredentialsError::Shape { .. }), "{err}");

        write(&path, "");
        assert_eq!(
            lookup(std::slice::from_ref(&path), "x.io", None).unwrap(),
            None
        );
    }

    #[test]
    fn store_and_remove_keep_other_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new/containers/auth.json");

        store_in(&path, "127.0.0.1:5000", &Credential::new("u", "p")).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode, 0o700);
        let doc: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        assert_eq!(doc["auths"]["127.0.0.1:5000"]["auth"], b64("u:p"));

        // Keep unknown fields and other registries; replace old spellings.
        write(
            &path,
            &format!(
                r#"{{"auths": {{"https://index.docker.io/v1/": {{"auth": "{}"}},
                               "other.io": {{"auth": "{}"}}}}, "credHelpers": {{"a": "b"}}}}"#,
                b64("old:old"),
                b64("o:o")
            ),
        );
        store_in(&path, "index.docker.io", &Credential::new("new", "new")).unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        assert_eq!(doc["credHelpers"]["a"], "b");
        assert_eq!(doc["auths"]["other.io"]["auth"], b64("o:o"));
        assert_eq!(doc["auths"]["docker.io"]["auth"], b64("new:new"));
        assert!(doc["auths"].get("https://index.docker.io/v1/").is_none());
        assert_eq!(
            lookup(std::slice::from_ref(&path), "docker.io", None).unwrap(),
            Some(Credential::new("new", "new"))
        );

        assert!(remove_from(&path, "docker.io").unwrap());
        assert!(!remove_from(&path, "docker.io").unwrap());
        assert_eq!(
            lookup(std::slice::from_ref(&path), "docker.io", None).unwrap(),
            None
        );
        assert!(
            lookup(std::slice::from_ref(&path), "other.io", None)
                .unwrap()
                .is_some()
        );
        assert!(!remove_from(&dir.path().join("absent.json"), "x.io").unwrap());

        // No temp files are left next to the auth file.
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![OsString::from("auth.json")]);
    }

    #[test]
    fn debug_never_shows_the_password() {
        let c = Credential::new("user", "hunter2");
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
