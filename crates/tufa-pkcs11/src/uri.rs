//! The subset of PKCS#11 URIs (RFC 7512) that names one signing key:
//! `pkcs11:token=<label>;object=<key label>?module-path=<module>&pin-value=<pin>`.

use std::fmt;
use std::path::PathBuf;

use percent_encoding::percent_decode_str;

use crate::error::{Error, Result};

/// The environment variable holding the token's user PIN. Preferred over `pin-value` in the URI,
/// which ends up in shell history, process listings and config files.
pub const PIN_ENV: &str = "TUFA_PKCS11_PIN";

/// Where a key lives: the PKCS#11 module to load, the token's label and the key's label.
#[derive(Clone, PartialEq, Eq)]
pub struct Pkcs11Uri {
    pub module: PathBuf,
    pub token: String,
    pub object: String,
    pin_value: Option<String>,
}

/// Never prints the PIN.
impl fmt::Debug for Pkcs11Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Uri")
            .field("module", &self.module)
            .field("token", &self.token)
            .field("object", &self.object)
            .field("pin_value", &self.pin_value.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

fn invalid(reason: impl Into<String>) -> Error {
    Error::InvalidUri {
        reason: reason.into(),
    }
}

fn set_once(slot: &mut Option<String>, name: &str, value: String) -> Result<()> {
    if slot.replace(value).is_some() {
        return Err(invalid(format!("{name} is given twice")));
    }
    Ok(())
}

impl Pkcs11Uri {
    /// Parses `uri`. Path attributes: `token`, `object` (both required) and `type=private`;
    /// query attributes: `module-path` (required) and `pin-value`. Values are percent-decoded.
    /// Any other attribute is refused rather than ignored: it would narrow which key is meant,
    /// and signing with a different key than the operator named is worse than not starting.
    pub fn parse(uri: &str) -> Result<Self> {
        let rest = uri
            .strip_prefix("pkcs11:")
            .ok_or_else(|| invalid("it must start with \"pkcs11:\""))?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (mut token, mut object, mut module, mut pin_value) = (None, None, None, None);
        for attribute in path.split(';').filter(|a| !a.is_empty()) {
            let (name, value) = split_attribute(attribute)?;
            match name {
                "token" => set_once(&mut token, name, value)?,
                "object" => set_once(&mut object, name, value)?,
                "type" if value == "private" => {}
                "type" => return Err(invalid("type must be \"private\": Tufa signs with it")),
                other => {
                    return Err(invalid(format!(
                        "unsupported path attribute {other:?}: use token, object (and type=private)"
                    )));
                }
            }
        }
        for attribute in query.split('&').filter(|a| !a.is_empty()) {
            let (name, value) = split_attribute(attribute)?;
            match name {
                "module-path" => set_once(&mut module, name, value)?,
                "pin-value" => set_once(&mut pin_value, name, value)?,
                other => {
                    return Err(invalid(format!(
                        "unsupported query attribute {other:?}: use module-path (and pin-value)"
                    )));
                }
            }
        }
        let required = |value: Option<String>, name: &str| {
            value
                .filter(|v| !v.is_empty())
                .ok_or_else(|| invalid(format!("{name}= is missing")))
        };
        Ok(Pkcs11Uri {
            token: required(token, "token")?,
            object: required(object, "object")?,
            module: required(module, "module-path")?.into(),
            pin_value,
        })
    }

    /// The user PIN: `TUFA_PKCS11_PIN` when set, else the URI's `pin-value`.
    pub fn pin(&self) -> Result<String> {
        self.pin_preferring(std::env::var(PIN_ENV).ok())
    }

    fn pin_preferring(&self, from_env: Option<String>) -> Result<String> {
        from_env
            .filter(|pin| !pin.is_empty())
            .or_else(|| self.pin_value.clone())
            .ok_or_else(|| Error::NoPin {
                token: self.token.clone(),
            })
    }
}

fn split_attribute(attribute: &str) -> Result<(&str, String)> {
    let (name, value) = attribute
        .split_once('=')
        .ok_or_else(|| invalid(format!("{attribute:?} is not name=value")))?;
    let value = percent_decode_str(value)
        .decode_utf8()
        .map_err(|_| invalid(format!("the value of {name} is not UTF-8 once decoded")))?;
    Ok((name, value.into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODULE: &str = "module-path=/usr/lib/softhsm/libsofthsm2.so";

    #[test]
    fn parses_the_supported_attributes_and_decodes_values() {
        let uri = Pkcs11Uri::parse(&format!(
            "pkcs11:token=Tufa%20online;object=online-2025;type=private?{MODULE}&pin-value=12%3B4"
        ))
        .unwrap();
        assert_eq!(uri.token, "Tufa online");
        assert_eq!(uri.object, "online-2025");
        assert_eq!(uri.module, PathBuf::from("/usr/lib/softhsm/libsofthsm2.so"));
        assert_eq!(uri.pin_preferring(None).unwrap(), "12;4");
        assert!(!format!("{uri:?}").contains("12;4"), "Debug hides the PIN");
    }

    #[test]
    fn the_environment_pin_wins_over_the_uri() {
        let with_pin =
            Pkcs11Uri::parse(&format!("pkcs11:token=t;object=k?{MODULE}&pin-value=uri")).unwrap();
        assert_eq!(with_pin.pin_preferring(Some("env".into())).unwrap(), "env");
        assert_eq!(with_pin.pin_preferring(Some(String::new())).unwrap(), "uri");
        let without = Pkcs11Uri::parse(&format!("pkcs11:token=t;object=k?{MODULE}")).unwrap();
        let error = without.pin_preferring(None).unwrap_err();
        assert!(matches!(error, Error::NoPin { .. }), "{error}");
        assert!(error.to_string().contains(PIN_ENV), "{error}");
    }

    #[test]
    fn refuses_what_it_cannot_honour_and_says_what_is_wrong() {
        for (uri, expected) in [
            ("token=t;object=k", "must start with"),
            ("pkcs11:object=k?module-path=/m.so", "token= is missing"),
            ("pkcs11:token=t?module-path=/m.so", "object= is missing"),
            ("pkcs11:token=t;object=k", "module-path= is missing"),
            (
                "pkcs11:token=t;object=k;id=%01?module-path=/m.so",
                "unsupported path attribute \"id\"",
            ),
            (
                "pkcs11:token=t;object=k?module-path=/m.so&pin-source=file",
                "unsupported query attribute \"pin-source\"",
            ),
            (
                "pkcs11:token=t;token=u;object=k?module-path=/m.so",
                "token is given twice",
            ),
            (
                "pkcs11:token=t;object=k;type=public?module-path=/m.so",
                "type must be",
            ),
            ("pkcs11:token;object=k?module-path=/m.so", "not name=value"),
        ] {
            let error = Pkcs11Uri::parse(uri).unwrap_err();
            assert!(matches!(error, Error::InvalidUri { .. }), "{uri}: {error}");
            assert!(error.to_string().contains(expected), "{uri}: {error}");
        }
    }
}
