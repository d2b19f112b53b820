//! Real PEP 740 material: the sdist of `pypi-attestations` 0.0.30 from PyPI ships, in
//! `test/assets/`, distribution files made by real Trusted Publishing (GitHub, GitLab, CircleCI,
//! Google Cloud Build) next to their attestations. Downloaded once with the test environment's
//! pip, checked against its known sha256, and unpacked under `target/`, so no large file is
//! committed.

use std::fs::{self, File};
use std::path::PathBuf;
use std::sync::OnceLock;

use crate::{PythonEnv, run, sha256_hex, target_dir};

const REQUIREMENT: &str = "pypi-attestations==0.0.30";
const SDIST: &str = "pypi_attestations-0.0.30.tar.gz";
/// The sdist's sha256 as PyPI serves it.
const SDIST_SHA256: &str = "14ff13c76bbef02a483c2b77532da02bfd746b5141b881f355e06b9807434423";

/// The `test/assets` directory of the unpacked sdist. Panics with pip's output when it cannot
/// be had: every test that asks for it needs it.
pub fn pypi_attestations_assets() -> PathBuf {
    static ASSETS: OnceLock<PathBuf> = OnceLock::new();
    ASSETS
        .get_or_init(|| fetch().unwrap_or_else(|e| panic!("{e}")))
        .clone()
}

fn fetch() -> Result<PathBuf, String> {
    let root = target_dir().join("pypi-attestations-0.0.30");
    let assets = root
        .join("pypi_attestations-0.0.30")
        .join("test")
        .join("assets");
    let ready = root.join(".tufa-ready");
    if ready.exists() {
        return Ok(assets);
    }
    fs::create_dir_all(&root).map_err(|e| format!("creating {}: {e}", root.display()))?;
    let lock_path = target_dir().join("pypi-attestations.lock");
    let lock =
        File::create(&lock_path).map_err(|e| format!("creating {}: {e}", lock_path.display()))?;
    lock.lock()
        .map_err(|e| format!("locking {}: {e}", lock_path.display()))?;
    if ready.exists() {
        return Ok(assets);
    }
    let env = PythonEnv::shared();
    run(env
        .command("python")
        .args([
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--no-binary",
            ":all:",
            REQUIREMENT,
            "-d",
        ])
        .arg(&root))
    .or_else(|_| {
        // Preparing the sdist's metadata needs its build backend; fetching the bytes does not.
        run(env
            .command("python")
            .args(["-c", FETCH_SCRIPT])
            .arg(root.join(SDIST)))
    })?;
    let sdist = root.join(SDIST);
    let bytes = fs::read(&sdist).map_err(|e| format!("reading {}: {e}", sdist.display()))?;
    let sha256 = sha256_hex(&bytes);
    if sha256 != SDIST_SHA256 {
        return Err(format!(
            "{} has sha256 {sha256}, not PyPI's {SDIST_SHA256}",
            sdist.display()
        ));
    }
    run(env
        .command("python")
        .args([
            "-c",
            "import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2], filter='data')",
        ])
        .arg(&sdist)
        .arg(&root))?;
    fs::write(&ready, "").map_err(|e| format!("writing {}: {e}", ready.display()))?;
    Ok(assets)
}

/// Downloads the sdist's bytes from PyPI's JSON API when `pip download` cannot prepare it.
const FETCH_SCRIPT: &str = r#"
import json, sys, urllib.request
info = json.load(urllib.request.urlopen("https://pypi.org/pypi/pypi-attestations/0.0.30/json"))
url = next(f["url"] for f in info["urls"] if f["packagetype"] == "sdist")
with urllib.request.urlopen(url) as response, open(sys.argv[1], "wb") as out:
    out.write(response.read())
"#;
