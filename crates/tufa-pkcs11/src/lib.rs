//! The online key in a hardware token: a [`tufa_metadata::Signer`] over PKCS#11.
//!
//! # Why PKCS#11
//!
//! PEP 458's online key signs timestamp, snapshot and every bin role on the server, so it is the
//! key an attacker on that machine can reach. In a key file it can be copied, and a copy signs
//! from anywhere until the offline roles rotate it out. In a token (an HSM, a cloud HSM, a
//! YubiKey or smart card) the private key cannot be exported: an attacker can only sign while
//! they hold the machine, and stop the moment they are evicted. PKCS#11 is the one interface
//! nearly every token vendor ships, so one backend covers them all; the `cryptoki` crate wraps
//! it without `unsafe` in Tufa's code.
//!
//! # Configuration
//!
//! A key is named by a PKCS#11 URI (a subset of RFC 7512):
//!
//! ```text
//! pkcs11:token=<token label>;object=<key label>?module-path=<path to the PKCS#11 module .so>
//! ```
//!
//! - `token`: the token's label (`softhsm2-util --show-slots`, `pkcs11-tool -L`).
//! - `object`: the label of the key pair; the private and public objects share it.
//! - `module-path`: the vendor's PKCS#11 library, for SoftHSM2 on Debian
//!   `/usr/lib/softhsm/libsofthsm2.so`.
//! - the user PIN: in the environment variable `TUFA_PKCS11_PIN` (preferred), or as
//!   `&pin-value=<pin>` in the URI, where shell history and process listings can see it.
//! - `type=private` may be given and is implied. Values are percent-encoded (`%20` for a space).
//!   Other attributes are refused rather than ignored, so the URI never means another key.
//!
//! `tufa keys generate-pkcs11 --uri <URI>` creates the key pair on the token and writes its
//! public key for `tufa ceremony --online-key`; `tufa serve --online-key <URI>` signs with it.
//!
//! # Keys
//!
//! ECDSA P-256 (`ecdsa` / `ecdsa-sha2-nistp256`; `CKM_ECDSA` over a SHA-256 digest computed
//! here, the `r || s` result turned into the DER form TUF verifies) and Ed25519 (`CKM_EDDSA`,
//! PKCS#11 3.0; SoftHSM2 2.6 has it, older HSMs may not). The public key is read from the token
//! (`CKA_EC_POINT`), and a test signature at start-up checks it belongs to the private key.

mod error;
mod token;
mod uri;

pub use error::{Error, Result};
pub use token::{Pkcs11Signer, generate_key_pair};
pub use uri::{PIN_ENV, Pkcs11Uri};
