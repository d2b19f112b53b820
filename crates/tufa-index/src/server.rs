//! The HTTP face of the index: routes, content negotiation, redirects, and errors whose reason is
//! in the status line (twine prints the reason phrase, not the body).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use tufa_repo::View;

use crate::Index;
use crate::auth::{AuthError, identify};
use crate::connections::Limits;
use crate::db::FileRecord;
use crate::encoding::{self, Answer, Freshness, Rendered};
use crate::error::Error;
use crate::name::{ProjectName, Version};
use crate::negotiate::{Format, negotiate};
use crate::page_cache::Resource;
use crate::pages;
use crate::upload::{UploadError, Uploaded, max_form_bytes, upload};

mod snapshot_proofs;

const LAST_SERIAL: &str = "x-pypi-last-serial";

/// Bytes of a distribution file read at a time. Each read is a trip to the blocking thread pool
/// and each chunk a write to the socket: with tokio-util's default of 4 KiB, a 160 KB wheel took
/// 40 of each.
const FILE_CHUNK: usize = 64 * 1024;

/// An error response: the status, and a reason that goes both into the status line and the body.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    reason: String,
    /// Seconds for `Retry-After`, on a 429 or 503.
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: u16, reason: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            reason: reason.into(),
            retry_after: None,
        }
    }

    pub(crate) fn not_found(what: impl std::fmt::Display) -> Self {
        ApiError::new(404, format!("Not Found: {what}"))
    }
}

/// Seconds a client is asked to wait after a 503 for an unavailable database.
const UNAVAILABLE_RETRY_AFTER: u64 = 5;

/// A 500 answer (503 when the database is unavailable): the whole error goes to the log under a new id, and the answer names only the
/// kind of failure and that id, so that it shows no paths or other details of the server.
fn internal_error(error: &Error) -> ApiError {
    if let Some(reason) = error.unavailable() {
        tracing::warn!("answering 503: {error}");
        return ApiError {
            retry_after: Some(UNAVAILABLE_RETRY_AFTER),
            ..ApiError::new(
                503,
                format!("Service Unavailable: database unavailable ({reason})"),
            )
        };
    }
    use ring::rand::SecureRandom;
    if let Some(reason) = error.storage_unavailable() {
        tracing::error!("storage unavailable: {error}");
        return ApiError {
            retry_after: Some(5),
            ..ApiError::new(
                503,
                format!("Service Unavailable: the storage bucket is unavailable ({reason})"),
            )
        };
    }
    let mut random = [0u8; 6];
    // A failing system RNG leaves zeros: the id is only for finding the log line.
    let _ = ring::rand::SystemRandom::new().fill(&mut random);
    let id = hex::encode(random);
    tracing::error!(error_id = %id, "internal error: {error}");
    ApiError::new(
        500,
        format!(
            "Internal Server Error: {} (error id {id}; the server log has the details)",
            error.kind()
        ),
    )
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        internal_error(&error)
    }
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Upload(error) => error.into(),
            error => ApiError {
                retry_after: error.retry_after(),
                ..ApiError::new(error.status(), error.to_string())
            },
        }
    }
}

impl From<UploadError> for ApiError {
    fn from(error: UploadError) -> Self {
        match &error {
            UploadError::Internal(inner) => internal_error(inner),
            _ => ApiError::new(error.status(), error.to_string()),
        }
    }
}

/// A status-line reason may hold only visible ASCII and spaces, on one line.
pub fn reason_phrase(reason: &str) -> hyper::ext::ReasonPhrase {
    let cleaned: String = reason
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                ' '
            }
        })
        .take(1024)
        .collect();
    hyper::ext::ReasonPhrase::try_from(cleaned)
        .unwrap_or(hyper::ext::ReasonPhrase::from_static(b"Error"))
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("{} {}\n", self.status.as_u16(), self.reason),
        )
            .into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"tufa\""),
            );
        }
        response
            .extensions_mut()
            .insert(reason_phrase(&self.reason));
        response
    }
}

pub(crate) type ApiResult<T = Response> = Result<T, ApiError>;

pub fn router(index: Arc<Index>) -> Router {
    let upload_limit = DefaultBodyLimit::max(
        usize::try_from(max_form_bytes(index.config.max_upload_size)).unwrap_or(usize::MAX),
    );
    Router::new()
        .route("/", get(crate::web::home))
        .route("/search", get(add_slash))
        .route("/search/", get(crate::web::search))
        .route("/project/{project}", get(add_slash))
        .route("/project/{project}/", get(crate::web::project))
        .route("/project/{project}/{version}", get(add_slash))
        .route("/project/{project}/{version}/", get(crate::web::release))
        .route("/trust", get(add_slash))
        .route("/trust/", get(crate::web::trust))
        .route(tufa_web::STYLESHEET_PATH, get(crate::web::stylesheet))
        .route("/simple", get(add_slash))
        .route("/simple/", get(simple_index))
        .route("/simple/{project}", get(add_slash))
        .route("/simple/{project}/", get(simple_project))
        .route("/cooldown/simple", get(add_slash))
        .route("/cooldown/simple/", get(cooldown_index))
        .route("/cooldown/simple/{project}", get(add_slash))
        .route("/cooldown/simple/{project}/", get(cooldown_project))
        .route("/files/{sha256}/{filename}", get(file))
        .route("/tuf/metadata/{file}", get(tuf_metadata))
        .route("/tuf/targets/{*path}", get(tuf_target))
        .route("/tuf/log/{*path}", get(tuf_log))
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .route("/pypi/{project}/json", get(project_json))
        .route("/pypi/{project}/{version}/json", get(release_json))
        .route(
            "/integrity/{project}/{version}/{filename}/provenance",
            get(integrity_provenance),
        )
        .route("/legacy/", post(legacy_upload).layer(upload_limit))
        .route("/legacy", post(legacy_upload).layer(upload_limit))
        .layer(axum::middleware::from_fn(access_log))
        .with_state(index)
}

/// One line per request, as operators of devpi or nginx expect to find, with the content coding
/// of a compressed answer. A token pasted into a URL by mistake is not written down.
pub async fn access_log(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let method = request.method().clone();
    let path = redact_tokens(request.uri().path());
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let coding = response
        .headers()
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|coding| format!(" {coding}"))
        .unwrap_or_default();
    tracing::info!(
        "{method} {path} {} {}us{coding}",
        response.status().as_u16(),
        started.elapsed().as_micros()
    );
    response
}

/// `text` with anything shaped like an API token (`tufa-` and 43 URL-safe base64 characters)
/// replaced by `tufa-[redacted]`.
fn redact_tokens(text: &str) -> String {
    const SECRET_LENGTH: usize = 43;
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("tufa-") {
        let (before, candidate) = rest.split_at(at);
        out.push_str(before);
        let secret = candidate["tufa-".len()..]
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
            .count();
        if secret >= SECRET_LENGTH {
            out.push_str("tufa-[redacted]");
            rest = &candidate["tufa-".len() + secret..];
        } else {
            out.push_str("tufa-");
            rest = &candidate["tufa-".len()..];
        }
    }
    out.push_str(rest);
    out
}

/// A permanent redirect to `location`.
pub fn redirect(location: &str) -> Response {
    let mut response = StatusCode::MOVED_PERMANENTLY.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// `path` with the request's query string kept (`?format=` must survive a redirect).
pub fn with_query(path: String, uri: &Uri) -> String {
    match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path,
    }
}

/// Redirects a path without its trailing slash to the one with it, as PEP 503 asks.
pub async fn add_slash(uri: Uri) -> Response {
    redirect(&with_query(format!("{}/", uri.path()), &uri))
}

#[derive(Deserialize)]
struct FormatQuery {
    format: Option<String>,
}

fn choose(headers: &HeaderMap, query: &FormatQuery) -> ApiResult<Format> {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    negotiate(accept, query.format.as_deref()).ok_or_else(|| {
        ApiError::new(
            406,
            "Not Acceptable: this index serves application/vnd.pypi.simple.v1+json, \
             application/vnd.pypi.simple.v1+html and text/html",
        )
    })
}

/// A simple API page: compressed as the request prefers, revalidated on every use.
async fn page(
    index: &Index,
    key: &Resource,
    body: &Rendered,
    format: Format,
    serial: i64,
    headers: &HeaderMap,
) -> Response {
    let answer = Answer {
        content_type: format.content_type(),
        freshness: Freshness::Revalidate,
        negotiated: true,
    };
    let mut response = encoding::respond(&index.answers, key, body, headers, answer).await;
    response
        .headers_mut()
        .insert(LAST_SERIAL, HeaderValue::from(serial));
    response
}

async fn simple_index(
    State(index): State<Arc<Index>>,
    headers: HeaderMap,
    Query(query): Query<FormatQuery>,
) -> ApiResult {
    project_list(&index, View::Simple, &headers, &query).await
}

async fn cooldown_index(
    State(index): State<Arc<Index>>,
    headers: HeaderMap,
    Query(query): Query<FormatQuery>,
) -> ApiResult {
    project_list(&index, View::Cooldown, &headers, &query).await
}

/// The path the simple API of `view` is served at.
fn view_root(view: View) -> &'static str {
    match view {
        View::Simple => "/simple/",
        View::Cooldown => "/cooldown/simple/",
    }
}

fn cooldown_off() -> ApiError {
    ApiError::not_found("this index publishes no cooldown view (start it with --cooldown DURATION)")
}

async fn project_list(
    index: &Index,
    view: View,
    headers: &HeaderMap,
    query: &FormatQuery,
) -> ApiResult {
    if view == View::Cooldown && index.cooldown().is_none() {
        return Err(cooldown_off());
    }
    let format = choose(headers, query)?;
    let serial = index.database.last_serial().await?;
    let key = Resource::ProjectList {
        view,
        json: format == Format::Json,
        serial,
    };
    let body = match index.answers.identity(&key) {
        Some(body) => body,
        None => {
            let projects = index.database.projects().await?;
            let body = match format {
                Format::Json => pages::index_json(&projects, serial),
                Format::Html | Format::LegacyHtml => {
                    pages::index_html(view_root(view), &projects, serial).into_bytes()
                }
            };
            index.answers.keep(key.clone(), body)
        }
    };
    Ok(page(index, &key, &body, format, serial, headers).await)
}

/// Resolves a project named in a URL, or answers with the redirect to its normalized spelling.
fn project_name(
    raw: &str,
    uri: &Uri,
    normalized_path: impl Fn(&str) -> String,
) -> ApiResult<Result<ProjectName, Response>> {
    let name =
        ProjectName::new(raw).map_err(|_| ApiError::not_found(format!("no project {raw:?}")))?;
    if name.is_spelled(raw) {
        Ok(Ok(name))
    } else {
        Ok(Err(redirect(&with_query(
            normalized_path(name.as_str()),
            uri,
        ))))
    }
}

async fn simple_project(
    State(index): State<Arc<Index>>,
    Path(raw): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    Query(query): Query<FormatQuery>,
) -> ApiResult {
    project_page(&index, View::Simple, &raw, &uri, &headers, &query).await
}

async fn cooldown_project(
    State(index): State<Arc<Index>>,
    Path(raw): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    Query(query): Query<FormatQuery>,
) -> ApiResult {
    if index.cooldown().is_none() {
        return Err(cooldown_off());
    }
    project_page(&index, View::Cooldown, &raw, &uri, &headers, &query).await
}

async fn project_page(
    index: &Arc<Index>,
    view: View,
    raw: &str,
    uri: &Uri,
    headers: &HeaderMap,
    query: &FormatQuery,
) -> ApiResult {
    let root = view_root(view);
    let name = match project_name(raw, uri, |n| format!("{root}{n}/"))? {
        Ok(name) => name,
        Err(redirect) => return Ok(redirect),
    };
    let format = choose(headers, query)?;
    let json = format == Format::Json;
    mirror_page(index, &name).await?;
    let (serial, body) = index
        .served_page(view, &name, json)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no project {name:?} on this index")))?;
    let key = Resource::Page {
        view,
        project: name,
        json,
        serial,
    };
    Ok(page(index, &key, &body, format, serial, headers).await)
}

/// With an upstream: mirrors `name` when it is neither local nor private (waiting, bounded, for
/// the page to be fetched, recorded and signed), or refreshes its page when stale.
async fn mirror_page(index: &Arc<Index>, name: &ProjectName) -> ApiResult<()> {
    let Some(mirror) = index.mirror.as_ref() else {
        return Ok(());
    };
    match index.database.project(name).await? {
        Some(project) if project.mirror.is_some() => {
            crate::mirror::refresh_if_stale(index, name).await?;
            // Mirrored a moment ago by another request: answer once it is signed, as the first
            // request does, so that `tufa proxy` asking now finds the signed target.
            crate::mirror::wait_signed(index, project.last_serial, crate::mirror::REFRESH_WAIT)
                .await;
            return Ok(());
        }
        Some(_) => return Ok(()),
        None => {}
    }
    if let Some(pattern) = mirror.private_pattern(name) {
        return Err(ApiError::not_found(format!(
            "'{name}' is reserved for private uploads (it matches the private pattern \
             '{pattern}') and is never looked up upstream"
        )));
    }
    if index.reserved().contains(name) {
        return Ok(());
    }
    let started = std::time::Instant::now();
    let outcome = tokio::time::timeout(
        crate::mirror::FETCH_WAIT,
        crate::mirror::refresh(index, name),
    )
    .await
    .map_err(|_| {
        ApiError::new(
            504,
            format!(
                "Gateway Timeout: upstream {} did not answer for '{name}' within {} s; the \
                 fetch goes on, try again shortly",
                mirror.upstream_root(),
                crate::mirror::FETCH_WAIT.as_secs()
            ),
        )
    })?;
    match outcome {
        crate::mirror::Outcome::Recorded {
            serial: Some(serial),
        } => {
            let bound = crate::mirror::FIRST_REQUEST_WAIT.saturating_sub(started.elapsed());
            if !crate::mirror::wait_signed(index, serial, bound).await {
                tracing::warn!(
                    project = %name,
                    serial,
                    "the mirrored page was not signed within {} ms: answered unsigned for now",
                    bound.as_millis()
                );
            }
            Ok(())
        }
        crate::mirror::Outcome::Recorded { serial: None } | crate::mirror::Outcome::Local => Ok(()),
        crate::mirror::Outcome::NotFound => Err(ApiError::not_found(format!(
            "no project '{name}' on this index or upstream ({})",
            mirror.upstream_root()
        ))),
        crate::mirror::Outcome::Failed(error) => {
            Err(ApiError::new(502, format!("Bad Gateway: {error}")))
        }
    }
}

async fn file(
    State(index): State<Arc<Index>>,
    Path((sha256, filename)): Path<(String, String)>,
) -> ApiResult {
    let (filename, metadata) = match filename.strip_suffix(".metadata") {
        Some(dist) => (dist, true),
        None => (filename.as_str(), false),
    };
    let record: FileRecord = index
        .database
        .file(filename)
        .await?
        .filter(|f| f.sha256 == sha256)
        .ok_or_else(|| ApiError::not_found(format!("no file {filename:?}")))?;
    if index.mirror.is_some()
        && let Some((_, project, Some(status))) = index.database.upstream_url(filename).await?
        && status == "quarantined"
    {
        return Err(quarantined(&project));
    }
    let path = if metadata {
        if record.metadata_sha256.is_none() {
            return Err(ApiError::not_found(format!(
                "{filename:?} has no metadata file"
            )));
        }
        index.blobs.metadata_path(&record.sha256)
    } else {
        index.blobs.path(&record.sha256)
    };
    let blobs = index.blobs.clone();
    let target = path.clone();
    let stored = tokio::task::spawn_blocking(move || blobs.open_stored(&target))
        .await
        .map_err(|e| Error::Config(format!("the file reader failed: {e}")))??;
    let (length, body) = match stored {
        Some(crate::blobs::Stored::Local { file, length }) => {
            let file = tokio::fs::File::from_std(file);
            let body = Body::from_stream(tokio_util::io::ReaderStream::with_capacity(
                file, FILE_CHUNK,
            ));
            (length, body)
        }
        Some(crate::blobs::Stored::Bucket(download)) => {
            (download.length, bucket_body(download.reader))
        }
        None if index.mirror.is_some() => {
            return mirror_file(&index, &record, metadata, path).await;
        }
        None => {
            return Err(Error::Io {
                action: "opening",
                path,
                source: std::io::ErrorKind::NotFound.into(),
            }
            .into());
        }
    };
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (header::CONTENT_LENGTH, HeaderValue::from(length)),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=31536000, immutable"),
            ),
        ],
        body,
    )
        .into_response())
}

/// The body of an object downloading from the bucket: read on a blocking thread, a few chunks
/// ahead of the client at most. A download that fails part-way ends the body with an error, so
/// the client never takes a short file for a whole one.
fn bucket_body(mut reader: Box<dyn std::io::Read + Send>) -> Body {
    use axum::body::Bytes;
    let (sink, chunks) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        loop {
            let mut chunk = vec![0; FILE_CHUNK];
            let read = match reader.read(&mut chunk) {
                Ok(0) => return,
                Ok(read) => read,
                Err(error) => {
                    tracing::error!("reading a file from the bucket: {error}");
                    let _ = sink.blocking_send(Err(error));
                    return;
                }
            };
            chunk.truncate(read);
            if sink.blocking_send(Ok(Bytes::from(chunk))).is_err() {
                return;
            }
        }
    });
    Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(chunks))
}

/// PEP 792: an index offers no file of a quarantined project, stored or not.
fn quarantined(project: &ProjectName) -> ApiError {
    ApiError::new(
        403,
        format!("Forbidden: upstream quarantined {project} (PEP 792): its files are not offered"),
    )
}

/// A mirrored file (or its metadata file) not stored yet: fetched from upstream, verified while
/// it streams, stored once it matched. A mismatch found before anything was sent (a wrong
/// announced length; any file of one chunk) answers 502 with the reason; one found later ends the
/// body with an error, so the client never gets a complete wrong file.
async fn mirror_file(
    index: &Index,
    record: &FileRecord,
    metadata: bool,
    path: std::path::PathBuf,
) -> ApiResult {
    use crate::verified::{Destination, Expected, Failure, StartError};
    use std::sync::atomic::Ordering;
    let Some(mirror) = index.mirror.as_ref() else {
        return Err(ApiError::not_found(format!(
            "no file {:?}",
            record.filename
        )));
    };
    let filename = &record.filename;
    let Some((url, project, status)) = index.database.upstream_url(filename).await? else {
        return Err(Error::Io {
            action: "opening",
            path,
            source: std::io::ErrorKind::NotFound.into(),
        }
        .into());
    };
    if status.as_deref() == Some("quarantined") {
        return Err(quarantined(&project));
    }
    let (expected, url) = if metadata {
        let sha256 = record
            .metadata_sha256
            .clone()
            .ok_or_else(|| ApiError::not_found(format!("{filename:?} has no metadata file")))?;
        (
            Expected {
                what: format!("the metadata of {filename} of {project} from upstream"),
                sha256,
                page: "pinned page",
                size: None,
                limit: crate::mirror::METADATA_LIMIT,
            },
            format!("{url}.metadata"),
        )
    } else {
        (
            Expected {
                what: format!("{filename} of {project} from upstream"),
                sha256: record.sha256.clone(),
                page: "pinned page",
                size: Some(record.size),
                limit: record.size,
            },
            url,
        )
    };
    mirror.stats.file_fetches.fetch_add(1, Ordering::Relaxed);
    let destination = Destination {
        path: path.clone(),
        staging_dir: index.blobs.staging_dir().to_path_buf(),
        durable: true,
    };
    let mismatch = |reason: String| {
        mirror.stats.hash_mismatches.fetch_add(1, Ordering::Relaxed);
        ApiError::new(502, format!("Bad Gateway: {reason}; not stored"))
    };
    let mut download = match mirror.downloader.fetch(expected, url, destination).await {
        Ok(download) => download,
        Err(StartError::Mismatch(reason)) => return Err(mismatch(reason)),
        Err(StartError::Unreachable(reason) | StartError::Refused(reason)) => {
            tracing::warn!("mirrored file not fetched: {reason}");
            return Err(ApiError::new(502, format!("Bad Gateway: {reason}")));
        }
    };
    let first = download.body.recv().await;
    if let Some(Err(_)) | None = &first {
        return Err(match (&mut download.done).await {
            Ok(Err(Failure::Mismatch(reason))) => mismatch(reason),
            Ok(Err(Failure::Incomplete(reason))) => {
                ApiError::new(502, format!("Bad Gateway: {reason}"))
            }
            _ => ApiError::new(502, "Bad Gateway: the download from upstream stopped"),
        });
    }
    let counter = Arc::clone(&mirror.stats.hash_mismatches);
    let blobs = index.blobs.clone();
    tokio::spawn(async move {
        match download.done.await {
            Ok(Err(Failure::Mismatch(_))) => {
                counter.fetch_add(1, Ordering::Relaxed);
            }
            // Verified and stored in the data directory: into the bucket, when files are kept
            // there (a failure leaves it to be fetched again on the next request).
            Ok(Ok(())) if blobs.in_bucket() => {
                let uploaded =
                    tokio::task::spawn_blocking(move || blobs.upload_downloaded(&path)).await;
                if let Ok(Err(error)) = uploaded {
                    tracing::warn!("a mirrored file was not stored in the bucket: {error}");
                }
            }
            _ => {}
        }
    });
    let rest = tokio_stream::wrappers::ReceiverStream::new(download.body);
    let body = Body::from_stream(tokio_stream::StreamExt::chain(
        tokio_stream::iter(first),
        rest,
    ));
    let size = download.size;
    let mut response = (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=31536000, immutable"),
            ),
        ],
        body,
    )
        .into_response();
    if let Some(size) = size {
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    }
    Ok(response)
}

pub(crate) fn base_url(index: &Index, headers: &HeaderMap) -> String {
    if let Some(url) = &index.config.public_url {
        return url.trim_end_matches('/').to_string();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("http://{host}")
}

async fn warehouse(
    index: &Index,
    headers: &HeaderMap,
    name: &ProjectName,
    version: Option<&str>,
) -> ApiResult {
    let project = index
        .database
        .project(name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no project {name:?} on this index")))?;
    let base = base_url(index, headers);
    let key = Resource::Api {
        project: name.clone(),
        version: version.map(str::to_string),
        base: base.clone(),
        serial: project.last_serial,
    };
    let body = match index.answers.identity(&key) {
        Some(body) => body,
        None => {
            let releases = index.database.releases(project.id).await?;
            let files = index.database.project_files(project.id).await?;
            let release = match version {
                Some(raw) => {
                    let wanted = Version::new(raw)
                        .map_err(|_| ApiError::not_found(format!("no release {raw:?}")))?;
                    releases.iter().find(|r| r.version == wanted)
                }
                None => pages::latest_release(&releases, &files),
            }
            .ok_or_else(|| ApiError::not_found(format!("no such release of {name:?}")))?;
            let body = pages::warehouse_json(
                &base,
                &project,
                &releases,
                &files,
                release,
                version.is_none(),
            );
            index.answers.keep(key.clone(), body)
        }
    };
    let answer = Answer {
        content_type: "application/json",
        freshness: Freshness::Revalidate,
        negotiated: false,
    };
    let mut response = encoding::respond(&index.answers, &key, &body, headers, answer).await;
    response
        .headers_mut()
        .insert(LAST_SERIAL, HeaderValue::from(project.last_serial));
    Ok(response)
}

async fn project_json(
    State(index): State<Arc<Index>>,
    Path(raw): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> ApiResult {
    match project_name(&raw, &uri, |n| format!("/pypi/{n}/json"))? {
        Ok(name) => warehouse(&index, &headers, &name, None).await,
        Err(redirect) => Ok(redirect),
    }
}

async fn release_json(
    State(index): State<Arc<Index>>,
    Path((raw, version)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> ApiResult {
    match project_name(&raw, &uri, |n| format!("/pypi/{n}/{version}/json"))? {
        Ok(name) => warehouse(&index, &headers, &name, Some(&version)).await,
        Err(redirect) => Ok(redirect),
    }
}

/// PEP 740's Integrity API, as Warehouse answers it: the file's provenance object, or a JSON
/// `{"message": ...}` with 404 (no such file, or no provenance) or 406.
async fn integrity_provenance(
    State(index): State<Arc<Index>>,
    Path((raw, raw_version, filename)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let message = |status: StatusCode, message: String| {
        let mut response = (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::json!({ "message": message }).to_string(),
        )
            .into_response();
        response.extensions_mut().insert(reason_phrase(&message));
        response
    };
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let Some(content_type) = crate::provenance::negotiate(accept) else {
        return message(StatusCode::NOT_ACCEPTABLE, "Request not acceptable".into());
    };
    let (Ok(project), Ok(version)) = (ProjectName::new(&raw), Version::new(&raw_version)) else {
        return message(
            StatusCode::NOT_FOUND,
            format!("No file {filename} of {raw} {raw_version}"),
        );
    };
    // PEP 792: a quarantined project's files are not offered, nor is their provenance.
    if index.mirror.is_some() {
        match index.database.upstream_url(&filename).await {
            Err(error) => return internal_error(&error).into_response(),
            Ok(Some((_, owner, Some(status)))) if status == "quarantined" => {
                return quarantined(&owner).into_response();
            }
            Ok(_) => {}
        }
    }
    match index
        .database
        .provenance(&project, &version, &filename)
        .await
    {
        Err(error) => internal_error(&error).into_response(),
        Ok(None) => message(
            StatusCode::NOT_FOUND,
            format!("No file {filename} of {project} {version}"),
        ),
        Ok(Some(None)) => message(
            StatusCode::NOT_FOUND,
            format!("No provenance available for {filename}"),
        ),
        Ok(Some(Some(provenance))) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
                (header::VARY, HeaderValue::from_static("Accept")),
                // A file's provenance never changes: it is recorded with the file.
                (
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("public, max-age=600"),
                ),
            ],
            provenance,
        )
            .into_response(),
    }
}

async fn legacy_upload(
    State(index): State<Arc<Index>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    request: axum::extract::Request,
) -> ApiResult {
    let identity = identify(&index, &headers, client.ip()).await?;
    match upload(
        &index.database,
        &index.blobs,
        &identity,
        request,
        index.config.max_upload_size,
        index.reserved(),
        index.trust_root(),
    )
    .await
    {
        Ok(Uploaded::New { serial }) => {
            index.changed();
            tracing::info!(user = identity.user, serial, "upload accepted");
            Ok((
                StatusCode::OK,
                [(LAST_SERIAL, HeaderValue::from(serial))],
                "OK\n",
            )
                .into_response())
        }
        Ok(Uploaded::Unchanged) => Ok((
            StatusCode::OK,
            "OK: file already uploaded with this content\n",
        )
            .into_response()),
        Err(error) => {
            tracing::warn!(user = identity.user, "upload refused: {error}");
            Err(error.into())
        }
    }
}

/// A TUF file name or path component as this repository writes them: role names, versions,
/// hashes and normalized project names. Anything else (`..`, hidden files, temporary files) is
/// never served.
fn safe_component(component: &str) -> bool {
    !component.is_empty()
        && !component.starts_with('.')
        && !component.ends_with(".tufa-tmp")
        && component
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// The bytes of the TUF file at `path`; `None` when there is none.
async fn read_tuf(path: &std::path::Path) -> ApiResult<Option<Vec<u8>>> {
    match tokio::fs::read(path).await {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::Io {
            action: "reading",
            path: path.to_path_buf(),
            source: e,
        }
        .into()),
    }
}

/// The bytes of the TUF file `relative` in a store that is not the data directory.
async fn read_stored(
    store: Arc<dyn tufa_repo::Store>,
    relative: &str,
) -> ApiResult<Option<Vec<u8>>> {
    let relative = relative.to_string();
    Ok(tokio::task::spawn_blocking(move || store.read(&relative))
        .await
        .map_err(|e| Error::Config(format!("the storage reader failed: {e}")))?
        .map_err(Error::Tuf)?)
}

/// A metadata file or target: JSON, and immutable but for `timestamp.json`.
async fn tuf_file(index: &Index, relative: &str, headers: &HeaderMap) -> ApiResult {
    let (key, body, immutable) = tuf_body(index, relative).await?;
    respond_stored(index, key, body, headers, "application/json", immutable).await
}

/// A TUF file from the store, through the answer cache: its cache key, its bytes, and whether
/// it never changes (everything but `timestamp.json`).
pub(crate) async fn tuf_body(
    index: &Index,
    relative: &str,
) -> ApiResult<(Resource, Rendered, bool)> {
    // Everything but timestamp.json is named by version or hash and never changes: kept by
    // name, and looked up on disk first, since superseded versions are removed.
    let immutable =
        relative != tufa_repo::layout::metadata_file(&tufa_metadata::RoleName::timestamp(), 0);
    let (key, body) = stored_body(index, relative, immutable).await?;
    Ok((key, body, immutable))
}

/// A file of the TUF store (metadata, targets, the transparency log), answered with
/// `content_type`; `immutable` files are cached by name.
async fn stored_file(
    index: &Index,
    relative: &str,
    headers: &HeaderMap,
    content_type: &'static str,
    immutable: bool,
) -> ApiResult {
    let (key, body) = stored_body(index, relative, immutable).await?;
    respond_stored(index, key, body, headers, content_type, immutable).await
}

async fn respond_stored(
    index: &Index,
    key: Resource,
    body: Rendered,
    headers: &HeaderMap,
    content_type: &'static str,
    immutable: bool,
) -> ApiResult {
    let answer = Answer {
        content_type,
        freshness: if immutable {
            Freshness::Immutable
        } else {
            Freshness::Revalidate
        },
        negotiated: false,
    };
    Ok(encoding::respond(&index.answers, &key, &body, headers, answer).await)
}

/// The bytes of a file of the TUF store and its cache key; `immutable` files are cached by name.
async fn stored_body(
    index: &Index,
    relative: &str,
    immutable: bool,
) -> ApiResult<(Resource, Rendered)> {
    if index.signing.is_none() {
        return Err(ApiError::not_found("this index does not sign with TUF"));
    }
    if !relative.split('/').all(safe_component) {
        return Err(ApiError::not_found(format!("no TUF file {relative:?}")));
    }
    let missing = || ApiError::not_found(format!("no TUF file {relative:?}"));
    let path = index
        .config
        .data_dir
        .join(crate::signing::TUF_DIR)
        .join(relative);
    let (key, body) = if !index.storage.is_local() {
        let store = index.signing.as_ref().map(|signing| signing.store());
        let Some(store) = store else {
            return Err(missing());
        };
        if immutable {
            // Named by version or hash: the name alone identifies the content.
            let key = Resource::TufFile {
                path: relative.to_string(),
                length: 0,
                modified: None,
            };
            let body = match index.answers.identity(&key) {
                Some(body) => body,
                None => {
                    let bytes = read_stored(store, relative).await?.ok_or_else(missing)?;
                    index.answers.keep(key.clone(), bytes)
                }
            };
            (key, body)
        } else {
            let body = Rendered::new(read_stored(store, relative).await?.ok_or_else(missing)?);
            (Resource::TufContent(body.digest().to_string()), body)
        }
    } else if immutable {
        let metadata = match tokio::fs::metadata(&path).await {
            Ok(metadata) => metadata,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(missing()),
            Err(e) => {
                return Err(Error::Io {
                    action: "reading",
                    path,
                    source: e,
                }
                .into());
            }
        };
        let key = Resource::TufFile {
            path: relative.to_string(),
            length: metadata.len(),
            modified: metadata.modified().ok(),
        };
        let body = match index.answers.identity(&key) {
            Some(body) => body,
            None => {
                let bytes = read_tuf(&path).await?.ok_or_else(missing)?;
                index.answers.keep(key.clone(), bytes)
            }
        };
        (key, body)
    } else {
        let body = Rendered::new(read_tuf(&path).await?.ok_or_else(missing)?);
        (Resource::TufContent(body.digest().to_string()), body)
    };
    Ok((key, body))
}

async fn tuf_metadata(
    State(index): State<Arc<Index>>,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    if let Some(wanted) = snapshot_proofs::ProofRequest::parse(&file) {
        return snapshot_proofs::serve(&index, wanted, &headers).await;
    }
    tuf_file(
        &index,
        &format!("{}/{file}", tufa_repo::layout::METADATA_DIR),
        &headers,
    )
    .await
}

async fn tuf_target(
    State(index): State<Arc<Index>>,
    Path(path): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    tuf_file(
        &index,
        &format!("{}/{path}", tufa_repo::layout::TARGETS_DIR),
        &headers,
    )
    .await
}

/// The transparency log's files (`tufa_repo::tlog`): only the names the log writes, so that
/// no other path of the store is reachable here.
async fn tuf_log(
    State(index): State<Arc<Index>>,
    Path(path): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    let file = tufa_repo::tlog::LogFile::parse(&path)
        .ok_or_else(|| ApiError::not_found(format!("no transparency log file {path:?}")))?;
    let immutable = matches!(file, tufa_repo::tlog::LogFile::Tile { full: true });
    stored_file(
        &index,
        &format!("{}/{path}", tufa_repo::tlog::LOG_DIR),
        &headers,
        file.content_type(),
        immutable,
    )
    .await
}

/// How far the index has got: the newest serial, and the serial and timestamp version signed;
/// which replica publishes, since when, and this replica's role. The serials come from the
/// database, which every replica shares; what only the publisher knows (its failures, the clock,
/// files awaiting removal) is this replica's own.
async fn status(State(index): State<Arc<Index>>) -> ApiResult {
    let last_serial = index.database.last_serial().await?;
    let body = match &index.signing {
        Some(signing) => {
            let (count, projects) = index.database.unpublished(20).await?;
            let (awaiting_files, awaiting_bytes) = signing.status.awaiting_removal();
            serde_json::json!({
                "last_serial": last_serial,
                "signed_serial": index.database.signed_serial().await?,
                "timestamp_version": signing.timestamp_version(),
                "publisher": signing.lease.describe().await?,
                "signing_failure": signing.status.failure(),
                "online_key": {"kind": signing.online_key().0, "keyid": signing.online_key().1},
                "unpublished": {"count": count, "projects": projects},
                "clock_warning": signing.status.clock().as_ref().map(crate::signing::describe_clock),
                "disk": signing.status.disk(),
                "awaiting_removal": {
                    "files": awaiting_files,
                    "bytes": awaiting_bytes,
                    "counting": signing.status.finding_unreachable(),
                },
                "transparency_log": signing.status.log().map(|log| serde_json::json!({
                    "origin": log.origin,
                    "size": log.size,
                    "witnesses": log.witnesses.iter().map(|w| serde_json::json!({
                        "url": w.url,
                        "cosigned_size": w.cosigned_size,
                        "failures": w.failures,
                        "last_error": w.last_error,
                    })).collect::<Vec<_>>(),
                })),
                "cooldown": index.cooldown().map(|policy| serde_json::json!({
                    "period": crate::cooldown::format_duration(policy.period),
                    "exempt": policy.exempt,
                })),
            })
        }
        None => serde_json::json!({"last_serial": last_serial, "signed_serial": null}),
    };
    let mut body = body;
    if let Some(mirror) = &index.mirror {
        body["mirror"] = mirror_status(&index, mirror).await?;
    }
    Ok(axum::Json(body).into_response())
}

/// What `/status` says of the mirror: its settings, how many projects it mirrors, the projects
/// whose refresh fails, and the hash changes upstream made that were refused.
async fn mirror_status(
    index: &Index,
    mirror: &crate::mirror::Mirror,
) -> ApiResult<serde_json::Value> {
    let (failing, errors) = index.database.mirror_errors(20).await?;
    let (conflicts, files) = index.database.pin_conflicts(20).await?;
    Ok(serde_json::json!({
        "upstream": mirror.upstream_root(),
        "ttl_seconds": mirror.config.ttl.as_secs(),
        "private": mirror.config.private,
        "projects": index.database.mirrored_count().await?,
        "failing": {"count": failing, "projects": errors},
        "last_error": mirror.last_error(),
        "pin_conflicts": {"count": conflicts, "files": files},
        "hash_mismatches": mirror.stats.hash_mismatches.load(std::sync::atomic::Ordering::Relaxed),
    }))
}

/// Prometheus metrics: when each role expires, how far signing lags behind changes, and the
/// disk the data directory takes (from the background walk, never walked per scrape).
/// The transparency log's size and each witness's standing, named by its URL.
fn log_metrics(out: &mut String, log: &tufa_repo::LogStatus) {
    use std::fmt::Write;
    let _ = writeln!(
        out,
        "# HELP tufa_log_size Entries in the transparency log (one per timestamp signed).\n# TYPE tufa_log_size gauge\ntufa_log_size {}",
        log.size
    );
    if log.witnesses.is_empty() {
        return;
    }
    let label = |url: &str| {
        url.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
    };
    /// Name, type, help, and the value of one witness.
    type WitnessMetric = (
        &'static str,
        &'static str,
        &'static str,
        fn(&tufa_repo::WitnessStatus) -> u64,
    );
    let metrics: [WitnessMetric; 2] = [
        (
            "tufa_witness_failures_total",
            "counter",
            "Checkpoint submissions the witness did not cosign.",
            |w| w.failures,
        ),
        (
            "tufa_witness_cosigned_size",
            "gauge",
            "The size of the latest checkpoint the witness cosigned.",
            |w| w.cosigned_size.unwrap_or(0),
        ),
    ];
    for (name, kind, help, value) in metrics {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for witness in &log.witnesses {
            let _ = writeln!(
                out,
                "{name}{{witness=\"{}\"}} {}",
                label(&witness.url),
                value(witness)
            );
        }
    }
}

async fn metrics(State(index): State<Arc<Index>>) -> ApiResult {
    use std::fmt::Write;
    let last_serial = index.database.last_serial().await?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP tufa_last_serial The newest change recorded in the journal.\n# TYPE tufa_last_serial gauge\ntufa_last_serial {last_serial}"
    );
    let _ = writeln!(
        out,
        "# HELP tufa_answer_cache_bytes Rendered and compressed pages and TUF files kept in memory.\n# TYPE tufa_answer_cache_bytes gauge\ntufa_answer_cache_bytes {}\n# HELP tufa_compressions_total Answers compressed (once per version and coding while cached).\n# TYPE tufa_compressions_total counter\ntufa_compressions_total {}",
        index.answers.bytes(),
        index.answers.compressions()
    );
    if let Some(mirror) = &index.mirror {
        use std::sync::atomic::Ordering::Relaxed;
        let stats = &mirror.stats;
        let (failing, _) = index.database.mirror_errors(0).await?;
        let (conflicts, _) = index.database.pin_conflicts(0).await?;
        for (name, kind, help, value) in [
            (
                "tufa_mirror_projects",
                "gauge",
                "Projects mirrored from upstream.",
                index.database.mirrored_count().await?.max(0) as u64,
            ),
            (
                "tufa_mirror_failing_projects",
                "gauge",
                "Mirrored projects whose last refresh failed (their last page stays served).",
                failing.max(0) as u64,
            ),
            (
                "tufa_mirror_page_fetches_total",
                "counter",
                "Project pages requested from upstream.",
                stats.page_fetches.load(Relaxed),
            ),
            (
                "tufa_mirror_page_failures_total",
                "counter",
                "Upstream page requests that failed or were refused.",
                stats.page_failures.load(Relaxed),
            ),
            (
                "tufa_mirror_file_fetches_total",
                "counter",
                "Files and metadata files fetched from upstream on first download.",
                stats.file_fetches.load(Relaxed),
            ),
            (
                "tufa_mirror_hash_mismatches_total",
                "counter",
                "Files from upstream refused because their size or sha256 differed from the page (never stored).",
                stats.hash_mismatches.load(Relaxed),
            ),
            (
                "tufa_mirror_pin_conflicts_total",
                "counter",
                "Times upstream listed another sha256 for a file name already pinned (refused).",
                stats.pin_conflicts.load(Relaxed),
            ),
            (
                "tufa_mirror_pinned_conflict_files",
                "gauge",
                "File names upstream changed the content of, as recorded.",
                conflicts.max(0) as u64,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
    }
    if let Some(signing) = &index.signing {
        let signed = index.database.signed_serial().await?;
        let now_micros = crate::db::now_micros();
        let lag_seconds = index
            .database
            .oldest_unsigned()
            .await?
            .map_or(0.0, |oldest| (now_micros - oldest).max(0) as f64 / 1e6);
        let _ = writeln!(
            out,
            "# HELP tufa_signed_serial The newest change in signed TUF metadata.\n# TYPE tufa_signed_serial gauge\ntufa_signed_serial {signed}"
        );
        let lease = index.database.lease().await?;
        let _ = writeln!(
            out,
            "# HELP tufa_publisher Whether this replica holds the publisher lease (signs).\n# TYPE tufa_publisher gauge\ntufa_publisher{{replica=\"{}\"}} {}",
            signing.lease.id(),
            u8::from(signing.publishing())
        );
        if let Some(lease) = lease.filter(|lease| !lease.holder.is_empty()) {
            let _ = writeln!(
                out,
                "# HELP tufa_publisher_lease_acquired_timestamp_seconds When the replica named by holder took the publisher lease (by its clock).\n# TYPE tufa_publisher_lease_acquired_timestamp_seconds gauge\ntufa_publisher_lease_acquired_timestamp_seconds{{holder=\"{}\"}} {}\n# HELP tufa_publisher_lease_epoch How many times the publisher lease was taken.\n# TYPE tufa_publisher_lease_epoch counter\ntufa_publisher_lease_epoch {}",
                lease.holder,
                lease.acquired / 1_000_000,
                lease.epoch
            );
        }
        let _ = writeln!(
            out,
            "# HELP tufa_publisher_lag_serials Changes recorded but not yet signed.\n# TYPE tufa_publisher_lag_serials gauge\ntufa_publisher_lag_serials {}",
            last_serial - signed
        );
        let _ = writeln!(
            out,
            "# HELP tufa_publisher_lag_seconds Age of the oldest change not yet signed.\n# TYPE tufa_publisher_lag_seconds gauge\ntufa_publisher_lag_seconds {lag_seconds}"
        );
        let (unpublished, _) = index.database.unpublished(0).await?;
        let _ = writeln!(
            out,
            "# HELP tufa_unpublished_projects Projects whose page could not be published, retried with back-off.\n# TYPE tufa_unpublished_projects gauge\ntufa_unpublished_projects {unpublished}"
        );
        let (kind, keyid) = signing.online_key();
        let _ = writeln!(
            out,
            "# HELP tufa_online_key_info What holds the online key, and its key ID.\n# TYPE tufa_online_key_info gauge\ntufa_online_key_info{{kind=\"{kind}\",keyid=\"{keyid}\"}} 1"
        );
        let _ = writeln!(
            out,
            "# HELP tufa_signing_failures_total Publishing or re-signing rounds that failed.\n# TYPE tufa_signing_failures_total counter\ntufa_signing_failures_total {}",
            signing
                .status
                .failures
                .load(std::sync::atomic::Ordering::Relaxed)
        );
        let (behind, too_far) = match signing.status.clock() {
            Some(tufa_repo::ClockSkew::Behind { by, .. }) => (by.as_secs(), 0),
            Some(tufa_repo::ClockSkew::ExpiryTooFar { by, .. }) => (0, by.as_secs()),
            None => (0, 0),
        };
        let _ = writeln!(
            out,
            "# HELP tufa_clock_behind_seconds How far the clock is behind the newest signed metadata (signing pauses while above the tolerance).\n# TYPE tufa_clock_behind_seconds gauge\ntufa_clock_behind_seconds {behind}"
        );
        let _ = writeln!(
            out,
            "# HELP tufa_expiry_ahead_seconds How much later than its lifetime allows an online role expires (signed while the clock ran ahead).\n# TYPE tufa_expiry_ahead_seconds gauge\ntufa_expiry_ahead_seconds {too_far}"
        );
        let (awaiting_files, awaiting_bytes) = signing.status.awaiting_removal();
        let _ = writeln!(
            out,
            "# HELP tufa_awaiting_removal_files Files no longer published, removed once the grace period has passed.\n# TYPE tufa_awaiting_removal_files gauge\ntufa_awaiting_removal_files {awaiting_files}"
        );
        let _ = writeln!(
            out,
            "# HELP tufa_awaiting_removal_bytes Bytes of the files no longer published, removed once the grace period has passed.\n# TYPE tufa_awaiting_removal_bytes gauge\ntufa_awaiting_removal_bytes {awaiting_bytes}"
        );
        if let Some(log) = signing.status.log() {
            log_metrics(&mut out, &log);
        }
        if let Some(disk) = signing.status.disk() {
            let _ = writeln!(
                out,
                "# HELP tufa_disk_bytes Bytes in the data directory by part (tuf: metadata and pages; total: everything, the other parts included), as of tufa_disk_measured_timestamp_seconds.\n# TYPE tufa_disk_bytes gauge"
            );
            for (part, tally) in disk.parts() {
                let _ = writeln!(out, "tufa_disk_bytes{{part=\"{part}\"}} {}", tally.bytes);
            }
            let _ = writeln!(
                out,
                "# HELP tufa_disk_files Files in the data directory by part.\n# TYPE tufa_disk_files gauge"
            );
            for (part, tally) in disk.parts() {
                let _ = writeln!(out, "tufa_disk_files{{part=\"{part}\"}} {}", tally.files);
            }
            let _ = writeln!(
                out,
                "# HELP tufa_disk_measured_timestamp_seconds When the data directory was last walked.\n# TYPE tufa_disk_measured_timestamp_seconds gauge\ntufa_disk_measured_timestamp_seconds {}",
                disk.measured_at
            );
        }
        let roles = signing.role_summary().await;
        let _ = writeln!(
            out,
            "# HELP tufa_role_expires_timestamp_seconds When the role's current metadata expires (bin-*: the earliest bin role).\n# TYPE tufa_role_expires_timestamp_seconds gauge"
        );
        for (role, _, expires) in &roles {
            let _ = writeln!(
                out,
                "tufa_role_expires_timestamp_seconds{{role=\"{role}\"}} {}",
                expires.unix_timestamp()
            );
        }
        let _ = writeln!(
            out,
            "# HELP tufa_role_version The role's current version (bin-*: the lowest bin role version).\n# TYPE tufa_role_version gauge"
        );
        for (role, version, _) in &roles {
            let _ = writeln!(out, "tufa_role_version{{role=\"{role}\"}} {version}");
        }
    }
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response())
}

/// Takes up the cooldown policy another replica records, about once a second, until the process
/// ends.
async fn follow_cooldown(index: Arc<Index>) {
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        if let Err(error) = index.follow_cooldown().await {
            tracing::warn!("the cooldown policy could not be read: {error}");
        }
    }
}

/// Serves the index on `listener`, with `limits` on every connection, until `shutdown`
/// completes.
pub async fn serve(
    index: Arc<Index>,
    listener: tokio::net::TcpListener,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    tokio::spawn(crate::signing::Signing::run(Arc::clone(&index)));
    tokio::spawn(crate::mirror::sweep(Arc::clone(&index)));
    tokio::spawn(follow_cooldown(Arc::clone(&index)));
    let served =
        crate::connections::serve(listener, router(Arc::clone(&index)), limits, shutdown).await;
    if let Some(signing) = &index.signing
        && let Err(error) = signing.release().await
    {
        tracing::warn!(
            "the publisher lease could not be released (another replica takes over once it \
             expires): {error}"
        );
    }
    served
}

#[cfg(test)]
mod tests {
    use super::redact_tokens;

    #[test]
    fn tokens_in_paths_are_redacted() {
        let token = "tufa-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_abcde";
        assert_eq!(
            redact_tokens(&format!("/simple/{token}/")),
            "/simple/tufa-[redacted]/"
        );
        assert_eq!(redact_tokens("/simple/tufa-index/"), "/simple/tufa-index/");
        assert_eq!(redact_tokens("/tufa-tufa-"), "/tufa-tufa-");
    }
}
