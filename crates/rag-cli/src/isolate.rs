//! Document readers in a child process: a converter of untrusted binary
//! formats (PDF, Office, OpenDocument, EPUB) and of large HTML pages that panics, aborts, allocates
//! without bound or never returns fails its file only.
//!
//! The child is `rag` itself, run as `rag convert-document EXT` (a hidden
//! subcommand): the document's bytes on stdin, the answer on stdout (`O`
//! then the markdown, or `E` then the reason). The parent gives it an
//! address-space limit (Unix), a time limit after which it is killed, and a
//! bound on what it may answer. On Unix it runs in its own process group, so
//! a Ctrl-C at the terminal reaches `rag` (which stops cleanly) and not the
//! reader; on Linux it is killed if `rag` dies.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rag_ingest::{ConvertError, DocumentConverter};

/// The hidden subcommand the child runs.
pub const SUBCOMMAND: &str = "convert-document";

/// Most bytes a reader may answer with: more is refused as unreadable.
pub const MAX_ANSWER_BYTES: u64 = 256 * 1024 * 1024;

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
            #[cfg(target_os = "linux")]
            // SAFETY: getpid is async-signal-safe.
            let parent = unsafe { libc::getpid() };
            // SAFETY: the closure runs in the forked child before exec and only
            // calls setrlimit, setpgid, prctl and getppid, which are
            // async-signal-safe; it allocates nothing.
            unsafe {
                command.pre_exec(move || {
                    let rlimit = libc::rlimit { rlim_cur: limit as libc::rlim_t, rlim_max: limit as libc::rlim_t };
                    if libc::setrlimit(libc::RLIMIT_AS, &rlimit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    // Its own process group: the terminal's Ctrl-C goes to rag only.
                    if libc::setpgid(0, 0) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    #[cfg(target_os = "linux")]
                    {
                        // Killed when rag dies, even by SIGKILL.
                        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                        if libc::getppid() != parent {
                            return Err(std::io::Error::other("rag exited while its reader started"));
                        }
                    }
                    Ok(())
                });
            }
        }
        command
    }
}

impl DocumentConverter for ChildConverter {
    fn convert(&self, extension: &str, bytes: &[u8]) -> Result<String, ConvertError> {
        let answer = self.run(extension, bytes);
        // A reader that ends once rag is stopping was cut short, whatever it
        // died of: its file is read again next run.
        match answer {
            Err(ConvertError::Unreadable(reason)) if crate::signals::stopping() => {
                Err(ConvertError::Interrupted(format!("rag was stopped while the reader ran ({reason})")))
            }
            answer => answer,
        }
    }
}

impl ChildConverter {
    fn run(&self, extension: &str, bytes: &[u8]) -> Result<String, ConvertError> {
        let unreadable = ConvertError::Unreadable;
        let mut child = self
            .command(extension)
            .spawn()
            .map_err(|e| ConvertError::Interrupted(format!("cannot start the document reader: {e}")))?;
        let (Some(mut stdin), Some(stdout), Some(mut stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(ConvertError::Interrupted("cannot talk to the document reader".into()));
        };
        let input = bytes.to_vec();
        let writer = std::thread::spawn(move || {
            // A reader that dies early closes its end: nothing more to send.
            let _ = stdin.write_all(&input);
        });
        let overflowed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = std::thread::spawn({
            let overflowed = Arc::clone(&overflowed);
            move || {
                // One byte past the bound tells an answer that is too long.
                let mut out = Vec::new();
                let _ = stdout.take(MAX_ANSWER_BYTES + 1).read_to_end(&mut out);
                if out.len() as u64 > MAX_ANSWER_BYTES {
                    overflowed.store(true, std::sync::atomic::Ordering::SeqCst);
                }
                out
            }
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
                Ok(None) if Instant::now() >= deadline || overflowed.load(std::sync::atomic::Ordering::SeqCst) => {
                    // Out of time, or its answer passed the bound (the reader
                    // stopped reading while the child still writes).
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(2)),
                Err(err) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(ConvertError::Interrupted(format!("lost the document reader: {err}")));
                }
            }
        };
        let _ = writer.join();
        let out = reader.join().unwrap_or_default();
        let errors = errors.join().unwrap_or_default();
        if out.len() as u64 > MAX_ANSWER_BYTES {
            return Err(unreadable(format!(
                "the reader's text passed {} MiB and was stopped",
                MAX_ANSWER_BYTES / (1024 * 1024)
            )));
        }
        let Some(status) = status else {
            return Err(unreadable(format!(
                "the reader took longer than {} s and was stopped; raise --reader-timeout to give it more",
                self.timeout.as_secs_f64()
            )));
        };
        if status.success() {
            return match out.split_first() {
                Some((b'O', text)) => Ok(String::from_utf8_lossy(text).into_owned()),
                Some((b'E', reason)) => Err(unreadable(String::from_utf8_lossy(reason).into_owned())),
                _ => Err(unreadable("the document reader gave no answer".into())),
            };
        }
        let last_error = first_error(&String::from_utf8_lossy(&errors));
        let budget = self.memory_bytes / (1024 * 1024);
        #[cfg(unix)]
        if let Some(signal) = std::os::unix::process::ExitStatusExt::signal(&status) {
            // Signals rag never sends its readers: someone stopped this one.
            if [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT].contains(&signal) {
                return Err(ConvertError::Interrupted(format!("the reader was stopped by signal {signal}")));
            }
            return Err(unreadable(format!(
                "the reader crashed (signal {signal}{}); it may have run out of its {budget} MiB memory budget \
                 (--reader-memory)",
                last_error.map_or_else(String::new, |e| format!(": {e}"))
            )));
        }
        Err(unreadable(format!(
            "the reader crashed ({}{})",
            status,
            last_error.map_or_else(String::new, |e| format!(": {e}"))
        )))
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
