//! Test support shared by the workspace's interoperability and end-to-end tests.
//!
//! The tests drive real tools (python-tuf, pip, uv, twine) rather than mocks, so they need a Python
//! virtual environment with pinned versions of those tools. Creating one takes tens of seconds, so it
//! is built once under `target/` and reused; its directory name carries a hash of the requirements
//! file, so changing a pin builds a fresh one. Test binaries run in parallel processes, hence the
//! file lock around creation.

mod apt;
mod attestations;
mod chromium;
pub mod faketime;
pub mod http;
pub mod openbao;
mod packages;
pub mod postgres;
pub mod seaweedfs;
mod server;
mod softhsm;
mod tool_venv;
pub mod upstream;
mod witness;

pub use apt::ensure_package;
pub use attestations::pypi_attestations_assets;
pub use chromium::Chromium;
pub use openbao::{OpenBao, OpenBaoTls};
pub use packages::{
    Built, Project, minimal_wheel, wheel_entries, wheel_entries_with_metadata, wheel_with,
    wheel_with_metadata,
};
pub use seaweedfs::SeaweedFs;
pub use server::{TufaProxy, TufaServer, backend_includes};
pub use softhsm::{SOFTHSM_MODULE, SOFTHSM_PIN, SoftHsm, SoftHsmTest, run_in_softhsm};
pub use witness::TufaWitness;

use std::fs::{self, File};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The lowercase hex SHA-256 of `bytes`, as indexes and TUF write it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}

const REQUIREMENTS: &str = include_str!("../python-requirements.txt");

/// A Python virtual environment holding the tools listed in `python-requirements.txt`.
#[derive(Debug)]
pub struct PythonEnv {
    root: PathBuf,
}

impl PythonEnv {
    /// The shared environment, created on first use. Panics with the installer's output when the
    /// environment cannot be built: every test that asks for it needs it.
    pub fn shared() -> &'static PythonEnv {
        static ENV: OnceLock<PythonEnv> = OnceLock::new();
        ENV.get_or_init(|| PythonEnv::create().unwrap_or_else(|e| panic!("{e}")))
    }

    fn create() -> Result<PythonEnv, String> {
        let mut hasher = DefaultHasher::new();
        REQUIREMENTS.hash(&mut hasher);
        let target = target_dir();
        let root = target.join(format!("test-venv-{:016x}", hasher.finish()));
        let ready = root.join(".tufa-ready");
        if ready.exists() {
            return Ok(PythonEnv { root });
        }
        fs::create_dir_all(&target).map_err(|e| format!("creating {}: {e}", target.display()))?;
        let lock_path = target.join("test-venv.lock");
        let lock = File::create(&lock_path)
            .map_err(|e| format!("creating {}: {e}", lock_path.display()))?;
        lock.lock()
            .map_err(|e| format!("locking {}: {e}", lock_path.display()))?;
        if ready.exists() {
            return Ok(PythonEnv { root });
        }
        if root.exists() {
            fs::remove_dir_all(&root)
                .map_err(|e| format!("removing half-built {}: {e}", root.display()))?;
        }
        let python = std::env::var("TUFA_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
        run(Command::new(&python).arg("-m").arg("venv").arg(&root))?;
        let requirements = root.join("requirements.txt");
        fs::write(&requirements, REQUIREMENTS)
            .map_err(|e| format!("writing {}: {e}", requirements.display()))?;
        let env = PythonEnv { root };
        run(env
            .command("python")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(&requirements))?;
        fs::write(&ready, "").map_err(|e| format!("writing {}: {e}", ready.display()))?;
        Ok(env)
    }

    /// Path of an executable installed in the environment (`python`, `pip`, `twine`, ...).
    pub fn bin(&self, name: &str) -> PathBuf {
        self.root.join("bin").join(name)
    }

    /// A command running an executable of the environment, with the environment activated.
    pub fn command(&self, name: &str) -> Command {
        let mut command = Command::new(self.bin(name));
        command.env("VIRTUAL_ENV", &self.root);
        command.env("PIP_DISABLE_PIP_VERSION_CHECK", "1");
        command
    }

    /// Runs a Python script given as text with arguments, and returns its output. Panics with the
    /// script's stderr if it exits non-zero, so a test failure shows Python's own traceback.
    pub fn run_script(&self, script: &str, args: &[&str]) -> Output {
        let output = self
            .command("python")
            .arg("-c")
            .arg(script)
            .args(args)
            .output()
            .expect("running the venv's python");
        assert!(
            output.status.success(),
            "python script failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// Installs `requirements` with `tool` (`pip`, or `uv` for `uv pip`) from `index` into the
    /// new directory `target` with no installer cache, as the install benchmarks time it, and
    /// returns how long it took. Panics with the installer's output when it fails.
    pub fn timed_install(
        &self,
        tool: &str,
        index: &str,
        target: &Path,
        requirements: &[&str],
    ) -> std::time::Duration {
        let mut command = match tool {
            "pip" => {
                let mut command = self.command("pip");
                command.args(["install", "--no-cache-dir", "--index-url", index]);
                command
            }
            _ => {
                let mut command = self.command("uv");
                command
                    .env("UV_NO_CONFIG", "1")
                    .args(["pip", "install", "--no-cache", "--index-url", index])
                    .arg("--python")
                    .arg(self.bin("python"));
                command
            }
        };
        command.arg("--target").arg(target).args(requirements);
        let started = std::time::Instant::now();
        let output = command.output().expect("running the installer");
        let elapsed = started.elapsed();
        assert!(
            output.status.success(),
            "{tool} install from {index} failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        elapsed
    }
}

/// The median of measured times.
pub fn median(mut times: Vec<std::time::Duration>) -> std::time::Duration {
    times.sort();
    times[times.len() / 2]
}

/// The workspace's target directory, honouring `CARGO_TARGET_DIR` like cargo does.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => workspace_root().join("target"),
    }
}

/// The root of the Cargo workspace.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("testkit lives at crates/tufa-testkit")
        .to_path_buf()
}

/// Runs `command` to its end; its output, or an error with everything it printed.
fn run(command: &mut Command) -> Result<std::process::Output, String> {
    let output = command
        .output()
        .map_err(|e| format!("running {command:?}: {e}"))?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(format!(
            "{command:?} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// A static file server on 127.0.0.1 for tests that need real HTTP: serves the files under a
/// directory (`GET` only, one connection per request) and records every request path.
/// The accept thread lives as long as the test process; tests are short.
#[derive(Debug)]
pub struct StaticServer {
    addr: std::net::SocketAddr,
    requests: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl StaticServer {
    /// Starts serving `root` on a free port.
    pub fn start(root: impl Into<PathBuf>) -> StaticServer {
        let root = root.into();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
        let addr = listener.local_addr().expect("listener address");
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (root, log) = (root.clone(), log.clone());
                std::thread::spawn(move || serve_one(stream, &root, &log));
            }
        });
        StaticServer { addr, requests }
    }

    /// `http://127.0.0.1:<port>`, without a trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Request paths so far, as sent (still percent-encoded).
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

fn serve_one(mut stream: std::net::TcpStream, root: &Path, log: &std::sync::Mutex<Vec<String>>) {
    use std::io::{BufRead, BufReader, Write};
    let mut reader = BufReader::new(&stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut header = String::new();
    while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
        header.clear();
    }
    let target = request_line.split(' ').nth(1).unwrap_or("/").to_string();
    if let Ok(mut requests) = log.lock() {
        requests.push(target.clone());
    }
    let decoded = percent_decode(target.split('?').next().unwrap_or(""));
    let safe = !decoded.split('/').any(|segment| segment == "..");
    let body = safe
        .then(|| fs::read(root.join(decoded.trim_start_matches('/'))).ok())
        .flatten();
    let head = match &body {
        Some(body) => format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        ),
        None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(),
    };
    let _ = stream.write_all(head.as_bytes());
    if let Some(body) = body {
        let _ = stream.write_all(&body);
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| text.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
