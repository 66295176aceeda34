//! How often a query opens each store's database, counted from outside the
//! process with inotify: the settings and both search arms share one
//! connection, so `rag query` over two stores opens each `store.db` once.
//! (A store of 65,536 chunks or more may open a second, to read the vector
//! arm's rows while the full-text arm holds the first.)

#![cfg(target_os = "linux")]
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use notify::Watcher as _;
use notify::event::{AccessKind, EventKind};
use support::Workspace;

/// Opens of each store's `store.db` while `run` runs.
fn count_opens(stores: &[PathBuf], run: impl FnOnce()) -> HashMap<PathBuf, usize> {
    let (tx, rx) = mpsc::channel();
    let mut watcher = notify::recommended_watcher(tx).expect("inotify");
    for store in stores {
        watcher.watch(store, notify::RecursiveMode::NonRecursive).expect("watch a store folder");
    }
    run();
    // The process has exited; give the last events time to arrive.
    std::thread::sleep(Duration::from_millis(300));
    drop(watcher);
    let mut opens: HashMap<PathBuf, usize> = stores.iter().map(|s| (s.join("store.db"), 0)).collect();
    for event in rx.try_iter().flatten() {
        if let EventKind::Access(AccessKind::Open(_)) = event.kind {
            for path in &event.paths {
                if let Some(count) = opens.get_mut(path) {
                    *count += 1;
                }
            }
        }
    }
    opens
}

fn store_dir(ws: &Workspace, store: &str) -> PathBuf {
    ws.data().join("stores").join(store)
}

#[test]
fn a_query_over_two_local_stores_opens_each_database_once() {
    let ws = Workspace::new();
    ws.write("a/kites.md", "# Kites\n\nKites fly in steady wind.\n");
    ws.write("b/boats.md", "# Boats\n\nBoats sail in wind, kites too.\n");
    ws.rag(&["index", "a", "--store", "alpha"]).assert_ok();
    ws.rag(&["index", "b", "--store", "bravo"]).assert_ok();
    let stores = [store_dir(&ws, "alpha"), store_dir(&ws, "bravo")];
    assert!(stores.iter().all(|s| Path::new(s).join("store.db").is_file()));

    for mode in ["hybrid", "vector", "lexical"] {
        let opens = count_opens(&stores, || {
            ws.rag(&["query", "kites", "--store", "alpha", "--store", "bravo", "--mode", mode, "--json"]).assert_ok();
        });
        for (db, count) in &opens {
            assert_eq!(*count, 1, "{mode}: {} opened {count} times", db.display());
        }
    }
}
