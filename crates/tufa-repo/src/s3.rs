//! S3-compatible object storage: the client (AWS SigV4 presigned requests from `rusty-s3`, sent
//! with `ureq`) and [`S3Store`], the [`Store`] that keeps the TUF repository in a bucket.
//!
//! Every request has bounded timeouts; a connection failure, a timeout, 429 or a 5xx is retried a
//! few times with growing pauses inside a bounded time budget, then reported with the bucket, the
//! key, the HTTP status and S3's error code. An object PUT is atomic in S3: a reader sees the old
//! object or the new one, never part of one, so nothing is staged under temporary names.

use std::io::Read;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use md5::{Digest as _, Md5};
use rusty_s3::actions::{ListObjectsV2, S3Action as _};
use rusty_s3::{Bucket, Credentials, UrlStyle};

use crate::error::{Error, Result};
use crate::store::{Store, Visit};

/// How long a presigned URL stays valid: long enough for the slowest upload of a large file.
const SIGNATURE_LIFETIME: Duration = Duration::from_secs(3600);
/// Attempts for one request when the bucket is unreachable or answers 5xx/429.
const ATTEMPTS: u32 = 4;
/// No retry starts once this much time has gone on one request: a bucket that is down makes
/// uploads fail within seconds rather than queue behind retries.
const RETRY_BUDGET: Duration = Duration::from_secs(10);
const FIRST_PAUSE: Duration = Duration::from_millis(200);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// From the end of the request to the response's headers.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
/// Any one read or write on the connection: bounds a stalled transfer without bounding the
/// length of a large one.
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// Objects uploaded at once by [`S3Store::write_all`] (and the idle connections kept for them).
/// A PUT to a bucket takes tens of milliseconds, nearly all of it waiting: a first publish of
/// 700,000 projects in 15 minutes needs about 950 objects/s, so about 50 under way at once.
pub const UPLOAD_THREADS: usize = 64;
/// Each connection's input and output buffer. ureq's 128 KiB each, kept with every idle
/// connection, were 16 MiB of a publisher's peak heap (heaptrack, 200,000 projects): the
/// objects a publisher sends are a few KiB, and an S3 answer's head a few hundred bytes.
const CONNECTION_BUFFER: usize = 16 * 1024;
/// The largest metadata or target object read whole into memory.
const READ_LIMIT: u64 = 1 << 30;

/// Why an S3 request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("S3 {action} s3://{bucket}/{key} failed: {detail}")]
pub struct S3Error {
    pub action: &'static str,
    pub bucket: String,
    pub key: String,
    /// The HTTP status, when the bucket answered.
    pub status: Option<u16>,
    /// S3's error code (`NoSuchBucket`, `AccessDenied`, `SlowDown`...), when it gave one.
    pub code: Option<String>,
    pub detail: String,
}

impl S3Error {
    /// The bucket could not be reached or is failing (connection, timeout, 5xx, 429): a
    /// condition of the service, worth a 503 and a later retry, unlike a refusal.
    pub fn unavailable(&self) -> bool {
        match self.status {
            None => true,
            Some(status) => status >= 500 || status == 429,
        }
    }
}

/// `s3://bucket/prefix`: where a Tufa index keeps its files in a bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Url {
    pub bucket: String,
    /// Without leading or trailing `/`; may be empty.
    pub prefix: String,
}

impl S3Url {
    /// Parses `s3://bucket[/prefix]`; `None` for anything else.
    pub fn parse(url: &str) -> Option<S3Url> {
        let rest = url.strip_prefix("s3://")?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        let prefix = prefix.trim_matches('/');
        let valid_prefix = prefix
            .split('/')
            .all(|part| part != "." && part != ".." && (prefix.is_empty() || !part.is_empty()));
        (valid_bucket && valid_prefix).then(|| S3Url {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        })
    }

    /// The key of `path` under the prefix.
    pub fn key(&self, path: &str) -> String {
        join(&self.prefix, path)
    }

    /// This location's `sub` directory, as a location of its own.
    pub fn join(&self, sub: &str) -> S3Url {
        S3Url {
            bucket: self.bucket.clone(),
            prefix: join(&self.prefix, sub),
        }
    }
}

impl std::fmt::Display for S3Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.prefix)
    }
}

fn join(prefix: &str, path: &str) -> String {
    match (prefix.is_empty(), path.is_empty()) {
        (true, _) => path.to_string(),
        (_, true) => prefix.to_string(),
        _ => format!("{prefix}/{path}"),
    }
}

/// Endpoint, region and credentials, as the AWS tools find them.
#[derive(Clone)]
pub struct S3Settings {
    pub endpoint: url::Url,
    pub region: String,
    pub credentials: Option<Credentials>,
    /// Path-style addressing (`endpoint/bucket/key`), which custom endpoints need.
    pub path_style: bool,
}

/// Leaves out the credentials.
impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint.as_str())
            .field("region", &self.region)
            .field("credentials", &self.credentials.is_some())
            .finish()
    }
}

impl S3Settings {
    /// From the process environment and the AWS shared files, in the AWS CLI's order: the
    /// `AWS_*` variables first, then the profile (`AWS_PROFILE`, else `default`) in
    /// `~/.aws/credentials` (`AWS_SHARED_CREDENTIALS_FILE`) and `~/.aws/config`
    /// (`AWS_CONFIG_FILE`).
    pub fn from_env() -> Result<S3Settings> {
        S3Settings::from_lookup(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    }

    /// [`S3Settings::from_env`] with the variables from `var`.
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<S3Settings> {
        let home = var("HOME").unwrap_or_default();
        let read = |variable: &str, default: &str| {
            let path = var(variable).unwrap_or_else(|| format!("{home}/.aws/{default}"));
            std::fs::read_to_string(&path).unwrap_or_default()
        };
        let profile = var("AWS_PROFILE").unwrap_or_else(|| "default".into());
        let credentials_file = ini_section(
            &read("AWS_SHARED_CREDENTIALS_FILE", "credentials"),
            &[profile.as_str()],
        );
        let config_section = if profile == "default" {
            "default".to_string()
        } else {
            format!("profile {profile}")
        };
        let config_file = ini_section(
            &read("AWS_CONFIG_FILE", "config"),
            &[config_section.as_str()],
        );
        let setting = |variables: &[&str], key: &str| {
            variables
                .iter()
                .find_map(|name| var(name))
                .or_else(|| lookup(&credentials_file, key))
                .or_else(|| lookup(&config_file, key))
        };
        let region = setting(&["AWS_REGION", "AWS_DEFAULT_REGION"], "region")
            .unwrap_or_else(|| "us-east-1".into());
        let custom = setting(&["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"], "endpoint_url");
        let path_style = custom.is_some();
        let endpoint = custom.unwrap_or_else(|| format!("https://s3.{region}.amazonaws.com"));
        let endpoint = url::Url::parse(&endpoint).map_err(|error| {
            Error::Config(format!(
                "the S3 endpoint {endpoint:?} is not a URL: {error}"
            ))
        })?;
        let key = setting(&["AWS_ACCESS_KEY_ID"], "aws_access_key_id");
        let secret = setting(&["AWS_SECRET_ACCESS_KEY"], "aws_secret_access_key");
        let token = setting(&["AWS_SESSION_TOKEN"], "aws_session_token");
        let credentials = match (key, secret, token) {
            (Some(key), Some(secret), Some(token)) => {
                Some(Credentials::new_with_token(key, secret, token))
            }
            (Some(key), Some(secret), None) => Some(Credentials::new(key, secret)),
            _ => None,
        };
        Ok(S3Settings {
            endpoint,
            region,
            credentials,
            path_style,
        })
    }
}

/// The `key = value` lines of the first of `sections` in an INI text. Written here rather than
/// taken from an INI crate: the AWS files use only sections and `key = value` lines (nested
/// `s3 =` blocks are skipped), and none of the crates parse that subset more strictly.
fn ini_section(text: &str, sections: &[&str]) -> Vec<(String, String)> {
    let mut current: Option<String> = None;
    let mut found = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = Some(name.trim().to_string());
            continue;
        }
        if current.as_deref().is_some_and(|c| sections.contains(&c))
            && let Some((key, value)) = line.split_once('=')
        {
            found.push((key.trim().to_string(), value.trim().to_string()));
        }
    }
    found
}

fn lookup(section: &[(String, String)], key: &str) -> Option<String> {
    section
        .iter()
        .find(|(k, v)| k == key && !v.is_empty())
        .map(|(_, v)| v.clone())
}

/// An object's size and when it was last written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    pub size: u64,
    pub modified: Option<SystemTime>,
}

/// A body being downloaded, with its length.
pub struct Download {
    pub length: u64,
    pub reader: Box<dyn Read + Send>,
}

/// One bucket.
#[derive(Clone)]
pub struct S3Client {
    bucket: Bucket,
    credentials: Option<Credentials>,
    agent: ureq::Agent,
}

impl std::fmt::Debug for S3Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Client")
            .field("bucket", &self.bucket.name())
            .field("endpoint", &self.bucket.base_url().as_str())
            .finish()
    }
}

/// What one attempt came to.
enum Attempt<T> {
    Done(T),
    /// The bucket answered with an error status.
    Status(u16, String),
    /// The request did not complete (connection, timeout, reading the body).
    Transport(String),
}

impl S3Client {
    pub fn new(bucket: &str, settings: &S3Settings) -> Result<S3Client> {
        let style = if settings.path_style {
            UrlStyle::Path
        } else {
            UrlStyle::VirtualHost
        };
        let bucket = Bucket::new(
            settings.endpoint.clone(),
            style,
            bucket.to_string(),
            settings.region.clone(),
        )
        .map_err(|error| Error::Config(format!("S3 bucket {bucket:?}: {error}")))?;
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_recv_response(Some(RESPONSE_TIMEOUT))
            .timeout_per_read(Some(IO_TIMEOUT))
            .timeout_per_write(Some(IO_TIMEOUT))
            .max_idle_connections_per_host(UPLOAD_THREADS)
            .max_idle_connections(UPLOAD_THREADS)
            .input_buffer_size(CONNECTION_BUFFER)
            .output_buffer_size(CONNECTION_BUFFER)
            .build()
            .into();
        Ok(S3Client {
            bucket,
            credentials: settings.credentials.clone(),
            agent,
        })
    }

    /// A client for the bucket of `url`, configured from the environment.
    pub fn from_env(url: &S3Url) -> Result<S3Client> {
        S3Client::new(&url.bucket, &S3Settings::from_env()?)
    }

    pub fn bucket(&self) -> &str {
        self.bucket.name()
    }

    fn error(
        &self,
        action: &'static str,
        key: &str,
        status: Option<u16>,
        body: &str,
        attempts: u32,
    ) -> Error {
        let code = xml_field(body, "Code");
        let detail = match (status, &code) {
            (Some(status), Some(code)) => {
                let message = xml_field(body, "Message").unwrap_or_default();
                format!("HTTP {status} {code}: {message}")
            }
            (Some(status), None) => format!("HTTP {status}"),
            (None, _) => body.to_string(),
        };
        let detail = if attempts > 1 {
            format!("{detail} (after {attempts} attempts)")
        } else {
            detail
        };
        Error::S3(S3Error {
            action,
            bucket: self.bucket.name().to_string(),
            key: key.to_string(),
            status,
            code,
            detail,
        })
    }

    /// Runs `attempt` until it succeeds, fails in a way a retry cannot mend, or the attempts or
    /// the time budget run out.
    fn retrying<T>(
        &self,
        action: &'static str,
        key: &str,
        mut attempt: impl FnMut() -> Attempt<T>,
    ) -> Result<T> {
        let started = Instant::now();
        let mut pause = FIRST_PAUSE;
        let mut tries = 0;
        loop {
            tries += 1;
            let (status, body) = match attempt() {
                Attempt::Done(value) => return Ok(value),
                Attempt::Status(status, body) => (Some(status), body),
                Attempt::Transport(reason) => (None, reason),
            };
            let transient = status.is_none_or(|s| s >= 500 || s == 429);
            if !transient || tries >= ATTEMPTS || started.elapsed() + pause > RETRY_BUDGET {
                return Err(self.error(action, key, status, &body, tries));
            }
            tracing::debug!(action, key, ?status, "S3 request failed, retrying: {body}");
            std::thread::sleep(pause);
            pause *= 2;
        }
    }

    fn signed(&self, make: impl FnOnce(&Bucket, Option<&Credentials>) -> url::Url) -> String {
        make(&self.bucket, self.credentials.as_ref()).to_string()
    }

    /// Stores `body` as `key`.
    pub fn put(&self, key: &str, body: &[u8]) -> Result<()> {
        let digest = content_md5(Md5::digest(body));
        self.retrying("PUT", key, || {
            let url = self.put_url(key, &digest);
            match self.agent.put(&url).header(CONTENT_MD5, &digest).send(body) {
                Ok(mut response) => finish(&mut response),
                Err(error) => Attempt::Transport(error.to_string()),
            }
        })
    }

    /// Stores the file at `path` as `key`, streaming it.
    pub fn put_file(&self, key: &str, path: &Path) -> Result<()> {
        let digest = file_md5(path).map_err(|error| {
            self.error(
                "PUT",
                key,
                None,
                &format!("reading {}: {error}", path.display()),
                1,
            )
        })?;
        self.retrying("PUT", key, || {
            let file = match std::fs::File::open(path) {
                Ok(file) => file,
                Err(error) => {
                    return Attempt::Transport(format!("opening {}: {error}", path.display()));
                }
            };
            let url = self.put_url(key, &digest);
            match self.agent.put(&url).header(CONTENT_MD5, &digest).send(file) {
                Ok(mut response) => finish(&mut response),
                Err(error) => Attempt::Transport(error.to_string()),
            }
        })
    }

    /// A PUT of `key` signed with its body's `Content-MD5`. The bucket stores an object only
    /// when the body it received has that digest: without it, SeaweedFS stores an empty object
    /// when the connection ends after the request's headers (a publisher killed mid-PUT), and a
    /// `timestamp.json` overwritten that way is no timestamp at all.
    fn put_url(&self, key: &str, digest: &str) -> String {
        self.signed(|b, c| {
            let mut action = b.put_object(c, key);
            action.headers_mut().insert(CONTENT_MD5, digest.to_string());
            action.sign(SIGNATURE_LIFETIME)
        })
    }

    /// Starts downloading `key`; `None` when there is no such object.
    pub fn open(&self, key: &str) -> Result<Option<Download>> {
        self.retrying("GET", key, || {
            let url = self.signed(|b, c| b.get_object(c, key).sign(SIGNATURE_LIFETIME));
            match self.agent.get(&url).call() {
                Ok(mut response) if response.status().as_u16() == 404 => {
                    missing(&mut response, None)
                }
                Ok(mut response) if !response.status().is_success() => failure(&mut response),
                Ok(response) => {
                    let length = response
                        .headers()
                        .get("content-length")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse().ok());
                    let Some(length) = length else {
                        return Attempt::Transport("the answer has no Content-Length".into());
                    };
                    let reader = response
                        .into_body()
                        .into_with_config()
                        .limit(u64::MAX)
                        .reader();
                    Attempt::Done(Some(Download {
                        length,
                        reader: Box::new(reader),
                    }))
                }
                Err(error) => Attempt::Transport(error.to_string()),
            }
        })
    }

    /// The whole object `key`; `None` when there is none.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.retrying("GET", key, || {
            let url = self.signed(|b, c| b.get_object(c, key).sign(SIGNATURE_LIFETIME));
            match self.agent.get(&url).call() {
                Ok(mut response) if response.status().as_u16() == 404 => {
                    missing(&mut response, None)
                }
                Ok(mut response) if !response.status().is_success() => failure(&mut response),
                Ok(mut response) => {
                    match response
                        .body_mut()
                        .with_config()
                        .limit(READ_LIMIT)
                        .read_to_vec()
                    {
                        Ok(bytes) => Attempt::Done(Some(bytes)),
                        Err(error) => Attempt::Transport(error.to_string()),
                    }
                }
                Err(error) => Attempt::Transport(error.to_string()),
            }
        })
    }

    /// Size and Last-Modified of `key`; `None` when there is no such object.
    pub fn head(&self, key: &str) -> Result<Option<ObjectInfo>> {
        self.retrying("HEAD", key, || {
            let url = self.signed(|b, c| b.head_object(c, key).sign(SIGNATURE_LIFETIME));
            match self.agent.head(&url).call() {
                Ok(response) if response.status().as_u16() == 404 => Attempt::Done(None),
                Ok(response) if !response.status().is_success() => {
                    Attempt::Status(response.status().as_u16(), String::new())
                }
                Ok(response) => {
                    let header = |name| {
                        response
                            .headers()
                            .get(name)
                            .and_then(|v: &ureq::http::HeaderValue| v.to_str().ok())
                    };
                    let Some(size) = header("content-length").and_then(|v| v.parse().ok()) else {
                        return Attempt::Transport("the answer has no Content-Length".into());
                    };
                    let modified =
                        header("last-modified").and_then(|v| httpdate::parse_http_date(v).ok());
                    Attempt::Done(Some(ObjectInfo { size, modified }))
                }
                Err(error) => Attempt::Transport(error.to_string()),
            }
        })
    }

    /// Removes `key`; a missing object is not an error.
    pub fn delete(&self, key: &str) -> Result<()> {
        self.retrying("DELETE", key, || {
            let url = self.signed(|b, c| b.delete_object(c, key).sign(SIGNATURE_LIFETIME));
            match self.agent.delete(&url).call() {
                Ok(mut response) if response.status().as_u16() == 404 => missing(&mut response, ()),
                Ok(mut response) => finish(&mut response),
                Err(error) => Attempt::Transport(error.to_string()),
            }
        })
    }

    /// Every object whose key starts with `prefix`, with its size, following the pages of
    /// ListObjectsV2 (1,000 keys each).
    pub fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>> {
        let mut objects = Vec::new();
        self.list_each(prefix, &mut |key, size| {
            objects.push((key, size));
            ControlFlow::Continue(())
        })?;
        Ok(objects)
    }

    /// Calls `visit` with every object [`S3Client::list`] names, a page at a time: the keys of
    /// a PyPI-sized bucket, held at once, took 100 MiB of a replica taking over publishing.
    /// Asks for no further page once `visit` says [`ControlFlow::Break`].
    pub fn list_each(
        &self,
        prefix: &str,
        visit: &mut dyn FnMut(String, u64) -> ControlFlow<()>,
    ) -> Result<()> {
        let mut token: Option<String> = None;
        loop {
            let page = self.retrying("LIST", prefix, || {
                let mut action = ListObjectsV2::new(&self.bucket, self.credentials.as_ref());
                if !prefix.is_empty() {
                    action.with_prefix(prefix);
                }
                if let Some(token) = &token {
                    action.with_continuation_token(token.as_str());
                }
                let url = action.sign(SIGNATURE_LIFETIME).to_string();
                match self.agent.get(&url).call() {
                    Ok(mut response) if response.status().is_success() => {
                        let text = match response
                            .body_mut()
                            .with_config()
                            .limit(64 << 20)
                            .read_to_string()
                        {
                            Ok(text) => text,
                            Err(error) => return Attempt::Transport(error.to_string()),
                        };
                        match ListObjectsV2::parse_response(&text) {
                            Ok(page) => Attempt::Done(page),
                            Err(error) => Attempt::Status(
                                response.status().as_u16(),
                                format!("an unreadable listing: {error}"),
                            ),
                        }
                    }
                    Ok(mut response) => failure(&mut response),
                    Err(error) => Attempt::Transport(error.to_string()),
                }
            })?;
            for object in page.contents {
                if visit(object.key, object.size.unwrap_or(0)).is_break() {
                    return Ok(());
                }
            }
            match page.next_continuation_token {
                Some(next) if !next.is_empty() => token = Some(next),
                _ => return Ok(()),
            }
        }
    }

    /// Creates the bucket (for tests and first setup); an existing bucket of ours is fine.
    pub fn create_bucket(&self) -> Result<()> {
        let Some(credentials) = self.credentials.as_ref() else {
            return Err(Error::Config("creating a bucket needs credentials".into()));
        };
        self.retrying("CREATE BUCKET", "", || {
            let action = self.bucket.create_bucket(credentials);
            let url = action.sign(SIGNATURE_LIFETIME).to_string();
            match self.agent.put(&url).send_empty() {
                Ok(mut response) => match finish(&mut response) {
                    Attempt::Status(409, body)
                        if xml_field(&body, "Code").as_deref()
                            == Some("BucketAlreadyOwnedByYou") =>
                    {
                        Attempt::Done(())
                    }
                    other => other,
                },
                Err(error) => Attempt::Transport(error.to_string()),
            }
        })
    }
}

const CONTENT_MD5: &str = "content-md5";

/// The `Content-MD5` header's value: the base64 of the digest.
fn content_md5(digest: impl AsRef<[u8]>) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(digest)
}

fn file_md5(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Md5::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(content_md5(hasher.finalize()))
}

/// Done for a success status; the status and the error document otherwise.
fn finish(response: &mut ureq::http::Response<ureq::Body>) -> Attempt<()> {
    if response.status().is_success() {
        // Drained so that the connection is reused.
        let _ = response
            .body_mut()
            .with_config()
            .limit(1 << 20)
            .read_to_vec();
        return Attempt::Done(());
    }
    failure(response)
}

/// `value` for a 404 on a missing object, but an error for one on a missing bucket: a
/// misconfigured bucket must not look empty.
fn missing<T>(response: &mut ureq::http::Response<ureq::Body>, value: T) -> Attempt<T> {
    match failure::<()>(response) {
        Attempt::Status(status, body)
            if xml_field(&body, "Code").as_deref() == Some("NoSuchBucket") =>
        {
            Attempt::Status(status, body)
        }
        _ => Attempt::Done(value),
    }
}

/// The status and the error document of a failed request.
fn failure<T>(response: &mut ureq::http::Response<ureq::Body>) -> Attempt<T> {
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(64 << 10)
        .read_to_string()
        .unwrap_or_default();
    Attempt::Status(status, body)
}

/// The text of the first `<field>` in an S3 error document.
fn xml_field(body: &str, field: &str) -> Option<String> {
    let start = body.find(&format!("<{field}>"))? + field.len() + 2;
    let end = body[start..].find(&format!("</{field}>"))? + start;
    Some(body[start..end].to_string())
}

/// A [`Store`] in a bucket, under a prefix: the files an [`crate::FsStore`] would keep under its
/// root, as objects whose keys are `prefix/path`.
#[derive(Clone, Debug)]
pub struct S3Store {
    client: Arc<S3Client>,
    location: S3Url,
}

impl S3Store {
    pub fn new(client: Arc<S3Client>, location: S3Url) -> S3Store {
        S3Store { client, location }
    }

    pub fn location(&self) -> &S3Url {
        &self.location
    }

    pub fn client(&self) -> &Arc<S3Client> {
        &self.client
    }
}

impl S3Store {
    /// Uploads on [`UPLOAD_THREADS`] threads; after the first failure no new upload starts, and
    /// the call returns once those under way ended. Objects stored before the failure stay:
    /// nothing refers to them until the metadata written after this batch does.
    fn put_all<P: AsRef<str> + Sync, B: AsRef<[u8]> + Sync>(&self, files: &[(P, B)]) -> Result<()> {
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let first_error = std::sync::Mutex::new(None);
        let threads = UPLOAD_THREADS.min(files.len());
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| {
                    while !failed.load(Ordering::Relaxed) {
                        let Some((path, bytes)) = files.get(next.fetch_add(1, Ordering::Relaxed))
                        else {
                            break;
                        };
                        let (path, bytes) = (path.as_ref(), bytes.as_ref());
                        if let Err(error) = self.client.put(&self.location.key(path), bytes) {
                            failed.store(true, Ordering::Relaxed);
                            if let Ok(mut slot) = first_error.lock() {
                                slot.get_or_insert(error);
                            }
                        }
                    }
                });
            }
        });
        match first_error.into_inner().ok().flatten() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

impl Store for S3Store {
    /// An object appears whole or not at all, so every file goes straight to its key.
    fn write_all(&self, files: &[(String, Vec<u8>)]) -> Result<()> {
        self.put_all(files)
    }

    fn write_immutable(&self, files: &[(&str, &[u8])]) -> Result<()> {
        self.put_all(files)
    }

    fn read(&self, path: &str) -> Result<Option<Vec<u8>>> {
        self.client.get(&self.location.key(path))
    }

    fn remove(&self, path: &str) -> Result<()> {
        self.client.delete(&self.location.key(path))
    }

    fn list(&self, dir: &str) -> Result<Vec<String>> {
        crate::store::every_file(|visit| self.list_each(dir, visit))
    }

    fn list_each(&self, dir: &str, visit: &mut Visit<'_>) -> Result<()> {
        let mut prefix = self.location.key(dir);
        if !prefix.is_empty() {
            prefix.push('/');
        }
        let root = match self.location.prefix.is_empty() {
            true => String::new(),
            false => format!("{}/", self.location.prefix),
        };
        self.client
            .list_each(&prefix, &mut |key, size| match key.strip_prefix(&root) {
                Some(file) => visit(file.to_string(), Some(size)),
                None => ControlFlow::Continue(()),
            })
    }

    fn modified(&self, path: &str) -> Result<Option<SystemTime>> {
        Ok(self
            .client
            .head(&self.location.key(path))?
            .and_then(|info| info.modified))
    }

    fn size(&self, path: &str) -> Result<Option<u64>> {
        Ok(self
            .client
            .head(&self.location.key(path))?
            .map(|info| info.size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_and_refuse() {
        assert_eq!(
            S3Url::parse("s3://my-bucket/a/b/"),
            Some(S3Url {
                bucket: "my-bucket".into(),
                prefix: "a/b".into()
            })
        );
        assert_eq!(S3Url::parse("s3://my-bucket").unwrap().key("x/y"), "x/y");
        assert_eq!(S3Url::parse("s3://my-bucket/p").unwrap().key("x"), "p/x");
        for bad in [
            "/data",
            "s3://",
            "s3://UPPER/x",
            "s3://b/../x",
            "s3://ok-bucket/a//b",
        ] {
            assert_eq!(S3Url::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn settings_follow_the_variables_then_the_profile_files() {
        let dir = tempfile::tempdir().unwrap();
        let credentials = dir.path().join("credentials");
        let config = dir.path().join("config");
        std::fs::write(
            &credentials,
            "[default]\naws_access_key_id = DEF\naws_secret_access_key = defsecret\n\
             [work]\naws_access_key_id = WORK\naws_secret_access_key = worksecret\n",
        )
        .unwrap();
        std::fs::write(
            &config,
            "[default]\nregion = eu-west-1\n[profile work]\nregion = eu-north-1\n\
             endpoint_url = http://127.0.0.1:9000\n",
        )
        .unwrap();
        let vars = |extra: &'static [(&'static str, &'static str)]| {
            let (credentials, config) = (credentials.clone(), config.clone());
            move |name: &str| match name {
                "AWS_SHARED_CREDENTIALS_FILE" => Some(credentials.display().to_string()),
                "AWS_CONFIG_FILE" => Some(config.display().to_string()),
                _ => extra
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string()),
            }
        };
        let default = S3Settings::from_lookup(vars(&[])).unwrap();
        assert_eq!(default.region, "eu-west-1");
        assert_eq!(
            default.endpoint.as_str(),
            "https://s3.eu-west-1.amazonaws.com/"
        );
        assert!(!default.path_style);
        assert_eq!(default.credentials.unwrap().key(), "DEF");
        let work = S3Settings::from_lookup(vars(&[("AWS_PROFILE", "work")])).unwrap();
        assert_eq!(work.region, "eu-north-1");
        assert_eq!(work.endpoint.as_str(), "http://127.0.0.1:9000/");
        assert!(work.path_style);
        assert_eq!(work.credentials.unwrap().key(), "WORK");
        let env = S3Settings::from_lookup(vars(&[
            ("AWS_PROFILE", "work"),
            ("AWS_ACCESS_KEY_ID", "ENV"),
            ("AWS_SECRET_ACCESS_KEY", "envsecret"),
            ("AWS_SESSION_TOKEN", "tok"),
            ("AWS_REGION", "us-west-2"),
            ("AWS_ENDPOINT_URL", "http://generic:1"),
            ("AWS_ENDPOINT_URL_S3", "http://s3only:2"),
        ]))
        .unwrap();
        assert_eq!(env.region, "us-west-2");
        assert_eq!(env.endpoint.as_str(), "http://s3only:2/");
        let creds = env.credentials.unwrap();
        assert_eq!((creds.key(), creds.token()), ("ENV", Some("tok")));
        assert!(
            !format!("{:?}", S3Settings::from_lookup(vars(&[])).unwrap()).contains("defsecret")
        );
    }

    #[test]
    fn error_documents_give_their_code() {
        let body = "<?xml version=\"1.0\"?><Error><Code>NoSuchBucket</Code><Message>The specified \
                    bucket does not exist</Message></Error>";
        assert_eq!(xml_field(body, "Code").as_deref(), Some("NoSuchBucket"));
        let settings = S3Settings::from_lookup(|name| {
            (name == "AWS_ENDPOINT_URL").then(|| "http://127.0.0.1:1".to_string())
        })
        .unwrap();
        let client = S3Client::new("bucket", &settings).unwrap();
        let error = client.error("PUT", "a/b", Some(404), body, 1);
        assert_eq!(
            error.to_string(),
            "S3 PUT s3://bucket/a/b failed: HTTP 404 NoSuchBucket: The specified bucket does not exist"
        );
    }
}
