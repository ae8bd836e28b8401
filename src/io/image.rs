//! CLIP preprocessing: shorter side to `size` (antialiased bicubic), center crop, /255,
//! CLIP mean/std, channel-first `[3, size, size]`, in RGB or BGR channel order.

use std::path::Path;

use anyhow::{anyhow, bail, Result};
use image::imageops::FilterType;

use crate::model::config::ChannelOrder;

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

pub fn load_image(path: &Path, size: usize, order: ChannelOrder) -> Result<Vec<f32>> {
    let bytes =
        std::fs::read(path).map_err(|e| anyhow!("cannot read image {}: {e}", path.display()))?;
    let img = image::load_from_memory(&bytes).map_err(|e| {
        anyhow!(
            "cannot decode image {} (JPEG and PNG are supported): {e}",
            path.display()
        )
    })?;
    preprocess(&img.to_rgb8(), size, order)
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
