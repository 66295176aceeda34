//! [`pull`]: fetching a model into Ollama (`POST /api/pull`) and following
//! its streamed progress.

use std::time::Duration;

use rag_core::{Error, Result};
use serde::Deserialize;

use crate::{OllamaConfig, OllamaError};

/// One step of a pull, as Ollama streams it: `pulling manifest`, then
/// `pulling <digest>` with byte counts for each layer, `verifying sha256
/// digest`, `writing manifest`, `success`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct PullProgress {
    /// What Ollama is doing.
    #[serde(default)]
    pub status: String,
    /// The layer being downloaded, when the step is a download.
    #[serde(default)]
    pub digest: Option<String>,
    /// Bytes of that layer.
    #[serde(default)]
    pub total: Option<u64>,
    /// Bytes of it downloaded so far.
    #[serde(default)]
    pub completed: Option<u64>,
}

/// A line of the stream: a step, or the error that ended the pull.
#[derive(Deserialize)]
struct Line {
    #[serde(flatten)]
    progress: PullProgress,
    #[serde(default)]
    error: Option<String>,
}

/// Pulls `config.model` into the Ollama at `config.base_url`, calling
/// `progress` with each step, and returns once Ollama says `success`.
///
/// A pull cut short (the process stopped, the network dropped) leaves
/// nothing on this side: Ollama keeps the layers it finished and resumes
/// them on the next pull. Errors: [`Error::EmbedderUnreachable`] when
/// nothing answers, [`Error::ModelMissing`] when Ollama cannot find the
/// model in its library, [`Error::Embedder`] for any other failure.
///
/// ```no_run
/// use rag_embed_ollama::{OllamaConfig, pull};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> rag_core::Result<()> {
/// pull(&OllamaConfig::new("embeddinggemma"), |step| eprintln!("{}", step.status)).await?;
/// # Ok(())
/// # }
/// ```
pub async fn pull(config: &OllamaConfig, mut progress: impl FnMut(&PullProgress) + Send) -> Result<()> {
    let client = crate::client_builder(&config.base_url)
        // A download takes as long as it takes; a silent server does not.
        .read_timeout(Duration::from_secs(120))
        .build()
        .map_err(|e| Error::Embedder { message: "cannot build HTTP client".into(), source: Some(e.into()) })?;
    let url = format!("{}/api/pull", config.base_url);
    let unreachable = |err: reqwest::Error| Error::EmbedderUnreachable {
        endpoint: config.base_url.clone(),
        reason: Error::root_cause(&err),
        hint: "Is Ollama running? Start it with `ollama serve`, or connect to a server that is.".into(),
    };
    let mut response = client
        .post(&url)
        .json(&serde_json::json!({ "model": config.model, "stream": true }))
        .send()
        .await
        .map_err(unreachable)?;
    let status = response.status().as_u16();
    if !(200..300).contains(&status) {
        let body = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or(body);
        return Err(pull_error(config, OllamaError::Status { status, message }));
    }
    let mut pending: Vec<u8> = Vec::new();
    let mut succeeded = false;
    loop {
        let chunk = response.chunk().await.map_err(|err| Error::Embedder {
            message: format!("pulling {:?} from Ollama at {} stopped", config.model, config.base_url),
            source: Some(Box::new(OllamaError::Transport(err))),
        })?;
        let Some(chunk) = chunk else { break };
        pending.extend_from_slice(&chunk);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            succeeded |= handle_line(config, &line, &mut progress)?;
        }
    }
    succeeded |= handle_line(config, &pending, &mut progress)?;
    if succeeded {
        Ok(())
    } else {
        Err(Error::Embedder {
            message: format!(
                "Ollama at {} ended the pull of {:?} without saying it succeeded; run `ollama pull {}` to see why",
                config.base_url, config.model, config.model
            ),
            source: None,
        })
    }
}

/// Reads one line of the stream: `true` on `success`, an error on an error line.
fn handle_line(config: &OllamaConfig, line: &[u8], progress: &mut impl FnMut(&PullProgress)) -> Result<bool> {
    let text = String::from_utf8_lossy(line);
    let text = text.trim();
    if text.is_empty() {
        return Ok(false);
    }
    let line: Line = serde_json::from_str(text).map_err(|e| Error::Embedder {
        message: format!("Ollama's /api/pull answer is not a stream of JSON lines: {text:.200}"),
        source: Some(Box::new(OllamaError::BadResponse(e.to_string()))),
    })?;
    if let Some(message) = line.error {
        return Err(pull_error(config, OllamaError::Status { status: 200, message }));
    }
    progress(&line.progress);
    Ok(line.progress.status == "success")
}

fn pull_error(config: &OllamaConfig, err: OllamaError) -> Error {
    let model = config.model.clone();
    match &err {
        OllamaError::Status { message, .. }
            if message.contains("file does not exist") || message.contains("not found") =>
        {
            Error::ModelMissing {
                model: model.clone(),
                hint: format!("Ollama could not pull it ({message}); check the name at https://ollama.com/library"),
            }
        }
        _ => Error::Embedder { message: format!("Ollama could not pull {model:?}"), source: Some(Box::new(err)) },
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use rag_testkit::FakeOllama;

    #[tokio::test]
    async fn a_pull_reports_each_step_and_the_model_is_then_there() {
        let ollama = FakeOllama::with_models(&[]);
        ollama.offer_for_pull("embeddinggemma", 64);
        let config = OllamaConfig::new("embeddinggemma").with_url(&ollama.url());
        let mut steps = Vec::new();
        pull(&config, |step| steps.push(step.clone())).await.unwrap();
        assert_eq!(steps.first().unwrap().status, "pulling manifest");
        assert_eq!(steps.last().unwrap().status, "success");
        let downloads: Vec<_> = steps.iter().filter(|s| s.total.is_some()).collect();
        assert!(downloads.len() >= 3, "{steps:?}");
        assert!(downloads.windows(2).all(|w| w[0].completed <= w[1].completed || w[0].digest != w[1].digest));
        let embedder = crate::OllamaEmbedder::connect(config).await.unwrap();
        assert_eq!(rag_core::embed::Embedder::dimension(&embedder), 64);
    }

    #[tokio::test]
    async fn a_name_ollama_cannot_find_and_a_dead_server_are_one_clear_error_each() {
        let ollama = FakeOllama::with_models(&[]);
        let config = OllamaConfig::new("no-such-model").with_url(&ollama.url());
        let err = pull(&config, |_| {}).await.unwrap_err();
        assert!(matches!(err, Error::ModelMissing { .. }), "{err}");
        assert!(err.to_string().contains("ollama.com/library"), "{err}");

        let dead = OllamaConfig::new("embeddinggemma").with_url("http://127.0.0.1:9");
        let err = pull(&dead, |_| {}).await.unwrap_err();
        assert!(matches!(err, Error::EmbedderUnreachable { .. }), "{err}");
    }

    #[tokio::test]
    async fn a_stream_that_stops_before_success_is_an_error() {
        let ollama = FakeOllama::with_models(&[]);
        ollama.offer_for_pull("embeddinggemma", 64);
        ollama.cut_pulls_short(true);
        let config = OllamaConfig::new("embeddinggemma").with_url(&ollama.url());
        let err = pull(&config, |_| {}).await.unwrap_err();
        assert!(err.to_string().contains("without saying it succeeded"), "{err}");
        assert!(crate::OllamaEmbedder::connect(config).await.is_err(), "the model did not arrive");
    }
}
