//! [`FakeOllama`]: Ollama's embedding API on loopback, with Ollama's
//! response shapes and error bodies, deterministic vectors and counters.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::LoopbackServer;

/// Counts of what the server was asked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// `POST /api/embed` requests answered with embeddings.
    pub embed_requests: usize,
    /// Texts embedded across those requests.
    pub embedded_texts: usize,
    /// `POST /api/show` requests.
    pub show_requests: usize,
    /// `POST /api/pull` requests.
    pub pull_requests: usize,
}

#[derive(Debug)]
struct Shared {
    models: HashMap<String, usize>,
    context_chars: usize,
    latency: Duration,
    failures: VecDeque<(u16, String)>,
    stats: Stats,
    last_inputs: Vec<String>,
    all_inputs: Vec<String>,
    last_request: Value,
    /// Models `/api/pull` can fetch, with their dimensions.
    pullable: HashMap<String, usize>,
    /// Pulls end before `success` (a dropped connection).
    cut_pulls: bool,
}

/// An Ollama stand-in on `127.0.0.1`, running on its own thread until dropped.
pub struct FakeOllama {
    server: LoopbackServer,
    shared: Arc<Mutex<Shared>>,
}

/// Dimension of the default model.
pub const DEFAULT_DIMENSION: usize = 64;

impl FakeOllama {
    /// Starts a server that knows `embeddinggemma` with [`DEFAULT_DIMENSION`] dimensions.
    pub fn start() -> Self {
        Self::with_models(&[("embeddinggemma", DEFAULT_DIMENSION)])
    }

    /// Starts a server that knows the given models and their dimensions.
    pub fn with_models(models: &[(&str, usize)]) -> Self {
        let shared = Arc::new(Mutex::new(Shared {
            models: models.iter().map(|(name, dim)| (base_name(name).to_string(), *dim)).collect(),
            context_chars: 8_000,
            latency: Duration::ZERO,
            failures: VecDeque::new(),
            stats: Stats::default(),
            last_inputs: Vec::new(),
            all_inputs: Vec::new(),
            last_request: Value::Null,
            pullable: HashMap::new(),
            cut_pulls: false,
        }));
        let app = Router::new()
            .route("/", get(|| async { "Ollama is running" }))
            .route("/api/embed", post(embed))
            .route("/api/show", post(show))
            .route("/api/tags", get(tags))
            .route("/api/pull", post(pull))
            .with_state(Arc::clone(&shared));
        Self { server: LoopbackServer::start(app, 0), shared }
    }

    /// Base URL, e.g. `http://127.0.0.1:43123`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// What the server was asked so far.
    pub fn stats(&self) -> Stats {
        self.shared.lock().unwrap().stats
    }

    /// Zeroes the counts.
    pub fn reset_stats(&self) {
        self.shared.lock().unwrap().stats = Stats::default();
    }

    /// The inputs of the last embed request, as sent.
    pub fn last_inputs(&self) -> Vec<String> {
        self.shared.lock().unwrap().last_inputs.clone()
    }

    /// Every input embedded since the server started, as sent.
    pub fn all_inputs(&self) -> Vec<String> {
        self.shared.lock().unwrap().all_inputs.clone()
    }

    /// The JSON body of the last embed request.
    pub fn last_request(&self) -> Value {
        self.shared.lock().unwrap().last_request.clone()
    }

    /// Delays every embed answer.
    pub fn set_latency(&self, latency: Duration) {
        self.shared.lock().unwrap().latency = latency;
    }

    /// Texts longer than this many characters exceed the "context window".
    pub fn set_context_chars(&self, chars: usize) {
        self.shared.lock().unwrap().context_chars = chars;
    }

    /// The next `count` embed requests fail with `status` and Ollama's error
    /// body `{"error": message}`.
    pub fn fail_next(&self, count: usize, status: u16, message: &str) {
        let mut shared = self.shared.lock().unwrap();
        shared.failures.extend(std::iter::repeat_n((status, message.to_string()), count));
    }

    /// `POST /api/pull` of `model` streams Ollama's progress lines (manifest,
    /// two layers in steps, verify, write, `success`) and then has it.
    pub fn offer_for_pull(&self, model: &str, dimension: usize) {
        self.shared.lock().unwrap().pullable.insert(base_name(model).to_string(), dimension);
    }

    /// Pulls stop mid-download, without `success`, and add no model.
    pub fn cut_pulls_short(&self, cut: bool) {
        self.shared.lock().unwrap().cut_pulls = cut;
    }

    /// The vector the server returns for `text` under a model of `dimension`.
    pub fn vector_for(text: &str, dimension: usize) -> Vec<f32> {
        embed_text(text, dimension)
    }
}

fn base_name(model: &str) -> &str {
    model.strip_suffix(":latest").unwrap_or(model)
}

fn error(status: u16, message: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(json!({ "error": message }))).into_response()
}

async fn embed(State(shared): State<Arc<Mutex<Shared>>>, body: String) -> Response {
    let request: Value = match serde_json::from_str(&body) {
        Ok(value) => value,
        Err(err) => return error(400, &format!("invalid character in JSON: {err}")),
    };
    let latency = shared.lock().unwrap().latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let mut shared = shared.lock().unwrap();
    shared.last_request = request.clone();
    if let Some((status, message)) = shared.failures.pop_front() {
        return error(status, &message);
    }
    let model = request["model"].as_str().unwrap_or_default().to_string();
    let Some(&dimension) = shared.models.get(base_name(&model)) else {
        return error(404, &format!("model \"{model}\" not found, try pulling it first"));
    };
    let inputs: Vec<String> = match &request["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items.iter().map(|v| v.as_str().unwrap_or_default().to_string()).collect(),
        Value::Null => Vec::new(),
        _ => return error(400, "invalid input type"),
    };
    let truncate = request["truncate"].as_bool().unwrap_or(true);
    if !truncate && inputs.iter().any(|t| t.chars().count() > shared.context_chars) {
        return error(400, "the input length exceeds the context length");
    }
    shared.stats.embed_requests += 1;
    shared.stats.embedded_texts += inputs.len();
    shared.last_inputs = inputs.clone();
    shared.all_inputs.extend(inputs.iter().cloned());
    let embeddings: Vec<Vec<f32>> = inputs.iter().map(|t| embed_text(t, dimension)).collect();
    let tokens: usize = inputs.iter().map(|t| t.split_whitespace().count()).sum();
    Json(json!({
        "model": model,
        "embeddings": embeddings,
        "total_duration": 14_143_917u64,
        "load_duration": 1_019_500u64,
        "prompt_eval_count": tokens,
    }))
    .into_response()
}

async fn show(State(shared): State<Arc<Mutex<Shared>>>, Json(request): Json<Value>) -> Response {
    let mut shared = shared.lock().unwrap();
    shared.stats.show_requests += 1;
    let model = request["model"].as_str().or(request["name"].as_str()).unwrap_or_default().to_string();
    let Some(&dimension) = shared.models.get(base_name(&model)) else {
        return error(404, &format!("model '{model}' not found"));
    };
    Json(json!({
        "modelfile": format!("FROM {model}"),
        "parameters": "",
        "template": "",
        "details": { "format": "gguf", "family": "gemma3", "parameter_size": "307.58M", "quantization_level": "BF16" },
        "model_info": {
            "general.architecture": "gemma3",
            "gemma3.embedding_length": dimension,
            "gemma3.context_length": shared.context_chars / 4,
        },
        "capabilities": ["embedding"],
        "modified_at": "2026-09-01T10:00:00.000000000Z",
    }))
    .into_response()
}

/// `POST /api/pull` as Ollama streams it: one JSON object a line, HTTP 200
/// even when the pull fails (the error is a line of its own).
async fn pull(State(shared): State<Arc<Mutex<Shared>>>, Json(request): Json<Value>) -> Response {
    let mut shared = shared.lock().unwrap();
    shared.stats.pull_requests += 1;
    let model = request["model"].as_str().or(request["name"].as_str()).unwrap_or_default().to_string();
    let mut lines = vec![json!({ "status": "pulling manifest" })];
    let Some(&dimension) = shared.pullable.get(base_name(&model)) else {
        lines.push(json!({ "error": "pull model manifest: file does not exist" }));
        return ndjson(&lines);
    };
    for (digest, total) in [("8eeb52dfb3bb", 621_875_000u64), ("f3f7a2bd3c9c", 8_400u64)] {
        for step in 0..=4u64 {
            lines.push(json!({
                "status": format!("pulling {digest}"),
                "digest": format!("sha256:{digest}"),
                "total": total,
                "completed": total * step / 4,
            }));
        }
        if shared.cut_pulls {
            return ndjson(&lines);
        }
    }
    lines.extend([json!({ "status": "verifying sha256 digest" }), json!({ "status": "writing manifest" })]);
    lines.push(json!({ "status": "success" }));
    shared.models.insert(base_name(&model).to_string(), dimension);
    ndjson(&lines)
}

fn ndjson(lines: &[Value]) -> Response {
    let body: String = lines.iter().map(|line| format!("{line}\n")).collect();
    ([("content-type", "application/x-ndjson")], body).into_response()
}

async fn tags(State(shared): State<Arc<Mutex<Shared>>>) -> Response {
    let shared = shared.lock().unwrap();
    let mut models: Vec<Value> = shared
        .models
        .keys()
        .map(|name| {
            json!({
                "name": format!("{name}:latest"),
                "model": format!("{name}:latest"),
                "digest": format!("{:064x}", fnv(name.as_bytes())),
                "size": 621_875_000u64,
                "details": { "format": "gguf", "family": "gemma3" },
            })
        })
        .collect();
    models.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    Json(json!({ "models": models })).into_response()
}

/// A bag of hashed lower-case words, L2-normalised (as Ollama normalises).
pub(crate) fn embed_text(text: &str, dimension: usize) -> Vec<f32> {
    let mut v = vec![0.0f32; dimension];
    for word in text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
        let h = fnv(word.to_lowercase().as_bytes());
        let sign = if h >> 63 == 0 { 1.0 } else { -1.0 };
        v[(h % dimension as u64) as usize] += sign;
    }
    // A small constant component keeps empty or wordless texts off the zero vector.
    v[0] += 0.01;
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter().map(|x| x / norm).collect()
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}
