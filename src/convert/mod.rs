//! `lav2 convert`: the authors' PyTorch releases to our folders (being written).

use anyhow::{bail, Result};
use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum ConvertCommand {}

pub fn run(cmd: ConvertCommand) -> Result<()> {
    match cmd {}
}

/// Describes any file or folder `lav2 info` is pointed at.
pub fn describe(path: &std::path::Path) -> Result<String> {
    bail!("{}: cannot describe this file yet", path.display())
}
