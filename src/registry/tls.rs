//! Which certificates a TLS connection to a registry host trusts.
//!
//! Roots are the system's CA bundle plus, per host, every `*.crt` file in
//! `/etc/containers/certs.d/HOST[:PORT]/` and `/etc/docker/certs.d/HOST[:PORT]/`
//! (the layout podman and docker share), or in the one `--cert-dir` given
//! instead of those. One [`ureq::tls::TlsConfig`] is built per host.
//!
//! The system bundle is read from a file rather than through
//! `rustls-native-certs`: on Linux that crate does the same (find the distro
//! bundle, parse the PEM), and doing it here costs a few lines, no
//! dependency, and lets an error name the file. `SSL_CERT_FILE` overrides the
//! search, as it does for OpenSSL-based tools. Without any bundle (a
//! scratch container), the Mozilla roots compiled into ureq
//! (`webpki-roots`) are used.
//!
//! With verification off (`--tls-verify=false` or an insecure registry),
//! ureq's accept-everything verifier is used: the connection is still
//! encrypted but anyone on the path can impersonate the registry. Content
//! stays safe only because every blob and manifest is checked against a
//! digest, which a pull by tag does not pin — so this is for test and lab
//! registries only.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

use super::error::RegistryError;

/// Where distributions keep their CA bundle, most common first (Debian and
/// Ubuntu, Fedora and RHEL, OpenSUSE, Alpine).
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// The per-registry certificate directories podman and docker read.
pub const DEFAULT_CERTS_DIRS: &[&str] = &["/etc/containers/certs.d", "/etc/docker/certs.d"];

/// The system CA bundle, read once per process.
fn system_roots() -> Result<&'static Option<Arc<Vec<Certificate<'static>>>>, RegistryError> {
    static ROOTS: OnceLock<Option<Arc<Vec<Certificate<'static>>>>> = OnceLock::new();
    if let Some(roots) = ROOTS.get() {
        return Ok(roots);
    }
    let path = std::env::var_os("SSL_CERT_FILE")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            SYSTEM_BUNDLES
                .iter()
                .map(PathBuf::from)
                .find(|p| p.is_file())
        });
    let roots = match path {
        Some(path) => Some(Arc::new(read_pem_certs(&path)?)),
        None => None,
    };
    Ok(ROOTS.get_or_init(|| roots))
}

/// The `*.crt` files that add trust for `host` (as written in the image
/// reference, `HOST` or `HOST:PORT`): from `cert_dir` when given, else from
/// `<dir>/<host>/` for each of `certs_dirs`. Sorted, for a stable order.
pub fn ca_files(host: &str, cert_dir: Option<&Path>, certs_dirs: &[PathBuf]) -> Vec<PathBuf> {
    let dirs: Vec<PathBuf> = match cert_dir {
        Some(d) => vec![d.to_path_buf()],
        None => certs_dirs.iter().map(|d| d.join(host)).collect(),
    };
    let mut files = Vec::new();
    for dir in dirs {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        let mut found: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "crt"))
            .collect();
        found.sort();
        files.extend(found);
    }
    files
}

/// The TLS configuration for one host: system roots plus `extra_ca_files`,
/// or no verification at all when `verify` is false.
pub fn config_for(verify: bool, extra_ca_files: &[PathBuf]) -> Result<TlsConfig, RegistryError> {
    if !verify {
        return Ok(TlsConfig::builder().disable_verification(true).build());
    }
    let system = system_roots()?;
    if extra_ca_files.is_empty() {
        let roots = match system {
            Some(certs) => RootCerts::Specific(certs.clone()),
            None => RootCerts::WebPki,
        };
        return Ok(TlsConfig::builder().root_certs(roots).build());
    }
    let mut certs: Vec<Certificate<'static>> = system
        .as_ref()
        .map(|c| c.as_ref().clone())
        .unwrap_or_default();
    for file in extra_ca_files {
        certs.extend(read_pem_certs(file)?);
    }
    Ok(TlsConfig::builder()
        .root_certs(RootCerts::Specific(Arc::new(certs)))
        .build())
}

/// The TLS configuration for a host with no registry settings (ADD's
/// `https://` sources): the system's roots, as Go's client (so BuildKit)
/// uses them.
pub fn system_config() -> Result<TlsConfig, RegistryError> {
    config_for(true, &[])
}

/// Every certificate in a PEM file (other PEM items are ignored).
fn read_pem_certs(path: &Path) -> Result<Vec<Certificate<'static>>, RegistryError> {
    let err = |source| RegistryError::CaFile {
        path: path.to_path_buf(),
        source,
    };
    let pem = fs::read(path).map_err(err)?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(PemItem::Certificate(c)) => certs.push(c),
            Ok(_) => {}
            Err(e) => return Err(err(e.into_io())),
        }
    }
    if certs.is_empty() {
        return Err(err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "no PEM certificate in the file",
        )));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_files_come_from_the_host_dirs_or_the_cert_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("a");
        let b = tmp.path().join("b");
        fs::create_dir_all(a.join("reg.io:5000")).unwrap();
        fs::create_dir_all(b.join("reg.io:5000")).unwrap();
        fs::write(a.join("reg.io:5000/z.crt"), "").unwrap();
        fs::write(a.join("reg.io:5000/a.crt"), "").unwrap();
        fs::write(a.join("reg.io:5000/client.cert"), "").unwrap();
        fs::write(b.join("reg.io:5000/ca.crt"), "").unwrap();
        let dirs = vec![a.clone(), b.clone()];
        assert_eq!(
            ca_files("reg.io:5000", None, &dirs),
            vec![
                a.join("reg.io:5000/a.crt"),
                a.join("reg.io:5000/z.crt"),
                b.join("reg.io:5000/ca.crt")
            ]
        );
        assert!(ca_files("other.io", None, &dirs).is_empty());
        // --cert-dir replaces the default directories.
        let own = a.join("reg.io:5000");
        assert_eq!(ca_files("anything", Some(&own), &dirs).len(), 2);
    }

    #[test]
    fn bad_ca_files_are_errors_naming_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("ca.crt");
        fs::write(&file, "not a certificate").unwrap();
        let err = config_for(true, std::slice::from_ref(&file)).unwrap_err();
        assert!(
            err.to_string().contains(&file.display().to_string()),
            "{err}"
        );
        let err = config_for(true, &[tmp.path().join("missing.crt")]).unwrap_err();
        assert!(matches!(err, RegistryError::CaFile { .. }), "{err}");
        assert!(config_for(false, &[]).unwrap().disable_verification());
    }
}
