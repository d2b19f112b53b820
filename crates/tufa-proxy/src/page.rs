//! A project's verified PEP 691 page, and the pages the proxy serves from it: the same content
//! with every file URL pointing at the proxy, as JSON or HTML.
//!
//! Only files the proxy can verify are passed on: each needs a sha256 and a size in the verified
//! page, and a plain file name. A file without them is left out (and logged), never served
//! unchecked.

use std::fmt::Write;

use serde_json::{Map, Value};
use tufa_client::encode_component;
use tufa_index::name::ProjectName;
use tufa_index::pages::{API_VERSION, escape};

/// A lowercase hex SHA-256, the only digest the proxy checks files against.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Sha256(String);

impl Sha256 {
    pub fn new(text: &str) -> Option<Self> {
        (text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| Sha256(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One file of a verified page, with what the proxy checks its bytes against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageFile {
    pub filename: String,
    pub sha256: Sha256,
    pub size: u64,
    /// The file's URL as the page gives it, resolved against the index by [`upstream_url`].
    pub url: String,
    /// The PEP 658 metadata file's sha256, when the index serves one.
    pub metadata_sha256: Option<Sha256>,
    /// PEP 740: where the index serves the file's provenance object, as the page gives it.
    pub provenance_url: Option<String>,
    /// The provenance object's sha256 under the page's `_provenance_sha256` (see
    /// `tufa_index::pages`): signed with the page, so the provenance can be neither stripped
    /// nor swapped.
    pub provenance_sha256: Option<Sha256>,
    requires_python: Option<String>,
    /// PEP 592: `Some("")` when yanked without a reason.
    yanked: Option<String>,
}

/// A project page whose bytes matched the index's TUF metadata.
#[derive(Debug)]
pub struct VerifiedPage {
    pub project: ProjectName,
    pub last_serial: Option<i64>,
    /// The SHA-256 of the signed bytes: names this version of the page.
    pub signed_sha256: String,
    /// The page as signed, for the fields the proxy passes on without knowing them.
    page: Map<String, Value>,
    pub files: Vec<PageFile>,
}

/// A file name that is one path segment: no separators, no control characters, not `.`/`..`.
fn plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\'])
        && !name.chars().any(char::is_control)
}

fn parse_file(file: &Value) -> Result<PageFile, String> {
    let filename = file["filename"]
        .as_str()
        .filter(|name| plain_file_name(name))
        .ok_or("no plain file name")?;
    let sha256 = file["hashes"]["sha256"]
        .as_str()
        .and_then(Sha256::new)
        .ok_or_else(|| format!("{filename:?} has no valid sha256"))?;
    let size = file["size"]
        .as_u64()
        .ok_or_else(|| format!("{filename:?} has no size"))?;
    let url = file["url"]
        .as_str()
        .ok_or_else(|| format!("{filename:?} has no URL"))?;
    let metadata = match file.get("core-metadata").or(file.get("dist-info-metadata")) {
        Some(Value::Object(hashes)) => Some(
            hashes
                .get("sha256")
                .and_then(Value::as_str)
                .and_then(Sha256::new)
                .ok_or_else(|| format!("{filename:?} has metadata without a valid sha256"))?,
        ),
        _ => None,
    };
    let provenance_sha256 = match file.get("_provenance_sha256") {
        None | Some(Value::Null) => None,
        Some(value) => Some(
            value
                .as_str()
                .and_then(Sha256::new)
                .ok_or_else(|| format!("{filename:?} has an invalid _provenance_sha256"))?,
        ),
    };
    let yanked = match &file["yanked"] {
        Value::String(reason) => Some(reason.clone()),
        Value::Bool(true) => Some(String::new()),
        _ => None,
    };
    Ok(PageFile {
        filename: filename.to_string(),
        sha256,
        size,
        url: url.to_string(),
        metadata_sha256: metadata,
        provenance_url: file["provenance"].as_str().map(str::to_string),
        provenance_sha256,
        requires_python: file["requires-python"].as_str().map(str::to_string),
        yanked,
    })
}

impl VerifiedPage {
    /// Reads the verified bytes of `project`'s page. A page that is not PEP 691 JSON for that
    /// project is refused: it verified, so the index signed something broken.
    pub fn parse(project: &ProjectName, bytes: &[u8]) -> Result<Self, String> {
        let page: Map<String, Value> = serde_json::from_slice(bytes)
            .map_err(|e| format!("the verified page of {project} is not PEP 691 JSON: {e}"))?;
        if page.get("name").and_then(Value::as_str) != Some(project.as_str()) {
            return Err(format!(
                "the verified page of {project} names another project: {:?}",
                page.get("name")
            ));
        }
        let mut files = Vec::new();
        for file in page
            .get("files")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            match parse_file(file) {
                Ok(file) => files.push(file),
                Err(reason) => {
                    tracing::warn!("left out of the page of {project}, as unverifiable: {reason}");
                }
            }
        }
        Ok(VerifiedPage {
            project: project.clone(),
            last_serial: page["meta"]["_last-serial"].as_i64(),
            signed_sha256: hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes)),
            page,
            files,
        })
    }

    pub fn file(&self, sha256: &str, filename: &str) -> Option<&PageFile> {
        self.files
            .iter()
            .find(|f| f.sha256.as_str() == sha256 && f.filename == filename)
    }

    /// The path the proxy serves `file` at. The project is part of it so that the proxy can
    /// look the file up in that project's verified page, even after a restart.
    pub fn proxy_path(&self, file: &PageFile) -> String {
        format!(
            "/files/{}/{}/{}",
            self.project,
            file.sha256.as_str(),
            encode_component(&file.filename)
        )
    }

    /// The path the proxy serves `file`'s verified provenance object at.
    pub fn provenance_path(&self, file: &PageFile) -> String {
        format!(
            "/provenance/{}/{}/{}",
            self.project,
            file.sha256.as_str(),
            encode_component(&file.filename)
        )
    }

    /// The PEP 691 JSON page as verified, with the proxy's file URLs and only verifiable files.
    pub fn to_json(&self) -> Vec<u8> {
        let mut page = self.page.clone();
        let files: Vec<Value> = self
            .page
            .get("files")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|value| {
                let file = parse_file(value).ok()?;
                let mut value = value.clone();
                value["url"] = Value::String(self.proxy_path(&file));
                if file.provenance_url.is_some() || file.provenance_sha256.is_some() {
                    value["provenance"] = Value::String(self.provenance_path(&file));
                }
                Some(value)
            })
            .collect();
        page.insert("files".into(), Value::Array(files));
        serde_json::to_vec(&page).unwrap_or_default()
    }

    /// The PEP 503 HTML page (with PEP 592, 658 and 714 attributes) for the same files.
    pub fn to_html(&self) -> String {
        let name = escape(self.project.as_str());
        // The signed page's version: its files carry the same fields (PEP 740's at 1.3).
        let version = escape(
            self.page
                .get("meta")
                .and_then(|meta| meta.get("api-version"))
                .and_then(Value::as_str)
                .unwrap_or(API_VERSION),
        );
        let mut out = format!(
            "<!DOCTYPE html>\n<html>\n  <head>\n    <meta name=\"pypi:repository-version\" content=\"{version}\">\n    <title>Links for {name}</title>\n  </head>\n  <body>\n    <h1>Links for {name}</h1>\n"
        );
        for file in &self.files {
            let _ = write!(
                out,
                "    <a href=\"{}#sha256={}\"",
                escape(&self.proxy_path(file)),
                file.sha256.as_str()
            );
            if let Some(requires) = &file.requires_python {
                let _ = write!(out, " data-requires-python=\"{}\"", escape(requires));
            }
            if let Some(sha) = &file.metadata_sha256 {
                let sha = sha.as_str();
                let _ = write!(
                    out,
                    " data-dist-info-metadata=\"sha256={sha}\" data-core-metadata=\"sha256={sha}\""
                );
            }
            if let Some(reason) = &file.yanked {
                let _ = write!(out, " data-yanked=\"{}\"", escape(reason));
            }
            if file.provenance_url.is_some() || file.provenance_sha256.is_some() {
                let _ = write!(
                    out,
                    " data-provenance=\"{}\"",
                    escape(&self.provenance_path(file))
                );
            }
            let _ = writeln!(out, ">{}</a><br />", escape(&file.filename));
        }
        out.push_str("  </body>\n</html>\n");
        if let Some(serial) = self.last_serial {
            let _ = writeln!(out, "<!--SERIAL {serial}-->");
        }
        out
    }
}

/// Where to download a file the page lists: an absolute URL as is, an absolute path on the
/// index's host, anything else relative to the project's simple page (PEP 503). `None` for URLs
/// the proxy does not fetch (other schemes).
pub fn upstream_url(index: &str, project: &ProjectName, url: &str) -> Option<String> {
    if url.starts_with("https://") || url.starts_with("http://") {
        return Some(url.to_string());
    }
    let (scheme, rest) = index.split_once("://")?;
    if let Some(host_relative) = url.strip_prefix("//") {
        return Some(format!("{scheme}://{host_relative}"));
    }
    if url.starts_with('/') {
        let host = rest.split('/').next().unwrap_or(rest);
        return Some(format!("{scheme}://{host}{url}"));
    }
    // A first segment with a colon is another scheme (`file:`, `ftp:`), not a relative path.
    if url
        .split('/')
        .next()
        .is_some_and(|segment| segment.contains(':'))
    {
        return None;
    }
    Some(format!(
        "{}/simple/{project}/{url}",
        index.trim_end_matches('/')
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page() -> VerifiedPage {
        let sha = "ab".repeat(32);
        let meta = "cd".repeat(32);
        let bytes = serde_json::to_vec(&serde_json::json!({
            "meta": {"api-version": "1.1", "_last-serial": 4},
            "name": "demo",
            "versions": ["1.0"],
            "files": [
                {"filename": "demo-1.0-py3-none-any.whl", "url": format!("/files/{sha}/demo-1.0-py3-none-any.whl"),
                 "hashes": {"sha256": sha}, "size": 10, "requires-python": ">=3.8",
                 "core-metadata": {"sha256": meta}, "dist-info-metadata": {"sha256": meta},
                 "yanked": "bad <build>", "upload-time": "2024-01-01T00:00:00.000000Z"},
                {"filename": "demo-1.0.tar.gz", "url": "/files/x/demo-1.0.tar.gz", "hashes": {"md5": "00"}, "size": 3},
                {"filename": "../evil.whl", "url": "/x", "hashes": {"sha256": sha}, "size": 3},
            ],
        }))
        .unwrap();
        VerifiedPage::parse(&ProjectName::new("demo").unwrap(), &bytes).unwrap()
    }

    #[test]
    fn only_verifiable_files_are_passed_on_with_proxy_urls() {
        let page = page();
        assert_eq!(page.files.len(), 1);
        assert_eq!(page.last_serial, Some(4));
        let sha = "ab".repeat(32);
        let json: Value = serde_json::from_slice(&page.to_json()).unwrap();
        let files = json["files"].as_array().unwrap();
        assert_eq!(files.len(), 1);
        assert_eq!(
            files[0]["url"],
            format!("/files/demo/{sha}/demo-1.0-py3-none-any.whl")
        );
        assert_eq!(files[0]["upload-time"], "2024-01-01T00:00:00.000000Z");
        assert_eq!(json["versions"], serde_json::json!(["1.0"]));
        let html = page.to_html();
        assert!(html.contains(&format!(
            "href=\"/files/demo/{sha}/demo-1.0-py3-none-any.whl#sha256={sha}\""
        )));
        assert!(html.contains("data-requires-python=\"&gt;=3.8\""));
        assert!(html.contains("data-yanked=\"bad &lt;build&gt;\""));
        assert!(html.contains(&format!(
            "data-core-metadata=\"sha256={}\"",
            "cd".repeat(32)
        )));
        assert!(!html.contains("evil") && !html.contains("tar.gz"));
    }

    #[test]
    fn a_page_for_another_project_is_refused() {
        let bytes = br#"{"meta": {}, "name": "other", "files": []}"#;
        assert!(VerifiedPage::parse(&ProjectName::new("demo").unwrap(), bytes).is_err());
        assert!(VerifiedPage::parse(&ProjectName::new("demo").unwrap(), b"<html>").is_err());
    }

    #[test]
    fn file_urls_resolve_against_the_index() {
        let demo = ProjectName::new("demo").unwrap();
        let index = "https://index.test:8443/mirror";
        assert_eq!(
            upstream_url(index, &demo, "/files/ab/x.whl").unwrap(),
            "https://index.test:8443/files/ab/x.whl"
        );
        assert_eq!(
            upstream_url(index, &demo, "x.whl").unwrap(),
            "https://index.test:8443/mirror/simple/demo/x.whl"
        );
        assert_eq!(
            upstream_url(index, &demo, "//cdn.test/x.whl").unwrap(),
            "https://cdn.test/x.whl"
        );
        assert_eq!(
            upstream_url(index, &demo, "http://cdn.test/x.whl").unwrap(),
            "http://cdn.test/x.whl"
        );
        assert_eq!(upstream_url(index, &demo, "file:///etc/passwd"), None);
    }
}
