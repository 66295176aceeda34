//! One file of a Hub repository into the Hub's cache layout
//! (`blobs/ETAG`, `snapshots/COMMIT/FILE`, `refs/REVISION`), trusting no
//! name the server sends.
//!
//! The cache paths come from the `ETag` (or `X-Linked-Etag`) and
//! `X-Repo-Commit` headers. A client that joins them to the cache as they
//! come lets a hostile `HF_ENDPOINT` write anywhere (an absolute path, or
//! `..`), so here each must be a plain name before any file is made, and a
//! body whose ETag is a SHA-256 is checked against it before it is used.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::Digest;

/// Why a file was not fetched.
#[derive(Debug)]
pub(crate) enum FetchError {
    /// The server answered with this HTTP status.
    Status(u16),
    /// The server's answer cannot be trusted or used.
    Refused(String),
    /// No answer (network), or the cache cannot be written.
    Failed(String),
}

/// How to reach a repository at a revision.
pub(crate) struct Fetcher<'a> {
    pub(crate) agent: &'a ureq::Agent,
    pub(crate) endpoint: &'a str,
    pub(crate) token: Option<&'a str>,
    pub(crate) repo: &'a str,
    pub(crate) revision: &'a str,
    /// `models--ORG--NAME` in the cache.
    pub(crate) folder: PathBuf,
}

/// Whether a header value may name a file or folder: letters, digits, `-`,
/// `_` and `.`, not starting with a dot, at most 128 characters.
pub(crate) fn plain_name(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 128
        && !value.starts_with('.')
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Most redirects followed within the Hub before the file's own address.
const MAX_HOPS: usize = 5;

impl Fetcher<'_> {
    /// Fetches `file` into the cache and returns its path under `snapshots/`.
    pub(crate) fn fetch(&self, file: &str) -> Result<PathBuf, FetchError> {
        let mut url = format!("{}/{}/resolve/{}/{file}", self.endpoint, self.repo, self.revision);
        // The Hub answers with the names first, and for large files a
        // redirect to where the content is; relative redirects stay on the Hub.
        let mut hops = 0;
        let (response, names) = loop {
            let response = self.get(&url, true)?;
            let status = response.status().as_u16();
            let location = header(&response, "location");
            if (300..400).contains(&status) {
                let location =
                    location.ok_or_else(|| FetchError::Refused(format!("HTTP {status} with no Location")))?;
                if location.starts_with('/') && hops < MAX_HOPS {
                    hops += 1;
                    url = format!("{}{location}", origin(self.endpoint));
                    continue;
                }
                let names = names(&response)?;
                break (self.get(&location, false)?, names);
            }
            if !(200..300).contains(&status) {
                return Err(FetchError::Status(status));
            }
            let names = names(&response)?;
            break (response, names);
        };
        let (etag, commit) = names;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(FetchError::Status(status));
        }
        let blobs = self.folder.join("blobs");
        create_dir(&blobs)?;
        let blob = blobs.join(&etag);
        if !blob.is_file() {
            let partial = blobs.join(format!("{etag}.{}.incomplete", std::process::id()));
            let written = write_body(response, &partial, &etag);
            if let Err(err) = written {
                let _ = std::fs::remove_file(&partial);
                return Err(err);
            }
            std::fs::rename(&partial, &blob).map_err(|e| failed(&blob, e))?;
        }
        let pointer = self.folder.join("snapshots").join(&commit).join(file);
        if let Some(parent) = pointer.parent() {
            create_dir(parent)?;
        }
        link(&blob, &pointer)?;
        let reference = self.folder.join("refs").join(self.revision);
        if let Some(parent) = reference.parent() {
            create_dir(parent)?;
        }
        std::fs::write(&reference, &commit).map_err(|e| failed(&reference, e))?;
        Ok(pointer)
    }

    fn get(&self, url: &str, hub: bool) -> Result<ureq::http::Response<ureq::Body>, FetchError> {
        let mut request = self.agent.get(url);
        // The token goes to the Hub only, never to where it redirects.
        if hub && let Some(token) = self.token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        request.call().map_err(|e| FetchError::Failed(e.to_string()))
    }
}

/// `scheme://host[:port]` of a URL.
fn origin(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    url[after_scheme..].find('/').map_or(url, |i| &url[..after_scheme + i])
}

fn header(response: &ureq::http::Response<ureq::Body>, name: &str) -> Option<String> {
    response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

/// The blob name (ETag) and commit of an answer, each a plain name.
fn names(response: &ureq::http::Response<ureq::Body>) -> Result<(String, String), FetchError> {
    let etag = header(response, "x-linked-etag")
        .or_else(|| header(response, "etag"))
        .ok_or_else(|| FetchError::Refused("no ETag header".into()))?;
    let etag = etag.trim().trim_start_matches("W/").replace('"', "");
    let commit = header(response, "x-repo-commit").ok_or_else(|| FetchError::Refused("no X-Repo-Commit".into()))?;
    for (what, value) in [("ETag", &etag), ("X-Repo-Commit", &commit)] {
        if !plain_name(value) {
            let shown: String = value.chars().take(80).collect();
            return Err(FetchError::Refused(format!("its {what} {shown:?} is not a plain name; nothing was written")));
        }
    }
    Ok((etag, commit))
}

/// Streams the body to `path`, checking it against `etag` when that is a SHA-256.
fn write_body(response: ureq::http::Response<ureq::Body>, path: &Path, etag: &str) -> Result<(), FetchError> {
    let mut file = std::fs::File::create(path).map_err(|e| failed(path, e))?;
    let mut reader = response.into_body().into_reader();
    let mut hasher = sha2::Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = reader.read(&mut buffer).map_err(|e| FetchError::Failed(format!("the download broke off ({e})")))?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        file.write_all(&buffer[..read]).map_err(|e| failed(path, e))?;
    }
    file.sync_all().map_err(|e| failed(path, e))?;
    let is_sha256 = etag.len() == 64 && etag.bytes().all(|b| b.is_ascii_hexdigit());
    if is_sha256 {
        let actual: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
        if actual != etag.to_ascii_lowercase() {
            return Err(FetchError::Refused(format!(
                "the download does not match its SHA-256 (expected {etag}); it was removed, run again to fetch it anew"
            )));
        }
    }
    Ok(())
}

fn create_dir(dir: &Path) -> Result<(), FetchError> {
    std::fs::create_dir_all(dir).map_err(|e| failed(dir, e))
}

/// `snapshots/COMMIT/FILE` pointing at its blob: a relative symbolic link
/// where the system has them (as the Hub's own tools make), else a copy.
fn link(blob: &Path, pointer: &Path) -> Result<(), FetchError> {
    let _ = std::fs::remove_file(pointer);
    #[cfg(unix)]
    {
        // From snapshots/COMMIT/a/b/FILE up to the repository folder.
        let depth = pointer.components().count() - blob.components().count() + 1;
        let mut target = PathBuf::new();
        for _ in 0..depth {
            target.push("..");
        }
        target.push("blobs");
        target.push(blob.file_name().unwrap_or_default());
        std::os::unix::fs::symlink(&target, pointer).map_err(|e| failed(pointer, e))
    }
    #[cfg(not(unix))]
    {
        std::fs::copy(blob, pointer).map(|_| ()).map_err(|e| failed(pointer, e))
    }
}

fn failed(path: &Path, err: std::io::Error) -> FetchError {
    FetchError::Failed(format!("cannot write {} ({err})", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_name_files() {
        for good in ["0123456789abcdef0123456789abcdef01234567", "v1.0", "abc-def_1"] {
            assert!(plain_name(good), "{good}");
        }
        for bad in ["", "..", "../x", "/etc/passwd", "a/b", ".hidden", "a\\b", "a b", "x\0", &"a".repeat(129)] {
            assert!(!plain_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn origins_keep_scheme_host_and_port() {
        assert_eq!(origin("http://127.0.0.1:9/org/name"), "http://127.0.0.1:9");
        assert_eq!(origin("https://huggingface.co"), "https://huggingface.co");
    }
}
