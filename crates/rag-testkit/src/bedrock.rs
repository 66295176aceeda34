//! [`FakeBedrock`]: Bedrock Runtime's InvokeModel
//! (`POST /model/{modelId}/invoke`) on loopback, for the embedding models
//! rag uses, answering as Bedrock does: each family's body, and its errors
//! (`x-amzn-ErrorType` and `{"message"}`) for a bad body, a text too long,
//! throttling, a model not enabled, an unknown model.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

use crate::LoopbackServer;
use crate::ollama::embed_text;

/// One InvokeModel request as the SDK sent it.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The model id from the path.
    pub model_id: String,
    /// `Content-Type`.
    pub content_type: String,
    /// `Accept`.
    pub accept: String,
    /// Whether it was signed (`Authorization: AWS4-HMAC-SHA256 ...`).
    pub signed: bool,
    /// The region of the signature's credential scope.
    pub region: String,
    /// The JSON body.
    pub body: Value,
}

#[derive(Debug, Default)]
struct Shared {
    disabled: HashSet<String>,
    failures: VecDeque<(u16, String)>,
    invocations: Vec<Invocation>,
    latency: Duration,
    throttle_over: Option<usize>,
    in_flight: usize,
    most_in_flight: usize,
}

/// A Bedrock Runtime stand-in on `127.0.0.1`, until dropped.
pub struct FakeBedrock {
    server: LoopbackServer,
    shared: Arc<Mutex<Shared>>,
}

impl Default for FakeBedrock {
    fn default() -> Self {
        Self::start()
    }
}

impl FakeBedrock {
    /// A service with every rag model enabled.
    pub fn start() -> Self {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let app = Router::new()
            .route("/model/{model_id}/invoke", post(invoke))
            .layer(axum::extract::DefaultBodyLimit::max(25 * 1024 * 1024))
            .with_state(Arc::clone(&shared));
        Self { server: LoopbackServer::start(app, 2), shared }
    }

    /// Endpoint URL for the SDK.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// `model_id` answers AccessDeniedException, as a model not enabled for
    /// the account in this region does.
    pub fn disable(&self, model_id: &str) {
        self.shared.lock().unwrap().disabled.insert(model_id.to_string());
    }

    /// The next `count` calls fail with `status` and the error type `code`.
    pub fn fail_next(&self, count: usize, status: u16, code: &str) {
        let mut shared = self.shared.lock().unwrap();
        shared.failures.extend(std::iter::repeat_n((status, code.to_string()), count));
    }

    /// Calls beyond `calls` in flight at once get ThrottlingException, as an
    /// account's quota answers.
    pub fn throttle_over(&self, calls: Option<usize>) {
        self.shared.lock().unwrap().throttle_over = calls;
    }

    /// Delays every answer.
    pub fn set_latency(&self, latency: Duration) {
        self.shared.lock().unwrap().latency = latency;
    }

    /// The most calls that were in flight at once.
    pub fn most_in_flight(&self) -> usize {
        self.shared.lock().unwrap().most_in_flight
    }

    /// Every call so far.
    pub fn invocations(&self) -> Vec<Invocation> {
        self.shared.lock().unwrap().invocations.clone()
    }

    /// The vector the service returns for `text` at `dimension`.
    pub fn vector_for(text: &str, dimension: usize) -> Vec<f32> {
        embed_text(text, dimension)
    }
}

fn error(status: u16, code: &str, message: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [("x-amzn-errortype", code), ("content-type", "application/json")],
        json!({ "message": message }).to_string(),
    )
        .into_response()
}

fn floats(text: &str, dimension: usize) -> Vec<Value> {
    embed_text(text, dimension).into_iter().map(|x| json!(x)).collect()
}

struct InFlight(Arc<Mutex<Shared>>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.lock().unwrap().in_flight -= 1;
    }
}

async fn invoke(
    State(shared): State<Arc<Mutex<Shared>>>,
    Path(model_id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let latency = {
        let mut state = shared.lock().unwrap();
        state.invocations.push(Invocation {
            model_id: model_id.clone(),
            content_type: header("content-type"),
            accept: header("accept"),
            signed: header("authorization").starts_with("AWS4-HMAC-SHA256"),
            // Credential=KEY/DATE/REGION/SERVICE/aws4_request
            region: header("authorization")
                .split("Credential=")
                .nth(1)
                .and_then(|scope| scope.split('/').nth(2))
                .unwrap_or_default()
                .to_string(),
            body: parsed.clone(),
        });
        if let Some((status, code)) = state.failures.pop_front() {
            return error(status, &code, &format!("{code} (injected)"));
        }
        if state.throttle_over.is_some_and(|most| state.in_flight >= most) {
            return error(429, "ThrottlingException", "Too many requests, please wait before trying again.");
        }
        state.in_flight += 1;
        state.most_in_flight = state.most_in_flight.max(state.in_flight);
        if state.disabled.contains(&model_id) {
            state.in_flight -= 1;
            return error(
                403,
                "AccessDeniedException",
                "You don't have access to the model with the specified model ID.",
            );
        }
        state.latency
    };
    let _in_flight = InFlight(Arc::clone(&shared));
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if parsed.is_null() {
        return error(400, "ValidationException", "Malformed input request, please reformat your input and try again.");
    }
    let id = model_id.strip_prefix("us.").unwrap_or(&model_id);
    if id.starts_with("amazon.titan-embed-text-v2") {
        let Some(text) = parsed["inputText"].as_str() else {
            return error(400, "ValidationException", "Malformed input request: #: required key [inputText] not found");
        };
        let dimension = parsed["dimensions"].as_u64().unwrap_or(1024) as usize;
        if ![256, 512, 1024].contains(&dimension) {
            return error(
                400,
                "ValidationException",
                "Malformed input request: #/dimensions: 300 is not a valid enum value",
            );
        }
        let tokens = text.split_whitespace().count().max(1);
        if text.chars().count() > 50_000 || tokens > 8_192 {
            return error(
                400,
                "ValidationException",
                &format!(
                    "400 Bad Request: Too many input tokens. Max input tokens: 8192, request input token count: {tokens}"
                ),
            );
        }
        return axum::Json(json!({ "embedding": floats(text, dimension), "inputTextTokenCount": tokens }))
            .into_response();
    }
    let v3 = id.starts_with("cohere.embed-english-v3") || id.starts_with("cohere.embed-multilingual-v3");
    let v4 = id.starts_with("cohere.embed-v4");
    if !(v3 || v4) {
        return error(404, "ResourceNotFoundException", "The requested resource could not be found.");
    }
    let Some(texts) = parsed["texts"].as_array() else {
        return error(400, "ValidationException", "Malformed input request: #: required key [texts] not found");
    };
    if texts.len() > 96 {
        return error(
            400,
            "ValidationException",
            &format!("Malformed input request: #/texts: expected maximum item count: 96, found: {}", texts.len()),
        );
    }
    if !matches!(
        parsed["input_type"].as_str(),
        Some("search_document" | "search_query" | "classification" | "clustering")
    ) {
        return error(400, "ValidationException", "Malformed input request: #: required key [input_type] not found");
    }
    let texts: Vec<&str> = texts.iter().map(|t| t.as_str().unwrap_or_default()).collect();
    if v3 && let Some((i, t)) = texts.iter().enumerate().find(|(_, t)| t.chars().count() > 2_048) {
        return error(
            400,
            "ValidationException",
            &format!("Malformed input request: #/texts/{i}: expected maxLength: 2048, actual: {}", t.chars().count()),
        );
    }
    let id_field = "5e3fa4c3-1b8e-4a5d-9c1e-3b7c2f0a9d11";
    if v3 {
        let embeddings: Vec<Value> = texts.iter().map(|t| Value::Array(floats(t, 1024))).collect();
        return axum::Json(
            json!({ "id": id_field, "texts": texts, "embeddings": embeddings, "response_type": "embeddings_floats" }),
        )
        .into_response();
    }
    let dimension = parsed["output_dimension"].as_u64().unwrap_or(1536) as usize;
    if ![256, 512, 1024, 1536].contains(&dimension) {
        return error(
            400,
            "ValidationException",
            "Malformed input request: #/output_dimension: not a valid enum value",
        );
    }
    let embeddings: Vec<Value> = texts.iter().map(|t| Value::Array(floats(t, dimension))).collect();
    axum::Json(json!({
        "id": id_field,
        "texts": texts,
        "embeddings": { "float": embeddings },
        "response_type": "embeddings_by_type",
    }))
    .into_response()
}
