//! The backend contract against rag-core's in-memory backend.

#![allow(missing_docs)]

use rag_core::backend::MemoryBackend;
use rag_testkit::contract::{Abilities, backend_contract};

#[tokio::test(flavor = "multi_thread")]
async fn the_memory_backend_keeps_the_contract() {
    // One process's memory: both handles are the same backend.
    let backend = MemoryBackend::new();
    let abilities = Abilities::none().with_vector_search().with_full_text().with_unreadable_memory();
    backend_contract(&backend, &backend, abilities).await;
}
