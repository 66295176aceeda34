//! The progress bar of an index run: files done of files planned, and the
//! chunks embedded so far, drawn on stderr only on a terminal.

use std::sync::atomic::{AtomicUsize, Ordering};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rag_core::index::IndexObserver;

/// Progress bar on stderr, drawn only on a terminal.
pub struct Progress {
    bar: ProgressBar,
    embedded: AtomicUsize,
}

impl Progress {
    /// A bar drawn when `visible`, hidden otherwise.
    pub fn new(visible: bool) -> Self {
        let bar = if visible {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} files {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar
        } else {
            ProgressBar::hidden()
        };
        Self { bar, embedded: AtomicUsize::new(0) }
    }

    /// Clears the bar at the end of a run.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl IndexObserver for Progress {
    fn planned(&self, files: usize) {
        self.bar.set_length(files as u64);
    }
    fn file_done(&self, _path: &str) {
        self.bar.inc(1);
    }
    fn chunks_embedded(&self, count: usize) {
        let done = self.embedded.fetch_add(count, Ordering::Relaxed) + count;
        self.bar.set_message(format!("{done} chunks embedded"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chunk_count_adds_up_across_batches() {
        let progress = Progress::new(false);
        progress.planned(2);
        progress.chunks_embedded(16);
        progress.chunks_embedded(5);
        progress.file_done("a.md");
        assert_eq!(progress.embedded.load(Ordering::Relaxed), 21);
        assert_eq!(progress.bar.message(), "21 chunks embedded");
        assert_eq!(progress.bar.position(), 1);
    }
}
