//! The service's limits, checked before any request.

use rag_core::{Error, Result};

/// Most vectors in one PutVectors or DeleteVectors call.
pub const MAX_BATCH: usize = 500;
/// Largest dimension of an index.
pub const MAX_DIMENSION: usize = 4096;
/// Largest top-k of QueryVectors.
pub const MAX_TOP_K: usize = 10_000;

/// Checks a vector bucket name: 3-63 of `a-z 0-9 -`, starting and ending with
/// a letter or digit.
///
/// ```
/// assert!(rag_backend_s3vectors::validate_bucket_name("team-vectors").is_ok());
/// assert!(rag_backend_s3vectors::validate_bucket_name("Team.Vectors").is_err());
/// ```
pub fn validate_bucket_name(name: &str) -> Result<()> {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if (3..=63).contains(&name.len())
        && name.chars().all(ok_char)
        && alnum(name.chars().next())
        && alnum(name.chars().last())
    {
        Ok(())
    } else {
        Err(Error::InvalidInput(format!(
            "invalid vector bucket name {name:?}: use 3 to 63 of a-z, 0-9 and '-', starting and ending with a \
             letter or digit"
        )))
    }
}

/// Checks a vector before it is sent: its length, finite values, and (on
/// cosine) that it is not all zeros. `what` names the chunk for the message.
pub fn validate_vector(vector: &[f32], dimension: usize, cosine: bool, what: &str) -> Result<()> {
    if vector.len() != dimension {
        return Err(Error::DimensionMismatch { context: what.to_string(), expected: dimension, actual: vector.len() });
    }
    if let Some(i) = vector.iter().position(|x| !x.is_finite()) {
        return Err(Error::InvalidInput(format!("{what}: the vector has a non-finite value at position {i}")));
    }
    if cosine && vector.iter().all(|x| *x == 0.0) {
        return Err(Error::InvalidInput(format!("{what}: a cosine index refuses the all-zero vector")));
    }
    Ok(())
}
