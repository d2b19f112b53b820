//! PEP 740 provenance on the index side: the attestations an upload carries, verified against the
//! uploaded file (tufa-provenance), grouped into PyPI's provenance object as the Integrity API
//! serves it (`GET /integrity/<project>/<version>/<filename>/provenance`), and referenced from
//! the project's pages.
//!
//! The provenance object is stored as the exact bytes served, and the page signs their sha256
//! (see [`crate::pages`]), so the Integrity API needs no TUF target of its own: a proxy or
//! client that verified the page checks the provenance it fetched against that digest.

use serde_json::{Map, Value, json};
use tufa_provenance::{Attestation, Publisher, TrustRoot};

use crate::db::NewProvenance;
use crate::name::ProjectName;

/// The Integrity API's media type, as Warehouse answers it.
pub const CONTENT_TYPE: &str = "application/vnd.pypi.integrity.v1+json";

/// The media type answering an `Accept` header, as Warehouse chooses it: the integrity type
/// first, then plain JSON; `None` when the client takes neither (a 406).
pub fn negotiate(accept: Option<&str>) -> Option<&'static str> {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return Some(CONTENT_TYPE);
    };
    let offers: Vec<(String, bool)> = accept
        .split(',')
        .map(|range| {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let refused = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            (media, !refused)
        })
        .collect();
    let takes = |wanted: &str| {
        let (kind, _) = wanted.split_once('/').unwrap_or((wanted, ""));
        offers.iter().any(|(media, accepted)| {
            *accepted && (media == wanted || media == "*/*" || *media == format!("{kind}/*"))
        })
    };
    [CONTENT_TYPE, "application/json"]
        .into_iter()
        .find(|wanted| takes(wanted))
}

/// Why an upload's attestations were refused; the text goes into the 400's status line.
#[derive(Debug, thiserror::Error)]
pub enum ProvenanceError {
    #[error("Invalid attestations: {0}")]
    Malformed(tufa_provenance::Error),
    #[error(
        "Invalid attestation {number} of {count} for {filename}: {source} (an attestation must be \
         made for this very file, by a Trusted Publisher, and logged in Sigstore's transparency \
         log; upload without --attestations to publish the file unattested)"
    )]
    Unverified {
        number: usize,
        count: usize,
        filename: String,
        source: tufa_provenance::Error,
    },
    #[error(
        "The attestations for {filename} name two publishers ({first} and {second}): a file's \
         attestations must all come from the Trusted Publisher that built it"
    )]
    TwoPublishers {
        filename: String,
        first: String,
        second: String,
    },
}

/// The publisher in the form PyPI's provenance objects give it (pypi-attestations' publisher
/// models): the certificate's fields, and for GitHub and GitLab an `environment` that is null
/// when the certificate names none (it never does; PyPI fills it from its publisher settings).
pub fn pypi_publisher(publisher: &Publisher) -> Value {
    let mut object = match serde_json::to_value(publisher) {
        Ok(Value::Object(object)) => object,
        _ => Map::new(),
    };
    if matches!(publisher.kind.as_str(), "GitHub" | "GitLab") {
        object.entry("environment").or_insert(Value::Null);
    }
    Value::Object(object)
}

/// Verifies the upload form's `attestations` field (a JSON array, as twine and `uv publish` send
/// it) against the uploaded file, and builds the provenance object to record with it. An empty
/// array is no provenance.
pub fn verify_upload(
    root: &TrustRoot,
    field: &str,
    filename: &str,
    sha256: &[u8; 32],
) -> Result<Option<NewProvenance>, ProvenanceError> {
    let attestations = tufa_provenance::parse_attestations(field.as_bytes())
        .map_err(ProvenanceError::Malformed)?;
    if attestations.is_empty() {
        return Ok(None);
    }
    let count = attestations.len();
    let mut publisher: Option<Publisher> = None;
    for (index, attestation) in attestations.iter().enumerate() {
        let named = attestation
            .verify(root, filename, sha256)
            .map_err(|source| ProvenanceError::Unverified {
                number: index + 1,
                count,
                filename: filename.to_string(),
                source,
            })?;
        match &publisher {
            None => publisher = Some(named),
            Some(first) if *first != named => {
                return Err(ProvenanceError::TwoPublishers {
                    filename: filename.to_string(),
                    first: first.to_string(),
                    second: named.to_string(),
                });
            }
            Some(_) => {}
        }
    }
    let Some(publisher) = publisher else {
        return Ok(None);
    };
    Ok(Some(provenance_object(&publisher, &attestations)))
}

/// PyPI's provenance object for attestations of one publisher, serialized once: these bytes are
/// what is served and what the page's digest covers.
fn provenance_object(publisher: &Publisher, attestations: &[Attestation]) -> NewProvenance {
    let object = json!({
        "version": 1,
        "attestation_bundles": [{
            "publisher": pypi_publisher(publisher),
            "attestations": attestations,
        }],
    });
    let json = object.to_string();
    NewProvenance {
        sha256: hex::encode(ring::digest::digest(&ring::digest::SHA256, json.as_bytes())),
        json,
        publisher: serde_json::to_string(publisher).unwrap_or_default(),
    }
}

/// Where the Integrity API serves a file's provenance, as an absolute path: like file URLs, it
/// resolves against whichever host served the page, so the signed page names no host.
pub fn provenance_path(project: &ProjectName, version: &str, filename: &str) -> String {
    format!("/integrity/{project}/{version}/{filename}/provenance")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn github() -> Publisher {
        Publisher {
            kind: "GitHub".into(),
            repository: "trailofbits/rfc8785.py".into(),
            workflow: Some("release.yml".into()),
            ..Publisher::default()
        }
    }

    #[test]
    fn negotiation_follows_warehouse() {
        assert_eq!(negotiate(None), Some(CONTENT_TYPE));
        assert_eq!(negotiate(Some("*/*")), Some(CONTENT_TYPE));
        assert_eq!(
            negotiate(Some("application/json")),
            Some("application/json")
        );
        assert_eq!(
            negotiate(Some(
                "text/html, application/vnd.pypi.integrity.v1+json;q=0.5"
            )),
            Some(CONTENT_TYPE)
        );
        assert_eq!(negotiate(Some("text/html")), None);
        assert_eq!(negotiate(Some("application/json;q=0")), None);
    }

    #[test]
    fn publishers_take_pypi_form() {
        assert_eq!(
            pypi_publisher(&github()),
            json!({"kind": "GitHub", "repository": "trailofbits/rfc8785.py",
                   "workflow": "release.yml", "environment": null})
        );
        let gitlab = Publisher {
            kind: "GitLab".into(),
            repository: "group/project".into(),
            workflow_filepath: Some(".gitlab-ci.yml".into()),
            environment: Some("release".into()),
            ..Publisher::default()
        };
        let circleci = Publisher {
            kind: "CircleCI".into(),
            project_id: Some("p".into()),
            pipeline_definition_id: Some("d".into()),
            ..Publisher::default()
        };
        assert_eq!(
            pypi_publisher(&circleci),
            json!({"kind": "CircleCI", "project_id": "p", "pipeline_definition_id": "d"})
        );
        assert_eq!(
            pypi_publisher(&gitlab),
            json!({"kind": "GitLab", "repository": "group/project",
                   "workflow_filepath": ".gitlab-ci.yml", "environment": "release"})
        );
    }

    #[test]
    fn the_digest_covers_the_stored_bytes() {
        let stored = provenance_object(&github(), &[Attestation(json!({"version": 1}))]);
        assert_eq!(
            stored.sha256,
            hex::encode(ring::digest::digest(
                &ring::digest::SHA256,
                stored.json.as_bytes()
            ))
        );
        let object: Value = serde_json::from_str(&stored.json).unwrap();
        assert_eq!(object["version"], 1);
        assert_eq!(
            object["attestation_bundles"][0]["attestations"],
            json!([{"version": 1}])
        );
    }

    #[test]
    fn malformed_and_oversized_fields_are_refused() {
        let root = TrustRoot::public_good();
        let sha = [0u8; 32];
        assert!(matches!(
            verify_upload(&root, "not json", "a-1.tar.gz", &sha),
            Err(ProvenanceError::Malformed(_))
        ));
        let many = serde_json::to_string(&vec![json!({}); 17]).unwrap();
        assert!(matches!(
            verify_upload(&root, &many, "a-1.tar.gz", &sha),
            Err(ProvenanceError::Malformed(
                tufa_provenance::Error::TooMany { .. }
            ))
        ));
        assert_eq!(
            verify_upload(&root, "[]", "a-1.tar.gz", &sha).unwrap(),
            None
        );
    }
}
