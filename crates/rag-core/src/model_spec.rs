//! [`ModelSpec`]: `PROVIDER:MODEL[?dimensions=N]`, the names a store records
//! for models served by a provider crate (`openai:`, `bedrock:`).

use std::fmt;

use crate::Error;

/// A model of a provider, as a store records it: the provider's prefix, the
/// model as the provider names it, and the `dimensions` asked for, if any
/// (one model's vectors at two lengths cannot be mixed, so the length is
/// part of the name).
///
/// ```
/// use rag_core::embed::ModelSpec;
/// let spec = ModelSpec::parse("openai:text-embedding-3-small?dimensions=512", "openai").unwrap().unwrap();
/// assert_eq!((spec.model.as_str(), spec.dimensions), ("text-embedding-3-small", Some(512)));
/// assert_eq!(spec.to_string(), "openai:text-embedding-3-small?dimensions=512");
/// // Model ids may hold colons.
/// let spec = ModelSpec::parse("bedrock:amazon.titan-embed-text-v2:0", "bedrock").unwrap().unwrap();
/// assert_eq!(spec.model, "amazon.titan-embed-text-v2:0");
/// assert!(ModelSpec::parse("nomic-embed-text", "openai").unwrap().is_none());
/// assert!(ModelSpec::parse("openai:m?dims=3", "openai").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSpec {
    /// The provider's prefix, without the colon (`openai`).
    pub provider: String,
    /// The model as the provider names it.
    pub model: String,
    /// Vector length to ask for.
    pub dimensions: Option<usize>,
}

impl ModelSpec {
    /// A spec of `provider` for `model`.
    pub fn new(provider: &str, model: impl Into<String>, dimensions: Option<usize>) -> Self {
        Self { provider: provider.to_string(), model: model.into(), dimensions }
    }

    /// `name` read as a model of `provider`: `None` when it does not start
    /// with `provider:`, an error when it does but is malformed.
    pub fn parse(name: &str, provider: &str) -> Result<Option<Self>, Error> {
        let Some(rest) = name.strip_prefix(provider).and_then(|r| r.strip_prefix(':')) else {
            return Ok(None);
        };
        let invalid = |why: &str| {
            Error::InvalidInput(format!(
                "model {name:?}: {why}; write {provider}:MODEL or {provider}:MODEL?dimensions=N"
            ))
        };
        let (model, dimensions) = match rest.split_once('?') {
            None => (rest, None),
            Some((model, query)) => {
                let n = query.strip_prefix("dimensions=").ok_or_else(|| invalid("the only option is dimensions"))?;
                let n: usize =
                    n.parse().ok().filter(|n| *n > 0).ok_or_else(|| invalid("dimensions is not a positive number"))?;
                (model, Some(n))
            }
        };
        if model.trim().is_empty() {
            return Err(invalid("no model name"));
        }
        Ok(Some(Self::new(provider, model, dimensions)))
    }
}

impl fmt::Display for ModelSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.provider, self.model)?;
        if let Some(n) = self.dimensions {
            write!(f, "?dimensions={n}")?;
        }
        Ok(())
    }
}
