//! Targets for the contract tests: the fake of rag-testkit, and moto's
//! server (a third-party emulator) started on a loopback port.

#![allow(dead_code)]

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_s3vectors::config::{BehaviorVersion, Credentials, Region};
use rag_backend_s3vectors::{S3VectorsBackend, S3VectorsConfig};
use rag_core::{
    backend::VectorRecord,
    store::{Chunk, StoreConfig},
};

/// A backend on `endpoint` with static test credentials and fast retries.
pub fn backend(endpoint: &str, bucket: &str) -> S3VectorsBackend {
    backend_with_state(endpoint, bucket, None)
}

/// [`backend`], remembering unreadable files under `state` (this machine's records).
pub fn backend_with_state(endpoint: &str, bucket: &str, state: Option<PathBuf>) -> S3VectorsBackend {
    let config = S3VectorsConfig { local_state_dir: state, ..test_config(endpoint, bucket) };
    backend_from(endpoint, config)
}

/// The settings of [`backend`]: fast retries and leases, no rate limit.
pub fn test_config(endpoint: &str, bucket: &str) -> S3VectorsConfig {
    S3VectorsConfig {
        endpoint_url: Some(endpoint.to_string()),
        initial_backoff: Duration::from_millis(5),
        max_vectors_per_second: 0.0,
        list_segments: 4,
        lease: rag_backend_s3vectors::LeaseOptions {
            ttl: Duration::from_secs(6),
            settle: Duration::from_millis(100),
            max_wait: Duration::from_secs(30),
        },
        ..S3VectorsConfig::new(bucket)
    }
}

/// A backend on `endpoint` with `config` and static test credentials.
pub fn backend_from(endpoint: &str, config: S3VectorsConfig) -> S3VectorsBackend {
    let sdk = aws_sdk_s3vectors::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
        .endpoint_url(endpoint)
        .retry_config(aws_sdk_s3vectors::config::retry::RetryConfig::standard().with_max_attempts(1))
        .build();
    S3VectorsBackend::from_client(aws_sdk_s3vectors::Client::from_conf(sdk), config, "us-east-1".into())
}

/// moto's server on a free loopback port, stopped on drop.
pub struct Moto {
    child: Child,
    pub url: String,
}

impl Moto {
    /// Starts `moto_server` from `RAG_MOTO_SERVER`, or from the virtualenv
    /// scripts/test.sh makes (`target/moto-venv`).
    pub fn start() -> Self {
        let bin = std::env::var_os("RAG_MOTO_SERVER").map(PathBuf::from).unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/moto-venv/bin/moto_server")
        });
        assert!(
            bin.exists(),
            "moto_server not found at {}: run scripts/test.sh (it installs moto[server] into target/moto-venv) \
             or set RAG_MOTO_SERVER",
            bin.display()
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not start on port {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, url: format!("http://127.0.0.1:{port}") }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn config(name: &str, dimension: usize) -> StoreConfig {
    StoreConfig::new(name, "embeddinggemma", dimension)
        .with_metric(rag_core::store::Metric::Cosine)
        .with_chunking("text-splitter/chars size=1500 overlap=200")
}

pub fn record(path: &str, index: usize, total: usize, hash: &str, vector: Vec<f32>) -> VectorRecord {
    VectorRecord {
        chunk: Chunk::new(path, index, format!("text of {path} chunk {index}"))
            .with_total(total)
            .with_lines(index * 10 + 1, index * 10 + 9)
            .with_bytes(index * 100, index * 100 + 99)
            .with_content_hash(hash)
            .with_language("markdown"),
        vector,
        indexed_at: 1_790_000_000,
    }
}

/// A deterministic unit-ish vector.
pub fn vector(seed: u64, dim: usize) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..dim)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 2000) as f32 / 1000.0 - 1.0
        })
        .collect()
}
