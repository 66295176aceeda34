//! The request and response bodies of each model family on Bedrock's
//! InvokeModel, and what each family takes.

use serde_json::{Value, json};

/// A Bedrock embedding model family, from its model id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Amazon Titan Text Embeddings V2 (`amazon.titan-embed-text-v2:0`): one
    /// text a call, 8,192 tokens or 50,000 characters, `dimensions` 256, 512
    /// or 1,024 (the default), `normalize`.
    TitanV2,
    /// Cohere Embed v3 (`cohere.embed-english-v3`,
    /// `cohere.embed-multilingual-v3`): up to 96 texts a call of at most
    /// 2,048 characters (512 tokens), 1,024 dimensions, `input_type`.
    CohereV3,
    /// Cohere Embed v4 (`cohere.embed-v4:0`): up to 96 texts a call, 128k
    /// tokens, `output_dimension` 256, 512, 1,024 or 1,536 (the default).
    CohereV4,
}

/// Whether a text is stored or asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A chunk to store.
    Document,
    /// A query.
    Query,
}

impl Family {
    /// The family of `model_id` (a cross-region inference profile such as
    /// `us.cohere.embed-v4:0` included), or `None` for a model rag cannot embed with.
    pub fn of(model_id: &str) -> Option<Self> {
        let id = model_id.rsplit('/').next().unwrap_or(model_id);
        let id = id
            .strip_prefix("us.")
            .or_else(|| id.strip_prefix("eu."))
            .or_else(|| id.strip_prefix("apac."))
            .unwrap_or(id);
        if id.starts_with("amazon.titan-embed-text-v2") {
            Some(Family::TitanV2)
        } else if id.starts_with("cohere.embed-english-v3") || id.starts_with("cohere.embed-multilingual-v3") {
            Some(Family::CohereV3)
        } else if id.starts_with("cohere.embed-v4") {
            Some(Family::CohereV4)
        } else {
            None
        }
    }

    /// Texts one call takes.
    pub fn texts_per_call(self) -> usize {
        match self {
            Family::TitanV2 => 1,
            Family::CohereV3 | Family::CohereV4 => 96,
        }
    }

    /// The model's window in tokens.
    pub fn context_tokens(self) -> usize {
        match self {
            Family::TitanV2 => 8_192,
            Family::CohereV3 => 512,
            Family::CohereV4 => 128_000,
        }
    }

    /// Longest text, in characters, the service takes.
    pub fn max_chars(self) -> usize {
        match self {
            Family::TitanV2 => 50_000,
            Family::CohereV3 => 2_048,
            Family::CohereV4 => 500_000,
        }
    }

    /// Vector lengths the model offers, the default first.
    pub fn dimensions(self) -> &'static [usize] {
        match self {
            Family::TitanV2 => &[1_024, 512, 256],
            Family::CohereV3 => &[1_024],
            Family::CohereV4 => &[1_536, 1_024, 512, 256],
        }
    }

    /// List price in dollars a million input tokens (on-demand, us-east-1,
    /// when this was written).
    pub fn usd_per_million_tokens(self) -> f64 {
        match self {
            Family::TitanV2 => 0.02,
            Family::CohereV3 => 0.10,
            Family::CohereV4 => 0.12,
        }
    }

    /// The InvokeModel body for `texts`.
    pub fn request(self, texts: &[String], purpose: Purpose, dimensions: Option<usize>) -> Value {
        let input_type = match purpose {
            Purpose::Document => "search_document",
            Purpose::Query => "search_query",
        };
        match self {
            Family::TitanV2 => {
                let mut body = json!({ "inputText": texts.first().cloned().unwrap_or_default(), "normalize": true });
                if let Some(n) = dimensions {
                    body["dimensions"] = json!(n);
                }
                body
            }
            Family::CohereV3 => json!({ "texts": texts, "input_type": input_type, "truncate": "NONE" }),
            Family::CohereV4 => {
                let mut body = json!({
                    "texts": texts,
                    "input_type": input_type,
                    "embedding_types": ["float"],
                    "truncate": "NONE",
                });
                if let Some(n) = dimensions {
                    body["output_dimension"] = json!(n);
                }
                body
            }
        }
    }

    /// The vectors of an answer, and the tokens it counted when it says.
    pub fn response(self, body: &Value) -> Result<(Vec<Vec<f32>>, Option<u64>), String> {
        let vectors = |value: &Value| -> Result<Vec<Vec<f32>>, String> {
            let rows = value.as_array().ok_or("`embeddings` is not a list")?;
            rows.iter()
                .map(|row| {
                    let row = row.as_array().ok_or("an embedding is not a list")?;
                    row.iter()
                        .map(|x| {
                            x.as_f64().map(|x| x as f32).ok_or_else(|| "an embedding holds a non-number".to_string())
                        })
                        .collect()
                })
                .collect()
        };
        match self {
            Family::TitanV2 => {
                let vector = vectors(&json!([body["embedding"].clone()]))?;
                Ok((vector, body["inputTextTokenCount"].as_u64()))
            }
            Family::CohereV3 => Ok((vectors(&body["embeddings"])?, None)),
            Family::CohereV4 => Ok((vectors(&body["embeddings"]["float"])?, None)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_follow_the_model_id_and_inference_profiles() {
        assert_eq!(Family::of("amazon.titan-embed-text-v2:0"), Some(Family::TitanV2));
        assert_eq!(Family::of("cohere.embed-english-v3"), Some(Family::CohereV3));
        assert_eq!(Family::of("cohere.embed-multilingual-v3"), Some(Family::CohereV3));
        assert_eq!(Family::of("us.cohere.embed-v4:0"), Some(Family::CohereV4));
        assert_eq!(Family::of("amazon.titan-embed-text-v1"), None);
        assert_eq!(Family::of("anthropic.claude-3-haiku"), None);
    }

    #[test]
    fn bodies_are_what_each_family_documents() {
        let texts = vec!["a".to_string(), "b".to_string()];
        let titan = Family::TitanV2.request(&texts[..1], Purpose::Document, Some(256));
        assert_eq!(titan, json!({ "inputText": "a", "normalize": true, "dimensions": 256 }));
        let v3 = Family::CohereV3.request(&texts, Purpose::Query, None);
        assert_eq!(v3, json!({ "texts": ["a", "b"], "input_type": "search_query", "truncate": "NONE" }));
        let v4 = Family::CohereV4.request(&texts, Purpose::Document, Some(512));
        assert_eq!(v4["output_dimension"], 512);
        assert_eq!(v4["embedding_types"], json!(["float"]));
        let (vectors, tokens) =
            Family::CohereV4.response(&json!({ "embeddings": { "float": [[1.0, 2.0]] }, "id": "x" })).unwrap();
        assert_eq!((vectors, tokens), (vec![vec![1.0, 2.0]], None));
        let (vectors, tokens) =
            Family::TitanV2.response(&json!({ "embedding": [0.5], "inputTextTokenCount": 3 })).unwrap();
        assert_eq!((vectors, tokens), (vec![vec![0.5]], Some(3)));
        assert!(Family::CohereV3.response(&json!({ "embeddings": [[1.0, null]] })).is_err());
    }
}
