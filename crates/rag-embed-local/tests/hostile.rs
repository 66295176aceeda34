//! Model folders are untrusted bytes (anything on the Hub, anything on disk):
//! mutated copies of the test models must load with an error or embed, and
//! never panic or abort. A bounded, seeded loop; a failure prints the seed
//! and mutation to replay.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use rag_core::embed::{DocText, Embedder};
use rag_embed_local::LocalEmbedder;
use rag_testkit::fuzz::Rng;

/// Rounds per seed; `RAG_FUZZ_ROUNDS` asks for a longer run.
fn rounds() -> u64 {
    rag_testkit::fuzz::rounds(150)
}

fn copy_model(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.join("1_Pooling")).unwrap();
    for entry in walk(from) {
        let relative = entry.strip_prefix(from).unwrap();
        std::fs::copy(&entry, to.join(relative)).unwrap();
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        if entry.path().is_dir() {
            files.extend(walk(&entry.path()));
        } else {
            files.push(entry.path());
        }
    }
    files
}

/// One mutation of the folder at `dir`, described for the failure message.
fn mutate(dir: &Path, rng: &mut Rng) -> String {
    match rng.below(5) {
        0 | 1 => {
            // Bytes of the weights, mostly in the safetensors header.
            let path = dir.join("model.safetensors");
            let mut bytes = std::fs::read(&path).unwrap();
            let header = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize + 8;
            let mut changed = Vec::new();
            for _ in 0..1 + rng.below(4) {
                let at = if rng.below(4) == 0 { rng.below(bytes.len()) } else { rng.below(header.min(bytes.len())) };
                bytes[at] = rng.next() as u8;
                changed.push(at);
            }
            std::fs::write(&path, bytes).unwrap();
            format!("model.safetensors bytes {changed:?}")
        }
        2 => {
            let path = dir.join("model.safetensors");
            let bytes = std::fs::read(&path).unwrap();
            let keep = rng.below(bytes.len());
            std::fs::write(&path, &bytes[..keep]).unwrap();
            format!("model.safetensors cut at {keep}")
        }
        3 => {
            // A number of config.json replaced by an awkward one, or removed.
            let path = dir.join("config.json");
            let mut config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let object = config.as_object_mut().unwrap();
            let keys: Vec<String> = object.iter().filter(|(_, v)| v.is_number()).map(|(k, _)| k.clone()).collect();
            let key = keys[rng.below(keys.len())].clone();
            let values = [
                serde_json::json!(0),
                serde_json::json!(1),
                serde_json::json!(3),
                serde_json::json!(-1),
                serde_json::json!(1u64 << 40),
                serde_json::json!(1e300),
                serde_json::Value::Null,
            ];
            let value = values[rng.below(values.len())].clone();
            let description = format!("config.json {key} = {value}");
            if value.is_null() {
                object.remove(&key);
            } else {
                object.insert(key, value);
            }
            std::fs::write(&path, config.to_string()).unwrap();
            description
        }
        _ => {
            let file =
                ["tokenizer.json", "sentence_bert_config.json", "1_Pooling/config.json", "modules.json"][rng.below(4)];
            let path = dir.join(file);
            let mut bytes = std::fs::read(&path).unwrap();
            let at = rng.below(bytes.len());
            let replacements = b"{}[]\",:0-9eE\x00\xff";
            bytes[at] = replacements[rng.below(replacements.len())];
            std::fs::write(&path, bytes).unwrap();
            format!("{file} byte {at}")
        }
    }
}

#[tokio::test]
async fn mutated_model_folders_fail_cleanly_or_embed() {
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let long = DocText::new(None, "the apple tree flowers in spring ".repeat(20));
    let short = DocText::new(None, "bread");
    let (mut loaded, mut refused) = (0, 0);
    for model in ["tiny-bert", "tiny-nomic"] {
        for round in 0..rounds() {
            let seed = round * 2 + 1 + if model == "tiny-nomic" { 1 << 32 } else { 0 };
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
            let dir = tempfile::tempdir().unwrap();
            copy_model(&fixtures.join(model), dir.path());
            let what = mutate(dir.path(), &mut rng);
            if std::env::var_os("RAG_FUZZ_VERBOSE").is_some() {
                eprintln!("{model}, seed {seed}: {what}");
            }
            let outcome = std::panic::catch_unwind(|| LocalEmbedder::load(dir.path()));
            let Ok(result) = outcome else { panic!("{model}, seed {seed}, {what}: load panicked") };
            match result {
                Ok(embedder) => {
                    loaded += 1;
                    // Embedding may fail (NaN weights are fine), but must not panic.
                    let _ = embedder.embed_documents(&[short.clone(), long.clone()]).await;
                    let _ = embedder.embed_query("bread").await;
                }
                Err(err) => {
                    refused += 1;
                    let text = err.to_string();
                    assert!(!text.contains('\n') && text.contains(dir.path().to_str().unwrap()), "{what}: {text}");
                }
            }
        }
    }
    assert!(loaded > 10 && refused > 10, "the mutations reach both outcomes: {loaded} loaded, {refused} refused");
}
