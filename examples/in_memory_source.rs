//! Index things that are not files: here, rows of a support-ticket table
//! held in memory. Implement `Source` (list, read, decode) and the indexer
//! does the rest: only rows whose content changed are re-embedded, and rows
//! that were deleted lose their chunks.
//!
//! Needs Ollama with the model pulled (`ollama pull embeddinggemma`):
//!
//! ```sh
//! cargo run -p rag-examples --example in_memory_source -- "printer jams"
//! ```

use std::sync::Arc;

use rag_backend_local::LocalBackend;
use rag_core::prelude::*;
use rag_core::source::{SourceError, SourceItem};
use rag_embed_ollama::{OllamaConfig, OllamaEmbedder};
use rag_ingest::TextChunker;

/// One row of the table.
#[derive(Debug, Clone)]
struct Ticket {
    id: u32,
    title: String,
    body: String,
}

/// The table, as a source: each ticket is stored as `tickets/ID`.
struct Tickets(Vec<Ticket>);

impl Tickets {
    fn find(&self, item: &SourceItem) -> Result<&Ticket, SourceError> {
        let id = item.path.strip_prefix("tickets/").and_then(|id| id.parse::<u32>().ok());
        self.0.iter().find(|t| Some(t.id) == id).ok_or_else(|| SourceError::Read("no such ticket".into()))
    }
}

impl Source for Tickets {
    fn items(&self) -> Vec<SourceItem> {
        self.0.iter().map(|t| SourceItem::new(format!("tickets/{}", t.id))).collect()
    }

    /// Only ticket chunks are this source's to prune; other things in the
    /// same store are left alone.
    fn covers(&self, path: &str) -> bool {
        path.starts_with("tickets/")
    }

    /// The bytes whose hash says whether a ticket changed.
    fn read(&self, item: &SourceItem, max_bytes: u64) -> Result<Vec<u8>, SourceError> {
        let ticket = self.find(item)?;
        let bytes = format!("{}\n{}", ticket.title, ticket.body).into_bytes();
        match bytes.len() as u64 {
            size if size > max_bytes => Err(SourceError::TooLarge { size, limit: max_bytes }),
            _ => Ok(bytes),
        }
    }

    /// The ticket as markdown, its title kept as metadata on every chunk.
    fn decode(&self, item: &SourceItem, _bytes: &[u8]) -> Result<Document, SourceError> {
        let ticket = self.find(item)?;
        let mut metadata = Metadata::new();
        metadata.insert("title".into(), ticket.title.clone().into());
        metadata.insert("ticket".into(), ticket.id.into());
        let text = format!("# {}\n\n{}\n", ticket.title, ticket.body);
        Ok(Document::new(text, "markdown").with_metadata(metadata))
    }
}

fn tickets() -> Vec<Ticket> {
    let ticket = |id, title: &str, body: &str| Ticket { id, title: title.into(), body: body.into() };
    vec![
        ticket(101, "Printer on floor 2", "The printer jams on every second page; the tray spring is loose."),
        ticket(102, "VPN drops", "The VPN disconnects after ten minutes on hotel Wi-Fi."),
        ticket(103, "New starter laptop", "Order a laptop and a badge for Dana, who starts Monday."),
    ]
}

/// Indexes `rows` into the store `support` under `data_dir`, then asks `question`.
async fn run(
    embedder: Arc<dyn Embedder>,
    data_dir: &std::path::Path,
    rows: Vec<Ticket>,
    question: &str,
) -> rag_core::Result<(IndexReport, Vec<Hit>)> {
    let backend = Arc::new(LocalBackend::new(data_dir));
    let indexer = Indexer::new(embedder.clone(), backend.clone(), Arc::new(TextChunker::default()));
    let report = indexer.index("support", Arc::new(Tickets(rows))).await?;
    let hits = Querier::new(embedder, backend).query("support", question, 2).await?;
    Ok((report, hits))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let question = std::env::args().nth(1).unwrap_or_else(|| "printer jams".into());
    let embedder = Arc::new(OllamaEmbedder::connect(OllamaConfig::new("embeddinggemma")).await?);
    let data = std::env::temp_dir().join("rag-in-memory-source");
    let (report, hits) = run(embedder, &data, tickets(), &question).await?;
    println!("{} new, {} changed, {} unchanged", report.new.len(), report.changed.len(), report.unchanged);
    for hit in hits {
        println!("{:.3} {} {}", hit.score, hit.chunk.source_path, hit.chunk.metadata["title"]);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Counts a few words: enough to tell the tickets apart without a model.
    struct Words;

    #[async_trait]
    impl Embedder for Words {
        fn model(&self) -> &str {
            "words"
        }
        fn dimension(&self) -> usize {
            4
        }
        async fn embed_documents(&self, docs: &[DocText]) -> rag_core::Result<Vec<Vec<f32>>> {
            Ok(docs.iter().map(|d| words(&d.text)).collect())
        }
        async fn embed_query(&self, query: &str) -> rag_core::Result<Vec<f32>> {
            Ok(words(query))
        }
    }

    fn words(text: &str) -> Vec<f32> {
        let text = text.to_lowercase();
        ["printer", "vpn", "laptop", "badge"].iter().map(|w| text.matches(w).count() as f32 + 0.01).collect()
    }

    #[tokio::test]
    async fn rows_are_indexed_updated_and_deleted_through_the_source() {
        let data = tempfile::tempdir().unwrap();
        let (report, hits) = run(Arc::new(Words), data.path(), tickets(), "printer").await.unwrap();
        assert_eq!(report.new, ["tickets/101", "tickets/102", "tickets/103"]);
        assert_eq!(hits[0].chunk.source_path, "tickets/101");
        assert_eq!(hits[0].chunk.metadata["title"], "Printer on floor 2");

        // A row edited, a row deleted: one re-embedded, one pruned, one untouched.
        let mut rows = tickets();
        rows.retain(|t| t.id != 101);
        rows[1].body.push_str(" Also a VPN token.");
        let (report, hits) = run(Arc::new(Words), data.path(), rows, "printer").await.unwrap();
        assert_eq!(
            (report.changed, report.removed, report.unchanged),
            (vec!["tickets/103".to_string()], vec!["tickets/101".to_string()], 1)
        );
        assert!(hits.iter().all(|h| h.chunk.source_path != "tickets/101"));
    }
}
