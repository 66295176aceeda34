//! [`FakeHub`]: the Hugging Face Hub's file endpoint on loopback, as the
//! `hf-hub` crate and the Hub's own tools use it.
//!
//! `GET /{repo}/resolve/{revision}/{file}` answers as huggingface.co does:
//! small files directly, with `X-Repo-Commit` and an `ETag`; the weights
//! (`*.safetensors`, large files on the real Hub) with a 302 to a content
//! address and `X-Linked-Etag` holding their SHA-256; `Range` requests with
//! 206 and `Content-Range`; a missing file with 404 and `X-Error-Code:
//! EntryNotFound`; an unknown or gated repository with 401 (`RepoNotFound`,
//! `GatedRepo`).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::Digest;

use crate::LoopbackServer;

#[derive(Debug, Clone)]
struct HubRepo {
    commit: String,
    files: BTreeMap<String, Vec<u8>>,
    token: Option<String>,
    corrupt_weights: bool,
    /// `ETag` and `X-Repo-Commit` sent in place of the true ones.
    forged: Option<(String, String)>,
}

#[derive(Debug, Default)]
struct HubState {
    base: String,
    repos: HashMap<String, HubRepo>,
    requests: Vec<String>,
}

/// A Hugging Face Hub stand-in on `127.0.0.1`, until dropped.
///
/// ```
/// let hub = rag_testkit::FakeHub::start();
/// hub.add_repo("org/model", &[("config.json", b"{}".as_slice())]);
/// assert!(hub.url().starts_with("http://127.0.0.1:"));
/// assert!(hub.requests().is_empty());
/// ```
pub struct FakeHub {
    server: LoopbackServer,
    state: Arc<Mutex<HubState>>,
}

fn sha256_hex(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

impl FakeHub {
    /// Starts an empty Hub.
    pub fn start() -> Self {
        let state = Arc::new(Mutex::new(HubState::default()));
        let app = Router::new().route("/{*path}", get(answer)).with_state(Arc::clone(&state));
        let server = LoopbackServer::start(app, 0);
        state.lock().unwrap().base = server.url();
        Self { server, state }
    }

    /// Base URL, for `HF_ENDPOINT`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Publishes a repository (`ORG/NAME`) holding `files` at one commit,
    /// reachable as `main` and by that commit's hash.
    pub fn add_repo(&self, repo: &str, files: &[(&str, &[u8])]) {
        let files: BTreeMap<String, Vec<u8>> = files.iter().map(|(n, b)| (n.to_string(), b.to_vec())).collect();
        let mut all = Vec::new();
        for (name, bytes) in &files {
            all.extend_from_slice(name.as_bytes());
            all.extend_from_slice(bytes);
        }
        let commit = sha256_hex(&all)[..40].to_string();
        let entry = HubRepo { commit, files, token: None, corrupt_weights: false, forged: None };
        self.state.lock().unwrap().repos.insert(repo.to_string(), entry);
    }

    /// Publishes the files of a model folder (top level and `1_Pooling/`).
    pub fn add_folder(&self, repo: &str, folder: &Path) {
        let mut files = Vec::new();
        for sub in ["", "1_Pooling/"] {
            let Ok(entries) = std::fs::read_dir(folder.join(sub)) else { continue };
            for entry in entries.flatten() {
                if entry.path().is_file() {
                    let name = format!("{sub}{}", entry.file_name().to_string_lossy());
                    files.push((name, std::fs::read(entry.path()).unwrap()));
                }
            }
        }
        let files: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (n.as_str(), b.as_slice())).collect();
        self.add_repo(repo, &files);
    }

    /// Makes `repo` gated: only requests carrying `token` get its files.
    pub fn gate(&self, repo: &str, token: &str) {
        self.state.lock().unwrap().repos.get_mut(repo).expect("a published repo").token = Some(token.to_string());
    }

    /// Serves `repo`'s weights with a byte changed, under their true hash.
    pub fn corrupt_weights(&self, repo: &str, corrupt: bool) {
        self.state.lock().unwrap().repos.get_mut(repo).expect("a published repo").corrupt_weights = corrupt;
    }

    /// Answers for `repo` with this `ETag` (and `X-Linked-Etag`) and
    /// `X-Repo-Commit`, as a hostile mirror would: paths, `..`, anything.
    pub fn forge_names(&self, repo: &str, etag: &str, commit: &str) {
        self.state.lock().unwrap().repos.get_mut(repo).expect("a published repo").forged =
            Some((etag.to_string(), commit.to_string()));
    }

    /// The commit hash `repo`'s `main` points to.
    pub fn commit(&self, repo: &str) -> String {
        self.state.lock().unwrap().repos[repo].commit.clone()
    }

    /// Paths asked so far, in order.
    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }
}

fn error(status: StatusCode, code: &str) -> Response {
    let mut response = (status, format!("{{\"error\":\"{code}\"}}")).into_response();
    response.headers_mut().insert("x-error-code", HeaderValue::from_str(code).unwrap());
    response
}

/// A body, whole or the part a `Range: bytes=A-[B]` header asks for.
fn ranged(headers: &HeaderMap, bytes: &[u8], mut extra: Vec<(&'static str, String)>) -> Response {
    let size = bytes.len();
    let range = headers.get(header::RANGE).and_then(|r| r.to_str().ok()).and_then(|r| r.strip_prefix("bytes="));
    let (status, body) = match range.and_then(|r| r.split_once('-')) {
        Some((start, end)) => {
            let start: usize = start.parse().unwrap_or(0);
            let end: usize = end.parse().map_or(size.saturating_sub(1), |e: usize| e.min(size.saturating_sub(1)));
            if start >= size {
                return error(StatusCode::RANGE_NOT_SATISFIABLE, "RangeNotSatisfiable");
            }
            extra.push(("content-range", format!("bytes {start}-{end}/{size}")));
            (StatusCode::PARTIAL_CONTENT, bytes[start..=end].to_vec())
        }
        None => (StatusCode::OK, bytes.to_vec()),
    };
    let mut response = (status, body).into_response();
    for (name, value) in extra {
        response.headers_mut().insert(name, HeaderValue::from_str(&value).unwrap());
    }
    response
}

async fn answer(State(state): State<Arc<Mutex<HubState>>>, request: Request) -> Response {
    let path = request.uri().path().to_string();
    let headers = request.headers().clone();
    let mut state = state.lock().unwrap();
    state.requests.push(path.clone());
    // Content addresses, as the Hub's CDN serves large files.
    if let Some((repo_name, sha)) = path.strip_prefix("/cdn/").and_then(|p| p.rsplit_once('/')) {
        let found = state.repos.get(repo_name).and_then(|repo| {
            repo.files.values().find(|bytes| sha256_hex(bytes) == sha).map(|bytes| {
                let mut bytes = bytes.clone();
                if repo.corrupt_weights
                    && let Some(last) = bytes.last_mut()
                {
                    *last ^= 0xff;
                }
                bytes
            })
        });
        return match found {
            Some(bytes) => ranged(&headers, &bytes, Vec::new()),
            None => error(StatusCode::NOT_FOUND, "EntryNotFound"),
        };
    }
    let Some((repo_name, rest)) = path.trim_start_matches('/').split_once("/resolve/") else {
        return error(StatusCode::NOT_FOUND, "RepoNotFound");
    };
    let Some(repo) = state.repos.get(repo_name) else { return error(StatusCode::UNAUTHORIZED, "RepoNotFound") };
    if let Some(token) = &repo.token {
        let expected = format!("Bearer {token}");
        if headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
            return error(StatusCode::UNAUTHORIZED, "GatedRepo");
        }
    }
    let Some((revision, file)) = rest.split_once('/') else { return error(StatusCode::NOT_FOUND, "EntryNotFound") };
    if revision != "main" && revision != repo.commit {
        return error(StatusCode::NOT_FOUND, "RevisionNotFound");
    }
    let Some(bytes) = repo.files.get(file) else { return error(StatusCode::NOT_FOUND, "EntryNotFound") };
    let (commit, sha) = match &repo.forged {
        Some((etag, commit)) => (commit.clone(), etag.clone()),
        None => (repo.commit.clone(), sha256_hex(bytes)),
    };
    if file.ends_with(".safetensors") {
        let location = format!("{}/cdn/{repo_name}/{sha}", state.base);
        let mut response = StatusCode::FOUND.into_response();
        for (name, value) in [
            ("location", location),
            ("x-repo-commit", commit),
            ("x-linked-etag", format!("\"{sha}\"")),
            ("x-linked-size", bytes.len().to_string()),
            ("etag", format!("\"{}\"", &sha[..sha.len().min(40)])),
        ] {
            response.headers_mut().insert(name, HeaderValue::from_str(&value).unwrap());
        }
        return response;
    }
    // Small files: a git blob id as the ETag (40 hex digits, not a SHA-256).
    ranged(&headers, bytes, vec![("x-repo-commit", commit), ("etag", format!("\"{}\"", &sha[..sha.len().min(40)]))])
}
