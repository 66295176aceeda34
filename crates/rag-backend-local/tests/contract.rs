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

#[tokio::test(flavor = "multi_thread")]
async fn a_store_writer_holds_the_lock_until_it_is_dropped() {
    use std::sync::Arc;

    use rag_core::Error;
    use rag_core::backend::VectorBackend;
    use rag_core::store::Store;
    use rag_testkit::contract::{axis_vector, contract_config, contract_record};

    let data = tempfile::tempdir().expect("a temporary folder");
    let this: Arc<dyn VectorBackend> = Arc::new(LocalBackend::new(data.path()));
    this.create_store(&contract_config("notes")).await.expect("create");
    let here = Store::open(this, "notes").await.expect("open");
    let there = Store::open(Arc::new(LocalBackend::new(data.path())), "notes").await.expect("open");

    let writer = here.writer().await.expect("the first writer");
    let refused = there.writer().await;
    assert!(matches!(refused, Err(Error::StoreBusy { .. })), "{refused:?}");
    writer.put(vec![contract_record("a.md", 0, 1, "h", "text", axis_vector(0, 0.0))]).await.expect("put");
    drop(writer);
    let writer = there.writer().await.expect("free once the first is dropped");
    writer.delete(vec!["a.md#0".into()]).await.expect("delete");
    assert!(here.file_states().await.expect("states").is_empty(), "one store, seen from both");
}
