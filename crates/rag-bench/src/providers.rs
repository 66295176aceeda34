//! `rag-bench providers`: texts a second through each remote embedder
//! against its loopback fake answering after 50 ms, batched and concurrent
//! as the indexer sends them (each embedder's batch size and calls in
//! flight). What this measures is the client: how well it fills the time a
//! real service takes to answer, not the service.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use futures::stream::{self, StreamExt, TryStreamExt};
use rag_core::embed::{DocText, Embedder};
use rag_testkit::{FakeBedrock, FakeOpenAi};

/// What a service takes to answer one call.
const LATENCY: Duration = Duration::from_millis(50);

/// Embeds `count` short texts as the indexer would; texts a second.
async fn texts_per_second(embedder: &dyn Embedder, count: usize) -> Result<f64> {
    let docs: Vec<DocText> = (0..count).map(|i| DocText::new(None, format!("note number {i} about kites"))).collect();
    let started = Instant::now();
    let batches: Vec<Vec<DocText>> = docs.chunks(embedder.max_batch_size()).map(<[DocText]>::to_vec).collect();
    let embedded: Vec<Vec<Vec<f32>>> = stream::iter(batches)
        .map(|batch| async move { embedder.embed_documents(&batch).await })
        .buffer_unordered(embedder.max_concurrency())
        .try_collect()
        .await?;
    anyhow::ensure!(embedded.iter().map(Vec::len).sum::<usize>() == count, "some texts were not embedded");
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

async fn bedrock(fake: &FakeBedrock, model: &str) -> Result<rag_embed_bedrock::BedrockEmbedder> {
    use aws_sdk_bedrockruntime::config::{BehaviorVersion, Credentials, Region};
    let sdk = aws_sdk_bedrockruntime::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("bench", "bench", None, None, "bench"))
        .endpoint_url(fake.url())
        .build();
    let client = aws_sdk_bedrockruntime::Client::from_conf(sdk);
    Ok(rag_embed_bedrock::BedrockEmbedder::from_client(
        client,
        rag_embed_bedrock::BedrockConfig::new(model),
        "us-east-1".into(),
    )
    .await?)
}

/// Prints texts a second for Titan, Cohere and an OpenAI-compatible server.
pub async fn bench_providers(runs: usize) -> Result<()> {
    let runs = runs.clamp(1, 5);
    println!("remote embedders against loopback fakes answering in {} ms, median of {runs} runs", LATENCY.as_millis());
    println!("{:<44} {:>8} {:>12} {:>10}", "embedder (texts a call x calls at once)", "texts", "texts/s", "target");

    let fake = FakeBedrock::start();
    fake.set_latency(LATENCY);
    for (model, count, target) in
        [("amazon.titan-embed-text-v2:0", 2_000, 200.0), ("cohere.embed-english-v3", 10_000, 1_000.0)]
    {
        let embedder: Arc<dyn Embedder> = Arc::new(bedrock(&fake, model).await?);
        let mut rates = Vec::new();
        for _ in 0..runs {
            rates.push(texts_per_second(embedder.as_ref(), count).await?);
        }
        let shape = if model.starts_with("amazon") { "1 x up to 16" } else { "96 x 4" };
        println!(
            "{:<44} {count:>8} {:>12.0} {:>10}",
            format!("bedrock:{model} ({shape})"),
            median(rates),
            format!("≥ {target}")
        );
    }

    let openai = FakeOpenAi::start();
    openai.set_latency(LATENCY);
    let config = rag_embed_openai::OpenAiConfig {
        batch_size: 32,
        concurrency: 2,
        ..rag_embed_openai::OpenAiConfig::new("text-embedding-3-small")
    }
    .with_url(&openai.url())
    .with_api_key(Some("sk-test".into()));
    let embedder = rag_embed_openai::OpenAiEmbedder::connect(config).await?;
    let mut rates = Vec::new();
    for _ in 0..runs {
        rates.push(texts_per_second(&embedder, 2_000).await?);
    }
    println!("{:<44} {:>8} {:>12.0} {:>10}", "openai:text-embedding-3-small (32 x 2)", 2_000, median(rates), "-");
    Ok(())
}
