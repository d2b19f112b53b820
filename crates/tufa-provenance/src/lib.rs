//! PEP 740 attestations: what an upload carries, what PyPI's Integrity API serves, and the
//! verification that binds a distribution file's sha256 to the CI identity that built it.
//!
//! CONTRACT (session 2026-11-29): the signatures below are fixed for the helpers building on this
//! crate; the verification itself is filled in by the `h-sigstore` branch.

use serde::{Deserialize, Serialize};

/// Upper bounds on what an upload may carry, like every other form field.
pub const MAX_ATTESTATIONS: usize = 16;
pub const MAX_ATTESTATIONS_BYTES: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the attestations are not valid JSON in PEP 740's form: {0}")]
    Malformed(String),
    #[error("too many attestations: {count} (at most {MAX_ATTESTATIONS})")]
    TooMany { count: usize },
    #[error("the attestations are {bytes} bytes (at most {MAX_ATTESTATIONS_BYTES})")]
    TooLarge { bytes: usize },
    #[error("attestation verification is not built yet")]
    NotBuilt,
}

/// The Sigstore trust root: Fulcio certificate authorities, Rekor log keys, CT log keys.
#[derive(Clone, Debug)]
pub struct TrustRoot {
    _private: (),
}

impl TrustRoot {
    /// Sigstore's public-good instance, shipped with Tufa.
    pub fn public_good() -> TrustRoot {
        TrustRoot { _private: () }
    }

    /// An operator's replacement, in Sigstore's `trusted_root.json` format.
    pub fn from_json(_bytes: &[u8]) -> Result<TrustRoot, Error> {
        Err(Error::NotBuilt)
    }
}

/// One PEP 740 attestation object, as uploaded and as served (kept verbatim).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(transparent)]
pub struct Attestation(pub serde_json::Value);

/// The identity a Trusted Publishing certificate names, in PyPI's provenance `publisher` form
/// (`{"kind": "GitHub", "repository": "owner/name", "workflow": "release.yml", "environment": …}`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub struct Publisher {
    pub kind: String,
    pub repository: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
}

/// PyPI's provenance object (`application/vnd.pypi.integrity.v1+json`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Provenance {
    pub version: u32,
    pub attestation_bundles: Vec<AttestationBundle>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AttestationBundle {
    pub publisher: Publisher,
    pub attestations: Vec<Attestation>,
}

/// Parses the upload form's `attestations` field (a JSON array), bounded in size and count.
pub fn parse_attestations(field: &[u8]) -> Result<Vec<Attestation>, Error> {
    if field.len() > MAX_ATTESTATIONS_BYTES {
        return Err(Error::TooLarge { bytes: field.len() });
    }
    let list: Vec<Attestation> =
        serde_json::from_slice(field).map_err(|e| Error::Malformed(e.to_string()))?;
    if list.len() > MAX_ATTESTATIONS {
        return Err(Error::TooMany { count: list.len() });
    }
    Ok(list)
}

impl Attestation {
    /// Verifies the attestation for the file `filename` with digest `sha256`, as of the time the
    /// transparency log recorded it; returns the publisher its certificate names.
    pub fn verify(
        &self,
        _root: &TrustRoot,
        _filename: &str,
        _sha256: &[u8; 32],
    ) -> Result<Publisher, Error> {
        Err(Error::NotBuilt)
    }
}

impl Provenance {
    /// Verifies every attestation of a served provenance object for one file and checks that each
    /// bundle's claimed publisher is the one its certificates name.
    pub fn verify(
        &self,
        root: &TrustRoot,
        filename: &str,
        sha256: &[u8; 32],
    ) -> Result<Vec<Publisher>, Error> {
        let mut publishers = Vec::new();
        for bundle in &self.attestation_bundles {
            for attestation in &bundle.attestations {
                publishers.push(attestation.verify(root, filename, sha256)?);
            }
        }
        Ok(publishers)
    }
}
