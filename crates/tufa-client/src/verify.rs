//! Length and hash checks of downloaded bytes against what a trusted role recorded for them.

use std::collections::BTreeMap;

use ring::digest;
use tufa_metadata::HexDigest;

use crate::error::{Error, Result};

pub(crate) fn check_length(what: &str, referrer: &str, expected: u64, data: &[u8]) -> Result<()> {
    let received = data.len() as u64;
    if received != expected {
        return Err(Error::LengthMismatch {
            what: what.into(),
            referrer: referrer.into(),
            expected,
            received,
        });
    }
    Ok(())
}

/// Every listed hash must match. An algorithm this client cannot compute fails the check rather
/// than being skipped: skipping would let an attacker list only unknown algorithms.
pub(crate) fn check_hashes(
    what: &str,
    referrer: &str,
    hashes: &BTreeMap<String, HexDigest>,
    data: &[u8],
) -> Result<()> {
    for (algorithm, expected) in hashes {
        let algorithm_impl = match algorithm.as_str() {
            "sha256" => &digest::SHA256,
            "sha384" => &digest::SHA384,
            "sha512" => &digest::SHA512,
            other => {
                return Err(Error::Unverifiable {
                    what: what.into(),
                    reason: format!(
                        "{referrer} lists hash algorithm {other:?}, which is not supported"
                    ),
                });
            }
        };
        let actual = digest::digest(algorithm_impl, data);
        if HexDigest::from_bytes(actual.as_ref()) != *expected {
            return Err(Error::HashMismatch {
                what: what.into(),
                referrer: referrer.into(),
                algorithm: algorithm.clone(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_hash_must_match_and_be_known() {
        let data = b"abc";
        let sha256 =
            HexDigest::new("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
                .unwrap();
        let ok = BTreeMap::from([("sha256".to_string(), sha256.clone())]);
        check_hashes("x", "y", &ok, data).unwrap();
        assert!(matches!(
            check_hashes("x", "y", &ok, b"abd"),
            Err(Error::HashMismatch { .. })
        ));
        let unknown = BTreeMap::from([
            ("sha256".to_string(), sha256),
            ("md5".to_string(), HexDigest::new("00").unwrap()),
        ]);
        assert!(matches!(
            check_hashes("x", "y", &unknown, data),
            Err(Error::Unverifiable { .. })
        ));
        assert!(matches!(
            check_length("x", "y", 4, data),
            Err(Error::LengthMismatch {
                expected: 4,
                received: 3,
                ..
            })
        ));
    }
}
