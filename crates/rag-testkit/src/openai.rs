//! [`FakeOpenAi`]: the OpenAI embeddings API (`POST /v1/embeddings`) on
//! loopback, as OpenAI answers it or as Ollama's compatible endpoint does:
//! the response shape, `usage`, `dimensions`, bearer keys, and each error
//! body, with deterministic vectors.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

use crate::LoopbackServer;
use crate::ollama::embed_text;

/// Whose server the fake plays: their error bodies differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// api.openai.com: `{"error": {"message", "type", "param", "code"}}`,
    /// keys required, `dimensions` honoured by `text-embedding-3-*`.
    OpenAi,
    /// Ollama's `/v1/embeddings`: no key, `api_error` bodies, model names
    /// such as `all-minilm`.
    Ollama,
}

/// What a broken server sends back instead of good vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Breakage {
    /// Vectors one value short.
    WrongDimension,
    /// `null` where a number should be (how a NaN reaches JSON).
    NotANumber,
}

#[derive(Debug)]
struct Shared {
    flavor: Flavor,
    /// Model name and its native dimension.
    models: HashMap<String, usize>,
    key: Option<String>,
    context_chars: usize,
    max_inputs: usize,
    failures: VecDeque<(u16, Option<String>)>,
    breakage: Option<Breakage>,
    requests: usize,
    texts: usize,
    requests_body: Vec<Value>,
    latency: std::time::Duration,
}

/// An OpenAI-compatible embeddings server on `127.0.0.1`, until dropped.
pub struct FakeOpenAi {
    server: LoopbackServer,
    shared: Arc<Mutex<Shared>>,
}

impl FakeOpenAi {
    /// OpenAI itself: `text-embedding-3-small` (64 dimensions here) and
    /// `text-embedding-3-large` (96), both taking `dimensions`; the key `sk-test`.
    pub fn start() -> Self {
        Self::with(Flavor::OpenAi, &[("text-embedding-3-small", 64), ("text-embedding-3-large", 96)], Some("sk-test"))
    }

    /// Ollama's compatible endpoint with `all-minilm` (48 dimensions here), no key.
    pub fn ollama() -> Self {
        Self::with(Flavor::Ollama, &[("all-minilm", 48)], None)
    }

    /// A server of `flavor` knowing `models`, asking for `key` when given.
    pub fn with(flavor: Flavor, models: &[(&str, usize)], key: Option<&str>) -> Self {
        let shared = Arc::new(Mutex::new(Shared {
            flavor,
            models: models.iter().map(|(m, d)| (m.to_string(), *d)).collect(),
            key: key.map(str::to_string),
            context_chars: 8_000,
            max_inputs: 2_048,
            failures: VecDeque::new(),
            breakage: None,
            requests: 0,
            texts: 0,
            requests_body: Vec::new(),
            latency: std::time::Duration::ZERO,
        }));
        let app = Router::new().route("/v1/embeddings", post(embeddings)).with_state(Arc::clone(&shared));
        Self { server: LoopbackServer::start(app, 0), shared }
    }

    /// The base URL clients are given, ending in `/v1`.
    pub fn url(&self) -> String {
        format!("{}/v1", self.server.url())
    }

    /// Texts longer than this many characters exceed the context window.
    pub fn set_context_chars(&self, chars: usize) {
        self.shared.lock().unwrap().context_chars = chars;
    }

    /// Most inputs in one request (OpenAI takes 2,048).
    pub fn set_max_inputs(&self, inputs: usize) {
        self.shared.lock().unwrap().max_inputs = inputs;
    }

    /// The next `count` requests fail with `status` (429 and 5xx carry
    /// `Retry-After: retry_after` when given).
    pub fn fail_next(&self, count: usize, status: u16, retry_after: Option<&str>) {
        let mut shared = self.shared.lock().unwrap();
        shared.failures.extend(std::iter::repeat_n((status, retry_after.map(str::to_string)), count));
    }

    /// Every answer from now on is broken this way.
    pub fn break_answers(&self, breakage: Option<Breakage>) {
        self.shared.lock().unwrap().breakage = breakage;
    }

    /// Delays every answer.
    pub fn set_latency(&self, latency: std::time::Duration) {
        self.shared.lock().unwrap().latency = latency;
    }

    /// Embedding requests answered so far (failures included) and texts embedded.
    pub fn counts(&self) -> (usize, usize) {
        let shared = self.shared.lock().unwrap();
        (shared.requests, shared.texts)
    }

    /// The JSON bodies of every request, in order.
    pub fn requests(&self) -> Vec<Value> {
        self.shared.lock().unwrap().requests_body.clone()
    }

    /// The vector the server returns for `text` at `dimension`.
    pub fn vector_for(text: &str, dimension: usize) -> Vec<f32> {
        embed_text(text, dimension)
    }
}

fn error(flavor: Flavor, status: u16, message: &str, kind: &str, code: Option<&str>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = match flavor {
        Flavor::OpenAi => json!({ "error": { "message": message, "type": kind, "param": null, "code": code } }),
        Flavor::Ollama => json!({ "error": { "message": message, "type": "api_error", "param": null, "code": null } }),
    };
    (status, axum::Json(body)).into_response()
}

async fn embeddings(State(shared): State<Arc<Mutex<Shared>>>, headers: HeaderMap, body: String) -> Response {
    let latency = shared.lock().unwrap().latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let mut shared = shared.lock().unwrap();
    let flavor = shared.flavor;
    shared.requests += 1;
    let request: Value = match serde_json::from_str(&body) {
        Ok(value) => value,
        Err(err) => return error(flavor, 400, &format!("invalid JSON body: {err}"), "invalid_request_error", None),
    };
    shared.requests_body.push(request.clone());
    if let Some(key) = &shared.key {
        let sent = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
        if sent != format!("Bearer {key}") {
            let shown = sent.strip_prefix("Bearer ").unwrap_or(sent);
            let shown: String = shown.chars().take(4).collect();
            return error(
                flavor,
                401,
                &format!(
                    "Incorrect API key provided: {shown}****. You can find your API key at https://platform.openai.com/account/api-keys."
                ),
                "invalid_request_error",
                Some("invalid_api_key"),
            );
        }
    }
    if let Some((status, retry_after)) = shared.failures.pop_front() {
        let mut response = if status == 429 {
            error(flavor, 429, "Rate limit reached for requests", "requests", Some("rate_limit_exceeded"))
        } else {
            error(flavor, status, "The server had an error while processing your request.", "server_error", None)
        };
        if let Some(after) = retry_after
            && let Ok(value) = after.parse()
        {
            response.headers_mut().insert("retry-after", value);
        }
        return response;
    }
    let model = request["model"].as_str().unwrap_or_default().to_string();
    let Some(&native) = shared.models.get(&model) else {
        return match flavor {
            Flavor::OpenAi => error(
                flavor,
                404,
                &format!("The model `{model}` does not exist or you do not have access to it."),
                "invalid_request_error",
                Some("model_not_found"),
            ),
            Flavor::Ollama => {
                error(flavor, 404, &format!("model \"{model}\" not found, try pulling it first"), "api_error", None)
            }
        };
    };
    let inputs: Vec<String> = match &request["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) if items.iter().all(Value::is_string) => {
            items.iter().map(|v| v.as_str().unwrap_or_default().to_string()).collect()
        }
        _ => return error(flavor, 400, "'$.input' is invalid.", "invalid_request_error", None),
    };
    if inputs.is_empty() || inputs.len() > shared.max_inputs {
        return error(
            flavor,
            400,
            &format!("'$.input' is invalid: between 1 and {} inputs are allowed.", shared.max_inputs),
            "invalid_request_error",
            None,
        );
    }
    if let Some(longest) = inputs.iter().map(|i| i.chars().count()).max()
        && longest > shared.context_chars
    {
        let tokens = longest / 4;
        let most = shared.context_chars / 4;
        return error(
            flavor,
            400,
            &format!(
                "This model's maximum context length is {most} tokens, however you requested {tokens} tokens \
                 ({tokens} in your prompt; 0 for the completion). Please reduce your prompt; or completion length."
            ),
            "invalid_request_error",
            None,
        );
    }
    let dimension = match (flavor, request.get("dimensions").and_then(Value::as_u64)) {
        (Flavor::OpenAi, Some(asked)) if model.starts_with("text-embedding-3") => {
            if asked == 0 || asked as usize > native {
                return error(
                    flavor,
                    400,
                    &format!("This model does not support specifying dimensions larger than {native}."),
                    "invalid_request_error",
                    None,
                );
            }
            asked as usize
        }
        (Flavor::OpenAi, Some(_)) => {
            return error(
                flavor,
                400,
                "This model does not support specifying dimensions.",
                "invalid_request_error",
                None,
            );
        }
        _ => native,
    };
    shared.texts += inputs.len();
    let breakage = shared.breakage;
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, text)| {
            let mut vector: Vec<Value> = embed_text(text, dimension).into_iter().map(|x| json!(x)).collect();
            match breakage {
                Some(Breakage::WrongDimension) => {
                    vector.pop();
                }
                Some(Breakage::NotANumber) => vector[0] = Value::Null,
                None => {}
            }
            json!({ "object": "embedding", "index": index, "embedding": vector })
        })
        .collect();
    let tokens: usize = inputs.iter().map(|i| i.split_whitespace().count().max(1)).sum();
    axum::Json(json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": { "prompt_tokens": tokens, "total_tokens": tokens },
    }))
    .into_response()
}
