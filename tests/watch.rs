//! `rag watch` end to end: a real watcher process, real file-system events,
//! the fake Ollama on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod support;

use support::Workspace;

/// Each change must be queryable, or gone, within this.
const WITHIN: Duration = Duration::from_secs(5);

/// A running `rag watch` and the lines it printed on stderr.
struct Watching {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Watching {
    fn start(ws: &Workspace, args: &[&str]) -> Self {
        let mut child = ws.command(args).stderr(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let watching = Self { child, lines };
        watching.wait_for_line("watching", Duration::from_secs(60));
        watching
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    fn wait_for_line(&self, needle: &str, limit: Duration) {
        let started = Instant::now();
        while !self.lines().iter().any(|l| l.contains(needle)) {
            assert!(started.elapsed() < limit, "no {needle:?} from rag watch in {limit:?}: {:?}", self.lines());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn updates(&self) -> usize {
        self.lines().iter().filter(|l| l.starts_with("updated:")).count()
    }

    /// The count of updates once it is past `before` and has not changed for
    /// `quiet`: every run that began has reported.
    fn updates_once_quiet(&self, before: usize, quiet: Duration) -> usize {
        let started = Instant::now();
        loop {
            let now = self.updates();
            std::thread::sleep(quiet);
            if now > before && self.updates() == now {
                return now;
            }
            assert!(started.elapsed() < WITHIN * 4, "rag watch did not settle: {:?}", self.lines());
        }
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until the store's chunks of `path` satisfy `test` (texts joined).
fn wait_until(ws: &Workspace, what: &str, test: impl Fn(Option<String>) -> bool) -> Duration {
    let started = Instant::now();
    loop {
        let records = ws.records("notes");
        let mut texts: Vec<&str> = Vec::new();
        let mut found = false;
        for (chunk, _) in &records {
            if chunk.source_path == what {
                found = true;
                texts.push(&chunk.text);
            }
        }
        if test(found.then(|| texts.join("\n"))) {
            return started.elapsed();
        }
        assert!(started.elapsed() < WITHIN, "{what}: not as expected within {WITHIN:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The store's content as comparable rows: path, index, hash, text.
fn content(ws: &Workspace, store: &str) -> Vec<(String, usize, String, String)> {
    let mut rows: Vec<_> =
        ws.records(store).into_iter().map(|(c, _)| (c.source_path, c.chunk_index, c.content_hash, c.text)).collect();
    rows.sort();
    rows
}

#[test]
fn watch_keeps_the_store_current_and_stops_cleanly() {
    let ws = Workspace::new();
    ws.write("notes/apple.md", "# Apple\n\nThe apple tree flowers in spring.\n");
    ws.write("notes/bread.md", "# Bread\n\nKnead the dough for ten minutes.\n");
    let watching = Watching::start(&ws, &["watch", "notes", "--store", "notes"]);
    assert_eq!(content(&ws, "notes").len(), 2, "{:?}", watching.lines());

    // A new file.
    ws.write("notes/cherry.md", "# Cherry\n\nCherries ripen in July.\n");
    wait_until(&ws, "notes/cherry.md", |t| t.is_some_and(|t| t.contains("ripen in July")));

    // An editor's save: write a temporary file, rename it over the old one.
    ws.write("notes/.apple.md.swp", "# Apple\n\nThe apple tree fruits in autumn.\n");
    std::fs::rename(ws.work().join("notes/.apple.md.swp"), ws.work().join("notes/apple.md")).unwrap();
    wait_until(&ws, "notes/apple.md", |t| t.is_some_and(|t| t.contains("fruits in autumn")));

    // Deleted, then made again.
    ws.remove("notes/bread.md");
    wait_until(&ws, "notes/bread.md", |t| t.is_none());
    ws.write("notes/bread.md", "# Bread\n\nBake at 220 degrees.\n");
    wait_until(&ws, "notes/bread.md", |t| t.is_some_and(|t| t.contains("220 degrees")));

    // A folder moved in, then out.
    ws.write("elsewhere/trip/plan.md", "# Plan\n\nTrain to the coast.\n");
    std::fs::rename(ws.work().join("elsewhere/trip"), ws.work().join("notes/trip")).unwrap();
    wait_until(&ws, "notes/trip/plan.md", |t| t.is_some_and(|t| t.contains("coast")));
    std::fs::rename(ws.work().join("notes/trip"), ws.work().join("elsewhere/trip")).unwrap();
    wait_until(&ws, "notes/trip/plan.md", |t| t.is_none());
    // The store changes before the run prints its line: wait for the line too,
    // or it would be counted as a reaction to the ignored paths below.
    watching.wait_for_line("removed (notes/trip/plan.md)", WITHIN);

    // Ignored paths touched: nothing happens.
    let before = watching.updates();
    ws.write("notes/node_modules/pkg/readme.md", "# Package\n");
    ws.write("notes/.cache/state.md", "# State\n");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(watching.updates(), before, "{:?}", watching.lines());
    assert!(content(&ws, "notes").iter().all(|(path, ..)| !path.contains("node_modules") && !path.contains(".cache")));

    // A burst of 300 files: one batch, not 300 runs.
    let before = watching.updates();
    for i in 0..300 {
        ws.write(&format!("notes/burst/n{i:03}.md"), format!("# Note {i}\n\nburst note number {i}\n"));
    }
    // Wait for the whole burst to be stored, then for every run to report.
    let burst = |ws: &Workspace| content(ws, "notes").iter().filter(|(p, ..)| p.starts_with("notes/burst/")).count();
    let started = Instant::now();
    while burst(&ws) < 300 {
        assert!(started.elapsed() < WITHIN * 4, "{} of 300 burst files stored", burst(&ws));
        std::thread::sleep(Duration::from_millis(50));
    }
    let runs = watching.updates_once_quiet(before, Duration::from_secs(1)) - before;
    assert!((1..=2).contains(&runs), "{runs} runs for one burst: {:?}", watching.lines());
    assert_eq!(content(&ws, "notes").iter().filter(|(p, ..)| p.starts_with("notes/burst/")).count(), 300);

    // SIGTERM: exit status 0, and the store equals a fresh index of the same tree.
    let mut watching = watching;
    // SAFETY: kill sends a signal to a child we started.
    assert_eq!(unsafe { libc::kill(watching.child.id() as libc::pid_t, libc::SIGTERM) }, 0);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = watching.child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "rag watch did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}: {:?}", watching.lines());
    ws.rag(&["index", "notes", "--store", "fresh"]).assert_ok();
    assert_eq!(content(&ws, "notes"), content(&ws, "fresh"));
}
