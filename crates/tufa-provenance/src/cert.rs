//! The Fulcio signing certificate: its chain to the trust root, the Sigstore X.509 profile, its
//! embedded SCT, and the publisher identity its extensions name.
//!
//! Chain building and validity are rustls-webpki's (`verify_for_usage` at the log's integrated
//! time, with the issuing CA's intermediates and root from the trust root); the profile checks
//! (key usage `digitalSignature`, extended key usage `codeSigning`) and the extension reading use
//! `x509-cert`. Fulcio's extensions are documented in sigstore/fulcio `docs/oid-info.md`:
//! 1.3.6.1.4.1.57264.1.1–.6 are raw strings (deprecated), .8 onwards DER UTF8Strings.

use x509_cert::Certificate;
use x509_cert::der::asn1::{ObjectIdentifier, OctetStringRef, Utf8StringRef};
use x509_cert::der::{Decode as _, Encode as _};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{ExtendedKeyUsage, KeyUsage, SubjectAltName};

use crate::trust::TrustRoot;
use crate::{Error, Publisher};

const OID_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.15");
const OID_EXT_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37");
const OID_SAN: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.17");
const OID_CODE_SIGNING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.3");
/// DER contents of the code-signing key purpose, as webpki wants it.
const EKU_CODE_SIGNING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x03];
const OID_SCT_LIST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.11129.2.4.2");
const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");

/// Fulcio's OIDC issuer, v1 (raw bytes) and v2 (UTF8String).
const FULCIO_ISSUER_V1: &str = "1.3.6.1.4.1.57264.1.1";
const FULCIO_ISSUER_V2: &str = "1.3.6.1.4.1.57264.1.8";
const BUILD_SIGNER_URI: &str = "1.3.6.1.4.1.57264.1.9";
const SOURCE_REPOSITORY_URI: &str = "1.3.6.1.4.1.57264.1.12";
const SOURCE_REPOSITORY_DIGEST: &str = "1.3.6.1.4.1.57264.1.13";
const SOURCE_REPOSITORY_REF: &str = "1.3.6.1.4.1.57264.1.14";
const BUILD_CONFIG_URI: &str = "1.3.6.1.4.1.57264.1.18";

const GITHUB_ISSUER: &str = "https://token.actions.githubusercontent.com";
const GITLAB_ISSUER: &str = "https://gitlab.com";
const GOOGLE_ISSUER: &str = "https://accounts.google.com";
const CIRCLECI_ISSUER: &str = "https://oidc.circleci.com";

/// A parsed Fulcio leaf certificate.
pub(crate) struct SigningCertificate {
    der: Vec<u8>,
    cert: Certificate,
}

fn profile(reason: impl Into<String>) -> Error {
    Error::CertificateProfile(reason.into())
}

fn claims(reason: impl Into<String>) -> Error {
    Error::PublisherClaims(reason.into())
}

impl SigningCertificate {
    pub(crate) fn parse(der: Vec<u8>) -> Result<SigningCertificate, Error> {
        let cert = Certificate::from_der(&der).map_err(|e| {
            Error::malformed(
                "verification_material.certificate",
                format!("not an X.509 certificate: {e}"),
            )
        })?;
        Ok(SigningCertificate { der, cert })
    }

    pub(crate) fn der(&self) -> &[u8] {
        &self.der
    }

    fn extension(&self, oid: &ObjectIdentifier) -> Option<&x509_cert::ext::Extension> {
        self.cert
            .tbs_certificate
            .extensions
            .as_deref()
            .unwrap_or_default()
            .iter()
            .find(|e| &e.extn_id == oid)
    }

    /// A Fulcio claim: v2 extensions (.8 and later) hold a DER UTF8String, v1 ones raw text.
    fn claim(&self, oid: &str) -> Result<Option<String>, Error> {
        let oid = ObjectIdentifier::new(oid).expect("Fulcio OIDs are valid");
        let Some(ext) = self.extension(&oid) else {
            return Ok(None);
        };
        let bytes = ext.extn_value.as_bytes();
        let v1 = oid.arcs().last().is_some_and(|arc| arc < 8);
        let text = if v1 {
            std::str::from_utf8(bytes).map(str::to_owned).ok()
        } else {
            Utf8StringRef::from_der(bytes)
                .ok()
                .map(|s| s.as_str().to_owned())
        };
        text.map(Some)
            .ok_or_else(|| claims(format!("certificate extension {oid} is not a UTF-8 string")))
    }

    fn required_claim(&self, oid: &str, what: &str) -> Result<String, Error> {
        self.claim(oid)?
            .ok_or_else(|| claims(format!("the certificate has no {what} ({oid})")))
    }

    /// The certificate's OIDC issuer (Fulcio extension .8, or the deprecated .1).
    pub(crate) fn issuer(&self) -> Result<String, Error> {
        match self.claim(FULCIO_ISSUER_V2)? {
            Some(issuer) => Ok(issuer),
            None => self.required_claim(FULCIO_ISSUER_V1, "OIDC issuer"),
        }
    }

    fn subject_alt_names(&self) -> Result<Vec<GeneralName>, Error> {
        let ext = self
            .extension(&OID_SAN)
            .ok_or_else(|| profile("the certificate has no subject alternative name"))?;
        SubjectAltName::from_der(ext.extn_value.as_bytes())
            .map(|san| san.0)
            .map_err(|e| profile(format!("unreadable subject alternative name: {e}")))
    }

    /// Checks that the certificate chains to a Fulcio CA of `root` that was in use at `at`
    /// (Unix seconds), that every certificate on the path is valid at `at`, and that the leaf
    /// follows Sigstore's profile: `digitalSignature` key usage and `codeSigning` extended key
    /// usage. Then checks the embedded SCT when the trust root lists CT logs.
    pub(crate) fn verify_chain(&self, root: &TrustRoot, at: i64) -> Result<(), Error> {
        let leaf_der = rustls_pki_types::CertificateDer::from(self.der.as_slice());
        let leaf = webpki::EndEntityCert::try_from(&leaf_der)
            .map_err(|e| Error::malformed("verification_material.certificate", e.to_string()))?;
        let time = rustls_pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_secs(
            u64::try_from(at).map_err(|_| Error::malformed("integratedTime", "before 1970"))?,
        ));
        let algorithms = [
            webpki::ring::ECDSA_P256_SHA256,
            webpki::ring::ECDSA_P256_SHA384,
            webpki::ring::ECDSA_P384_SHA256,
            webpki::ring::ECDSA_P384_SHA384,
        ];
        let mut reasons = Vec::new();
        let mut issuer_spki = None;
        for ca in root
            .authorities
            .iter()
            .filter(|ca| ca.valid_for.contains(at))
        {
            let (anchor_der, intermediates) = ca.chain.split_last().expect("chains are not empty");
            let anchor_der = rustls_pki_types::CertificateDer::from(anchor_der.as_slice());
            let anchor = match webpki::anchor_from_trusted_cert(&anchor_der) {
                Ok(anchor) => anchor,
                Err(e) => {
                    reasons.push(format!("{}: its root is unusable ({e})", ca.uri));
                    continue;
                }
            };
            let intermediates: Vec<_> = intermediates
                .iter()
                .map(|der| rustls_pki_types::CertificateDer::from(der.as_slice()))
                .collect();
            // The EKU is demanded on the leaf below; on the path webpki checks it where present.
            match leaf.verify_for_usage(
                &algorithms,
                &[anchor],
                &intermediates,
                time,
                webpki::KeyUsage::required_if_present(EKU_CODE_SIGNING),
                None,
                None,
            ) {
                Ok(path) => {
                    issuer_spki = Some(path.issuer_spki().as_ref().to_vec());
                    break;
                }
                Err(e) => reasons.push(format!("{}: {e}", ca.uri)),
            }
        }
        let Some(issuer_spki) = issuer_spki else {
            if reasons.is_empty() {
                reasons.push("no certificate authority of the trust root was in use then".into());
            }
            return Err(Error::CertificateNotFromTrustRoot {
                time: at,
                reason: reasons.join("; "),
            });
        };

        let key_usage = self
            .extension(&OID_KEY_USAGE)
            .ok_or_else(|| profile("the certificate has no key usage"))?;
        let key_usage = KeyUsage::from_der(key_usage.extn_value.as_bytes())
            .map_err(|e| profile(format!("unreadable key usage: {e}")))?;
        if !key_usage.digital_signature() {
            return Err(profile(
                "the certificate's key usage lacks digitalSignature",
            ));
        }
        let eku = self
            .extension(&OID_EXT_KEY_USAGE)
            .ok_or_else(|| profile("the certificate has no extended key usage"))?;
        let eku = ExtendedKeyUsage::from_der(eku.extn_value.as_bytes())
            .map_err(|e| profile(format!("unreadable extended key usage: {e}")))?;
        if !eku.0.contains(&OID_CODE_SIGNING) {
            return Err(profile(
                "the certificate's extended key usage lacks codeSigning",
            ));
        }
        self.verify_sct(root, &issuer_spki, at)
    }

    /// Verifies the embedded signed certificate timestamp (RFC 6962 §3.2): some SCT in the list
    /// must be signed by a CT log of the trust root in use at `at`, over the precertificate entry
    /// made of the issuer key hash and this certificate's TBSCertificate without the SCT
    /// extension. Skipped only when the trust root lists no CT log (a private Sigstore without
    /// CT); the SCT's own timestamp is not compared with anything.
    fn verify_sct(&self, root: &TrustRoot, issuer_spki: &[u8], at: i64) -> Result<(), Error> {
        if root.ctlogs.is_empty() {
            return Ok(());
        }
        let fail = |reason: String| Error::SctInvalid(reason);
        let ext = self
            .extension(&OID_SCT_LIST)
            .ok_or_else(|| fail("the certificate carries no SCT".into()))?;
        let list = OctetStringRef::from_der(ext.extn_value.as_bytes())
            .map_err(|e| fail(format!("unreadable SCT list: {e}")))?;
        let mut tbs = self.cert.tbs_certificate.clone();
        if let Some(exts) = tbs.extensions.as_mut() {
            exts.retain(|e| e.extn_id != OID_SCT_LIST);
        }
        let tbs = tbs
            .to_der()
            .map_err(|e| fail(format!("cannot re-encode the certificate: {e}")))?;
        let issuer_key_hash = ring::digest::digest(&ring::digest::SHA256, issuer_spki);

        let mut reader = Reader(list.as_bytes());
        let mut scts = Reader(
            reader
                .vec16()
                .ok_or_else(|| fail("truncated SCT list".into()))?,
        );
        let mut reasons = Vec::new();
        while !scts.0.is_empty() {
            let sct = scts.vec16().ok_or_else(|| fail("truncated SCT".into()))?;
            let mut r = Reader(sct);
            let parsed = (|| {
                let version = r.take(1)?[0];
                let log_id = r.take(32)?;
                let timestamp = r.take(8)?;
                let extensions = r.vec16()?;
                let _algorithms = r.take(2)?;
                let signature = r.vec16()?;
                Some((version, log_id, timestamp, extensions, signature))
            })();
            let Some((version, log_id, timestamp, extensions, signature)) = parsed else {
                return Err(fail("truncated SCT".into()));
            };
            if version != 0 {
                reasons.push(format!("SCT version {version} is not v1"));
                continue;
            }
            let Some(log) = root.ctlog(log_id).filter(|log| log.valid_for.contains(at)) else {
                reasons.push(format!(
                    "SCT from a CT log the trust root does not list as in use then ({})",
                    hex::encode(log_id)
                ));
                continue;
            };
            let (Ok(tbs_len), Ok(ext_len)) =
                (u32::try_from(tbs.len()), u16::try_from(extensions.len()))
            else {
                return Err(fail("oversized SCT input".into()));
            };
            let mut signed = Vec::with_capacity(tbs.len() + 64);
            signed.push(0); // sct_version v1
            signed.push(0); // signature_type certificate_timestamp
            signed.extend_from_slice(timestamp);
            signed.extend_from_slice(&1u16.to_be_bytes()); // entry_type precert_entry
            signed.extend_from_slice(issuer_key_hash.as_ref());
            signed.extend_from_slice(&tbs_len.to_be_bytes()[1..]);
            signed.extend_from_slice(&tbs);
            signed.extend_from_slice(&ext_len.to_be_bytes());
            signed.extend_from_slice(extensions);
            if log.verify(&signed, signature) {
                return Ok(());
            }
            reasons.push(format!("the SCT's signature is not {}'s", log.base_url));
        }
        Err(fail(reasons.join("; ")))
    }

    /// Verifies `signature` (ASN.1 DER ECDSA) over `message` with the certificate's key: P-256
    /// with SHA-256 or P-384 with SHA-384.
    pub(crate) fn verify_signature(&self, message: &[u8], signature: &[u8]) -> Result<(), Error> {
        let spki = &self.cert.tbs_certificate.subject_public_key_info;
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
        let algorithm: &dyn ring::signature::VerificationAlgorithm = match (
            spki.algorithm.oid,
            curve,
        ) {
            (OID_EC_PUBLIC_KEY, Some(OID_P256)) => &ring::signature::ECDSA_P256_SHA256_ASN1,
            (OID_EC_PUBLIC_KEY, Some(OID_P384)) => &ring::signature::ECDSA_P384_SHA384_ASN1,
            (oid, curve) => {
                return Err(profile(format!(
                    "unsupported signing key {oid} (curve {curve:?}); Fulcio issues ECDSA P-256/P-384"
                )));
            }
        };
        let key = spki
            .subject_public_key
            .as_bytes()
            .ok_or_else(|| profile("unaligned public key bits"))?;
        ring::signature::UnparsedPublicKey::new(algorithm, key)
            .verify(message, signature)
            .map_err(|_| Error::SignatureInvalid)
    }

    /// The Trusted Publisher the certificate names, read as pypi-attestations' publisher
    /// policies read it (`_impl.py`: `_GitHubTrustedPublisherPolicy`,
    /// `_GitLabTrustedPublisherPolicy`, `GooglePublisher`, `_CircleCITrustedPublisherPolicy`):
    /// * GitHub (issuer `https://token.actions.githubusercontent.com`): `repository` from the
    ///   Source Repository URI (.12) `https://github.com/OWNER/REPO`; `workflow` from the Build
    ///   Config URI (.18) `https://github.com/OWNER/REPO/.github/workflows/WORKFLOW@SUFFIX`, whose
    ///   SUFFIX must be the Source Repository Digest (.13) or Ref (.14). That is the top-level
    ///   workflow PyPI's Trusted Publishing matches, not a reusable workflow the SAN may name.
    ///   `environment` is not in the certificate: always `None`.
    /// * GitLab (issuer `https://gitlab.com`): `repository` from .12 `https://gitlab.com/NS/PROJ`,
    ///   `workflow_filepath` from .18 `https://gitlab.com/NS/PROJ//PATH@SUFFIX` (SUFFIX as above).
    /// * Google (issuer `https://accounts.google.com`): `email` from the SAN's rfc822Name.
    /// * CircleCI (issuer `https://oidc.circleci.com`): `project_id` and `pipeline_definition_id`
    ///   from the Build Signer URI (.9)
    ///   `https://circleci.com/api/v2/projects/P/pipeline-definitions/D`; `vcs_origin` (.12) and
    ///   `vcs_ref` (.14) when present.
    pub(crate) fn publisher(&self) -> Result<Publisher, Error> {
        let issuer = self.issuer()?;
        match issuer.as_str() {
            GITHUB_ISSUER => {
                let (repository, workflow) =
                    self.repository_and_config("https://github.com/", "/.github/workflows/")?;
                Ok(Publisher {
                    kind: "GitHub".into(),
                    repository,
                    workflow: Some(workflow),
                    ..Publisher::default()
                })
            }
            GITLAB_ISSUER => {
                let (repository, path) = self.repository_and_config("https://gitlab.com/", "//")?;
                Ok(Publisher {
                    kind: "GitLab".into(),
                    repository,
                    workflow_filepath: Some(path),
                    ..Publisher::default()
                })
            }
            GOOGLE_ISSUER => {
                let email = self
                    .subject_alt_names()?
                    .into_iter()
                    .find_map(|name| match name {
                        GeneralName::Rfc822Name(email) => Some(email.as_str().to_owned()),
                        _ => None,
                    })
                    .ok_or_else(|| claims("the Google certificate names no email address"))?;
                Ok(Publisher {
                    kind: "Google".into(),
                    email: Some(email),
                    ..Publisher::default()
                })
            }
            CIRCLECI_ISSUER => {
                let signer = self.required_claim(BUILD_SIGNER_URI, "Build Signer URI")?;
                let ids = signer
                    .strip_prefix("https://circleci.com/api/v2/projects/")
                    .and_then(|rest| rest.split_once("/pipeline-definitions/"))
                    .filter(|(p, d)| {
                        !p.is_empty() && !d.is_empty() && !p.contains('/') && !d.contains('/')
                    });
                let Some((project, definition)) = ids else {
                    return Err(claims(format!(
                        "Build Signer URI {signer:?} is not a CircleCI pipeline definition"
                    )));
                };
                Ok(Publisher {
                    kind: "CircleCI".into(),
                    project_id: Some(project.to_owned()),
                    pipeline_definition_id: Some(definition.to_owned()),
                    vcs_origin: self.claim(SOURCE_REPOSITORY_URI)?,
                    vcs_ref: self.claim(SOURCE_REPOSITORY_REF)?,
                    ..Publisher::default()
                })
            }
            other => Err(Error::UnsupportedIssuer(other.to_owned())),
        }
    }

    /// `(OWNER/REPO, WORKFLOW)` from the Source Repository URI and the Build Config URI
    /// `{host}{OWNER/REPO}{separator}{WORKFLOW}@{SUFFIX}`, SUFFIX being the certificate's own
    /// source digest or ref.
    fn repository_and_config(
        &self,
        host: &str,
        separator: &str,
    ) -> Result<(String, String), Error> {
        let source = self.required_claim(SOURCE_REPOSITORY_URI, "Source Repository URI")?;
        let repository = source
            .strip_prefix(host)
            .filter(|r| !r.is_empty())
            .ok_or_else(|| claims(format!("Source Repository URI {source:?} is not on {host}")))?;
        let config = self.required_claim(BUILD_CONFIG_URI, "Build Config URI")?;
        let suffixes: Vec<String> = [SOURCE_REPOSITORY_DIGEST, SOURCE_REPOSITORY_REF]
            .into_iter()
            .filter_map(|oid| self.claim(oid).transpose())
            .collect::<Result<_, _>>()?;
        if suffixes.is_empty() {
            return Err(claims(
                "the certificate has neither Source Repository Digest nor Ref",
            ));
        }
        let prefix = format!("{host}{repository}{separator}");
        let workflow = config.strip_prefix(&prefix).and_then(|rest| {
            suffixes.iter().find_map(|suffix| {
                rest.strip_suffix(suffix.as_str())
                    .and_then(|w| w.strip_suffix('@'))
                    .filter(|w| !w.is_empty())
            })
        });
        let Some(workflow) = workflow else {
            return Err(claims(format!(
                "Build Config URI {config:?} is not {prefix}WORKFLOW@ the certificate's commit or ref"
            )));
        };
        Ok((repository.to_owned(), workflow.to_owned()))
    }
}

/// A cursor over TLS-encoded (RFC 8446 §3) bytes.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }

    fn vec16(&mut self) -> Option<&'a [u8]> {
        let len = self.take(2)?;
        self.take(usize::from(u16::from_be_bytes([len[0], len[1]])))
    }
}
