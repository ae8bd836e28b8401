//! CLIP preprocessing: shorter side to `size` (antialiased bicubic), center crop, /255,
//! CLIP mean/std, channel-first `[3, size, size]`, in RGB or BGR channel order.

use std::fs::File;
use std::io::{BufRead, BufReader, Cursor, Read, Seek};
use std::path::Path;

use anyhow::{anyhow, bail, Result};
use image::{imageops::FilterType, Limits};

/// The channel order a vision tower was trained on (the authors' CLIP takes BGR).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelOrder {
    Rgb,
    Bgr,
}

#[allow(clippy::excessive_precision)] // OpenAI's constants as published
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
#[allow(clippy::excessive_precision)]
pub const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];

/// Python's `round`: halves go to the even neighbour, as torchvision's center crop rounds.
fn round_half_even(x: f64) -> i64 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 && (r as i64) % 2 != 0 {
        (r - x.signum()) as i64
    } else {
        r as i64
    }
}

/// Largest image decoded, in pixels (2^26 ≈ 67 megapixels, e.g. 8192×8192): the picture becomes
/// 224×224 or so, and this keeps a decode below about 1 GiB whatever the file declares.
pub const MAX_PIXELS: u64 = 1 << 26;
/// Largest image file read.
pub const MAX_FILE_BYTES: u64 = 256 << 20;
/// What a PNG's ICC profile and text chunks may take beside its pixels.
pub const MAX_METADATA_BYTES: u64 = 16 << 20;
/// What the resize to the CLIP size may take (an extreme aspect ratio makes it huge).
pub const MAX_RESIZE_BYTES: u64 = 256 << 20;

const PNG_SIGNATURE: &[u8; 8] = b"\x89PNG\r\n\x1a\n";

/// Decodes a JPEG or PNG file to RGB, bounded and strict: a truncated or corrupt file is an
/// error naming it (never a half-grey picture), and so is one whose declared size is over
/// [`MAX_PIXELS`] — refused from its header, before anything is allocated for it.
pub fn decode_image(path: &Path) -> Result<image::RgbImage> {
    let what = || format!("image {}", path.display());
    let file = File::open(path).map_err(|e| anyhow!("cannot read {}: {e}", what()))?;
    let meta = file
        .metadata()
        .map_err(|e| anyhow!("cannot read {}: {e}", what()))?;
    if meta.is_dir() {
        bail!("cannot read {}: it is a directory", what());
    }
    if meta.len() > MAX_FILE_BYTES {
        bail!(
            "cannot read {}: {} bytes, over the {} MiB an image may have",
            what(),
            meta.len(),
            MAX_FILE_BYTES >> 20
        );
    }
    decode_reader(BufReader::new(file))
        .map_err(|e| anyhow!("cannot decode {} (JPEG and PNG are supported): {e}", what()))
}

/// [`decode_image`] on bytes in memory (`name` is what errors call them).
pub fn decode_image_bytes(bytes: &[u8], name: &str) -> Result<image::RgbImage> {
    decode_reader(Cursor::new(bytes))
        .map_err(|e| anyhow!("cannot decode image {name} (JPEG and PNG are supported): {e}"))
}

/// Decodes `path` as [`load_image`] would and drops the pixels: for the experts, which read the
/// file with their own decoders.
pub fn check_image(path: &Path) -> Result<()> {
    decode_image(path).map(drop)
}

fn decode_reader<R: BufRead + Seek>(mut r: R) -> Result<image::RgbImage> {
    let head = r.fill_buf()?;
    if head.starts_with(PNG_SIGNATURE) {
        decode_png(r)
    } else if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
        let mut bytes = Vec::new();
        r.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes)?;
        if bytes.len() as u64 > MAX_FILE_BYTES {
            bail!("over the {} MiB an image may have", MAX_FILE_BYTES >> 20);
        }
        decode_jpeg(&bytes)
    } else if head.is_empty() {
        bail!("the file is empty")
    } else {
        bail!("not a JPEG or PNG file (no JPEG or PNG signature)")
    }
}

fn check_pixels(w: u64, h: u64, format: &str) -> Result<()> {
    if w == 0 || h == 0 {
        bail!("the {format} declares an empty image ({w}x{h})");
    }
    if w * h > MAX_PIXELS {
        bail!(
            "the {format} declares {w}x{h} pixels, over the {MAX_PIXELS} ({} megapixels) lav2 decodes",
            MAX_PIXELS / 1_000_000
        );
    }
    Ok(())
}

/// The JPEG through zune-jpeg (as the image crate decodes it) in strict mode, where what the
/// image crate lets pass as a warning — data ending early, a marker inside the entropy-coded
/// data — is an error.
fn decode_jpeg(bytes: &[u8]) -> Result<image::RgbImage> {
    use zune_core::{bytestream::ZCursor, colorspace::ColorSpace, options::DecoderOptions};
    let options = DecoderOptions::default()
        .set_strict_mode(true)
        .set_max_width(u16::MAX as usize)
        .set_max_height(u16::MAX as usize)
        .jpeg_set_out_colorspace(ColorSpace::RGB);
    let mut dec = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    let bad = |e: zune_jpeg::errors::DecodeErrors| anyhow!("truncated or corrupt JPEG: {e}");
    dec.decode_headers().map_err(bad)?;
    let (w, h) = dec
        .dimensions()
        .ok_or_else(|| anyhow!("truncated or corrupt JPEG: no frame header"))?;
    check_pixels(w as u64, h as u64, "JPEG")?;
    let pixels = dec.decode().map_err(bad)?;
    if dec.output_colorspace() != Some(ColorSpace::RGB) {
        bail!("unsupported JPEG colour space {:?}", dec.input_colorspace());
    }
    image::RgbImage::from_raw(w as u32, h as u32, pixels)
        .ok_or_else(|| anyhow!("truncated or corrupt JPEG: fewer pixels than {w}x{h}"))
}

/// The PNG through the image crate, whose decoder checks every chunk's CRC and refuses data
/// that ends early, with its memory bounded: the header (which must come first) is read here,
/// the size checked, and the decoder allowed the pixels plus [`MAX_METADATA_BYTES`] — its
/// limit on ICC profiles and text chunks, decompressed or not.
fn decode_png<R: BufRead + Seek>(mut r: R) -> Result<image::RgbImage> {
    let head = r.fill_buf()?;
    // Signature, then IHDR: length 13, type, width, height, bit depth, colour type.
    if head.len() < 26 || &head[8..16] != b"\0\0\0\x0dIHDR" {
        bail!("corrupt PNG: the file does not start with its IHDR header");
    }
    let be = |i: usize| u32::from_be_bytes(head[i..i + 4].try_into().unwrap()) as u64;
    let (w, h, depth, colour) = (be(16), be(20), head[24], head[25]);
    check_pixels(w, h, "PNG")?;
    // Bytes per pixel as decoded (palettes expand to RGBA, 16-bit stays 16-bit).
    let channels = match colour {
        0 => 1,
        4 => 2,
        2 => 3,
        3 | 6 => 4,
        c => bail!("corrupt PNG: colour type {c} does not exist"),
    };
    let bytes = w * h * channels * if depth == 16 { 2 } else { 1 };
    let mut limits = Limits::default();
    limits.max_image_width = Some(w as u32);
    limits.max_image_height = Some(h as u32);
    limits.max_alloc = Some(bytes + MAX_METADATA_BYTES);
    let img = image::codecs::png::PngDecoder::with_limits(r, limits)
        .and_then(image::DynamicImage::from_decoder)
        .map_err(|e| match e {
            image::ImageError::Limits(l) => anyhow!(
                "the PNG needs more memory than its {w}x{h} pixels and {} MiB of metadata \
                 (ICC profile, text) ({l})",
                MAX_METADATA_BYTES >> 20
            ),
            e => anyhow!("truncated or corrupt PNG: {e}"),
        })?;
    Ok(img.into_rgb8())
}

pub fn load_image(path: &Path, size: usize, order: ChannelOrder) -> Result<Vec<f32>> {
    let img = decode_image(path)?;
    preprocess(&img, size, order).map_err(|e| anyhow!("image {}: {e}", path.display()))
}

pub fn preprocess(img: &image::RgbImage, size: usize, order: ChannelOrder) -> Result<Vec<f32>> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w == 0 || h == 0 {
        bail!("the image is empty ({w}x{h})");
    }
    // torchvision: the shorter side becomes `size`, the longer floor(size · long / short).
    let (nw, nh) = if w <= h {
        (size, (size as f64 * h as f64 / w as f64).floor() as usize)
    } else {
        ((size as f64 * w as f64 / h as f64).floor() as usize, size)
    };
    // The resize goes through a float image of the original width and the new height
    // (16 bytes a pixel), then the new image (3 bytes a pixel).
    let resize_bytes = (w as u128 * nh as u128 * 16) + (nw as u128 * nh as u128 * 3);
    if resize_bytes > MAX_RESIZE_BYTES as u128 || nw > u32::MAX as usize || nh > u32::MAX as usize {
        bail!(
            "{w}x{h} is too elongated: resizing it to {nw}x{nh} would take {} MiB \
             (at most {} MiB); crop it closer to square",
            resize_bytes >> 20,
            MAX_RESIZE_BYTES >> 20
        );
    }
    let resized = image::imageops::resize(img, nw as u32, nh as u32, FilterType::CatmullRom);
    let left = round_half_even((nw - size) as f64 / 2.0) as usize;
    let top = round_half_even((nh - size) as f64 / 2.0) as usize;
    let channels = match order {
        ChannelOrder::Rgb => [0, 1, 2],
        ChannelOrder::Bgr => [2, 1, 0],
    };
    let mut out = vec![0f32; 3 * size * size];
    for (c, &src) in channels.iter().enumerate() {
        for y in 0..size {
            for x in 0..size {
                let p = resized.get_pixel((left + x) as u32, (top + y) as u32);
                let v = p.0[src] as f32 / 255.0;
                out[c * size * size + y * size + x] = (v - CLIP_MEAN[c]) / CLIP_STD[c];
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::round_half_even;

    #[test]
    fn rounding_matches_python() {
        assert_eq!(round_half_even(0.5), 0);
        assert_eq!(round_half_even(1.5), 2);
        assert_eq!(round_half_even(2.5), 2);
        assert_eq!(round_half_even(51.0), 51);
        assert_eq!(round_half_even(3.4), 3);
    }
}
