//! What the bounded fuzz loops share: a seeded sequence, the same on every
//! machine, and how many rounds to run.

/// Rounds a fuzz loop runs: `RAG_FUZZ_ROUNDS` if set, else `default`.
pub fn rounds(default: u64) -> u64 {
    std::env::var("RAG_FUZZ_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(default)
}

/// xorshift64*: a seeded sequence, the same on every machine, so a failing
/// round can be replayed from its seed.
///
/// ```
/// let (mut a, mut b) = (rag_testkit::fuzz::Rng(7), rag_testkit::fuzz::Rng(7));
/// assert_eq!(a.next(), b.next());
/// assert!(a.below(10) < 10);
/// ```
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    /// The next number of the sequence.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n` (below 1 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}
