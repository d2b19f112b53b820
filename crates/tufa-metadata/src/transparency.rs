//! The transparency log a root declares: `root.signed["x-tufa-transparency-log"]`.
//!
//! Clients learn the log's origin and verifier key from root, so that the offline root keys
//! govern the log key as they govern every other key: rotating it is a new root version. The
//! field is an extension TUF clients that do not know it keep and ignore (python-tuf stores it
//! among the unrecognized fields and still verifies the signature over it).
//!
//! ```json
//! "x-tufa-transparency-log": {
//!   "origin": "pypi.example.org/tufa-log",
//!   "key": "pypi.example.org/tufa-log+1a2b3c4d+AZ..."
//! }
//! ```
//!
//! `key` is a C2SP signed-note verifier key of type Ed25519 (0x01) whose name is the origin,
//! as c2sp.org/tlog-checkpoint recommends ("the key name SHOULD be the origin").

use serde_json::{Map, Value};
use thiserror::Error;
use tufa_tlog::{KeyType, VerifierKey};

use crate::metadata::Root;

/// The root field that declares the log.
pub const TRANSPARENCY_LOG_FIELD: &str = "x-tufa-transparency-log";

/// The longest origin accepted: a checkpoint's first line.
const MAX_ORIGIN_LEN: usize = 256;

/// Why the declaration in root is refused.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("root's {TRANSPARENCY_LOG_FIELD} is invalid: {0}")]
pub struct TransparencyLogError(pub String);

/// The log a root declares: the origin line of its checkpoints and the key that signs them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransparencyLog {
    pub origin: String,
    pub key: VerifierKey,
}

impl TransparencyLog {
    /// A declaration for `key`, whose name is the log's origin.
    pub fn new(key: VerifierKey) -> Result<Self, TransparencyLogError> {
        let log = TransparencyLog {
            origin: key.name().to_string(),
            key,
        };
        log.check()?;
        Ok(log)
    }

    fn check(&self) -> Result<(), TransparencyLogError> {
        let bad = |reason: &str| Err(TransparencyLogError(reason.into()));
        if self.origin.is_empty() || self.origin.len() > MAX_ORIGIN_LEN {
            return bad("the origin is empty or longer than 256 bytes");
        }
        if self.origin.chars().any(char::is_control) {
            return bad("the origin contains a control character");
        }
        if self.key.kind() != KeyType::Ed25519 {
            return bad("the key is not an Ed25519 (type 0x01) note key");
        }
        if self.key.name() != self.origin {
            return bad("the key's name is not the origin");
        }
        Ok(())
    }

    fn to_value(&self) -> Value {
        let mut map = Map::new();
        map.insert("key".into(), Value::String(self.key.to_string()));
        map.insert("origin".into(), Value::String(self.origin.clone()));
        Value::Object(map)
    }

    fn from_value(value: &Value) -> Result<Self, TransparencyLogError> {
        let bad = |reason: &str| TransparencyLogError(reason.into());
        let object = value.as_object().ok_or_else(|| bad("not an object"))?;
        let text = |name: &str| {
            object
                .get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| bad(&format!("no string {name:?}")))
        };
        let key = VerifierKey::parse(text("key")?)
            .map_err(|e| TransparencyLogError(format!("the key: {e}")))?;
        let log = TransparencyLog {
            origin: text("origin")?.to_string(),
            key,
        };
        log.check()?;
        Ok(log)
    }
}

impl Root {
    /// The transparency log this root declares, if any.
    pub fn transparency_log(&self) -> Result<Option<TransparencyLog>, TransparencyLogError> {
        self.unrecognized
            .get(TRANSPARENCY_LOG_FIELD)
            .map(TransparencyLog::from_value)
            .transpose()
    }

    /// Declares `log` (replacing any log declared before), or withdraws the declaration.
    pub fn set_transparency_log(&mut self, log: Option<&TransparencyLog>) {
        match log {
            Some(log) => {
                self.unrecognized
                    .insert(TRANSPARENCY_LOG_FIELD.into(), log.to_value());
            }
            None => {
                self.unrecognized.remove(TRANSPARENCY_LOG_FIELD);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::Metadata;

    fn key(name: &str, kind: KeyType) -> VerifierKey {
        VerifierKey::new(name, kind, [7; 32]).unwrap()
    }

    fn root() -> Root {
        let json = r#"{"signed":{"_type":"root","spec_version":"1.0.31","version":1,
            "expires":"2030-01-01T00:00:00Z","consistent_snapshot":true,"keys":{},
            "roles":{"root":{"keyids":[],"threshold":1},"targets":{"keyids":[],"threshold":1},
            "snapshot":{"keyids":[],"threshold":1},"timestamp":{"keyids":[],"threshold":1}}},
            "signatures":[]}"#;
        Metadata::<Root>::from_bytes(json.as_bytes())
            .unwrap()
            .signed
    }

    #[test]
    fn declared_log_round_trips_through_canonical_json() {
        let mut root = root();
        assert_eq!(root.transparency_log(), Ok(None));
        let log = TransparencyLog::new(key("example.org/log", KeyType::Ed25519)).unwrap();
        root.set_transparency_log(Some(&log));
        let bytes = Metadata::new(root).to_bytes().unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.contains("\"x-tufa-transparency-log\":{\"key\":\"example.org/log+"));
        let parsed = Metadata::<Root>::from_bytes(&bytes).unwrap().signed;
        assert_eq!(parsed.transparency_log(), Ok(Some(log)));
        let mut withdrawn = parsed;
        withdrawn.set_transparency_log(None);
        assert_eq!(withdrawn.transparency_log(), Ok(None));
    }

    #[test]
    fn a_declaration_with_the_wrong_key_type_name_or_shape_is_refused() {
        assert!(TransparencyLog::new(key("example.org/log", KeyType::Cosignature)).is_err());
        let mut root = root();
        let other = key("other.org/log", KeyType::Ed25519).to_string();
        for value in [
            serde_json::json!({"origin": "example.org/log", "key": other}),
            serde_json::json!({"origin": "example.org/log"}),
            serde_json::json!({"origin": "example.org/log", "key": "not a key"}),
            serde_json::json!("example.org/log"),
        ] {
            root.unrecognized
                .insert(TRANSPARENCY_LOG_FIELD.into(), value);
            assert!(root.transparency_log().is_err());
        }
    }
}
