//! The pages for people (`/`, `/search/`, `/project/<name>/`, `/trust/`): what the database and
//! the TUF store hold, read here and rendered by `tufa_web`. The simple and JSON APIs are not
//! touched by any of this.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tufa_metadata::{Metadata, Root, Snapshot, Targets, Timestamp};
use tufa_repo::Store;
use tufa_web::view;

use crate::Index;
use crate::db::{FileRecord, ReleaseLine};
use crate::error::Error;
use crate::name::{ProjectName, Version};
use crate::server::{ApiError, ApiResult, base_url, redirect, with_query};

/// The longest search query taken; the rest is ignored.
const MAX_QUERY_CHARS: usize = 200;
/// Root versions looked for at most (each a read of the store): far more than any repository
/// rotates its root.
const MAX_ROOT_VERSIONS: u64 = 1_000;

fn pages() -> &'static tufa_web::Pages {
    static PAGES: OnceLock<tufa_web::Pages> = OnceLock::new();
    PAGES.get_or_init(tufa_web::Pages::new)
}

/// A rendered page with the headers every page carries. Never cached: each shows the state now.
fn html(rendered: Result<String, tufa_web::RenderError>) -> ApiResult {
    let body = rendered.map_err(|e| Error::Config(e.to_string()))?;
    let mut response = (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response();
    secure(response.headers_mut());
    Ok(response)
}

fn secure(headers: &mut HeaderMap) {
    for (name, value) in tufa_web::SECURITY_HEADERS {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
}

pub async fn stylesheet() -> Response {
    let mut response = (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        tufa_web::STYLESHEET,
    )
        .into_response();
    secure(response.headers_mut());
    response
}

pub async fn home(State(index): State<Arc<Index>>, headers: HeaderMap) -> ApiResult {
    let (projects, files) = index.database.counts().await?;
    let recent = index
        .database
        .recent_files(tufa_web::RECENT_UPLOADS)
        .await?
        .into_iter()
        .map(|file| view::Recent {
            name: file.project,
            display_name: file.display_name,
            version: file.version,
            filename: file.filename,
            uploaded: file.upload_time_micros,
        })
        .collect();
    let trust = match &index.signing {
        Some(signing) => {
            let store = signing.store();
            let timestamp = blocking(move || read_timestamp(store.as_ref())).await?;
            let lag = index.database.last_serial().await? - index.database.signed_serial().await?;
            timestamp.map(|timestamp| view::TrustLine {
                timestamp_version: timestamp.signed.version,
                timestamp_expires: micros(timestamp.signed.expires.unix_timestamp()),
                lag_serials: lag,
            })
        }
        None => None,
    };
    let home = view::Home {
        projects,
        files,
        recent,
        trust,
        base_url: base_url(&index, &headers),
    };
    html(pages().home(&home, crate::db::now_micros()))
}

#[derive(Deserialize)]
pub struct SearchQuery {
    q: Option<String>,
    page: Option<String>,
}

pub async fn search(
    State(index): State<Arc<Index>>,
    Query(query): Query<SearchQuery>,
) -> ApiResult {
    let text: String = query
        .q
        .unwrap_or_default()
        .trim()
        .chars()
        .take(MAX_QUERY_CHARS)
        .collect();
    let page = query
        .page
        .and_then(|p| p.parse::<i64>().ok())
        .unwrap_or(1)
        .clamp(1, i64::from(u32::MAX));
    let per_page = tufa_web::RESULTS_PER_PAGE;
    let (total, found) = index
        .database
        .search_projects(&text, (page - 1).saturating_mul(per_page), per_page)
        .await?;
    let search = view::Search {
        query: text,
        hits: found
            .into_iter()
            .map(|found| view::Hit {
                name: found.name,
                display_name: found.display_name,
                summary: found.summary,
            })
            .collect(),
        total,
        page,
        per_page,
    };
    html(pages().search(&search))
}

pub async fn project(
    State(index): State<Arc<Index>>,
    Path(raw): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> ApiResult {
    project_release(&index, &raw, None, &uri, &headers).await
}

pub async fn release(
    State(index): State<Arc<Index>>,
    Path((raw, version)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> ApiResult {
    project_release(&index, &raw, Some(&version), &uri, &headers).await
}

async fn project_release(
    index: &Index,
    raw: &str,
    version: Option<&str>,
    uri: &Uri,
    headers: &HeaderMap,
) -> ApiResult {
    let name =
        ProjectName::new(raw).map_err(|_| ApiError::not_found(format!("no project {raw:?}")))?;
    if !name.is_spelled(raw) {
        let path = match version {
            Some(version) => format!("/project/{name}/{version}/"),
            None => format!("/project/{name}/"),
        };
        return Ok(redirect(&with_query(path, uri)));
    }
    let project = index
        .database
        .project(&name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no project {name:?} on this index")))?;
    let releases = index.database.release_lines(project.id).await?;
    let latest = crate::pages::latest_of(&releases, |r| &r.version, ReleaseLine::is_live);
    let shown = match version {
        Some(raw) => {
            let wanted = Version::new(raw)
                .map_err(|_| ApiError::not_found(format!("no release {raw:?}")))?;
            releases.iter().find(|r| r.version == wanted)
        }
        None => latest,
    }
    .ok_or_else(|| ApiError::not_found(format!("no such release of {name:?}")))?;
    let release = index
        .database
        .shown_release(project.id, &shown.version)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no such release of {name:?}")))?;
    let cooldown = cooldown_states(index, &name, &shown.version, &release.files).await?;
    let metadata = crate::coremeta::CoreMetadata::parse("METADATA", release.metadata).ok();
    let field = |name: &str| {
        metadata
            .as_ref()
            .and_then(|m| m.get(name))
            .filter(|value| !value.trim().is_empty())
            .map(str::to_string)
    };
    let shown_files: Vec<view::FileRow> = release
        .files
        .iter()
        .map(|file| view::FileRow {
            filename: file.filename.clone(),
            url: crate::pages::file_url(file),
            packagetype: file.packagetype.clone(),
            size: file.size,
            sha256: file.sha256.clone(),
            uploaded: file.upload_time_micros,
            requires_python: file.requires_python.clone(),
            yanked: file.yanked.clone(),
            publisher: release.publishers.get(&file.filename).map(|publisher| {
                serde_json::from_str::<tufa_provenance::Publisher>(publisher)
                    .map(|p| p.to_string())
                    .unwrap_or_else(|_| publisher.clone())
            }),
            cooldown: cooldown.as_ref().map(|states| states.of(file)),
        })
        .collect();
    let page = view::Project {
        name: name.to_string(),
        display_name: project.display_name.clone(),
        version: shown.version.to_string(),
        latest: latest.is_some_and(|latest| latest.version == shown.version),
        summary: field("Summary"),
        description: metadata.as_ref().and_then(|m| {
            m.description()
                .map(|text| (text.to_string(), field("Description-Content-Type")))
        }),
        requires_python: field("Requires-Python"),
        license: field("License-Expression").or_else(|| field("License")),
        author: field("Author").or_else(|| field("Author-email")),
        urls: links(metadata.as_ref()),
        releases: releases
            .iter()
            .rev()
            .map(|release| view::ReleaseRow {
                version: release.version.to_string(),
                uploaded: release.first_upload_micros.unwrap_or_default(),
                yanked: release.yanked(),
                files: usize::try_from(release.files).unwrap_or_default(),
            })
            .collect(),
        files: shown_files,
        origin: match &project.mirror {
            Some(mirror) => view::Origin::Mirrored {
                upstream: mirror.tracks.clone(),
                status: mirror.status.clone(),
                reason: mirror.status_reason.clone(),
            },
            None => view::Origin::Private,
        },
        cooldown: index
            .cooldown()
            .map(|policy| crate::cooldown::format_duration(policy.period)),
        base_url: base_url(index, headers),
    };
    html(pages().project(&page, crate::db::now_micros()))
}

/// `Home-page`, `Download-URL` and every `Project-URL` (`Label, URL`) of the release.
fn links(metadata: Option<&crate::coremeta::CoreMetadata>) -> Vec<view::Link> {
    let Some(metadata) = metadata else {
        return Vec::new();
    };
    let mut links = Vec::new();
    for (field, label) in [("Home-page", "Homepage"), ("Download-URL", "Download")] {
        if let Some(url) = metadata.get(field).filter(|url| !url.trim().is_empty()) {
            links.push((label.to_string(), url.trim().to_string()));
        }
    }
    for entry in metadata.get_all("Project-URL") {
        let (label, url) = entry.split_once(',').unwrap_or(("Link", entry));
        links.push((label.trim().to_string(), url.trim().to_string()));
    }
    links
        .into_iter()
        .map(|(label, url)| view::Link {
            web: tufa_web::markup::is_web_url(&url),
            label,
            url,
        })
        .collect()
}

/// Which files of a project the cooldown view holds, when the index publishes one.
struct CooldownStates {
    shown: std::collections::BTreeSet<String>,
    denied: BTreeMap<String, String>,
    period_micros: i64,
}

impl CooldownStates {
    fn of(&self, file: &FileRecord) -> view::Cooldown {
        if self.shown.contains(&file.filename) {
            view::Cooldown::Shown
        } else if let Some(reason) = self.denied.get(&file.version) {
            view::Cooldown::Denied {
                reason: reason.clone(),
            }
        } else {
            view::Cooldown::Waiting {
                until: file.upload_time_micros.saturating_add(self.period_micros),
            }
        }
    }
}

/// Where each of `files`, the files of release `version` of `name`, stands in the cooldown
/// view, when the index publishes one. The view decides file by file, so the files of one
/// release are enough.
async fn cooldown_states(
    index: &Index,
    name: &ProjectName,
    version: &Version,
    files: &[FileRecord],
) -> ApiResult<Option<CooldownStates>> {
    let Some(policy) = index.cooldown() else {
        return Ok(None);
    };
    let (overrides, swept_micros) = index.database.cooldown_decisions(name).await?;
    let filtered = crate::cooldown::filter(
        &policy,
        name,
        std::slice::from_ref(version),
        files,
        &overrides,
        swept_micros,
    );
    Ok(Some(CooldownStates {
        shown: filtered.files.into_iter().map(|f| f.filename).collect(),
        denied: filtered
            .shown
            .denied
            .into_iter()
            .map(|d| (d.version, d.reason))
            .collect(),
        period_micros: policy.period_micros(),
    }))
}

pub async fn trust(State(index): State<Arc<Index>>) -> ApiResult {
    let now = crate::db::now_micros();
    let last_serial = index.database.last_serial().await?;
    let Some(signing) = &index.signing else {
        let page = view::Trust {
            roles: Vec::new(),
            bins: None,
            last_serial,
            signed_serial: last_serial,
            oldest_unsigned: None,
            timestamp: None,
            root: None,
            log: None,
            failure: None,
            signings: Vec::new(),
        };
        return html(pages().trust(&page, now));
    };
    let store = signing.store();
    let mut state = blocking(move || read_repository(store.as_ref())).await?;
    // The bin roles' earliest expiry takes reading every one of them: known only to the
    // replica that publishes, which holds them.
    let bin_roles = format!("{}-*", tufa_repo::layout::BIN_PREFIX);
    if let Some(role) = state.roles.iter_mut().find(|role| role.name == bin_roles) {
        role.expires = signing
            .role_summary()
            .await
            .into_iter()
            .find(|(name, _, _)| *name == bin_roles)
            .map(|(_, _, expires)| micros(expires.unix_timestamp()));
    }
    let signings = index
        .database
        .signings_since(now - tufa_web::chart::MINUTES * 60_000_000)
        .await?
        .into_iter()
        .map(|round| view::Signing {
            signed: round.signed_micros,
            oldest_change: round.oldest_change_micros,
            changes: round.changes,
        })
        .collect();
    let page = view::Trust {
        roles: state.roles,
        bins: state.bins,
        last_serial,
        signed_serial: index.database.signed_serial().await?,
        oldest_unsigned: index.database.oldest_unsigned().await?,
        timestamp: state.timestamp,
        root: state.root,
        log: state.log,
        failure: signing.status.failure(),
        signings,
    };
    html(pages().trust(&page, now))
}

/// Runs a read of the TUF store off the async threads (a bucket answers over the network).
async fn blocking<T: Send + 'static>(
    read: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> ApiResult<T> {
    Ok(tokio::task::spawn_blocking(read)
        .await
        .map_err(|e| Error::Config(format!("the storage reader failed: {e}")))??)
}

fn micros(unix_seconds: i64) -> i64 {
    unix_seconds.saturating_mul(1_000_000)
}

/// The repository as the store holds it, read to be shown: not verified (a page shows numbers
/// and keys; clients verify), and anything missing or unreadable is left out.
struct RepositoryState {
    roles: Vec<view::Role>,
    bins: Option<view::Bins>,
    timestamp: Option<view::TimestampState>,
    root: Option<view::RootDownload>,
    log: Option<view::LogState>,
}

fn read_timestamp(store: &dyn Store) -> Result<Option<Metadata<Timestamp>>, Error> {
    let file = tufa_repo::layout::metadata_file(&tufa_metadata::RoleName::timestamp(), 0);
    Ok(store
        .read(&file)?
        .and_then(|bytes| Metadata::<Timestamp>::from_bytes(&bytes).ok()))
}

/// A role's file as the store holds it, and parsed.
type Stored<T> = (Vec<u8>, Metadata<T>);

fn read_role<T: tufa_metadata::Role>(
    store: &dyn Store,
    role: &str,
    version: u64,
) -> Result<Option<Stored<T>>, Error> {
    let Ok(name) = tufa_metadata::RoleName::new(role) else {
        return Ok(None);
    };
    let file = tufa_repo::layout::metadata_file(&name, version);
    Ok(store.read(&file)?.and_then(|bytes| {
        let metadata = Metadata::<T>::from_bytes(&bytes).ok()?;
        Some((bytes, metadata))
    }))
}

fn read_repository(store: &dyn Store) -> Result<RepositoryState, Error> {
    // The newest root: versions count up from 1, each named by its version.
    let mut root = None;
    for version in 1..=MAX_ROOT_VERSIONS {
        match read_role::<Root>(store, "root", version)? {
            Some(found) => root = Some((version, found)),
            None => break,
        }
    }
    let timestamp = read_timestamp(store)?;
    let timestamp_file = tufa_repo::layout::metadata_file(&tufa_metadata::RoleName::timestamp(), 0);
    let signed = store
        .modified(&timestamp_file)?
        .and_then(|time| time.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|since| i64::try_from(since.as_micros()).unwrap_or(i64::MAX));
    let snapshot = match &timestamp {
        Some(timestamp) => {
            read_role::<Snapshot>(store, "snapshot", timestamp.signed.snapshot_meta.version)?
                .map(|(_, snapshot)| snapshot)
        }
        None => None,
    };
    let meta_version = |role: &str| {
        snapshot
            .as_ref()
            .and_then(|s| s.signed.meta.get(&format!("{role}.json")))
            .map(|meta| meta.version)
    };
    let targets = match meta_version("targets") {
        Some(version) => read_role::<Targets>(store, "targets", version)?.map(|(_, t)| t),
        None => None,
    };
    let bins_role = tufa_repo::layout::BINS_ROLE;
    let bins = match meta_version(bins_role) {
        Some(version) => read_role::<Targets>(store, bins_role, version)?.map(|(_, t)| t),
        None => None,
    };

    let mut roles = Vec::new();
    let mut root_download = None;
    if let Some((version, (bytes, root))) = &root {
        let keys = |role: &str| -> (u32, Vec<view::KeyInfo>) {
            root.signed
                .roles
                .get(role)
                .map(|role_keys| {
                    (
                        role_keys.threshold.get(),
                        key_infos(&role_keys.keyids, &root.signed.keys),
                    )
                })
                .unwrap_or_default()
        };
        let top_level = [
            Some(("root", root.signed.version, root.signed.expires, false)),
            targets
                .as_ref()
                .map(|t| ("targets", t.signed.version, t.signed.expires, false)),
            snapshot
                .as_ref()
                .map(|s| ("snapshot", s.signed.version, s.signed.expires, true)),
            timestamp
                .as_ref()
                .map(|t| ("timestamp", t.signed.version, t.signed.expires, true)),
        ];
        for (name, version, expires, online) in top_level.into_iter().flatten() {
            let (threshold, keys) = keys(name);
            roles.push(view::Role {
                name: name.to_string(),
                version,
                expires: Some(micros(expires.unix_timestamp())),
                threshold,
                keys,
                online,
            });
        }
        root_download = Some(view::RootDownload {
            url: format!(
                "/tuf/{}",
                tufa_repo::layout::metadata_file(&tufa_metadata::RoleName::root(), *version)
            ),
            version: *version,
            sha256: hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes)),
        });
    }
    let mut bins_view = None;
    if let (Some(targets), Some(bins)) = (&targets, &bins)
        && let Some(delegations) = &targets.signed.delegations
        && let Ok(bins_name) = tufa_metadata::RoleName::new(bins_role)
        && let Some((keyids, threshold)) = delegations.role_keys(&bins_name)
    {
        roles.push(view::Role {
            name: bins_role.to_string(),
            version: bins.signed.version,
            expires: Some(micros(bins.signed.expires.unix_timestamp())),
            threshold: threshold.get(),
            keys: key_infos(keyids, &delegations.keys),
            online: false,
        });
        if let Some(bin_delegations) = &bins.signed.delegations
            && let tufa_metadata::DelegatedRoles::Succinct(succinct) = &bin_delegations.roles
        {
            let versions: Vec<u64> = snapshot
                .iter()
                .flat_map(|s| s.signed.meta.iter())
                .filter(|(file, _)| file.starts_with(&format!("{}-", succinct.name_prefix)))
                .map(|(_, meta)| meta.version)
                .collect();
            roles.push(view::Role {
                name: format!("{}-*", succinct.name_prefix),
                version: versions.iter().copied().max().unwrap_or_default(),
                expires: None,
                threshold: succinct.threshold.get(),
                keys: key_infos(&succinct.keyids, &bin_delegations.keys),
                online: true,
            });
            bins_view = Some(view::Bins {
                count: succinct.bin_count(),
                prefix: succinct.name_prefix.clone(),
                lowest_version: versions.iter().copied().min().unwrap_or_default(),
                highest_version: versions.iter().copied().max().unwrap_or_default(),
            });
        }
    }
    Ok(RepositoryState {
        roles,
        bins: bins_view,
        timestamp: timestamp.map(|timestamp| view::TimestampState {
            version: timestamp.signed.version,
            expires: micros(timestamp.signed.expires.unix_timestamp()),
            signed,
            snapshot_version: timestamp.signed.snapshot_meta.version,
        }),
        root: root_download,
        log: store
            .read("log/checkpoint")?
            .and_then(|bytes| checkpoint(&String::from_utf8_lossy(&bytes))),
    })
}

fn key_infos(
    keyids: &[tufa_metadata::KeyId],
    keys: &BTreeMap<tufa_metadata::KeyId, tufa_metadata::Key>,
) -> Vec<view::KeyInfo> {
    keyids
        .iter()
        .map(|id| {
            let key = keys.get(id);
            view::KeyInfo {
                id: id.as_str().to_string(),
                keytype: key.map(|k| k.keytype.clone()).unwrap_or_default(),
                scheme: key.map(|k| k.scheme.clone()).unwrap_or_default(),
            }
        })
        .collect()
}

/// A C2SP checkpoint (signed note): origin, size and root hash, then after a blank line one
/// `— name signature` line per signer. The log's own signature comes first, then witnesses.
fn checkpoint(note: &str) -> Option<view::LogState> {
    let (body, signatures) = note.split_once("\n\n")?;
    let mut lines = body.lines();
    let origin = lines.next()?.to_string();
    let size = lines.next()?.parse().ok()?;
    let root_hash = lines.next()?.to_string();
    let mut signers: Vec<String> = signatures
        .lines()
        .filter_map(|line| line.strip_prefix("\u{2014} "))
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_string)
        .collect();
    signers.dedup();
    signers.sort_by_key(|signer| *signer != origin);
    Some(view::LogState {
        origin,
        size,
        root_hash,
        signers,
    })
}

#[cfg(test)]
mod tests {
    use super::checkpoint;

    #[test]
    fn checkpoints_name_the_log_then_its_witnesses() {
        let note = "example.org/log\n42\nq83+/a==\n\n\u{2014} witness.example AAAA\n\u{2014} example.org/log BBBB\n";
        let log = checkpoint(note).unwrap();
        assert_eq!(log.origin, "example.org/log");
        assert_eq!(log.size, 42);
        assert_eq!(log.signers, ["example.org/log", "witness.example"]);
        assert!(checkpoint("no note").is_none());
    }
}
