//! `lav2._lav2`: the native half of the Python package `lav2`, a thin layer over the crate's
//! public API ([`lav2::Engine`], [`lav2::Session`], [`lav2::Error`]). The Python half
//! (`python/lav2/__init__.py`) turns paths, bytes and NumPy arrays into the calls here and the
//! logits back into an array. Every call that runs the model releases the GIL.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use lav2::{
    Completion, DeviceChoice, Engine, EngineOptions, ErrorKind, Generation, Image, QuantFormat,
    SamplingOptions, Session, Template,
};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyString};

/// The Python exception for an error of `kind` (the classes live in `lav2._errors`).
fn raise(py: Python<'_>, kind: ErrorKind, message: &str) -> PyErr {
    let class = match kind {
        ErrorKind::BadInput => "BadInputError",
        ErrorKind::ModelFile => "ModelFileError",
        ErrorKind::Device => "DeviceError",
        ErrorKind::OutOfMemory => "OutOfMemoryError",
        _ => "InternalError",
    };
    match py.import("lav2._errors").and_then(|m| m.getattr(class)) {
        Ok(cls) => match cls.call1((message,)) {
            Ok(value) => PyErr::from_value(value),
            Err(e) => e,
        },
        Err(_) => PyRuntimeError::new_err(format!("{}: {message}", kind.name())),
    }
}

fn bad_input(py: Python<'_>, message: &str) -> PyErr {
    raise(py, ErrorKind::BadInput, message)
}

/// `lav2::Result` to a Python exception, with the error's own message.
trait Raise<T> {
    fn py(self, py: Python<'_>) -> PyResult<T>;
}

impl<T> Raise<T> for lav2::Result<T> {
    fn py(self, py: Python<'_>) -> PyResult<T> {
        self.map_err(|e| raise(py, e.kind(), e.message()))
    }
}

/// Python ints as token ids: one that is not a `u32` is outside any vocabulary, said as the
/// engine says it for ids past its vocabulary.
fn token_ids(py: Python<'_>, ids: &[i64], vocab: usize) -> PyResult<Vec<u32>> {
    ids.iter()
        .enumerate()
        .map(|(i, &id)| {
            u32::try_from(id).map_err(|_| {
                bad_input(
                    py,
                    &format!(
                        "token id {id} (at position {i}) is outside the vocabulary of {vocab} tokens"
                    ),
                )
            })
        })
        .collect()
}

/// A count or seed from Python: a negative one is bad input naming its argument, not an
/// OverflowError.
fn unsigned(py: Python<'_>, name: &str, value: i64) -> PyResult<u64> {
    u64::try_from(value)
        .map_err(|_| bad_input(py, &format!("{name} must be 0 or more, got {value}")))
}

fn sampling(
    py: Python<'_>,
    max_new_tokens: i64,
    temperature: f32,
    top_p: f32,
    seed: i64,
    ignore_eos: bool,
) -> PyResult<SamplingOptions> {
    Ok(SamplingOptions {
        temperature,
        top_p,
        seed: unsigned(py, "seed", seed)?,
        max_new_tokens: unsigned(py, "max_new_tokens", max_new_tokens)? as usize,
        ignore_eos,
    })
}

/// A loaded model (base, adapter, tokenizer) with its weights on the device.
#[pyclass(frozen, module = "lav2._lav2", name = "Engine")]
struct PyEngine {
    engine: Engine,
}

#[pymethods]
impl PyEngine {
    #[new]
    #[pyo3(signature = (model, adapter=None, device="auto".to_string(), quant=None, max_seq_len=None, tokenizer=None, skip_finite_check=false))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        model: PathBuf,
        adapter: Option<PathBuf>,
        device: String,
        quant: Option<String>,
        max_seq_len: Option<i64>,
        tokenizer: Option<PathBuf>,
        skip_finite_check: bool,
    ) -> PyResult<Self> {
        let device: DeviceChoice = device
            .parse()
            .map_err(|e: String| bad_input(py, &format!("device: {e}")))?;
        let quant = match quant {
            None => QuantFormat::None,
            Some(q) => QuantFormat::parse(&q, false)
                .map_err(|e| bad_input(py, &format!("quant: {e:#}")))?,
        };
        let max_seq_len = match max_seq_len {
            Some(n) => Some(unsigned(py, "max_seq_len", n)? as usize),
            None => None,
        };
        let options = EngineOptions {
            device,
            quant,
            max_seq_len,
            batch: 1,
            tokenizer,
            skip_finite_check,
        };
        let engine = py
            .detach(|| Engine::load(&model, adapter.as_deref(), &options))
            .py(py)?;
        Ok(PyEngine { engine })
    }

    /// A new conversation: its own KV cache, this engine's weights.
    fn session(&self, py: Python<'_>) -> PyResult<PySession> {
        let engine = &self.engine;
        let session = py.detach(|| engine.session()).py(py)?;
        Ok(PySession {
            inner: Arc::new(Mutex::new(session)),
            streaming: Arc::new(AtomicBool::new(false)),
            image_size: engine.image_size(),
            vocab: engine.vocab_size(),
        })
    }

    #[pyo3(signature = (text, bos=true))]
    fn tokenize(&self, py: Python<'_>, text: String, bos: bool) -> PyResult<Vec<u32>> {
        let engine = &self.engine;
        py.detach(|| engine.tokenize(&text, bos)).py(py)
    }

    fn detokenize(&self, py: Python<'_>, ids: Vec<i64>) -> PyResult<String> {
        let ids = token_ids(py, &ids, self.engine.vocab_size())?;
        let engine = &self.engine;
        py.detach(|| engine.detokenize(&ids)).py(py)
    }

    /// The prompt's ids: text in `template` ("auto": the command line's default) after BOS, or
    /// a list of ids as given.
    #[pyo3(signature = (prompt, template="auto".to_string(), context=None))]
    fn prompt_ids(
        &self,
        py: Python<'_>,
        prompt: &Bound<'_, PyAny>,
        template: String,
        context: Option<String>,
    ) -> PyResult<Vec<u32>> {
        let engine = &self.engine;
        if let Ok(text) = prompt.cast::<PyString>() {
            let template = match template.as_str() {
                "auto" => engine.default_template(context.is_some()),
                t => t
                    .parse::<Template>()
                    .map_err(|e| bad_input(py, &format!("template: {e}")))?,
            };
            let text: String = text.extract()?;
            let formatted = lav2::format_prompt(template, &text, context.as_deref()).py(py)?;
            return py.detach(|| engine.tokenize(&formatted, true)).py(py);
        }
        if !matches!(template.as_str(), "auto" | "none") || context.is_some() {
            return Err(bad_input(
                py,
                "a prompt of token ids is used as given; template and context need a text prompt",
            ));
        }
        let ids: Vec<i64> = prompt
            .extract()
            .map_err(|_| bad_input(py, "the prompt must be a str or a list of token ids (ints)"))?;
        token_ids(py, &ids, engine.vocab_size())
    }

    #[getter]
    fn vocab_size(&self) -> usize {
        self.engine.vocab_size()
    }

    #[getter]
    fn context_len(&self) -> usize {
        self.engine.context_len()
    }

    #[getter]
    fn bos_id(&self) -> u32 {
        self.engine.bos_id()
    }

    #[getter]
    fn eos_id(&self) -> u32 {
        self.engine.eos_id()
    }

    #[getter]
    fn device(&self) -> String {
        self.engine.device_name().to_string()
    }

    #[getter]
    fn has_tokenizer(&self) -> bool {
        self.engine.has_tokenizer()
    }

    #[getter]
    fn has_adapter(&self) -> bool {
        self.engine.has_adapter()
    }

    #[getter]
    fn image_size(&self) -> Option<usize> {
        self.engine.image_size()
    }

    #[getter]
    fn default_template(&self) -> &'static str {
        match self.engine.default_template(false) {
            Template::Alpaca => "alpaca",
            Template::None => "none",
        }
    }

    #[getter]
    fn notices(&self) -> Vec<String> {
        self.engine.notices().to_vec()
    }
}

/// One conversation on an engine. Calls on one session run one at a time (a lock); while a
/// stream is running on it, other calls are refused.
#[pyclass(frozen, module = "lav2._lav2", name = "Session")]
struct PySession {
    inner: Arc<Mutex<Session>>,
    /// Set while a [`TokenStream`] holds the session.
    streaming: Arc<AtomicBool>,
    image_size: Option<usize>,
    vocab: usize,
}

impl PySession {
    /// Runs `f` on the session with the GIL released.
    fn with<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut Session) -> lav2::Result<T> + Send,
    ) -> PyResult<T> {
        if self.streaming.load(Ordering::SeqCst) {
            return Err(bad_input(
                py,
                "this session is streaming: exhaust or close() the stream before using the \
                 session again",
            ));
        }
        let inner = &self.inner;
        py.detach(|| f(&mut inner.lock().unwrap_or_else(PoisonError::into_inner)))
            .py(py)
    }
}

#[pymethods]
impl PySession {
    fn set_image_file(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        self.with(py, |s| s.set_image(Image::File(&path)))
    }

    fn set_image_bytes(&self, py: Python<'_>, data: &[u8]) -> PyResult<()> {
        self.with(py, |s| s.set_image(Image::Encoded(data)))
    }

    fn set_image_rgb8(
        &self,
        py: Python<'_>,
        data: &[u8],
        width: usize,
        height: usize,
    ) -> PyResult<()> {
        self.with(py, |s| {
            s.set_image(Image::Rgb8 {
                width,
                height,
                data,
            })
        })
    }

    /// Normalized pixels `[3, S, S]`: `data` their float32 values (native byte order).
    fn set_image_pixels(&self, py: Python<'_>, data: &[u8], shape: Vec<usize>) -> PyResult<()> {
        if let Some(size) = self.image_size {
            if shape != [3, size, size] {
                let shape: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
                return Err(bad_input(
                    py,
                    &format!(
                        "pixels must be [3, {size}, {size}] (normalized, channels first), got \
                         shape [{}]",
                        shape.join(", ")
                    ),
                ));
            }
        }
        let pixels: Vec<f32> = data
            .chunks_exact(4)
            .map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        self.with(py, |s| s.set_image(Image::Pixels(&pixels)))
    }

    fn prefill_ids(&self, py: Python<'_>, ids: Vec<i64>) -> PyResult<()> {
        let ids = token_ids(py, &ids, self.vocab)?;
        self.with(py, |s| s.prefill(&ids))
    }

    fn prefill_text(&self, py: Python<'_>, text: String) -> PyResult<()> {
        self.with(py, |s| s.prefill_text(&text))
    }

    #[pyo3(signature = (temperature=0.0, top_p=0.75))]
    fn step(&self, py: Python<'_>, temperature: f32, top_p: f32) -> PyResult<u32> {
        let options = SamplingOptions {
            temperature,
            top_p,
            ..Default::default()
        };
        self.with(py, |s| s.step(&options))
    }

    /// The logits of the next position, float32 values in native byte order.
    fn logits<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyByteArray>> {
        let bytes: Vec<u8> = self.with(py, |s| {
            Ok(s.logits()?.iter().flat_map(|v| v.to_ne_bytes()).collect())
        })?;
        Ok(PyByteArray::new(py, &bytes))
    }

    #[pyo3(signature = (max_new_tokens=256, temperature=0.1, top_p=0.75, seed=0, ignore_eos=false))]
    fn complete(
        &self,
        py: Python<'_>,
        max_new_tokens: i64,
        temperature: f32,
        top_p: f32,
        seed: i64,
        ignore_eos: bool,
    ) -> PyResult<PyCompletion> {
        let options = sampling(py, max_new_tokens, temperature, top_p, seed, ignore_eos)?;
        let done = self.with(py, |s| s.generate(&options, |_| ControlFlow::Continue(())))?;
        Ok(PyCompletion::from(done))
    }

    /// An iterator of the generated text's pieces, one token per `__next__`.
    #[pyo3(signature = (max_new_tokens=256, temperature=0.1, top_p=0.75, seed=0, ignore_eos=false))]
    fn stream(
        &self,
        py: Python<'_>,
        max_new_tokens: i64,
        temperature: f32,
        top_p: f32,
        seed: i64,
        ignore_eos: bool,
    ) -> PyResult<TokenStream> {
        let options = sampling(py, max_new_tokens, temperature, top_p, seed, ignore_eos)?;
        // What generation refuses (options, an empty session) is raised here, not at the first
        // token; nothing runs before the first `__next__`.
        let generation = self.with(py, |s| s.start_generation(&options))?;
        if self.streaming.swap(true, Ordering::SeqCst) {
            return Err(bad_input(py, "this session is already streaming"));
        }
        Ok(TokenStream {
            session: self.inner.clone(),
            streaming: self.streaming.clone(),
            state: Mutex::new(StreamState {
                generation: Some(generation),
                completion: None,
            }),
        })
    }

    fn reset(&self, py: Python<'_>) -> PyResult<()> {
        self.with(py, |s| s.reset())
    }

    /// The tokens so far: prompt and generated.
    #[getter]
    fn tokens(&self, py: Python<'_>) -> PyResult<Vec<u32>> {
        self.with(py, |s| Ok(s.tokens().to_vec()))
    }

    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        self.with(py, |s| Ok(s.len()))
    }
}

/// What a generation produced: its text, its ids, why it stopped.
#[pyclass(frozen, get_all, module = "lav2._lav2", name = "Completion")]
struct PyCompletion {
    text: String,
    ids: Vec<u32>,
    /// eos | max_new_tokens | context_full | stopped
    stop_reason: &'static str,
}

impl From<Completion> for PyCompletion {
    fn from(c: Completion) -> Self {
        PyCompletion {
            stop_reason: c.stop.name(),
            text: c.text,
            ids: c.ids,
        }
    }
}

#[pymethods]
impl PyCompletion {
    fn __repr__(&self) -> String {
        format!(
            "Completion(text={:?}, ids=<{} ids>, stop_reason={:?})",
            self.text,
            self.ids.len(),
            self.stop_reason
        )
    }
}

struct StreamState {
    /// The generation while it goes on; `None` once it ended or was closed.
    generation: Option<Generation>,
    completion: Option<Completion>,
}

/// The pieces of a generation's text as they are generated (their concatenation is the text
/// `complete` returns); `completion` once it is exhausted. The session refuses other calls
/// until the stream is exhausted, closed or dropped.
#[pyclass(frozen, module = "lav2._lav2", name = "TokenStream")]
struct TokenStream {
    session: Arc<Mutex<Session>>,
    /// The session's flag, cleared when the stream lets go of it.
    streaming: Arc<AtomicBool>,
    state: Mutex<StreamState>,
}

impl TokenStream {
    /// Ends the generation (stopped, unless it ended already) and frees the session.
    fn finish(&self, st: &mut StreamState) {
        if let Some(mut g) = st.generation.take() {
            g.stop();
            st.completion = g.completion();
            self.streaming.store(false, Ordering::SeqCst);
        }
    }
}

impl Drop for TokenStream {
    fn drop(&mut self) {
        let st = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        if st.generation.take().is_some() {
            self.streaming.store(false, Ordering::SeqCst);
        }
    }
}

#[pymethods]
impl TokenStream {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<String>> {
        let outcome = py.detach(|| {
            let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(g) = st.generation.as_mut() else {
                return Ok(None);
            };
            let next = {
                let mut session = self.session.lock().unwrap_or_else(PoisonError::into_inner);
                session.next_token(g)
            };
            match next {
                Ok(Some(token)) => Ok(Some(token.text)),
                Ok(None) => {
                    self.finish(&mut st);
                    Ok(None)
                }
                Err(e) => {
                    self.finish(&mut st);
                    Err((e.kind(), e.message().to_string()))
                }
            }
        });
        outcome.map_err(|(kind, message)| raise(py, kind, &message))
    }

    /// Stops the generation (the session is free again once this returns).
    fn close(&self, py: Python<'_>) {
        py.detach(|| {
            let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            self.finish(&mut st);
        });
    }

    /// The completion (text, ids, stop_reason) once the stream is exhausted, else None.
    #[getter]
    fn completion(&self) -> Option<PyCompletion> {
        let st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        st.completion.clone().map(PyCompletion::from)
    }
}

#[pymodule]
fn _lav2(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", lav2::VERSION)?;
    m.add_class::<PyEngine>()?;
    m.add_class::<PySession>()?;
    m.add_class::<PyCompletion>()?;
    m.add_class::<TokenStream>()?;
    Ok(())
}
