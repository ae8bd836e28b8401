//! Image decoding at the trust boundary (`--image`, and the file every expert reads): valid
//! JPEG / PNG decode exactly as the image crate decodes them; a truncated or corrupt file is an
//! error naming it; a file declaring huge dimensions, or carrying a huge ICC profile or text
//! chunk, is refused in bounded time and memory (measured in a child process, from its peak RSS).
//! Every file is made here by the test.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::scratch;
use image::{ImageEncoder, RgbImage};
use lav2::io::image::{check_image, decode_image, decode_image_bytes, load_image, preprocess};
use lav2::model::config::ChannelOrder;

/// A smooth picture with some detail, so that JPEG has real entropy-coded data to cut.
fn picture(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let v = ((x * 7 + y * 13) % 256) as u8;
        image::Rgb([v, (x * 255 / w) as u8, ((x ^ y) & 0xff) as u8])
    })
}

fn jpeg(img: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .write_image(
            img,
            img.width(),
            img.height(),
            image::ExtendedColorType::Rgb8,
        )
        .unwrap();
    out
}

fn gray_jpeg(w: u32, h: u32) -> Vec<u8> {
    let img = image::GrayImage::from_fn(w, h, |x, y| image::Luma([((x * 3 + y * 5) % 256) as u8]));
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .write_image(&img, w, h, image::ExtendedColorType::L8)
        .unwrap();
    out
}

fn png_with_icc(img: &RgbImage, icc: Option<Vec<u8>>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = image::codecs::png::PngEncoder::new(&mut out);
    if let Some(icc) = icc {
        enc.set_icc_profile(icc).unwrap();
    }
    enc.write_image(
        img,
        img.width(),
        img.height(),
        image::ExtendedColorType::Rgb8,
    )
    .unwrap();
    out
}

fn png(img: &RgbImage) -> Vec<u8> {
    png_with_icc(img, None)
}

/// CRC-32 (ISO-HDLC, as PNG uses), for chunks written by hand.
fn crc32(bytes: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in bytes {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut c = (data.len() as u32).to_be_bytes().to_vec();
    c.extend_from_slice(kind);
    c.extend_from_slice(data);
    let mut crc_in = kind.to_vec();
    crc_in.extend_from_slice(data);
    c.extend_from_slice(&crc32(&crc_in).to_be_bytes());
    c
}

/// A PNG of `w`×`h` RGB8 whose only image data is a tiny zlib stream: the header declares the
/// size, the file is a few dozen bytes. `extra` chunks go before IDAT.
fn declared_png(w: u32, h: u32, extra: &[Vec<u8>]) -> Vec<u8> {
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut f = b"\x89PNG\r\n\x1a\n".to_vec();
    f.extend(chunk(b"IHDR", &ihdr));
    for c in extra {
        f.extend_from_slice(c);
    }
    // zlib: header, one empty final stored block, Adler-32 of nothing.
    f.extend(chunk(
        b"IDAT",
        &[0x78, 0x01, 0x01, 0x00, 0x00, 0xff, 0xff, 0, 0, 0, 1],
    ));
    f.extend(chunk(b"IEND", &[]));
    f
}

/// Byte offsets of PNG chunks of `kind`: (start of the data, its length).
fn find_chunk(png: &[u8], kind: &[u8; 4]) -> (usize, usize) {
    let mut i = 8;
    while i + 8 <= png.len() {
        let len = u32::from_be_bytes(png[i..i + 4].try_into().unwrap()) as usize;
        if &png[i + 4..i + 8] == kind {
            return (i + 8, len);
        }
        i += 12 + len;
    }
    panic!("no {kind:?} chunk")
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn err_of(path: &Path) -> String {
    format!(
        "{:#}",
        load_image(path, 224, ChannelOrder::Rgb)
            .map(|_| ())
            .unwrap_err()
    )
}

#[test]
fn valid_files_decode_exactly_as_the_image_crate_decodes_them() {
    let dir = scratch("images-valid");
    let img = picture(97, 61);
    for (name, bytes) in [
        ("rgb.jpg", jpeg(&img)),
        ("gray.jpg", gray_jpeg(40, 70)),
        ("rgb.png", png(&img)),
        ("icc.png", png_with_icc(&img, Some(vec![7u8; 3000]))),
    ] {
        let path = write(&dir, name, &bytes);
        let want = image::load_from_memory(&bytes).unwrap().to_rgb8();
        let got = decode_image(&path).unwrap();
        assert_eq!(got.dimensions(), want.dimensions(), "{name}");
        assert!(got.as_raw() == want.as_raw(), "{name}: pixels differ");
        assert!(decode_image_bytes(&bytes, name).unwrap().as_raw() == want.as_raw());
        check_image(&path).unwrap();
        // And the CLIP preprocessing on top is unchanged.
        assert_eq!(
            load_image(&path, 32, ChannelOrder::Bgr).unwrap(),
            preprocess(&want, 32, ChannelOrder::Bgr).unwrap(),
            "{name}"
        );
    }
    // The format is read from the content, not the name.
    let path = write(&dir, "actually-a-png.jpg", &png(&img));
    assert_eq!(decode_image(&path).unwrap().dimensions(), (97, 61));
}

#[test]
fn a_truncated_jpeg_is_an_error_naming_the_file() {
    let dir = scratch("images-truncated-jpeg");
    let full = jpeg(&picture(256, 192));
    let path = write(&dir, "whole.jpg", &full);
    decode_image(&path).unwrap();
    let mut lenient_accepted = 0;
    for pct in [5, 20, 40, 50, 60, 80, 90, 95, 98] {
        let cut = &full[..full.len() * pct / 100];
        // The image crate's own decoder paints the missing part grey and says nothing, for
        // cuts inside the image data.
        lenient_accepted += image::load_from_memory(cut).is_ok() as usize;
        let path = write(&dir, &format!("cut-{pct}.jpg"), cut);
        let e = err_of(&path);
        assert!(
            e.contains(&format!("cannot decode image {}", path.display())),
            "{pct}%: {e}"
        );
        assert!(e.contains("truncated or corrupt JPEG"), "{pct}%: {e}");
        assert!(!e.contains('\n'), "one line: {e}");
        let e = format!("{:#}", check_image(&path).unwrap_err());
        assert!(e.contains("truncated or corrupt JPEG"), "{pct}%: {e}");
    }
    assert!(
        lenient_accepted >= 3,
        "the cuts should include ones the lenient decoder accepts ({lenient_accepted})"
    );
    // Just the signature, and a header cut inside a marker segment.
    for (name, bytes) in [("sig.jpg", &full[..3]), ("hdr.jpg", &full[..30])] {
        let e = err_of(&write(&dir, name, bytes));
        assert!(e.contains(name) && e.contains("JPEG"), "{e}");
    }
}

#[test]
fn a_corrupt_or_truncated_png_is_an_error_naming_the_file() {
    let dir = scratch("images-corrupt-png");
    let full = png(&picture(120, 80));
    let (idat, len) = find_chunk(&full, b"IDAT");
    // One flipped bit in the image data: its CRC no longer matches.
    let mut flipped = full.clone();
    flipped[idat + len / 2] ^= 0x10;
    // A wrong colour type in IHDR (CRC fixed up, so the value itself is what is refused).
    let mut bad_colour = full.clone();
    bad_colour[8 + 8 + 9] = 5;
    let crc = crc32(&bad_colour[12..29]);
    bad_colour[29..33].copy_from_slice(&crc.to_be_bytes());
    let mut cases: Vec<(String, Vec<u8>, &str)> = vec![
        ("crc.png".into(), flipped, "truncated or corrupt PNG"),
        ("colour.png".into(), bad_colour, "colour type 5"),
        ("no-ihdr.png".into(), full[..12].to_vec(), "IHDR"),
    ];
    for pct in [30, 50, 70, 90, 99] {
        let n = idat + len * pct / 100;
        cases.push((
            format!("cut-{pct}.png"),
            full[..n].to_vec(),
            "truncated or corrupt PNG",
        ));
    }
    // Everything but IEND.
    cases.push((
        "no-iend.png".into(),
        full[..full.len() - 12].to_vec(),
        "truncated or corrupt PNG",
    ));
    // Image data that ends at once (a complete but empty zlib stream).
    cases.push((
        "empty-idat.png".into(),
        declared_png(16, 16, &[]),
        "truncated or corrupt PNG",
    ));
    for (name, bytes, want) in &cases {
        let path = write(&dir, name, bytes);
        let e = err_of(&path);
        assert!(
            e.contains(&format!("cannot decode image {}", path.display())) && e.contains(want),
            "{name}: {e}"
        );
        assert!(!e.contains('\n'), "one line: {e}");
    }
    // Not a picture at all, an empty file, a directory.
    let e = err_of(&write(&dir, "text.png", b"hello, not a picture"));
    assert!(
        e.contains("text.png") && e.contains("not a JPEG or PNG"),
        "{e}"
    );
    let e = err_of(&write(&dir, "empty.png", b""));
    assert!(e.contains("empty.png") && e.contains("empty"), "{e}");
    let e = err_of(&dir);
    assert!(e.contains("is a directory"), "{e}");
}

#[test]
fn an_image_too_elongated_to_resize_is_refused() {
    // 20000x3: resized so that its short side is 224, it would be 1.5 M pixels wide (> 1 GB).
    let dir = scratch("images-elongated");
    let path = write(&dir, "strip.png", &png(&picture(20000, 3)));
    let e = err_of(&path);
    assert!(
        e.contains("strip.png") && e.contains("too elongated") && e.contains("20000x3"),
        "{e}"
    );
    // The same strip at a tiny CLIP size is fine.
    assert_eq!(load_image(&path, 1, ChannelOrder::Rgb).unwrap().len(), 3);
}

/// Runs only as a child of the bounded-memory tests: decodes `LAV2_IMAGE_CHILD` and prints the
/// error and this process's peak RSS.
#[test]
fn child_decode_and_report_peak_rss() {
    let Some(path) = std::env::var_os("LAV2_IMAGE_CHILD") else {
        return;
    };
    let r = load_image(Path::new(&path), 224, ChannelOrder::Rgb);
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .to_string();
    println!("CHILD-HWM-KB: {hwm}");
    match r {
        Ok(_) => println!("CHILD-RESULT: ok"),
        Err(e) => println!("CHILD-RESULT: {e:#}"),
    }
}

/// Decodes `path` in a fresh process: (its result line, its peak RSS in MiB, the time taken).
fn decode_in_child(path: &Path) -> (String, f64, Duration) {
    let t0 = Instant::now();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "child_decode_and_report_peak_rss",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("LAV2_IMAGE_CHILD", path)
        .output()
        .unwrap();
    let took = t0.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "child failed: {stdout}");
    let field = |k: &str| {
        stdout
            .lines()
            .find_map(|l| l.split_once(k).map(|(_, v)| v.to_string()))
            .unwrap_or_else(|| panic!("no {k} in {stdout}"))
    };
    let hwm_kb: f64 = field("CHILD-HWM-KB: ").parse().unwrap();
    (field("CHILD-RESULT: "), hwm_kb / 1024.0, took)
}

/// A baseline: the same child decoding a small valid image.
fn baseline_mib(dir: &Path) -> f64 {
    let path = write(dir, "small.png", &png(&picture(64, 64)));
    let (r, mib, _) = decode_in_child(&path);
    assert_eq!(r, "ok");
    mib
}

#[test]
fn huge_declared_dimensions_are_refused_in_bounded_time_and_memory() {
    let dir = scratch("images-huge");
    let base = baseline_mib(&dir);
    // A PNG declaring 100000x100000 (30 GB of RGB) in 70 bytes.
    let p = write(&dir, "huge.png", &declared_png(100_000, 100_000, &[]));
    let (r, mib, took) = decode_in_child(&p);
    eprintln!("huge.png: {mib:.1} MiB peak (baseline {base:.1}), {took:?}");
    assert!(r.contains("huge.png") && r.contains("100000x100000"), "{r}");
    assert!(r.contains("megapixels"), "{r}");
    assert!(mib < base + 16.0, "{mib:.1} MiB (baseline {base:.1})");
    assert!(took < Duration::from_secs(10), "{took:?}");
    // Under the pixel limit but far over the data: refused as truncated, without allocating
    // beyond the declared picture (8192x8192 RGB = 192 MiB).
    let p = write(&dir, "empty-8k.png", &declared_png(8192, 8192, &[]));
    let (r, mib, took) = decode_in_child(&p);
    eprintln!("empty-8k.png: {mib:.1} MiB peak, {took:?}");
    assert!(
        r.contains("empty-8k.png") && r.contains("corrupt PNG"),
        "{r}"
    );
    assert!(mib < base + 260.0, "{mib:.1} MiB");
    assert!(took < Duration::from_secs(10), "{took:?}");
    // A JPEG whose frame header says 65000x65000 (the format's maximum is 65535).
    let mut j = jpeg(&picture(64, 48));
    let sof = j
        .windows(2)
        .position(|w| w == [0xFF, 0xC0])
        .expect("a baseline JPEG has SOF0");
    j[sof + 5..sof + 7].copy_from_slice(&65000u16.to_be_bytes());
    j[sof + 7..sof + 9].copy_from_slice(&65000u16.to_be_bytes());
    let p = write(&dir, "huge.jpg", &j);
    let (r, mib, took) = decode_in_child(&p);
    eprintln!("huge.jpg: {mib:.1} MiB peak, {took:?}");
    assert!(r.contains("huge.jpg") && r.contains("65000x65000"), "{r}");
    assert!(mib < base + 16.0, "{mib:.1} MiB");
    assert!(took < Duration::from_secs(10), "{took:?}");
}

#[test]
fn huge_icc_profiles_and_text_chunks_stay_in_bounded_memory() {
    let dir = scratch("images-metadata");
    let base = baseline_mib(&dir);
    let img = picture(16, 16);
    // An ICC profile of 256 MiB of zeros: about 256 KiB compressed in the file.
    let bomb = png_with_icc(&img, Some(vec![0u8; 256 << 20]));
    assert!(bomb.len() < 2 << 20, "{}", bomb.len());
    let p = write(&dir, "icc-bomb.png", &bomb);
    let (r, mib, took) = decode_in_child(&p);
    eprintln!(
        "icc-bomb.png ({} KiB): {mib:.1} MiB peak (baseline {base:.1}), {took:?}",
        bomb.len() >> 10
    );
    // Inflating stops at the allowance; the decoder then drops the profile as a bad ancillary
    // chunk (lav2 applies no ICC profile anyway) and the picture decodes.
    assert_eq!(r, "ok");
    assert!(mib < base + 64.0, "{mib:.1} MiB (baseline {base:.1})");
    assert!(took < Duration::from_secs(20), "{took:?}");
    // A 48 MiB tEXt chunk in a 16x16 picture: refused once it passes the metadata allowance,
    // not read whole into memory.
    let mut text = b"Comment\0".to_vec();
    text.resize(48 << 20, b'x');
    let p = write(
        &dir,
        "text.png",
        &declared_png(16, 16, &[chunk(b"tEXt", &text)]),
    );
    let (r, mib, took) = decode_in_child(&p);
    eprintln!("text.png (48 MiB): {mib:.1} MiB peak, {took:?}: {r}");
    assert!(r.contains("text.png") && r.contains("metadata"), "{r}");
    assert!(mib < base + 40.0, "{mib:.1} MiB (baseline {base:.1})");
    assert!(took < Duration::from_secs(20), "{took:?}");
}
