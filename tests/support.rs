//! Helpers for the end-to-end tests: a temporary workspace with a fake Ollama
//! and a way to run the real `rag` binary in it.

#![allow(dead_code)] // each test file uses a different part

use std::path::PathBuf;
use std::process::{Command, Output};

#[allow(unused_imports)]
pub use rag_testkit::{FakeBedrock, FakeHub, FakeOllama, FakeOpenAi, FakeS3Vectors};

/// The `rag` binary: `RAG_BIN` if set, else the copy cargo builds with these
/// tests (`CARGO_BIN_EXE_rag-under-test`, always current).
pub fn rag_bin() -> PathBuf {
    std::env::var_os("RAG_BIN").map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_rag-under-test")), PathBuf::from)
}

/// A temporary folder with `work/` (files to index) and `data/` (stores), and a
/// fake Ollama.
pub struct Workspace {
    pub dir: tempfile::TempDir,
    pub ollama: FakeOllama,
}

impl Default for Workspace {
    fn default() -> Self {
        Self::new()
    }
}

impl Workspace {
    pub fn new() -> Self {
        Self::with_ollama(FakeOllama::start())
    }

    pub fn with_ollama(ollama: FakeOllama) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("work")).unwrap();
        Self { dir, ollama }
    }

    pub fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn write(&self, path: &str, contents: impl AsRef<[u8]>) {
        let path = self.work().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
    }

    pub fn remove(&self, path: &str) {
        std::fs::remove_file(self.work().join(path)).unwrap();
    }

    /// A `rag` command run in `work/`, with this workspace's data folder and Ollama.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(rag_bin());
        command
            .args(args)
            .current_dir(self.work())
            .env("RAG_DATA_DIR", self.data())
            .env("OLLAMA_HOST", self.ollama.url())
            .env_remove("RAG_STORE")
            .env_remove("RAG_MODEL")
            .env_remove("OPENAI_API_KEY")
            .env_remove("OPENAI_BASE_URL")
            .env_remove("RAG_S3_BUCKET")
            .env_remove("RUST_LOG")
            // hf: models: a Hub cache of this workspace's own, and no real Hub.
            .env("HF_HOME", self.dir.path().join("hf-home"))
            .env("RAG_FINGERPRINT_CACHE", self.dir.path().join("fingerprints"))
            .env("HF_ENDPOINT", "http://127.0.0.1:9")
            .env_remove("HF_TOKEN")
            .env_remove("HF_HUB_OFFLINE")
            // S3 Vectors tests talk to a loopback fake: static credentials, no
            // profile files, no instance metadata lookups.
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", self.dir.path().join("no-aws-config"))
            .env("AWS_SHARED_CREDENTIALS_FILE", self.dir.path().join("no-aws-credentials"))
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_ENDPOINT_URL")
            .env_remove("AWS_ENDPOINT_URL_S3VECTORS")
            .env_remove("AWS_ENDPOINT_URL_BEDROCK_RUNTIME");
        command
    }

    pub fn rag(&self, args: &[&str]) -> Run {
        Run(self.command(args).output().unwrap())
    }

    /// `rag query --json`, parsed.
    pub fn query_json(&self, store: &str, text: &str, top_k: usize) -> serde_json::Value {
        let run = self.rag(&["query", text, "--store", store, "--json", "--top-k", &top_k.to_string()]);
        run.assert_ok();
        serde_json::from_str(&run.stdout()).unwrap()
    }

    /// `rag query --json --full`, parsed.
    pub fn query_json_full(&self, store: &str, text: &str, top_k: usize) -> serde_json::Value {
        let run = self.rag(&["query", text, "--store", store, "--json", "--full", "--top-k", &top_k.to_string()]);
        run.assert_ok();
        serde_json::from_str(&run.stdout()).unwrap()
    }

    /// Every record of a store, without the indexing time, sorted by key.
    pub fn records(&self, store: &str) -> Vec<(rag_core::store::Chunk, Vec<f32>)> {
        let backend = rag_backend_local::LocalBackend::new(self.data());
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let records = runtime.block_on(backend.records(store)).unwrap();
        records.into_iter().map(|r| (r.chunk, r.vector)).collect()
    }
}

/// The output of one `rag` run.
pub struct Run(pub Output);

impl Run {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }

    pub fn code(&self) -> Option<i32> {
        self.0.status.code()
    }

    #[track_caller]
    pub fn assert_ok(&self) -> &Self {
        assert!(
            self.0.status.success(),
            "rag failed ({:?})\nstdout:\n{}\nstderr:\n{}",
            self.code(),
            self.stdout(),
            self.stderr()
        );
        self
    }

    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(self.code(), Some(code), "stdout:\n{}\nstderr:\n{}", self.stdout(), self.stderr());
        self
    }
}

/// Markdown with `n` sections, each naming `topic`, so it splits into several chunks.
pub fn sections(topic: &str, n: usize) -> String {
    (0..n)
        .map(|i| {
            format!("## {topic} part {i}\n\n{}\n\n", format!("The {topic} notes say {topic} matters. ").repeat(12))
        })
        .collect()
}
