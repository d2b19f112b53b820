//! Compressed answers: the content coding chosen from `Accept-Encoding`, each body compressed
//! once per version and kept in a cache bounded by bytes, a strong ETag per representation, and
//! `If-None-Match` answered with 304.
//!
//! With the 16,384 bins PEP 458 recommends, the snapshot every client fetches after any change is
//! about half a megabyte of JSON; gzip and zstd shrink it over tenfold. Pages and metadata change
//! only when a new version is signed, so compressing on each request would spend the CPU again
//! and again on the same bytes; the cache makes it once per version.

use std::hash::Hash;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Bodies shorter than this are sent as they are: compressing them saves less than a packet.
pub const MIN_COMPRESSED_LENGTH: usize = 1024;

/// Each body is compressed once per version and read many times, so gzip gets its best level;
/// zstd level 12 compresses the 16,384-bin snapshot in about 30 ms, where 19 takes ten times as
/// long for at most half the size.
const GZIP_LEVEL: u32 = 9;
const ZSTD_LEVEL: i32 = 12;

/// A content coding this server produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Encoding {
    Identity,
    Gzip,
    Zstd,
}

impl Encoding {
    /// The `Content-Encoding` value; `None` for identity, which is sent without one.
    pub fn content_coding(self) -> Option<&'static str> {
        match self {
            Encoding::Identity => None,
            Encoding::Gzip => Some("gzip"),
            Encoding::Zstd => Some("zstd"),
        }
    }

    /// Appended to the identity's ETag, so that each representation has its own strong ETag.
    fn etag_suffix(self) -> &'static str {
        match self {
            Encoding::Identity => "",
            Encoding::Gzip => ".gz",
            Encoding::Zstd => ".zst",
        }
    }
}

/// Picks the coding for a request's `Accept-Encoding` (RFC 9110, 12.5.3): the one with the
/// highest q-value, the smaller output on a tie (zstd, then gzip, then identity). `*` stands for
/// every coding the header does not name, and q=0 refuses. Without the header, or when nothing
/// is acceptable, the body goes as it is (the RFC's advice, rather than a 406).
pub fn negotiate_encoding(accept_encoding: Option<&str>) -> Encoding {
    let Some(header) = accept_encoding else {
        return Encoding::Identity;
    };
    let (mut gzip, mut zstd, mut identity, mut any) = (None, None, None, None);
    for entry in header.split(',') {
        let mut parts = entry.split(';');
        let coding = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let mut quality = 1.0f32;
        for parameter in parts {
            if let Some((key, value)) = parameter.split_once('=')
                && key.trim().eq_ignore_ascii_case("q")
            {
                quality = value.trim().parse().unwrap_or(0.0);
            }
        }
        let slot = match coding.as_str() {
            "gzip" | "x-gzip" => &mut gzip,
            "zstd" => &mut zstd,
            "identity" => &mut identity,
            "*" => &mut any,
            _ => continue,
        };
        *slot = Some(quality);
    }
    let candidates = [
        (Encoding::Zstd, zstd.or(any).unwrap_or(0.0)),
        (Encoding::Gzip, gzip.or(any).unwrap_or(0.0)),
        // Identity is acceptable unless refused by name or by `*`, but a coding the request
        // names is preferred to it.
        (
            Encoding::Identity,
            identity.or(any).unwrap_or(f32::MIN_POSITIVE),
        ),
    ];
    let mut best = (Encoding::Identity, 0.0f32);
    for (encoding, quality) in candidates {
        if quality > best.1 {
            best = (encoding, quality);
        }
    }
    best.0
}

/// A body as rendered or stored (its identity representation), with the SHA-256 the ETags of
/// all its representations are made from.
#[derive(Clone, Debug)]
pub struct Rendered {
    bytes: Bytes,
    digest: Arc<str>,
}

impl Rendered {
    pub fn new(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        let digest = hex::encode(ring::digest::digest(&ring::digest::SHA256, &bytes)).into();
        Rendered { bytes, digest }
    }

    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The lowercase hex SHA-256 of the identity bytes.
    pub fn digest(&self) -> &str {
        &self.digest
    }
}

/// What an entry costs besides its body: the key (a project name, a path), the digest and the
/// cache's own bookkeeping. A project page of one file is about 700 bytes, so with a million of
/// them cached this is a quarter of what they hold.
const ENTRY_OVERHEAD: u64 = 256;

/// Weighs cache entries by their bytes and their overhead (which also keeps every weight above
/// zero: zero-weight entries are never evicted).
#[derive(Clone, Debug)]
struct ByLength;

impl<K> quick_cache::Weighter<(K, Encoding), Rendered> for ByLength {
    fn weight(&self, _key: &(K, Encoding), value: &Rendered) -> u64 {
        value.bytes.len() as u64 + ENTRY_OVERHEAD
    }
}

/// Bodies and their compressed representations under keys of the caller's choosing, each
/// naming one version of a body (a page at a serial, a TUF file by name or digest). At most
/// `capacity` bytes are kept; past it, the least recently used go first.
pub struct Cache<K> {
    entries: quick_cache::sync::Cache<(K, Encoding), Rendered, ByLength>,
    compressions: AtomicU64,
}

impl<K: Eq + Hash> std::fmt::Debug for Cache<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("bytes", &self.entries.weight())
            .field("compressions", &self.compressions)
            .finish_non_exhaustive()
    }
}

impl<K: Eq + Hash + Clone + Send + Sync + 'static> Cache<K> {
    pub fn new(capacity: u64) -> Self {
        const TYPICAL_ENTRY: u64 = 16 * 1024;
        Cache {
            entries: quick_cache::sync::Cache::with_weighter(
                usize::try_from(capacity / TYPICAL_ENTRY).unwrap_or(usize::MAX),
                capacity,
                ByLength,
            ),
            compressions: AtomicU64::new(0),
        }
    }

    /// The identity representation of `key`, if cached.
    pub fn identity(&self, key: &K) -> Option<Rendered> {
        self.entries.get(&(key.clone(), Encoding::Identity))
    }

    /// Keeps `bytes` as the identity representation of `key`.
    pub fn keep(&self, key: K, bytes: impl Into<Bytes>) -> Rendered {
        let rendered = Rendered::new(bytes);
        self.entries
            .insert((key, Encoding::Identity), rendered.clone());
        rendered
    }

    /// `identity` (the body of `key`) compressed with `encoding`. Each is compressed once while
    /// it stays cached: concurrent requests for the same one wait for the first. `None` when
    /// compressing fails.
    async fn compressed(
        &self,
        key: &K,
        identity: &Rendered,
        encoding: Encoding,
    ) -> Option<Rendered> {
        let compress = async {
            let bytes = identity.bytes.clone();
            let compressed = tokio::task::spawn_blocking(move || compress(encoding, &bytes))
                .await
                .map_err(std::io::Error::other)
                .and_then(|result| result)
                .inspect_err(|e| tracing::warn!("compressing an answer with {encoding:?}: {e}"))?;
            self.compressions.fetch_add(1, Ordering::Relaxed);
            Ok::<_, std::io::Error>(Rendered {
                bytes: compressed.into(),
                digest: Arc::clone(&identity.digest),
            })
        };
        self.entries
            .get_or_insert_async(&(key.clone(), encoding), compress)
            .await
            .ok()
    }

    /// How many bodies have been compressed since start.
    pub fn compressions(&self) -> u64 {
        self.compressions.load(Ordering::Relaxed)
    }

    /// The bytes held now.
    pub fn bytes(&self) -> u64 {
        self.entries.weight()
    }
}

fn compress(encoding: Encoding, bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    match encoding {
        Encoding::Identity => Ok(bytes.to_vec()),
        Encoding::Gzip => {
            let mut encoder = flate2::write::GzEncoder::new(
                Vec::with_capacity(bytes.len() / 4),
                flate2::Compression::new(GZIP_LEVEL),
            );
            encoder.write_all(bytes)?;
            encoder.finish()
        }
        Encoding::Zstd => zstd::bulk::compress(bytes, ZSTD_LEVEL),
    }
}

/// How long clients and shared caches may reuse an answer without asking again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freshness {
    /// Named by version or hash: never changes.
    Immutable,
    /// May change at any moment (pages, `timestamp.json`): revalidated on every use, which the
    /// ETag makes a 304 when nothing changed.
    Revalidate,
}

impl Freshness {
    fn cache_control(self) -> &'static str {
        match self {
            Freshness::Immutable => "public, max-age=31536000, immutable",
            Freshness::Revalidate => "no-cache",
        }
    }
}

/// What an answer is, besides its body.
#[derive(Clone, Copy, Debug)]
pub struct Answer {
    pub content_type: &'static str,
    pub freshness: Freshness,
    /// The body also depends on `Accept` (the simple API's negotiated pages).
    pub negotiated: bool,
}

/// All values of a request header, joined as one list.
fn header_list(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    let values: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!values.is_empty()).then(|| values.join(","))
}

/// Whether `If-None-Match` names `etag` (weak comparison, as RFC 9110 asks for this header).
fn none_match(if_none_match: &str, etag: &str) -> bool {
    if_none_match.split(',').map(str::trim).any(|candidate| {
        candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate) == etag
    })
}

/// The answer to a GET of `identity` (the body of `key`) for a request with `headers`: in the
/// coding the request prefers, compressed at most once per `key`, or 304 when the request's
/// `If-None-Match` names the chosen representation's ETag.
pub async fn respond<K: Eq + Hash + Clone + Send + Sync + 'static>(
    cache: &Cache<K>,
    key: &K,
    identity: &Rendered,
    headers: &HeaderMap,
    answer: Answer,
) -> Response {
    let wanted = if identity.bytes.len() < MIN_COMPRESSED_LENGTH {
        Encoding::Identity
    } else {
        negotiate_encoding(header_list(headers, header::ACCEPT_ENCODING).as_deref())
    };
    let (encoding, representation) = match wanted {
        Encoding::Identity => (Encoding::Identity, identity.clone()),
        encoding => match cache.compressed(key, identity, encoding).await {
            Some(compressed) if compressed.bytes.len() < identity.bytes.len() => {
                (encoding, compressed)
            }
            _ => (Encoding::Identity, identity.clone()),
        },
    };
    let etag = format!("\"{}{}\"", identity.digest, encoding.etag_suffix());
    let mut response = match header_list(headers, header::IF_NONE_MATCH) {
        Some(list) if none_match(&list, &etag) => StatusCode::NOT_MODIFIED.into_response(),
        _ => {
            let mut response = Body::from(representation.bytes).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(answer.content_type),
            );
            if let Some(coding) = encoding.content_coding() {
                response
                    .headers_mut()
                    .insert(header::CONTENT_ENCODING, HeaderValue::from_static(coding));
            }
            response
        }
    };
    let out = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&etag) {
        out.insert(header::ETAG, value);
    }
    out.insert(
        header::VARY,
        HeaderValue::from_static(if answer.negotiated {
            "Accept, Accept-Encoding"
        } else {
            "Accept-Encoding"
        }),
    );
    out.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(answer.freshness.cache_control()),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_follows_q_values_and_refusals() {
        let pick = |header| negotiate_encoding(Some(header));
        assert_eq!(negotiate_encoding(None), Encoding::Identity);
        assert_eq!(pick(""), Encoding::Identity);
        // pip (urllib3), requests with zstandard installed, uv.
        assert_eq!(pick("gzip, deflate"), Encoding::Gzip);
        assert_eq!(pick("gzip, deflate, br, zstd"), Encoding::Zstd);
        assert_eq!(pick("gzip, br"), Encoding::Gzip);
        assert_eq!(pick("zstd;q=0.5, gzip"), Encoding::Gzip);
        assert_eq!(pick("zstd;q=0, gzip;q=0.1"), Encoding::Gzip);
        assert_eq!(pick("x-gzip"), Encoding::Gzip);
        assert_eq!(pick("GZIP;Q=1.0"), Encoding::Gzip);
        assert_eq!(pick("*"), Encoding::Zstd);
        assert_eq!(pick("*;q=0.5, identity"), Encoding::Identity);
        assert_eq!(pick("gzip;q=0, *"), Encoding::Zstd);
        assert_eq!(pick("gzip;q=0, zstd;q=0"), Encoding::Identity);
        assert_eq!(pick("br, deflate"), Encoding::Identity);
        assert_eq!(pick("identity;q=0, gzip;q=0.2"), Encoding::Gzip);
        // Nothing acceptable at all: sent as it is rather than refused.
        assert_eq!(pick("*;q=0"), Encoding::Identity);
        assert_eq!(pick("gzip;q=nonsense"), Encoding::Identity);
    }

    #[test]
    fn if_none_match_compares_weakly_and_per_representation() {
        assert!(none_match("\"abc.gz\"", "\"abc.gz\""));
        assert!(none_match("W/\"abc.gz\"", "\"abc.gz\""));
        assert!(none_match("\"x\", \"abc\"", "\"abc\""));
        assert!(none_match("*", "\"abc\""));
        assert!(!none_match("\"abc\"", "\"abc.gz\""));
        assert!(!none_match("\"abc.zst\"", "\"abc.gz\""));
    }

    fn page() -> Vec<u8> {
        (0..2000)
            .map(|i| format!("<a href=\"/files/{i:064x}/demo-{i}.whl\">demo-{i}.whl</a>\n"))
            .collect::<String>()
            .into_bytes()
    }

    fn decode(encoding: &str, body: &[u8]) -> Vec<u8> {
        use std::io::Read;
        let mut out = Vec::new();
        match encoding {
            "gzip" => {
                flate2::read::GzDecoder::new(body)
                    .read_to_end(&mut out)
                    .unwrap();
            }
            "zstd" => out = zstd::decode_all(body).unwrap(),
            other => panic!("unexpected coding {other}"),
        }
        out
    }

    async fn get(
        cache: &Cache<&'static str>,
        identity: &Rendered,
        headers: &[(header::HeaderName, &str)],
    ) -> (Response, Vec<u8>) {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        let answer = Answer {
            content_type: "text/html",
            freshness: Freshness::Revalidate,
            negotiated: true,
        };
        let response = respond(cache, &"page", identity, &map, answer).await;
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        (Response::from_parts(parts, Body::empty()), bytes.to_vec())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_same_page_is_compressed_once_per_coding() {
        let cache = Arc::new(Cache::new(64 * 1024 * 1024));
        let page = page();
        let identity = cache.keep("page", page.clone());
        // Eight requests at once: the later ones wait for the first one's compression.
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (cache, identity) = (Arc::clone(&cache), identity.clone());
                tokio::spawn(async move {
                    get(&cache, &identity, &[(header::ACCEPT_ENCODING, "gzip")]).await
                })
            })
            .collect();
        for task in tasks {
            let (response, body) = task.await.unwrap();
            assert_eq!(response.headers()[header::CONTENT_ENCODING], "gzip");
            assert_eq!(decode("gzip", &body), page);
        }
        assert_eq!(
            cache.compressions(),
            1,
            "eight gzip answers, one compression"
        );
        let (response, body) = get(&cache, &identity, &[(header::ACCEPT_ENCODING, "zstd")]).await;
        assert_eq!(response.headers()[header::CONTENT_ENCODING], "zstd");
        assert_eq!(decode("zstd", &body), page);
        get(
            &cache,
            &identity,
            &[(header::ACCEPT_ENCODING, "zstd, gzip")],
        )
        .await;
        get(&cache, &identity, &[(header::ACCEPT_ENCODING, "gzip")]).await;
        assert_eq!(cache.compressions(), 2, "one compression per coding");
    }

    #[tokio::test]
    async fn headers_etags_and_not_modified_per_representation() {
        let cache = Cache::new(64 * 1024 * 1024);
        let identity = cache.keep("page", page());
        let (plain, body) = get(&cache, &identity, &[]).await;
        assert_eq!(body, page());
        assert!(plain.headers().get(header::CONTENT_ENCODING).is_none());
        assert_eq!(plain.headers()[header::VARY], "Accept, Accept-Encoding");
        assert_eq!(plain.headers()[header::CACHE_CONTROL], "no-cache");
        let (gzip, _) = get(&cache, &identity, &[(header::ACCEPT_ENCODING, "gzip")]).await;
        let (zstd, _) = get(&cache, &identity, &[(header::ACCEPT_ENCODING, "zstd")]).await;
        let etags: Vec<String> = [&plain, &gzip, &zstd]
            .iter()
            .map(|r| r.headers()[header::ETAG].to_str().unwrap().to_string())
            .collect();
        assert_eq!(etags[0], format!("\"{}\"", identity.digest()));
        assert!(etags[1] != etags[0] && etags[2] != etags[0] && etags[1] != etags[2]);
        let (again, body) = get(
            &cache,
            &identity,
            &[
                (header::ACCEPT_ENCODING, "gzip"),
                (header::IF_NONE_MATCH, &etags[1]),
            ],
        )
        .await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        assert!(body.is_empty());
        assert_eq!(again.headers()[header::ETAG], etags[1].as_str());
        // The gzip ETag does not stand for the identity representation.
        let (plain_again, body) =
            get(&cache, &identity, &[(header::IF_NONE_MATCH, &etags[1])]).await;
        assert_eq!(plain_again.status(), StatusCode::OK);
        assert_eq!(body, page());
    }

    #[tokio::test]
    async fn tiny_bodies_go_as_they_are() {
        let cache = Cache::new(1024 * 1024);
        let identity = cache.keep("page", b"{\"signed\": {}}".to_vec());
        let (response, body) = get(&cache, &identity, &[(header::ACCEPT_ENCODING, "gzip")]).await;
        assert!(response.headers().get(header::CONTENT_ENCODING).is_none());
        assert_eq!(body, b"{\"signed\": {}}");
        assert_eq!(cache.compressions(), 0);
    }

    #[test]
    fn the_cache_is_bounded_by_bytes() {
        let cache: Cache<u32> = Cache::new(1024 * 1024);
        for i in 0..100 {
            cache.keep(i, vec![b'x'; 64 * 1024]);
        }
        assert!(cache.bytes() <= 1024 * 1024, "{} bytes kept", cache.bytes());
        assert!(cache.identity(&99).is_some());
    }
}
