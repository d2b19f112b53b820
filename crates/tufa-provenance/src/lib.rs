//! PEP 740 attestations: what an upload carries, what PyPI's Integrity API serves, and the
//! offline verification that binds a distribution file's sha256 to the CI identity that built it.
//!
//! [`Attestation::verify`] checks, in this order, without network access:
//! 1. **Form** (PEP 740): `version` 1, `verification_material.certificate` (base64 DER),
//!    1 to [`MAX_TRANSPARENCY_ENTRIES`] `transparency_entries`, `envelope.statement` and
//!    `envelope.signature` (base64); the whole object at most [`MAX_ATTESTATIONS_BYTES`].
//! 2. **Signature**: the envelope signature is the certificate key's ECDSA signature (P-256 with
//!    SHA-256, or P-384 with SHA-384) over the DSSE v1 pre-authentication encoding of the
//!    statement with payload type `application/vnd.in-toto+json`.
//! 3. **Transparency log** (each entry; see `rekor.rs`): a Rekor v1 `dsse` 0.0.1 entry of a log
//!    the trust root lists; its signed entry timestamp, RFC 6962 inclusion proof and signed
//!    checkpoint; and its body records this envelope: `payloadHash` is the sha256 of the
//!    statement, `signatures` is exactly this signature with this certificate as verifier.
//!    (The body's `envelopeHash` covers Rekor's own JSON serialization of the envelope, which a
//!    PEP 740 attestation does not carry; sigstore-python skips it for the same reason.)
//! 4. **Certificate** (see `cert.rs`), at each entry's integrated time: chains to a Fulcio CA of
//!    the trust root in use at that time, every certificate valid then; `digitalSignature` and
//!    `codeSigning` usages; an embedded SCT signed by a CT log of the trust root in use then
//!    (skipped only for a trust root that lists no CT log).
//! 5. **Statement**: in-toto Statement v1, exactly one subject, whose name parses to the same
//!    distribution as `filename` and whose sha256 is the file's, and a predicate type PyPI
//!    accepts (`https://docs.pypi.org/attestations/publish/v1`, `https://slsa.dev/provenance/v1`).
//! 6. **Publisher**: read from the certificate's Fulcio extensions for the Trusted Publishers
//!    PyPI supports (GitHub, GitLab, Google, CircleCI); any other OIDC issuer is refused.
//!
//! Not verified: RFC 3161 timestamps (PEP 740 attestations carry none), Rekor v2 entries, the
//! checkpoint's consistency with other views of the log, its origin line and signer name, the
//! SCT's own timestamp, certificate revocation (Fulcio certificates live ten minutes), and — by
//! design — whether the attested release is benign.
//!
//! Crate choice. The `sigstore` crate (sigstore-rs 0.14.0, its crates.io feature table) verifies
//! bundles only with its `bundle` feature, which is `["sign", "verify"]`: `sign` turns on
//! `fulcio` and `rekor` (both `reqwest`; `fulcio` also `openidconnect` through `oauth`) and
//! `cert`, which selects rustls-webpki's `aws-lc-rs` backend (a C/CMake build); its default
//! features add `tough`, `oci-client` and native-tls. On this project's 2-core builds that is
//! many minutes for offline, synchronous work, and its bundle type is Sigstore's bundle JSON,
//! not PEP 740's object. Instead: `rustls-webpki` on `ring` (both already in the workspace
//! through rustls) builds and checks the certificate chain at the log's time,
//! `ring` does every ECDSA/Ed25519/RSA check and hash, `x509-cert`
//! (RustCrypto, small, on `der`/`spki` already in the workspace) reads extensions and re-encodes
//! the TBSCertificate for the SCT, `time` parses the trust root's RFC 3339 times, and
//! `tufa-tlog` (Tufa's own transparency log crate) does the RFC 6962 inclusion-proof arithmetic
//! and parses the signed-note checkpoint. Written by hand, because no light crate has them: the
//! SCT's TLS encoding, and the PEP 740 / Fulcio identity rules.

mod cert;
mod rekor;
mod statement;
mod trust;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

pub use statement::PREDICATE_TYPES;
pub use trust::TrustRoot;

/// Upper bounds on what an upload may carry, like every other form field.
pub const MAX_ATTESTATIONS: usize = 16;
pub const MAX_ATTESTATIONS_BYTES: usize = 256 * 1024;
/// A served provenance object: at most [`MAX_ATTESTATIONS_BYTES`] of attestations, plus the
/// publishers and the JSON around them.
pub const MAX_PROVENANCE_BYTES: u64 = 2 * MAX_ATTESTATIONS_BYTES as u64;
/// Transparency log entries one attestation may carry (PyPI's carry one).
pub const MAX_TRANSPARENCY_ENTRIES: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the attestations are not valid JSON in PEP 740's form: {0}")]
    Malformed(String),
    #[error("the attestation's {path} is malformed: {reason}")]
    MalformedField { path: String, reason: String },
    #[error("too many attestations: {count} (at most {MAX_ATTESTATIONS})")]
    TooMany { count: usize },
    #[error("the attestations are {bytes} bytes (at most {MAX_ATTESTATIONS_BYTES})")]
    TooLarge { bytes: usize },
    #[error("the Sigstore trust root is invalid at {path:?}: {reason}")]
    TrustRoot { path: String, reason: String },
    #[error(
        "the signing certificate does not chain to a Fulcio certificate authority of the trust root \
         at the log's time {time} (forged or foreign certificate): {reason}"
    )]
    CertificateNotFromTrustRoot { time: i64, reason: String },
    #[error("the signing certificate breaks Sigstore's certificate profile: {0}")]
    CertificateProfile(String),
    #[error("the signing certificate's embedded SCT does not verify (certificate not logged): {0}")]
    SctInvalid(String),
    #[error(
        "the envelope signature does not verify with the certificate's key (statement or signature altered)"
    )]
    SignatureInvalid,
    #[error("the transparency log entry is from a log the trust root does not list: {key_id}")]
    UnknownTransparencyLog { key_id: String },
    #[error(
        "transparency log entry kind {kind} {version} is not supported (only Rekor v1 dsse 0.0.1)"
    )]
    UnsupportedLogEntry { kind: String, version: String },
    #[error("the transparency log inclusion proof does not verify (entry not in the log): {0}")]
    TransparencyLogProof(String),
    #[error("the transparency log checkpoint does not verify: {0}")]
    CheckpointInvalid(String),
    #[error("the transparency log's signed entry timestamp does not verify: {0}")]
    InclusionPromiseInvalid(String),
    #[error(
        "the transparency log entry records another envelope or certificate (entry swapped): {0}"
    )]
    LogEntryMismatch(String),
    #[error("the statement type {0:?} is not in-toto Statement v1")]
    UnsupportedStatement(String),
    #[error("the statement has {0} subjects (exactly one is required)")]
    SubjectCount(usize),
    #[error("the attestation is for {found:?}, not {expected:?} (another file's attestation)")]
    SubjectMismatch { expected: String, found: String },
    #[error(
        "the attestation is for sha256 {found}, the file's is {expected} (another file's attestation)"
    )]
    DigestMismatch { expected: String, found: String },
    #[error("the filename is not a distribution filename: {0}")]
    InvalidFilename(String),
    #[error("predicate type {0:?} is not one PyPI accepts ({types:?})", types = PREDICATE_TYPES)]
    UnsupportedPredicate(String),
    #[error("the certificate's OIDC issuer {0:?} is not a Trusted Publisher PyPI supports")]
    UnsupportedIssuer(String),
    #[error("the certificate's publisher claims are unusable: {0}")]
    PublisherClaims(String),
    #[error("the provenance claims publisher {claimed} but its certificate names {certified}")]
    PublisherMismatch {
        claimed: Box<Publisher>,
        certified: Box<Publisher>,
    },
}

impl Error {
    pub(crate) fn malformed(path: impl Into<String>, reason: impl Into<String>) -> Error {
        Error::MalformedField {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// One PEP 740 attestation object, as uploaded and as served (kept verbatim).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(transparent)]
pub struct Attestation(pub serde_json::Value);

/// The identity a Trusted Publishing certificate names, in PyPI's provenance `publisher` form:
/// GitHub `{"kind", "repository", "workflow", "environment"}`, GitLab `{"kind", "repository",
/// "workflow_filepath", "environment"}`, Google `{"kind", "email"}`, CircleCI `{"kind",
/// "project_id", "pipeline_definition_id", "vcs_origin", "vcs_ref"}`. Fields a kind does not
/// use are empty and not serialized. `environment` is never in a certificate: a publisher read
/// from one has `None`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub struct Publisher {
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub repository: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// GitLab: the CI configuration file's path in the repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_filepath: Option<String>,
    /// Google: the service account's email address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// CircleCI: the project's UUID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
    /// CircleCI: the pipeline definition's UUID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline_definition_id: Option<String>,
    /// CircleCI: the source repository (`github.com/org/repo`), when the pipeline has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vcs_origin: Option<String>,
    /// CircleCI: the git ref the pipeline ran on, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vcs_ref: Option<String>,
}

impl Publisher {
    /// Whether this (claimed) publisher is the one a certificate names (`certified`, from
    /// [`Attestation::verify`]): same kind and every identifying field equal. GitHub owner and
    /// repository names compare ASCII-case-insensitively as GitHub treats them; `environment`
    /// is not compared, since certificates do not carry it; CircleCI's `vcs_origin`/`vcs_ref`
    /// are compared only when claimed, as pypi-attestations' policy does.
    pub fn is_certified_by(&self, certified: &Publisher) -> bool {
        if self.kind != certified.kind {
            return false;
        }
        match self.kind.as_str() {
            "GitHub" => {
                self.repository.eq_ignore_ascii_case(&certified.repository)
                    && self.workflow == certified.workflow
            }
            "GitLab" => {
                self.repository == certified.repository
                    && self.workflow_filepath == certified.workflow_filepath
            }
            "Google" => self.email == certified.email,
            "CircleCI" => {
                self.project_id == certified.project_id
                    && self.pipeline_definition_id == certified.pipeline_definition_id
                    && (self.vcs_origin.is_none() || self.vcs_origin == certified.vcs_origin)
                    && (self.vcs_ref.is_none() || self.vcs_ref == certified.vcs_ref)
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "?".into());
        match self.kind.as_str() {
            "GitHub" => write!(
                f,
                "GitHub {} workflow {}",
                self.repository,
                opt(&self.workflow)
            )?,
            "GitLab" => write!(
                f,
                "GitLab {} pipeline {}",
                self.repository,
                opt(&self.workflow_filepath)
            )?,
            "Google" => write!(f, "Google service account {}", opt(&self.email))?,
            "CircleCI" => write!(
                f,
                "CircleCI project {} pipeline definition {}",
                opt(&self.project_id),
                opt(&self.pipeline_definition_id)
            )?,
            kind => write!(f, "{kind} {}", self.repository)?,
        }
        if let Some(environment) = &self.environment {
            write!(f, " environment {environment}")?;
        }
        Ok(())
    }
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

#[derive(Deserialize)]
struct RawAttestation {
    version: u32,
    verification_material: RawMaterial,
    envelope: RawEnvelope,
}

#[derive(Deserialize)]
struct RawMaterial {
    certificate: String,
    transparency_entries: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawEnvelope {
    statement: String,
    signature: String,
}

fn b64(path: &str, text: &str) -> Result<Vec<u8>, Error> {
    STANDARD
        .decode(text)
        .map_err(|e| Error::malformed(path, format!("not base64: {e}")))
}

/// The Rekor dsse 0.0.1 entry body, as far as it can be checked against a PEP 740 attestation.
#[derive(Deserialize)]
struct DsseBody {
    kind: String,
    #[serde(rename = "apiVersion")]
    api_version: String,
    spec: DsseSpec,
}

#[derive(Deserialize)]
struct DsseSpec {
    #[serde(rename = "payloadHash")]
    payload_hash: HashValue,
    signatures: Vec<DsseSignature>,
}

#[derive(Deserialize)]
struct HashValue {
    algorithm: String,
    value: String,
}

#[derive(Deserialize)]
struct DsseSignature {
    signature: String,
    verifier: String,
}

/// The DER inside one PEM `CERTIFICATE` block (Rekor's `verifier` field). Hand-parsed: the
/// format is three lines' worth of rules, and only the DER bytes matter (compared, never used).
fn pem_certificate_der(pem: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(pem).ok()?.trim();
    let body = text
        .strip_prefix("-----BEGIN CERTIFICATE-----")?
        .strip_suffix("-----END CERTIFICATE-----")?;
    let body: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    STANDARD.decode(body).ok()
}

/// Checks that a verified log entry's body records this statement, signature and certificate.
fn check_entry_body(
    body: &[u8],
    statement: &[u8],
    signature: &[u8],
    certificate_der: &[u8],
) -> Result<(), Error> {
    let fail = |reason: String| Error::LogEntryMismatch(reason);
    let body: DsseBody = serde_json::from_slice(body)
        .map_err(|e| fail(format!("the log entry body is not a dsse entry: {e}")))?;
    if (body.kind.as_str(), body.api_version.as_str()) != ("dsse", "0.0.1") {
        return Err(fail(format!(
            "the body is {} {}, not dsse 0.0.1",
            body.kind, body.api_version
        )));
    }
    let statement_hash = hex::encode(ring::digest::digest(&ring::digest::SHA256, statement));
    if body.spec.payload_hash.algorithm != "sha256"
        || body.spec.payload_hash.value != statement_hash
    {
        return Err(fail(format!(
            "the log recorded payload {} {}, the statement's sha256 is {statement_hash}",
            body.spec.payload_hash.algorithm, body.spec.payload_hash.value
        )));
    }
    let [recorded] = body.spec.signatures.as_slice() else {
        return Err(fail(format!(
            "the log recorded {} signatures, the envelope has one",
            body.spec.signatures.len()
        )));
    };
    if STANDARD.decode(&recorded.signature).ok().as_deref() != Some(signature) {
        return Err(fail("the log recorded another signature".into()));
    }
    let verifier = STANDARD
        .decode(&recorded.verifier)
        .ok()
        .and_then(|pem| pem_certificate_der(&pem));
    if verifier.as_deref() != Some(certificate_der) {
        return Err(fail("the log recorded another signing certificate".into()));
    }
    Ok(())
}

impl Attestation {
    /// Verifies the attestation for the file `filename` with digest `sha256`, as of the time the
    /// transparency log recorded it; returns the publisher its certificate names. What is and is
    /// not checked is listed in the crate documentation.
    pub fn verify(
        &self,
        root: &TrustRoot,
        filename: &str,
        sha256: &[u8; 32],
    ) -> Result<Publisher, Error> {
        let bytes = serde_json::to_vec(&self.0).map_err(|e| Error::Malformed(e.to_string()))?;
        if bytes.len() > MAX_ATTESTATIONS_BYTES {
            return Err(Error::TooLarge { bytes: bytes.len() });
        }
        let raw: RawAttestation = serde_json::from_value(self.0.clone())
            .map_err(|e| Error::malformed("", e.to_string()))?;
        if raw.version != 1 {
            return Err(Error::malformed(
                "version",
                format!("{} (PEP 740 defines version 1)", raw.version),
            ));
        }
        let entries = &raw.verification_material.transparency_entries;
        if entries.is_empty() || entries.len() > MAX_TRANSPARENCY_ENTRIES {
            return Err(Error::malformed(
                "verification_material.transparency_entries",
                format!(
                    "{} entries (1 to {MAX_TRANSPARENCY_ENTRIES})",
                    entries.len()
                ),
            ));
        }
        let certificate = cert::SigningCertificate::parse(b64(
            "verification_material.certificate",
            &raw.verification_material.certificate,
        )?)?;
        let statement = b64("envelope.statement", &raw.envelope.statement)?;
        let signature = b64("envelope.signature", &raw.envelope.signature)?;

        certificate.verify_signature(
            &statement::pae(statement::PAYLOAD_TYPE, &statement),
            &signature,
        )?;

        for (i, entry) in entries.iter().enumerate() {
            let path = format!("verification_material.transparency_entries[{i}]");
            let verified = rekor::verify_entry(root, entry, &path)?;
            check_entry_body(&verified.body, &statement, &signature, certificate.der())?;
            certificate.verify_chain(root, verified.integrated_time)?;
        }

        statement::check(&statement, filename, sha256)?;
        certificate.publisher()
    }
}

impl Provenance {
    /// Verifies every attestation of a served provenance object for one file and checks that each
    /// bundle's claimed publisher is the one its certificates name
    /// ([`Publisher::is_certified_by`]). Returns the certified publishers, one per attestation.
    pub fn verify(
        &self,
        root: &TrustRoot,
        filename: &str,
        sha256: &[u8; 32],
    ) -> Result<Vec<Publisher>, Error> {
        if self.version != 1 {
            return Err(Error::malformed(
                "provenance.version",
                format!("{} (PEP 740 defines version 1)", self.version),
            ));
        }
        let count: usize = self
            .attestation_bundles
            .iter()
            .map(|b| b.attestations.len())
            .sum();
        if count > MAX_ATTESTATIONS {
            return Err(Error::TooMany { count });
        }
        if count == 0 {
            return Err(Error::malformed(
                "provenance.attestation_bundles",
                "no attestations",
            ));
        }
        let mut publishers = Vec::new();
        for bundle in &self.attestation_bundles {
            for attestation in &bundle.attestations {
                let certified = attestation.verify(root, filename, sha256)?;
                if !bundle.publisher.is_certified_by(&certified) {
                    return Err(Error::PublisherMismatch {
                        claimed: Box::new(bundle.publisher.clone()),
                        certified: Box::new(certified),
                    });
                }
                publishers.push(certified);
            }
        }
        Ok(publishers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn github(repository: &str, workflow: &str) -> Publisher {
        Publisher {
            kind: "GitHub".into(),
            repository: repository.into(),
            workflow: Some(workflow.into()),
            ..Publisher::default()
        }
    }

    #[test]
    fn claimed_publishers_compare_on_what_certificates_carry() {
        let certified = github("Owner/Repo", "release.yml");
        assert!(github("owner/repo", "release.yml").is_certified_by(&certified));
        let with_environment = Publisher {
            environment: Some("pypi".into()),
            ..github("Owner/Repo", "release.yml")
        };
        assert!(with_environment.is_certified_by(&certified));
        assert!(!github("owner/other", "release.yml").is_certified_by(&certified));
        assert!(!github("Owner/Repo", "ci.yml").is_certified_by(&certified));
        let gitlab = Publisher {
            kind: "GitLab".into(),
            ..github("Owner/Repo", "release.yml")
        };
        assert!(!gitlab.is_certified_by(&certified));

        let circleci = Publisher {
            kind: "CircleCI".into(),
            project_id: Some("p".into()),
            pipeline_definition_id: Some("d".into()),
            vcs_origin: Some("github.com/o/r".into()),
            vcs_ref: Some("refs/heads/main".into()),
            ..Publisher::default()
        };
        let claimed = Publisher {
            vcs_origin: None,
            vcs_ref: None,
            ..circleci.clone()
        };
        assert!(claimed.is_certified_by(&circleci));
        let claimed = Publisher {
            vcs_ref: Some("refs/heads/other".into()),
            ..circleci.clone()
        };
        assert!(!claimed.is_certified_by(&circleci));
    }

    /// The certificate is checked at the log's integrated time: Fulcio certificates live ten
    /// minutes, so an hour later the same chain no longer verifies.
    #[test]
    fn certificate_is_valid_only_around_the_logs_time() {
        let attestation: serde_json::Value = serde_json::from_slice(include_bytes!(
            "../tests/assets/gitlab_oidc_project-0.0.3.tar.gz.publish.attestation"
        ))
        .unwrap();
        let der = STANDARD
            .decode(
                attestation["verification_material"]["certificate"]
                    .as_str()
                    .unwrap(),
            )
            .unwrap();
        let time: i64 =
            attestation["verification_material"]["transparency_entries"][0]["integratedTime"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
        let certificate = cert::SigningCertificate::parse(der).unwrap();
        let root = TrustRoot::public_good();
        certificate.verify_chain(&root, time).unwrap();
        let err = certificate.verify_chain(&root, time + 3600).unwrap_err();
        assert!(
            matches!(err, Error::CertificateNotFromTrustRoot { .. }),
            "{err}"
        );
        let err = certificate.verify_chain(&root, time - 3600).unwrap_err();
        assert!(
            matches!(err, Error::CertificateNotFromTrustRoot { .. }),
            "{err}"
        );
    }
}
