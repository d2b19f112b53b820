//! The client side of the mirror: one project page from an upstream PEP 691 JSON index (PyPI, or
//! another Tufa index), fetched with conditional requests and bounded like any hostile input,
//! and parsed into a typed model of the fields PEPs 691, 700, 708, 714 and 792 define.
//!
//! Bounds: [`PAGE_LIMIT`] bytes per page, [`CONNECT_TIMEOUT`] to connect, [`PAGE_DEADLINE`] for
//! the whole exchange, and [`MAX_REDIRECTS`] redirects, each to the upstream's own host (a
//! redirect elsewhere is refused: the operator chose which host is trusted to list files).
//! A page is refused whole when it is not JSON of the expected shape or names another project;
//! a file is left out (and the reason logged) when it cannot be verified or served safely: no
//! sha256, no size, a name that is not a distribution file of the project, a URL that is not
//! HTTP(S).

use std::time::Duration;

use serde::Deserialize;
use url::Url;

use crate::dist::{OBSOLETE_SUFFIXES, SDIST_SUFFIXES};
use crate::name::{ProjectName, Version};

/// The largest project page read, in bytes. PyPI's largest JSON pages (projects with nightly
/// wheels for every platform over many years) are tens of megabytes; 64 MiB leaves room for
/// them and bounds what a hostile upstream can make the index hold in memory.
pub const PAGE_LIMIT: u64 = 64 * 1024 * 1024;
/// How long connecting to the upstream may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one page fetch may take in all: headers and the whole body.
pub const PAGE_DEADLINE: Duration = Duration::from_secs(60);
/// Redirects followed for one page, each to the upstream's own host.
pub const MAX_REDIRECTS: usize = 5;
/// Files listed on one page at most.
pub const MAX_FILES: usize = 200_000;

const JSON: &str = "application/vnd.pypi.simple.v1+json";

/// Why a page could not be had from upstream. Each names the cause an operator can act on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream {url} could not be reached: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("upstream {url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("upstream {url} sent a page over the limit of {limit} bytes (endless data)")]
    TooLarge { url: String, limit: u64 },
    #[error("upstream {url} sent a malformed page: {reason}")]
    Malformed { url: String, reason: String },
    #[error(
        "upstream {url} answered for project {got:?} when asked for {requested:?}: refused \
         (a page for another project would mix its files into this one)"
    )]
    NameMismatch {
        url: String,
        requested: String,
        got: String,
    },
    #[error(
        "upstream {url} redirected to {location}, another host than the upstream's: refused \
         (only the configured upstream host may list files)"
    )]
    ForeignRedirect { url: String, location: String },
    #[error("upstream {url} redirected more than {MAX_REDIRECTS} times")]
    TooManyRedirects { url: String },
    #[error("upstream {url} answered with JSON of unsupported API version {version}")]
    ApiVersion { url: String, version: String },
}

/// What the index remembers of the last page, for a conditional request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

/// The answer to a page request.
#[derive(Debug)]
pub enum Fetched {
    /// Unchanged since the validators were given.
    NotModified,
    /// Upstream has no such project (404 or 410).
    NotFound,
    Page(Box<UpstreamPage>),
}

/// PEP 792's project status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProjectStatus {
    /// `active`, `archived`, `quarantined` or `deprecated`.
    pub status: String,
    pub reason: Option<String>,
}

/// One file of an upstream page, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamFile {
    pub filename: String,
    /// Absolute, resolved against the page URL; no fragment.
    pub url: String,
    pub sha256: String,
    pub size: u64,
    pub version: Version,
    pub packagetype: &'static str,
    pub python_version: String,
    pub requires_python: Option<String>,
    /// Microseconds since the epoch; `None` when upstream does not say (PEP 700 makes it
    /// optional).
    pub upload_time_micros: Option<i64>,
    pub yanked: Option<String>,
    /// sha256 of the PEP 658 metadata file; `None` when there is none or upstream gives no hash
    /// for it (it could not be verified).
    pub metadata_sha256: Option<String>,
    /// PEP 740: where upstream serves the file's provenance object (absolute, HTTP(S)).
    pub provenance_url: Option<String>,
}

/// A checked upstream page.
#[derive(Clone, Debug)]
pub struct UpstreamPage {
    /// The page's URL after redirects: what `tracks` names.
    pub url: String,
    pub name: ProjectName,
    /// The name as upstream spells it.
    pub display_name: String,
    pub files: Vec<UpstreamFile>,
    /// Files left out, each with the reason.
    pub skipped: Vec<String>,
    pub status: Option<ProjectStatus>,
    pub validators: Validators,
    /// `X-PyPI-Last-Serial` (or the page's `meta._last-serial`).
    pub serial: Option<i64>,
}

/// PEP 691's JSON project page, as upstream sends it.
#[derive(Deserialize)]
struct RawPage {
    meta: RawMeta,
    name: String,
    files: Vec<RawFile>,
    #[serde(rename = "project-status")]
    project_status: Option<RawStatus>,
}

#[derive(Deserialize)]
struct RawMeta {
    #[serde(rename = "api-version")]
    api_version: String,
    /// PyPI sends it as a string, Tufa as a number.
    #[serde(rename = "_last-serial")]
    last_serial: Option<RawSerial>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawSerial {
    Number(i64),
    Text(String),
}

impl RawSerial {
    fn value(self) -> Option<i64> {
        match self {
            RawSerial::Number(serial) => Some(serial),
            RawSerial::Text(text) => text.parse().ok(),
        }
    }
}

#[derive(Deserialize)]
struct RawStatus {
    status: Option<String>,
    reason: Option<String>,
}

#[derive(Deserialize)]
struct RawFile {
    filename: String,
    url: String,
    #[serde(default)]
    hashes: std::collections::BTreeMap<String, String>,
    #[serde(rename = "requires-python")]
    requires_python: Option<String>,
    size: Option<u64>,
    #[serde(rename = "upload-time")]
    upload_time: Option<String>,
    #[serde(default)]
    yanked: RawYanked,
    #[serde(rename = "core-metadata")]
    core_metadata: Option<RawMetadata>,
    #[serde(rename = "dist-info-metadata")]
    dist_info_metadata: Option<RawMetadata>,
    /// PEP 740: the URL of the file's provenance object.
    provenance: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(untagged)]
enum RawYanked {
    #[default]
    No,
    Flag(bool),
    Reason(String),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawMetadata {
    /// `true` without a hash, or `false`: either way nothing to verify a metadata file against.
    Flag(#[allow(dead_code)] bool),
    Hashes(std::collections::BTreeMap<String, String>),
}

fn is_sha256(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A file name that can sit in a URL path and on disk as it is.
fn plain_filename(filename: &str) -> bool {
    !filename.is_empty()
        && filename.len() <= crate::dist::MAX_FILENAME_LEN
        && !filename.starts_with('.')
        && filename
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+' | b'!'))
}

/// The longest prefix of `text` ending before a `-` or `.` (or `text` itself) that is a PEP 440
/// version: how installers read the version out of legacy file names (`pywin32-227.win32-py2.7`).
fn leading_version(text: &str) -> Option<Version> {
    if let Ok(version) = Version::new(text) {
        return Some(version);
    }
    text.char_indices()
        .rev()
        .filter(|&(_, c)| c == '-' || c == '.')
        .find_map(|(at, _)| Version::new(&text[..at]).ok())
}

/// Splits `stem` into the project `name` it must start with and what follows the `-` after it.
fn after_name<'a>(stem: &'a str, name: &ProjectName) -> Option<&'a str> {
    stem.char_indices()
        .filter(|&(_, c)| c == '-')
        .find(|&(at, _)| ProjectName::new(&stem[..at]).is_ok_and(|n| &n == name))
        .map(|(at, _)| &stem[at + 1..])
}

/// What a distribution file name of `project` claims: version, package type, Python tag. Covers
/// what PyPI still serves: wheels, sdists (`.tar.gz`, `.zip`, `.tar.bz2`, ...), eggs and
/// Windows installers.
pub fn classify(
    filename: &str,
    project: &ProjectName,
) -> Result<(Version, &'static str, String), String> {
    if !plain_filename(filename) {
        return Err("not a plain file name".into());
    }
    if let Some(stem) = filename.strip_suffix(".whl") {
        let parts: Vec<&str> = stem.split('-').collect();
        if !(parts.len() == 5 || parts.len() == 6) {
            return Err("not a wheel name (name-version[-build]-python-abi-platform.whl)".into());
        }
        if ProjectName::new(parts[0]).ok().as_ref() != Some(project) {
            return Err(format!("a wheel of project {:?}", parts[0]));
        }
        let version = Version::new(parts[1]).map_err(|e| e.to_string())?;
        return Ok((version, "bdist_wheel", parts[parts.len() - 3].to_string()));
    }
    let (stem, packagetype) = SDIST_SUFFIXES
        .iter()
        .find_map(|(ext, _)| filename.strip_suffix(ext).map(|stem| (stem, "sdist")))
        .or_else(|| {
            OBSOLETE_SUFFIXES
                .iter()
                .find_map(|(ext, kind, _)| filename.strip_suffix(ext).map(|stem| (stem, *kind)))
        })
        .ok_or_else(|| "not a distribution file type".to_string())?;
    let rest = after_name(stem, project)
        .ok_or_else(|| format!("does not start with the project name {project}"))?;
    let version = if packagetype == "sdist" {
        Version::new(rest).map_err(|e| e.to_string())?
    } else {
        leading_version(rest).ok_or_else(|| format!("no PEP 440 version in {rest:?}"))?
    };
    let python_version = match packagetype {
        "sdist" => "source".to_string(),
        "bdist_egg" => rest
            .split('-')
            .find(|part| part.starts_with("py"))
            .unwrap_or("any")
            .to_string(),
        _ => "any".to_string(),
    };
    Ok((version, packagetype, python_version))
}

fn parse_time(text: &str) -> Option<i64> {
    let time =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(time.unix_timestamp_nanos() / 1000).ok()
}

fn metadata_sha256(raw: Option<RawMetadata>) -> Option<String> {
    match raw? {
        RawMetadata::Hashes(hashes) => hashes.get("sha256").filter(|s| is_sha256(s)).cloned(),
        RawMetadata::Flag(_) => None,
    }
}

/// Parses and checks a page fetched from `url` for `requested`.
pub fn parse_page(
    url: &Url,
    requested: &ProjectName,
    body: &[u8],
    header_serial: Option<i64>,
    validators: Validators,
) -> Result<UpstreamPage, UpstreamError> {
    let malformed = |reason: String| UpstreamError::Malformed {
        url: url.to_string(),
        reason,
    };
    let raw: RawPage = serde_json::from_slice(body).map_err(|e| malformed(e.to_string()))?;
    if !raw.meta.api_version.starts_with("1.") {
        return Err(UpstreamError::ApiVersion {
            url: url.to_string(),
            version: raw.meta.api_version,
        });
    }
    let name = ProjectName::new(&raw.name).map_err(|e| malformed(e.to_string()))?;
    if &name != requested {
        return Err(UpstreamError::NameMismatch {
            url: url.to_string(),
            requested: requested.to_string(),
            got: raw.name,
        });
    }
    if raw.files.len() > MAX_FILES {
        return Err(malformed(format!(
            "{} files, over the limit of {MAX_FILES}",
            raw.files.len()
        )));
    }
    let mut files = Vec::with_capacity(raw.files.len());
    let mut skipped = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for file in raw.files {
        match check_file(url, &name, file) {
            Ok(file) if seen.insert(file.filename.clone()) => files.push(file),
            Ok(file) => skipped.push(format!("{}: listed twice", file.filename)),
            Err(reason) => skipped.push(reason),
        }
    }
    let status = raw.project_status.and_then(|raw| {
        let status = raw.status?;
        matches!(
            status.as_str(),
            "active" | "archived" | "quarantined" | "deprecated"
        )
        .then_some(ProjectStatus {
            status,
            reason: raw.reason.filter(|r| !r.is_empty()),
        })
    });
    Ok(UpstreamPage {
        url: url.to_string(),
        name,
        display_name: raw.name,
        files,
        skipped,
        status,
        validators,
        serial: header_serial.or(raw.meta.last_serial.and_then(RawSerial::value)),
    })
}

fn check_file(page: &Url, project: &ProjectName, raw: RawFile) -> Result<UpstreamFile, String> {
    let filename = raw.filename;
    let refuse = |reason: &str| format!("{filename:?}: {reason}");
    let (version, packagetype, python_version) =
        classify(&filename, project).map_err(|reason| refuse(&reason))?;
    let sha256 = raw
        .hashes
        .get("sha256")
        .filter(|sha| is_sha256(sha))
        .cloned()
        .ok_or_else(|| refuse("no sha256 hash, so it cannot be verified"))?;
    let size = raw
        .size
        .ok_or_else(|| refuse("no size (PEP 700), so a download cannot be bounded"))?;
    let mut url = page
        .join(&raw.url)
        .map_err(|e| refuse(&format!("URL {:?}: {e}", raw.url)))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(refuse(&format!("URL {url} is not HTTP(S)")));
    }
    url.set_fragment(None);
    let yanked = match raw.yanked {
        RawYanked::No | RawYanked::Flag(false) => None,
        RawYanked::Flag(true) => Some(String::new()),
        RawYanked::Reason(reason) => Some(reason),
    };
    let provenance_url = raw
        .provenance
        .as_deref()
        .and_then(|p| page.join(p).ok())
        .filter(|p| matches!(p.scheme(), "http" | "https"))
        .map(|p| p.to_string());
    Ok(UpstreamFile {
        provenance_url,
        url: url.to_string(),
        sha256,
        size,
        version,
        packagetype,
        python_version,
        requires_python: raw.requires_python.filter(|r| !r.is_empty()),
        upload_time_micros: raw.upload_time.as_deref().and_then(parse_time),
        yanked,
        metadata_sha256: metadata_sha256(raw.core_metadata.or(raw.dist_info_metadata)),
        filename,
    })
}

/// TLS roots from the system's trust store (`SSL_CERT_FILE`, else the Debian/Ubuntu/Fedora
/// bundle), as pip, curl and git use them: an organization whose traffic goes through its own TLS
/// proxy trusts that proxy's CA there. Without a readable bundle, the Mozilla roots built in.
pub fn tls_config() -> ureq::tls::TlsConfig {
    let candidates = std::env::var_os("SSL_CERT_FILE")
        .map(std::path::PathBuf::from)
        .into_iter()
        .chain(
            [
                "/etc/ssl/certs/ca-certificates.crt",
                "/etc/pki/tls/certs/ca-bundle.crt",
                "/etc/ssl/cert.pem",
            ]
            .map(std::path::PathBuf::from),
        );
    for path in candidates {
        let Ok(pem) = std::fs::read(&path) else {
            continue;
        };
        let certs: Vec<_> = ureq::tls::parse_pem(&pem)
            .filter_map(|item| match item {
                Ok(ureq::tls::PemItem::Certificate(cert)) => Some(cert),
                _ => None,
            })
            .collect();
        if !certs.is_empty() {
            return ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::new_with_certs(&certs))
                .build();
        }
    }
    ureq::tls::TlsConfig::default()
}

/// One upstream index.
#[derive(Clone, Debug)]
pub struct Upstream {
    root: Url,
    agent: ureq::Agent,
    page_limit: u64,
}

impl Upstream {
    /// `root` is the simple index root, such as `https://pypi.org/simple/`.
    pub fn new(root: &str) -> Result<Self, String> {
        let mut root = Url::parse(root).map_err(|e| format!("upstream URL {root:?}: {e}"))?;
        if !matches!(root.scheme(), "http" | "https") || root.host_str().is_none() {
            return Err(format!(
                "upstream URL {root} is not an http(s) URL with a host"
            ));
        }
        if !root.path().ends_with('/') {
            root.set_path(&format!("{}/", root.path()));
        }
        let agent = crate::resolver::agent(
            ureq::Agent::config_builder()
                .timeout_connect(Some(CONNECT_TIMEOUT))
                .timeout_global(Some(PAGE_DEADLINE))
                .max_redirects(0)
                .tls_config(tls_config())
                .http_status_as_error(false)
                .user_agent(concat!("tufa-mirror/", env!("CARGO_PKG_VERSION")))
                .build(),
        );
        Ok(Upstream {
            root,
            agent,
            page_limit: PAGE_LIMIT,
        })
    }

    pub fn root(&self) -> &str {
        self.root.as_str()
    }

    /// The URL of `project`'s page upstream.
    pub fn project_url(&self, project: &ProjectName) -> String {
        format!("{}{}/", self.root, project)
    }

    /// Fetches `project`'s page (blocking: run it off the async threads), conditionally when
    /// `validators` are given.
    pub fn fetch(
        &self,
        project: &ProjectName,
        validators: &Validators,
    ) -> Result<Fetched, UpstreamError> {
        let mut url =
            Url::parse(&self.project_url(project)).map_err(|e| UpstreamError::Malformed {
                url: self.project_url(project),
                reason: e.to_string(),
            })?;
        for _ in 0..=MAX_REDIRECTS {
            let mut request = self.agent.get(url.as_str()).header("Accept", JSON);
            if let Some(etag) = &validators.etag {
                request = request.header("If-None-Match", etag);
            }
            if let Some(modified) = &validators.last_modified {
                request = request.header("If-Modified-Since", modified);
            }
            let response = request.call().map_err(|e| UpstreamError::Unreachable {
                url: url.to_string(),
                reason: e.to_string(),
            })?;
            let status = response.status().as_u16();
            let header = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            match status {
                200 => {
                    let serial = header("x-pypi-last-serial").and_then(|s| s.parse().ok());
                    let validators = Validators {
                        etag: header("etag"),
                        last_modified: header("last-modified"),
                    };
                    let body = response
                        .into_body()
                        .with_config()
                        .limit(self.page_limit)
                        .read_to_vec()
                        .map_err(|e| match e {
                            ureq::Error::BodyExceedsLimit(_) => UpstreamError::TooLarge {
                                url: url.to_string(),
                                limit: self.page_limit,
                            },
                            e => UpstreamError::Unreachable {
                                url: url.to_string(),
                                reason: format!("reading the page: {e}"),
                            },
                        })?;
                    let page = parse_page(&url, project, &body, serial, validators)?;
                    return Ok(Fetched::Page(Box::new(page)));
                }
                304 => return Ok(Fetched::NotModified),
                404 | 410 => return Ok(Fetched::NotFound),
                301 | 302 | 303 | 307 | 308 => {
                    let location = header("location").unwrap_or_default();
                    let next = url.join(&location).map_err(|e| UpstreamError::Malformed {
                        url: url.to_string(),
                        reason: format!("redirect to {location:?}: {e}"),
                    })?;
                    if next.host_str() != self.root.host_str()
                        || next.port_or_known_default() != self.root.port_or_known_default()
                        || next.scheme() != self.root.scheme()
                    {
                        return Err(UpstreamError::ForeignRedirect {
                            url: url.to_string(),
                            location: next.to_string(),
                        });
                    }
                    url = next;
                }
                status => {
                    return Err(UpstreamError::Status {
                        url: url.to_string(),
                        status,
                    });
                }
            }
        }
        Err(UpstreamError::TooManyRedirects {
            url: self.project_url(project),
        })
    }
}

impl Upstream {
    /// Fetches a PEP 740 provenance object (blocking), bounded like the attestations an upload
    /// may carry.
    pub fn fetch_provenance(&self, url: &str) -> Result<Vec<u8>, UpstreamError> {
        let limit = tufa_provenance::MAX_PROVENANCE_BYTES;
        let response = self
            .agent
            .get(url)
            .header("Accept", crate::provenance::CONTENT_TYPE)
            .call()
            .map_err(|e| UpstreamError::Unreachable {
                url: url.to_string(),
                reason: e.to_string(),
            })?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(UpstreamError::Status {
                url: url.to_string(),
                status,
            });
        }
        response
            .into_body()
            .with_config()
            .limit(limit)
            .read_to_vec()
            .map_err(|e| match e {
                ureq::Error::BodyExceedsLimit(_) => UpstreamError::TooLarge {
                    url: url.to_string(),
                    limit,
                },
                e => UpstreamError::Unreachable {
                    url: url.to_string(),
                    reason: format!("reading the provenance: {e}"),
                },
            })
    }
}

/// A loopback upstream for the tests of this crate.
#[cfg(test)]
pub(crate) mod testing {
    /// A loopback server answering each connection with the next of `answers` (`{port}` in
    /// them becomes its port); the requests it got.
    pub(crate) fn serve(answers: Vec<String>) -> (String, std::sync::mpsc::Receiver<String>) {
        serve_after(answers, std::time::Duration::ZERO)
    }

    /// Like [`serve`], answering each request `delay` after it came.
    pub(crate) fn serve_after(
        answers: Vec<String>,
        delay: std::time::Duration,
    ) -> (String, std::sync::mpsc::Receiver<String>) {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (sender, requests) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for answer in answers {
                let (stream, _) = listener.accept().unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                        break;
                    }
                    request.push_str(&line);
                }
                let _ = sender.send(request);
                std::thread::sleep(delay);
                let mut stream = stream;
                let _ = stream.write_all(answer.replace("{port}", &port.to_string()).as_bytes());
            }
        });
        (format!("http://127.0.0.1:{port}/simple/"), requests)
    }

    pub(crate) fn answer(status: &str, headers: &[&str], body: &str) -> String {
        let mut head = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
            body.len()
        );
        for header in headers {
            head.push_str(header);
            head.push_str("\r\n");
        }
        format!("{head}\r\n{body}")
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{answer, serve};
    use super::*;

    fn name(text: &str) -> ProjectName {
        ProjectName::new(text).unwrap()
    }

    fn page_url() -> Url {
        Url::parse("https://pypi.org/simple/flask/").unwrap()
    }

    fn parse(body: serde_json::Value) -> Result<UpstreamPage, UpstreamError> {
        parse_page(
            &page_url(),
            &name("flask"),
            &serde_json::to_vec(&body).unwrap(),
            None,
            Validators::default(),
        )
    }

    fn file(filename: &str) -> serde_json::Value {
        serde_json::json!({
            "filename": filename,
            "url": format!("../../packages/ab/{filename}#sha256={}", "a".repeat(64)),
            "hashes": {"sha256": "a".repeat(64)},
            "size": 123,
            "upload-time": "2023-11-14T22:13:20.123456Z",
            "requires-python": ">=3.8",
            "yanked": false,
            "core-metadata": {"sha256": "b".repeat(64)},
        })
    }

    #[test]
    fn a_page_parses_into_checked_files_with_every_field() {
        let page = parse(serde_json::json!({
            "meta": {"api-version": "1.4", "_last-serial": "42"},
            "name": "Flask",
            "files": [
                file("flask-3.0.0-py3-none-any.whl"),
                {"filename": "Flask-0.1.tar.gz", "url": "https://files.example/Flask-0.1.tar.gz",
                 "hashes": {"sha256": "c".repeat(64)}, "size": 5, "yanked": "broken",
                 "dist-info-metadata": true},
            ],
            "project-status": {"status": "deprecated", "reason": "use quart"},
        }))
        .unwrap();
        assert_eq!(page.serial, Some(42));
        assert_eq!(
            page.status,
            Some(ProjectStatus {
                status: "deprecated".into(),
                reason: Some("use quart".into())
            })
        );
        let wheel = &page.files[0];
        assert_eq!(
            wheel.url,
            "https://pypi.org/packages/ab/flask-3.0.0-py3-none-any.whl"
        );
        assert_eq!(wheel.version.as_str(), "3.0.0");
        assert_eq!(wheel.packagetype, "bdist_wheel");
        assert_eq!(wheel.python_version, "py3");
        assert_eq!(wheel.upload_time_micros, Some(1_700_000_000_123_456));
        assert_eq!(wheel.metadata_sha256, Some("b".repeat(64)));
        assert_eq!(wheel.yanked, None);
        let sdist = &page.files[1];
        assert_eq!(sdist.packagetype, "sdist");
        assert_eq!(sdist.yanked.as_deref(), Some("broken"));
        assert_eq!(sdist.metadata_sha256, None, "no hash, nothing to verify");
        assert_eq!(sdist.upload_time_micros, None);
    }

    #[test]
    fn unverifiable_or_foreign_files_are_left_out_with_the_reason() {
        let mut no_hash = file("flask-1.0-py3-none-any.whl");
        no_hash["hashes"] = serde_json::json!({"md5": "0".repeat(32)});
        let mut no_size = file("flask-1.1-py3-none-any.whl");
        no_size.as_object_mut().unwrap().remove("size");
        let mut javascript = file("flask-1.2-py3-none-any.whl");
        javascript["url"] = "javascript:alert(1)".into();
        let page = parse(serde_json::json!({
            "meta": {"api-version": "1.1"},
            "name": "flask",
            "files": [no_hash, no_size, javascript, file("django-4.0-py3-none-any.whl"),
                      file("../flask-1.3.tar.gz"), file("flask-2.0.tar.gz"),
                      file("flask-2.0.tar.gz")],
        }))
        .unwrap();
        assert_eq!(page.files.len(), 1);
        assert_eq!(page.files[0].filename, "flask-2.0.tar.gz");
        let reasons = page.skipped.join("\n");
        for expected in [
            "no sha256 hash",
            "no size",
            "is not HTTP(S)",
            "a wheel of project \"django\"",
            "not a plain file name",
            "listed twice",
        ] {
            assert!(reasons.contains(expected), "{expected}: {reasons}");
        }
    }

    #[test]
    fn a_page_for_another_name_or_not_json_is_refused() {
        let error = parse(serde_json::json!({
            "meta": {"api-version": "1.1"}, "name": "flask-evil", "files": []
        }))
        .unwrap_err();
        assert!(
            matches!(error, UpstreamError::NameMismatch { .. }),
            "{error}"
        );
        let error = parse_page(
            &page_url(),
            &name("flask"),
            b"<html>",
            None,
            Validators::default(),
        )
        .unwrap_err();
        assert!(matches!(error, UpstreamError::Malformed { .. }), "{error}");
        let error = parse(serde_json::json!({
            "meta": {"api-version": "2.0"}, "name": "flask", "files": []
        }))
        .unwrap_err();
        assert!(matches!(error, UpstreamError::ApiVersion { .. }), "{error}");
    }

    #[test]
    fn legacy_file_types_are_classified() {
        let project = name("pywin32");
        let (version, kind, _) = classify("pywin32-227.win32-py2.7.exe", &project).unwrap();
        assert_eq!((version.as_str(), kind), ("227", "bdist_wininst"));
        let (version, kind, python) = classify("pywin32-1.0-py2.7-win32.egg", &project).unwrap();
        assert_eq!(
            (version.as_str(), kind, python.as_str()),
            ("1.0", "bdist_egg", "py2.7")
        );
        let project = name("zope.interface");
        let (version, kind, _) = classify("zope.interface-3.5.0.zip", &project).unwrap();
        assert_eq!((version.as_str(), kind), ("3.5.0", "sdist"));
        assert!(classify("zope.interface-3.5.0.pdf", &project).is_err());
        assert!(classify("zope-3.5.0.zip", &project).is_err());
    }

    fn empty_page(name: &str) -> String {
        format!(r#"{{"meta": {{"api-version": "1.1"}}, "name": "{name}", "files": []}}"#)
    }

    #[test]
    fn conditional_requests_redirects_and_limits() {
        // Validators go out; 304 is "not modified"; the new validators come back.
        let (root, requests) = serve(vec![
            answer("304 Not Modified", &[], ""),
            answer(
                "200 OK",
                &["ETag: \"v2\"", "X-PyPI-Last-Serial: 77"],
                &empty_page("flask"),
            ),
        ]);
        let upstream = Upstream::new(&root).unwrap();
        let validators = Validators {
            etag: Some("\"v1\"".into()),
            last_modified: Some("Tue, 01 Jan 2030 00:00:00 GMT".into()),
        };
        let fetched = upstream.fetch(&name("flask"), &validators).unwrap();
        assert!(matches!(fetched, Fetched::NotModified));
        let request = requests.recv().unwrap().to_lowercase();
        assert!(request.starts_with("get /simple/flask/ "), "{request}");
        assert!(request.contains("if-none-match: \"v1\""), "{request}");
        assert!(
            request.contains("if-modified-since: tue, 01 jan 2030"),
            "{request}"
        );
        assert!(request.contains("accept: application/vnd.pypi.simple.v1+json"));
        let Fetched::Page(page) = upstream
            .fetch(&name("flask"), &Validators::default())
            .unwrap()
        else {
            panic!("a page")
        };
        assert_eq!(page.validators.etag.as_deref(), Some("\"v2\""));
        assert_eq!(page.serial, Some(77));

        // A redirect on the same host is followed; one to another host is refused.
        let (root, _) = serve(vec![
            answer("301 Moved", &["Location: /simple/Flask/"], ""),
            answer("200 OK", &[], &empty_page("Flask")),
            answer(
                "302 Found",
                &["Location: http://localhost:{port}/simple/flask/"],
                "",
            ),
        ]);
        let upstream = Upstream::new(&root).unwrap();
        let Fetched::Page(page) = upstream
            .fetch(&name("flask"), &Validators::default())
            .unwrap()
        else {
            panic!("a page")
        };
        assert!(page.url.ends_with("/simple/Flask/"), "{}", page.url);
        let error = upstream
            .fetch(&name("flask"), &Validators::default())
            .unwrap_err();
        assert!(
            matches!(error, UpstreamError::ForeignRedirect { .. }),
            "{error}"
        );

        // A page over the limit is refused; 404 is "no such project"; 500 is an error.
        let big = format!(
            r#"{{"meta": {{"api-version": "1.1"}}, "name": "flask", "files": [], "pad": "{}"}}"#,
            "x".repeat(4096)
        );
        let (root, _) = serve(vec![
            answer("200 OK", &[], &big),
            answer("404 Not Found", &[], ""),
            answer("500 Internal Server Error", &[], ""),
        ]);
        let mut upstream = Upstream::new(&root).unwrap();
        upstream.page_limit = 1024;
        let error = upstream
            .fetch(&name("flask"), &Validators::default())
            .unwrap_err();
        assert!(
            matches!(error, UpstreamError::TooLarge { limit: 1024, .. }),
            "{error}"
        );
        assert!(matches!(
            upstream.fetch(&name("flask"), &Validators::default()),
            Ok(Fetched::NotFound)
        ));
        let error = upstream
            .fetch(&name("flask"), &Validators::default())
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("upstream {root}flask/ answered HTTP 500")
        );
    }

    #[test]
    fn the_upstream_root_gets_its_slash() {
        let upstream = Upstream::new("https://pypi.org/simple").unwrap();
        assert_eq!(
            upstream.project_url(&name("flask")),
            "https://pypi.org/simple/flask/"
        );
        assert!(Upstream::new("ftp://pypi.org/simple/").is_err());
    }
}
