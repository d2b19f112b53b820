//! The online key in HashiCorp Vault or OpenBao: a [`tufa_metadata::Signer`] over the transit
//! secrets engine.
//!
//! # Why Vault
//!
//! PEP 458's online key signs timestamp, snapshot and every bin role on the server. In a key file
//! a thief who reads it signs from anywhere until the offline roles rotate it out; in Vault's
//! transit engine the private key never leaves Vault, every signature is an audited request, and
//! revoking the server's token stops the signing at once. OpenBao, the open-source fork, serves
//! the same transit API; both are driven here over plain HTTP (ureq), since the transit API is
//! three calls and neither project ships a Rust client.
//!
//! # Configuration
//!
//! ```text
//! vault:<key name>[?mount=<transit mount>&version=<key version>]
//! ```
//!
//! - `mount`: where the transit engine is mounted, `transit` when left out.
//! - `version`: the Vault key version to sign with; the latest when the signer opens if left out.
//!   Either way the version is fixed for the life of the process (see *Key rotation*).
//! - the address: `VAULT_ADDR`, or `BAO_ADDR` (`https://vault.example:8200`).
//! - the credentials: a token in `VAULT_TOKEN` (or `BAO_TOKEN`); or AppRole, with
//!   `VAULT_ROLE_ID` and `VAULT_SECRET_ID` (or the `BAO_` names) and the AppRole mount in
//!   `VAULT_APPROLE_MOUNT` (`approle` when unset). An AppRole login is repeated when its token
//!   expires or is revoked, so a long-running server needs no token renewal of its own.
//! - the CA: `VAULT_CACERT` (or `BAO_CACERT`), a PEM file of the CA certificates that Vault's TLS
//!   certificate must chain to, trusted instead of the public web roots.
//!
//! The policy the server needs is `read` on `<mount>/keys/<key>` and `update` on
//! `<mount>/sign/<key>`; `tufa keys generate-vault` also needs `create` on `<mount>/keys/<key>`.
//!
//! # Keys
//!
//! Transit keys of type `ed25519` (the message is sent as is: Ed25519 hashes it itself) and
//! `ecdsa-p256` (the message is hashed here with SHA-256 and sent `prehashed`, with
//! `marshaling_algorithm=asn1`, so Vault returns the DER signature TUF's `ecdsa-sha2-nistp256`
//! verifies and large bin metadata never crosses the network). Vault returns Ed25519 public keys
//! as base64 raw bytes and ECDSA ones as PEM; both become the key TUF lists. Every signature is
//! checked against the public key the signer opened with before it is returned.
//!
//! # Key rotation
//!
//! A new Vault key version (`transit/keys/<key>/rotate`) is a new key pair, so for TUF it is a new
//! online key: clients trust only the keys root lists. The signer therefore signs with the
//! version it opened with, whatever Vault's latest is, and a key whose public key changed under
//! the same version (deleted and re-created, restored from another backup) is refused, naming the
//! fix. To move to a new version follow the TUF online-key rotation procedure: export the new
//! version's public key (`tufa keys vault-public vault:<key>?version=<new>`), have the root key
//! holders sign a root listing it (`tufa roles`), and restart with `?version=<new>`.
//!
//! # Failures
//!
//! Every request has a bounded time ([`CONNECT_TIMEOUT`], [`REQUEST_TIMEOUT`]) and a bounded
//! answer ([`MAX_ANSWER`]). An unreachable, sealed or refusing Vault is an [`Error`] naming which;
//! the publisher reports it and retries, and signing resumes when Vault answers again.

use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};
use spki::der::DecodePem as _;
use tufa_metadata::{Key, KeyId, Signature, Signer};

/// How long connecting to Vault may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one request may take in all.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest answer read from Vault: key listings and signatures are a few kilobytes.
pub const MAX_ANSWER: u64 = 1 << 20;
/// The transit mount when the spec names none.
pub const DEFAULT_MOUNT: &str = "transit";

/// What went wrong talking to Vault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "invalid Vault key {spec:?}: {reason} (expected vault:<key name>[?mount=<transit mount>&version=<key version>])"
    )]
    Spec { spec: String, reason: String },

    #[error("no Vault address: set VAULT_ADDR (or BAO_ADDR), e.g. https://vault.example:8200")]
    NoAddress,

    #[error(
        "cannot use the CA certificates in {path} (VAULT_CACERT or BAO_CACERT): {reason}; give a PEM file with the certificate of the CA that signed Vault's"
    )]
    CaCert { path: String, reason: String },

    #[error(
        "no Vault credentials: set VAULT_TOKEN (or BAO_TOKEN), or VAULT_ROLE_ID and VAULT_SECRET_ID for AppRole"
    )]
    NoCredentials,

    #[error("Vault at {address} is unreachable while {action}: {reason}")]
    Unreachable {
        address: String,
        action: String,
        reason: String,
    },

    #[error(
        "Vault at {address} is sealed, on standby or limiting requests while {action} (HTTP {status}): unseal it, let a standby take over, or raise its rate limit"
    )]
    Sealed {
        address: String,
        action: String,
        status: u16,
    },

    #[error(
        "Vault refused {action} (HTTP 403: {detail}): the token or AppRole needs a policy allowing it, or it expired or was revoked"
    )]
    Forbidden { action: String, detail: String },

    #[error(
        "Vault has no transit key {key:?} in mount {mount:?}: create it with `tufa keys generate-vault`"
    )]
    MissingKey { mount: String, key: String },

    #[error("transit key {key:?} already exists in mount {mount:?}: choose another name")]
    KeyExists { mount: String, key: String },

    #[error("transit key {key:?} is of type {found}: Tufa signs with ed25519 or ecdsa-p256")]
    WrongKeyType { key: String, found: String },

    #[error("transit key {key:?} has no version {version} (its latest is {latest})")]
    NoVersion {
        key: String,
        version: u64,
        latest: u64,
    },

    #[error("Vault answered {action} with HTTP {status}: {detail}")]
    Http {
        action: String,
        status: u16,
        detail: String,
    },

    #[error("Vault's answer to {action} is not a transit answer: {reason}")]
    Malformed { action: String, reason: String },

    #[error(
        "transit key {key:?} version {version} signed with a key other than the one Tufa opened (key ID {keyid}): \
         the key in Vault was replaced (deleted and re-created, or restored from another backup). \
         A new key is a new TUF online key: rotate to it with the online-key rotation procedure \
         (export it with `tufa keys vault-public`, sign a root listing it with `tufa roles`), then restart"
    )]
    KeyChanged {
        key: String,
        version: u64,
        keyid: KeyId,
    },

    #[error("the public key of transit key {key:?}: {source}")]
    PublicKey {
        key: String,
        source: tufa_metadata::Error,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

/// A key named by `vault:<key>[?mount=<mount>&version=<n>]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VaultSpec {
    pub key: String,
    pub mount: String,
    pub version: Option<u64>,
}

impl VaultSpec {
    pub const SCHEME: &str = "vault:";

    pub fn parse(spec: &str) -> Result<Self> {
        let bad = |reason: &str| Error::Spec {
            spec: spec.into(),
            reason: reason.into(),
        };
        let rest = spec
            .strip_prefix(Self::SCHEME)
            .ok_or_else(|| bad("it does not start with vault:"))?;
        let (key, query) = rest.split_once('?').unwrap_or((rest, ""));
        // Names go into URL paths: the characters Vault allows in names and nothing that could
        // leave the path.
        let valid_name = |name: &str| {
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                && name != "."
                && name != ".."
        };
        if !valid_name(key) {
            return Err(bad(
                "the key name must be letters, digits, '-', '_' and '.'",
            ));
        }
        let mut parsed = VaultSpec {
            key: key.into(),
            mount: DEFAULT_MOUNT.into(),
            version: None,
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("mount", mount)) => {
                    let mount = mount.trim_matches('/');
                    if !mount.split('/').all(valid_name) {
                        return Err(bad(
                            "the mount must be path segments of letters, digits, '-', '_' and '.'",
                        ));
                    }
                    parsed.mount = mount.into();
                }
                Some(("version", version)) => {
                    parsed.version = Some(
                        version
                            .parse()
                            .ok()
                            .filter(|v| *v > 0)
                            .ok_or_else(|| bad("the version must be a positive number"))?,
                    );
                }
                // The address and credentials come from the environment, never the spec, where
                // shell history and process listings would see them.
                _ => return Err(bad(&format!("unknown parameter {pair:?}"))),
            }
        }
        Ok(parsed)
    }
}

impl std::fmt::Display for VaultSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "vault:{}?mount={}", self.key, self.mount)?;
        if let Some(version) = self.version {
            write!(f, "&version={version}")?;
        }
        Ok(())
    }
}

enum Credentials {
    Token,
    AppRole {
        role_id: String,
        secret_id: String,
        mount: String,
    },
}

/// A client of one Vault: its address and a token, logged in again through AppRole when that is
/// how it got one.
pub struct Vault {
    address: String,
    credentials: Credentials,
    token: Mutex<Option<String>>,
    agent: ureq::Agent,
}

/// The certificates of the CAs trusted for Vault's TLS instead of the public web roots: Vault
/// servers are most often behind an organization's own CA, which `VAULT_CACERT` names.
fn private_roots(path: &str) -> Result<ureq::tls::RootCerts> {
    let failed = |reason: String| Error::CaCert {
        path: path.to_string(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| failed(e.to_string()))?;
    let mut pem = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(file, MAX_ANSWER), &mut pem)
        .map_err(|e| failed(e.to_string()))?;
    let mut certificates = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        if let ureq::tls::PemItem::Certificate(certificate) =
            item.map_err(|e| failed(e.to_string()))?
        {
            certificates.push(certificate);
        }
    }
    if certificates.is_empty() {
        return Err(failed("it holds no PEM certificate".into()));
    }
    Ok(ureq::tls::RootCerts::new_with_certs(&certificates))
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

fn agent(roots: Option<ureq::tls::RootCerts>) -> ureq::Agent {
    let mut config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .timeout_global(Some(REQUEST_TIMEOUT));
    if let Some(roots) = roots {
        config = config.tls_config(ureq::tls::TlsConfig::builder().root_certs(roots).build());
    }
    config.build().into()
}

fn env(names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
}

impl Vault {
    /// The Vault the `VAULT_*` (or `BAO_*`) variables name.
    pub fn from_env() -> Result<Self> {
        let vault = Self::addressed_from_env()?;
        match env(&["VAULT_CACERT", "BAO_CACERT"]) {
            Some(path) => vault.trusting_ca(&path),
            None => Ok(vault),
        }
    }

    /// Trusts only the CA certificates in the PEM file at `path` for Vault's TLS, as
    /// `VAULT_CACERT` asks.
    pub fn trusting_ca(mut self, path: &str) -> Result<Self> {
        self.agent = agent(Some(private_roots(path)?));
        Ok(self)
    }

    /// The address and credentials of [`Vault::from_env`].
    fn addressed_from_env() -> Result<Self> {
        let address = env(&["VAULT_ADDR", "BAO_ADDR"]).ok_or(Error::NoAddress)?;
        if let Some(token) = env(&["VAULT_TOKEN", "BAO_TOKEN"]) {
            return Ok(Self::with_token(&address, &token));
        }
        match (
            env(&["VAULT_ROLE_ID", "BAO_ROLE_ID"]),
            env(&["VAULT_SECRET_ID", "BAO_SECRET_ID"]),
        ) {
            (Some(role_id), Some(secret_id)) => {
                let mount = env(&["VAULT_APPROLE_MOUNT", "BAO_APPROLE_MOUNT"])
                    .unwrap_or_else(|| "approle".into());
                Ok(Self::with_approle(&address, &role_id, &secret_id, &mount))
            }
            _ => Err(Error::NoCredentials),
        }
    }

    /// A Vault at `address` reached with `token`.
    pub fn with_token(address: &str, token: &str) -> Self {
        Self::new(address.into(), Credentials::Token, Some(token.into()))
    }

    /// A Vault at `address` reached by AppRole login at `auth/<mount>/login`, repeated whenever
    /// the token it gave is refused (expired or revoked).
    pub fn with_approle(address: &str, role_id: &str, secret_id: &str, mount: &str) -> Self {
        Self::new(
            address.into(),
            Credentials::AppRole {
                role_id: role_id.into(),
                secret_id: secret_id.into(),
                mount: mount.into(),
            },
            None,
        )
    }

    fn new(address: String, credentials: Credentials, token: Option<String>) -> Self {
        Vault {
            address: address.trim_end_matches('/').into(),
            credentials,
            token: Mutex::new(token),
            agent: agent(None),
        }
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    fn token(&self, action: &str) -> Result<String> {
        if let Some(token) = self.token.lock().ok().and_then(|t| t.clone()) {
            return Ok(token);
        }
        let Credentials::AppRole {
            role_id,
            secret_id,
            mount,
        } = &self.credentials
        else {
            return Err(Error::NoCredentials);
        };
        let login = format!("the AppRole login for {action}");
        let answer = self.send(
            "POST",
            &format!("auth/{mount}/login"),
            None,
            Some(json!({"role_id": role_id, "secret_id": secret_id})),
            &login,
        )?;
        let token = answer["auth"]["client_token"]
            .as_str()
            .ok_or_else(|| Error::Malformed {
                action: login,
                reason: "no auth.client_token".into(),
            })?
            .to_string();
        if let Ok(mut slot) = self.token.lock() {
            *slot = Some(token.clone());
        }
        Ok(token)
    }

    /// Calls the API with the token; with AppRole, a refusal logs in again once (the token may
    /// have expired) before it counts.
    fn call(&self, method: &str, path: &str, body: Option<Value>, action: &str) -> Result<Value> {
        let token = self.token(action)?;
        match self.send(method, path, Some(&token), body.clone(), action) {
            Err(Error::Forbidden { .. })
                if matches!(self.credentials, Credentials::AppRole { .. }) =>
            {
                if let Ok(mut slot) = self.token.lock() {
                    *slot = None;
                }
                let token = self.token(action)?;
                self.send(method, path, Some(&token), body, action)
            }
            other => other,
        }
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        action: &str,
    ) -> Result<Value> {
        let url = format!("{}/v1/{path}", self.address);
        let unreachable = |reason: String| Error::Unreachable {
            address: self.address.clone(),
            action: action.into(),
            reason,
        };
        let mut request = ureq::http::Request::builder()
            .method(method)
            .uri(&url)
            .header("Content-Type", "application/json");
        if let Some(token) = token {
            request = request.header("X-Vault-Token", token);
        }
        let request = request
            .body(body.map(|b| b.to_string()).unwrap_or_default())
            .map_err(|e| Error::Spec {
                spec: url.clone(),
                reason: e.to_string(),
            })?;
        let mut response = self
            .agent
            .run(request)
            .map_err(|e| unreachable(e.to_string()))?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER)
            .read_to_string()
            .map_err(|e| unreachable(format!("reading the answer: {e}")))?;
        if (200..300).contains(&status) {
            if text.trim().is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_str(&text).map_err(|e| Error::Malformed {
                action: action.into(),
                reason: e.to_string(),
            });
        }
        // Vault explains itself as {"errors": [...]}.
        let detail = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| {
                v["errors"].as_array().map(|errors| {
                    errors
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join("; ")
                })
            })
            .unwrap_or_else(|| text.chars().take(200).collect());
        Err(match status {
            403 => Error::Forbidden {
                action: action.into(),
                detail,
            },
            429 | 472 | 473 | 501 | 503 => Error::Sealed {
                address: self.address.clone(),
                action: action.into(),
                status,
            },
            _ => Error::Http {
                action: action.into(),
                status,
                detail,
            },
        })
    }

    /// The transit key `spec` names: its type, latest version and public keys.
    fn read_key(&self, spec: &VaultSpec) -> Result<Value> {
        let action = format!("reading transit key {}", spec.key);
        match self.call(
            "GET",
            &format!("{}/keys/{}", spec.mount, spec.key),
            None,
            &action,
        ) {
            Err(Error::Http { status: 404, .. }) => Err(Error::MissingKey {
                mount: spec.mount.clone(),
                key: spec.key.clone(),
            }),
            other => other,
        }
    }

    /// The public key of `spec`'s version (the latest when it names none), as TUF lists it, and
    /// that version.
    pub fn public_key(&self, spec: &VaultSpec) -> Result<(Key, KeyKind, u64)> {
        let answer = self.read_key(spec)?;
        let action = format!("reading transit key {}", spec.key);
        let malformed = |reason: &str| Error::Malformed {
            action: action.clone(),
            reason: reason.into(),
        };
        let data = &answer["data"];
        let found = data["type"]
            .as_str()
            .ok_or_else(|| malformed("no data.type"))?;
        let kind = match found {
            "ed25519" => KeyKind::Ed25519,
            "ecdsa-p256" => KeyKind::EcdsaP256,
            other => {
                return Err(Error::WrongKeyType {
                    key: spec.key.clone(),
                    found: other.into(),
                });
            }
        };
        let latest = data["latest_version"]
            .as_u64()
            .ok_or_else(|| malformed("no data.latest_version"))?;
        let version = spec.version.unwrap_or(latest);
        let public = data["keys"][version.to_string()]["public_key"]
            .as_str()
            .ok_or(Error::NoVersion {
                key: spec.key.clone(),
                version,
                latest,
            })?;
        let key = match kind {
            KeyKind::Ed25519 => {
                let raw = BASE64
                    .decode(public)
                    .map_err(|e| malformed(&format!("the Ed25519 public key: {e}")))?;
                Key::ed25519(&raw)
            }
            KeyKind::EcdsaP256 => {
                let spki = spki::SubjectPublicKeyInfoOwned::from_pem(public.as_bytes())
                    .map_err(|e| malformed(&format!("the ECDSA public key: {e}")))?;
                Key::ecdsa_p256(spki.subject_public_key.raw_bytes())
            }
        }
        .map_err(|source| Error::PublicKey {
            key: spec.key.clone(),
            source,
        })?;
        Ok((key, kind, version))
    }

    /// Creates transit key `spec.key` of `kind`, not exportable, and returns its public key;
    /// refuses a name already in use (Vault would otherwise answer with the existing key).
    pub fn create_key(&self, spec: &VaultSpec, kind: KeyKind) -> Result<Key> {
        match self.read_key(spec) {
            Err(Error::MissingKey { .. }) => {}
            Ok(_) => {
                return Err(Error::KeyExists {
                    mount: spec.mount.clone(),
                    key: spec.key.clone(),
                });
            }
            Err(other) => return Err(other),
        }
        self.call(
            "POST",
            &format!("{}/keys/{}", spec.mount, spec.key),
            Some(json!({"type": kind.vault_type(), "exportable": false})),
            &format!("creating transit key {}", spec.key),
        )?;
        Ok(self.public_key(spec)?.0)
    }
}

/// The transit key types Tufa signs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    Ed25519,
    EcdsaP256,
}

impl KeyKind {
    fn vault_type(self) -> &'static str {
        match self {
            KeyKind::Ed25519 => "ed25519",
            KeyKind::EcdsaP256 => "ecdsa-p256",
        }
    }
}

/// A TUF signer whose private key stays in a Vault transit engine.
pub struct VaultSigner {
    vault: Vault,
    spec: VaultSpec,
    kind: KeyKind,
    version: u64,
    public: Key,
    keyid: KeyId,
}

impl std::fmt::Debug for VaultSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultSigner")
            .field("spec", &self.spec)
            .field("version", &self.version)
            .field("keyid", &self.keyid)
            .finish_non_exhaustive()
    }
}

impl VaultSigner {
    /// Opens `vault:<key>...` on the Vault the environment names.
    pub fn from_spec(spec: &str) -> Result<Self> {
        Self::open(Vault::from_env()?, VaultSpec::parse(spec)?)
    }

    /// Reads the key's public half and pins its version; a test signature shows the token may
    /// sign, so a missing policy is found at start rather than at the first upload.
    pub fn open(vault: Vault, spec: VaultSpec) -> Result<Self> {
        let (public, kind, version) = vault.public_key(&spec)?;
        let keyid = public.key_id().map_err(|source| Error::PublicKey {
            key: spec.key.clone(),
            source,
        })?;
        let signer = VaultSigner {
            vault,
            spec,
            kind,
            version,
            public,
            keyid,
        };
        signer.raw_signature(b"tufa: checking the online key in Vault")?;
        Ok(signer)
    }

    /// The Vault key version this signer signs with.
    pub fn version(&self) -> u64 {
        self.version
    }

    fn raw_signature(&self, message: &[u8]) -> Result<Vec<u8>> {
        let action = format!("signing with transit key {}", self.spec.key);
        let body = match self.kind {
            KeyKind::Ed25519 => json!({
                "input": BASE64.encode(message),
                "key_version": self.version,
            }),
            KeyKind::EcdsaP256 => json!({
                "input": BASE64.encode(ring::digest::digest(&ring::digest::SHA256, message)),
                "prehashed": true,
                "hash_algorithm": "sha2-256",
                "marshaling_algorithm": "asn1",
                "key_version": self.version,
            }),
        };
        let answer = match self.vault.call(
            "POST",
            &format!("{}/sign/{}", self.spec.mount, self.spec.key),
            Some(body),
            &action,
        ) {
            Err(Error::Http { status, detail, .. })
                if (status == 400 || status == 404) && detail.contains("not found") =>
            {
                return Err(Error::MissingKey {
                    mount: self.spec.mount.clone(),
                    key: self.spec.key.clone(),
                });
            }
            other => other?,
        };
        let malformed = |reason: &str| Error::Malformed {
            action: action.clone(),
            reason: reason.into(),
        };
        // `vault:v<version>:<base64 signature>`
        let wrapped = answer["data"]["signature"]
            .as_str()
            .ok_or_else(|| malformed("no data.signature"))?;
        let encoded = wrapped
            .strip_prefix(&format!("vault:v{}:", self.version))
            .ok_or_else(|| {
                malformed("the signature is not vault:v<version>:<base64> of the pinned version")
            })?;
        let signature = BASE64
            .decode(encoded)
            .map_err(|e| malformed(&format!("the signature: {e}")))?;
        if self
            .public
            .verify(&self.keyid, message, &hex::encode(&signature))
            .is_err()
        {
            return Err(Error::KeyChanged {
                key: self.spec.key.clone(),
                version: self.version,
                keyid: self.keyid.clone(),
            });
        }
        Ok(signature)
    }
}

impl Signer for VaultSigner {
    fn public_key(&self) -> &Key {
        &self.public
    }

    fn key_id(&self) -> &KeyId {
        &self.keyid
    }

    fn sign(&self, message: &[u8]) -> tufa_metadata::Result<Signature> {
        let bytes = self
            .raw_signature(message)
            .map_err(|e| tufa_metadata::Error::Signing(e.to_string()))?;
        Ok(Signature {
            keyid: self.keyid.clone(),
            sig: hex::encode(bytes),
            unrecognized: Default::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_name_key_mount_and_version_and_nothing_else() {
        assert_eq!(
            VaultSpec::parse("vault:tufa-online").unwrap(),
            VaultSpec {
                key: "tufa-online".into(),
                mount: "transit".into(),
                version: None
            }
        );
        assert_eq!(
            VaultSpec::parse("vault:k?mount=pki/transit&version=3").unwrap(),
            VaultSpec {
                key: "k".into(),
                mount: "pki/transit".into(),
                version: Some(3)
            }
        );
        for bad in [
            "vault:",
            "vault:../sys",
            "vault:a/b",
            "vault:k?version=0",
            "vault:k?token=s.abc",
            "vault:k?mount=../sys",
            "pkcs11:k",
        ] {
            assert!(
                matches!(VaultSpec::parse(bad), Err(Error::Spec { .. })),
                "{bad} accepted"
            );
        }
    }
}
