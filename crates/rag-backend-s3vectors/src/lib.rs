//! A [`VectorBackend`](rag_core::backend::VectorBackend) on Amazon S3 Vectors, through
//! the official `aws-sdk-s3vectors` client.
//!
//! A store is an index in a vector bucket. Its settings (embedding model,
//! chunking) live in the index's tags, set when the index is created, so every
//! machine that opens the store sees the same settings. Each vector carries
//! its chunk's metadata: the filterable keys of [`rag_core::filter::FILTERABLE_KEYS`]
//! and, declared non-filterable at creation so the 2 KB filterable limit is
//! never hit, the chunk text, the file's content hash and the rest.
//!
//! Incremental indexing reads the state of every file from the index itself
//! (ListVectors with metadata, several segments in parallel), so two machines
//! indexing the same store agree. Writes are batched by count (500) and
//! estimated request size, sent several at a time under a client-side rate
//! limit that adapts to the service's answers (halved on each burst of 429s,
//! climbing back while none come, so writers that share an index settle at
//! their share of its 2,500 vectors a second), and retried with jittered
//! exponential backoff on 429, 500, 503 and 408; a PutVectors batch that
//! keeps getting 503 is split in two.
//!
//! One writer at a time: [`lock_for_writing`](rag_core::backend::VectorBackend::lock_for_writing)
//! takes a lease recorded in the index's tags (`rag:writer`), renewed while
//! the run lasts and given back at its end; a second `rag index` on the same
//! store, on this machine or another, waits for it ([`LeaseOptions`]), then
//! reads what the first wrote. A lease whose writer died lapses after its
//! time to live (60 s).
//!
//! ```no_run
//! use rag_backend_s3vectors::{S3VectorsBackend, S3VectorsConfig};
//! use rag_core::backend::VectorBackend;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> rag_core::Result<()> {
//! let config = S3VectorsConfig { region: Some("eu-central-1".into()), ..S3VectorsConfig::new("my-vectors") };
//! let backend = S3VectorsBackend::connect(config).await?;
//! println!("{:?}", backend.list_stores().await?);
//! # Ok(())
//! # }
//! ```

mod backend;
mod convert;
mod errors;
mod lease;
mod limits;
mod local_state;
mod rate;

pub use backend::{S3VectorsBackend, S3VectorsConfig};
pub use convert::{NON_FILTERABLE_KEYS, document_to_json, json_to_document};
pub use lease::LeaseOptions;
pub use limits::{MAX_BATCH, MAX_DIMENSION, validate_bucket_name};
