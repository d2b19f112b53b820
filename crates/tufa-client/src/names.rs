//! How role names and target paths become URL path segments and local file names.
//!
//! Role names and target paths may hold any character (`?`, `#`, `%`, `/`, spaces, unicode):
//! percent-encoding keeps them from changing a URL's meaning or escaping a directory. The set
//! of characters left as they are is Python's `urllib.parse.quote(name, safe="")`, so requests
//! match what python-tuf sends and what the tuf-conformance suite expects.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use ring::digest;
use tufa_metadata::HexDigest;

const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// One percent-encoded URL path segment or file name component.
pub fn encode_component(text: &str) -> String {
    utf8_percent_encode(text, COMPONENT).to_string()
}

/// The longest file name the client writes, in bytes. Most Linux, macOS and Windows filesystems
/// allow 255; eCryptfs with encrypted names (the encrypted home directories of some Linux
/// installs) allows 143, the smallest limit a user's cache directory is likely to sit on.
pub const MAX_FILE_NAME: usize = 143;

/// `name` (an [`encode_component`] result) as a file name of at most [`MAX_FILE_NAME`] bytes.
/// A name that fits is kept, so caches stay readable and match python-tuf's layout; a longer
/// one becomes its first bytes, `+`, and the hex SHA-256 of the whole name. A hash of the name,
/// not of the file's content, keeps each target at one fixed path that a new version replaces,
/// instead of a new file per version left for someone to collect. `+` never occurs in an encoded
/// name (it is `%2B` there), so a shortened name cannot equal a name that was kept.
fn bounded_file_name(name: String) -> String {
    if name.len() <= MAX_FILE_NAME {
        return name;
    }
    let hash = HexDigest::from_bytes(digest::digest(&digest::SHA256, name.as_bytes()).as_ref());
    let hash = hash.as_str();
    let keep = MAX_FILE_NAME - hash.len() - 1;
    let start = name.get(..keep).unwrap_or_default();
    format!("{start}+{hash}")
}

/// `<role>.json`, or `<version>.<role>.json` under consistent snapshots.
pub(crate) fn metadata_file(role: &str, version: Option<u64>) -> String {
    let role = encode_component(role);
    match version {
        Some(version) => format!("{version}.{role}.json"),
        None => format!("{role}.json"),
    }
}

/// The URL path of a target below the targets base URL, each segment percent-encoded. With a
/// hash prefix the basename becomes `<hash>.<basename>` (consistent snapshots).
pub(crate) fn target_url_path(path: &str, hash_prefix: Option<&str>) -> String {
    let (dir, base) = match path.rsplit_once('/') {
        Some((dir, base)) => (Some(dir), base),
        None => (None, path),
    };
    let base = match hash_prefix {
        Some(hash) => format!("{hash}.{base}"),
        None => base.to_string(),
    };
    let mut segments: Vec<String> = dir
        .map(|dir| dir.split('/').map(encode_component).collect())
        .unwrap_or_default();
    segments.push(encode_component(&base));
    segments.join("/")
}

/// The file a role's metadata is cached in: `<role>.json`, bounded like target file names, as
/// delegated role names have no length limit.
pub(crate) fn metadata_cache_file(role: &str) -> String {
    bounded_file_name(metadata_file(role, None))
}

/// The file name a target is stored under in a download directory: the whole target path in one
/// percent-encoded component, so every target lands at one fixed path and never outside the
/// directory, shortened as [`bounded_file_name`] says when it would pass [`MAX_FILE_NAME`].
/// Names made only of dots would mean the directory itself or its parent, so their dots are
/// encoded too.
pub fn target_file_name(path: &str) -> String {
    let name = encode_component(path);
    if name.bytes().all(|b| b == b'.') {
        return bounded_file_name("%2E".repeat(name.len()));
    }
    bounded_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_quoted_like_python_quote_with_nothing_safe() {
        // Expected values from Python 3.11: urllib.parse.quote(name, safe="").
        assert_eq!(encode_component("?"), "%3F");
        assert_eq!(encode_component("#"), "%23");
        assert_eq!(encode_component("/delegatedrole"), "%2Fdelegatedrole");
        assert_eq!(encode_component("../delegatedrole"), "..%2Fdelegatedrole");
        assert_eq!(encode_component("a b%c"), "a%20b%25c");
        assert_eq!(encode_component("bin-0a_x.y~z"), "bin-0a_x.y~z");
        assert_eq!(encode_component("ünï"), "%C3%BCn%C3%AF");
    }

    #[test]
    fn metadata_and_target_paths() {
        assert_eq!(metadata_file("bin-0a", Some(3)), "3.bin-0a.json");
        assert_eq!(metadata_file("a/b", None), "a%2Fb.json");
        assert_eq!(
            target_url_path("simple/x/index.json", Some("ab")),
            "simple/x/ab.index.json"
        );
        assert_eq!(target_url_path("a b/c?d#", None), "a%20b/c%3Fd%23");
        assert_eq!(target_file_name("a/b.txt"), "a%2Fb.txt");
        assert_eq!(target_file_name(".."), "%2E%2E");
        assert_eq!(target_file_name("."), "%2E");
    }

    #[test]
    fn long_names_are_shortened_to_a_fixed_length_and_stay_distinct() {
        let fits = format!("simple/{}/index.json", "a".repeat(MAX_FILE_NAME - 22));
        assert_eq!(target_file_name(&fits), encode_component(&fits));
        assert_eq!(target_file_name(&fits).len(), MAX_FILE_NAME);
        let long = |name: &str| format!("simple/{name}/index.json");
        let a = target_file_name(&long(&"a".repeat(240)));
        let b = target_file_name(&long(&format!("{}b", "a".repeat(239))));
        assert_eq!(a.len(), MAX_FILE_NAME);
        assert_eq!(b.len(), MAX_FILE_NAME);
        assert_ne!(a, b);
        assert!(a.starts_with("simple%2Faaaa") && a.contains('+'), "{a}");
        assert_eq!(target_file_name(&".".repeat(200)).len(), MAX_FILE_NAME);
        assert!(!target_file_name(&".".repeat(200)).starts_with('.'));
        assert_eq!(metadata_cache_file("bin-0a"), "bin-0a.json");
        assert_eq!(metadata_cache_file(&"r".repeat(300)).len(), MAX_FILE_NAME);
    }
}
