//! A programmable PEP 691 upstream index on 127.0.0.1, for the mirror's tests.
//!
//! It serves `/simple/<name>/` as PEP 691 JSON (with an `ETag`, honouring `If-None-Match`) and
//! the files its pages list at `/packages/<filename>` (and PEP 658 `.metadata` next to wheels),
//! from real wheels downloaded once from PyPI into `target/` ([`real_wheels`]) or bytes a test
//! chooses. Every request path is logged, so a test can prove a name was never asked for. A test
//! flips faults at run time, per project page or per file: content changed under a listed hash, a
//! name re-published with another hash, files added and removed, error statuses, no listener at
//! all, an answer that never comes, a body that never ends, malformed JSON, an oversized page, a
//! redirect to another host, a page naming another project, and the upload-time of each file.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crate::{PythonEnv, sha256_hex, target_dir};

/// The real pure-Python wheels [`real_wheels`] downloads from PyPI: two releases of `six` (so
/// "latest" differs from "all"), and `idna` and `iniconfig`.
pub const REAL_WHEELS: [&str; 5] = [
    "six==1.16.0",
    "six==1.17.0",
    "idna==3.10",
    "iniconfig==2.0.0",
    "iniconfig==2.1.0",
];

/// How long a hanging answer or an endless body goes on at most if the client never gives up, so
/// that a broken mirror fails its test rather than keeping the test process alive.
const FAULT_LIMIT: Duration = Duration::from_secs(600);

/// The upload-time of a file the test did not choose one for.
const DEFAULT_UPLOAD_TIME: &str = "2024-01-01T00:00:00.000000Z";

/// The wheels of [`REAL_WHEELS`], downloaded from PyPI once into `target/upstream-wheels` and
/// reused, as `(filename, bytes)` sorted by file name.
pub fn real_wheels() -> Vec<(String, Vec<u8>)> {
    let dir = target_dir().join("upstream-wheels-1");
    let ready = dir.join(".tufa-ready");
    if !ready.exists() {
        std::fs::create_dir_all(&dir).expect("creating the upstream wheel cache");
        let lock = std::fs::File::create(target_dir().join("upstream-wheels.lock"))
            .expect("creating the upstream wheel lock");
        lock.lock().expect("locking the upstream wheel cache");
        if !ready.exists() {
            // One call per pin: pip resolves one call's pins together, and two releases of one
            // project conflict.
            for pin in REAL_WHEELS {
                let output = PythonEnv::shared()
                    .command("pip")
                    .args(["download", "--quiet", "--no-deps", "--only-binary=:all:"])
                    .args(["--platform", "any", "--dest"])
                    .arg(&dir)
                    .arg(pin)
                    .output()
                    .expect("running pip download");
                assert!(
                    output.status.success(),
                    "pip download {pin} from PyPI failed:\n{}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            std::fs::write(&ready, "").expect("marking the upstream wheel cache ready");
        }
    }
    let mut wheels: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .expect("reading the upstream wheel cache")
        .map(|entry| entry.expect("listing the upstream wheel cache").path())
        .filter(|path| path.extension().is_some_and(|e| e == "whl"))
        .map(|path: PathBuf| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).expect("reading a cached wheel"))
        })
        .collect();
    wheels.sort();
    assert_eq!(wheels.len(), REAL_WHEELS.len(), "cached wheels: {dir:?}");
    wheels
}

/// A misbehaviour of the upstream for one project page or one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status (and the reason `Injected fault`).
    Status(u16),
    /// Read the request and never answer.
    Hang,
    /// Answer 200 and send a body that never ends (no `Content-Length`).
    EndlessBody,
    /// Answer `302 Found` to this absolute URL.
    Redirect(String),
    /// Pages only: a truncated JSON document.
    MalformedJson,
    /// Pages only: the real page padded to this many bytes (still valid JSON).
    Oversized(usize),
    /// Pages only: the page's `name` is this instead of the project's.
    WrongName(String),
}

impl Fault {
    fn for_files(&self) -> bool {
        matches!(
            self,
            Fault::Status(_) | Fault::Hang | Fault::EndlessBody | Fault::Redirect(_)
        )
    }
}

/// What a file's bytes are: held in memory, or generated on the fly for large files.
#[derive(Clone, Debug)]
enum Content {
    Bytes(Arc<Vec<u8>>),
    /// `len` pseudo-random bytes, the same each time they are served.
    Generated {
        len: u64,
    },
}

impl Content {
    fn len(&self) -> u64 {
        match self {
            Content::Bytes(bytes) => bytes.len() as u64,
            Content::Generated { len } => *len,
        }
    }

    /// Calls `sink` with the content in chunks until it ends or `sink` fails.
    fn stream(&self, mut sink: impl FnMut(&[u8]) -> std::io::Result<()>) -> std::io::Result<()> {
        match self {
            Content::Bytes(bytes) => bytes.chunks(64 * 1024).try_for_each(sink),
            Content::Generated { len } => {
                let block = generated_block();
                let mut chunk = block.clone();
                let mut left = *len;
                let mut index = 0u64;
                while left > 0 {
                    // Each block differs from the others in its first 8 bytes, so the file is not
                    // one block repeated (which a compressing layer would shrink).
                    chunk[..8].copy_from_slice(&index.to_le_bytes());
                    let n = left.min(chunk.len() as u64) as usize;
                    sink(&chunk[..n])?;
                    left -= n as u64;
                    index += 1;
                }
                Ok(())
            }
        }
    }

    fn sha256(&self) -> String {
        match self {
            Content::Bytes(bytes) => sha256_hex(bytes),
            Content::Generated { .. } => {
                let mut context = ring::digest::Context::new(&ring::digest::SHA256);
                let _ = self.stream(|chunk| {
                    context.update(chunk);
                    Ok(())
                });
                hex::encode(context.finish())
            }
        }
    }
}

fn generated_block() -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..1024 * 1024 / 8)
        .flat_map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()
        })
        .collect()
}

#[derive(Clone, Debug)]
struct File {
    filename: String,
    /// What the page lists (sha256, size) and what `.metadata` is derived from.
    listed: Content,
    listed_sha256: String,
    /// What `/packages/<filename>` serves, when it differs from `listed` (content changed upstream
    /// under the listed hash).
    served: Option<Content>,
    metadata: Option<Arc<Vec<u8>>>,
    requires_python: Option<String>,
    upload_time: String,
    yanked: Option<String>,
    /// PEP 740 provenance served at `/integrity/<filename>/provenance` and linked from the page.
    provenance: Option<Arc<Vec<u8>>>,
}

#[derive(Default)]
struct Project {
    /// The name as the page spells it.
    display: String,
    files: Vec<File>,
    fault: Option<Fault>,
    /// PEP 792 status and reason, when the page carries one.
    status: Option<(String, Option<String>)>,
}

#[derive(Default)]
struct State {
    projects: BTreeMap<String, Project>,
    file_faults: BTreeMap<String, Fault>,
    /// Bumped on every change, as PyPI's `_last-serial`.
    serial: u64,
}

struct Shared {
    state: Mutex<State>,
    log: Mutex<Vec<String>>,
    /// Bumped by `stop` and on drop: hanging answers and endless bodies of an older epoch end.
    epoch: AtomicU64,
    addr: SocketAddr,
}

/// The running upstream; stops (and ends every answer in progress) when dropped.
pub struct Upstream {
    shared: Arc<Shared>,
    acceptor: Option<(Arc<std::sync::atomic::AtomicBool>, JoinHandle<()>)>,
}

impl Upstream {
    /// Starts an empty upstream on a free loopback port.
    pub fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            log: Mutex::new(Vec::new()),
            epoch: AtomicU64::new(0),
            addr: listener.local_addr().expect("listener address"),
        });
        let mut upstream = Upstream {
            shared,
            acceptor: None,
        };
        upstream.accept_on(listener);
        upstream
    }

    /// Starts an upstream serving the real wheels of [`real_wheels`] under their projects.
    pub fn with_real_wheels() -> Upstream {
        let upstream = Upstream::start();
        for (filename, bytes) in real_wheels() {
            let project = filename.split('-').next().unwrap().to_string();
            upstream.add_file(&project, &filename, bytes);
        }
        upstream
    }

    fn accept_on(&mut self, listener: TcpListener) {
        listener
            .set_nonblocking(true)
            .expect("making the listener non-blocking");
        let running = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (flag, shared) = (running.clone(), self.shared.clone());
        // Polling lets `stop` close the listening socket, so that connecting is refused.
        let handle = std::thread::spawn(move || {
            while flag.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let shared = shared.clone();
                        std::thread::spawn(move || serve(stream, &shared));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        self.acceptor = Some((running, handle));
    }

    /// `http://127.0.0.1:<port>/simple/`, the root a mirror is configured with.
    pub fn simple_url(&self) -> String {
        format!("{}/simple/", self.url())
    }

    /// `http://127.0.0.1:<port>`, without a trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.shared.addr)
    }

    /// Closes the listening socket: connections are refused until [`Upstream::restart`]. Answers
    /// in progress that hang or never end are ended.
    pub fn stop(&mut self) {
        if let Some((running, handle)) = self.acceptor.take() {
            running.store(false, Ordering::SeqCst);
            let _ = handle.join();
        }
        self.shared.epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// Listens again on the same port after [`Upstream::stop`].
    pub fn restart(&mut self) {
        if self.acceptor.is_none() {
            let listener = TcpListener::bind(self.shared.addr).expect("binding the port again");
            self.accept_on(listener);
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap()
    }

    /// Lists a file under `project` (created if new), served as it is.
    pub fn add_file(&self, project: &str, filename: &str, bytes: Vec<u8>) {
        self.add(project, filename, Content::Bytes(Arc::new(bytes)));
    }

    /// Lists a file of `len` pseudo-random bytes under `project`, generated while it is served so
    /// that the test process does not hold it (for streaming a large file through the mirror).
    /// Returns its sha256.
    pub fn add_generated_file(&self, project: &str, filename: &str, len: u64) -> String {
        self.add(project, filename, Content::Generated { len })
    }

    fn add(&self, project: &str, filename: &str, content: Content) -> String {
        let file = file(filename, content);
        let sha256 = file.listed_sha256.clone();
        let mut state = self.state();
        state.serial += 1;
        let entry = state.projects.entry(normalize(project)).or_default();
        entry.display = project.to_string();
        entry.files.retain(|f| f.filename != filename);
        entry.files.push(file);
        sha256
    }

    /// Removes a file from its page and stops serving it.
    pub fn remove_file(&self, filename: &str) {
        self.edit(filename, |files, i| {
            files.remove(i);
        });
    }

    /// Serves `bytes` for `filename` while its page keeps listing the old sha256 and size: the
    /// file changed upstream under a published hash.
    pub fn change_content(&self, filename: &str, bytes: Vec<u8>) {
        self.edit(filename, |files, i| {
            files[i].served = Some(Content::Bytes(Arc::new(bytes)))
        });
    }

    /// Lists and serves `bytes` (another sha256 and size) under the same file name: upstream
    /// re-published a known name with another hash.
    pub fn republish(&self, filename: &str, bytes: Vec<u8>) {
        self.edit(filename, |files, i| {
            let upload_time = files[i].upload_time.clone();
            files[i] = file(filename, Content::Bytes(Arc::new(bytes)));
            files[i].upload_time = upload_time;
        });
    }

    /// Sets the upload-time the page lists for a file.
    pub fn set_upload_time(&self, filename: &str, time: SystemTime) {
        self.edit(filename, |files, i| files[i].upload_time = rfc3339(time));
    }

    /// Serves `provenance` as the file's PEP 740 provenance object, linked from its page entry
    /// as PyPI does (`provenance`, at api-version 1.3).
    pub fn set_provenance(&self, filename: &str, provenance: Vec<u8>) {
        self.edit(filename, |files, i| {
            files[i].provenance = Some(Arc::new(provenance));
        });
    }

    /// Marks a file yanked with `reason` on its page.
    pub fn yank(&self, filename: &str, reason: &str) {
        self.edit(filename, |files, i| files[i].yanked = Some(reason.into()));
    }

    fn edit(&self, filename: &str, change: impl FnOnce(&mut Vec<File>, usize)) {
        let mut state = self.state();
        state.serial += 1;
        let files = state
            .projects
            .values_mut()
            .map(|p| &mut p.files)
            .find(|files| files.iter().any(|f| f.filename == filename))
            .unwrap_or_else(|| panic!("the upstream lists no {filename}"));
        let i = files.iter().position(|f| f.filename == filename).unwrap();
        change(files, i);
    }

    /// The sha256 the upstream page lists for `filename`.
    pub fn listed_sha256(&self, filename: &str) -> String {
        let state = self.state();
        state
            .projects
            .values()
            .flat_map(|p| &p.files)
            .find(|f| f.filename == filename)
            .map(|f| f.listed_sha256.clone())
            .unwrap_or_else(|| panic!("the upstream lists no {filename}"))
    }

    /// The file names listed for `project`.
    pub fn filenames(&self, project: &str) -> Vec<String> {
        let state = self.state();
        state
            .projects
            .get(&normalize(project))
            .map(|p| p.files.iter().map(|f| f.filename.clone()).collect())
            .unwrap_or_default()
    }

    /// Gives `project`'s page a PEP 792 status (`quarantined`, `archived`, ...) and reason.
    pub fn set_project_status(&self, project: &str, status: &str, reason: Option<&str>) {
        let mut state = self.state();
        state.serial += 1;
        let entry = state.projects.entry(normalize(project)).or_default();
        entry.status = Some((status.to_string(), reason.map(str::to_string)));
    }

    /// Makes the page of `project` misbehave (`None`: behave again).
    pub fn set_page_fault(&self, project: &str, fault: Option<Fault>) {
        let mut state = self.state();
        let entry = state.projects.entry(normalize(project)).or_default();
        if entry.display.is_empty() {
            entry.display = project.to_string();
        }
        entry.fault = fault;
    }

    /// Makes downloads of `filename` (and its `.metadata`) misbehave (`None`: behave again).
    /// Panics for faults that only pages can have.
    pub fn set_file_fault(&self, filename: &str, fault: Option<Fault>) {
        let mut state = self.state();
        match fault {
            Some(fault) => {
                assert!(fault.for_files(), "{fault:?} applies to pages only");
                state.file_faults.insert(filename.to_string(), fault);
            }
            None => {
                state.file_faults.remove(filename);
            }
        }
    }

    /// A URL on another host (127.0.0.2, also loopback) with the same path, for
    /// [`Fault::Redirect`].
    pub fn elsewhere(&self, path: &str) -> String {
        format!("http://127.0.0.2:{}{path}", self.shared.addr.port())
    }

    /// Every request path so far, in order, as sent.
    pub fn requests(&self) -> Vec<String> {
        self.shared.log.lock().unwrap().clone()
    }

    /// The requests so far that concern `project` (its page under any spelling, or its files),
    /// to prove that a private name was never looked up.
    pub fn requests_for(&self, project: &str) -> Vec<String> {
        let name = normalize(project);
        let file_prefix = format!("{name}-");
        self.requests()
            .into_iter()
            .filter(|path| {
                let decoded = crate::percent_decode(path);
                let mut segments = decoded.trim_matches('/').split('/');
                match (segments.next(), segments.next()) {
                    (Some("simple"), Some(asked)) => normalize(asked) == name,
                    (Some("packages"), Some(file)) => normalize(file).starts_with(&file_prefix),
                    _ => false,
                }
            })
            .collect()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop();
    }
}

fn file(filename: &str, content: Content) -> File {
    let metadata = match &content {
        Content::Bytes(bytes) if filename.ends_with(".whl") => wheel_metadata(bytes).map(Arc::new),
        _ => None,
    };
    let requires_python = metadata.as_ref().and_then(|m| {
        String::from_utf8_lossy(m)
            .lines()
            .find_map(|line| line.strip_prefix("Requires-Python:"))
            .map(|value| value.trim().to_string())
    });
    File {
        filename: filename.to_string(),
        listed_sha256: content.sha256(),
        listed: content,
        served: None,
        metadata,
        requires_python,
        upload_time: DEFAULT_UPLOAD_TIME.to_string(),
        yanked: None,
        provenance: None,
    }
}

/// The `METADATA` file of a wheel, which PEP 658 serves next to it.
fn wheel_metadata(wheel: &[u8]) -> Option<Vec<u8>> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(wheel)).ok()?;
    let name = archive
        .file_names()
        .filter_map(Result::ok)
        .find(|n| n.ends_with(".dist-info/METADATA") && n.matches('/').count() == 1)?
        .into_owned();
    let mut metadata = Vec::new();
    archive
        .by_name(&name)
        .ok()?
        .read_to_end(&mut metadata)
        .ok()?;
    Some(metadata)
}

/// PEP 503 normalization.
fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !out.ends_with('-') {
                out.push('-');
            }
        } else {
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// RFC 3339 in UTC with microseconds, as PyPI writes `upload-time`.
fn rfc3339(time: SystemTime) -> String {
    let since = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("a time after 1970");
    let secs = since.as_secs();
    let (days, rest) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since.subsec_micros()
    )
}

struct Request {
    path: String,
    if_none_match: Option<String>,
}

fn read_request(stream: &TcpStream) -> Option<Request> {
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let path = line.split(' ').nth(1)?.to_string();
    let mut if_none_match = None;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).ok()? <= 2 {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.trim().eq_ignore_ascii_case("if-none-match")
        {
            if_none_match = Some(value.trim().to_string());
        }
    }
    Some(Request {
        path,
        if_none_match,
    })
}

/// What one request gets, decided under the lock and sent after it.
enum Answer {
    Fault(Fault),
    Page { body: Vec<u8>, serial: u64 },
    File(Content),
    NotFound,
}

fn serve(mut stream: TcpStream, shared: &Shared) {
    let epoch = shared.epoch.load(Ordering::SeqCst);
    let Some(request) = read_request(&stream) else {
        return;
    };
    shared.log.lock().unwrap().push(request.path.clone());
    let decoded = crate::percent_decode(request.path.split('?').next().unwrap_or(""));
    let segments: Vec<&str> = decoded.trim_matches('/').split('/').collect();
    let base = format!("http://{}", shared.addr);
    let answer = {
        let state = shared.state.lock().unwrap();
        match segments.as_slice() {
            ["simple", name] => page_answer(&state, name, &base),
            ["packages", filename] => file_answer(&state, filename),
            ["integrity", filename, "provenance"] => state
                .projects
                .values()
                .flat_map(|p| &p.files)
                .find(|f| f.filename == *filename)
                .and_then(|f| f.provenance.clone())
                .map_or(Answer::NotFound, |p| Answer::File(Content::Bytes(p))),
            _ => Answer::NotFound,
        }
    };
    let sent = match answer {
        Answer::NotFound => respond(&mut stream, "404 Not Found", &[], b""),
        Answer::Page { body, serial } => {
            let etag = format!("\"{}\"", &sha256_hex(&body)[..32]);
            let headers = [
                ("Content-Type", "application/vnd.pypi.simple.v1+json".into()),
                ("ETag", etag.clone()),
                ("X-PyPI-Last-Serial", serial.to_string()),
            ];
            if request.if_none_match.as_deref() == Some(etag.as_str()) {
                respond(&mut stream, "304 Not Modified", &headers, b"")
            } else {
                respond(&mut stream, "200 OK", &headers, &body)
            }
        }
        Answer::File(content) => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n",
                content.len()
            );
            stream
                .write_all(head.as_bytes())
                .and_then(|()| content.stream(|chunk| stream.write_all(chunk)))
        }
        Answer::Fault(fault) => misbehave(&mut stream, shared, epoch, &fault),
    };
    let _ = sent.and_then(|()| stream.flush());
}

fn page_answer(state: &State, name: &str, base: &str) -> Answer {
    let Some(project) = state.projects.get(&normalize(name)) else {
        return Answer::NotFound;
    };
    let page = page_json(project, base, state.serial);
    match &project.fault {
        None => {}
        Some(Fault::MalformedJson) => {
            let text = page.to_string();
            return Answer::Page {
                body: text.as_bytes()[..text.len() / 2].to_vec(),
                serial: state.serial,
            };
        }
        Some(Fault::Oversized(size)) => {
            let mut page = page;
            let text = page.to_string();
            page["_padding"] = " "
                .repeat(size.saturating_sub(text.len() + r#","_padding":"""#.len()))
                .into();
            return Answer::Page {
                body: page.to_string().into_bytes(),
                serial: state.serial,
            };
        }
        Some(Fault::WrongName(other)) => {
            let mut page = page;
            page["name"] = other.clone().into();
            return Answer::Page {
                body: page.to_string().into_bytes(),
                serial: state.serial,
            };
        }
        Some(fault) => return Answer::Fault(fault.clone()),
    }
    if project.files.is_empty() {
        return Answer::NotFound;
    }
    Answer::Page {
        body: page.to_string().into_bytes(),
        serial: state.serial,
    }
}

fn page_json(project: &Project, base: &str, serial: u64) -> serde_json::Value {
    let files: Vec<serde_json::Value> = project
        .files
        .iter()
        .map(|f| {
            let mut entry = serde_json::json!({
                "filename": f.filename,
                "url": format!("{base}/packages/{}", f.filename),
                "hashes": {"sha256": f.listed_sha256},
                "requires-python": f.requires_python,
                "size": f.listed.len(),
                "upload-time": f.upload_time,
                "yanked": f.yanked.clone().map_or(serde_json::Value::Bool(false), Into::into),
            });
            if f.provenance.is_some() {
                entry["provenance"] = format!("{base}/integrity/{}/provenance", f.filename).into();
            }
            if let Some(metadata) = &f.metadata {
                let hashes = serde_json::json!({"sha256": sha256_hex(metadata)});
                entry["core-metadata"] = hashes.clone();
                entry["data-dist-info-metadata"] = hashes;
            }
            entry
        })
        .collect();
    let mut versions: Vec<String> = project
        .files
        .iter()
        .filter_map(|f| f.filename.split('-').nth(1).map(str::to_string))
        .collect();
    versions.dedup();
    let mut page = serde_json::json!({
        "meta": {"api-version": "1.1", "_last-serial": serial},
        "name": project.display,
        "versions": versions,
        "files": files,
    });
    if let Some((status, reason)) = &project.status {
        page["meta"]["api-version"] = "1.4".into();
        page["project-status"] = serde_json::json!({"status": status, "reason": reason});
    }
    page
}

fn file_answer(state: &State, requested: &str) -> Answer {
    let (filename, metadata) = match requested.strip_suffix(".metadata") {
        Some(wheel) => (wheel, true),
        None => (requested, false),
    };
    if let Some(fault) = state.file_faults.get(filename) {
        return Answer::Fault(fault.clone());
    }
    let found = state
        .projects
        .values()
        .flat_map(|p| &p.files)
        .find(|f| f.filename == filename);
    match (found, metadata) {
        (Some(f), false) => Answer::File(f.served.clone().unwrap_or_else(|| f.listed.clone())),
        (
            Some(File {
                metadata: Some(m), ..
            }),
            true,
        ) => Answer::File(Content::Bytes(m.clone())),
        _ => Answer::NotFound,
    }
}

fn respond(
    stream: &mut TcpStream,
    status: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)
}

fn misbehave(
    stream: &mut TcpStream,
    shared: &Shared,
    epoch: u64,
    fault: &Fault,
) -> std::io::Result<()> {
    let started = Instant::now();
    let live = || shared.epoch.load(Ordering::SeqCst) == epoch && started.elapsed() < FAULT_LIMIT;
    match fault {
        Fault::Status(code) => respond(stream, &format!("{code} Injected fault"), &[], b""),
        Fault::Redirect(location) => {
            respond(stream, "302 Found", &[("Location", location.clone())], b"")
        }
        Fault::Hang => {
            // Read on, so a client that gives up (closes) ends the wait early.
            stream.set_read_timeout(Some(Duration::from_millis(50)))?;
            let mut buffer = [0u8; 1024];
            while live() {
                match stream.read(&mut buffer) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        }
        Fault::EndlessBody => {
            stream.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.pypi.simple.v1+json\r\n\
                  Connection: close\r\n\r\n{\"meta\": {\"api-version\": \"1.1\"}, \"files\": [",
            )?;
            let chunk = "{\"filename\": \"endless-1.0-py3-none-any.whl\"}, ".repeat(1024);
            while live() {
                stream.write_all(chunk.as_bytes())?;
            }
            Ok(())
        }
        Fault::MalformedJson | Fault::Oversized(_) | Fault::WrongName(_) => {
            unreachable!("page faults are answered as pages")
        }
    }
}
