//! `tufa mirror sync`: fills a running index that mirrors an upstream with a list of projects
//! and their files, ahead of the installs that will want them.
//!
//! It works through the index's own HTTP API, as pip would: asking for a project's page makes
//! the index mirror it and sign it, and downloading a file through `/files/...` makes the index
//! fetch it from upstream, check it against the hash it pinned, and store it. So the sync needs no
//! access to the index's data directory, and every file is verified twice: by the index against
//! the pinned hash, and here against the page (or, with `--root`, the TUF-verified page).
//! Finished files are appended to a state file as they complete, so a sync that was interrupted
//! resumes where it stopped.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;
use tufa_index::dist::DistFilename;
use tufa_index::name::{ProjectName, Version};

#[derive(Args)]
pub struct SyncArgs {
    /// Base URL of the running Tufa index (its `/simple/` is appended).
    #[arg(long, env = "TUFA_INDEX")]
    index: String,
    /// Projects to mirror, every file of every release (or the latest release with `--latest`).
    names: Vec<String>,
    /// A requirements file: `name==version` lines mirror that release only (`--hash` options
    /// narrow it to those files); other lines mirror the whole project. Repeatable.
    #[arg(short = 'r', long = "requirement")]
    requirements: Vec<PathBuf>,
    /// A lock file (`uv.lock` or PEP 751 `pylock.toml`): mirrors exactly the files it pins, by
    /// hash. Repeatable.
    #[arg(long)]
    lock: Vec<PathBuf>,
    /// For projects given by name, only the files of the latest release (the highest
    /// non-yanked final release, else the highest release).
    #[arg(long)]
    latest: bool,
    /// Downloads in flight at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    jobs: u16,
    /// The index's root metadata: check each page through TUF before trusting its file list.
    #[arg(long)]
    root: Option<PathBuf>,
    /// Cache directory for TUF metadata and the sync state [default: the user cache directory].
    #[arg(long)]
    cache: Option<PathBuf>,
    /// How long a request may wait for the index to answer, or a download may go without
    /// receiving a byte (the index itself waits on the upstream): 30s, 2m, ...
    #[arg(long, default_value = "2m", value_parser = crate::index_commands::parse_duration_arg)]
    timeout: Duration,
}

/// The largest page the sync reads (PyPI's largest pages are tens of MB).
const MAX_PAGE: u64 = 256 << 20;

/// What to mirror of one project.
#[derive(Default, Debug)]
struct Want {
    /// Every file (or the latest release's, with `--latest`).
    all: bool,
    /// Releases pinned without hashes: all their files.
    versions: BTreeSet<String>,
    /// Files pinned by hash, with the pin they came from, for the error when one is missing.
    hashes: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct Page {
    files: Vec<PageFile>,
}

#[derive(Deserialize)]
struct PageFile {
    filename: String,
    url: String,
    hashes: BTreeMap<String, String>,
    size: Option<u64>,
    #[serde(default, rename = "core-metadata")]
    core_metadata: Option<serde_json::Value>,
    #[serde(default)]
    yanked: serde_json::Value,
}

/// One download: a distribution file, or its PEP 658 metadata.
#[derive(Clone, Debug)]
struct Job {
    project: ProjectName,
    /// The file name (with `.metadata` for metadata), as reported.
    name: String,
    url: String,
    sha256: String,
    /// Known for distribution files (the page lists it), not for metadata.
    size: Option<u64>,
}

impl Job {
    /// The line the state file holds once this download is done.
    fn state_line(&self) -> String {
        format!("{}  {}", self.sha256, self.name)
    }
}

pub fn sync(args: SyncArgs) -> Result<()> {
    let index = args
        .index
        .trim_end_matches('/')
        .trim_end_matches("/simple")
        .to_string();
    let wants = wanted(&args)?;
    if wants.is_empty() {
        bail!("nothing to mirror: name projects, or pass -r requirements.txt or --lock");
    }
    let cache = match &args.cache {
        Some(cache) => cache.clone(),
        None => crate::download::default_cache(&index)?,
    };
    std::fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;
    let timeout = args.timeout;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(timeout.min(Duration::from_secs(10))))
        .timeout_recv_response(Some(timeout))
        .timeout_per_read(Some(timeout))
        .http_status_as_error(false)
        .user_agent(concat!("tufa-mirror-sync/", env!("CARGO_PKG_VERSION")))
        // An index behind TLS may carry the organization's own CA, as its upstream may.
        .tls_config(tufa_index::upstream::tls_config())
        .build()
        .into();
    let jobs = usize::from(args.jobs);
    let started = Instant::now();
    let mut failures = Vec::new();

    // Pages first: each request makes the index mirror and sign the project.
    let projects: Vec<&ProjectName> = wants.keys().collect();
    let pages = parallel(&projects, jobs, |project| {
        fetch_page(&agent, &index, project).with_context(|| format!("{project}: page"))
    });
    let mut listed = BTreeMap::new();
    for (project, page) in projects.into_iter().zip(pages) {
        match page {
            Ok(page) => {
                listed.insert(project.clone(), page);
            }
            Err(error) => failures.push(crate::describe(&error)),
        }
    }
    if let Some(root) = &args.root {
        listed = verified_pages(&index, root, &cache, listed, &mut failures)?;
    }

    let mut all_jobs = Vec::new();
    for (project, page) in &listed {
        match select(&index, project, page, &wants[project], args.latest) {
            Ok(jobs) => all_jobs.extend(jobs),
            Err(error) => failures.push(format!("{project}: {error}")),
        }
    }

    let state_path = cache.join("mirror-sync-state");
    let done: BTreeSet<String> = match std::fs::read_to_string(&state_path) {
        Ok(text) => text.lines().map(str::to_string).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", state_path.display())),
    };
    let (skipped, pending): (Vec<Job>, Vec<Job>) = all_jobs
        .into_iter()
        .partition(|job| done.contains(&job.state_line()));
    let state = Mutex::new(
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&state_path)
            .with_context(|| format!("opening {}", state_path.display()))?,
    );

    let total_bytes: u64 = pending.iter().filter_map(|job| job.size).sum();
    let bar = ProgressBar::new(total_bytes);
    if let Ok(style) = ProgressStyle::with_template(
        "{binary_bytes}/{binary_total_bytes} {wide_bar} {binary_bytes_per_sec} {msg} ({eta} left)",
    ) {
        bar.set_style(style);
    }
    let files_total = pending.len();
    let files_done = Mutex::new(0usize);
    let results = parallel(&pending, jobs, |job| {
        let bytes = download(&agent, job, &bar)?;
        let mut state = state.lock().expect("state file lock");
        writeln!(state, "{}", job.state_line())
            .and_then(|()| state.flush())
            .with_context(|| format!("recording progress in {}", state_path.display()))?;
        let mut count = files_done.lock().expect("counter lock");
        *count += 1;
        bar.set_message(format!("{count}/{files_total} files"));
        Ok(bytes)
    });
    bar.finish_and_clear();

    let mut bytes = 0u64;
    let (mut files, mut metadata) = (0usize, 0usize);
    for (job, result) in pending.iter().zip(results) {
        match result {
            Ok(n) => {
                bytes += n;
                match job.size {
                    Some(_) => files += 1,
                    None => metadata += 1,
                }
            }
            Err(error) => failures.push(format!(
                "{}: {}: {}",
                job.project,
                job.name,
                crate::describe(&error)
            )),
        }
    }
    let seconds = started.elapsed().as_secs_f64().max(1e-3);
    println!(
        "{} projects: {files} files (and {metadata} metadata files) downloaded and verified, \
         {:.1} MB in {seconds:.1} s ({:.1} files/s, {:.1} MB/s); {} already synced; {} failed",
        listed.len(),
        bytes as f64 / 1e6,
        files as f64 / seconds,
        bytes as f64 / 1e6 / seconds,
        skipped.len(),
        failures.len()
    );
    if !failures.is_empty() {
        bail!(
            "{} failed (a re-run retries only these):\n  {}",
            failures.len(),
            failures.join("\n  ")
        );
    }
    Ok(())
}

/// Runs `work` on every item with at most `jobs` at once, and returns the results in order.
fn parallel<T: Sync, R: Send>(
    items: &[T],
    jobs: usize,
    work: impl Fn(&T) -> Result<R> + Sync,
) -> Vec<Result<R>> {
    let next = Mutex::new(0usize);
    let results: Vec<Mutex<Option<Result<R>>>> = items.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(items.len()) {
            scope.spawn(|| {
                loop {
                    let i = {
                        let mut next = next.lock().expect("queue lock");
                        let i = *next;
                        *next += 1;
                        i
                    };
                    let Some(item) = items.get(i) else { break };
                    let result = work(item);
                    *results[i].lock().expect("result lock") = Some(result);
                }
            });
        }
    });
    results
        .into_iter()
        .map(|slot| {
            slot.into_inner()
                .expect("result lock")
                .unwrap_or_else(|| Err(anyhow::anyhow!("not attempted")))
        })
        .collect()
}

/// The projects to mirror, from names, requirements files and lock files.
fn wanted(args: &SyncArgs) -> Result<BTreeMap<ProjectName, Want>> {
    let mut wants: BTreeMap<ProjectName, Want> = BTreeMap::new();
    for name in &args.names {
        let project = ProjectName::new(name).with_context(|| format!("project {name:?}"))?;
        wants.entry(project).or_default().all = true;
    }
    for path in &args.requirements {
        read_requirements(path, &mut wants, 0)?;
    }
    for path in &args.lock {
        read_lock(path, &mut wants)?;
    }
    Ok(wants)
}

/// Reads a pip requirements file: `name[extras]==version ; markers --hash=sha256:...` lines,
/// `-r other.txt` includes; other options are pip's business and skipped.
fn read_requirements(
    path: &Path,
    wants: &mut BTreeMap<ProjectName, Want>,
    depth: usize,
) -> Result<()> {
    if depth > 16 {
        bail!(
            "{}: requirements files include each other too deeply",
            path.display()
        );
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let joined = text.replace("\\\n", " ");
    for (number, line) in joined.lines().enumerate() {
        let line = match line.find(" #") {
            Some(i) => &line[..i],
            None if line.trim_start().starts_with('#') => "",
            None => line,
        }
        .trim();
        let context = || format!("{}:{}", path.display(), number + 1);
        if let Some(include) = line
            .strip_prefix("-r ")
            .or_else(|| line.strip_prefix("--requirement "))
        {
            let included = path.parent().unwrap_or(Path::new(".")).join(include.trim());
            read_requirements(&included, wants, depth + 1).with_context(context)?;
            continue;
        }
        if line.is_empty() || line.starts_with('-') {
            continue;
        }
        let (requirement, options) = match line.find(" --") {
            Some(i) => (&line[..i], &line[i..]),
            None => (line, ""),
        };
        let requirement = requirement.split(';').next().unwrap_or_default().trim();
        let end = requirement
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
            .unwrap_or(requirement.len());
        let project = ProjectName::new(&requirement[..end])
            .with_context(|| format!("{}: no project name in {line:?}", context()))?;
        let specifier = requirement[end..].trim();
        let specifier = specifier
            .find(']')
            .map_or(specifier, |i| specifier[i + 1..].trim());
        let pinned = specifier
            .strip_prefix("===")
            .or_else(|| specifier.strip_prefix("=="))
            .map(str::trim)
            .filter(|v| !v.contains([',', '*', ' ']));
        let hashes: Vec<&str> = options
            .split_whitespace()
            .filter_map(|o| o.strip_prefix("--hash=sha256:"))
            .collect();
        let want = wants.entry(project.clone()).or_default();
        match pinned {
            None => want.all = true,
            Some(version) => {
                let version = Version::new(version).with_context(context)?;
                let pin = format!("{project}=={version}");
                if hashes.is_empty() {
                    want.versions.insert(version.as_str().to_string());
                }
                for hash in hashes {
                    want.hashes.insert(hash.to_ascii_lowercase(), pin.clone());
                }
            }
        }
    }
    Ok(())
}

#[derive(Deserialize)]
struct Lock {
    /// `uv.lock`.
    #[serde(default)]
    package: Vec<LockedPackage>,
    /// PEP 751 `pylock.toml`.
    #[serde(default)]
    packages: Vec<LockedPackage>,
}

#[derive(Deserialize)]
struct LockedPackage {
    name: String,
    version: Option<String>,
    sdist: Option<LockedFile>,
    #[serde(default)]
    wheels: Vec<LockedFile>,
}

#[derive(Deserialize)]
struct LockedFile {
    /// `uv.lock`: `"sha256:<hex>"`.
    hash: Option<String>,
    /// `pylock.toml`: `{ sha256 = "<hex>" }`.
    #[serde(default)]
    hashes: BTreeMap<String, String>,
}

/// Reads `uv.lock` or PEP 751 `pylock.toml`: every file they pin, by sha256. Packages with no
/// files (the project itself, editables, directories) are not on an index and are skipped.
fn read_lock(path: &Path, wants: &mut BTreeMap<ProjectName, Want>) -> Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let lock: Lock = toml::from_str(&text)
        .with_context(|| format!("{} is neither uv.lock nor pylock.toml", path.display()))?;
    for package in lock.package.into_iter().chain(lock.packages) {
        let project = ProjectName::new(&package.name)
            .with_context(|| format!("{}: package {:?}", path.display(), package.name))?;
        let pin = format!(
            "{project}=={}",
            package.version.as_deref().unwrap_or("(no version)")
        );
        for file in package.sdist.iter().chain(&package.wheels) {
            let sha256 = file
                .hash
                .as_deref()
                .and_then(|h| h.strip_prefix("sha256:"))
                .or(file.hashes.get("sha256").map(String::as_str));
            match sha256 {
                Some(sha256) => {
                    wants
                        .entry(project.clone())
                        .or_default()
                        .hashes
                        .insert(sha256.to_ascii_lowercase(), pin.clone());
                }
                None => bail!("{}: a file of {pin} has no sha256", path.display()),
            }
        }
    }
    Ok(())
}

/// Asks the index for a project's PEP 691 page, which makes it mirror and sign the project.
fn fetch_page(agent: &ureq::Agent, index: &str, project: &ProjectName) -> Result<Page> {
    let url = format!("{index}/simple/{project}/");
    let mut response = agent
        .get(&url)
        .header("Accept", "application/vnd.pypi.simple.v1+json")
        .call()
        .with_context(|| format!("GET {url}"))?;
    if !response.status().is_success() {
        bail!("GET {url}: {}", status_reason(&mut response));
    }
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_PAGE)
        .read_to_vec()
        .with_context(|| format!("reading {url}"))?;
    serde_json::from_slice(&body).with_context(|| format!("{url} is not a PEP 691 JSON page"))
}

/// The status and the index's reason for it (its error bodies repeat the reason phrase).
fn status_reason(response: &mut ureq::http::Response<ureq::Body>) -> String {
    let status = response.status();
    let body = response
        .body_mut()
        .with_config()
        .limit(4096)
        .read_to_string()
        .unwrap_or_default();
    let reason = body.trim();
    if reason.is_empty() {
        status.to_string()
    } else if reason.starts_with(status.as_str()) {
        reason.to_string()
    } else {
        format!("{status}: {reason}")
    }
}

/// Replaces each page with its TUF-verified copy (target `simple/<name>/index.json`).
fn verified_pages(
    index: &str,
    root: &Path,
    cache: &Path,
    pages: BTreeMap<ProjectName, Page>,
    failures: &mut Vec<String>,
) -> Result<BTreeMap<ProjectName, Page>> {
    let refreshed =
        crate::download::refreshed_metadata(cache, root, index, tufa_client::Witnesses::default())?;
    let mut verified = BTreeMap::new();
    for project in pages.into_keys() {
        let page = refreshed
            .target_info(&format!("simple/{project}/index.json"))
            .and_then(|info| {
                refreshed.download_target(
                    &info,
                    &format!("{index}/tuf/targets/"),
                    &cache.join("targets"),
                )
            })
            .with_context(|| format!("{project}: page not verified through TUF"))
            .and_then(|page| {
                serde_json::from_slice::<Page>(&page.content)
                    .with_context(|| format!("{project}: the verified page is not PEP 691 JSON"))
            });
        match page {
            Ok(page) => {
                verified.insert(project, page);
            }
            Err(error) => failures.push(crate::describe(&error)),
        }
    }
    Ok(verified)
}

/// The downloads a project's page yields for what is wanted of it.
fn select(
    index: &str,
    project: &ProjectName,
    page: &Page,
    want: &Want,
    latest: bool,
) -> Result<Vec<Job>> {
    let page_url = format!("{index}/simple/{project}/");
    let version_of = |file: &PageFile| {
        DistFilename::parse(&file.filename)
            .ok()
            .map(|dist| dist.version)
    };
    let latest_version = (want.all && latest)
        .then(|| {
            let candidates: Vec<Version> = page
                .files
                .iter()
                .filter(|f| {
                    matches!(
                        f.yanked,
                        serde_json::Value::Null | serde_json::Value::Bool(false)
                    )
                })
                .filter_map(version_of)
                .collect();
            let finals = candidates.iter().filter(|v| !v.is_prerelease()).max();
            finals.or(candidates.iter().max()).cloned()
        })
        .flatten();
    let mut found_versions = BTreeSet::new();
    let mut found_hashes = BTreeSet::new();
    let mut jobs = Vec::new();
    for file in &page.files {
        let sha256 = file
            .hashes
            .get("sha256")
            .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .with_context(|| format!("{} has no valid sha256 on the page", file.filename))?
            .to_ascii_lowercase();
        let version = version_of(file);
        let chosen = match (&latest_version, want.all) {
            (Some(latest), _) => version.as_ref() == Some(latest),
            (None, true) => true,
            (None, false) => {
                let by_version = version
                    .as_ref()
                    .is_some_and(|v| want.versions.contains(v.as_str()));
                if by_version {
                    found_versions.insert(version.as_ref().map(|v| v.as_str().to_string()));
                }
                let by_hash = want.hashes.contains_key(&sha256);
                if by_hash {
                    found_hashes.insert(sha256.clone());
                }
                by_version || by_hash
            }
        };
        if !chosen {
            continue;
        }
        // A fragment (`#sha256=...`) is for the client, never sent.
        let url = resolve(&page_url, file.url.split('#').next().unwrap_or_default());
        if let Some(metadata_sha256) = file
            .core_metadata
            .as_ref()
            .and_then(|m| m.get("sha256"))
            .and_then(|h| h.as_str())
        {
            jobs.push(Job {
                project: project.clone(),
                name: format!("{}.metadata", file.filename),
                url: format!("{url}.metadata"),
                sha256: metadata_sha256.to_ascii_lowercase(),
                size: None,
            });
        }
        jobs.push(Job {
            project: project.clone(),
            name: file.filename.clone(),
            url,
            sha256,
            size: Some(
                file.size
                    .with_context(|| format!("{} has no size on the page", file.filename))?,
            ),
        });
    }
    let mut missing: Vec<String> = want
        .versions
        .iter()
        .filter(|v| !found_versions.contains(&Some(v.to_string())))
        .map(|v| format!("{project}=={v} is not on the index's page"))
        .collect();
    missing.extend(
        want.hashes
            .iter()
            .filter(|(hash, _)| !found_hashes.contains(*hash))
            .map(|(hash, pin)| format!("no file of {pin} has the pinned sha256 {hash}")),
    );
    if !missing.is_empty() {
        bail!("{}", missing.join("; "));
    }
    Ok(jobs)
}

/// Resolves a file URL from a page against the page's URL.
fn resolve(page_url: &str, href: &str) -> String {
    if href.starts_with("http://") || href.starts_with("https://") {
        return href.to_string();
    }
    let scheme_end = page_url.find("://").map_or(0, |i| i + 3);
    let origin_end = page_url[scheme_end..]
        .find('/')
        .map_or(page_url.len(), |i| scheme_end + i);
    if href.starts_with('/') {
        return format!("{}{href}", &page_url[..origin_end]);
    }
    let mut segments: Vec<&str> = page_url[origin_end..].split('/').collect();
    segments.pop();
    for part in href.split('/') {
        match part {
            ".." => {
                if segments.len() > 1 {
                    segments.pop();
                }
            }
            "." => {}
            part => segments.push(part),
        }
    }
    format!("{}{}", &page_url[..origin_end], segments.join("/"))
}

/// Downloads one file through the index, hashing it as it streams, and checks it against the
/// page. Returns its size.
fn download(agent: &ureq::Agent, job: &Job, bar: &ProgressBar) -> Result<u64> {
    let mut response = agent
        .get(&job.url)
        .call()
        .with_context(|| format!("GET {}", job.url))?;
    if !response.status().is_success() {
        bail!("GET {}: {}", job.url, status_reason(&mut response));
    }
    // Metadata has no listed size; a core-metadata file is small, so a few MB bounds it.
    let limit = job.size.map_or(16 << 20, |size| size.saturating_add(1));
    let mut reader = response.body_mut().with_config().limit(limit).reader();
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buffer = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = reader
            .read(&mut buffer)
            .with_context(|| format!("reading {} after {size} bytes", job.url))?;
        if n == 0 {
            break;
        }
        context.update(&buffer[..n]);
        size += n as u64;
        if job.size.is_some() {
            bar.inc(n as u64);
        }
    }
    if let Some(expected) = job.size
        && size != expected
    {
        bail!("size mismatch: the page lists {expected} bytes, the index sent {size}");
    }
    let sha256 = hex(context.finish().as_ref());
    if sha256 != job.sha256 {
        bail!(
            "hash mismatch: the page lists sha256 {}, the index sent {sha256}",
            job.sha256
        );
    }
    Ok(size)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::resolve;

    #[test]
    fn resolves_file_urls_like_a_browser() {
        let page = "http://127.0.0.1:8080/simple/six/";
        assert_eq!(
            resolve(page, "/files/ab/six.whl"),
            "http://127.0.0.1:8080/files/ab/six.whl"
        );
        assert_eq!(
            resolve(page, "../../files/ab/six.whl"),
            "http://127.0.0.1:8080/files/ab/six.whl"
        );
        assert_eq!(
            resolve(page, "six.whl"),
            "http://127.0.0.1:8080/simple/six/six.whl"
        );
        assert_eq!(
            resolve(page, "https://x.test/six.whl"),
            "https://x.test/six.whl"
        );
    }
}
