//! The witnesses a client requires of the index's transparency log, as command-line options
//! shared by `tufa proxy`, `tufa download` and `tufa monitor`.

use anyhow::{Context, Result, bail};
use clap::Args;
use tufa_client::Witnesses;
use tufa_tlog::VerifierKey;

#[derive(Args, Clone, Debug, Default)]
pub struct WitnessArgs {
    /// A witness whose cosignatures count, as its verifier key `<name>+<key ID>+<base64>`
    /// (`tufa witness` prints it); repeat for several. Used only when the trusted root declares
    /// a transparency log.
    #[arg(long = "witness", value_name = "KEY")]
    keys: Vec<String>,
    /// How many of the --witness keys must have cosigned a checkpoint [default: all of them].
    #[arg(long, value_name = "N")]
    witnesses_required: Option<usize>,
}

impl WitnessArgs {
    pub fn witnesses(&self) -> Result<Witnesses> {
        let keys = self
            .keys
            .iter()
            .map(|key| {
                VerifierKey::parse(key).with_context(|| format!("reading the witness key {key:?}"))
            })
            .collect::<Result<Vec<_>>>()?;
        let quorum = self.witnesses_required.unwrap_or(keys.len());
        if quorum > keys.len() {
            bail!(
                "--witnesses-required {quorum} is more than the {} --witness keys given",
                keys.len()
            );
        }
        Ok(Witnesses { keys, quorum })
    }
}
