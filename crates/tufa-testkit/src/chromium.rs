//! A real headless Chromium (Debian's `chromium` package, installed with apt-get on first use)
//! for the tests of the web pages: the DOM after the page ran (`--dump-dom`) and screenshots.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const CHROMIUM: &str = "/usr/bin/chromium";

/// The longest a page load may take before the test fails: Chromium is started anew for each.
const PAGE_TIMEOUT: Duration = Duration::from_secs(60);

/// Headless Chromium, one fresh profile per run, no network but the page asked for.
pub struct Chromium {
    profiles: PathBuf,
}

impl Chromium {
    /// Installs Chromium when it is missing.
    pub fn new() -> Chromium {
        crate::ensure_package(
            "chromium",
            || Path::new(CHROMIUM).exists(),
            "the web page tests",
        );
        let profiles = crate::target_dir().join("chromium-profiles");
        std::fs::create_dir_all(&profiles).expect("creating the Chromium profiles directory");
        Chromium { profiles }
    }

    fn command(&self) -> Command {
        static RUNS: AtomicU64 = AtomicU64::new(0);
        let profile = self.profiles.join(format!(
            "{}-{}",
            std::process::id(),
            RUNS.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&profile);
        let mut command = Command::new("timeout");
        command
            .arg(PAGE_TIMEOUT.as_secs().to_string())
            .arg(CHROMIUM)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
            ])
            .arg(format!("--user-data-dir={}", profile.display()));
        command
    }

    /// The page's DOM, serialized after it loaded and ran whatever it was allowed to run.
    pub fn dump_dom(&self, url: &str) -> String {
        let output = self
            .command()
            .args(["--virtual-time-budget=2000", "--dump-dom", url])
            .output()
            .expect("running chromium");
        assert!(
            output.status.success(),
            "chromium --dump-dom {url} failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// A PNG of the page at `width` by `height` CSS pixels, written to `path`.
    pub fn screenshot(&self, url: &str, path: &Path, (width, height): (u32, u32)) {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("creating the screenshot directory");
        }
        let _ = std::fs::remove_file(path);
        let output = self
            .command()
            .arg(format!("--screenshot={}", path.display()))
            .arg(format!("--window-size={width},{height}"))
            .arg(url)
            .output()
            .expect("running chromium");
        assert!(
            output.status.success() && path.exists(),
            "chromium --screenshot {url} failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Default for Chromium {
    fn default() -> Self {
        Self::new()
    }
}
