//! How an error reads to a person: the message and its causes, with what
//! to do added where the library's error cannot say it in `rag`'s words.
//! The hints are chosen by error variant, never by message text.

/// The message and its causes, leaving out causes the message already
/// quotes, with what to do where the library's error cannot say it in the
/// CLI's words.
pub fn error_chain(err: &anyhow::Error) -> String {
    let mut text = err.to_string();
    for cause in err.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    if let Some(hint) = err.chain().find_map(|cause| cause.downcast_ref::<rag_core::Error>()).and_then(hint) {
        text.truncate(text.trim_end_matches('.').len());
        text.push_str(&hint);
    }
    text
}

/// What to do about a library error, in `rag`'s words.
fn hint(err: &rag_core::Error) -> Option<String> {
    use rag_core::Error;
    match err {
        Error::StoreNotFound { store, .. } => {
            Some(format!("; create it with `rag index PATHS --store {store}` or list stores with `rag store list`"))
        }
        // Ollama's address is its base URL; the other providers name their own endpoint and hint.
        Error::EmbedderUnreachable { endpoint, .. }
            if !endpoint.ends_with("/embeddings") && !endpoint.starts_with("Amazon Bedrock") =>
        {
            Some(
                "; point --ollama-url (or OLLAMA_HOST) at a running server, \
             or embed in this process, with no server, from a sentence-transformers model: \
             --model hf:sentence-transformers/all-MiniLM-L6-v2 (fetched once) or a folder, --model ./all-MiniLM-L6-v2"
                    .to_string(),
            )
        }
        Error::ModelMismatch { stored_model, .. } => {
            Some(format!("; use --model {stored_model}, or index into a new store"))
        }
        Error::EmptyQuery => Some("; say what to look for".to_string()),
        Error::MassRemoval { .. } => Some(
            "; if those files were deleted on purpose, run again with --allow-mass-delete, \
             or index a narrower path"
                .to_string(),
        ),
        Error::StoreBusy { .. } => Some(" (another `rag index` or `rag watch` run); wait for it to finish".to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_follow_the_variant_and_causes_are_not_repeated() {
        let missing =
            anyhow::Error::from(rag_core::Error::StoreNotFound { store: "notes".into(), backend: "local".into() });
        let text = error_chain(&missing);
        assert!(text.starts_with("store \"notes\" not found on the local backend; create it with"), "{text}");
        assert!(text.contains("--store notes"), "{text}");

        let wrapped = anyhow::Error::from(rag_core::Error::EmptyQuery).context("searching");
        assert_eq!(error_chain(&wrapped), "searching: the query is empty; say what to look for");

        let plain = anyhow::anyhow!("cannot read x");
        assert_eq!(error_chain(&plain), "cannot read x");
        let filter = anyhow::Error::from(rag_core::Error::InvalidFilter("not JSON: eof".into()));
        assert_eq!(error_chain(&filter), "invalid filter: not JSON: eof");
    }
}
