//! `rag-bench s3`: the S3 Vectors backend against the loopback fake with a
//! realistic latency per request.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use rag_core::{
    backend::{QueryRequest, VectorBackend, VectorRecord},
    store::StoreConfig,
};

use crate::query::{Vectors, synthetic_chunk};
use crate::{DIM, median};

/// An S3 Vectors backend on the loopback fake with static test credentials.
pub(crate) fn s3_backend(fake: &rag_testkit::FakeS3Vectors, segments: u32) -> rag_backend_s3vectors::S3VectorsBackend {
    use aws_sdk_s3vectors::config::{BehaviorVersion, Credentials, Region};
    let sdk = aws_sdk_s3vectors::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("bench", "bench", None, None, "bench"))
        .endpoint_url(fake.url())
        .build();
    let config = rag_backend_s3vectors::S3VectorsConfig {
        endpoint_url: Some(fake.url()),
        list_segments: segments,
        ..rag_backend_s3vectors::S3VectorsConfig::new("bench-vectors")
    };
    rag_backend_s3vectors::S3VectorsBackend::from_client(
        aws_sdk_s3vectors::Client::from_conf(sdk),
        config,
        "us-east-1".into(),
    )
}

pub(crate) fn s3_store(name: &str, dimension: usize) -> StoreConfig {
    StoreConfig::new(name, "instant", dimension).with_chunking("synthetic")
}

pub(crate) async fn bench_s3(chunks: usize, listed: usize, runs: usize) -> Result<()> {
    let latency = Duration::from_millis(50);
    println!("S3 Vectors backend against the loopback fake ({} ms per request unless said)", latency.as_millis());

    // Writes: the indexer's path (batches sized by the backend's hint), instant embedder, 768 dims.
    let fake = rag_testkit::FakeS3Vectors::start();
    fake.set_latency(latency);
    let backend = s3_backend(&fake, 8);
    backend.create_store(&s3_store("writes", DIM)).await?;
    let mut vectors = Vectors(7);
    let records: Vec<VectorRecord> = (0..chunks)
        .map(|i| VectorRecord { chunk: synthetic_chunk(i), vector: vectors.next_unit(DIM), indexed_at: 0 })
        .collect();
    let hint = backend.write_batch_hint();
    let started = Instant::now();
    for batch in records.chunks(hint) {
        backend.put("writes", batch.to_vec()).await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "  write {chunks} vectors of {DIM} dims: {elapsed:.2} s, {:.0} vectors/s ({} PutVectors, client limit 2,400/s)",
        chunks as f64 / elapsed,
        fake.calls("PutVectors")
    );
    drop(backend);
    drop(fake);

    // State rebuilt from ListVectors with metadata: 1 vs 16 segments.
    let fake = rag_testkit::FakeS3Vectors::start();
    let filler = s3_backend(&fake, 1);
    filler.create_store(&s3_store("listed", 4)).await?;
    let records: Vec<VectorRecord> = (0..listed)
        .map(|i| VectorRecord {
            chunk: synthetic_chunk(i),
            vector: vec![1.0, 0.5, (i % 7) as f32, 0.25],
            indexed_at: 0,
        })
        .collect();
    for batch in records.chunks(4_000) {
        filler.put("listed", batch.to_vec()).await?;
    }
    fake.set_latency(latency);
    for segments in [1, 16] {
        let backend = s3_backend(&fake, segments);
        let mut times = Vec::new();
        for _ in 0..runs.min(3) {
            let started = Instant::now();
            let states = backend.file_states("listed").await?;
            times.push(started.elapsed().as_secs_f64());
            if states.len() != listed.div_ceil(8) {
                bail!("expected {} files, got {}", listed.div_ceil(8), states.len());
            }
        }
        println!("  file state of {listed} vectors from ListVectors, {segments:>2} segment(s): {:.2} s", median(times));
    }

    // Query round trip with no injected latency: client, HTTP on loopback, fake's search of 1,000 vectors.
    fake.set_latency(Duration::ZERO);
    let backend = s3_backend(&fake, 1);
    backend.create_store(&s3_store("queries", DIM)).await?;
    let mut vectors = Vectors(11);
    let records: Vec<VectorRecord> = (0..1_000)
        .map(|i| VectorRecord { chunk: synthetic_chunk(i), vector: vectors.next_unit(DIM), indexed_at: 0 })
        .collect();
    backend.put("queries", records).await?;
    let mut times = Vec::new();
    for _ in 0..(runs * 10).max(50) {
        let query = vectors.next_unit(DIM);
        let started = Instant::now();
        let hits = backend.query("queries", &QueryRequest::new(query, 10)).await?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        if hits.len() != 10 {
            bail!("expected 10 hits");
        }
    }
    println!("  query round trip, top 10 of 1,000 vectors of {DIM} dims, no latency: {:.2} ms median", median(times));
    Ok(())
}
