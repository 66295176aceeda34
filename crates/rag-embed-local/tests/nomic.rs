//! nomic-bert (nomic-embed-text's architecture) against an independent numpy
//! implementation: `tests/fixtures/make_tiny_nomic.py` wrote a random tiny
//! model and the vectors that implementation gives.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use rag_core::embed::{DocText, Embedder};
use rag_embed_local::{Arithmetic, LocalEmbedder};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b))
}

#[tokio::test]
async fn nomic_bert_matches_an_independent_implementation_alone_and_in_a_batch() {
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("tiny-nomic-reference.json")).unwrap()).unwrap();
    // nomic-bert runs on candle's f32 model whatever is asked for.
    let embedder = LocalEmbedder::load_with(fixtures().join("tiny-nomic"), Arithmetic::Bf16).unwrap();
    assert_eq!(embedder.arithmetic(), Arithmetic::Fp32);
    assert_eq!((embedder.dimension(), embedder.max_tokens()), (32, 40));
    let cases = reference.as_array().unwrap();
    let docs: Vec<DocText> = cases.iter().map(|c| DocText::new(None, c["text"].as_str().unwrap())).collect();
    // All at once (padded to the longest, masked) and each alone.
    let together = embedder.embed_documents(&docs).await.unwrap();
    for ((case, doc), vector) in cases.iter().zip(&docs).zip(&together) {
        let expected: Vec<f32> =
            case["vector"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
        let alone = embedder.embed_documents(std::slice::from_ref(doc)).await.unwrap();
        for got in [vector, &alone[0]] {
            let similarity = cosine(got, &expected);
            assert!(similarity > 0.99999, "{} tokens: cosine {similarity}", case["tokens"]);
            let norm = got.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-5, "normalised: {norm}");
        }
    }
    // Texts differ from each other (the check above could not pass on a constant).
    assert!(cosine(&together[0], &together[1]) < 0.99);
}

#[test]
fn nomic_variants_rag_cannot_run_are_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("model");
    std::fs::create_dir_all(&copy).unwrap();
    for name in ["config.json", "tokenizer.json", "model.safetensors"] {
        std::fs::copy(fixtures().join("tiny-nomic").join(name), copy.join(name)).unwrap();
    }
    let config = std::fs::read_to_string(copy.join("config.json")).unwrap();
    std::fs::write(copy.join("config.json"), config.replace("\"swiglu\"", "\"gelu\"")).unwrap();
    let err = LocalEmbedder::load(&copy).unwrap_err().to_string();
    assert!(err.contains("config.json") && err.contains("Ollama") && !err.contains('\n'), "{err}");
}
