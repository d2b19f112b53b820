//! PEP 740 enforcement: who published a file, checked before the proxy serves it.
//!
//! TUF proves a file is the one the index signed; it says nothing about who gave it to the
//! index. An attacker with a maintainer's account or API token uploads a file the index signs
//! like any other. PEP 740 attestations bind a file's sha256 to the CI identity that built it
//! (a Trusted Publisher), signed through Sigstore. For a file it is about to serve, the proxy
//! fetches the provenance object the verified page points at, checks its sha256 against the
//! page's signed `_provenance_sha256` (so the index's host, a mirror or a CDN can neither strip
//! nor swap it), verifies every attestation with tufa-provenance against the file's name and
//! sha256, and applies the mode:
//!
//! - `off`: nothing is fetched or checked.
//! - `warn` (the default): provenance the page announces is verified, and a failure, or a
//!   publisher other than the policy file names, is logged; nothing is refused. It costs one
//!   small request per attested file (cached), and an operator sees trouble before choosing to
//!   enforce; refusing by default would break installs of the many projects that publish
//!   without attestations, for no gain, since refusing needs a pinned or expected publisher.
//! - `tofu`: the first verified publisher of a project is remembered (in the cache directory,
//!   beside the trusted TUF root, which is trusted on first use too); a later file whose
//!   attestation is missing, fails, or names another publisher is refused, naming both.
//! - `require`: every file must have provenance that verifies.
//!
//! The policy file names a project's expected publisher outright; in `tofu` and `require` a
//! file of such a project must be attested by it, and in `warn` a mismatch is logged.
//!
//! Refused files are refused at download with 424 and the reason in the status line, not left
//! out of the page: pip and uv then stop with that reason, where a file missing from the page
//! would either make them report "no matching distribution" without a reason or, worse, quietly
//! install an older version.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Deserialize;
use tufa_index::name::ProjectName;
use tufa_provenance::{MAX_PROVENANCE_BYTES, Provenance, Publisher, TrustRoot};

use crate::page::{PageFile, upstream_url};

/// The file in the cache directory that holds the publishers trusted on first use.
pub const PINS_FILE: &str = "provenance-publishers.json";
/// Verified provenance kept in memory, by its sha256 and the file's.
const MAX_REMEMBERED: usize = 10_000;

/// How the proxy treats provenance (`tufa proxy --provenance`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    Off,
    #[default]
    Warn,
    Tofu,
    Require,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::Warn => "warn",
            Mode::Tofu => "tofu",
            Mode::Require => "require",
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Mode {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        [Mode::Off, Mode::Warn, Mode::Tofu, Mode::Require]
            .into_iter()
            .find(|mode| mode.as_str() == text)
            .ok_or_else(|| {
                format!("{text:?} is no provenance mode: use off, warn, tofu or require")
            })
    }
}

/// A project's expected publisher in the policy file.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Expected {
    /// `GitHub` unless given (`GitLab`, ...).
    #[serde(default = "github")]
    pub kind: String,
    /// `owner/name` (GitHub), `group/project` (GitLab).
    pub repository: String,
    /// The workflow file (GitHub) or CI configuration path (GitLab); any when absent.
    pub workflow: Option<String>,
}

fn github() -> String {
    "GitHub".into()
}

impl Expected {
    fn matches(&self, publisher: &Publisher) -> bool {
        let repository = if publisher.kind == "GitHub" {
            publisher.repository.eq_ignore_ascii_case(&self.repository)
        } else {
            publisher.repository == self.repository
        };
        let workflow = publisher
            .workflow
            .as_ref()
            .or(publisher.workflow_filepath.as_ref());
        publisher.kind == self.kind
            && repository
            && (self.workflow.is_none() || self.workflow.as_ref() == workflow)
    }
}

impl std::fmt::Display for Expected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind, self.repository)?;
        match &self.workflow {
            Some(workflow) => write!(f, " workflow {workflow}"),
            None => write!(f, " (any workflow)"),
        }
    }
}

/// The policy file: `[projects.<name>]` tables with `repository`, and optionally `workflow` and
/// `kind`.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    pub path: Option<PathBuf>,
    projects: HashMap<ProjectName, Expected>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    projects: BTreeMap<String, Expected>,
}

impl Policy {
    /// Parses a policy file's text.
    pub fn parse(path: &Path, text: &str) -> Result<Policy, String> {
        let file: PolicyFile = toml::from_str(text)
            .map_err(|e| format!("the provenance policy {}: {e}", path.display()))?;
        let mut projects = HashMap::new();
        for (name, expected) in file.projects {
            let project = ProjectName::new(&name)
                .map_err(|e| format!("the provenance policy {}: {name:?}: {e}", path.display()))?;
            projects.insert(project, expected);
        }
        Ok(Policy {
            path: Some(path.to_path_buf()),
            projects,
        })
    }

    fn expected(&self, project: &ProjectName) -> Option<&Expected> {
        self.projects.get(project)
    }

    fn describe(&self) -> String {
        self.path.as_ref().map_or_else(
            || "the provenance policy".into(),
            |p| p.display().to_string(),
        )
    }
}

/// The publishers trusted on first use, by project, as a JSON object in the cache directory.
/// Read on every decision rather than kept, so that `tufa proxy trust-publisher` takes effect
/// in a running proxy.
#[derive(Debug)]
pub struct Pins {
    path: PathBuf,
    lock: Mutex<()>,
}

impl Pins {
    pub fn new(cache_dir: &Path) -> Pins {
        Pins {
            path: cache_dir.join(PINS_FILE),
            lock: Mutex::new(()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read_unlocked(&self) -> Result<BTreeMap<String, Publisher>, String> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| format!("the trusted publishers {}: {e}", self.path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(format!("reading {}: {e}", self.path.display())),
        }
    }

    fn write_unlocked(&self, pins: &BTreeMap<String, Publisher>) -> Result<(), String> {
        let text = serde_json::to_string_pretty(pins).unwrap_or_default();
        let temporary = self.path.with_extension("json.tmp");
        std::fs::write(&temporary, text)
            .and_then(|()| std::fs::rename(&temporary, &self.path))
            .map_err(|e| format!("writing {}: {e}", self.path.display()))
    }

    /// The publisher `project` is pinned to.
    pub fn get(&self, project: &ProjectName) -> Result<Option<Publisher>, String> {
        let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(self.read_unlocked()?.remove(project.as_str()))
    }

    /// Pins `project` to `publisher` unless it is pinned already; returns the pin in force.
    fn pin_first(&self, project: &ProjectName, publisher: &Publisher) -> Result<Publisher, String> {
        let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        let mut pins = self.read_unlocked()?;
        if let Some(pinned) = pins.get(project.as_str()) {
            return Ok(pinned.clone());
        }
        pins.insert(project.to_string(), publisher.clone());
        self.write_unlocked(&pins)?;
        Ok(publisher.clone())
    }

    /// Sets (or with `None`, forgets) `project`'s publisher: the operator accepting a move.
    pub fn set(&self, project: &ProjectName, publisher: Option<Publisher>) -> Result<(), String> {
        let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        let mut pins = self.read_unlocked()?;
        match publisher {
            Some(publisher) => pins.insert(project.to_string(), publisher),
            None => pins.remove(project.as_str()),
        };
        self.write_unlocked(&pins)
    }
}

/// Why a file is not served.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The index (or whatever answers for it) cannot be reached for the provenance.
    #[error("{0}")]
    Unreachable(String),
    /// The file fails the mode's rules; the text says which and names the identities.
    #[error("{0}")]
    Refused(String),
}

/// What a verified provenance object proves.
type Verified = Result<Vec<Publisher>, String>;

/// The proxy's provenance checks, shared by its requests.
pub struct Enforcer {
    mode: Mode,
    policy: Policy,
    root: Arc<TrustRoot>,
    pins: Pins,
    index_url: String,
    agent: ureq::Agent,
    /// Verification outcomes by (provenance sha256, file sha256): the same bytes verify the same.
    verified: Mutex<HashMap<(String, String), Vec<Publisher>>>,
}

impl std::fmt::Debug for Enforcer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enforcer")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl Enforcer {
    pub fn new(
        mode: Mode,
        policy: Policy,
        root: TrustRoot,
        cache_dir: &Path,
        index_url: &str,
        timeout: Duration,
    ) -> Enforcer {
        Enforcer {
            mode,
            policy,
            root: Arc::new(root),
            pins: Pins::new(cache_dir),
            index_url: index_url.trim_end_matches('/').to_string(),
            agent: ureq::Agent::config_builder()
                .timeout_global(Some(timeout))
                .http_status_as_error(false)
                .user_agent(concat!("tufa-proxy/", env!("CARGO_PKG_VERSION")))
                .build()
                .into(),
            verified: Mutex::default(),
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Decides whether `file` of `project` may be served.
    pub async fn check(&self, project: &ProjectName, file: &PageFile) -> Result<(), Refusal> {
        if self.mode == Mode::Off {
            return Ok(());
        }
        let what = format!("{} of {project}", file.filename);
        let verified = match self.verified(project, file).await {
            Err(Refusal::Unreachable(reason)) if self.mode == Mode::Warn => {
                tracing::warn!("provenance (warn mode, served anyway): {reason}");
                return Ok(());
            }
            other => other?,
        };
        let expected = self.policy.expected(project);
        let refuse = |reason: String| -> Result<(), Refusal> {
            if self.mode == Mode::Warn {
                tracing::warn!("provenance (warn mode, served anyway): {reason}");
                Ok(())
            } else {
                Err(Refusal::Refused(reason))
            }
        };
        let publishers = match verified {
            None => {
                if let Some(expected) = expected {
                    return refuse(format!(
                        "{what} has no PEP 740 attestation, but {} expects every file of \
                         {project} from {expected}: a file without one may come from a stolen \
                         account or API token",
                        self.policy.describe()
                    ));
                }
                return match self.mode {
                    Mode::Require => Err(Refusal::Refused(format!(
                        "{what} has no PEP 740 attestation on the index's signed page, and this \
                         proxy requires one (--provenance require)"
                    ))),
                    Mode::Tofu => match self.pins.get(project).map_err(Refusal::Refused)? {
                        Some(pinned) => Err(Refusal::Refused(format!(
                            "{what} has no PEP 740 attestation, but {project} was first seen \
                             published by {pinned} (trusted on first use, {}): a file without \
                             one may come from a stolen account or API token; if {project} \
                             stopped attesting legitimately, run `tufa proxy trust-publisher \
                             {project} --forget`",
                            self.pins.path().display()
                        ))),
                        None => Ok(()),
                    },
                    _ => Ok(()),
                };
            }
            Some(Err(reason)) => return refuse(reason),
            Some(Ok(publishers)) => publishers,
        };
        // One file's attestations all name its Trusted Publisher (the index refuses others);
        // checked on each, so a second publisher cannot hide behind the first.
        for publisher in &publishers {
            if let Some(expected) = expected {
                if !expected.matches(publisher) {
                    return refuse(format!(
                        "publisher mismatch: {what} is attested by {publisher}, but {} expects \
                         {expected}",
                        self.policy.describe()
                    ));
                }
                continue;
            }
            if self.mode != Mode::Tofu {
                continue;
            }
            let pinned = self
                .pins
                .pin_first(project, publisher)
                .map_err(Refusal::Refused)?;
            if !pinned.is_certified_by(publisher) {
                return Err(Refusal::Refused(format!(
                    "publisher changed: {what} is attested by {publisher}, but {project} was \
                     first seen published by {pinned} (trusted on first use, {}); if the \
                     project moved legitimately, accept the new publisher with `tufa proxy \
                     trust-publisher {project} ...` (see docs/operations.md)",
                    self.pins.path().display()
                )));
            }
        }
        Ok(())
    }

    /// The file's verified provenance: `None` when the page announces none, `Some(Err)` when
    /// it fails (the reason names the attack).
    async fn verified(
        &self,
        project: &ProjectName,
        file: &PageFile,
    ) -> Result<Option<Verified>, Refusal> {
        let signed = file
            .provenance_sha256
            .as_ref()
            .map(|s| s.as_str().to_string());
        let key = (
            signed.clone().unwrap_or_default(),
            file.sha256.as_str().to_string(),
        );
        if signed.is_some()
            && let Some(publishers) = self
                .verified
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&key)
        {
            return Ok(Some(Ok(publishers.clone())));
        }
        let announced = Announced {
            filename: file.filename.clone(),
            sha256: file.sha256.as_str().to_string(),
            url: file.provenance_url.clone(),
            signed_sha256: signed,
        };
        let (agent, root, index_url, project_name) = (
            self.agent.clone(),
            Arc::clone(&self.root),
            self.index_url.clone(),
            project.clone(),
        );
        let outcome = tokio::task::spawn_blocking(move || {
            check_announced(&agent, &index_url, &project_name, &root, &announced)
        })
        .await
        .map_err(|e| Refusal::Unreachable(format!("the provenance checker failed: {e}")))??;
        Ok(outcome.map(|outcome| {
            outcome.map(|(digest, publishers)| {
                let mut verified = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
                if verified.len() >= MAX_REMEMBERED {
                    verified.clear();
                }
                verified.insert((digest, key.1.clone()), publishers.clone());
                publishers
            })
        }))
    }

    /// The verified provenance bytes of `file`, for the proxy's own Integrity route.
    pub async fn served(
        &self,
        project: &ProjectName,
        file: &PageFile,
    ) -> Result<Option<Vec<u8>>, Refusal> {
        let Some(url) = file.provenance_url.as_deref() else {
            return Ok(None);
        };
        let url = upstream_url(&self.index_url, project, url).ok_or_else(|| {
            Refusal::Refused(format!(
                "the provenance URL {url:?} is not one the proxy fetches"
            ))
        })?;
        let agent = self.agent.clone();
        let bytes = tokio::task::spawn_blocking(move || fetch(&agent, &url))
            .await
            .map_err(|e| Refusal::Unreachable(format!("the provenance fetcher failed: {e}")))??
            .map_err(Refusal::Refused)?;
        let digest = hex::encode(ring::digest::digest(&ring::digest::SHA256, &bytes));
        match &file.provenance_sha256 {
            Some(signed) if signed.as_str() != digest => Err(Refusal::Refused(format!(
                "provenance swapped: the provenance served for {} of {project} has sha256 \
                 {digest}, not the {} the index's signed page names",
                file.filename,
                signed.as_str()
            ))),
            _ => Ok(Some(bytes)),
        }
    }
}

/// What a verified page says of one file's provenance.
#[derive(Clone, Debug)]
pub struct Announced {
    pub filename: String,
    /// The file's sha256, lowercase hex, from the verified page.
    pub sha256: String,
    /// The page's `provenance` URL.
    pub url: Option<String>,
    /// The page's signed `_provenance_sha256`.
    pub signed_sha256: Option<String>,
}

/// A checked provenance object: its sha256 and the publishers its certificates name, or why it
/// fails.
pub type Checked = Result<(String, Vec<Publisher>), String>;

/// Fetches and verifies the provenance a verified page announces for a file: `None` when it
/// announces none; else the provenance's sha256 and the publishers its certificates name, or
/// the reason it fails, which names the attack. The outer error is an unreachable index.
pub fn check_announced(
    agent: &ureq::Agent,
    index_url: &str,
    project: &ProjectName,
    root: &TrustRoot,
    file: &Announced,
) -> Result<Option<Checked>, Refusal> {
    let what = format!("{} of {project}", file.filename);
    let Some(url) = file.url.as_deref() else {
        return Ok(file.signed_sha256.as_ref().map(|_| {
            Err(format!(
                "provenance stripped: the signed page names a provenance digest for {what} but \
                 no provenance URL"
            ))
        }));
    };
    let Some(url) = upstream_url(index_url, project, url) else {
        return Ok(Some(Err(format!(
            "{what}: the provenance URL {url:?} is not one the proxy fetches"
        ))));
    };
    let bytes = match fetch(agent, &url)? {
        Ok(bytes) => bytes,
        Err(reason) => return Ok(Some(Err(format!("{what}: {reason}")))),
    };
    let digest = hex::encode(ring::digest::digest(&ring::digest::SHA256, &bytes));
    if let Some(signed) = &file.signed_sha256
        && *signed != digest
    {
        return Ok(Some(Err(format!(
            "provenance swapped: the provenance served for {what} has sha256 {digest}, not the \
             {signed} the index's signed page names"
        ))));
    }
    let mut sha256 = [0u8; 32];
    if hex::decode_to_slice(&file.sha256, &mut sha256).is_err() {
        return Ok(Some(Err(format!("{what}: the page's sha256 is not hex"))));
    }
    let provenance: Provenance = match serde_json::from_slice(&bytes) {
        Ok(provenance) => provenance,
        Err(e) => {
            return Ok(Some(Err(format!(
                "the provenance of {what} is not PyPI's provenance object: {e}"
            ))));
        }
    };
    Ok(Some(
        provenance
            .verify(root, &file.filename, &sha256)
            .map(|publishers| (digest, publishers))
            .map_err(|e| format!("the provenance of {what} does not verify: {e}")),
    ))
}

/// Fetches a provenance object, bounded. The outer error is an unreachable index; the inner
/// one a verdict on what it answered.
fn fetch(agent: &ureq::Agent, url: &str) -> Result<Result<Vec<u8>, String>, Refusal> {
    let response = agent
        .get(url)
        .header("Accept", tufa_index::provenance::CONTENT_TYPE)
        .call()
        .map_err(|e| Refusal::Unreachable(format!("fetching the provenance {url}: {e}")))?;
    let status = response.status().as_u16();
    if status >= 500 {
        return Err(Refusal::Unreachable(format!(
            "fetching the provenance {url}: the index answered {status}"
        )));
    }
    if status != 200 {
        return Ok(Err(format!(
            "provenance stripped: the signed page announces provenance at {url}, which answered \
             {status}"
        )));
    }
    let mut body = response.into_body();
    match body.with_config().limit(MAX_PROVENANCE_BYTES).read_to_vec() {
        Ok(bytes) => Ok(Ok(bytes)),
        Err(ureq::Error::BodyExceedsLimit(_)) => Ok(Err(format!(
            "the provenance at {url} is over {MAX_PROVENANCE_BYTES} bytes"
        ))),
        Err(e) => Err(Refusal::Unreachable(format!(
            "fetching the provenance {url}: {e}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publisher(repository: &str, workflow: &str) -> Publisher {
        Publisher {
            kind: "GitHub".into(),
            repository: repository.into(),
            workflow: Some(workflow.into()),
            ..Publisher::default()
        }
    }

    #[test]
    fn policy_names_repository_and_optionally_workflow() {
        let policy = Policy::parse(
            Path::new("policy.toml"),
            r#"
            [projects.Rfc8785]
            repository = "trailofbits/rfc8785.py"
            [projects.demo]
            repository = "acme/demo"
            workflow = "release.yml"
            "#,
        )
        .unwrap();
        let rfc = ProjectName::new("rfc8785").unwrap();
        let expected = policy.expected(&rfc).unwrap();
        assert!(expected.matches(&publisher("TrailOfBits/rfc8785.py", "any.yml")));
        assert!(!expected.matches(&publisher("attacker/rfc8785.py", "release.yml")));
        let demo = policy.expected(&ProjectName::new("demo").unwrap()).unwrap();
        assert!(demo.matches(&publisher("acme/demo", "release.yml")));
        assert!(!demo.matches(&publisher("acme/demo", "other.yml")));
        let gitlab = Publisher {
            kind: "GitLab".into(),
            ..publisher("acme/demo", "release.yml")
        };
        assert!(!demo.matches(&gitlab));
        assert!(
            Policy::parse(Path::new("p.toml"), "[projects.x]\nrepo = \"a/b\"\n").is_err(),
            "a misspelt key is an error, not an empty expectation"
        );
    }

    #[test]
    fn pins_are_first_come_and_set_by_the_operator() {
        let dir = tempfile::tempdir().unwrap();
        let pins = Pins::new(dir.path());
        let demo = ProjectName::new("demo").unwrap();
        let first = publisher("acme/demo", "release.yml");
        let other = publisher("evil/demo", "release.yml");
        assert_eq!(pins.pin_first(&demo, &first).unwrap(), first);
        assert_eq!(pins.pin_first(&demo, &other).unwrap(), first);
        pins.set(&demo, Some(other.clone())).unwrap();
        assert_eq!(Pins::new(dir.path()).get(&demo).unwrap(), Some(other));
        pins.set(&demo, None).unwrap();
        assert_eq!(pins.get(&demo).unwrap(), None);
    }

    #[test]
    fn modes_parse() {
        assert_eq!("tofu".parse::<Mode>().unwrap(), Mode::Tofu);
        assert!("strict".parse::<Mode>().is_err());
        assert_eq!(Mode::default(), Mode::Warn);
    }
}
