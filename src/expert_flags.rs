//! The expert flags of `lav2 generate`: part of the binary (declared by main.rs), turned into
//! the library's [`ExpertOptions`].

use std::path::PathBuf;

use clap::Args;
use lav2::experts::{check_timeout, ExpertOptions, DEFAULT_MAX_OUTPUT, DEFAULT_TIMEOUT_S};

/// The expert flags of `lav2 generate` (flattened into its arguments).
#[derive(Args, Clone, Debug, PartialEq)]
pub struct ExpertFlags {
    /// Read the text in the image with Tesseract OCR (`tesseract IMAGE -`) and give it to the
    /// model as context. Needs --image and the tesseract program (Debian: tesseract-ocr).
    #[arg(long)]
    pub ocr: bool,
    /// Tesseract language(s), e.g. eng or eng+deu (its `-l`); the default is Tesseract's own.
    #[arg(long, value_name = "LANG", requires = "ocr")]
    pub ocr_lang: Option<String>,
    /// Caption the image first with this caption adapter (e.g. the converted CAPTION-7B) on the
    /// same base model, and give the caption to the model as context. Needs --image.
    #[arg(long, value_name = "DIR")]
    pub caption_adapter: Option<PathBuf>,
    /// Most tokens the caption may have (the authors' generate default: 256).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 256,
        requires = "caption_adapter"
    )]
    pub caption_max_new_tokens: usize,
    /// Caption sampling temperature; 0 (the default) is greedy, so the same image always gives
    /// the same context. The authors' demos sample at 0.1 with top-p 0.75.
    #[arg(
        long,
        value_name = "T",
        default_value_t = 0.0,
        requires = "caption_adapter"
    )]
    pub caption_temperature: f32,
    /// Caption prompt as comma-separated token ids, used as given instead of the formatted
    /// "Generate caption of this image" (no BOS added): for models with their own vocabulary.
    #[arg(long, value_name = "IDS", requires = "caption_adapter")]
    pub caption_prompt_ids: Option<String>,
    /// Any other expert: a command run without a shell, its stdout the expert's text.
    /// `{image}` stands for the image path and must appear; quotes group words as in a shell.
    /// Repeat for several experts.
    #[arg(long = "expert-cmd", value_name = "CMD {image}")]
    pub expert_cmd: Vec<String>,
    /// Seconds each expert may take (OCR, caption, each command); a program still running then
    /// is killed, with everything it started, and the run fails naming it.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_TIMEOUT_S,
          value_parser = parse_timeout, allow_negative_numbers = true)]
    pub expert_timeout: f64,
    /// Most bytes an expert program may print on stdout; more is an error naming it.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_OUTPUT,
          value_parser = parse_max_output)]
    pub expert_max_output: usize,
}

/// `--expert-timeout`: a finite number of seconds > 0 (fractions allowed).
fn parse_timeout(s: &str) -> Result<f64, String> {
    let t = s
        .trim()
        .parse::<f64>()
        .map_err(|_| format!("'{s}' is not a number of seconds (e.g. 120 or 2.5)"))?;
    check_timeout(t)
}

/// `--expert-max-output`: a byte count ≥ 1.
fn parse_max_output(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("'{s}' is not a byte count ≥ 1 (e.g. 1048576)")),
    }
}

impl ExpertFlags {
    /// Whether any expert was asked for.
    pub fn any(&self) -> bool {
        self.options().any()
    }

    pub fn options(&self) -> ExpertOptions {
        ExpertOptions {
            ocr: self.ocr,
            ocr_lang: self.ocr_lang.clone(),
            caption_adapter: self.caption_adapter.clone(),
            caption_max_new_tokens: self.caption_max_new_tokens,
            caption_temperature: self.caption_temperature,
            caption_prompt_ids: self.caption_prompt_ids.clone(),
            expert_cmd: self.expert_cmd.clone(),
            expert_timeout: self.expert_timeout,
            expert_max_output: self.expert_max_output,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use std::path::Path;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        experts: ExpertFlags,
    }

    #[test]
    fn flags_have_the_documented_spellings() {
        let c = Cli::try_parse_from([
            "lav2",
            "--ocr",
            "--ocr-lang",
            "eng",
            "--caption-adapter",
            "cap",
            "--caption-max-new-tokens",
            "30",
            "--expert-cmd",
            "a {image}",
            "--expert-cmd",
            "b '{image}'",
        ])
        .unwrap();
        let e = c.experts;
        assert!(e.ocr && e.any());
        assert_eq!(e.ocr_lang.as_deref(), Some("eng"));
        assert_eq!(e.caption_adapter.as_deref(), Some(Path::new("cap")));
        assert_eq!(e.caption_max_new_tokens, 30);
        assert_eq!(e.caption_temperature, 0.0);
        assert_eq!(e.expert_cmd, ["a {image}", "b '{image}'"]);
        // Defaults: nothing asked for, the authors' 256 tokens, greedy.
        let d = Cli::try_parse_from(["lav2"]).unwrap().experts;
        assert!(!d.any());
        assert_eq!(
            (d.caption_max_new_tokens, d.caption_temperature),
            (256, 0.0)
        );
        assert_eq!(
            d.options(),
            ExpertOptions::default(),
            "Default matches the command line's defaults"
        );
        assert_eq!((d.expert_timeout, d.expert_max_output), (120.0, 1 << 20));
        let c = Cli::try_parse_from([
            "lav2",
            "--expert-timeout",
            "2.5",
            "--expert-max-output",
            "4096",
        ])
        .unwrap();
        assert_eq!(c.experts.expert_timeout, 2.5);
        assert_eq!(c.experts.expert_max_output, 4096);
        for bad in ["0", "-1", "nan", "inf", "1e300", "soon"] {
            let e = Cli::try_parse_from(["lav2", "--expert-timeout", bad])
                .err()
                .unwrap_or_else(|| panic!("--expert-timeout {bad} accepted"))
                .to_string();
            assert!(e.contains("--expert-timeout"), "{e}");
        }
        for bad in ["0", "-5", "1M"] {
            assert!(
                Cli::try_parse_from(["lav2", "--expert-max-output", bad]).is_err(),
                "{bad}"
            );
        }
        // Options of an expert need that expert.
        assert!(Cli::try_parse_from(["lav2", "--ocr-lang", "eng"]).is_err());
        assert!(Cli::try_parse_from(["lav2", "--caption-max-new-tokens", "3"]).is_err());
    }
}
