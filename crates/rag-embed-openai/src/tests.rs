#![allow(clippy::unwrap_used)]

use super::*;
use rag_testkit::FakeOpenAi;
use rag_testkit::openai::Breakage;

fn config(fake: &FakeOpenAi, model: &str) -> OpenAiConfig {
    OpenAiConfig {
        initial_backoff: Duration::from_millis(1),
        ..OpenAiConfig::new(model).with_url(&fake.url()).with_api_key(Some("sk-test".into()))
    }
}

fn docs(texts: &[&str]) -> Vec<DocText> {
    texts.iter().map(|t| DocText::new(None, *t)).collect()
}

#[tokio::test]
async fn connect_learns_the_dimension_and_embeds_in_order_counting_tokens() {
    let fake = FakeOpenAi::start();
    let embedder = OpenAiEmbedder::connect(config(&fake, "text-embedding-3-small")).await.unwrap();
    assert_eq!(embedder.dimension(), 64);
    assert_eq!(embedder.model(), "openai:text-embedding-3-small");
    let vectors = embedder.embed_documents(&docs(&["alpha beta", "gamma"])).await.unwrap();
    assert_eq!(vectors, [FakeOpenAi::vector_for("alpha beta", 64), FakeOpenAi::vector_for("gamma", 64)]);
    let sent = fake.requests().last().cloned().unwrap();
    assert_eq!(sent["input"], serde_json::json!(["alpha beta", "gamma"]));
    assert_eq!(sent["encoding_format"], "float");
    assert!(sent.get("dimensions").is_none(), "{sent}");
    // "dimension probe" (2) + "alpha beta" (2) + "gamma" (1)
    assert_eq!(embedder.tokens_used(), 5);
    assert_eq!(embedder.context_tokens(), Some(8_191));
}

#[tokio::test]
async fn dimensions_are_asked_for_and_recorded_in_the_model_name() {
    let fake = FakeOpenAi::start();
    let embedder =
        OpenAiEmbedder::connect(config(&fake, "text-embedding-3-large").with_dimensions(Some(32))).await.unwrap();
    assert_eq!(embedder.dimension(), 32);
    assert_eq!(embedder.model(), "openai:text-embedding-3-large?dimensions=32");
    assert_eq!(fake.requests()[0]["dimensions"], 32);
    // A model that does not take `dimensions` is refused by the server, in one line.
    let fake = FakeOpenAi::with(rag_testkit::openai::Flavor::OpenAi, &[("embed-v1", 16)], Some("sk-test"));
    let err = OpenAiEmbedder::connect(config(&fake, "embed-v1").with_dimensions(Some(8))).await.unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)) && err.to_string().contains("does not support"), "{err}");
}

#[tokio::test]
async fn ollamas_compatible_endpoint_works_without_a_key() {
    let fake = FakeOpenAi::ollama();
    let config = OpenAiConfig { initial_backoff: Duration::from_millis(1), ..OpenAiConfig::new("all-minilm") }
        .with_url(&fake.url())
        .with_api_key(None);
    let embedder = OpenAiEmbedder::connect(config).await.unwrap();
    assert_eq!(embedder.dimension(), 48);
    let vector = embedder.embed_query("kites").await.unwrap();
    assert_eq!(vector, FakeOpenAi::vector_for("kites", 48));
    // Ollama's own 404 body for a model it lacks.
    let missing = OpenAiConfig::new("nomic-embed-text").with_url(&fake.url()).with_api_key(None);
    let err = OpenAiEmbedder::connect(missing).await.unwrap_err();
    assert!(matches!(err, Error::ModelMissing { .. }) && err.to_string().contains("try pulling it"), "{err}");
}

#[tokio::test]
async fn a_wrong_key_and_an_unknown_model_are_one_typed_error_each() {
    let fake = FakeOpenAi::start();
    let wrong = config(&fake, "text-embedding-3-small").with_api_key(Some("sk-wrong-key".into()));
    let err = OpenAiEmbedder::connect(wrong).await.unwrap_err();
    assert!(matches!(err, Error::AccessDenied { .. }) && err.is_fatal(), "{err}");
    assert!(err.to_string().contains("Incorrect API key") && !err.to_string().contains("sk-wrong-key"), "{err}");
    let none = config(&fake, "text-embedding-3-small").with_api_key(None);
    let err = OpenAiEmbedder::connect(none).await.unwrap_err();
    assert!(err.to_string().contains("Set OPENAI_API_KEY"), "{err}");
    let err = OpenAiEmbedder::connect(config(&fake, "text-embedding-4")).await.unwrap_err();
    assert!(matches!(err, Error::ModelMissing { .. }), "{err}");
    assert!(err.to_string().contains("does not exist"), "{err}");
    let dead = config(&fake, "text-embedding-3-small").with_url("http://127.0.0.1:9/v1");
    let err = OpenAiEmbedder::connect(dead).await.unwrap_err();
    assert!(matches!(err, Error::EmbedderUnreachable { .. }) && err.to_string().contains("--embed-url"), "{err}");
}

#[tokio::test]
async fn throttling_and_server_errors_are_retried_honouring_retry_after() {
    let fake = FakeOpenAi::start();
    let embedder = OpenAiEmbedder::connect(config(&fake, "text-embedding-3-small")).await.unwrap();
    fake.fail_next(2, 429, Some("0.2"));
    fake.fail_next(1, 503, None);
    let started = std::time::Instant::now();
    embedder.embed_documents(&docs(&["one"])).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(400), "two waits of Retry-After 0.2 s: {:?}", started.elapsed());
    // Throttling that outlasts the retries: Throttled, which ends a run.
    fake.fail_next(10, 429, Some("0"));
    let err = embedder.embed_documents(&docs(&["two"])).await.unwrap_err();
    assert!(matches!(err, Error::Throttled { attempts: 6, .. }) && err.is_fatal(), "{err}");
}

#[tokio::test]
async fn a_text_over_the_window_is_a_context_error_the_indexer_splits() {
    let fake = FakeOpenAi::start();
    fake.set_context_chars(100);
    let embedder = OpenAiEmbedder::connect(config(&fake, "text-embedding-3-small")).await.unwrap();
    let long = "word ".repeat(40);
    let err = embedder.embed_documents(&docs(&[&long])).await.unwrap_err();
    assert!(matches!(err, Error::ContextLength { chars: 200, .. }), "{err}");
    // A query that long is cut until it fits.
    let vector = embedder.embed_query(&long).await.unwrap();
    let sent = fake.requests().last().unwrap()["input"][0].as_str().unwrap().to_string();
    assert!(sent.len() <= 100 && long.starts_with(&sent), "{sent}");
    assert_eq!(vector, FakeOpenAi::vector_for(&sent, 64));
}

#[tokio::test]
async fn wrong_dimensions_and_non_numbers_are_refused() {
    let fake = FakeOpenAi::start();
    let embedder = OpenAiEmbedder::connect(config(&fake, "text-embedding-3-small")).await.unwrap();
    fake.break_answers(Some(Breakage::WrongDimension));
    let err = embedder.embed_documents(&docs(&["a"])).await.unwrap_err();
    assert!(matches!(err, Error::DimensionMismatch { expected: 64, actual: 63, .. }), "{err}");
    fake.break_answers(Some(Breakage::NotANumber));
    let err = embedder.embed_documents(&docs(&["a"])).await.unwrap_err();
    assert!(err.to_string().contains("no usable embeddings"), "{err}");
}

#[tokio::test]
async fn prompts_follow_the_model_family() {
    let fake = FakeOpenAi::with(rag_testkit::openai::Flavor::Ollama, &[("nomic-embed-text", 16)], None);
    let config = OpenAiConfig::new("nomic-embed-text").with_url(&fake.url()).with_api_key(None);
    let embedder = OpenAiEmbedder::connect(config).await.unwrap();
    embedder.embed_query("kites").await.unwrap();
    assert_eq!(fake.requests().last().unwrap()["input"], serde_json::json!(["search_query: kites"]));
}

#[tokio::test]
async fn an_assumed_dimension_costs_no_probe() {
    let fake = FakeOpenAi::start();
    let embedder = OpenAiEmbedder::assume(config(&fake, "text-embedding-3-small"), 64).unwrap();
    assert_eq!(fake.counts().0, 0);
    embedder.embed_query("kites").await.unwrap();
    assert_eq!(fake.counts(), (1, 1), "one call for one query");
    // A server whose vectors are not that long is refused, not mixed.
    let wrong = OpenAiEmbedder::assume(config(&fake, "text-embedding-3-small"), 32).unwrap();
    assert!(matches!(wrong.embed_query("kites").await.unwrap_err(), Error::DimensionMismatch { .. }));
}

#[test]
fn the_key_never_shows_in_debug_output() {
    let config = OpenAiConfig::new("m").with_api_key(Some("sk-secret".into()));
    assert!(!format!("{config:?}").contains("sk-secret"));
}
