//! The backend contract against the local store: two backends on one data
//! folder stand for two processes.

#![allow(missing_docs)]

use rag_backend_local::LocalBackend;
use rag_testkit::contract::{Abilities, backend_contract};

#[tokio::test(flavor = "multi_thread")]
async fn the_local_backend_keeps_the_contract() {
    let data = tempfile::tempdir().expect("a temporary folder");
    let (backend, other_process) = (LocalBackend::new(data.path()), LocalBackend::new(data.path()));
    let abilities =
        Abilities::none().with_vector_search().with_full_text().with_exclusive_writer().with_unreadable_memory();
    backend_contract(&backend, &other_process, abilities).await;
}
