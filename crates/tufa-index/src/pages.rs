//! The pages of the simple repository API (PEP 503 HTML, PEP 691 JSON with PEP 700's additions and
//! PEP 714's metadata key) and of Warehouse's JSON API.
//!
//! File URLs are absolute paths (`/files/<sha256>/<filename>`): they resolve against the index's
//! root whichever page (simple API or TUF target) and whichever host or mirror served them.

use std::collections::BTreeSet;
use std::fmt::Write;

use serde::Serialize;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::macros::format_description;

use crate::cooldown::{Filtered, Shown};
use crate::coremeta::CoreMetadata;
use crate::db::{FileRecord, Project, Release};
use crate::name::{ProjectName, Version};

pub const API_VERSION: &str = "1.1";
/// The version a page with PEP 708's `tracks` declares.
pub const TRACKS_API_VERSION: &str = "1.2";
/// The version a page with PEP 740's `provenance` declares (PyPI's, for the same key).
pub const PROVENANCE_API_VERSION: &str = "1.3";
/// The version a page with PEP 792's `project-status` declares.
pub const STATUS_API_VERSION: &str = "1.4";

/// The API version a project's page declares: the lowest that has every field it carries.
fn api_version(project: &Project, files: &[FileRecord]) -> &'static str {
    let by_project = match &project.mirror {
        None => API_VERSION,
        Some(mirror) if mirror.status.is_some() => STATUS_API_VERSION,
        Some(_) => TRACKS_API_VERSION,
    };
    // Versions are `1.<minor>` with one-digit minors, so text order is version order.
    if files.iter().any(|f| f.provenance_sha256.is_some()) {
        by_project.max(PROVENANCE_API_VERSION)
    } else {
        by_project
    }
}

/// PEP 740's `provenance` URL of a file with provenance: an absolute path, like file URLs, so
/// that the signed page names no host.
fn provenance_url(project: &Project, file: &FileRecord) -> Option<String> {
    file.provenance_sha256
        .as_ref()
        .map(|_| crate::provenance::provenance_path(&project.name, &file.version, &file.filename))
}

/// The files a page lists: none of a project upstream quarantined (PEP 792: an index must not
/// offer them), all otherwise.
fn offered<'a>(project: &Project, files: &'a [FileRecord]) -> &'a [FileRecord] {
    match &project.mirror {
        Some(mirror) if mirror.status.as_deref() == Some("quarantined") => &[],
        _ => files,
    }
}

/// Escapes text for HTML content and double-quoted attributes. Five replacements do not justify
/// a dependency.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

pub fn file_url(file: &FileRecord) -> String {
    format!("/files/{}/{}", file.sha256, file.filename)
}

/// A time as PEP 700's `upload-time` writes it (RFC 3339, UTC, microseconds).
pub fn rfc3339(micros: i64) -> String {
    let time = OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    time.format(format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    ))
    .unwrap_or_default()
}

fn upload_time_seconds(micros: i64) -> String {
    let time = OffsetDateTime::from_unix_timestamp(micros.div_euclid(1_000_000))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    time.format(format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second]"
    ))
    .unwrap_or_default()
}

/// The list of projects, each linked under `root` (`/simple/`, or `/cooldown/simple/`).
pub fn index_html(root: &str, projects: &[(ProjectName, i64)], serial: i64) -> String {
    let mut out = String::from(
        "<!DOCTYPE html>\n<html>\n  <head>\n    <meta name=\"pypi:repository-version\" content=\"1.1\">\n    <title>Simple index</title>\n  </head>\n  <body>\n",
    );
    for (name, _) in projects {
        let _ = writeln!(out, "    <a href=\"{root}{name}/\">{name}</a><br />");
    }
    let _ = write!(out, "  </body>\n</html>\n<!--SERIAL {serial}-->\n");
    out
}

pub fn index_json(projects: &[(ProjectName, i64)], serial: i64) -> Vec<u8> {
    let projects: Vec<Value> = projects
        .iter()
        .map(|(name, serial)| json!({"name": name.as_str(), "_last-serial": serial}))
        .collect();
    serde_json::to_vec(&json!({
        "meta": {"api-version": API_VERSION, "_last-serial": serial},
        "projects": projects,
    }))
    .unwrap_or_default()
}

pub fn project_html(project: &Project, files: &[FileRecord]) -> String {
    render_html(project, files, None)
}

/// The PEP 503 page of a project's cooldown view: the view's files, and its state as JSON in a
/// `tufa:cooldown` meta element (what the JSON page has under `_tufa-cooldown`).
pub fn cooldown_html(project: &Project, view: &Filtered) -> String {
    render_html(project, &view.files, Some(&view.shown))
}

fn render_html(project: &Project, files: &[FileRecord], cooldown: Option<&Shown>) -> String {
    let name = project.name.as_str();
    let mut head = String::new();
    if let Some(mirror) = &project.mirror {
        let _ = writeln!(
            head,
            "    <meta name=\"pypi:tracks\" content=\"{}\">",
            escape(&mirror.tracks)
        );
        if let Some(status) = &mirror.status {
            let _ = writeln!(
                head,
                "    <meta name=\"pypi:project-status\" content=\"{}\">",
                escape(status)
            );
        }
        if let Some(reason) = &mirror.status_reason {
            let _ = writeln!(
                head,
                "    <meta name=\"pypi:project-status-reason\" content=\"{}\">",
                escape(reason)
            );
        }
    }
    let state = cooldown
        .map(|shown| {
            let json = serde_json::to_string(shown).unwrap_or_default();
            format!(
                "    <meta name=\"tufa:cooldown\" content=\"{}\">\n",
                escape(&json)
            )
        })
        .unwrap_or_default();
    let files = offered(project, files);
    let version = api_version(project, files);
    let mut out = format!(
        "<!DOCTYPE html>\n<html>\n  <head>\n    <meta name=\"pypi:repository-version\" content=\"{version}\">\n{head}{state}    <title>Links for {name}</title>\n  </head>\n  <body>\n    <h1>Links for {name}</h1>\n"
    );
    for file in files {
        let _ = write!(
            out,
            "    <a href=\"{}#sha256={}\"",
            escape(&file_url(file)),
            file.sha256
        );
        if let Some(requires) = &file.requires_python {
            let _ = write!(out, " data-requires-python=\"{}\"", escape(requires));
        }
        if let Some(sha) = &file.metadata_sha256 {
            let _ = write!(
                out,
                " data-dist-info-metadata=\"sha256={sha}\" data-core-metadata=\"sha256={sha}\""
            );
        }
        if let Some(reason) = &file.yanked {
            let _ = write!(out, " data-yanked=\"{}\"", escape(reason));
        }
        if let Some(url) = provenance_url(project, file) {
            let _ = write!(out, " data-provenance=\"{}\"", escape(&url));
        }
        let _ = writeln!(out, ">{}</a><br />", escape(&file.filename));
    }
    let _ = write!(
        out,
        "  </body>\n</html>\n<!--SERIAL {}-->\n",
        project.last_serial
    );
    out
}

#[derive(Serialize)]
struct JsonPage<'a> {
    meta: JsonMeta,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    tracks: Option<[&'a str; 1]>,
    #[serde(rename = "project-status", skip_serializing_if = "Option::is_none")]
    project_status: Option<Value>,
    versions: Vec<&'a str>,
    files: Vec<JsonFile<'a>>,
    #[serde(rename = "_tufa-cooldown", skip_serializing_if = "Option::is_none")]
    cooldown: Option<&'a Shown>,
}

#[derive(Serialize)]
struct JsonMeta {
    #[serde(rename = "api-version")]
    api_version: &'static str,
    /// Left out of cooldown pages (see [`crate::cooldown::Shown`]).
    #[serde(rename = "_last-serial", skip_serializing_if = "Option::is_none")]
    last_serial: Option<i64>,
}

#[derive(Serialize)]
struct JsonFile<'a> {
    filename: &'a str,
    url: String,
    hashes: Map<String, Value>,
    #[serde(rename = "requires-python", skip_serializing_if = "Option::is_none")]
    requires_python: Option<&'a str>,
    #[serde(rename = "core-metadata")]
    core_metadata: Value,
    #[serde(rename = "dist-info-metadata")]
    dist_info_metadata: Value,
    yanked: Value,
    size: u64,
    #[serde(rename = "upload-time")]
    upload_time: String,
    /// PEP 740: where the Integrity API serves the file's provenance object.
    #[serde(skip_serializing_if = "Option::is_none")]
    provenance: Option<String>,
    /// The sha256 of that provenance object, under a key PEP 691 leaves to the index (a leading
    /// underscore). The JSON page is the project's TUF target, so this binds the provenance
    /// into the signed metadata: a mirror or CDN that strips the `provenance` key or serves
    /// other bytes at its URL is caught by whoever checks the digest (the proxy does), just as
    /// one that swaps the file is caught by `hashes`. PEP 740 itself puts no digest in the page.
    #[serde(rename = "_provenance_sha256", skip_serializing_if = "Option::is_none")]
    provenance_sha256: Option<&'a str>,
}

fn yanked_value(yanked: &Option<String>) -> Value {
    match yanked {
        None => Value::Bool(false),
        Some(reason) if reason.is_empty() => Value::Bool(true),
        Some(reason) => Value::String(reason.clone()),
    }
}

/// The PEP 691 JSON detail page. It is also the project's TUF target, so its bytes must depend on
/// nothing but the database: no host names, no request.
pub fn project_json(project: &Project, versions: &[Version], files: &[FileRecord]) -> Vec<u8> {
    render_json(project, versions, files, None)
}

/// The PEP 691 page of a project's cooldown view (its TUF target `cooldown/<name>/index.json`):
/// the view's files and versions, and its state under the private key `_tufa-cooldown`.
pub fn cooldown_json(project: &Project, view: &Filtered) -> Vec<u8> {
    render_json(project, &view.versions, &view.files, Some(&view.shown))
}

fn render_json(
    project: &Project,
    versions: &[Version],
    files: &[FileRecord],
    cooldown: Option<&Shown>,
) -> Vec<u8> {
    let offered = offered(project, files);
    let files = offered
        .iter()
        .map(|file| {
            let metadata = match &file.metadata_sha256 {
                Some(sha) => json!({"sha256": sha}),
                None => Value::Bool(false),
            };
            let mut hashes = Map::new();
            hashes.insert("sha256".into(), Value::String(file.sha256.clone()));
            JsonFile {
                filename: &file.filename,
                url: file_url(file),
                hashes,
                requires_python: file.requires_python.as_deref(),
                core_metadata: metadata.clone(),
                dist_info_metadata: metadata,
                yanked: yanked_value(&file.yanked),
                size: file.size,
                upload_time: rfc3339(file.upload_time_micros),
                provenance: provenance_url(project, file),
                provenance_sha256: file.provenance_sha256.as_deref(),
            }
        })
        .collect();
    let page = JsonPage {
        meta: JsonMeta {
            api_version: api_version(project, offered),
            last_serial: cooldown.is_none().then_some(project.last_serial),
        },
        name: project.name.as_str(),
        tracks: project.mirror.as_ref().map(|m| [m.tracks.as_str()]),
        project_status: project.mirror.as_ref().and_then(|m| {
            let status = m.status.as_ref()?;
            Some(match &m.status_reason {
                Some(reason) => json!({"status": status, "reason": reason}),
                None => json!({"status": status}),
            })
        }),
        versions: versions.iter().map(Version::as_str).collect(),
        files,
        cooldown,
    };
    serde_json::to_vec(&page).unwrap_or_default()
}

fn file_json(base_url: &str, file: &FileRecord) -> Value {
    json!({
        "comment_text": "",
        "digests": {"md5": file.md5, "sha256": file.sha256, "blake2b_256": file.blake2_256},
        "downloads": -1,
        "filename": file.filename,
        "has_sig": false,
        "md5_digest": file.md5,
        "packagetype": file.packagetype,
        "python_version": file.python_version,
        "requires_python": file.requires_python,
        "size": file.size,
        "upload_time": upload_time_seconds(file.upload_time_micros),
        "upload_time_iso_8601": rfc3339(file.upload_time_micros),
        "url": format!("{base_url}{}", file_url(file)),
        "yanked": file.yanked.is_some(),
        "yanked_reason": file.yanked.as_ref().filter(|r| !r.is_empty()),
    })
}

fn info_json(base_url: &str, project: &Project, release: &Release, files: &[&FileRecord]) -> Value {
    let meta = CoreMetadata::parse("release metadata", release.metadata.clone()).ok();
    let field = |name: &str| -> Value {
        meta.as_ref()
            .and_then(|m| m.get(name))
            .map_or(Value::Null, |v| Value::String(v.to_string()))
    };
    let list = |name: &str| -> Vec<String> {
        meta.as_ref()
            .map(|m| m.get_all(name).into_iter().map(str::to_string).collect())
            .unwrap_or_default()
    };
    let project_urls: Map<String, Value> = list("Project-URL")
        .iter()
        .filter_map(|entry| entry.split_once(','))
        .map(|(label, url)| {
            (
                label.trim().to_string(),
                Value::String(url.trim().to_string()),
            )
        })
        .collect();
    let requires_dist = list("Requires-Dist");
    let yanked = !files.is_empty() && files.iter().all(|f| f.yanked.is_some());
    let yanked_reason = files
        .iter()
        .find_map(|f| f.yanked.clone())
        .filter(|reason| yanked && !reason.is_empty());
    let name = project.name.as_str();
    let version = release.version.as_str();
    json!({
        "author": field("Author"),
        "author_email": field("Author-email"),
        "classifiers": list("Classifier"),
        "description": meta.as_ref().and_then(|m| m.description()),
        "description_content_type": field("Description-Content-Type"),
        "home_page": field("Home-page"),
        "keywords": field("Keywords"),
        "license": field("License"),
        "license_expression": field("License-Expression"),
        "maintainer": field("Maintainer"),
        "maintainer_email": field("Maintainer-email"),
        "name": project.display_name,
        "package_url": format!("{base_url}/project/{name}/"),
        "platform": field("Platform"),
        "project_url": format!("{base_url}/project/{name}/"),
        "project_urls": if project_urls.is_empty() { Value::Null } else { Value::Object(project_urls) },
        "provides_extra": list("Provides-Extra"),
        "release_url": format!("{base_url}/project/{name}/{version}/"),
        "requires_dist": if requires_dist.is_empty() { Value::Null } else { json!(requires_dist) },
        "requires_python": field("Requires-Python"),
        "summary": field("Summary"),
        "version": version,
        "yanked": yanked,
        "yanked_reason": yanked_reason,
    })
}

/// The release PyPI's JSON API describes in `info` when no version is asked for: the highest
/// version that is neither yanked nor a pre-release, else the highest not yanked, else the highest.
pub fn latest_release<'a>(releases: &'a [Release], files: &[FileRecord]) -> Option<&'a Release> {
    let live: BTreeSet<&str> = files
        .iter()
        .filter(|f| f.yanked.is_none())
        .map(|f| f.version.as_str())
        .collect();
    latest_of(
        releases,
        |r| &r.version,
        |r| live.contains(r.version.as_str()),
    )
}

/// [`latest_release`] over any list of releases in PEP 440 order, oldest first, given each
/// one's version and whether it has a file that is not yanked.
pub fn latest_of<R>(
    releases: &[R],
    version: impl Fn(&R) -> &Version,
    is_live: impl Fn(&R) -> bool,
) -> Option<&R> {
    releases
        .iter()
        .rev()
        .find(|r| is_live(r) && !version(r).is_prerelease())
        .or_else(|| releases.iter().rev().find(|r| is_live(r)))
        .or_else(|| releases.last())
}

/// `/pypi/<project>/json` (with `release: None`) or `/pypi/<project>/<version>/json`.
pub fn warehouse_json(
    base_url: &str,
    project: &Project,
    releases: &[Release],
    files: &[FileRecord],
    release: &Release,
    whole_project: bool,
) -> Vec<u8> {
    let of_release = |version: &Version| -> Vec<&FileRecord> {
        files
            .iter()
            .filter(|f| f.version == version.as_str())
            .collect()
    };
    let current = of_release(&release.version);
    let mut body = Map::new();
    body.insert(
        "info".into(),
        info_json(base_url, project, release, &current),
    );
    body.insert("last_serial".into(), json!(project.last_serial));
    if whole_project {
        let all: Map<String, Value> = releases
            .iter()
            .map(|r| {
                let files: Vec<Value> = of_release(&r.version)
                    .into_iter()
                    .map(|f| file_json(base_url, f))
                    .collect();
                (r.version.to_string(), Value::Array(files))
            })
            .collect();
        body.insert("releases".into(), Value::Object(all));
    }
    body.insert(
        "urls".into(),
        Value::Array(current.iter().map(|f| file_json(base_url, f)).collect()),
    );
    body.insert("vulnerabilities".into(), json!([]));
    serde_json::to_vec(&Value::Object(body)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project() -> Project {
        Project {
            id: 1,
            name: ProjectName::new("Demo").unwrap(),
            display_name: "Demo".into(),
            last_serial: 7,
            mirror: None,
        }
    }

    fn file(yanked: Option<&str>) -> FileRecord {
        FileRecord {
            filename: "demo-1.0-py3-none-any.whl".into(),
            version: "1.0".into(),
            packagetype: "bdist_wheel".into(),
            python_version: "py3".into(),
            size: 10,
            sha256: "ab".repeat(32),
            md5: "cd".repeat(16),
            blake2_256: "ef".repeat(32),
            requires_python: Some(">=3.8,<4".into()),
            metadata_sha256: Some("12".repeat(32)),
            upload_time_micros: 1_700_000_000_123_456,
            yanked: yanked.map(str::to_string),
            provenance_sha256: None,
        }
    }

    #[test]
    fn html_page_carries_every_pep_attribute_escaped() {
        let html = project_html(&project(), &[file(Some("broken <build>"))]);
        let sha = "ab".repeat(32);
        assert!(html.contains(&format!(
            "href=\"/files/{sha}/demo-1.0-py3-none-any.whl#sha256={sha}\""
        )));
        assert!(html.contains("data-requires-python=\"&gt;=3.8,&lt;4\""));
        assert!(html.contains(&format!(
            "data-core-metadata=\"sha256={}\"",
            "12".repeat(32)
        )));
        assert!(html.contains(&format!(
            "data-dist-info-metadata=\"sha256={}\"",
            "12".repeat(32)
        )));
        assert!(html.contains("data-yanked=\"broken &lt;build&gt;\""));
        assert!(html.ends_with("<!--SERIAL 7-->\n"));
    }

    #[test]
    fn json_page_follows_pep_691_700_714() {
        let version = Version::new("1.0").unwrap();
        let page: Value =
            serde_json::from_slice(&project_json(&project(), &[version], &[file(None)])).unwrap();
        assert_eq!(page["meta"]["api-version"], "1.1");
        assert_eq!(page["meta"]["_last-serial"], 7);
        assert_eq!(page["name"], "demo");
        assert_eq!(page["versions"], json!(["1.0"]));
        let file = &page["files"][0];
        assert_eq!(file["size"], 10);
        assert_eq!(file["yanked"], false);
        assert_eq!(file["upload-time"], "2023-11-14T22:13:20.123456Z");
        assert_eq!(file["core-metadata"]["sha256"], "12".repeat(32));
        assert_eq!(file["requires-python"], ">=3.8,<4");
        assert!(page.get("tracks").is_none());
    }

    #[test]
    fn attested_files_carry_their_provenance_url_and_signed_digest_at_api_1_3() {
        let version = Version::new("1.0").unwrap();
        let mut attested = file(None);
        attested.provenance_sha256 = Some("9f".repeat(32));
        let page: Value = serde_json::from_slice(&project_json(
            &project(),
            std::slice::from_ref(&version),
            &[attested.clone()],
        ))
        .unwrap();
        assert_eq!(page["meta"]["api-version"], "1.3");
        let url = "/integrity/demo/1.0/demo-1.0-py3-none-any.whl/provenance";
        assert_eq!(page["files"][0]["provenance"], url);
        assert_eq!(page["files"][0]["_provenance_sha256"], "9f".repeat(32));
        let html = project_html(&project(), &[attested.clone()]);
        assert!(html.contains(&format!("data-provenance=\"{url}\"")));
        assert!(html.contains("content=\"1.3\""));
        // A quarantined mirror (1.4) keeps its higher version.
        let mut mirrored = project();
        mirrored.mirror = Some(crate::db::MirrorInfo {
            tracks: "https://pypi.org/simple/demo/".into(),
            status: Some("archived".into()),
            status_reason: None,
        });
        let page: Value =
            serde_json::from_slice(&project_json(&mirrored, &[version], &[attested])).unwrap();
        assert_eq!(page["meta"]["api-version"], "1.4");
        let plain: Value =
            serde_json::from_slice(&project_json(&project(), &[], &[file(None)])).unwrap();
        assert!(plain["files"][0].get("provenance").is_none());
        assert!(plain["files"][0].get("_provenance_sha256").is_none());
    }

    #[test]
    fn mirrored_pages_carry_tracks_and_status_at_their_api_version() {
        let version = Version::new("1.0").unwrap();
        let mut mirrored = project();
        mirrored.mirror = Some(crate::db::MirrorInfo {
            tracks: "https://pypi.org/simple/demo/".into(),
            status: None,
            status_reason: None,
        });
        let page: Value = serde_json::from_slice(&project_json(
            &mirrored,
            std::slice::from_ref(&version),
            &[file(None)],
        ))
        .unwrap();
        assert_eq!(page["meta"]["api-version"], "1.2");
        assert_eq!(page["tracks"], json!(["https://pypi.org/simple/demo/"]));
        assert!(page.get("project-status").is_none());
        let html = project_html(&mirrored, &[file(None)]);
        assert!(
            html.contains("<meta name=\"pypi:tracks\" content=\"https://pypi.org/simple/demo/\">")
        );

        mirrored.mirror.as_mut().unwrap().status = Some("quarantined".into());
        mirrored.mirror.as_mut().unwrap().status_reason = Some("malware".into());
        let page: Value =
            serde_json::from_slice(&project_json(&mirrored, &[version], &[file(None)])).unwrap();
        assert_eq!(page["meta"]["api-version"], "1.4");
        assert_eq!(
            page["project-status"],
            json!({"status": "quarantined", "reason": "malware"})
        );
        assert_eq!(
            page["files"],
            json!([]),
            "a quarantined project offers no files"
        );
        let html = project_html(&mirrored, &[file(None)]);
        assert!(html.contains("content=\"quarantined\"") && !html.contains(".whl"));
    }
}
