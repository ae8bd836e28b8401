//! Embedding lav2 in a Rust program: load an engine once, stream a story, then answer about an
//! image with an adapter — everything through the public API (`lav2::Engine`, `lav2::Session`).
//!
//! ```text
//! cargo run --release --example embed -- MODEL_DIR [PROMPT]
//! cargo run --release --example embed -- MODEL_DIR --adapter ADAPTER_DIR --image FILE --ids 1,2,3
//! ```

use std::io::Write;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::process::ExitCode;

use lav2::{DeviceChoice, Engine, EngineOptions, Image, SamplingOptions};

struct Args {
    model: PathBuf,
    adapter: Option<PathBuf>,
    image: Option<PathBuf>,
    ids: Option<Vec<u32>>,
    prompt: String,
    max_new_tokens: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let model = it.next().ok_or("usage: embed MODEL_DIR [--adapter DIR] [--image FILE] [--ids 1,2,3 | PROMPT] [--max-new-tokens N]")?;
    let mut args = Args {
        model: model.into(),
        adapter: None,
        image: None,
        ids: None,
        prompt: "Once upon a time".into(),
        max_new_tokens: 64,
    };
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--adapter" => args.adapter = Some(value()?.into()),
            "--image" => args.image = Some(value()?.into()),
            "--max-new-tokens" => {
                args.max_new_tokens = value()?.parse().map_err(|e| format!("{a}: {e}"))?
            }
            "--ids" => {
                let ids = value()?
                    .split(',')
                    .map(|s| s.trim().parse::<u32>().map_err(|e| format!("--ids: {e}")))
                    .collect::<Result<_, _>>()?;
                args.ids = Some(ids);
            }
            _ => args.prompt = a,
        }
    }
    Ok(args)
}

fn run(args: &Args) -> Result<(), lav2::Error> {
    let options = EngineOptions {
        device: DeviceChoice::Auto,
        ..Default::default()
    };
    let engine = Engine::load(&args.model, args.adapter.as_deref(), &options)?;
    for notice in engine.notices() {
        eprintln!("embed: {notice}");
    }
    let mut session = engine.session()?;
    if let Some(image) = &args.image {
        session.set_image(Image::File(image))?;
    }
    match &args.ids {
        Some(ids) => session.prefill(ids)?,
        None => {
            let prompt = lav2::format_prompt(engine.default_template(false), &args.prompt, None)?;
            session.prefill_text(&prompt)?;
        }
    }
    let mut out = std::io::stdout().lock();
    let greedy = SamplingOptions::greedy(args.max_new_tokens);
    let mut done_any = false;
    let done = session.generate(&greedy, |token| {
        // Without a tokenizer (the ids-only adapter tests) the ids are the answer.
        let piece = match (engine.has_tokenizer(), done_any) {
            (true, _) => token.text.clone(),
            (false, false) => token.id.to_string(),
            (false, true) => format!(" {}", token.id),
        };
        done_any = true;
        match out.write_all(piece.as_bytes()).and_then(|()| out.flush()) {
            Ok(()) => ControlFlow::Continue(()),
            Err(_) => ControlFlow::Break(()), // stdout closed: stop generating
        }
    })?;
    let _ = writeln!(out);
    eprintln!(
        "embed: {} tokens, stopped by {}",
        done.ids.len(),
        done.stop.name()
    );
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("embed: {e}");
            return ExitCode::FAILURE;
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("embed: error ({}): {e}", e.kind().name());
            ExitCode::FAILURE
        }
    }
}
