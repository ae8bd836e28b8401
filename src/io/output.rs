//! Writing an output file the user named (`--out`): every writer in lav2 goes through
//! [`write_file`], so none of them replaces what it does not own.
//!
//! - a regular file (or a new path) is replaced atomically: written to a temporary file in the
//!   same folder, synced, then renamed over it (a replaced file keeps its permissions; a new
//!   one gets 0666 minus the umask, like any program's output);
//! - a symlink is followed: its target is written (atomically, in the target's folder), the
//!   link stays;
//! - a character device or a FIFO (`/dev/null`, `/dev/stdout`, a pipe) is opened and written
//!   through, never renamed over;
//! - a folder, a block device or a socket is an error naming the path;
//! - every error names the path the user gave, never the temporary file.

use std::fs::{self, OpenOptions};
use std::io::{BufWriter, ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{bail, Context, Result};

/// Writes `path` with what `produce` writes into the given writer (buffered). On failure,
/// nothing is left behind and the existing file (if any) is unchanged.
pub fn write_file(path: &Path, produce: impl FnOnce(&mut dyn Write) -> Result<()>) -> Result<()> {
    let target = resolve(path)?;
    let shown = if target == path {
        path.display().to_string()
    } else {
        format!("{} (→ {})", path.display(), target.display())
    };
    match fs::metadata(&target) {
        Ok(m) if m.is_dir() => bail!("{shown}: is a directory, expected a file path"),
        Ok(m) if m.is_file() => atomic_replace(&target, Some(m.permissions()), &shown, produce),
        Ok(m) => {
            if let Some(kind) = refused_kind(&m.file_type()) {
                bail!(
                    "{shown}: is a {kind}; lav2 writes regular files, character devices and FIFOs only"
                );
            }
            write_through(&target, &shown, produce)
        }
        Err(e) if e.kind() == ErrorKind::NotFound => atomic_replace(&target, None, &shown, produce),
        Err(e) => Err(e).with_context(|| format!("cannot write {shown}")),
    }
}

/// [`write_file`] for bytes already in memory.
pub fn write_bytes(path: &Path, bytes: &[u8]) -> Result<()> {
    write_file(path, |w| Ok(w.write_all(bytes)?))
}

/// Follows symlinks (relative ones from the link's folder) to the path that is written.
fn resolve(path: &Path) -> Result<PathBuf> {
    let mut p = path.to_path_buf();
    for _ in 0..40 {
        match fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                let to = fs::read_link(&p)
                    .with_context(|| format!("cannot read the symlink {}", p.display()))?;
                p = if to.is_absolute() {
                    to
                } else {
                    p.parent().unwrap_or(Path::new("")).join(to)
                };
            }
            _ => return Ok(p),
        }
    }
    bail!("{}: too many levels of symbolic links", path.display())
}

#[cfg(unix)]
fn refused_kind(ft: &fs::FileType) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_block_device() {
        Some("block device")
    } else if ft.is_socket() {
        Some("socket")
    } else if ft.is_char_device() || ft.is_fifo() {
        None
    } else {
        Some("special file")
    }
}

#[cfg(not(unix))]
fn refused_kind(_: &fs::FileType) -> Option<&'static str> {
    Some("special file")
}

fn write_through(
    target: &Path,
    shown: &str,
    produce: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<()> {
    let file = OpenOptions::new()
        .write(true)
        .open(target)
        .with_context(|| format!("cannot open {shown} for writing"))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    produce(&mut w).with_context(|| format!("cannot write {shown}"))?;
    w.flush().with_context(|| format!("cannot write {shown}"))?;
    Ok(())
}

fn atomic_replace(
    target: &Path,
    keep: Option<fs::Permissions>,
    shown: &str,
    produce: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let Some(name) = target.file_name() else {
        bail!("{shown}: not a file path");
    };
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => bail!("cannot write {shown}: {} is not a folder", dir.display()),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            bail!(
                "cannot write {shown}: no such file or directory: the folder {} does not exist",
                dir.display()
            )
        }
        Err(e) => return Err(e).with_context(|| format!("cannot write {shown}")),
    }
    let tmp = dir.join(format!(
        ".{}.lav2-{}-{}.tmp",
        name.to_string_lossy(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o666);
    }
    let file = opts
        .open(&tmp)
        .with_context(|| format!("cannot write {shown}"))?;
    let result = (|| -> Result<()> {
        if let Some(perm) = keep {
            file.set_permissions(perm)?;
        }
        let mut w = BufWriter::with_capacity(1 << 20, file);
        produce(&mut w)?;
        w.flush()?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, target)?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(e.context(format!("cannot write {shown}")));
    }
    Ok(())
}
