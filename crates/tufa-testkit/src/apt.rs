//! Debian packages the tests need that are not crates or Python packages (SoftHSM2, libfaketime):
//! installed with apt-get on first use, so a fresh machine needs nothing by hand.

use std::fs::{self, File};
use std::process::Command;

/// Installs `package` unless `present()` already holds, under a file lock across test processes.
pub fn ensure_package(package: &str, present: impl Fn() -> bool, needed_by: &str) {
    if present() {
        return;
    }
    let target = crate::target_dir();
    fs::create_dir_all(&target).expect("creating the target directory");
    let lock = File::create(target.join("apt-install.lock")).expect("creating the lock");
    lock.lock().expect("locking apt-install.lock");
    if present() {
        return;
    }
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output()
            .map_err(|e| format!("running apt-get: {e}"))
    };
    // Try without refreshing the package lists first: it is much faster when they are fresh.
    let installed = apt(&["install", "-y", "-q", package]);
    let installed = match installed {
        Ok(output) if output.status.success() => Ok(output),
        _ => apt(&["update", "-q"]).and_then(|_| apt(&["install", "-y", "-q", package])),
    };
    match installed {
        Ok(output) if output.status.success() && present() => {}
        Ok(output) => panic!(
            "installing {package} with apt-get failed ({needed_by} need it; install it as root \
             with `apt-get install {package}`):\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
        Err(error) => panic!("{error}: {needed_by} need {package} (apt-get)"),
    }
}
