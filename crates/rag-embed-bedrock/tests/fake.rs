//! The Bedrock embedder through the real SDK client against the loopback
//! fake, which checks what the SDK sent and answers as Bedrock does.

#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use aws_sdk_bedrockruntime::config::{BehaviorVersion, Credentials, Region};
use rag_core::Error;
use rag_core::embed::{DocText, Embedder};
use rag_embed_bedrock::{BedrockConfig, BedrockEmbedder};
use rag_testkit::FakeBedrock;

async fn embedder(fake: &FakeBedrock, config: BedrockConfig) -> rag_core::Result<BedrockEmbedder> {
    let sdk = aws_sdk_bedrockruntime::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
        .endpoint_url(fake.url())
        .retry_config(aws_sdk_bedrockruntime::config::retry::RetryConfig::disabled())
        .build();
    let config = BedrockConfig { initial_backoff: Duration::from_millis(5), ..config };
    BedrockEmbedder::from_client(aws_sdk_bedrockruntime::Client::from_conf(sdk), config, "us-east-1".into()).await
}

fn docs(texts: &[&str]) -> Vec<DocText> {
    texts.iter().map(|t| DocText::new(None, *t)).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn titan_embeds_one_text_a_signed_call_with_its_dimensions() {
    let fake = FakeBedrock::start();
    let config = BedrockConfig { dimensions: Some(256), ..BedrockConfig::new("amazon.titan-embed-text-v2:0") };
    let embedder = embedder(&fake, config).await.unwrap();
    assert_eq!(embedder.dimension(), 256);
    assert_eq!(embedder.model(), "bedrock:amazon.titan-embed-text-v2:0?dimensions=256");
    let vectors = embedder.embed_documents(&docs(&["alpha", "beta gamma", "delta"])).await.unwrap();
    assert_eq!(vectors[1], FakeBedrock::vector_for("beta gamma", 256));
    let calls = fake.invocations();
    assert_eq!(calls.len(), 4, "the probe, then one call a text");
    for call in &calls {
        assert_eq!(call.model_id, "amazon.titan-embed-text-v2:0");
        assert_eq!((call.content_type.as_str(), call.accept.as_str()), ("application/json", "application/json"));
        assert!(call.signed, "SigV4-signed");
        assert_eq!(call.body["dimensions"], 256);
        assert_eq!(call.body["normalize"], true);
    }
    let usage = embedder.usage().unwrap();
    // "dimension probe" 2 + 1 + 2 + 1 words, as the fake counts tokens.
    assert_eq!(usage.tokens, 6);
    assert!((usage.estimated_usd.unwrap() - 6.0 * 0.02 / 1e6).abs() < 1e-12);
}

#[tokio::test(flavor = "multi_thread")]
async fn cohere_sends_96_texts_a_call_with_the_input_type() {
    let fake = FakeBedrock::start();
    let embedder = embedder(&fake, BedrockConfig::new("cohere.embed-english-v3")).await.unwrap();
    assert_eq!(embedder.dimension(), 1024);
    let texts: Vec<String> = (0..200).map(|i| format!("note number {i}")).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let vectors = embedder.embed_documents(&docs(&refs)).await.unwrap();
    assert_eq!(vectors.len(), 200);
    assert_eq!(vectors[150], FakeBedrock::vector_for("note number 150", 1024));
    let mut sizes: Vec<usize> =
        fake.invocations()[1..].iter().map(|c| c.body["texts"].as_array().unwrap().len()).collect();
    // Sent at once, so they arrive in any order.
    sizes.sort_unstable();
    assert_eq!(sizes, [8, 96, 96]);
    assert!(fake.invocations()[1..].iter().all(|c| c.body["input_type"] == "search_document"));
    embedder.embed_query("where").await.unwrap();
    assert_eq!(fake.invocations().last().unwrap().body["input_type"], "search_query");

    let v4 = BedrockConfig { dimensions: Some(512), ..BedrockConfig::new("cohere.embed-v4:0") };
    let v4 = embedder_for_v4(&fake, v4).await;
    assert_eq!(v4.dimension(), 512);
    assert_eq!(fake.invocations().last().unwrap().body["output_dimension"], 512);
}

async fn embedder_for_v4(fake: &FakeBedrock, config: BedrockConfig) -> BedrockEmbedder {
    embedder(fake, config).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn each_refusal_is_one_typed_error() {
    let fake = FakeBedrock::start();
    fake.disable("cohere.embed-multilingual-v3");
    let err = embedder(&fake, BedrockConfig::new("cohere.embed-multilingual-v3")).await.unwrap_err();
    assert!(matches!(err, Error::AccessDenied { .. }) && err.is_fatal(), "{err}");
    assert!(err.to_string().contains("Model access"), "{err}");

    let err = embedder(&fake, BedrockConfig::new("anthropic.claude-3-haiku")).await.unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)) && err.to_string().contains("titan-embed-text-v2"), "{err}");
    let bad = BedrockConfig { dimensions: Some(300), ..BedrockConfig::new("amazon.titan-embed-text-v2:0") };
    assert!(matches!(embedder(&fake, bad).await.unwrap_err(), Error::InvalidInput(_)));

    let embedder = embedder(&fake, BedrockConfig::new("cohere.embed-english-v3")).await.unwrap();
    // Over Cohere v3's 2,048 characters: refused before any call, so the indexer splits it.
    let calls = fake.invocations().len();
    let err = embedder.embed_documents(&docs(&[&"word ".repeat(500)])).await.unwrap_err();
    assert!(matches!(err, Error::ContextLength { chars: 2500, .. }), "{err}");
    assert_eq!(fake.invocations().len(), calls);
    // The service's own ValidationException for the same, had it been sent.
    fake.fail_next(1, 400, "ValidationException");
    let err = embedder.embed_documents(&docs(&["x"])).await.unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err}");
    // Throttling that outlasts the adaptive retries.
    fake.fail_next(20, 429, "ThrottlingException");
    let err = embedder.embed_documents(&docs(&["x"])).await.unwrap_err();
    assert!(matches!(err, Error::Throttled { .. }) && err.is_fatal(), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn throttling_under_load_slows_down_and_every_text_is_embedded() {
    let fake = FakeBedrock::start();
    fake.set_latency(Duration::from_millis(20));
    // The account takes 4 calls at once; the client sends 16.
    fake.throttle_over(Some(4));
    let embedder = embedder(&fake, BedrockConfig::new("amazon.titan-embed-text-v2:0")).await.unwrap();
    let texts: Vec<String> = (0..64).map(|i| format!("text {i}")).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let vectors = embedder.embed_documents(&docs(&refs)).await.unwrap();
    assert_eq!(vectors.len(), 64);
    let calls = fake.invocations().len();
    assert!(calls > 65, "some calls were throttled and retried: {calls}");
    assert!(calls < 64 * 2, "the bound came down to what the account takes: {calls} calls for 64 texts");
}
