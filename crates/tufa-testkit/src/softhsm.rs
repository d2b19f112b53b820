//! SoftHSM2, a software PKCS#11 token, for the tests of hardware-key signing.
//!
//! SoftHSM2 is a Debian package, not a crate, so it is installed with apt-get on first use (under
//! a file lock: test binaries run in parallel processes). Each [`SoftHsm`] is a fresh token in its
//! own directory with its own config file. SoftHSM2 reads that file's path from `SOFTHSM2_CONF`
//! once, when the module is initialized, for the whole process: so processes under test get it
//! through their environment ([`SoftHsm::env`]), and in-process tests run through
//! [`run_in_softhsm`], which re-executes the test binary with that environment (setting a
//! variable in a running process is `unsafe` in Rust 2024, and the workspace forbids `unsafe`).

use std::ffi::OsString;
use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::OnceLock;

/// Where Debian's `softhsm2` package puts the PKCS#11 module.
pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const SOFTHSM_UTIL: &str = "softhsm2-util";
/// The user PIN of every test token.
pub const SOFTHSM_PIN: &str = "1234";
const SO_PIN: &str = "12345678";
/// Set in the re-executed test binary: the token directory's parent and the token label.
const CHILD_DIR: &str = "TUFA_TEST_SOFTHSM_DIR";
const CHILD_TOKEN: &str = "TUFA_TEST_SOFTHSM_TOKEN";

/// A SoftHSM2 token in a directory of its own, removed on drop (unless borrowed from a parent
/// process, see [`run_in_softhsm`]).
#[derive(Debug)]
pub struct SoftHsm {
    dir: PathBuf,
    /// Removes the token directory on drop; `None` in a child that borrows its parent's.
    _owned: Option<tempfile::TempDir>,
    /// The token's label.
    pub token: String,
}

impl SoftHsm {
    /// Installs SoftHSM2 if needed and creates a token labelled `token` with user PIN
    /// [`SOFTHSM_PIN`]. Panics with the tool's output on failure: the test needs the token.
    pub fn new(token: &str) -> SoftHsm {
        ensure_installed();
        let owned = tempfile::Builder::new()
            .prefix("tufa-softhsm-")
            .tempdir()
            .expect("creating a temporary directory");
        let dir = owned.path().to_path_buf();
        let tokens = dir.join("tokens");
        fs::create_dir_all(&tokens).expect("creating the token directory");
        fs::write(
            dir.join("softhsm2.conf"),
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .expect("writing softhsm2.conf");
        let hsm = SoftHsm {
            dir,
            _owned: Some(owned),
            token: token.to_string(),
        };
        let output = Command::new(SOFTHSM_UTIL)
            .args(["--init-token", "--free", "--label", token])
            .args(["--so-pin", SO_PIN, "--pin", SOFTHSM_PIN])
            .envs(hsm.env())
            .output()
            .expect("running softhsm2-util");
        assert!(
            output.status.success(),
            "softhsm2-util --init-token: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        hsm
    }

    /// The config file `SOFTHSM2_CONF` must name for the module to find this token.
    pub fn conf(&self) -> PathBuf {
        self.dir.join("softhsm2.conf")
    }

    /// A PKCS#11 URI for the key labelled `object` on this token, without the PIN.
    pub fn uri(&self, object: &str) -> String {
        format!(
            "pkcs11:token={};object={object}?module-path={SOFTHSM_MODULE}",
            self.token
        )
    }

    /// The environment a process needs to use this token: its config and the PIN.
    pub fn env(&self) -> [(&'static str, OsString); 2] {
        [
            ("SOFTHSM2_CONF", self.conf().into_os_string()),
            ("TUFA_PKCS11_PIN", SOFTHSM_PIN.into()),
        ]
    }
}

/// A test run by [`run_in_softhsm`]: its name and its body.
pub type SoftHsmTest = (&'static str, fn(&SoftHsm));

/// Runs `tests` (name and function) of a `harness = false` test binary against one SoftHSM2
/// token, one after another, and returns the exit code: the process re-executes itself with
/// `SOFTHSM2_CONF` (and `TUFA_PKCS11_PIN`) set, and the child runs the tests. Command-line
/// arguments that do not start with `-` filter tests by name, as libtest does.
pub fn run_in_softhsm(tests: &[SoftHsmTest]) -> ExitCode {
    match (std::env::var_os(CHILD_DIR), std::env::var(CHILD_TOKEN)) {
        (Some(dir), Ok(token)) => run_tests(
            &SoftHsm {
                dir: dir.into(),
                _owned: None,
                token,
            },
            tests,
        ),
        _ => {
            let hsm = SoftHsm::new("tufa-test");
            let exe = std::env::current_exe().expect("the test binary's path");
            let status = Command::new(exe)
                .args(std::env::args_os().skip(1))
                .envs(hsm.env())
                .env(CHILD_DIR, &hsm.dir)
                .env(CHILD_TOKEN, &hsm.token)
                .status()
                .expect("re-running the test binary");
            if status.success() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn run_tests(hsm: &SoftHsm, tests: &[SoftHsmTest]) -> ExitCode {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let selected: Vec<_> = tests
        .iter()
        .filter(|(name, _)| filters.is_empty() || filters.iter().any(|f| name.contains(f)))
        .collect();
    println!(
        "\nrunning {} tests (one SoftHSM2 token, in sequence)",
        selected.len()
    );
    let mut failed = Vec::new();
    for (name, test) in &selected {
        let passed = catch_unwind(AssertUnwindSafe(|| test(hsm))).is_ok();
        println!("test {name} ... {}", if passed { "ok" } else { "FAILED" });
        if !passed {
            failed.push(*name);
        }
    }
    println!(
        "\ntest result: {}. {} passed; {} failed\n",
        if failed.is_empty() { "ok" } else { "FAILED" },
        selected.len() - failed.len(),
        failed.len()
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Installs the `softhsm2` package unless its tool and module are there.
fn ensure_installed() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        crate::apt::ensure_package(
            "softhsm2",
            || Path::new(SOFTHSM_MODULE).exists() && on_path(SOFTHSM_UTIL),
            "the PKCS#11 tests",
        )
    });
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}
