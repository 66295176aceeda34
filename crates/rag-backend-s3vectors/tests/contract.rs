//! The same CRUD contract against the fake S3 Vectors and moto's server, so
//! the fake cannot drift from a real third-party emulator; then what only the
//! fake has (QueryVectors, paging, segments, throttling).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use rag_backend_s3vectors::{S3VectorsBackend, S3VectorsConfig};
use rag_core::{
    Error,
    backend::{QueryRequest, VectorBackend},
    filter::Filter,
};
use rag_testkit::FakeS3Vectors;
use rag_testkit::contract::{Abilities, backend_contract};
use serde_json::json;
use support::{backend, config, record, vector};

/// The backend contract of every backend, with two clients on one bucket
/// standing for two machines that share it (on one machine's records).
async fn shared_contract(endpoint: &str, abilities: Abilities) {
    let state = tempfile::tempdir().unwrap();
    let machine = |_| support::backend_with_state(endpoint, "team-vectors", Some(state.path().to_path_buf()));
    let (backend, other): (S3VectorsBackend, S3VectorsBackend) = (machine(0), machine(1));
    backend_contract(&backend, &other, abilities.with_unreadable_memory().with_waiting_writer()).await;
}

/// What S3 Vectors adds to the contract: settings in the index's tags, a
/// count of vectors, the ARN in `store info`.
async fn s3_specifics(endpoint: &str) {
    let backend = backend(endpoint, "team-vectors");
    backend.create_store(&config("notes", 8)).await.unwrap();
    assert_eq!(backend.store_config("notes").await.unwrap(), config("notes", 8), "settings from the index tags");
    let records = vec![record("a.md", 0, 2, "ha", vector(1, 8)), record("a.md", 1, 2, "ha", vector(2, 8))];
    backend.put("notes", records).await.unwrap();
    backend.delete("notes", vec!["a.md#1".into()]).await.unwrap();
    assert_eq!(backend.count_vectors("notes").await.unwrap(), 1);
    let info = backend.store_info("notes").await.unwrap();
    assert!(info.details.iter().any(|(k, v)| k == "arn" && v.contains("notes")));
    backend.delete_store("notes").await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_contract_holds_on_the_fake() {
    let fake = FakeS3Vectors::start();
    shared_contract(&fake.url(), Abilities::none().with_vector_search()).await;
    s3_specifics(&fake.url()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_contract_holds_on_moto() {
    // moto has no QueryVectors: everything but vector search.
    let moto = support::Moto::start();
    shared_contract(&moto.url, Abilities::none()).await;
    s3_specifics(&moto.url).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn query_scores_pages_and_filters() {
    let fake = FakeS3Vectors::start();
    fake.set_query_page(100);
    let backend = backend(&fake.url(), "team-vectors");
    backend.create_store(&config("notes", 8)).await.unwrap();
    let records: Vec<_> = (0..300).map(|i| record(&format!("d{}/f{i}.md", i % 3), 0, 1, "h", vector(i, 8))).collect();
    backend.put("notes", records.clone()).await.unwrap();
    assert!(fake.calls("PutVectors") >= 1);

    let query = vector(42, 8);
    let hits = backend.query("notes", &QueryRequest::new(query.clone(), 250)).await.unwrap();
    assert_eq!(hits.len(), 250, "top-k beyond one page follows nextToken");
    assert!(fake.calls("QueryVectors") >= 3);
    assert_eq!(hits[0].chunk.key, "d0/f42.md#0");
    let exact = rag_core::backend::score(rag_core::store::Metric::Cosine, &query, &records[7].vector);
    let got = hits.iter().find(|h| h.chunk.key == records[7].chunk.key).unwrap().score;
    assert!((got - exact).abs() < 1e-5, "score = 1 - distance: {got} vs {exact}");
    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));

    let body = fake.requests("QueryVectors").pop().unwrap();
    assert_eq!(body["returnMetadata"], true);
    assert_eq!(body["returnDistance"], true);
    assert_eq!(body["topK"], 250);

    let filter = Filter::folder("d1").and(Filter::parse(json!({"line_start": {"$lte": 1}})).unwrap());
    let request = QueryRequest::new(query, 10).with_filter(Some(filter.clone()));
    let hits = backend.query("notes", &request).await.unwrap();
    assert_eq!(hits.len(), 10);
    assert!(hits.iter().all(|h| h.chunk.source_path.starts_with("d1/")));
    assert_eq!(fake.requests("QueryVectors").pop().unwrap()["filter"], *filter.as_json());
}

#[tokio::test(flavor = "multi_thread")]
async fn state_is_read_from_every_page_of_every_segment() {
    let fake = FakeS3Vectors::start();
    let backend = backend(&fake.url(), "team-vectors");
    backend.create_store(&config("notes", 4)).await.unwrap();
    let records: Vec<_> =
        (0..2_600).map(|i| record(&format!("f{:04}.md", i / 2), i % 2, 2, "h", vector(i as u64, 4))).collect();
    backend.put("notes", records).await.unwrap();
    assert_eq!(fake.calls("PutVectors"), 6, "2,600 vectors in batches of at most 500");
    fake.reset_calls();
    let states = backend.file_states("notes").await.unwrap();
    assert_eq!(states.len(), 1_300);
    assert!(states.iter().all(|s| s.content_hash.as_deref() == Some("h") && s.keys.len() == 2));
    let lists = fake.requests("ListVectors");
    assert!(lists.len() >= 4 && lists.iter().all(|b| b["segmentCount"] == 4 && b["returnMetadata"] == true));
}

#[tokio::test(flavor = "multi_thread")]
async fn throttling_and_unavailability_are_retried_and_oversized_batches_split() {
    let fake = FakeS3Vectors::start();
    let backend = backend(&fake.url(), "team-vectors");
    backend.create_store(&config("notes", 4)).await.unwrap();
    fake.fail_next("PutVectors", 3, 429, "TooManyRequestsException");
    let records: Vec<_> = (0..40).map(|i| record(&format!("f{i}.md"), 0, 1, "h", vector(i, 4))).collect();
    backend.put("notes", records.clone()).await.unwrap();
    assert_eq!(fake.vector_count("team-vectors", "notes"), 40);

    fake.reset_calls();
    fake.fail_next("PutVectors", 2, 503, "ServiceUnavailableException");
    let more: Vec<_> = (40..80).map(|i| record(&format!("f{i}.md"), 0, 1, "h", vector(i, 4))).collect();
    backend.put("notes", more).await.unwrap();
    assert_eq!(fake.vector_count("team-vectors", "notes"), 80);
    let sizes: Vec<usize> =
        fake.requests("PutVectors").iter().map(|b| b["vectors"].as_array().unwrap().len()).collect();
    assert!(sizes.contains(&20), "the batch was halved after repeated 503s: {sizes:?}");

    fake.fail_next("QueryVectors", 50, 429, "TooManyRequestsException");
    let err = backend.query("notes", &QueryRequest::new(vector(1, 4), 5)).await.unwrap_err();
    assert!(matches!(err, Error::Throttled { .. }), "{err}");
}

/// Three clients write one index at once, each allowed the service's whole
/// rate, with the fake refusing what passes 2,500 vectors a second: each
/// slows down on the refusals and all finish within their retries.
#[tokio::test(flavor = "multi_thread")]
async fn writers_sharing_an_index_slow_down_until_all_finish() {
    let fake = FakeS3Vectors::start();
    fake.enforce_write_limits(2_500, 1_000);
    let writer = || {
        let config =
            S3VectorsConfig { max_vectors_per_second: 2_400.0, ..support::test_config(&fake.url(), "team-vectors") };
        support::backend_from(&fake.url(), config)
    };
    let writers = [writer(), writer(), writer()];
    writers[0].create_store(&config("notes", 4)).await.unwrap();
    let per_writer = 2_000;
    let started = std::time::Instant::now();
    let runs = writers.iter().enumerate().map(|(w, backend)| async move {
        let records: Vec<_> = (0..per_writer)
            .map(|i| record(&format!("w{w}/f{i}.md"), 0, 1, "h", vector((w * per_writer + i) as u64, 4)))
            .collect();
        // In batches, as an index run writes.
        for batch in records.chunks(1_000) {
            backend.put("notes", batch.to_vec()).await?;
        }
        Ok::<_, Error>(())
    });
    for result in futures::future::join_all(runs).await {
        result.unwrap();
    }
    assert_eq!(fake.vector_count("team-vectors", "notes"), 3 * per_writer);
    assert!(fake.throttled() > 0, "the writers together asked for more than the index takes");
    // 6,000 vectors at 2,500 a second at best.
    assert!(started.elapsed() >= std::time::Duration::from_secs(2), "{:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_refused_before_any_request() {
    let fake = FakeS3Vectors::start();
    let backend = backend(&fake.url(), "team-vectors");
    backend.create_store(&config("notes", 4)).await.unwrap();
    fake.reset_calls();
    let err = backend.put("notes", vec![record("z.md", 3, 4, "h", vec![0.0; 4])]).await.unwrap_err();
    assert!(err.to_string().contains("chunk 3 of z.md"), "{err}");
    let err = backend.put("notes", vec![record("z.md", 0, 1, "h", vec![1.0; 5])]).await.unwrap_err();
    assert!(matches!(err, Error::DimensionMismatch { expected: 4, actual: 5, .. }), "{err}");
    let err = backend.put("notes", vec![record("z.md", 0, 1, "h", vec![f32::NAN; 4])]).await.unwrap_err();
    assert!(err.to_string().contains("non-finite"), "{err}");
    assert!(backend.create_store(&config("big", 5000)).await.is_err());
    assert_eq!(fake.calls("PutVectors") + fake.calls("CreateIndex"), 0);
    assert!(rag_backend_s3vectors::validate_bucket_name("Bad_Bucket").is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_index_and_access_denied_say_what_to_do() {
    let fake = FakeS3Vectors::start();
    let backend = backend(&fake.url(), "team-vectors");
    let err = backend.query("notes", &QueryRequest::new(vec![1.0; 4], 5)).await.unwrap_err();
    assert!(err.to_string().contains("not found"), "{err}");
    backend.create_store(&config("notes", 4)).await.unwrap();
    let backend = support::backend(&fake.url(), "team-vectors");
    fake.fail_next("GetIndex", 1, 403, "AccessDeniedException");
    let err = backend.store_config("notes").await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("s3vectors:GetIndex"), "{text}");
}
