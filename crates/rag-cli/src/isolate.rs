//! Document readers in a child process: a converter of untrusted binary
//! formats (PDF, Office, OpenDocument, EPUB) that panics, aborts, allocates
//! without bound or never returns fails its file only.
//!
//! The child is `rag` itself, run as `rag convert-document EXT` (a hidden
//! subcommand): the document's bytes on stdin, the answer on stdout (`O`
//! then the markdown, or `E` then the reason). The parent gives it an
//! address-space limit (Unix) and a time limit, after which it is killed.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rag_ingest::DocumentConverter;

/// The hidden subcommand the child runs.
pub const SUBCOMMAND: &str = "convert-document";

/// Runs documents' conversions in child processes with time and memory limits.
#[derive(Debug, Clone)]
pub struct ChildConverter {
    exe: PathBuf,
    timeout: Duration,
    memory_bytes: u64,
}

impl ChildConverter {
    /// Conversions by `exe convert-document`, each stopped after `timeout`
    /// and limited to `memory_bytes` of address space.
    pub fn new(exe: PathBuf, timeout: Duration, memory_bytes: u64) -> Self {
        Self { exe, timeout, memory_bytes }
    }

    /// Conversions by this very `rag` binary, each stopped after `timeout`
    /// and limited to `memory_mib` MiB; `None` (documents read in this
    /// process, with a warning) where the binary cannot be found.
    pub fn of_this_binary(timeout: Duration, memory_mib: u64) -> Option<Arc<Self>> {
        match std::env::current_exe() {
            Ok(exe) => Some(Arc::new(Self::new(exe, timeout, memory_mib.saturating_mul(1024 * 1024)))),
            Err(err) => {
                tracing::warn!("documents are read in this process: cannot find the rag binary ({err})");
                None
            }
        }
    }

    fn command(&self, extension: &str) -> Command {
        let mut command = Command::new(&self.exe);
        command.arg(SUBCOMMAND).arg(extension).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        // A reader's panic needs its message, not a backtrace: symbolising one
        // from a debug binary under the memory limit took 30 s and more.
        command.env("RUST_BACKTRACE", "0").env("RUST_LIB_BACKTRACE", "0");
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt;
            let limit = self.memory_bytes;
            // SAFETY: the closure runs in the forked child before exec and only
            // calls setrlimit, which is async-signal-safe; it allocates nothing.
            unsafe {
                command.pre_exec(move || {
                    let rlimit = libc::rlimit { rlim_cur: limit as libc::rlim_t, rlim_max: limit as libc::rlim_t };
                    if libc::setrlimit(libc::RLIMIT_AS, &rlimit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        command
    }
}

impl DocumentConverter for ChildConverter {
    fn convert(&self, extension: &str, bytes: &[u8]) -> Result<String, String> {
        let mut child =
            self.command(extension).spawn().map_err(|e| format!("cannot start the document reader: {e}"))?;
        let (Some(mut stdin), Some(mut stdout), Some(mut stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            let _ = child.kill();
            return Err("cannot talk to the document reader".into());
        };
        let input = bytes.to_vec();
        let writer = std::thread::spawn(move || {
            // A reader that dies early closes its end: nothing more to send.
            let _ = stdin.write_all(&input);
        });
        let reader = std::thread::spawn(move || {
            let mut out = Vec::new();
            let _ = stdout.read_to_end(&mut out);
            out
        });
        let errors = std::thread::spawn(move || {
            let mut out = Vec::new();
            let _ = (&mut stderr).take(64 * 1024).read_to_end(&mut out);
            out
        });
        let deadline = Instant::now() + self.timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(2)),
                Err(err) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("lost the document reader: {err}"));
                }
            }
        };
        let _ = writer.join();
        let out = reader.join().unwrap_or_default();
        let errors = errors.join().unwrap_or_default();
        let Some(status) = status else {
            return Err(format!(
                "the reader took longer than {} s and was stopped; raise --reader-timeout to give it more",
                self.timeout.as_secs_f64()
            ));
        };
        if status.success() {
            return match out.split_first() {
                Some((b'O', text)) => Ok(String::from_utf8_lossy(text).into_owned()),
                Some((b'E', reason)) => Err(String::from_utf8_lossy(reason).into_owned()),
                _ => Err("the document reader gave no answer".into()),
            };
        }
        let last_error = first_error(&String::from_utf8_lossy(&errors));
        let budget = self.memory_bytes / (1024 * 1024);
        #[cfg(unix)]
        if let Some(signal) = std::os::unix::process::ExitStatusExt::signal(&status) {
            return Err(format!(
                "the reader crashed (signal {signal}{}); it may have run out of its {budget} MiB memory budget \
                 (--reader-memory)",
                last_error.map_or_else(String::new, |e| format!(": {e}"))
            ));
        }
        Err(format!("the reader crashed ({}{})", status, last_error.map_or_else(String::new, |e| format!(": {e}"))))
    }
}

/// What a crashed reader said first: a panic's message (the line after
/// "panicked at"), else its first line ("memory allocation of N bytes failed").
fn first_error(stderr: &str) -> Option<String> {
    let lines: Vec<&str> = stderr.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let line = match lines.iter().position(|l| l.contains("panicked at")) {
        Some(i) => lines.get(i + 1).copied().unwrap_or(lines[i]),
        None => *lines.first()?,
    };
    Some(line.chars().take(200).collect())
}

/// The child's side: converts the document on stdin, answers on stdout.
pub fn serve(extension: &str) -> ExitCode {
    let mut bytes = Vec::new();
    if let Err(err) = std::io::stdin().read_to_end(&mut bytes) {
        eprintln!("error: cannot read the document: {err}");
        return ExitCode::FAILURE;
    }
    let answer = match rag_ingest::convert_document(extension, &bytes) {
        Ok(text) => [b"O".as_slice(), text.as_bytes()].concat(),
        Err(reason) => [b"E".as_slice(), reason.as_bytes()].concat(),
    };
    match std::io::stdout().lock().write_all(&answer) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crash_is_told_by_its_first_words() {
        let panic = "thread 'main' (42) panicked at src/cfb.rs:320:9:\nrange end index 9 out of range\nnote: run with `RUST_BACKTRACE=1`";
        assert_eq!(first_error(panic).as_deref(), Some("range end index 9 out of range"));
        assert_eq!(
            first_error("\nmemory allocation of 8000000000 bytes failed\n").as_deref(),
            Some("memory allocation of 8000000000 bytes failed")
        );
        assert_eq!(first_error("  \n"), None);
    }
}
