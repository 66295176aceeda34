//! Embedding a batch of chunks so that one bad chunk fails alone, and a
//! chunk too long for the model is embedded in parts.

use crate::embed::Embedder;
use crate::error::{Error, Result};
use crate::types::{Chunk, DocText};

/// The text embedded for a chunk: its heading path first (a markdown
/// section's headings), so a short chunk keeps its context. A code chunk (one
/// with `symbols` or a `signature`) starts with its file's path and the
/// definitions that hold it (`src/ledger.py Ledger > weighted_total`), then
/// the `signature` of the definition it is a later part of.
pub(super) fn embedding_text(chunk: &Chunk, with_headings: bool) -> String {
    let field = |key: &str| chunk.metadata.get(key).and_then(|h| h.as_str()).filter(|h| !h.is_empty());
    if !with_headings {
        return chunk.text.clone();
    }
    let code = chunk.metadata.contains_key("symbols") || chunk.metadata.contains_key("signature");
    let mut context = String::new();
    if code {
        context.push_str(&chunk.source_path);
    }
    if let Some(path) = field("headings") {
        if !context.is_empty() {
            context.push(' ');
        }
        context.push_str(path);
    }
    if let Some(signature) = field("signature") {
        if !context.is_empty() {
            context.push('\n');
        }
        context.push_str(signature);
    }
    if context.is_empty() { chunk.text.clone() } else { format!("{context}\n\n{}", chunk.text) }
}

/// Embeds a batch; when the batch fails for a reason that is not fatal, embeds
/// its texts one by one so one bad text fails only its own file.
pub(super) async fn embed_isolating(embedder: &dyn Embedder, docs: &[DocText]) -> Result<Vec<Result<Vec<f32>>>> {
    match embed_checked(embedder, docs).await {
        Ok(vectors) => Ok(vectors.into_iter().map(Ok).collect()),
        Err(err) if err.is_fatal() => Err(err),
        Err(Error::ContextLength { .. }) if docs.len() == 1 => Ok(vec![embed_in_parts(embedder, &docs[0]).await]),
        Err(err) if docs.len() == 1 => Ok(vec![Err(err)]),
        Err(_) => {
            let mut out = Vec::with_capacity(docs.len());
            for doc in docs {
                match embed_checked(embedder, std::slice::from_ref(doc)).await {
                    Ok(mut vectors) => out.push(Ok(vectors.remove(0))),
                    Err(err) if err.is_fatal() => return Err(err),
                    Err(Error::ContextLength { .. }) => out.push(embed_in_parts(embedder, doc).await),
                    Err(err) => out.push(Err(err)),
                }
            }
            Ok(out)
        }
    }
}

/// Embeds a text the model refused as too long: halves it at a line or word
/// break until every part fits, and returns the parts' vectors averaged
/// (weighted by length, normalised), so no text is cut and no file fails.
pub(super) async fn embed_in_parts(embedder: &dyn Embedder, doc: &DocText) -> Result<Vec<f32>> {
    let mut pending = vec![doc.text.clone()];
    let mut sum: Vec<f32> = Vec::new();
    let mut parts = 0usize;
    while let Some(part) = pending.pop() {
        match embed_checked(embedder, &[DocText::new(doc.title.clone(), part.clone())]).await {
            Ok(mut vectors) => {
                let vector = vectors.remove(0);
                let weight = part.chars().count() as f32;
                if sum.is_empty() {
                    sum = vec![0.0; vector.len()];
                }
                for (total, x) in sum.iter_mut().zip(&vector) {
                    *total += weight * x;
                }
                parts += 1;
            }
            Err(Error::ContextLength { .. }) if part.chars().count() > 32 => {
                let (first, second) = halve(&part);
                pending.push(second.to_string());
                pending.push(first.to_string());
            }
            Err(err) => return Err(err),
        }
    }
    let norm = sum.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        sum.iter_mut().for_each(|x| *x /= norm);
    }
    tracing::debug!(parts, chars = doc.text.len(), "embedded a text too long for the model in parts");
    Ok(sum)
}

/// Cuts a text in two near its middle: at a line break if one is near, else
/// at whitespace, else at a character boundary.
pub(super) fn halve(text: &str) -> (&str, &str) {
    let mut middle = text.len() / 2;
    while !text.is_char_boundary(middle) {
        middle += 1;
    }
    let window = text.len() / 4;
    let near = |pattern: char| {
        let before = text[..middle].rfind(pattern).filter(|&i| middle - i <= window && i > 0);
        let after = text[middle..].find(pattern).map(|i| middle + i).filter(|&i| i - middle <= window);
        before.or(after).map(|i| i + pattern.len_utf8())
    };
    let mut cut = near('\n').or_else(|| near(' ')).filter(|&c| c > 0 && c < text.len()).unwrap_or(middle);
    while !text.is_char_boundary(cut) {
        cut += 1;
    }
    text.split_at(cut.min(text.len()))
}

pub(super) async fn embed_checked(embedder: &dyn Embedder, docs: &[DocText]) -> Result<Vec<Vec<f32>>> {
    let vectors = embedder.embed_documents(docs).await?;
    if vectors.len() != docs.len() {
        return Err(Error::Embedder {
            message: format!("asked for {} embeddings, got {}", docs.len(), vectors.len()),
            source: None,
        });
    }
    Ok(vectors)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(language: &str, text: &str, metadata: &[(&str, serde_json::Value)]) -> Chunk {
        let mut chunk = Chunk::new("src/ledger.py", 0, text);
        chunk.language = language.into();
        chunk.metadata = metadata.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        chunk
    }

    #[test]
    fn markdown_embeds_its_heading_path_and_code_its_place_and_signature() {
        let section = chunk("markdown", "Run the script.", &[("headings", "Install > Linux".into())]);
        assert_eq!(embedding_text(&section, true), "Install > Linux\n\nRun the script.");
        assert_eq!(embedding_text(&section, false), "Run the script.");
        let part = chunk(
            "python",
            "total += 1",
            &[
                ("symbols", vec!["Ledger", "weighted_total"].into()),
                ("headings", "Ledger > weighted_total".into()),
                ("signature", "def weighted_total(self, weight):".into()),
            ],
        );
        assert_eq!(
            embedding_text(&part, true),
            "src/ledger.py Ledger > weighted_total\ndef weighted_total(self, weight):\n\ntotal += 1"
        );
        // Module-level code with definitions but no enclosing one: its path.
        let module = chunk("python", "import os", &[("symbols", vec!["main"].into())]);
        assert_eq!(embedding_text(&module, true), "src/ledger.py\n\nimport os");
        // Plain text: nothing added.
        assert_eq!(embedding_text(&chunk("text", "hello", &[]), true), "hello");
    }
}
