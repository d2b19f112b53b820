//! What the end-to-end tests of the `tufa` binary share: running it, and uploading with twine.

#![allow(dead_code)] // Each test binary uses its own part of this module.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tufa_testkit::{PythonEnv, TufaServer};

const NGCLIENT: &str = include_str!("../python/ngclient_http.py");

/// python-tuf's ngclient against the index (or mirror) at `url`, trusting `root` on first use
/// of `cache`: the trusted timestamp version and each project's verified page, or python-tuf's
/// error.
pub fn python_tuf_at(
    url: &str,
    root: &Path,
    cache: &Path,
    projects: &[&str],
) -> Result<Value, String> {
    let mut args = vec![url, root.to_str().unwrap(), cache.to_str().unwrap()];
    args.extend(projects);
    let output = PythonEnv::shared()
        .command("python")
        .arg("-c")
        .arg(NGCLIENT)
        .args(&args)
        .output()
        .expect("running python");
    if output.status.success() {
        Ok(serde_json::from_slice(&output.stdout).expect("the script prints JSON"))
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// python-tuf's view of a running index, which must verify.
pub fn python_tuf(server: &TufaServer, cache: &Path, projects: &[&str]) -> Value {
    let root = server.data_dir.join("trusted-root.json");
    python_tuf_at(&server.url, &root, cache, projects)
        .unwrap_or_else(|e| panic!("python-tuf failed:\n{e}"))
}

/// File name → sha256 of every file on a verified page.
pub fn page_files(page: &Value) -> BTreeMap<String, String> {
    page["files"]
        .as_array()
        .unwrap_or_else(|| panic!("not a project page: {page}"))
        .iter()
        .map(|f| {
            (
                f["filename"].as_str().unwrap().to_string(),
                f["hashes"]["sha256"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

pub const TUFA: &str = env!("CARGO_BIN_EXE_tufa");

pub fn tufa(args: &[&str]) -> Output {
    Command::new(TUFA)
        .args(args)
        .envs(backend_env())
        .output()
        .expect("running tufa")
}

/// What a `tufa` command run by a test needs in its environment to reach the storage a data
/// directory records: on the S3 test backend, the test SeaweedFS's endpoint and credentials.
pub fn backend_env() -> Vec<(&'static str, String)> {
    if tufa_testkit::backend_includes("s3") {
        tufa_testkit::SeaweedFs::shared().env()
    } else {
        Vec::new()
    }
}

/// Asserts that a command succeeded and returns what it printed (stdout, then stderr).
pub fn ok(output: Output, what: &str) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{what} failed:\n{text}");
    text
}

/// `tufa token create`, checking that the token comes alone on stdout.
pub fn token(data: &Path, user: &str, project: Option<&str>) -> String {
    let mut args = vec![
        "token",
        "create",
        "--data",
        data.to_str().unwrap(),
        "--user",
        user,
    ];
    if let Some(project) = project {
        args.extend(["--project", project]);
    }
    let output = tufa(&args);
    let stdout = String::from_utf8(output.stdout.clone()).unwrap();
    ok(output, "tufa token create");
    assert_eq!(
        stdout.lines().count(),
        1,
        "the token alone on stdout: {stdout:?}"
    );
    stdout.trim().to_string()
}

/// `twine upload` of `files` to `server` with `token`.
pub fn twine(server: &TufaServer, token: &str, files: &[&Path], extra: &[&str]) -> Output {
    PythonEnv::shared()
        .command("twine")
        .args([
            "upload",
            "--non-interactive",
            "--disable-progress-bar",
            "--repository-url",
        ])
        .arg(server.upload_url())
        .args(["-u", "__token__", "-p", token])
        .args(extra)
        .args(files)
        .output()
        .unwrap()
}

/// Generates unencrypted key pairs `DIR/NAME.pem` and `DIR/NAME.pub.json` with `tufa keys generate`.
pub fn generate_keys(dir: &Path, names: &[&str]) {
    for name in names {
        ok(
            tufa(&[
                "keys",
                "generate",
                "--no-passphrase",
                dir.join(name).to_str().unwrap(),
            ]),
            "tufa keys generate",
        );
    }
}

/// Copies a ceremony's output into a data directory, as an operator does before the first start.
pub fn install_ceremony(ceremony_out: &Path, data: &Path) {
    std::fs::create_dir_all(data.join("tuf/metadata")).unwrap();
    for entry in std::fs::read_dir(ceremony_out.join("metadata")).unwrap() {
        let file = entry.unwrap().path();
        std::fs::copy(
            &file,
            data.join("tuf/metadata").join(file.file_name().unwrap()),
        )
        .unwrap();
    }
}

/// What a command printed, stdout then stderr.
pub fn output_text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `pip install --target` into `target` from `index_url`, with no pip cache.
pub fn pip(index_url: &str, target: &Path, requirements: &[&str]) -> Output {
    PythonEnv::shared()
        .command("pip")
        .args([
            "install",
            "--no-cache-dir",
            "--index-url",
            index_url,
            "--target",
        ])
        .arg(target)
        .args(requirements)
        .output()
        .unwrap()
}

/// `uv pip install --target` into `target` from `index_url`, with a uv cache of its own.
pub fn uv(index_url: &str, target: &Path, requirements: &[&str]) -> Output {
    uv_with_cache(
        index_url,
        target,
        &target.with_extension("uv-cache"),
        requirements,
    )
}

/// `uv pip install --target` into `target` from `index_url`, with the uv cache `cache`.
pub fn uv_with_cache(
    index_url: &str,
    target: &Path,
    cache: &Path,
    requirements: &[&str],
) -> Output {
    let env = PythonEnv::shared();
    env.command("uv")
        .env("UV_CACHE_DIR", cache)
        .env("UV_NO_CONFIG", "1")
        .args(["pip", "install", "--index-url", index_url, "--python"])
        .arg(env.bin("python"))
        .arg("--target")
        .arg(target)
        .args(requirements)
        .output()
        .unwrap()
}

/// The distributions installed in a `--target` directory, sorted (none if it does not exist).
pub fn installed(target: &Path) -> Vec<String> {
    let mut found: Vec<String> = std::fs::read_dir(target)
        .into_iter()
        .flatten()
        .filter_map(|e| e.unwrap().file_name().into_string().ok())
        .filter_map(|n| n.strip_suffix(".dist-info").map(str::to_string))
        .collect();
    found.sort();
    found
}

/// Runs `tufa serve` on `data`, which must exit with an error before it listens; returns what it
/// printed. A server that starts instead is killed after 60 s and the test fails.
pub fn serve_refused(data: &Path) -> String {
    let mut child = Command::new(TUFA)
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .envs(backend_env())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            let output = child.wait_with_output().unwrap();
            panic!(
                "tufa serve started instead of refusing the data directory:\n{}",
                output_text(&output)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    let text = output_text(&output);
    assert!(!output.status.success(), "{text}");
    assert!(
        !text.contains("tufa: serving"),
        "it must not serve at all:\n{text}"
    );
    text
}

/// A development repository laid out as an index serves it (`dir/tuf/`, keys in `dir/keys/`),
/// built with tufa-repo, and the handle that publishes into it.
pub fn development_repository(dir: &Path) -> tufa_repo::Repository<tufa_repo::FsStore> {
    use tufa_repo::dev::{ONLINE_KEY, create_development_repository};
    let now = std::time::SystemTime::now();
    let store = tufa_repo::FsStore::open(dir.join("tuf")).unwrap();
    let keys = dir.join("keys");
    create_development_repository(&store, &keys, 4, tufa_repo::Expiries::default(), now).unwrap();
    let online =
        tufa_repo::load_signer(&tufa_repo::key_paths(&keys.join(ONLINE_KEY)).0, None).unwrap();
    tufa_repo::Repository::open(
        store,
        std::sync::Arc::new(online),
        tufa_repo::Expiries::default(),
        now,
    )
    .unwrap()
}

/// The TUF repository (`tuf/`) and the distribution files (`files/`) an index on `data`
/// publishes, wherever `DATA/locations.toml` records its storage: the data directory by default,
/// a bucket on the S3 test backend. Tests read and forge published objects through these instead
/// of `DATA/tuf/...` paths, so they check the same thing on either storage.
pub struct Published {
    pub tuf: std::sync::Arc<dyn tufa_repo::Store>,
    pub files: std::sync::Arc<dyn tufa_repo::Store>,
    /// Whether they are in a bucket rather than the data directory.
    pub in_bucket: bool,
}

impl Published {
    /// The store and the path in it of `path`, named as in the data directory (`tuf/...`,
    /// `files/...`).
    fn locate<'a>(&self, path: &'a str) -> (&dyn tufa_repo::Store, &'a str) {
        if let Some(rest) = path.strip_prefix("tuf/") {
            (&*self.tuf, rest)
        } else if let Some(rest) = path.strip_prefix("files/") {
            (&*self.files, rest)
        } else {
            panic!("{path} is neither under tuf/ nor under files/")
        }
    }

    /// The bytes at `path` (e.g. `tuf/metadata/timestamp.json`), if present.
    pub fn read(&self, path: &str) -> Option<Vec<u8>> {
        let (store, path) = self.locate(path);
        store.read(path).unwrap()
    }

    /// Replaces (or creates) the object at `path`.
    pub fn write(&self, path: &str, bytes: &[u8]) {
        let (store, path) = self.locate(path);
        store
            .write_all(&[(path.to_string(), bytes.to_vec())])
            .unwrap()
    }

    /// Every object under the directory `dir` (e.g. `tuf/targets/simple/demo`), by its path as
    /// in the data directory.
    pub fn list(&self, dir: &str) -> Vec<String> {
        let dir = dir.trim_end_matches('/');
        let (top, store): (&str, &dyn tufa_repo::Store) = if dir.starts_with("tuf") {
            ("tuf", &*self.tuf)
        } else {
            ("files", &*self.files)
        };
        let inner = dir.strip_prefix(top).unwrap().trim_start_matches('/');
        let mut found: Vec<String> = store
            .list(inner)
            .unwrap()
            .into_iter()
            .map(|path| format!("{top}/{path}"))
            .collect();
        found.sort();
        found
    }

    /// Copies everything published (`tuf/` and `files/`) into `dir`, laid out as the index
    /// serves it: what a static web server can serve in its place.
    pub fn export(&self, dir: &Path) {
        for top in ["tuf", "files"] {
            for path in self.list(top) {
                let target = dir.join(&path);
                std::fs::create_dir_all(target.parent().unwrap()).unwrap();
                std::fs::write(target, self.read(&path).unwrap()).unwrap();
            }
        }
    }
}

/// The published storage of the index on `data` (see [`Published`]).
pub fn published(data: &Path) -> Published {
    use std::sync::Arc;
    use tufa_repo::{FsStore, S3Client, S3Settings, S3Store, S3Url};
    let recorded = std::fs::read_to_string(data.join("locations.toml")).unwrap_or_default();
    let locations: toml::Table = toml::from_str(&recorded).unwrap();
    match locations.get("storage").and_then(|s| s.as_str()) {
        Some(url) if !url.is_empty() => {
            let location = S3Url::parse(url).unwrap();
            let env = tufa_testkit::SeaweedFs::shared().env();
            let settings = S3Settings::from_lookup(|name| {
                env.iter()
                    .find(|(var, _)| *var == name)
                    .map(|(_, value)| value.clone())
            })
            .unwrap();
            let client = Arc::new(S3Client::new(&location.bucket, &settings).unwrap());
            Published {
                tuf: Arc::new(S3Store::new(Arc::clone(&client), location.join("tuf"))),
                files: Arc::new(S3Store::new(client, location.join("files"))),
                in_bucket: true,
            }
        }
        _ => Published {
            tuf: Arc::new(FsStore::beside_publisher(data.join("tuf"))),
            files: Arc::new(FsStore::beside_publisher(data.join("files"))),
            in_bucket: false,
        },
    }
}
