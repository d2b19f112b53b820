//! Test support shared by the workspace's interoperability and end-to-end tests.
//!
//! The tests drive real tools (python-tuf, pip, uv, twine) rather than mocks, so they need a Python
//! virtual environment with pinned versions of those tools. Creating one takes tens of seconds, so it
//! is built once under `target/` and reused; its directory name carries a hash of the requirements
//! file, so changing a pin builds a fresh one. Test binaries run in parallel processes, hence the
//! file lock around creation.

pub mod http;
mod packages;
mod server;

pub use packages::{Built, Project};
pub use server::TufaServer;

use std::fs::{self, File};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

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

fn run(command: &mut Command) -> Result<(), String> {
    let output = command
        .output()
        .map_err(|e| format!("running {command:?}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{command:?} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}
