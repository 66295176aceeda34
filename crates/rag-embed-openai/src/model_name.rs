//! The `openai:MODEL[?dimensions=N]` names a store records.

use std::fmt;

/// What marks a model name as one for an OpenAI-compatible server.
pub const PREFIX: &str = "openai:";

/// A model on an OpenAI-compatible server, as a store records it: the name
/// the server knows and the `dimensions` asked for, if any (the vectors of
/// one model at two lengths cannot be mixed).
///
/// ```
/// use rag_embed_openai::ModelName;
/// let name: ModelName = "openai:text-embedding-3-small?dimensions=512".parse().unwrap();
/// assert_eq!((name.model.as_str(), name.dimensions), ("text-embedding-3-small", Some(512)));
/// assert_eq!(name.to_string(), "openai:text-embedding-3-small?dimensions=512");
/// assert!("nomic-embed-text".parse::<ModelName>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelName {
    /// The model as the server names it.
    pub model: String,
    /// `dimensions` to ask for.
    pub dimensions: Option<usize>,
}

impl ModelName {
    /// Whether `name` is meant for an OpenAI-compatible server.
    pub fn is_openai(name: &str) -> bool {
        name.starts_with(PREFIX)
    }
}

impl std::str::FromStr for ModelName {
    type Err = rag_core::Error;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        let invalid = |why: &str| {
            rag_core::Error::InvalidInput(format!(
                "model {name:?}: {why}; write openai:MODEL or openai:MODEL?dimensions=N"
            ))
        };
        let rest = name.strip_prefix(PREFIX).ok_or_else(|| invalid("it does not start with openai:"))?;
        let (model, dimensions) = match rest.split_once('?') {
            None => (rest, None),
            Some((model, query)) => {
                let n = query.strip_prefix("dimensions=").ok_or_else(|| invalid("the only option is dimensions"))?;
                let n: usize =
                    n.parse().ok().filter(|n| *n > 0).ok_or_else(|| invalid("dimensions is not a number"))?;
                (model, Some(n))
            }
        };
        if model.trim().is_empty() {
            return Err(invalid("no model name"));
        }
        Ok(ModelName { model: model.to_string(), dimensions })
    }
}

impl fmt::Display for ModelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}", self.model)?;
        if let Some(n) = self.dimensions {
            write!(f, "?dimensions={n}")?;
        }
        Ok(())
    }
}
