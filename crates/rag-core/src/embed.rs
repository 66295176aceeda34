//! The [`Embedder`] trait and the prompt formats embedding models expect.

use async_trait::async_trait;

use crate::error::Result;
pub use crate::model_spec::ModelSpec;
pub use crate::types::DocText;

/// Turns texts into vectors.
///
/// Implementors provide [`embed_documents`](Embedder::embed_documents) and
/// [`embed_query`](Embedder::embed_query); both apply the model's prompt format
/// themselves (see [`PromptFormat`]). Every returned vector has
/// [`dimension`](Embedder::dimension) elements, one per input, in input order.
///
/// A custom embedder takes a few lines:
///
/// ```
/// use async_trait::async_trait;
/// use rag_core::{Result, embed::{DocText, Embedder}};
///
/// /// Embeds a text as its length and its count of vowels.
/// struct Lengths;
///
/// #[async_trait]
/// impl Embedder for Lengths {
///     fn model(&self) -> &str { "lengths" }
///     fn dimension(&self) -> usize { 2 }
///     async fn embed_documents(&self, docs: &[DocText]) -> Result<Vec<Vec<f32>>> {
///         Ok(docs.iter().map(|d| features(&d.text)).collect())
///     }
///     async fn embed_query(&self, query: &str) -> Result<Vec<f32>> {
///         Ok(features(query))
///     }
/// }
///
/// fn features(text: &str) -> Vec<f32> {
///     let vowels = text.chars().filter(|c| "aeiou".contains(*c)).count();
///     vec![text.len() as f32, vowels as f32 + 1.0]
/// }
/// ```
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait Embedder: Send + Sync {
    /// Model name, recorded in every store built with this embedder.
    fn model(&self) -> &str;

    /// Length of every vector this embedder returns.
    fn dimension(&self) -> usize;

    /// How many texts to send in one call; the indexer batches to this size.
    fn max_batch_size(&self) -> usize {
        32
    }

    /// How many calls may be in flight at once.
    fn max_concurrency(&self) -> usize {
        2
    }

    /// The model's context window in tokens, when known (Ollama reports it in
    /// `/api/show`); chunk budgets follow it (see
    /// [`chunk_chars_for_window`](crate::chunk::chunk_chars_for_window)).
    fn context_tokens(&self) -> Option<usize> {
        None
    }

    /// What the service counted for this embedder's requests so far, when
    /// it reports it (paid APIs do); the CLI prints it after a run.
    fn usage(&self) -> Option<Usage> {
        None
    }

    /// Embeds document texts, one vector per input, in order.
    async fn embed_documents(&self, docs: &[DocText]) -> Result<Vec<Vec<f32>>>;

    /// Embeds a search query.
    async fn embed_query(&self, query: &str) -> Result<Vec<f32>>;
}

/// What a paid embedding service counted for an embedder's requests.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    /// Input tokens, as the service counted them (or, where it does not say,
    /// estimated at 4 characters a token).
    pub tokens: u64,
    /// Their cost in US dollars at the list price this build knows, when it
    /// knows one: an estimate, not a bill.
    pub estimated_usd: Option<f64>,
}

impl Usage {
    /// `tokens` at `usd_per_million` dollars a million tokens.
    ///
    /// ```
    /// let usage = rag_core::embed::Usage::priced(2_000_000, Some(0.02));
    /// assert_eq!(usage.estimated_usd, Some(0.04));
    /// ```
    pub fn priced(tokens: u64, usd_per_million: Option<f64>) -> Self {
        Self { tokens, estimated_usd: usd_per_million.map(|price| tokens as f64 * price / 1_000_000.0) }
    }
}

/// How a model wants documents and queries worded.
///
/// Retrieval models are trained with task prefixes; embedding a query without
/// its prefix measurably lowers the quality of the results.
///
/// ```
/// use rag_core::embed::PromptFormat;
/// let format = PromptFormat::for_model("embeddinggemma:latest");
/// assert_eq!(format.query("why"), "task: search result | query: why");
/// assert_eq!(format.document(None, "text"), "title: none | text: text");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromptFormat {
    /// Texts are sent as they are.
    Plain,
    /// embeddinggemma: `title: {title|none} | text: {text}` and
    /// `task: search result | query: {query}`.
    EmbeddingGemma,
    /// nomic-embed-text: `search_document: ` and `search_query: ` prefixes.
    Nomic,
    /// mxbai-embed-large, snowflake-arctic-embed and bge: documents plain, queries
    /// prefixed with `Represent this sentence for searching relevant passages: `.
    RepresentQuery,
    /// qwen3-embedding: documents plain, queries as an instruction.
    Qwen3,
    /// Templates of your own: `{title}` and `{text}` in the document template,
    /// `{query}` in the query template.
    Custom {
        /// Template for documents.
        document: String,
        /// Template for queries.
        query: String,
    },
}

impl PromptFormat {
    /// The documented format of a model family, from the model's name
    /// (tags such as `:latest` and namespaces are ignored; e5 models get
    /// `passage: ` and `query: `). Unknown models get [`PromptFormat::Plain`].
    pub fn for_model(model: &str) -> Self {
        let name = model.rsplit('/').next().unwrap_or(model);
        let name = name.split(':').next().unwrap_or(name).to_ascii_lowercase();
        if name.starts_with("embeddinggemma") {
            PromptFormat::EmbeddingGemma
        } else if name.starts_with("nomic-embed-text") {
            PromptFormat::Nomic
        } else if name.starts_with("mxbai-embed-large")
            || name.starts_with("snowflake-arctic-embed")
            || name.starts_with("bge-")
        {
            PromptFormat::RepresentQuery
        } else if name.starts_with("e5-") || name.starts_with("multilingual-e5") {
            PromptFormat::Custom { document: "passage: {text}".into(), query: "query: {query}".into() }
        } else if name.starts_with("qwen3-embedding") {
            PromptFormat::Qwen3
        } else {
            PromptFormat::Plain
        }
    }

    /// The text to embed for a document.
    pub fn document(&self, title: Option<&str>, text: &str) -> String {
        match self {
            PromptFormat::Plain | PromptFormat::RepresentQuery | PromptFormat::Qwen3 => text.to_string(),
            PromptFormat::EmbeddingGemma => {
                format!("title: {} | text: {text}", title.unwrap_or("none"))
            }
            PromptFormat::Nomic => format!("search_document: {text}"),
            PromptFormat::Custom { document, .. } => {
                document.replace("{title}", title.unwrap_or("none")).replace("{text}", text)
            }
        }
    }

    /// The text to embed for a query.
    pub fn query(&self, query: &str) -> String {
        match self {
            PromptFormat::Plain => query.to_string(),
            PromptFormat::EmbeddingGemma => format!("task: search result | query: {query}"),
            PromptFormat::Nomic => format!("search_query: {query}"),
            PromptFormat::RepresentQuery => {
                format!("Represent this sentence for searching relevant passages: {query}")
            }
            PromptFormat::Qwen3 => format!(
                "Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery:{query}"
            ),
            PromptFormat::Custom { query: template, .. } => template.replace("{query}", query),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_families_get_their_documented_prefixes() {
        assert_eq!(PromptFormat::for_model("nomic-embed-text:v1.5"), PromptFormat::Nomic);
        assert_eq!(PromptFormat::for_model("mxbai-embed-large"), PromptFormat::RepresentQuery);
        assert_eq!(PromptFormat::for_model("snowflake-arctic-embed:335m"), PromptFormat::RepresentQuery);
        assert_eq!(PromptFormat::for_model("qwen3-embedding:0.6b"), PromptFormat::Qwen3);
        assert_eq!(PromptFormat::for_model("all-minilm"), PromptFormat::Plain);
        assert_eq!(PromptFormat::for_model("/models/bge-small-en-v1.5"), PromptFormat::RepresentQuery);
        let e5 = PromptFormat::for_model("/models/e5-small-v2");
        assert_eq!((e5.document(None, "body").as_str(), e5.query("q").as_str()), ("passage: body", "query: q"));
        assert_eq!(PromptFormat::for_model("all-MiniLM-L6-v2"), PromptFormat::Plain);
        assert_eq!(PromptFormat::Nomic.document(Some("x"), "body"), "search_document: body");
        assert_eq!(PromptFormat::EmbeddingGemma.document(Some("README"), "body"), "title: README | text: body");
    }

    #[test]
    fn custom_templates_fill_every_placeholder() {
        let format = PromptFormat::Custom { document: "[{title}] {text}".into(), query: "Q: {query}".into() };
        assert_eq!(format.document(Some("t"), "b"), "[t] b");
        assert_eq!(format.query("q"), "Q: q");
    }
}
