//! ADD of http(s) URLs through the public build API, against a real HTTP
//! server on 127.0.0.1 that this file starts: downloads into a directory
//! and to a file name, `Last-Modified` as mtime, `--checksum` match and
//! mismatch (nothing written, nothing left in scratch), 404, connection
//! refused, redirects, remote archives left packed, and the content digest
//! following the served bytes.
//!
//! The server is a std::net listener on its own thread: one request per
//! connection (`Connection: close`), routes from a table the test can
//! change while it runs, and a log of the paths asked for.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use builder::build::{BuildError, Context, CopyOptions, CopySource, plan_copy};
use sha2::{Digest as _, Sha256};

use crate::support::scratch_root;

/// What the server answers for a path.
#[derive(Clone)]
struct Route {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Route {
    fn ok(body: &[u8]) -> Route {
        Route {
            status: 200,
            headers: Vec::new(),
            body: body.to_vec(),
        }
    }

    fn header(mut self, name: &str, value: &str) -> Route {
        self.headers.push((name.into(), value.into()));
        self
    }
}

struct Server {
    base: String,
    routes: Arc<Mutex<HashMap<String, Route>>>,
    log: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let routes: Arc<Mutex<HashMap<String, Route>>> = Arc::default();
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (routes, log, stop) = (routes.clone(), log.clone(), stop.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    // A client that hangs up early is its own business.
                    let _ = serve(conn, &routes, &log);
                }
            })
        };
        Server {
            base,
            routes,
            log,
            stop,
            thread: Some(thread),
        }
    }

    fn route(&self, path: &str, route: Route) {
        self.routes.lock().unwrap().insert(path.into(), route);
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn requests(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.base.trim_start_matches("http://"));
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

fn serve(
    conn: TcpStream,
    routes: &Mutex<HashMap<String, Route>>,
    log: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
    }
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .to_string();
    log.lock().unwrap().push(path.clone());
    let route = routes.lock().unwrap().get(&path).cloned().unwrap_or(Route {
        status: 404,
        headers: Vec::new(),
        body: b"no such file\n".to_vec(),
    });
    let reason = match route.status {
        200 => "OK",
        302 => "Found",
        404 => "Not Found",
        _ => "Whatever",
    };
    let mut out = conn;
    let mut head = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Length: {}\r\nConnection: close\r\n",
        route.status,
        route.body.len()
    );
    for (k, v) in &route.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    out.write_all(&route.body)?;
    out.flush()
}

/// A build context, an image rootfs, a scratch directory and an upper.
struct Dirs {
    _root: tempfile::TempDir,
    context: PathBuf,
    rootfs: PathBuf,
    scratch: PathBuf,
    upper: PathBuf,
}

fn dirs() -> Dirs {
    let root = tempfile::tempdir_in(scratch_root()).unwrap();
    let d = |name: &str| {
        let p = root.path().join(name);
        std::fs::create_dir_all(&p).unwrap();
        p
    };
    Dirs {
        context: d("context"),
        rootfs: d("rootfs"),
        scratch: d("scratch"),
        upper: d("upper"),
        _root: root,
    }
}

fn add<'a>(d: &'a Dirs, url: &str, dest: &str) -> CopyOptions<'a> {
    CopyOptions {
        sources: vec![CopySource::Path(url.into())],
        dest: dest.into(),
        workdir: "/",
        chown: None,
        chmod: None,
        add: true,
        rootfs: &d.rootfs,
        scratch: Some(&d.scratch),
        checksum: None,
    }
}

fn run(d: &Dirs, o: &CopyOptions) -> Result<(), BuildError> {
    let ctx = Context::open(&d.context, None)?;
    plan_copy(&ctx, o)?.apply(&d.upper)
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn is_empty(dir: &Path) -> bool {
    std::fs::read_dir(dir).unwrap().next().is_none()
}

const HELLO: &[u8] = b"hello from the server\n";
/// 1994-11-06T08:49:37Z, RFC 9110's example date.
const LAST_MODIFIED: &str = "Sun, 06 Nov 1994 08:49:37 GMT";
const LAST_MODIFIED_UNIX: i64 = 784_111_777;

#[test]
fn download_into_a_directory_takes_the_url_name_mode_0600_and_last_modified() {
    let server = Server::start();
    // The query is not part of the name (but the server is sent it).
    server.route(
        "/files/hello.txt?token=abc",
        Route::ok(HELLO).header("Last-Modified", LAST_MODIFIED),
    );
    let d = dirs();
    let url = server.url("/files/hello.txt?token=abc");
    run(&d, &add(&d, &url, "/opt/tools/")).unwrap();
    let file = d.upper.join("opt/tools/hello.txt");
    assert_eq!(std::fs::read(&file).unwrap(), HELLO);
    let m = std::fs::symlink_metadata(&file).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o600);
    assert_eq!((m.uid(), m.gid()), (0, 0));
    assert_eq!((m.mtime(), m.mtime_nsec()), (LAST_MODIFIED_UNIX, 0));
    // Missing parents are created as for any COPY.
    let parent = std::fs::metadata(d.upper.join("opt/tools")).unwrap();
    assert_eq!(parent.mode() & 0o7777, 0o755);
    assert_eq!(server.requests(), ["/files/hello.txt?token=abc"]);
    // The plan is gone: so is its download.
    assert!(is_empty(&d.scratch), "download left in scratch");
}

#[test]
fn download_to_a_file_name_with_chmod_chown_and_epoch_mtime_without_last_modified() {
    let server = Server::start();
    server.route("/raw", Route::ok(HELLO));
    let d = dirs();
    std::fs::create_dir_all(d.rootfs.join("etc")).unwrap();
    std::fs::write(d.rootfs.join("etc/passwd"), "app:x:1000:1000::/:/bin/sh\n").unwrap();
    std::fs::write(d.rootfs.join("etc/group"), "app:x:1000:\n").unwrap();
    let mut o = add(&d, &server.url("/raw"), "/usr/local/bin/tool");
    o.chmod = Some("0755".into());
    o.chown = Some("app:app".into());
    run(&d, &o).unwrap();
    let file = d.upper.join("usr/local/bin/tool");
    assert_eq!(std::fs::read(&file).unwrap(), HELLO);
    let m = std::fs::symlink_metadata(&file).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o755);
    assert_eq!((m.uid(), m.gid()), (1000, 1000));
    assert_eq!((m.mtime(), m.mtime_nsec()), (0, 0));
    // A URL whose path names no file is fine when the destination is one.
    server.route("/", Route::ok(b"index"));
    run(&d, &add(&d, &server.url("/"), "/index.html")).unwrap();
    assert_eq!(std::fs::read(d.upper.join("index.html")).unwrap(), b"index");
}

#[test]
fn checksum_match_writes_and_mismatch_writes_nothing() {
    let server = Server::start();
    server.route("/pinned.bin", Route::ok(HELLO));
    let d = dirs();
    let url = server.url("/pinned.bin");
    let mut o = add(&d, &url, "/pinned/");
    o.checksum = Some(sha256(HELLO));
    run(&d, &o).unwrap();
    assert_eq!(
        std::fs::read(d.upper.join("pinned/pinned.bin")).unwrap(),
        HELLO
    );

    let d = dirs();
    let wrong = sha256(b"something else");
    let mut o = add(&d, &url, "/pinned/");
    o.checksum = Some(wrong.clone());
    let e = run(&d, &o).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, BuildError::ChecksumMismatch { .. }), "{msg}");
    assert!(msg.contains(&format!("`{url}`")), "{msg}");
    assert!(msg.contains(&format!("expected `{wrong}`")), "{msg}");
    assert!(msg.contains(&format!("got `{}`", sha256(HELLO))), "{msg}");
    assert!(is_empty(&d.upper), "something was written to the upper");
    assert!(is_empty(&d.scratch), "the rejected download was kept");
}

#[test]
fn http_errors_and_refused_connections_name_the_url() {
    let server = Server::start();
    let d = dirs();
    let url = server.url("/missing.tar.gz");
    let e = run(&d, &add(&d, &url, "/x/")).unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(e, BuildError::DownloadStatus { status: 404, .. }),
        "{msg}"
    );
    assert_eq!(
        msg,
        format!("download `{url}`: the server answered 404 Not Found")
    );
    assert!(is_empty(&d.upper) && is_empty(&d.scratch));

    // A port nobody listens on: bind one, then free it.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/file");
    let e = run(&d, &add(&d, &url, "/x/")).unwrap_err();
    assert!(matches!(e, BuildError::Download { .. }), "{e}");
    assert_eq!(e.to_string(), format!("download `{url}`"));
    let cause = std::error::Error::source(&e).unwrap().to_string();
    assert!(cause.to_lowercase().contains("refused"), "{cause}");
    assert!(is_empty(&d.upper) && is_empty(&d.scratch));
}

#[test]
fn redirects_are_followed_and_remote_archives_stay_packed() {
    let server = Server::start();
    // A real .tar.gz: ADD extracts it from the context, never from a URL.
    let work = tempfile::tempdir_in(scratch_root()).unwrap();
    std::fs::write(work.path().join("inside"), "x").unwrap();
    let archive = work.path().join("a.tar.gz");
    let status = std::process::Command::new("tar")
        .arg("-czf")
        .arg(&archive)
        .arg("-C")
        .arg(work.path())
        .arg("inside")
        .status()
        .unwrap();
    assert!(status.success());
    let bytes = std::fs::read(&archive).unwrap();
    server.route("/dist/a.tar.gz", Route::ok(&bytes));
    server.route(
        "/latest",
        Route {
            status: 302,
            headers: vec![("Location".into(), "/dist/a.tar.gz".into())],
            body: Vec::new(),
        },
    );
    let d = dirs();
    // Named after the URL asked for, not where it redirected to.
    run(&d, &add(&d, &server.url("/latest"), "/dl/")).unwrap();
    assert_eq!(std::fs::read(d.upper.join("dl/latest")).unwrap(), bytes);
    assert!(!d.upper.join("dl/inside").exists());
    assert_eq!(server.requests(), ["/latest", "/dist/a.tar.gz"]);
}

#[test]
fn the_content_digest_follows_the_downloaded_bytes() {
    let server = Server::start();
    let d = dirs();
    let ctx = Context::open(&d.context, None).unwrap();
    let url = server.url("/data");
    let digest = |body: &[u8]| {
        server.route("/data", Route::ok(body));
        plan_copy(&ctx, &add(&d, &url, "/d/"))
            .unwrap()
            .content_digest()
            .unwrap()
    };
    let one = digest(b"version 1");
    assert_eq!(one, digest(b"version 1"));
    assert_ne!(one, digest(b"version 2"));
    // Mtime is no part of the key (as for context files).
    server.route(
        "/data",
        Route::ok(b"version 1").header("Last-Modified", LAST_MODIFIED),
    );
    let again = plan_copy(&ctx, &add(&d, &url, "/d/"))
        .unwrap()
        .content_digest()
        .unwrap();
    assert_eq!(one, again);
}
