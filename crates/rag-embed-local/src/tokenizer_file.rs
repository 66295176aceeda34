//! Reading a WordPiece `tokenizer.json` (every BERT checkpoint's) in one
//! pass. The tokenizers crate reads the model through an untagged enum,
//! which buffers the 30,000-entry vocabulary and parses it again for each
//! kind of model it tries; in a fresh `rag query` that was the longest part
//! of loading all-MiniLM-L6-v2. This reads the same fields into the same
//! types and builds the tokenizer the way the crate's own reader does
//! (`TokenizerBuilder`, then the added tokens); any other file is left to
//! the crate.

use std::path::Path;

use serde::Deserialize;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::{
    AddedToken, DecoderWrapper, ModelWrapper, NormalizerWrapper, PaddingParams, PostProcessorWrapper,
    PreTokenizerWrapper, Tokenizer, TokenizerBuilder, TokenizerImpl, TruncationParams,
};

/// The fields of a `tokenizer.json` the crate reads, with the model taken
/// to be WordPiece.
#[derive(Deserialize)]
struct TokenizerFile {
    version: Option<String>,
    truncation: Option<TruncationParams>,
    padding: Option<PaddingParams>,
    #[serde(default)]
    added_tokens: Vec<AddedTokenWithId>,
    normalizer: Option<NormalizerWrapper>,
    pre_tokenizer: Option<PreTokenizerWrapper>,
    model: WordPieceFile,
    decoder: Option<DecoderWrapper>,
    post_processor: Option<PostProcessorWrapper>,
}

/// An added token as the file lists it: its id and the token.
#[derive(Deserialize)]
struct AddedTokenWithId {
    #[allow(dead_code, reason = "the crate only warns when the id differs; so does this reader")]
    id: u32,
    #[serde(flatten)]
    token: AddedToken,
}

/// A WordPiece model, every field required (the crate's defaults differ by
/// version; a file without one is left to the crate).
#[derive(Deserialize)]
struct WordPieceFile {
    #[serde(rename = "type")]
    kind: String,
    unk_token: String,
    continuing_subword_prefix: String,
    max_input_chars_per_word: usize,
    vocab: ahash::AHashMap<String, u32>,
}

/// The tokenizer in `bytes` (a `tokenizer.json`) when it is a WordPiece one
/// this reader builds exactly as the crate would; `None` otherwise, for the
/// crate to read.
pub(crate) fn wordpiece(bytes: &[u8]) -> Option<Tokenizer> {
    let file: TokenizerFile = serde_json::from_slice(bytes).ok()?;
    if file.version.as_deref().is_some_and(|v| v != "1.0") || file.model.kind != "WordPiece" {
        return None;
    }
    let model = WordPiece::builder()
        .vocab(file.model.vocab)
        .unk_token(file.model.unk_token)
        .continuing_subword_prefix(file.model.continuing_subword_prefix)
        .max_input_chars_per_word(file.model.max_input_chars_per_word)
        .build()
        .ok()?;
    let mut tokenizer: TokenizerImpl<
        ModelWrapper,
        NormalizerWrapper,
        PreTokenizerWrapper,
        PostProcessorWrapper,
        DecoderWrapper,
    > = TokenizerBuilder::new()
        .with_model(model.into())
        .with_normalizer(file.normalizer)
        .with_pre_tokenizer(file.pre_tokenizer)
        .with_post_processor(file.post_processor)
        .with_decoder(file.decoder)
        .with_truncation(file.truncation)
        .with_padding(file.padding)
        .build()
        .ok()?;
    tokenizer.add_tokens(file.added_tokens.into_iter().map(|t| t.token)).ok()?;
    Some(tokenizer.into())
}

/// The tokenizer of the file at `path`: [`wordpiece`] when it is one, else
/// the crate's reader.
pub(crate) fn read(path: &Path) -> tokenizers::Result<Tokenizer> {
    let bytes = std::fs::read(path)?;
    match wordpiece(&bytes) {
        Some(tokenizer) => Ok(tokenizer),
        None => Tokenizer::from_bytes(&bytes),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// The two readers give the same tokenizer: the same serialised form
    /// (every component, the vocabulary and the added tokens) and the same
    /// encodings.
    fn assert_same_as_the_crates(path: &Path) {
        let bytes = std::fs::read(path).unwrap();
        let ours = wordpiece(&bytes).expect("a WordPiece tokenizer");
        let theirs = Tokenizer::from_bytes(&bytes).unwrap();
        assert_eq!(ours.to_string(false).unwrap(), theirs.to_string(false).unwrap());
        let texts = [
            "how to parse command line options",
            "Héllo WORLD, naïve café — déjà vu!",
            "中文字符 and 日本語 mixed with English",
            "[CLS] literal [SEP] tokens [MASK] [PAD] [UNK]",
            "tabs\tand\nnewlines\r\n  and   spaces",
            "emoji 🙂🚀 and control \u{0}\u{7} chars",
            &"a".repeat(150),
            "fn parse_config(path: &Path) -> Result<Config, Error> { todo!() }",
            "",
        ];
        for text in texts {
            for special in [true, false] {
                let (a, b) = (ours.encode(text, special).unwrap(), theirs.encode(text, special).unwrap());
                assert_eq!(a.get_ids(), b.get_ids(), "{text:?}");
                assert_eq!(a.get_type_ids(), b.get_type_ids(), "{text:?}");
                assert_eq!(a.get_offsets(), b.get_offsets(), "{text:?}");
                assert_eq!(a.get_attention_mask(), b.get_attention_mask(), "{text:?}");
            }
        }
    }

    #[test]
    fn the_tiny_models_tokenizer_reads_as_the_crate_reads_it() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-bert");
        assert_same_as_the_crates(&dir.join("tokenizer.json"));
    }

    #[test]
    fn all_minilm_l6_v2s_tokenizer_reads_as_the_crate_reads_it() {
        // The model scripts/test.sh fetches, as tests/minilm.rs finds it.
        let dir = std::env::var_os("RAG_MINILM_DIR").map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/minilm"),
            std::path::PathBuf::from,
        );
        let path = dir.join("tokenizer.json");
        assert!(path.exists(), "no all-MiniLM-L6-v2 at {}: run scripts/test.sh, or set RAG_MINILM_DIR", dir.display());
        assert_same_as_the_crates(&path);
    }

    #[test]
    fn files_this_reader_does_not_know_are_left_to_the_crate() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-bert");
        let text = std::fs::read_to_string(dir.join("tokenizer.json")).unwrap();
        let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
        // Another version, another model, a missing field, not JSON.
        let mut other_version = json.clone();
        other_version["version"] = "2.0".into();
        let mut other_model = json.clone();
        other_model["model"]["type"] = "WordLevel".into();
        json["model"].as_object_mut().unwrap().remove("max_input_chars_per_word");
        for file in [other_version, other_model, json] {
            assert!(wordpiece(file.to_string().as_bytes()).is_none());
        }
        assert!(wordpiece(b"{\"model\": ").is_none());
        // A file the crate reads and this reader does not (a model without
        // its type, as older files have it) is read by the crate.
        let mut untyped: serde_json::Value = serde_json::from_str(&text).unwrap();
        untyped["model"].as_object_mut().unwrap().remove("type");
        assert!(wordpiece(untyped.to_string().as_bytes()).is_none());
        let folder = tempfile::tempdir().unwrap();
        let file = folder.path().join("tokenizer.json");
        std::fs::write(&file, untyped.to_string()).unwrap();
        let read_back = read(&file).unwrap();
        let typed = wordpiece(text.as_bytes()).unwrap();
        for sample in ["hello world", "naïve [SEP] 中文"] {
            assert_eq!(
                read_back.encode(sample, true).unwrap().get_ids(),
                typed.encode(sample, true).unwrap().get_ids()
            );
        }
    }
}
