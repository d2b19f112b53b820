//! The signed payload: DSSE's pre-authentication encoding, and the in-toto Statement v1 a PEP 740
//! attestation signs, checked the way pypi-attestations' `Attestation.verify` checks it.

use serde::Deserialize;

use crate::Error;

/// The DSSE payload type of an in-toto statement.
pub(crate) const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
const STATEMENT_V1: &str = "https://in-toto.io/Statement/v1";
/// The predicate types PyPI accepts (pypi-attestations' `AttestationType`).
pub const PREDICATE_TYPES: [&str; 2] = [
    "https://docs.pypi.org/attestations/publish/v1",
    "https://slsa.dev/provenance/v1",
];

/// DSSE v1 pre-authentication encoding: `"DSSEv1" SP len(type) SP type SP len(body) SP body`,
/// lengths as ASCII decimal byte counts. This is what the signature covers.
pub(crate) fn pae(payload_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

#[derive(Deserialize)]
struct Statement {
    #[serde(rename = "_type")]
    type_: String,
    subject: Vec<Subject>,
    #[serde(rename = "predicateType")]
    predicate_type: String,
}

#[derive(Deserialize)]
struct Subject {
    #[serde(default)]
    name: String,
    #[serde(default)]
    digest: std::collections::BTreeMap<String, String>,
}

/// Checks the statement: in-toto Statement v1, a predicate type PyPI accepts, exactly one
/// subject, naming this distribution (see [`same_distribution`]) with this sha256. Returns the
/// predicate type.
pub(crate) fn check(statement: &[u8], filename: &str, sha256: &[u8; 32]) -> Result<String, Error> {
    let statement: Statement = serde_json::from_slice(statement).map_err(|e| {
        Error::malformed(
            "envelope.statement",
            format!("not an in-toto statement: {e}"),
        )
    })?;
    if statement.type_ != STATEMENT_V1 {
        return Err(Error::UnsupportedStatement(statement.type_));
    }
    let [subject] = statement.subject.as_slice() else {
        return Err(Error::SubjectCount(statement.subject.len()));
    };
    if !same_distribution(&subject.name, filename)? {
        return Err(Error::SubjectMismatch {
            expected: filename.to_owned(),
            found: subject.name.clone(),
        });
    }
    let expected = hex::encode(sha256);
    match subject.digest.get("sha256") {
        Some(found) if *found == expected => {}
        found => {
            return Err(Error::DigestMismatch {
                expected,
                found: found.cloned().unwrap_or_else(|| "no sha256".into()),
            });
        }
    }
    if !PREDICATE_TYPES.contains(&statement.predicate_type.as_str()) {
        return Err(Error::UnsupportedPredicate(statement.predicate_type));
    }
    Ok(statement.predicate_type)
}

/// A distribution filename parsed as `packaging.utils.parse_wheel_filename` /
/// `parse_sdist_filename` parse it, which is what pypi-attestations compares: the normalized
/// project name, the version, the wheel's build tag and its expanded tag set.
#[derive(PartialEq, Eq, Debug)]
struct DistName {
    name: String,
    version: pep440_rs::Version,
    build: Option<String>,
    tags: std::collections::BTreeSet<(String, String, String)>,
}

/// PEP 503 normalization: lowercase, runs of `-`, `_`, `.` become one `-`.
fn normalize_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !out.ends_with('-') {
                out.push('-');
            }
        } else {
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// A PEP 440 version, compared as `packaging.version.Version` compares (so `1.0` is `1.0.0`
/// and `1.0a1` is `1.0alpha1`), through the implementation the index already uses.
fn parse_version(version: &str) -> Result<pep440_rs::Version, String> {
    version
        .parse()
        .map_err(|e| format!("invalid version {version:?}: {e}"))
}

fn parse_dist(filename: &str) -> Result<DistName, String> {
    if let Some(stem) = filename.strip_suffix(".whl") {
        let parts: Vec<&str> = stem.split('-').collect();
        let (name, version, build, py, abi, plat) = match parts.as_slice() {
            [n, v, p, a, pl] => (n, v, None, p, a, pl),
            [n, v, b, p, a, pl] => (n, v, Some(*b), p, a, pl),
            _ => return Err(format!("invalid wheel filename {filename:?}")),
        };
        if build.is_some_and(|b| !b.starts_with(|c: char| c.is_ascii_digit())) {
            return Err(format!("invalid build tag in {filename:?}"));
        }
        let mut tags = std::collections::BTreeSet::new();
        for p in py.split('.') {
            for a in abi.split('.') {
                for pl in plat.split('.') {
                    tags.insert((
                        p.to_ascii_lowercase(),
                        a.to_ascii_lowercase(),
                        pl.to_ascii_lowercase(),
                    ));
                }
            }
        }
        return Ok(DistName {
            name: normalize_name(name),
            version: parse_version(version)?,
            build: build.map(str::to_owned),
            tags,
        });
    }
    let Some(stem) = filename
        .strip_suffix(".tar.gz")
        .or_else(|| filename.strip_suffix(".zip"))
    else {
        return Err(format!("unknown distribution format: {filename:?}"));
    };
    let Some((name, version)) = stem.rsplit_once('-') else {
        return Err(format!("invalid sdist filename {filename:?}"));
    };
    Ok(DistName {
        name: normalize_name(name),
        version: parse_version(version)?,
        build: None,
        tags: Default::default(),
    })
}

/// Whether the statement's subject names the distribution `filename`: both must parse as
/// distribution filenames, and their parsed forms must be equal.
pub(crate) fn same_distribution(subject: &str, filename: &str) -> Result<bool, Error> {
    if subject.is_empty() {
        return Err(Error::malformed("statement.subject[0].name", "missing"));
    }
    let subject =
        parse_dist(subject).map_err(|e| Error::malformed("statement.subject[0].name", e))?;
    let file = parse_dist(filename).map_err(Error::InvalidFilename)?;
    Ok(subject == file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_is_dssev1() {
        assert_eq!(pae("t/x", b"hello"), b"DSSEv1 3 t/x 5 hello");
    }

    #[test]
    fn subjects_compare_as_parsed_filenames() {
        let same = |a: &str, b: &str| same_distribution(a, b).unwrap();
        assert!(same("Foo_Bar-1.0.tar.gz", "foo-bar-1.0.tar.gz"));
        assert!(same(
            "foo-1.0-py2.py3-none-any.whl",
            "foo-1.0-py3.py2-none-any.whl"
        ));
        assert!(!same("foo-1.0.tar.gz", "foo-1.1.tar.gz"));
        assert!(same("foo-1.0.tar.gz", "foo-1.0.0.tar.gz"));
        assert!(same("foo-1.0a1.tar.gz", "foo-1.0alpha1.tar.gz"));
        assert!(!same("foo-1.0a1.tar.gz", "foo-1.0b1.tar.gz"));
        // packaging parses both sdist forms to the same (name, version); the digest tells them apart.
        assert!(same("foo-1.0.tar.gz", "foo-1.0.zip"));
        assert!(!same(
            "foo-1.0-py3-none-any.whl",
            "foo-1.0-py3-none-linux_x86_64.whl"
        ));
        assert!(!same(
            "foo-1.0-1-py3-none-any.whl",
            "foo-1.0-py3-none-any.whl"
        ));
        assert!(!same("foo-1.0.tar.gz", "bar-1.0.tar.gz"));
        assert!(same_distribution("foo-1.0.exe", "foo-1.0.tar.gz").is_err());
    }
}
