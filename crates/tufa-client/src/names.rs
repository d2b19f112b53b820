//! How role names and target paths become URL path segments and local file names.
//!
//! Role names and target paths may hold any character (`?`, `#`, `%`, `/`, spaces, unicode):
//! percent-encoding keeps them from changing a URL's meaning or escaping a directory. The set
//! of characters left as they are is Python's `urllib.parse.quote(name, safe="")`, so requests
//! match what python-tuf sends and what the tuf-conformance suite expects.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// One percent-encoded URL path segment or file name component.
pub fn encode_component(text: &str) -> String {
    utf8_percent_encode(text, COMPONENT).to_string()
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

/// The file name a target is stored under in a download directory: the whole target path in one
/// percent-encoded component, so every target lands at one fixed path and never outside the
/// directory. Names made only of dots would mean the directory itself or its parent, so their
/// dots are encoded too.
pub fn target_file_name(path: &str) -> String {
    let name = encode_component(path);
    if name.bytes().all(|b| b == b'.') {
        return "%2E".repeat(name.len());
    }
    name
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
}
