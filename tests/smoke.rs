//! Start-up behaviour of the binary that needs no stores and no Ollama.

#![allow(clippy::unwrap_used, missing_docs)]

use std::process::Command;

mod support;

fn rag() -> Command {
    Command::new(support::rag_bin())
}

/// Runs `rag ARGS` and returns its exit code.
fn code(args: &[&str]) -> Option<i32> {
    rag().args(args).env_remove("RAG_STORE").output().unwrap().status.code()
}

#[test]
fn version_and_help_work() {
    let out = rag().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("rag "));
    let help = rag().arg("--help").output().unwrap();
    assert!(String::from_utf8_lossy(&help.stdout).contains("index"));
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(code(&["index"]), Some(2));
    assert_eq!(code(&["query", "q"]), Some(2));
    assert_eq!(code(&["frobnicate"]), Some(2));
}

#[test]
fn completions_are_generated_for_each_shell() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let out = rag().args(["completion", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("rag"), "{shell}");
    }
}

#[test]
fn store_list_on_an_empty_data_folder_says_how_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = rag().args(["store", "list"]).env("RAG_DATA_DIR", dir.path()).output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("rag index"));
}
