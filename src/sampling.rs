//! The sampling parameters every layer checks the same way: the generation loop, the caption
//! expert and the graph's sampling op.

use crate::notice::OptionError;

/// Refuses a temperature that is negative or not finite (0 is greedy) and a top-p outside
/// (0, 1]; the error names `temperature` or `top_p`.
pub fn check_sampling(temperature: f32, top_p: f32) -> Result<(), OptionError> {
    if !(temperature >= 0.0 && temperature.is_finite()) {
        return Err(OptionError::new(
            &["temperature"],
            format!("{{temperature}} must be a finite number ≥ 0, got {temperature}"),
        ));
    }
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(OptionError::new(
            &["top_p"],
            format!("{{top_p}} must be in (0, 1], got {top_p}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_sampling;

    #[test]
    fn bad_parameters_name_themselves() {
        assert!(check_sampling(0.0, 1.0).is_ok());
        assert!(check_sampling(0.7, 0.01).is_ok());
        for t in [-1.0, f32::NAN, f32::INFINITY] {
            assert_eq!(
                check_sampling(t, 0.5).unwrap_err().options(),
                ["temperature"]
            );
        }
        for p in [0.0, -0.5, 1.5, f32::NAN] {
            let e = check_sampling(0.1, p).unwrap_err();
            assert_eq!(e.options(), ["top_p"]);
            assert!(e.to_string().starts_with("top_p must be in (0, 1]"), "{e}");
        }
    }
}
