//! [`Engine`]: a model loaded once, its weights on the device once, shared by its sessions.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::error::{Error, ErrorKind, Kind, Result};
use super::session::Session;
use crate::backend::{self, Backend, DeviceChoice};
use crate::generate::Template;
use crate::io::tokenizer::Tokenizer;
use crate::model::{LoadOptions, Model};
use crate::quant::QuantFormat;

/// How [`Engine::load`] loads a model.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// Where to run: [`DeviceChoice::Auto`] takes a CUDA GPU when one is usable, else the CPU
    /// (and says so in [`Engine::notices`]).
    pub device: DeviceChoice,
    /// Weight format of the linear layers, quantized at load.
    pub quant: QuantFormat,
    /// Context length (KV cache rows) of every session; `None`: the model's own, lowered to
    /// what fits the device, with a notice.
    pub max_seq_len: Option<usize>,
    /// Sequences each session decodes side by side, in lockstep.
    pub batch: usize,
    /// `tokenizer.json` to use; `None`: the model folder's, when it has one (an engine without
    /// a tokenizer takes token ids only).
    pub tokenizer: Option<PathBuf>,
    /// Skips the load-time scan that refuses NaN / infinite weights (trusted files only).
    pub skip_finite_check: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            device: DeviceChoice::Auto,
            quant: QuantFormat::None,
            max_seq_len: None,
            batch: 1,
            tokenizer: None,
            skip_finite_check: false,
        }
    }
}

pub(crate) struct EngineInner {
    pub(crate) model: Model,
    pub(crate) tokenizer: Option<Tokenizer>,
    pub(crate) batch: usize,
    /// The backend the weights were uploaded to; each session gets one sharing them.
    weights: Mutex<Box<dyn Backend>>,
    device_name: String,
    notices: Vec<String>,
}

/// A loaded LLaMA-Adapter V2 model (base, adapter, tokenizer) with its weights on the device.
///
/// `Engine` is cheap to clone (the clones share everything), `Send` and `Sync`: sessions may be
/// opened from any thread, and every session shares the engine's weights — on a GPU they are
/// uploaded once, whatever the number of sessions.
///
/// ```
/// # fn main() -> Result<(), lav2::Error> {
/// # let Some(dir) = lav2::doc_support::conformance("stories260K") else { return Ok(()) };
/// use lav2::{Engine, EngineOptions, DeviceChoice};
/// let options = EngineOptions { device: DeviceChoice::Cpu, ..Default::default() };
/// let engine = Engine::load(&dir, None, &options)?;
/// let ids = engine.tokenize("Once upon a time", true)?;
/// assert_eq!(ids[0], engine.bos_id());
/// assert_eq!(engine.detokenize(&ids[1..])?, "Once upon a time");
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<EngineInner>,
}

impl Engine {
    /// Loads the base model folder `model` (params.json or config.json, safetensors,
    /// tokenizer.json) and, if given, the LLaMA-Adapter V2 folder `adapter`, then puts the
    /// weights on the device. Fails before allocating anything when they cannot fit.
    pub fn load(
        model: impl AsRef<Path>,
        adapter: Option<&Path>,
        options: &EngineOptions,
    ) -> Result<Engine> {
        let model_dir = model.as_ref();
        check_dir("model", model_dir)?;
        if let Some(a) = adapter {
            check_dir("adapter", a)?;
        }
        if options.batch == 0 {
            return Err(Error::bad_input(
                "batch must be at least 1 (sequences per session)",
            ));
        }
        let load = LoadOptions {
            max_seq_len: options.max_seq_len,
            quant: options.quant,
            quantized_file: None,
            skip_finite_check: options.skip_finite_check,
        };
        let tokenizer = load_tokenizer(model_dir, options.tokenizer.as_deref())?;
        let mut model = Model::load(model_dir, adapter, &load).kind(ErrorKind::ModelFile)?;
        let (mut backend, fallback) =
            backend::open_with_notice(options.device).kind(ErrorKind::Device)?;
        let mut notices: Vec<String> = fallback.iter().map(|n| n.to_string()).collect();
        // Memory short for the weights or the context is told by the error's causes.
        let lowered = crate::session::fit_and_upload(&mut model, backend.as_mut(), options.batch)
            .kind(ErrorKind::Device)?;
        notices.extend(lowered.iter().map(|n| n.to_string()));
        let device_name = backend.describe();
        Ok(Engine {
            inner: Arc::new(EngineInner {
                model,
                tokenizer,
                batch: options.batch,
                weights: Mutex::new(backend),
                device_name,
                notices,
            }),
        })
    }

    /// A new conversation on this engine: its own KV cache and activations, the engine's
    /// weights. Sessions are independent and may run on different threads at once.
    pub fn session(&self) -> Result<Session> {
        let backend = {
            let weights = self.inner.weights.lock().map_err(|_| {
                Error::new(ErrorKind::Internal, "the engine's device lock is poisoned")
            })?;
            weights.share_weights().kind(ErrorKind::Device)?
        };
        let session = crate::session::Session::sharing_weights(
            self.inner.model.clone(),
            backend,
            self.inner.batch,
        )
        .kind(ErrorKind::Device)?;
        Ok(Session::new(self.clone(), session))
    }

    /// Token ids of `text`, after the BOS id when `bos`.
    pub fn tokenize(&self, text: &str, bos: bool) -> Result<Vec<u32>> {
        let mut ids = if bos { vec![self.bos_id()] } else { Vec::new() };
        ids.extend(self.tokenizer()?.encode(text).kind(ErrorKind::BadInput)?);
        Ok(ids)
    }

    /// The text of `ids` (special tokens such as BOS left out).
    pub fn detokenize(&self, ids: &[u32]) -> Result<String> {
        self.check_ids(ids, "position")?;
        self.tokenizer()?.decode(ids).kind(ErrorKind::BadInput)
    }

    /// The tokenizer, or the error telling that there is none.
    pub(crate) fn tokenizer(&self) -> Result<&Tokenizer> {
        self.tokenizer_if_any().ok_or_else(|| {
            Error::bad_input(format!(
                "this engine has no tokenizer ({} has no tokenizer.json and none was given in \
                 EngineOptions::tokenizer): give token ids",
                self.inner.model.dir.display()
            ))
        })
    }

    pub(crate) fn tokenizer_if_any(&self) -> Option<&Tokenizer> {
        self.inner.tokenizer.as_ref()
    }

    /// Whether the engine can turn text into ids and back.
    pub fn has_tokenizer(&self) -> bool {
        self.inner.tokenizer.is_some()
    }

    /// Refuses ids outside the vocabulary, naming the first and its `place` (as the command
    /// line words it: "prompt position" for a prompt).
    pub(crate) fn check_ids(&self, ids: &[u32], place: &str) -> Result<()> {
        let vocab = self.vocab_size();
        match ids.iter().enumerate().find(|(_, &id)| id as usize >= vocab) {
            Some((i, id)) => Err(Error::bad_input(format!(
                "token id {id} (at {place} {i}) is outside the vocabulary of {vocab} tokens"
            ))),
            None => Ok(()),
        }
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.model.config.vocab_size
    }

    /// Tokens a session holds: prompt and generated text together.
    pub fn context_len(&self) -> usize {
        self.inner.model.config.max_seq_len
    }

    pub fn bos_id(&self) -> u32 {
        self.inner.model.config.bos_id
    }

    pub fn eos_id(&self) -> u32 {
        self.inner.model.config.eos_id
    }

    /// Sequences each session decodes side by side.
    pub fn batch(&self) -> usize {
        self.inner.batch
    }

    /// Whether an adapter was loaded.
    pub fn has_adapter(&self) -> bool {
        self.inner.model.adapter.is_some()
    }

    /// The side of the square image the vision tower takes, if the adapter has one.
    pub fn image_size(&self) -> Option<usize> {
        self.inner
            .model
            .adapter
            .as_ref()
            .and_then(|a| a.config.visual.as_ref())
            .map(|v| v.clip.image_size)
    }

    /// The prompt format the command line uses by default for this model: the authors'
    /// Alpaca template with an adapter or with context text, the text as given otherwise.
    pub fn default_template(&self, has_context: bool) -> Template {
        Template::default_for(self.has_adapter(), has_context)
    }

    /// One line naming the device the engine runs on.
    pub fn device_name(&self) -> &str {
        &self.inner.device_name
    }

    /// What the engine did at load that its user should know: a fallback to the CPU, a context
    /// lowered to what fits.
    pub fn notices(&self) -> &[String] {
        &self.inner.notices
    }
}

fn check_dir(what: &str, dir: &Path) -> Result<()> {
    crate::io::paths::require_dir(what, dir).kind(ErrorKind::ModelFile)
}

fn load_tokenizer(model_dir: &Path, given: Option<&Path>) -> Result<Option<Tokenizer>> {
    let path = match given {
        Some(p) => p.to_path_buf(),
        None => {
            let p = model_dir.join("tokenizer.json");
            if !p.exists() {
                return Ok(None);
            }
            p
        }
    };
    Tokenizer::load(&path).map(Some).kind(ErrorKind::ModelFile)
}
