//! Test doubles for vector-rag.
//!
//! [`FakeS3Vectors`] (module [`s3vectors`]) speaks S3 Vectors' restJson1 API
//! on loopback, with the operations emulators lack (QueryVectors, ListVectors
//! paging and segments).
//!
//! [`FakeOllama`] is an HTTP server on a loopback port that speaks Ollama's
//! API (`POST /api/embed`, `POST /api/show`, `GET /api/tags`, `GET /`) with
//! Ollama's response shapes and error bodies. Its vectors are deterministic
//! bags of hashed words, so texts that share words score high together and a
//! test can predict what a query finds. It counts what it was asked, and can
//! be told to be slow or to fail.
//!
//! [`FakeOpenAi`] (module [`openai`]) answers the OpenAI embeddings API as
//! OpenAI or Ollama's compatible endpoint does, errors included.
//!
//! [`FakeBedrock`] (module [`bedrock`]) answers Bedrock Runtime's
//! InvokeModel for Titan and Cohere embedding models, errors included.
//!
//! [`FakeHub`] (module [`hub`]) serves model repositories as the Hugging
//! Face Hub does, for `hf:` model names.
//!
//! Module [`documents`] builds PDF, zip and spreadsheet fixtures in memory.
//!
//! Module [`contract`] is the one test suite every `VectorBackend` passes.
//!
//! ```
//! let ollama = rag_testkit::FakeOllama::start();
//! assert!(ollama.url().starts_with("http://127.0.0.1:"));
//! assert_eq!(ollama.stats().embed_requests, 0);
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod bedrock;
pub mod contract;
pub mod documents;
pub mod fuzz;
pub mod hub;
mod loopback;
mod ollama;
pub mod openai;
pub mod s3vectors;

pub use bedrock::FakeBedrock;
pub use hub::FakeHub;
pub use loopback::LoopbackServer;
pub use ollama::{DEFAULT_DIMENSION, FakeOllama, Stats};
pub use openai::FakeOpenAi;
pub use s3vectors::FakeS3Vectors;
