//! `guild key`: identity keys.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;
use guild_core::Keypair;

use crate::files::{read_key_file, write_atomic};

/// `guild key …`
#[derive(Debug, Subcommand)]
pub enum KeyCmd {
    /// Create a new ed25519 identity key (mode 0600) and print its DID.
    Generate {
        /// Where to write the key file; an existing file is never overwritten.
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the DID of a key file.
    Show {
        /// The key file.
        file: PathBuf,
        /// Print `{"did": …}` as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a `guild key` command.
pub fn run(cmd: KeyCmd) -> Result<ExitCode> {
    match cmd {
        KeyCmd::Generate { out } => {
            let key = Keypair::generate().context("cannot generate a key")?;
            write_atomic(&out, true, |w| {
                w.write_all(key.to_key_file().as_bytes())?;
                Ok(())
            })?;
            println!("{}", key.did());
        }
        KeyCmd::Show { file, json } => {
            let key = read_key_file(&file)?;
            if json {
                println!("{}", serde_json::json!({ "did": key.did() }));
            } else {
                println!("{}", key.did());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
