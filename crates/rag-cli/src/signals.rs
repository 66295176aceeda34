//! Stopping on SIGINT and SIGTERM: a run in progress ends cleanly (what was
//! written stays, nothing read when the signal came is counted as
//! unreadable), and reader children never outlive `rag`.

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};

/// Set once a stop signal has arrived.
static STOPPING: AtomicBool = AtomicBool::new(false);

/// Whether this process has been told to stop: a reader child that ended
/// after that was cut short, not defeated by its file.
pub fn stopping() -> bool {
    STOPPING.load(Ordering::SeqCst)
}

/// The exit status of a run stopped by a signal (the shell's 128 + SIGINT).
pub const INTERRUPTED_EXIT: u8 = 130;

/// Waits for SIGINT or SIGTERM (Ctrl-C elsewhere), and marks the process as
/// stopping. From the first call on, those signals no longer end the process
/// by themselves: the caller stops.
pub async fn stop_signal() -> Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
        let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await.context("cannot listen for Ctrl-C")?;
    STOPPING.store(true, Ordering::SeqCst);
    Ok(())
}
