//! Models named `hf:ORG/NAME[@REVISION]`: fetched once from the Hugging Face
//! Hub into its usual cache (`$HF_HOME/hub`, `~/.cache/huggingface/hub` by
//! default, laid out as the `hf-hub` crate and the Hub's own tools expect),
//! then used from there with no network. The fetching is this crate's own
//! ([`hub_fetch`](crate::hub_fetch)), so no header a server sends can name
//! a path outside the cache.

use std::path::{Path, PathBuf};

use hf_hub::{Cache, Repo, RepoType};

use crate::LoadError;
use crate::hub_fetch::{FetchError, Fetcher};

/// Files a model folder may hold besides the three it needs. They are
/// fetched first and `model.safetensors` last, so a cached
/// `model.safetensors` means the rest were fetched too (or do not exist).
const OPTIONAL_FILES: [&str; 4] =
    ["modules.json", "sentence_bert_config.json", "1_Pooling/config.json", "config_sentence_transformers.json"];
/// Needed besides `model.safetensors`, which comes last.
const REQUIRED_FILES: [&str; 2] = ["config.json", "tokenizer.json"];

/// A model on the Hugging Face Hub, as `hf:ORG/NAME[@REVISION]` names it.
///
/// ```
/// use rag_embed_local::HubModel;
/// let model = HubModel::parse("hf:sentence-transformers/all-MiniLM-L6-v2@main").unwrap();
/// assert_eq!(model.repo(), "sentence-transformers/all-MiniLM-L6-v2");
/// assert_eq!(model.name(), "hf:sentence-transformers/all-MiniLM-L6-v2");
/// assert!(HubModel::parse("all-minilm").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubModel {
    repo: String,
    revision: String,
}

/// Where and how [`HubModel::fetch`] fetches.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HubOptions {
    /// The Hub's address (`HF_ENDPOINT`, else `https://huggingface.co`).
    pub endpoint: String,
    /// The cache folder (`$HF_HOME/hub`, else `~/.cache/huggingface/hub`).
    pub cache: PathBuf,
    /// An access token for gated or private models (`HF_TOKEN`, else the
    /// file `token` beside the cache that `huggingface-cli login` writes).
    pub token: Option<String>,
    /// Use the cache only (`HF_HUB_OFFLINE=1`).
    pub offline: bool,
    /// Draw a progress bar on stderr while downloading.
    pub progress: bool,
}

impl HubOptions {
    /// The options the environment gives, as the Hub's own tools read it.
    pub fn from_env() -> Self {
        let cache = Cache::from_env();
        let token = std::env::var("HF_TOKEN").ok().filter(|t| !t.trim().is_empty()).or_else(|| cache.token());
        let offline = std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| matches!(v.trim(), "1" | "true" | "TRUE" | "yes"));
        Self {
            endpoint: std::env::var("HF_ENDPOINT")
                .ok()
                .filter(|e| !e.trim().is_empty())
                .unwrap_or_else(|| "https://huggingface.co".to_string()),
            cache: cache.path().clone(),
            token,
            offline,
            progress: false,
        }
    }

    /// The same options with `endpoint` and `cache` in place of the environment's.
    pub fn new(endpoint: impl Into<String>, cache: impl Into<PathBuf>) -> Self {
        Self { endpoint: endpoint.into(), cache: cache.into(), token: None, offline: false, progress: false }
    }
}

fn valid_part(part: &str) -> bool {
    !part.is_empty()
        && part != "."
        && part != ".."
        && part.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl HubModel {
    /// Parses `hf:ORG/NAME[@REVISION]` (a trailing `#fingerprint`, as stores
    /// record it, is ignored). Anything else is an error saying what is expected.
    pub fn parse(name: &str) -> Result<Self, LoadError> {
        let bad = |why: &str| LoadError::Name { name: name.to_string(), reason: why.to_string() };
        let spec = name.split_once('#').map_or(name, |(spec, _)| spec);
        let spec = spec.strip_prefix("hf:").ok_or_else(|| bad("a Hub model is named hf:ORG/NAME[@REVISION]"))?;
        let (repo, revision) = match spec.split_once('@') {
            Some((repo, revision)) => (repo, revision),
            None => (spec, "main"),
        };
        let parts: Vec<&str> = repo.split('/').collect();
        if parts.len() > 2 || !parts.iter().all(|p| valid_part(p)) {
            return Err(bad("expected hf:ORG/NAME[@REVISION], with letters, digits, '-', '_' and '.' in ORG and NAME"));
        }
        if revision.is_empty()
            || revision.split('/').any(|p| !valid_part(p))
            || revision.chars().any(|c| c.is_whitespace())
        {
            return Err(bad("the revision after '@' must be a branch, tag or commit"));
        }
        Ok(Self { repo: repo.to_string(), revision: revision.to_string() })
    }

    /// `ORG/NAME`.
    pub fn repo(&self) -> &str {
        &self.repo
    }

    /// The branch, tag or commit (`main` unless one was given).
    pub fn revision(&self) -> &str {
        &self.revision
    }

    /// The name as stores record it: `hf:ORG/NAME`, with `@REVISION` unless it is `main`.
    pub fn name(&self) -> String {
        if self.revision == "main" {
            format!("hf:{}", self.repo)
        } else {
            format!("hf:{}@{}", self.repo, self.revision)
        }
    }

    fn hf_repo(&self) -> Repo {
        Repo::with_revision(self.repo.clone(), RepoType::Model, self.revision.clone())
    }

    /// The folder of this model in the cache, when it has been fetched whole.
    pub fn cached(&self, cache: &Path) -> Option<PathBuf> {
        let weights = Cache::new(cache.to_path_buf()).repo(self.hf_repo()).get("model.safetensors")?;
        weights.parent().map(Path::to_path_buf)
    }

    /// The model's folder in the cache, fetched first if it is not there.
    /// Blocks while downloading; each failure is one line saying what to do.
    pub fn fetch(&self, options: &HubOptions) -> Result<PathBuf, LoadError> {
        if let Some(folder) = self.cached(&options.cache) {
            return Ok(folder);
        }
        if options.offline {
            return Err(self.error(format!(
                "is not in the cache {} and HF_HUB_OFFLINE is set; unset it to download the model once",
                options.cache.display()
            )));
        }
        self.download(options)
    }

    fn download(&self, options: &HubOptions) -> Result<PathBuf, LoadError> {
        let config = ureq::Agent::config_builder()
            .max_redirects(0)
            .http_status_as_error(false)
            .timeout_connect(Some(std::time::Duration::from_secs(30)))
            .build();
        let agent = ureq::Agent::new_with_config(config);
        let folder = options.cache.join(format!("models--{}", self.repo.replace('/', "--")));
        let fetcher = Fetcher {
            agent: &agent,
            endpoint: options.endpoint.trim_end_matches('/'),
            token: options.token.as_deref(),
            repo: &self.repo,
            revision: &self.revision,
            folder,
        };
        let get = |file: &str| {
            if options.progress && file == "model.safetensors" {
                eprintln!("downloading {file} of {} from {} ...", self.name(), options.endpoint);
            }
            // A network failure is tried twice more; an answer is final.
            let mut attempt = 0;
            loop {
                match fetcher.fetch(file) {
                    Err(FetchError::Failed(_)) if attempt < 2 => attempt += 1,
                    other => return other,
                }
            }
        };
        for file in OPTIONAL_FILES {
            match get(file) {
                Ok(_) | Err(FetchError::Status(404)) => {}
                Err(err) => return Err(self.fetch_error(file, &err, options)),
            }
        }
        for file in REQUIRED_FILES {
            get(file).map_err(|err| match err {
                FetchError::Status(404) => self.error(format!(
                    "has no {file} at revision {:?}: check the revision; a sentence-transformers model has config.json, \
                     tokenizer.json and model.safetensors",
                    self.revision
                )),
                err => self.fetch_error(file, &err, options),
            })?;
        }
        let weights = get("model.safetensors").map_err(|err| match err {
            FetchError::Status(404) => self.error(
                "has no model.safetensors: rag reads safetensors weights only (convert the model, or use it through Ollama)"
                    .to_string(),
            ),
            err => self.fetch_error("model.safetensors", &err, options),
        })?;
        weights.parent().map(Path::to_path_buf).ok_or_else(|| self.error("fetched no folder".to_string()))
    }

    fn error(&self, reason: String) -> LoadError {
        LoadError::Name { name: self.name(), reason }
    }

    fn fetch_error(&self, file: &str, err: &FetchError, options: &HubOptions) -> LoadError {
        let endpoint = &options.endpoint;
        let reason = match err {
            FetchError::Status(code @ (401 | 403)) => format!(
                "{endpoint} refused {file} (HTTP {code}): the model does not exist, or it is gated or private \
                 (accept its terms on the Hub, then set HF_TOKEN)"
            ),
            FetchError::Status(404) => format!("{endpoint} has no {file} at revision {:?}", self.revision),
            FetchError::Status(code) => format!("{endpoint} answered HTTP {code} for {file}; try again later"),
            FetchError::Refused(why) => format!("{endpoint} answered {file} in a way rag refuses: {why}"),
            FetchError::Failed(why) => format!(
                "cannot fetch {file} from {endpoint} ({}); check the network or HF_ENDPOINT, \
                 or download the model folder yourself and pass its path",
                one_line(why)
            ),
        };
        self.error(reason)
    }
}

fn one_line(err: &impl std::fmt::Display) -> String {
    err.to_string().lines().next().unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_print_back() {
        let m = HubModel::parse("hf:BAAI/bge-small-en-v1.5").unwrap();
        assert_eq!(
            (m.repo(), m.revision(), m.name().as_str()),
            ("BAAI/bge-small-en-v1.5", "main", "hf:BAAI/bge-small-en-v1.5")
        );
        let m = HubModel::parse("hf:org/name@v1.0#0123456789abcdef").unwrap();
        assert_eq!((m.revision(), m.name().as_str()), ("v1.0", "hf:org/name@v1.0"));
        assert_eq!(HubModel::parse("hf:gpt2").unwrap().repo(), "gpt2");
        assert_eq!(HubModel::parse("hf:org/name@refs/pr/1").unwrap().revision(), "refs/pr/1");
        for bad in ["hf:", "hf:a/b/c", "hf:../x", "hf:org/na me", "hf:org/name@", "hf:org/name@../x", "org/name"] {
            let err = HubModel::parse(bad).unwrap_err().to_string();
            assert!(err.contains(bad.split('#').next().unwrap()) && !err.contains('\n'), "{bad}: {err}");
        }
    }
}
