//! Checks on the paths a user names, so that a wrong one is reported as what it is, with the
//! path: a missing path as "no such file or directory", a folder where a file is expected
//! and a file where a folder is expected.

use std::io::ErrorKind;
use std::path::Path;

use anyhow::{bail, Result};

/// `path` (given as `flag`) must be an existing file (a symlink to one is fine).
pub fn require_file(flag: &str, path: &Path) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => bail!("{flag} {}: is a directory, expected a file", path.display()),
        Ok(_) => Ok(()),
        Err(e) => missing(flag, path, e),
    }
}

/// `path` (given as `flag`) must be an existing folder.
pub fn require_dir(flag: &str, path: &Path) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => bail!("{flag} {}: is a file, expected a folder", path.display()),
        Err(e) => missing(flag, path, e),
    }
}

/// `path` (given as `flag`) must exist, as a file or a folder.
pub fn require_exists(flag: &str, path: &Path) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(_) => Ok(()),
        Err(e) => missing(flag, path, e),
    }
}

fn missing(flag: &str, path: &Path, e: std::io::Error) -> Result<()> {
    if e.kind() == ErrorKind::NotFound {
        bail!("{flag} {}: no such file or directory", path.display())
    }
    bail!("{flag} {}: {e}", path.display())
}
