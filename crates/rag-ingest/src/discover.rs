//! Finding the files to index: plain paths, folders and globs, with
//! `.gitignore` and friends honoured.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use ignore::WalkBuilder;

use rag_core::{Error, Result};

use crate::extract::walkable;

/// Folders skipped while walking unless `--no-ignore`: dependencies, build
/// output and caches that no one wants in their search results.
pub const SKIPPED_DIRS: &[&str] =
    &["node_modules", "target", "__pycache__", ".venv", "venv", "dist", "build", ".tox", ".mypy_cache"];

/// How to walk.
#[derive(Debug, Clone)]
pub struct DiscoverOptions {
    /// Paths are stored relative to this folder.
    pub root: PathBuf,
    /// Include hidden files and folders.
    pub hidden: bool,
    /// Ignore `.gitignore`, `.ignore`, `.ragignore` and [`SKIPPED_DIRS`].
    pub no_ignore: bool,
}

impl DiscoverOptions {
    /// Defaults: hidden files skipped, ignore files honoured.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into(), hidden: false, no_ignore: false }
    }
}

/// A file found to index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// Where to read it.
    pub path: PathBuf,
    /// Its stored name: relative to the root with `/` separators, or absolute
    /// when outside the root.
    pub rel: String,
}

/// What a set of patterns covers, to tell which stored files vanished.
#[derive(Debug, Clone)]
pub struct Scope {
    root: PathBuf,
    folders: Vec<PathBuf>,
    files: Vec<PathBuf>,
    globs: GlobSet,
    /// Folders the walk could not see into, or found empty: what is stored
    /// under them is kept, never taken for deleted.
    unseen: Vec<UnseenFolder>,
}

impl Scope {
    /// Whether a stored file (by its stored name) falls under the patterns, so
    /// that its absence from the walk means it was deleted or excluded. A
    /// file under a folder the walk could not read, or under a folder pattern
    /// that was empty (an unmounted disk, a folder emptied by mistake), is
    /// not: the walk cannot tell whether it is gone.
    pub fn contains(&self, rel: &str) -> bool {
        if self.unseen(rel).is_some() {
            return false;
        }
        let path = normalize(&self.root.join(rel));
        self.files.contains(&path) || self.folders.iter().any(|f| path.starts_with(f)) || self.globs.is_match(&path)
    }

    /// The folder the walk could not see (an unreadable folder, a folder
    /// given to index that was empty) that a stored file lies in, if any.
    pub fn unseen(&self, rel: &str) -> Option<&UnseenFolder> {
        let path = normalize(&self.root.join(rel));
        self.unseen.iter().find(|folder| path.starts_with(&folder.path))
    }
}

/// A folder whose stored files a run keeps, because the walk could not see
/// what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnseenFolder {
    /// The folder.
    pub path: PathBuf,
    /// Why the walk could not see into it.
    pub why: Unseen,
}

/// Why a walk could not see into a folder.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unseen {
    /// Listing it failed (permission denied, a vanished mount): the error.
    Unreadable(String),
    /// A folder given to index held no file to index (an unmounted disk?).
    Empty,
}

impl UnseenFolder {
    /// What a person is told about the files stored from this folder.
    pub fn reason(&self) -> String {
        match &self.why {
            Unseen::Unreadable(err) => format!("the folder cannot be read ({err}); files stored from it are kept"),
            Unseen::Empty => "the folder is empty (an unmounted disk?); files stored from it are kept".to_string(),
        }
    }
}

/// The result of a walk.
#[derive(Debug, Clone)]
pub struct Discovery {
    /// Files to index, sorted by stored name, without duplicates.
    pub files: Vec<SourceFile>,
    /// What the patterns cover.
    pub scope: Scope,
    /// Problems met while walking (unreadable folders, broken links).
    pub warnings: Vec<String>,
    /// Folders whose stored files are kept because the walk could not see
    /// into them (an unreadable folder) or found nothing (a folder given to
    /// index that was empty): a caller should say so and fail the run.
    pub unseen: Vec<UnseenFolder>,
    /// Patterns that matched no file.
    pub unmatched: Vec<String>,
}

impl Discovery {
    /// Takes folders found empty at their word: what was stored from them is
    /// pruned like any file that is gone (for a caller told that the files
    /// were deleted on purpose). Unreadable folders stay unseen.
    pub fn trust_empty_folders(&mut self) {
        let unseen = |folder: &UnseenFolder| !matches!(folder.why, Unseen::Empty);
        self.unseen.retain(unseen);
        self.scope.unseen.retain(unseen);
    }
}

/// Finds the files named by `patterns`: files (taken whatever their type),
/// folders (walked for the formats `rag` knows) and globs such as
/// `"docs/**/*.{md,txt}"` (any matching file).
///
/// ```no_run
/// use rag_ingest::{discover, DiscoverOptions};
/// let found = discover(&["notes".into(), "src/**/*.rs".into()], &DiscoverOptions::new(".")).unwrap();
/// for file in &found.files {
///     println!("{}", file.rel);
/// }
/// ```
pub fn discover(patterns: &[String], options: &DiscoverOptions) -> Result<Discovery> {
    let root = normalize(&absolute(&options.root)?);
    let mut found = BTreeMap::new();
    let mut folders = Vec::new();
    let mut files = Vec::new();
    let mut globs = GlobSetBuilder::new();
    let mut warnings = Vec::new();
    let mut unseen = Vec::new();
    let mut unmatched = Vec::new();

    for pattern in patterns {
        let before = found.len();
        let path = normalize(&root.join(pattern));
        if is_glob(pattern) {
            let glob_text = if Path::new(pattern).is_absolute() {
                pattern.clone()
            } else {
                format!("{}/{pattern}", globset::escape(&root.to_string_lossy()))
            };
            let glob = GlobBuilder::new(&glob_text)
                .literal_separator(true)
                .build()
                .map_err(|e| Error::InvalidInput(format!("bad glob {pattern:?}: {e}")))?;
            globs.add(glob.clone());
            let glob = glob.compile_matcher();
            let base = glob_base(&root, pattern);
            walk(&base, options, &mut warnings, &mut unseen, |file| {
                if glob.is_match(file) {
                    found.insert(rel_name(&root, file), file.to_path_buf());
                }
            });
        } else if path.is_dir() {
            walk(&path, options, &mut warnings, &mut unseen, |file| {
                if walkable(file) {
                    found.insert(rel_name(&root, file), file.to_path_buf());
                }
            });
            if found.len() == before && !unseen.iter().any(|u: &UnseenFolder| u.path == path) {
                unseen.push(UnseenFolder { path: path.clone(), why: Unseen::Empty });
            }
            folders.push(path);
        } else if path.is_file() {
            found.insert(rel_name(&root, &path), path.clone());
            files.push(path);
        } else {
            // A file that was indexed and is gone: in scope, so it gets pruned.
            files.push(path);
        }
        if found.len() == before {
            unmatched.push(pattern.clone());
        }
    }

    let globs = globs.build().map_err(|e| Error::InvalidInput(format!("bad glob: {e}")))?;
    Ok(Discovery {
        files: found.into_iter().map(|(rel, path)| SourceFile { path, rel }).collect(),
        scope: Scope { root, folders, files, globs, unseen: unseen.clone() },
        warnings,
        unseen,
        unmatched,
    })
}

fn walk(
    base: &Path,
    options: &DiscoverOptions,
    warnings: &mut Vec<String>,
    unseen: &mut Vec<UnseenFolder>,
    mut visit: impl FnMut(&Path),
) {
    let honour = !options.no_ignore;
    let mut builder = WalkBuilder::new(base);
    builder
        .hidden(!options.hidden)
        .git_ignore(honour)
        .git_global(honour)
        .git_exclude(honour)
        .ignore(honour)
        .parents(honour)
        .require_git(false)
        .sort_by_file_name(|a, b| a.cmp(b));
    if honour {
        builder.add_custom_ignore_filename(".ragignore");
        builder.filter_entry(|entry| {
            !(entry.file_type().is_some_and(|t| t.is_dir())
                && entry.depth() > 0
                && entry.file_name().to_str().is_some_and(|name| SKIPPED_DIRS.contains(&name)))
        });
    }
    for entry in builder.build() {
        match entry {
            Ok(entry) if entry.file_type().is_some_and(|t| t.is_file()) => visit(&normalize(entry.path())),
            Ok(_) => {}
            Err(err) => {
                if let Some(folder) = unreadable_folder(&err) {
                    unseen.push(UnseenFolder { path: normalize(&folder), why: Unseen::Unreadable(err.to_string()) });
                }
                warnings.push(err.to_string());
            }
        }
    }
}

/// The folder a walk error says could not be read: an I/O error (permission
/// denied, a vanished mount) on a path that is, or was, a folder. Errors on
/// single files, ignore files and links leave the folder's scope as it is.
fn unreadable_folder(err: &ignore::Error) -> Option<PathBuf> {
    fn io_path(err: &ignore::Error, at: Option<&Path>) -> Option<PathBuf> {
        match err {
            ignore::Error::WithPath { path, err } => io_path(err, Some(path)),
            ignore::Error::WithDepth { err, .. } | ignore::Error::WithLineNumber { err, .. } => io_path(err, at),
            ignore::Error::Io(_) => at.map(Path::to_path_buf),
            _ => None,
        }
    }
    let path = io_path(err, None)?;
    // A folder that cannot be listed still says it is a folder; a file does not.
    let is_folder = std::fs::symlink_metadata(&path).map_or(true, |m| m.is_dir());
    is_folder.then_some(path)
}

/// The folders to watch for changes to what `patterns` cover, each with
/// whether to watch below it: a folder (all of it), a glob's literal base
/// (all of it), a file's folder (that folder only: editors replace files
/// by renaming, which a watch on the file itself would lose). Patterns that
/// name nothing that exists are left out.
pub fn watch_roots(patterns: &[String], root: &Path) -> Vec<(PathBuf, bool)> {
    let root = normalize(&std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf()));
    let mut out: Vec<(PathBuf, bool)> = Vec::new();
    for pattern in patterns {
        let (path, recursive) = if is_glob(pattern) {
            (glob_base(&root, pattern), true)
        } else {
            let path = normalize(&root.join(pattern));
            if path.is_dir() {
                (path, true)
            } else {
                match path.parent() {
                    Some(parent) => (parent.to_path_buf(), false),
                    None => continue,
                }
            }
        };
        if path.is_dir() && !out.iter().any(|(p, r)| *r && path.starts_with(p)) {
            out.retain(|(p, _)| !(recursive && p.starts_with(&path)));
            out.push((path, recursive));
        }
    }
    out
}

fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?', '[', '{'])
}

/// The longest leading run of literal components of a glob: where to walk.
fn glob_base(root: &Path, pattern: &str) -> PathBuf {
    let mut base = if Path::new(pattern).is_absolute() { PathBuf::from("/") } else { root.to_path_buf() };
    for part in pattern.split('/') {
        if is_glob(part) {
            break;
        }
        base.push(part);
    }
    let base = normalize(&base);
    if base.is_file() { base.parent().map_or(base.clone(), Path::to_path_buf) } else { base }
}

/// The name a file at `path` is stored under: relative to `root` with `/`
/// separators, or absolute when outside it (both as [`discover`] makes them).
pub fn stored_name(root: &Path, path: &Path) -> String {
    rel_name(&normalize(root), &normalize(path))
}

fn rel_name(root: &Path, path: &Path) -> String {
    match path.strip_prefix(root) {
        Ok(rel) => rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/"),
        Err(_) => path.to_string_lossy().into_owned(),
    }
}

fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })
}

/// Resolves `.` and `..` without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn a_folder_that_cannot_be_listed_is_unseen_and_a_file_error_is_not() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("locked")).unwrap();
        fs::write(dir.path().join("note.md"), "x").unwrap();
        let denied = || ignore::Error::Io(std::io::Error::from(std::io::ErrorKind::PermissionDenied));
        let on = |path: PathBuf| ignore::Error::WithDepth {
            depth: 1,
            err: Box::new(ignore::Error::WithPath { path, err: Box::new(denied()) }),
        };
        assert_eq!(unreadable_folder(&on(dir.path().join("locked"))), Some(dir.path().join("locked")));
        assert_eq!(unreadable_folder(&on(dir.path().join("gone"))), Some(dir.path().join("gone")), "a vanished mount");
        assert_eq!(unreadable_folder(&on(dir.path().join("note.md"))), None, "a file is not a folder");
        assert_eq!(unreadable_folder(&denied()), None, "no path, no folder");
        let loop_error = ignore::Error::Loop { ancestor: dir.path().into(), child: dir.path().join("locked") };
        assert_eq!(unreadable_folder(&loop_error), None, "a link loop hides nothing");
    }

    #[test]
    fn files_under_an_unseen_folder_are_out_of_scope_and_say_why() {
        let dir = tree(&["notes/a.md", "notes/deep/b.md"]);
        let mut found = discover(&["notes".into()], &DiscoverOptions::new(dir.path())).unwrap();
        assert!(found.unseen.is_empty());
        assert!(found.scope.contains("notes/deep/gone.md"));
        let locked = normalize(&dir.path().join("notes/deep"));
        let folder = UnseenFolder { path: locked, why: Unseen::Unreadable("permission denied".into()) };
        found.scope.unseen.push(folder);
        assert!(!found.scope.contains("notes/deep/gone.md"), "kept, not pruned");
        assert!(found.scope.contains("notes/gone.md"));
        let why = found.scope.unseen("notes/deep/gone.md").map(UnseenFolder::reason).unwrap_or_default();
        assert!(why.contains("cannot be read (permission denied)"), "{why}");
    }

    fn tree(files: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for file in files {
            let path = dir.path().join(file);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, format!("contents of {file}")).unwrap();
        }
        dir
    }

    fn names(patterns: &[&str], dir: &Path) -> Vec<String> {
        let patterns: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
        discover(&patterns, &DiscoverOptions::new(dir)).unwrap().files.into_iter().map(|f| f.rel).collect()
    }

    #[test]
    fn folders_are_walked_for_everything_but_known_binary_types() {
        let dir = tree(&["docs/a.md", "docs/b.png", "docs/sub/c.rs", "docs/Makefile", "other/d.md"]);
        assert_eq!(names(&["docs"], dir.path()), ["docs/Makefile", "docs/a.md", "docs/sub/c.rs"]);
    }

    #[test]
    fn gitignore_hidden_and_build_folders_are_skipped() {
        let dir = tree(&["a.md", "secret.md", ".hidden/b.md", "node_modules/x/c.md", "target/d.rs"]);
        fs::write(dir.path().join(".gitignore"), "secret.md\n").unwrap();
        assert_eq!(names(&["."], dir.path()), ["a.md"]);
        let all = discover(&[".".into()], &DiscoverOptions { root: dir.path().into(), hidden: true, no_ignore: true })
            .unwrap();
        assert_eq!(all.files.len(), 6, "the five files and .gitignore itself");
    }

    #[test]
    fn globs_support_double_star_and_braces() {
        let dir = tree(&["a/x.py", "a/b/y.py", "a/b/z.txt", "a/b/w.md", "top.py"]);
        assert_eq!(names(&["**/*.py"], dir.path()), ["a/b/y.py", "a/x.py", "top.py"]);
        assert_eq!(names(&["a/**/*.{txt,md}"], dir.path()), ["a/b/w.md", "a/b/z.txt"]);
    }

    #[test]
    fn scope_covers_deleted_files_under_the_patterns() {
        let dir = tree(&["docs/a.md", "src/b.rs"]);
        let found = discover(&["docs".into(), "src/*.rs".into()], &DiscoverOptions::new(dir.path())).unwrap();
        assert!(found.scope.contains("docs/gone.md"));
        assert!(found.scope.contains("src/gone.rs"));
        assert!(!found.scope.contains("elsewhere/a.md"));
        assert!(!found.scope.contains("src/sub/deep.rs"));
    }

    #[test]
    fn patterns_that_match_nothing_are_reported() {
        let dir = tree(&["a.md"]);
        let found = discover(&["missing".into(), "*.rs".into()], &DiscoverOptions::new(dir.path())).unwrap();
        assert_eq!(found.unmatched, ["missing", "*.rs"]);
    }
}
