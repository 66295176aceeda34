//! Files built to break a reader, and signals that arrive mid-read: each
//! hostile file fails alone and by name, the rest of the tree is indexed,
//! and a stopped run leaves no reader behind and blames no file.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::process::Stdio;
use std::time::{Duration, Instant};

mod support;

use serde_json::Value;
use support::Workspace;

/// The problems of a `--json` report under `list` (`failed`, `skipped`), by path.
fn problems(report: &Value, list: &str) -> Vec<(String, String)> {
    report[list]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["path"].as_str().unwrap().to_string(), p["reason"].as_str().unwrap().to_string()))
        .collect()
}

fn reason<'a>(problems: &'a [(String, String)], path: &str) -> &'a str {
    problems.iter().find(|(p, _)| p == path).map(|(_, r)| r.as_str()).unwrap_or_else(|| panic!("{path}: {problems:?}"))
}

#[test]
fn hostile_files_fail_alone_by_name_and_are_not_read_again() {
    let ws = Workspace::new();
    for i in 0..10 {
        ws.write(&format!("notes/n{i}.md"), format!("---\ntags: [kites]\n---\n# Note {i}\n\nkites number {i}\n"));
    }
    // Front matter nested past the loader's bound, and a billion laughs.
    ws.write("notes/deep.md", format!("---\n{}x\n---\nbody\n", "- ".repeat(20_000)));
    let mut laughs = String::from("---\nl0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..9 {
        laughs += &format!("l{i}: &l{i} [{}]\n", vec![format!("*l{}", i - 1); 10].join(", "));
    }
    ws.write("notes/laughs.md", laughs + "---\nbody\n");
    // Nesting the HTML parser would take quadratic time on, and the
    // markdown walk a stack frame per level.
    ws.write("pages/deep.html", "<div>".repeat(200_000));
    // A million-row table, and one line of 4 MB.
    let rows: String = (0..1_000_000).map(|i| format!("{i},k{}\n", i % 7)).collect();
    ws.write("data/rows.csv", format!("id,kind\n{rows}"));
    ws.write("logs/one-line.txt", "kites ".repeat(700_000));
    // A 1 GiB file (sparse: it costs no disk).
    std::fs::create_dir_all(ws.work().join("logs")).unwrap();
    std::fs::File::create(ws.work().join("logs/huge.log")).unwrap().set_len(1 << 30).unwrap();

    let started = Instant::now();
    let run = ws.rag(&["index", ".", "--store", "notes", "--json", "--max-file-chunks", "1000"]);
    run.assert_code(1);
    let first = started.elapsed();
    let report: Value = serde_json::from_str(&run.stdout()).unwrap();
    let (failed, skipped) = (problems(&report, "failed"), problems(&report, "skipped"));
    assert_eq!(failed.len(), 3, "{failed:?}");
    assert!(reason(&failed, "notes/deep.md").contains("nests deeper than 64 levels"));
    assert!(reason(&failed, "notes/laughs.md").contains("more than 20000 values"));
    assert!(reason(&failed, "pages/deep.html").contains("nest deeper than 256 levels"));
    assert!(reason(&skipped, "data/rows.csv").contains("more than the 1000 a file may have"));
    assert!(reason(&skipped, "logs/one-line.txt").contains("more than the 1000 a file may have"));
    assert!(reason(&skipped, "logs/huge.log").contains("over the size limit"), "{skipped:?}");
    let mut new: Vec<&str> = report["new"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
    new.sort();
    assert_eq!(new, (0..10).map(|i| format!("notes/n{i}.md")).collect::<Vec<_>>());
    assert!(first < Duration::from_secs(120), "the run took {first:?}");

    // The files that failed are remembered: not read again until they change.
    let again = ws.rag(&["index", ".", "--store", "notes", "--json", "--max-file-chunks", "1000"]);
    again.assert_code(1);
    let report: Value = serde_json::from_str(&again.stdout()).unwrap();
    let failed = problems(&report, "failed");
    for path in ["notes/deep.md", "notes/laughs.md", "pages/deep.html"] {
        assert!(reason(&failed, path).ends_with("(unchanged since, so not read again)"), "{path}: {failed:?}");
    }
    assert_eq!(report["unchanged"], 10);
}

/// The pids of running processes whose parent is `parent`.
fn children_of(parent: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // `pid (comm) state ppid ...`: comm may hold spaces, so split after `)`.
        let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap();
        if fields.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(parent) {
            out.push(pid);
        }
    }
    out
}

/// Whether a process is gone (or a zombie no one has reaped yet).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// A page the HTML parser takes seconds over: a thousand open elements, then
/// many more that each look through all of them.
fn slow_page() -> String {
    format!("{}{}", "<div>".repeat(1_000), "<div></div>".repeat(400_000))
}

#[cfg(target_os = "linux")]
#[test]
fn a_signal_mid_read_stops_cleanly_blames_no_file_and_leaves_no_reader() {
    use std::os::unix::process::CommandExt;
    for (signal, whole_group) in [(libc::SIGINT, true), (libc::SIGTERM, false)] {
        let ws = Workspace::new();
        ws.write("notes/kites.md", "# Kites\n\nKites fly in steady wind.\n");
        ws.write("pages/slow.html", slow_page());
        let mut command = ws.command(&["index", ".", "--store", "notes"]);
        // Its own process group, as a terminal's job is: Ctrl-C goes to the group.
        command.process_group(0).stdout(Stdio::piped()).stderr(Stdio::piped());
        let child = command.spawn().unwrap();
        let pid = child.id();
        let started = Instant::now();
        let reader = loop {
            if let Some(reader) = children_of(pid).into_iter().next() {
                break reader;
            }
            assert!(started.elapsed() < Duration::from_secs(60), "no reader child appeared");
            std::thread::sleep(Duration::from_millis(10));
        };
        std::thread::sleep(Duration::from_millis(200));
        let target = if whole_group { -(pid as libc::pid_t) } else { pid as libc::pid_t };
        // SAFETY: kill sends a signal to a process (group) this test started.
        assert_eq!(unsafe { libc::kill(target, signal) }, 0);
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(130), "signal {signal}: {stderr}");
        assert!(stderr.contains("interrupted: store \"notes\" keeps every file written"), "{stderr}");
        let waited = Instant::now();
        while !gone(reader) {
            assert!(waited.elapsed() < Duration::from_secs(5), "the reader {reader} outlived rag");
            std::thread::sleep(Duration::from_millis(10));
        }

        // Nothing was blamed: the next run reads the page again (and, given
        // a second, gives up on it for its own reason).
        let again = ws.rag(&["index", ".", "--store", "notes", "--reader-timeout", "1"]);
        again.assert_code(1);
        let stdout = again.stdout();
        assert!(stdout.contains("pages/slow.html"), "{stdout}");
        assert!(!stdout.contains("not read again"), "signal {signal}: the interrupted read was remembered: {stdout}");
    }
}
