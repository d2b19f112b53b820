//! A real `tufa serve` process on a free loopback port, stopped when dropped.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running `tufa serve`, with everything it logged.
pub struct TufaServer {
    child: Child,
    tufa: PathBuf,
    pub url: String,
    pub data_dir: PathBuf,
    log: Arc<Mutex<String>>,
}

impl TufaServer {
    /// Starts `tufa serve` (the binary at `tufa`) on `data_dir` with extra arguments, and waits
    /// until it listens.
    pub fn start(tufa: &Path, data_dir: &Path, extra_args: &[&str]) -> TufaServer {
        Self::start_with_env(tufa, data_dir, extra_args, &[])
    }

    /// Like [`TufaServer::start`], with extra environment variables for the server process (a
    /// PKCS#11 token's config and PIN, for example).
    pub fn start_with_env(
        tufa: &Path,
        data_dir: &Path,
        extra_args: &[&str],
        env: &[(&str, OsString)],
    ) -> TufaServer {
        let mut command = Command::new(tufa);
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(data_dir)
            .args(extra_args);
        if backend_includes("s3") && !extra_args.iter().any(|arg| arg.starts_with("--storage")) {
            let seaweed = crate::SeaweedFs::shared();
            command.envs(seaweed.env());
            // A restart on the same data directory stays on the bucket it recorded.
            if !data_dir.join("locations.toml").exists() {
                let (bucket, env) = seaweed.fresh_bucket();
                let storage = format!("s3://{bucket}/tufa");
                if data_dir.join("tufa.db").exists() || data_dir.join("tuf").exists() {
                    // Prepared in the directory (a ceremony's metadata, an import): moved into
                    // the bucket first, as an operator would.
                    let output = Command::new(tufa)
                        .args(["storage", "move", "--data"])
                        .arg(data_dir)
                        .args(["--to", &storage])
                        .envs(env)
                        .output()
                        .expect("running tufa storage move");
                    assert!(
                        output.status.success(),
                        "tufa storage move: {}",
                        String::from_utf8_lossy(&output.stderr)
                    );
                } else {
                    command.arg("--storage").arg(storage);
                }
            }
        }
        command.envs(env.iter().map(|(name, value)| (name, value)));
        if let Some(url) = test_database(data_dir, extra_args) {
            command.arg("--database").arg(url);
        }
        let (child, url, log) = spawn_listening(command, "tufa: serving");
        TufaServer {
            child,
            tufa: tufa.to_path_buf(),
            url,
            data_dir: data_dir.to_path_buf(),
            log,
        }
    }

    /// Creates an API token for `user` with `tufa token create` and returns it.
    pub fn create_token(&self, user: &str) -> String {
        let mut command = Command::new(&self.tufa);
        command
            .args(["token", "create", "--user", user, "--data"])
            .arg(&self.data_dir);
        if backend_includes("s3") {
            command.envs(crate::SeaweedFs::shared().env());
        }
        let output = command.output().expect("running tufa token create");
        assert!(
            output.status.success(),
            "tufa token create: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    /// The simple index URL pip and uv take as `--index-url`.
    pub fn simple_url(&self) -> String {
        format!("{}/simple/", self.url)
    }

    /// Uploads a minimal wheel of `project` `version` with `token`, as twine would, and returns
    /// the answer.
    pub fn upload_wheel(
        &self,
        token: &str,
        project: &str,
        version: &str,
    ) -> crate::http::RawResponse {
        let (content_type, body) =
            crate::http::wheel_upload(project, version, &crate::minimal_wheel(project, version));
        crate::http::request(
            "POST",
            &self.upload_url(),
            &[
                ("Content-Type", &content_type),
                ("Authorization", &crate::http::basic_auth(token)),
            ],
            &body,
        )
    }

    /// The upload URL twine takes as `--repository-url`.
    pub fn upload_url(&self) -> String {
        format!("{}/legacy/", self.url)
    }

    /// What the server has logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The log once it holds `needle` (waiting up to 10 s for it): the server writes a line
    /// before or as it answers, but the test reads its stderr on another thread, a moment later.
    pub fn log_containing(&self, needle: &str) -> String {
        log_containing(&self.log, needle)
    }

    /// Waits until every change the index has recorded is in signed TUF metadata, and returns
    /// that serial.
    pub fn wait_until_signed(&self) -> i64 {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let status = crate::http::get(&format!("{}/status", self.url), &[]).json();
            let last = status["last_serial"].as_i64().expect("last_serial");
            if status["signed_serial"].as_i64() == Some(last) {
                return last;
            }
            assert!(
                Instant::now() < deadline,
                "serial {last} not signed within 60 s: {status}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for TufaServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// With `TUFA_TEST_BACKEND=postgres`, a fresh PostgreSQL database for a data directory that
/// records none yet (`tufa serve` records it in `locations.toml`, where a restart on the same
/// directory and every administrative command find it again); `None` when the test chose a
/// database itself, runs on the default, or made an SQLite index there before (`tufa import`
/// into a new directory): that index is what the test serves.
fn test_database(data_dir: &Path, extra_args: &[&str]) -> Option<String> {
    if !crate::postgres::requested()
        || extra_args.contains(&"--database")
        || data_dir.join("tufa.db").exists()
    {
        return None;
    }
    let recorded = std::fs::read_to_string(data_dir.join("locations.toml")).unwrap_or_default();
    if recorded
        .lines()
        .any(|line| line.trim_start().starts_with("database"))
    {
        return None;
    }
    Some(crate::postgres::fresh_database())
}

/// Whether `TUFA_TEST_BACKEND` (comma-separated: `postgres`, `s3`) asks for `backend`, which
/// makes every server the testkit starts run on it.
pub fn backend_includes(backend: &str) -> bool {
    std::env::var("TUFA_TEST_BACKEND")
        .is_ok_and(|value| value.split(',').any(|b| b.trim() == backend))
}

/// Waits up to 10 s for `needle` in a log the reader thread fills, and returns the log (with or
/// without it: the caller's assertion reports what is missing).
fn log_containing(log: &Mutex<String>, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = log.lock().unwrap().clone();
        if text.contains(needle) || Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Spawns `command`, collects its stderr, and waits for the line starting with `marker` that
/// names the address it listens on (`... at http://<address>/...`).
pub(crate) fn spawn_listening(
    mut command: Command,
    marker: &'static str,
) -> (Child, String, Arc<Mutex<String>>) {
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting tufa");
    let stderr = child.stderr.take().expect("piped stderr");
    let log = Arc::new(Mutex::new(String::new()));
    let (url_tx, url_rx) = std::sync::mpsc::channel();
    let sink = Arc::clone(&log);
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stderr);
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap_or(0) > 0 {
            if let Some(rest) = line.split(" at http://").nth(1)
                && line.starts_with(marker)
            {
                let address = rest.split('/').next().unwrap_or_default();
                let _ = url_tx.send(format!("http://{address}"));
            }
            sink.lock().unwrap().push_str(&line);
            line.clear();
        }
        let mut rest = String::new();
        let _ = reader.read_to_string(&mut rest);
        sink.lock().unwrap().push_str(&rest);
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(url) = url_rx.recv_timeout(Duration::from_millis(100)) {
            return (child, url, log);
        }
        if let Ok(Some(status)) = child.try_wait() {
            std::thread::sleep(Duration::from_millis(200));
            panic!(
                "{command:?} exited with {status} before listening:\n{}",
                log.lock().unwrap()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{command:?} did not start listening within 120 s:\n{}",
            log.lock().unwrap()
        );
    }
}

/// A running `tufa proxy`, with everything it logged; killed when dropped.
pub struct TufaProxy {
    child: Child,
    pub url: String,
    log: Arc<Mutex<String>>,
}

impl TufaProxy {
    /// Starts `tufa proxy` in front of the index at `index_url`, trusting `root` on first use of
    /// `cache`, and waits until it listens.
    pub fn start(
        tufa: &Path,
        index_url: &str,
        root: &Path,
        cache: &Path,
        extra_args: &[&str],
    ) -> TufaProxy {
        let mut command = Command::new(tufa);
        command
            .args([
                "proxy",
                "--listen",
                "127.0.0.1:0",
                "--index",
                index_url,
                "--root",
            ])
            .arg(root)
            .arg("--cache")
            .arg(cache)
            .args(extra_args);
        let (child, url, log) = spawn_listening(command, "tufa: proxy serving");
        TufaProxy { child, url, log }
    }

    /// The simple index URL pip and uv take as `--index-url`.
    pub fn simple_url(&self) -> String {
        format!("{}/simple/", self.url)
    }

    /// What the proxy has logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The log once it holds `needle` (see [`TufaServer::log_containing`]).
    pub fn log_containing(&self, needle: &str) -> String {
        log_containing(&self.log, needle)
    }

    /// The proxy's process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the proxy at once (SIGKILL).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for TufaProxy {
    fn drop(&mut self) {
        self.kill();
    }
}
