//! Core metadata (the `METADATA` file of a wheel, `PKG-INFO` of an sdist): read from the uploaded
//! archive itself, because form fields are only what the uploading tool claims.
//!
//! The format is RFC 822 headers with continuation lines, then an optional body holding the
//! description. It is parsed by hand: the Python packaging format is not quite email (no encoded
//! words, UTF-8 throughout), and the crates for mail headers decode and reject things that
//! packaging tools write, which would refuse valid uploads.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use crate::dist::{Archive, DistFilename};
use crate::error::Invalid;
use crate::name::{ProjectName, Version};

/// Core metadata larger than this is refused: real files are a few kilobytes to a few hundred
/// (long READMEs), and the limit stops a crafted archive from filling memory.
const MAX_METADATA_BYTES: u64 = 16 * 1024 * 1024;
/// An sdist is decompressed only until its `PKG-INFO` is found, and never further than this: a
/// small gzip stream can expand without bound.
const MAX_SDIST_SCAN_BYTES: u64 = 1024 * 1024 * 1024;

/// Parsed core metadata, with the exact bytes it came from (served as the PEP 658 file).
#[derive(Clone, Debug)]
pub struct CoreMetadata {
    pub bytes: Vec<u8>,
    headers: Vec<(String, String)>,
    body: Option<String>,
    pub name: ProjectName,
    pub display_name: String,
    pub version: Version,
}

fn invalid(filename: &str, reason: impl Into<String>) -> Invalid {
    Invalid::Metadata {
        filename: filename.to_string(),
        reason: reason.into(),
    }
}

impl CoreMetadata {
    pub fn parse(filename: &str, bytes: Vec<u8>) -> Result<Self, Invalid> {
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| invalid(filename, "core metadata is not UTF-8"))?;
        let text = text.replace("\r\n", "\n");
        let (head, body) = match text.split_once("\n\n") {
            Some((head, body)) => (head, Some(body)),
            None => (text.as_str(), None),
        };
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in head.lines() {
            if line.starts_with([' ', '\t']) {
                let (_, value) = headers.last_mut().ok_or_else(|| {
                    invalid(filename, "a continuation line comes before any field")
                })?;
                value.push('\n');
                value.push_str(line.trim_start_matches([' ', '\t']).trim_start_matches('|'));
                continue;
            }
            let (key, value) = line.split_once(':').ok_or_else(|| {
                invalid(
                    filename,
                    format!("line {line:?} is not a 'Field: value' header"),
                )
            })?;
            headers.push((key.trim().to_string(), value.trim().to_string()));
        }
        let field = |name: &str| {
            headers
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| value.clone())
                .filter(|value| !value.is_empty())
                .ok_or_else(|| invalid(filename, format!("the required field {name} is missing")))
        };
        field("Metadata-Version")?;
        let display_name = field("Name")?;
        let name = ProjectName::new(&display_name).map_err(|e| invalid(filename, e.to_string()))?;
        let version =
            Version::new(&field("Version")?).map_err(|e| invalid(filename, e.to_string()))?;
        let body = body.map(str::to_string).filter(|b| !b.trim().is_empty());
        Ok(CoreMetadata {
            bytes,
            headers,
            body,
            name,
            display_name,
            version,
        })
    }

    /// The first value of a field, compared without case as the format says.
    pub fn get(&self, field: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(field))
            .map(|(_, value)| value.as_str())
    }

    /// Every value of a repeatable field (`Classifier`, `Requires-Dist`, `Project-URL`).
    pub fn get_all(&self, field: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(key, _)| key.eq_ignore_ascii_case(field))
            .map(|(_, value)| value.as_str())
            .collect()
    }

    /// The long description: the body (metadata 2.1+) or the `Description` field.
    pub fn description(&self) -> Option<&str> {
        self.body.as_deref().or_else(|| self.get("Description"))
    }

    /// Reads and parses the core metadata inside a distribution file.
    pub fn from_archive(path: &Path, dist: &DistFilename) -> Result<Self, Invalid> {
        let name = &dist.filename;
        let archive_error = |reason: String| Invalid::Archive {
            filename: name.clone(),
            reason,
        };
        let file = File::open(path).map_err(|e| archive_error(format!("cannot read it: {e}")))?;
        let reader = BufReader::new(file);
        let bytes = match dist.archive {
            Archive::Wheel => read_wheel_metadata(reader),
            Archive::Zip => read_zip_sdist_metadata(reader),
            Archive::TarGz => read_tar_metadata(flate2::read::GzDecoder::new(reader), ".tar.gz"),
            Archive::TarBz2 => read_tar_metadata(bzip2::read::BzDecoder::new(reader), ".tar.bz2"),
            Archive::TarXz => read_tar_metadata(liblzma::read::XzDecoder::new(reader), ".tar.xz"),
            Archive::Tar => read_tar_metadata(reader, ".tar"),
        }
        .map_err(archive_error)?;
        CoreMetadata::parse(name, bytes)
    }
}

fn read_limited(reader: impl Read, what: &str) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    reader
        .take(MAX_METADATA_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {what}: {e}"))?;
    if bytes.len() as u64 > MAX_METADATA_BYTES {
        return Err(format!("{what} is larger than {MAX_METADATA_BYTES} bytes"));
    }
    Ok(bytes)
}

fn read_wheel_metadata(file: BufReader<File>) -> Result<Vec<u8>, String> {
    let mut archive =
        zip::ZipArchive::new(file).map_err(|e| format!("not a valid zip archive: {e}"))?;
    let candidates: Vec<String> = archive
        .file_names()
        .filter_map(Result::ok)
        .filter(|entry| {
            entry
                .strip_suffix(".dist-info/METADATA")
                .is_some_and(|dir| !dir.is_empty() && !dir.contains('/'))
        })
        .map(|entry| entry.into_owned())
        .collect();
    let entry = match candidates.as_slice() {
        [one] => one,
        [] => return Err("a wheel must contain {name}-{version}.dist-info/METADATA".into()),
        _ => return Err("a wheel must contain exactly one .dist-info/METADATA".into()),
    };
    let metadata = archive
        .by_name(entry)
        .map_err(|e| format!("cannot open {entry}: {e}"))?;
    read_limited(metadata, entry)
}

/// Whether an sdist entry is its `PKG-INFO`: `{name}-{version}/PKG-INFO`, one level deep.
fn is_top_pkg_info(path: &Path) -> bool {
    path.components().count() == 2 && path.ends_with("PKG-INFO")
}

fn read_tar_metadata(decoded: impl Read, format: &str) -> Result<Vec<u8>, String> {
    let mut archive = tar::Archive::new(decoded.take(MAX_SDIST_SCAN_BYTES));
    let entries = archive
        .entries()
        .map_err(|e| format!("not a valid {format} archive: {e}"))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("not a valid {format} archive: {e}"))?;
        let path = entry
            .path()
            .map_err(|e| format!("an entry has an invalid path: {e}"))?
            .into_owned();
        if is_top_pkg_info(&path) {
            return read_limited(entry, "PKG-INFO");
        }
    }
    Err("a source distribution must contain {name}-{version}/PKG-INFO".into())
}

/// A `.zip` sdist (setuptools' default on Windows until 2020): the same layout as a tarball.
fn read_zip_sdist_metadata(file: BufReader<File>) -> Result<Vec<u8>, String> {
    let mut archive =
        zip::ZipArchive::new(file).map_err(|e| format!("not a valid zip archive: {e}"))?;
    let entry = archive
        .file_names()
        .filter_map(Result::ok)
        .find(|name| is_top_pkg_info(Path::new(name.as_ref())))
        .map(|name| name.into_owned())
        .ok_or("a source distribution must contain {name}-{version}/PKG-INFO")?;
    let metadata = archive
        .by_name(&entry)
        .map_err(|e| format!("cannot open {entry}: {e}"))?;
    read_limited(metadata, "PKG-INFO")
}

#[cfg(test)]
mod tests {
    use super::*;

    const METADATA: &str = "Metadata-Version: 2.1\nName: Tufa_Demo\nVersion: 1.0\n\
        Requires-Python: >=3.8\nClassifier: A\nClassifier: B\nLicense: line one\n        line two\n\n# Readme\n";

    #[test]
    fn fields_continuations_and_body() {
        let meta = CoreMetadata::parse("x", METADATA.as_bytes().to_vec()).unwrap();
        assert_eq!(meta.name.as_str(), "tufa-demo");
        assert_eq!(meta.display_name, "Tufa_Demo");
        assert_eq!(meta.version.as_str(), "1.0");
        assert_eq!(meta.get("requires-python"), Some(">=3.8"));
        assert_eq!(meta.get_all("Classifier"), ["A", "B"]);
        assert_eq!(meta.get("License"), Some("line one\nline two"));
        assert_eq!(meta.description(), Some("# Readme\n"));
    }

    #[test]
    fn missing_fields_are_named() {
        let error = CoreMetadata::parse("f.whl", b"Metadata-Version: 2.1\nName: x\n".to_vec())
            .unwrap_err()
            .to_string();
        assert!(error.contains("Version is missing"), "{error}");
        let error = CoreMetadata::parse("f.whl", b"garbage".to_vec())
            .unwrap_err()
            .to_string();
        assert!(error.contains("not a 'Field: value' header"), "{error}");
    }
}
