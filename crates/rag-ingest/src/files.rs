//! Files on disk as a [`Source`].

use std::sync::Arc;

use rag_core::source::{Document, Source, SourceError, SourceItem};

use crate::discover::{Discovery, UnseenFolder};
use crate::extract::{DocumentConverter, ExtractError, InProcess, extract_with};
use crate::secrets::{SecretExceptions, secret_content_rule, secret_file_rule};

/// The files a [`discover`](crate::discover) walk found, as a [`Source`]:
/// each read from disk, decoded by [`extract_with`] (documents converted by
/// its [`DocumentConverter`]), and the stored files under the walk's
/// patterns that it no longer finds are pruned.
#[derive(Clone)]
pub struct FileSource {
    discovery: Discovery,
    converter: Arc<dyn DocumentConverter>,
    /// Stored names the secret rules do not apply to, asked for by name.
    secrets_allowed: SecretExceptions,
}

impl std::fmt::Debug for FileSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSource").field("files", &self.discovery.files.len()).finish_non_exhaustive()
    }
}

impl FileSource {
    /// The files of `discovery`, documents converted in this process.
    pub fn new(discovery: Discovery) -> Self {
        Self { discovery, converter: Arc::new(InProcess), secrets_allowed: SecretExceptions::default() }
    }

    /// The same files, with the secret rules lifted from the stored names
    /// `exceptions` covers (`rag index --allow-secrets GLOB`). Every other
    /// file is still checked.
    pub fn with_secret_exceptions(mut self, exceptions: SecretExceptions) -> Self {
        self.secrets_allowed = exceptions;
        self
    }

    /// The same files with documents (PDF, Office, OpenDocument, EPUB,
    /// spreadsheets) and HTML pages over 256 KiB converted by `converter`: a program that
    /// reads untrusted files runs them where a crash or a runaway can be
    /// contained (`rag` uses a child process with time and memory limits).
    pub fn with_converter(mut self, converter: Arc<dyn DocumentConverter>) -> Self {
        self.converter = converter;
        self
    }

    /// The walk these files came from.
    pub fn discovery(&self) -> &Discovery {
        &self.discovery
    }

    fn file(&self, item: &SourceItem) -> Result<&std::path::Path, SourceError> {
        let files = &self.discovery.files;
        // Files are sorted by stored name.
        match files.binary_search_by(|f| f.rel.as_str().cmp(&item.path)) {
            Ok(i) => Ok(&files[i].path),
            Err(_) => files
                .iter()
                .find(|f| f.rel == item.path)
                .map(|f| f.path.as_path())
                .ok_or_else(|| SourceError::Read("not among the files found".into())),
        }
    }
}

impl Source for FileSource {
    fn items(&self) -> Vec<SourceItem> {
        self.discovery.files.iter().map(|f| SourceItem::new(f.rel.clone())).collect()
    }

    fn covers(&self, path: &str) -> bool {
        self.discovery.scope.contains(path)
    }

    fn keeps(&self, path: &str) -> Option<String> {
        self.discovery.scope.unseen(path).map(UnseenFolder::reason)
    }

    fn read(&self, item: &SourceItem, max_bytes: u64) -> Result<Vec<u8>, SourceError> {
        // A file named like credentials is not even read.
        if let Some(rule) = secret_file_rule(&item.path).filter(|_| !self.secrets_allowed.covers(&item.path)) {
            return Err(SourceError::Secret(format!("looks like {rule}; files that hold credentials are not indexed")));
        }
        let path = self.file(item)?;
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        if size > max_bytes {
            return Err(SourceError::TooLarge { size, limit: max_bytes });
        }
        std::fs::read(path).map_err(|err| SourceError::Read(err.to_string()))
    }

    fn decode(&self, item: &SourceItem, bytes: &[u8]) -> Result<Document, SourceError> {
        match extract_with(self.file(item)?, bytes, self.converter.as_ref()) {
            // What a document says, not only its name, keeps it out.
            Ok(document) if self.secrets_allowed.covers(&item.path) => Ok(document),
            Ok(document) => match secret_content_rule(document.text.as_bytes()) {
                Some(rule) => {
                    Err(SourceError::Secret(format!("holds {rule}; files that hold credentials are not indexed")))
                }
                None => Ok(document),
            },
            Err(err @ ExtractError::Binary) => Err(SourceError::Skip(err.to_string())),
            // Not the file's fault: read again next run.
            Err(err @ ExtractError::Interrupted(_)) => Err(SourceError::Read(err.to_string())),
            Err(err) => Err(SourceError::Unreadable(err.to_string())),
        }
    }

    fn reader(&self) -> &str {
        concat!("rag-ingest ", env!("CARGO_PKG_VERSION"))
    }
}
