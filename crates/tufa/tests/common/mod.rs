//! What the end-to-end tests of the `tufa` binary share: running it, and uploading with twine.

#![allow(dead_code)] // Each test binary uses its own part of this module.

use std::path::Path;
use std::process::{Command, Output};

use tufa_testkit::{PythonEnv, TufaServer};

pub const TUFA: &str = env!("CARGO_BIN_EXE_tufa");

pub fn tufa(args: &[&str]) -> Output {
    Command::new(TUFA)
        .args(args)
        .output()
        .expect("running tufa")
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
