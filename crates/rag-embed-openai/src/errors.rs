//! What a failed request means: retry or not, and the [`rag_core::Error`]
//! a caller acts on.

use std::time::Duration;

use rag_core::Error;
use serde_json::Value;

use crate::OpenAiConfig;

/// What went wrong talking to the server; reaches callers as the `source`
/// of a [`rag_core::Error`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenAiError {
    /// The server answered with an error status.
    #[error("HTTP {status}: {message}")]
    Status {
        /// HTTP status.
        status: u16,
        /// `error.message` of the body (or the body).
        message: String,
        /// `error.code` or `error.type`, when the body has one.
        code: Option<String>,
    },
    /// The request got no answer.
    #[error("request failed: {0}")]
    Transport(#[from] reqwest::Error),
    /// The answer was not what the API documents.
    #[error("unexpected answer: {0}")]
    BadResponse(String),
}

impl OpenAiError {
    /// The error of a non-2xx answer with `body`: OpenAI's
    /// `{"error": {"message", "type", "code"}}`, a flat `{"error": "..."}`
    /// (TEI, older servers), or plain text.
    pub fn from_body(status: u16, body: &str) -> Self {
        let value: Value = serde_json::from_str(body).unwrap_or(Value::Null);
        let error = &value["error"];
        let text = |v: &Value| v.as_str().map(str::to_string);
        let message = text(&error["message"])
            .or_else(|| text(error))
            .or_else(|| text(&value["message"]))
            .unwrap_or_else(|| body.chars().take(300).collect());
        let code = text(&error["code"]).or_else(|| text(&error["type"]));
        OpenAiError::Status { status, message, code }
    }

    /// Worth another try: throttling, timeouts, server errors, dropped connections.
    pub fn is_retryable(&self) -> bool {
        match self {
            OpenAiError::Status { status, .. } => matches!(status, 408 | 409 | 429 | 500..=599),
            OpenAiError::Transport(err) => err.is_timeout() || err.is_connect() || err.is_request(),
            OpenAiError::BadResponse(_) => false,
        }
    }
}

/// The wait an answer asks for: `retry-after-ms`, else `Retry-After` in seconds.
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let number = |name: &str| headers.get(name)?.to_str().ok()?.trim().parse::<f64>().ok();
    let seconds = number("retry-after-ms").map(|ms| ms / 1000.0).or_else(|| number("retry-after"))?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds.min(3_600.0)))
}

/// The [`rag_core::Error`] of a request to `url` that failed for good after `attempts`.
pub(crate) fn to_error(failure: OpenAiError, config: &OpenAiConfig, url: &str, attempts: u32) -> Error {
    let model = config.model.clone();
    let OpenAiError::Status { status, message, code } = &failure else {
        return Error::Embedder { message: format!("request to {url} failed"), source: Some(Box::new(failure)) };
    };
    let lower = message.to_ascii_lowercase();
    match status {
        401 | 403 => Error::AccessDenied {
            service: url.to_string(),
            reason: message.clone(),
            hint: if config.api_key.is_some() {
                "Check the key in OPENAI_API_KEY (or the server's own key variable)".into()
            } else {
                "Set OPENAI_API_KEY to the server's API key".into()
            },
        },
        404 if code.as_deref() == Some("model_not_found") || lower.contains("model") => Error::ModelMissing {
            model: model.clone(),
            hint: format!("{url} does not serve it ({message}); check the name, or pull it into the server"),
        },
        400 if lower.contains("context length") || lower.contains("too long") || lower.contains("too many tokens") => {
            Error::ContextLength { model, chars: 0 }
        }
        400 | 422 => Error::InvalidInput(format!("{url} refused the request for model {model:?}: {message}")),
        429 => Error::Throttled { service: url.to_string(), attempts },
        _ => Error::Embedder {
            message: format!("{url} failed after {attempts} attempts"),
            source: Some(Box::new(failure)),
        },
    }
}
