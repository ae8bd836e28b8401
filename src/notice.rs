//! Text for the library's user that may name some of its options: notices (a fallback taken, a
//! setting lowered) and errors about an option's value.
//!
//! The library never prints, and it names options as its Rust API does (`max_seq_len`); a
//! front end that calls them something else (the command line's `--max-seq-len`) renders the
//! same text with its own names through [`Notice::render`], [`OptionError::render`] and
//! [`render_error`].

use std::fmt;

/// A text in which each of `options` appears as `{option}`, to be named by whoever shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Naming {
    options: Vec<String>,
    text: String,
}

impl Naming {
    fn new(options: &[&str], text: String) -> Naming {
        Naming {
            options: options.iter().map(|o| o.to_string()).collect(),
            text,
        }
    }

    fn render(&self, name: &dyn Fn(&str) -> String) -> String {
        self.options.iter().fold(self.text.clone(), |text, option| {
            text.replace(&format!("{{{option}}}"), &name(option))
        })
    }
}

/// Something the user should know that is not an error, returned for the front end to show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice(Naming);

impl Notice {
    /// A notice that names no option.
    pub fn new(text: impl Into<String>) -> Notice {
        Notice(Naming::new(&[], text.into()))
    }

    /// A notice naming each of `options` (Rust API names) where `text` has `{option}`.
    pub fn naming(options: &[&str], text: impl Into<String>) -> Notice {
        Notice(Naming::new(options, text.into()))
    }

    /// A notice telling of the error `e`, worded by `wrap` from the error's text; the options
    /// the error names stay named by whoever shows the notice.
    pub fn of_error(e: &anyhow::Error, wrap: impl FnOnce(&str) -> String) -> Notice {
        let options = e
            .chain()
            .filter_map(|cause| cause.downcast_ref::<OptionError>())
            .flat_map(|o| o.options().iter().cloned())
            .collect();
        let text = wrap(&render_error(e, |o| format!("{{{o}}}")));
        Notice(Naming { options, text })
    }

    /// The options the notice names.
    pub fn options(&self) -> &[String] {
        &self.0.options
    }

    /// The text with each option called `name(option)`.
    pub fn render(&self, name: impl Fn(&str) -> String) -> String {
        self.0.render(&name)
    }
}

impl fmt::Display for Notice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(str::to_string))
    }
}

/// An error whose text names some of the library's options: the one whose value is refused,
/// or the one that would avoid the error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OptionError(Naming, Cause);

/// Why an [`OptionError`] was raised: a value refused, or memory it would take that is not there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cause {
    Refused,
    OutOfMemory,
}

impl OptionError {
    /// An error naming each of `options` (Rust API names) where `text` has `{option}`.
    pub fn new(options: &[&str], text: impl Into<String>) -> OptionError {
        OptionError(Naming::new(options, text.into()), Cause::Refused)
    }

    /// An error about memory the options would take and the device does not have.
    pub fn out_of_memory(options: &[&str], text: impl Into<String>) -> OptionError {
        OptionError(Naming::new(options, text.into()), Cause::OutOfMemory)
    }

    /// Whether the options ask for memory the device does not have (rather than a bad value).
    pub fn is_out_of_memory(&self) -> bool {
        self.1 == Cause::OutOfMemory
    }

    /// The options the error names.
    pub fn options(&self) -> &[String] {
        &self.0.options
    }

    /// The same error about a part whose options carry `prefix`: `temperature` becomes
    /// `caption_temperature` for the caption expert's sampling.
    pub fn within(self, prefix: &str) -> OptionError {
        let Naming { options, text } = self.0;
        let text = options.iter().fold(text, |text, option| {
            text.replace(&format!("{{{option}}}"), &format!("{{{prefix}_{option}}}"))
        });
        let options = options.iter().map(|o| format!("{prefix}_{o}")).collect();
        OptionError(Naming { options, text }, self.1)
    }

    /// The message with each option called `name(option)`.
    pub fn render(&self, name: impl Fn(&str) -> String) -> String {
        self.0.render(&name)
    }
}

impl fmt::Display for OptionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(str::to_string))
    }
}

impl std::error::Error for OptionError {}

/// An error with its causes, as `{:#}` writes them, with the options of every
/// [`OptionError`] among them called `name(option)`.
pub fn render_error(e: &anyhow::Error, name: impl Fn(&str) -> String) -> String {
    e.chain()
        .map(|cause| match cause.downcast_ref::<OptionError>() {
            Some(o) => o.render(&name),
            None => cause.to_string(),
        })
        .collect::<Vec<_>>()
        .join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    fn flag(o: &str) -> String {
        format!("--{}", o.replace('_', "-"))
    }

    #[test]
    fn options_are_named_as_the_caller_calls_them() {
        let e = OptionError::new(
            &["max_seq_len", "quant"],
            "{max_seq_len} is too long for {image}: lower {max_seq_len} or use {quant} int4",
        );
        assert_eq!(
            e.to_string(),
            "max_seq_len is too long for {image}: lower max_seq_len or use quant int4"
        );
        assert_eq!(
            e.render(flag),
            "--max-seq-len is too long for {image}: lower --max-seq-len or use --quant int4"
        );
        let n = Notice::new("plain {text}");
        assert_eq!(n.render(flag), "plain {text}");
        assert!(n.options().is_empty());
    }

    #[test]
    fn a_notice_of_an_error_keeps_its_options_named() {
        let e = anyhow::Error::new(OptionError::new(&["device"], "no GPU; use {device} cpu"));
        let n = Notice::of_error(&e, |reason| format!("unavailable ({reason}); on the CPU"));
        assert_eq!(
            n.render(flag),
            "unavailable (no GPU; use --device cpu); on the CPU"
        );
        assert_eq!(
            n.to_string(),
            "unavailable (no GPU; use device cpu); on the CPU"
        );
    }

    #[test]
    fn a_part_prefixes_its_options() {
        let e = OptionError::new(&["temperature"], "{temperature} must be ≥ 0").within("caption");
        assert_eq!(e.options(), ["caption_temperature"]);
        assert_eq!(e.render(flag), "--caption-temperature must be ≥ 0");
    }

    #[test]
    fn every_cause_of_a_chain_is_rendered() {
        let inner = OptionError::new(&["zero_point"], "{zero_point} applies to int4 only");
        let e = Err::<(), _>(anyhow::Error::new(inner))
            .context("--quant")
            .context("loading")
            .unwrap_err();
        assert_eq!(
            render_error(&e, flag),
            "loading: --quant: --zero-point applies to int4 only"
        );
        assert_eq!(
            render_error(&e, str::to_string),
            format!("{e:#}"),
            "without renaming, the text is `{{:#}}`'s"
        );
    }
}
