//! The proxy's HTTP face: the simple API (as the index serves it: negotiation, `Vary: Accept`,
//! redirects to normalized names, compression once per signed version), and files, all verified.
//!
//! A refusal answers with an error status whose reason phrase and body carry the client's
//! error, which names the attack ("rollback attack: ..."), and is logged.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use tufa_index::encoding::{self, Answer, Freshness};
use tufa_index::name::ProjectName;
use tufa_index::negotiate::{Format, negotiate};
use tufa_index::{access_log, add_slash, reason_phrase, redirect, with_query};

use crate::Proxy;
use crate::page::upstream_url;
use crate::provenance::Refusal;
use crate::trust::PageError;
use tufa_index::verified::{Expected, StartError};

/// The answer to what failed verification: 424 Failed Dependency (the page or file depends on
/// TUF verification, which failed). Not a 5xx: pip and uv retry those, and pip then reports the
/// retries instead of the reason; a 4xx other than 401, 403 and 404 they report as it is.
const REFUSED: StatusCode = StatusCode::FAILED_DEPENDENCY;

/// PEP 658 metadata files have no size in the page; this bounds what the proxy reads of one.
const METADATA_LIMIT: u64 = 16 * 1024 * 1024;

/// An error answer: status, and the reason that goes into the status line and the body.
#[derive(Debug)]
pub struct ProxyError {
    status: StatusCode,
    reason: String,
}

impl ProxyError {
    fn new(status: StatusCode, reason: impl Into<String>) -> Self {
        ProxyError {
            status,
            reason: reason.into(),
        }
    }
}

impl From<PageError> for ProxyError {
    fn from(error: PageError) -> Self {
        match error {
            PageError::NotFound(_) => {
                ProxyError::new(StatusCode::NOT_FOUND, format!("Not Found: {error}"))
            }
            PageError::Unreachable(reason) => {
                tracing::warn!("index unreachable: {reason}");
                ProxyError::new(StatusCode::BAD_GATEWAY, reason)
            }
            PageError::Refused(reason) => {
                tracing::error!("TUF verification failed: {reason}");
                ProxyError::new(REFUSED, reason)
            }
        }
    }
}

impl From<StartError> for ProxyError {
    fn from(error: StartError) -> Self {
        match error {
            StartError::Unreachable(reason) => {
                tracing::warn!("index unreachable: {reason}");
                ProxyError::new(StatusCode::BAD_GATEWAY, reason)
            }
            StartError::Refused(reason) | StartError::Mismatch(reason) => {
                tracing::error!("download refused: {reason}");
                ProxyError::new(REFUSED, reason)
            }
        }
    }
}

impl IntoResponse for ProxyError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("{} {}\n", self.status.as_u16(), self.reason),
        )
            .into_response();
        response
            .extensions_mut()
            .insert(reason_phrase(&self.reason));
        response
    }
}

type ProxyResult = Result<Response, ProxyError>;

pub fn router(proxy: Arc<Proxy>) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/simple", get(add_slash))
        .route("/simple/", get(simple_index))
        .route("/simple/{project}", get(add_slash))
        .route("/simple/{project}/", get(simple_project))
        .route("/files/{project}/{sha256}/{filename}", get(file))
        .route("/provenance/{project}/{sha256}/{filename}", get(provenance))
        .layer(axum::middleware::from_fn(access_log))
        .with_state(proxy)
}

async fn home() -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        "<!DOCTYPE html>\n<html><head><title>Tufa proxy</title></head><body>\n\
         <h1>Tufa verifying proxy</h1>\n<p>pip and uv: <code>--index-url</code> this URL + \
         <code>/simple/</code>. Every page and file is verified with TUF.</p>\n</body></html>\n",
    )
        .into_response()
}

/// The list of projects is not a TUF target, so the proxy cannot vouch for it; installers never
/// ask for it.
async fn simple_index() -> ProxyError {
    ProxyError::new(
        StatusCode::NOT_FOUND,
        "Not Found: the project list is not signed with TUF; ask for /simple/<project>/",
    )
}

#[derive(Deserialize)]
struct FormatQuery {
    format: Option<String>,
}

async fn simple_project(
    State(proxy): State<Arc<Proxy>>,
    Path(raw): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    Query(query): Query<FormatQuery>,
) -> ProxyResult {
    let name = ProjectName::new(&raw).map_err(|_| {
        ProxyError::new(
            StatusCode::NOT_FOUND,
            format!("Not Found: no project {raw:?}"),
        )
    })?;
    if !name.is_spelled(&raw) {
        return Ok(redirect(&with_query(format!("/simple/{name}/"), &uri)));
    }
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = negotiate(accept, query.format.as_deref()).ok_or_else(|| {
        ProxyError::new(
            StatusCode::NOT_ACCEPTABLE,
            "Not Acceptable: this proxy serves application/vnd.pypi.simple.v1+json, \
             application/vnd.pypi.simple.v1+html and text/html",
        )
    })?;
    let page = proxy.page(&name).await?;
    let json = format == Format::Json;
    let key = (name, page.signed_sha256.clone(), json);
    let body = match proxy.pages.identity(&key) {
        Some(body) => body,
        None => {
            let body = if json {
                page.to_json()
            } else {
                page.to_html().into_bytes()
            };
            proxy.pages.keep(key.clone(), body)
        }
    };
    let answer = Answer {
        content_type: format.content_type(),
        freshness: Freshness::Revalidate,
        negotiated: true,
    };
    let mut response = encoding::respond(&proxy.pages, &key, &body, &headers, answer).await;
    if let Some(serial) = page.last_serial {
        response
            .headers_mut()
            .insert("x-pypi-last-serial", HeaderValue::from(serial));
    }
    Ok(response)
}

async fn file(
    State(proxy): State<Arc<Proxy>>,
    Path((raw, sha256, filename)): Path<(String, String, String)>,
) -> ProxyResult {
    let not_found =
        |what: String| ProxyError::new(StatusCode::NOT_FOUND, format!("Not Found: {what}"));
    let name = ProjectName::new(&raw).map_err(|_| not_found(format!("no project {raw:?}")))?;
    let page = proxy.page(&name).await?;
    let (dist, metadata) = match filename.strip_suffix(".metadata") {
        Some(dist) if page.file(&sha256, dist).is_some() => (dist, true),
        _ => (filename.as_str(), false),
    };
    let listed = page.file(&sha256, dist).ok_or_else(|| {
        not_found(format!(
            "no file {dist:?} with sha256 {sha256} on the verified page of {name}"
        ))
    })?;
    let url = upstream_url(&proxy.index_url, &name, &listed.url).ok_or_else(|| {
        ProxyError::new(
            StatusCode::BAD_GATEWAY,
            format!(
                "{dist:?} of {name} has a URL the proxy does not fetch: {:?}",
                listed.url
            ),
        )
    })?;
    let (expected, url) = if metadata {
        let sha256 = listed
            .metadata_sha256
            .clone()
            .ok_or_else(|| not_found(format!("{dist:?} has no metadata file")))?;
        (
            Expected {
                what: format!("the metadata of {dist} of {name}"),
                sha256: sha256.as_str().to_string(),
                page: "verified page",
                size: None,
                limit: METADATA_LIMIT,
            },
            format!("{url}.metadata"),
        )
    } else {
        (
            Expected {
                what: format!("{dist} of {name}"),
                sha256: listed.sha256.as_str().to_string(),
                page: "verified page",
                size: Some(listed.size),
                limit: listed.size,
            },
            url,
        )
    };
    if !metadata {
        proxy
            .provenance
            .check(&name, listed)
            .await
            .map_err(refusal)?;
    }
    let download = proxy.files.fetch(expected, url).await?;
    let mut response = (
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(download.body)),
    )
        .into_response();
    if let Some(size) = download.size {
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    }
    Ok(response)
}

fn refusal(refusal: Refusal) -> ProxyError {
    match refusal {
        Refusal::Unreachable(reason) => {
            tracing::warn!("index unreachable: {reason}");
            ProxyError::new(StatusCode::BAD_GATEWAY, reason)
        }
        Refusal::Refused(reason) => {
            tracing::error!("provenance check failed: {reason}");
            ProxyError::new(REFUSED, reason)
        }
    }
}

/// A file's PEP 740 provenance object, as the index serves it and checked against the digest
/// the verified page signs: the proxy's page points its `provenance` keys here.
async fn provenance(
    State(proxy): State<Arc<Proxy>>,
    Path((raw, sha256, filename)): Path<(String, String, String)>,
) -> ProxyResult {
    let not_found =
        |what: String| ProxyError::new(StatusCode::NOT_FOUND, format!("Not Found: {what}"));
    let name = ProjectName::new(&raw).map_err(|_| not_found(format!("no project {raw:?}")))?;
    let page = proxy.page(&name).await?;
    let listed = page.file(&sha256, &filename).ok_or_else(|| {
        not_found(format!(
            "no file {filename:?} with sha256 {sha256} on the verified page of {name}"
        ))
    })?;
    let bytes = proxy
        .provenance
        .served(&name, listed)
        .await
        .map_err(refusal)?
        .ok_or_else(|| not_found(format!("no provenance available for {filename}")))?;
    Ok((
        [(header::CONTENT_TYPE, tufa_index::provenance::CONTENT_TYPE)],
        bytes,
    )
        .into_response())
}

/// Serves the proxy on `listener`, with `limits` on every connection, until `shutdown`
/// completes.
pub async fn serve(
    proxy: Arc<Proxy>,
    listener: tokio::net::TcpListener,
    limits: tufa_index::connections::Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    tufa_index::connections::serve(listener, router(proxy), limits, shutdown).await
}
