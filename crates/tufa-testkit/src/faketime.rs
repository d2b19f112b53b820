//! libfaketime: runs a real `tufa serve` with its clock moved, as a server whose clock is wrong
//! would run. It shifts what the process reads as the time; the kernel still stamps files with
//! the real time.

use std::ffi::OsString;
use std::path::Path;
use std::sync::OnceLock;

/// Where Debian's `libfaketime` package puts the preload library.
pub const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// The environment that runs a process with its wall clock moved by `offset` (libfaketime's
/// syntax: `+400d`, `-2d`, `+3h`). Its monotonic clock is left alone, as with a clock set wrong.
pub fn clock_offset_env(offset: &str) -> [(&'static str, OsString); 4] {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        crate::apt::ensure_package(
            "libfaketime",
            || Path::new(LIBFAKETIME).exists(),
            "the clock tests",
        )
    });
    [
        ("LD_PRELOAD", LIBFAKETIME.into()),
        ("FAKETIME", offset.into()),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1".into()),
        ("FAKETIME_NO_CACHE", "1".into()),
    ]
}
