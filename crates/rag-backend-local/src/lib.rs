//! The embedded default store of vector-rag: no server, one folder per store.
//!
//! Each store is a folder holding `store.db`, a SQLite database (WAL mode) with
//! the chunks, their metadata and the store's settings, and `vectors.f32`, the
//! vectors back to back, memory-mapped for search. A query maps the file and
//! scans it with SIMD-friendly loops on all cores, then reads only the rows of
//! the best hits from SQLite, so a fresh process answers without decoding the
//! store.
//!
//! Writes are crash-safe: a new vector goes into a free slot of the vector
//! file, the file is synced, and only then does the SQLite transaction that
//! points a chunk at it commit. Slots are freed (marked NaN) after commit.
//! Killing a writer at any point leaves a store that opens and answers; the
//! next writer repairs leftover slots. One writer at a time holds the store's
//! lock file; readers need no lock.
//!
//! ```
//! use rag_backend_local::LocalBackend;
//! use rag_core::backend::{QueryRequest, VectorBackend, VectorRecord};
//! use rag_core::store::{Chunk, StoreConfig};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> rag_core::Result<()> {
//! let dir = tempfile::tempdir().unwrap();
//! let backend = LocalBackend::new(dir.path());
//! let config = StoreConfig::new("notes", "toy", 2);
//! backend.create_store(&config).await?;
//! let chunk = Chunk::new("a.md", 0, "hello").with_content_hash("h").with_language("markdown");
//! backend.put("notes", vec![VectorRecord { chunk, vector: vec![1.0, 0.0], indexed_at: 0 }]).await?;
//! let hits = backend.query("notes", &QueryRequest::new(vec![1.0, 0.1], 5)).await?;
//! assert_eq!(hits[0].chunk.text, "hello");
//! # Ok(())
//! # }
//! ```

#[cfg(target_endian = "big")]
compile_error!("the local store's vector file is little-endian; big-endian targets are not supported");

mod backend;
mod bits;
mod bm25;
mod cache;
mod centre;
mod codes;
mod error;
mod files;
mod fulltext;
mod large_pages;
mod lengths;
mod popcount;
mod reader;
mod scan;
mod schema;
mod signs;
mod slots;
mod writer;

pub use backend::LocalBackend;
pub use bits::{BitCodes, bits_stride, encode_bits, top_k_bits, top_k_bits_among};
pub use error::LocalStoreError;
pub use scan::{Scored, top_k};
pub use signs::{encode_signs, sign_candidates, signs_stride, top_k_signs};
