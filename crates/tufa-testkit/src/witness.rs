//! A real `tufa witness serve` process on a free loopback port, stopped when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};

/// A running transparency-log witness, with everything it logged.
pub struct TufaWitness {
    child: Child,
    pub url: String,
    log: Arc<Mutex<String>>,
}

impl TufaWitness {
    /// Generates a witness key named `name` at `key` (unless the file exists) and returns its
    /// verifier key.
    pub fn key(tufa: &Path, name: &str, key: &Path) -> String {
        if !key.exists() {
            let output = Command::new(tufa)
                .args(["witness", "key", "--name", name])
                .arg(key)
                .output()
                .expect("running tufa witness key");
            assert!(
                output.status.success(),
                "tufa witness key: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let mut public = key.as_os_str().to_owned();
        public.push(".pub");
        std::fs::read_to_string(PathBuf::from(public))
            .expect("the witness's verifier key")
            .trim()
            .to_string()
    }

    /// Starts `tufa witness serve` with `key`, its state in `state`, and `extra_args` naming the
    /// logs it follows (`--log KEY`, `--log-from-root ROOT`); waits until it listens.
    pub fn start(tufa: &Path, key: &Path, state: &Path, extra_args: &[&str]) -> TufaWitness {
        let mut command = Command::new(tufa);
        command
            .args(["witness", "serve", "--listen", "127.0.0.1:0", "--key"])
            .arg(key)
            .arg("--state")
            .arg(state)
            .args(extra_args);
        let (child, url, log) = crate::server::spawn_listening(command, "tufa: witness");
        TufaWitness { child, url, log }
    }

    /// What the witness has logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Kills the witness at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for TufaWitness {
    fn drop(&mut self) {
        self.kill();
    }
}
