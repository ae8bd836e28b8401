//! Output files (`--out`): what exists at the path is never replaced unless lav2 owns it.
//! Device nodes and FIFOs are written through, symlinks followed, folders refused, write
//! errors name the real path, new files get 0666 minus the umask. The writer shared by every
//! command (`lav2::io::output::write_file`) is tested directly on files made here, and the
//! `forward` / `quantize` commands end to end on the conformance model.

mod common;

use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};

use common::*;
use lav2::io::output::{write_bytes, write_file};

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn mkfifo(path: &Path) {
    let ok = Command::new("mkfifo").arg(path).status().unwrap().success();
    assert!(ok, "mkfifo {}", path.display());
}

/// No temporary file is left beside the output.
fn assert_no_leftovers(dir: &Path) {
    let left: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.contains(".lav2-"))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}

fn err_text(r: anyhow::Result<()>) -> String {
    format!("{:#}", r.expect_err("the write should fail"))
}

#[test]
fn a_character_device_is_written_through_not_replaced() {
    if !is_root() {
        eprintln!("SKIPPED: mknod needs root");
        return;
    }
    let dir = scratch("out-chardev");
    let null = dir.join("null");
    let ok = Command::new("mknod")
        .arg(&null)
        .args(["c", "1", "3"])
        .status()
        .unwrap()
        .success();
    assert!(ok, "mknod");
    let before = std::fs::metadata(&null).unwrap();
    write_bytes(&null, b"some bytes").unwrap();
    let after = std::fs::metadata(&null).unwrap();
    assert!(
        after.file_type().is_char_device(),
        "the device was replaced"
    );
    assert_eq!(before.ino(), after.ino(), "the device node was replaced");
    assert_eq!(before.rdev(), after.rdev());
    assert_eq!(
        before.permissions().mode(),
        after.permissions().mode(),
        "the device's mode changed"
    );
    assert_no_leftovers(&dir);
}

#[test]
fn a_fifo_is_written_through_to_its_reader() {
    let dir = scratch("out-fifo");
    let fifo = dir.join("pipe");
    mkfifo(&fifo);
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let mut got = Vec::new();
            std::fs::File::open(&fifo)
                .unwrap()
                .read_to_end(&mut got)
                .unwrap();
            got
        })
    };
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    write_bytes(&fifo, &data).unwrap();
    assert_eq!(reader.join().unwrap(), data, "the reader got other bytes");
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
    assert_no_leftovers(&dir);
}

#[test]
fn a_symlink_is_followed_and_stays_a_symlink() {
    let dir = scratch("out-symlink");
    let sub = dir.join("real");
    std::fs::create_dir(&sub).unwrap();
    let target = sub.join("file.bin");
    std::fs::write(&target, b"old").unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o640)).unwrap();
    let link = dir.join("link.bin");
    std::os::unix::fs::symlink("real/file.bin", &link).unwrap();
    write_bytes(&link, b"new contents").unwrap();
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        Path::new("real/file.bin")
    );
    assert_eq!(std::fs::read(&target).unwrap(), b"new contents");
    // A replaced file keeps its mode.
    assert_eq!(
        std::fs::metadata(&target).unwrap().permissions().mode() & 0o777,
        0o640
    );
    // A dangling symlink gets its target created.
    let dangling = dir.join("dangling");
    std::os::unix::fs::symlink("real/new.bin", &dangling).unwrap();
    write_bytes(&dangling, b"x").unwrap();
    assert_eq!(std::fs::read(sub.join("new.bin")).unwrap(), b"x");
    assert!(std::fs::symlink_metadata(&dangling)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_no_leftovers(&dir);
    assert_no_leftovers(&sub);
}

#[test]
fn a_folder_and_a_missing_folder_are_errors_naming_the_path() {
    let dir = scratch("out-dir");
    let e = err_text(write_bytes(&dir, b"x"));
    assert!(e.contains(&dir.display().to_string()), "{e}");
    assert!(e.contains("is a directory"), "{e}");
    assert!(dir.is_dir());
    let nested = dir.join("no/such/folder/out.bin");
    let e = err_text(write_bytes(&nested, b"x"));
    assert!(e.contains(&nested.display().to_string()), "{e}");
    assert!(e.contains("no such file or directory"), "{e}");
    assert_no_leftovers(&dir);
}

#[test]
fn write_failures_name_the_real_path_and_keep_the_old_file() {
    if Path::new("/dev/full").exists() {
        let e = err_text(write_bytes(Path::new("/dev/full"), &[0u8; 4096]));
        assert!(e.contains("/dev/full"), "{e}");
        assert!(e.contains("No space left on device"), "{e}");
        assert!(!e.contains(".lav2-"), "temporary name in: {e}");
    } else {
        eprintln!("SKIPPED (part): no /dev/full");
    }
    // A failure while producing the contents leaves the existing file as it was.
    let dir = scratch("out-fail");
    let path = dir.join("keep.bin");
    std::fs::write(&path, b"precious").unwrap();
    let e = err_text(write_file(&path, |w| {
        w.write_all(b"half")?;
        anyhow::bail!("the producer failed")
    }));
    assert!(e.contains(&path.display().to_string()), "{e}");
    assert!(e.contains("the producer failed"), "{e}");
    assert!(!e.contains(".lav2-"), "temporary name in: {e}");
    assert_eq!(std::fs::read(&path).unwrap(), b"precious");
    assert_no_leftovers(&dir);
}

fn lav2_under_umask(umask: &str, args: &[&str]) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(format!("umask {umask} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_lav2"))
        .args(args)
        .output()
        .expect("run lav2")
}

/// `forward --out` and `quantize --out` through a char device, a FIFO, a symlink, a folder,
/// and as new files under two umasks.
#[test]
fn forward_and_quantize_outputs_follow_the_rules() {
    let Some(root) = conformance() else { return };
    let model = root.join("stories260K");
    let model = model.to_str().unwrap();
    let dir = scratch("out-cli");
    let p = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let forward = |umask: &str, out: &str| {
        lav2_under_umask(
            umask,
            &[
                "forward",
                "--model",
                model,
                "--prompt-ids",
                "1,403,407",
                "--out",
                out,
            ],
        )
    };
    let quantize = |umask: &str, out: &str| {
        lav2_under_umask(
            umask,
            &[
                "quantize", "--model", model, "--quant", "int8", "--out", out,
            ],
        )
    };
    let ok = |o: &Output| assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // New files: 0666 minus the umask (not 0600).
    for (umask, mode) in [("022", 0o644), ("007", 0o660)] {
        let f = p(&format!("logits-{umask}.safetensors"));
        ok(&forward(umask, &f));
        let m = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
        assert_eq!(m, mode, "forward --out under umask {umask}: mode {m:o}");
        assert_eq!(read_tensor(Path::new(&f), "logits").0, vec![3, 512]);
        let q = p(&format!("q-{umask}.safetensors"));
        ok(&quantize(umask, &q));
        let m = std::fs::metadata(&q).unwrap().permissions().mode() & 0o777;
        assert_eq!(m, mode, "quantize --out under umask {umask}: mode {m:o}");
    }
    // A symlink: the target is rewritten, the link stays.
    let target = p("logits-022.safetensors");
    std::os::unix::fs::symlink(&target, p("link.safetensors")).unwrap();
    let before = std::fs::read(&target).unwrap();
    ok(&lav2_under_umask(
        "022",
        &[
            "forward",
            "--model",
            model,
            "--prompt-ids",
            "1,403",
            "--out",
            &p("link.safetensors"),
        ],
    ));
    assert!(std::fs::symlink_metadata(p("link.safetensors"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_ne!(std::fs::read(&target).unwrap(), before);
    assert_eq!(read_tensor(Path::new(&target), "logits").0, vec![2, 512]);
    // A FIFO gets the file's bytes.
    let fifo = dir.join("fifo");
    mkfifo(&fifo);
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let mut got = Vec::new();
            std::fs::File::open(&fifo)
                .unwrap()
                .read_to_end(&mut got)
                .unwrap();
            got
        })
    };
    ok(&quantize("022", fifo.to_str().unwrap()));
    let got = reader.join().unwrap();
    assert_eq!(got, std::fs::read(p("q-022.safetensors")).unwrap());
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
    // A character device stays one.
    let null = if is_root() {
        let n = dir.join("null");
        assert!(Command::new("mknod")
            .arg(&n)
            .args(["c", "1", "3"])
            .status()
            .unwrap()
            .success());
        n
    } else {
        Path::new("/dev/null").to_path_buf()
    };
    for run in [&forward as &dyn Fn(&str, &str) -> Output, &quantize] {
        ok(&run("022", null.to_str().unwrap()));
        assert!(std::fs::metadata(&null)
            .unwrap()
            .file_type()
            .is_char_device());
    }
    // A folder is refused, naming it, with exit status 1.
    for run in [&forward as &dyn Fn(&str, &str) -> Output, &quantize] {
        let o = run("022", dir.to_str().unwrap());
        let e = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{e}");
        assert!(
            e.contains(&format!("{}: is a directory", dir.display())),
            "{e}"
        );
    }
    // A full device: the error names it.
    if Path::new("/dev/full").exists() {
        let o = forward("022", "/dev/full");
        let e = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{e}");
        assert!(e.contains("cannot write /dev/full: No space left"), "{e}");
    }
    assert_no_leftovers(&dir);
}
