//! Mini-batch index samplers for the SGD models of THEORY.md §0.
//!
//! - [`BatchScheme::IidSubsets`], model (S): every step draws a fresh batch uniform over the
//!   `binom(n, B)` subsets of size `B`, independently of all other steps. Implementation: a
//!   *partial Fisher–Yates* shuffle of the first `B` slots of an index buffer (`swap(k, j)` with
//!   `j` uniform in `k..n` for `k = 0..B`), which yields a uniform ordered `B`-tuple of distinct
//!   indices, hence a uniform `B`-subset; the `B` swaps are then undone in reverse order so the
//!   buffer is the identity again. Cost `O(B)` per step, no allocation after construction.
//! - [`BatchScheme::IidWithReplacement`], model (S′): `B` i.i.d. uniform indices (duplicates kept).
//! - [`BatchScheme::EpochReshuffle`]: one Fisher–Yates shuffle of `0..n` per epoch, consecutive
//!   chunks of `B` (the last incomplete chunk is dropped, like PyTorch's `drop_last=True`, so
//!   every step averages exactly `B` gradients). Batches are **not** independent across steps:
//!   the theory does not cover this scheme (THEORY.md §0).

use rand::{Rng, RngExt};

use crate::error::{Error, Result};

/// How mini-batches are drawn (THEORY.md §0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BatchScheme {
    /// Model (S), the one the theorems assume: a fresh uniform `B`-subset (no replacement inside
    /// the batch) at every step, independent across steps. The default.
    #[default]
    IidSubsets,
    /// Model (S′): `B` i.i.d. uniform indices per step, duplicates counted.
    IidWithReplacement,
    /// Per-epoch reshuffling (what most training loops do). **Not covered by the theory**:
    /// batches within an epoch are dependent (disjoint).
    EpochReshuffle,
}

impl BatchScheme {
    /// Parse a `--sampling` value: `subsets` (alias `iid_subsets`, `s`), `with_replacement`
    /// (alias `iid_with_replacement`, `replacement`, `s'`), `epoch` (alias `epoch_reshuffle`,
    /// `reshuffle`).
    pub fn parse(name: &str) -> Result<Self> {
        match name.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "subsets" | "iid_subsets" | "s" => Ok(BatchScheme::IidSubsets),
            "with_replacement" | "iid_with_replacement" | "replacement" | "s'" => {
                Ok(BatchScheme::IidWithReplacement)
            }
            "epoch" | "epoch_reshuffle" | "reshuffle" => Ok(BatchScheme::EpochReshuffle),
            _ => Err(Error::invalid_argument(
                "--sampling",
                format!(
                    "unknown sampling scheme '{name}'; expected subsets (model S, default), \
                     with_replacement (model S') or epoch (per-epoch reshuffle, not covered by the theory)"
                ),
            )),
        }
    }

    /// Canonical name (`iid_subsets`, `iid_with_replacement`, `epoch_reshuffle`), as written in
    /// checkpoint metadata; accepted by [`BatchScheme::parse`].
    pub fn name(&self) -> &'static str {
        match self {
            BatchScheme::IidSubsets => "iid_subsets",
            BatchScheme::IidWithReplacement => "iid_with_replacement",
            BatchScheme::EpochReshuffle => "epoch_reshuffle",
        }
    }

    /// True for the schemes the theorems of THEORY.md cover, (S) and (S′); false for per-epoch
    /// reshuffling, which reports must label as outside the theory.
    pub fn covered_by_theory(&self) -> bool {
        !matches!(self, BatchScheme::EpochReshuffle)
    }

    /// True when a batch never repeats an index, so `B ≤ n` is required.
    pub fn without_replacement(&self) -> bool {
        !matches!(self, BatchScheme::IidWithReplacement)
    }
}

/// Draws the index batches `ξ_0, ξ_1, …` of one training run (see the module docs for the
/// algorithms). All buffers are allocated once in [`BatchSampler::new`].
#[derive(Debug, Clone)]
pub struct BatchSampler {
    sampling: BatchScheme,
    n: usize,
    batch: usize,
    /// Index buffer: the identity between steps for (S); the epoch permutation otherwise.
    perm: Vec<usize>,
    /// Swap partners of the current partial Fisher–Yates, to undo it.
    swaps: Vec<usize>,
    /// The current batch.
    out: Vec<usize>,
    /// Next unused position of `perm` in the current epoch (`EpochReshuffle`).
    epoch_pos: usize,
}

impl BatchSampler {
    /// A sampler of batches of size `batch` from `0..n`. Errors (naming `--batch`) if
    /// `batch = 0`, `n = 0`, or `batch > n` for a scheme without replacement.
    pub fn new(sampling: BatchScheme, n: usize, batch: usize) -> Result<Self> {
        if n == 0 {
            return Err(Error::invalid_argument(
                "--batch",
                "cannot draw batches from an empty data set (n = 0)",
            ));
        }
        if batch == 0 || (sampling.without_replacement() && batch > n) {
            return Err(Error::invalid_argument(
                "--batch",
                format!(
                    "batch size {batch} is outside 1..={n} (n = {n} samples, {} sampling)",
                    sampling.name()
                ),
            ));
        }
        let perm = if sampling.without_replacement() {
            (0..n).collect()
        } else {
            Vec::new()
        };
        Ok(Self {
            sampling,
            n,
            batch,
            perm,
            swaps: vec![
                0;
                if sampling == BatchScheme::IidSubsets {
                    batch
                } else {
                    0
                }
            ],
            out: vec![0; batch],
            epoch_pos: n, // forces a shuffle before the first epoch
        })
    }

    /// The scheme.
    pub fn sampling(&self) -> BatchScheme {
        self.sampling
    }

    /// Draw the next batch (`B` indices in `0..n`). For (S) the indices are distinct and the
    /// batch is a uniform `B`-subset independent of all earlier draws (THEORY.md §0).
    pub fn next_batch<R: Rng + ?Sized>(&mut self, rng: &mut R) -> &[usize] {
        let (n, b) = (self.n, self.batch);
        match self.sampling {
            BatchScheme::IidSubsets => {
                for k in 0..b {
                    let j = rng.random_range(k..n);
                    self.perm.swap(k, j);
                    self.swaps[k] = j;
                }
                self.out.copy_from_slice(&self.perm[..b]);
                for k in (0..b).rev() {
                    self.perm.swap(k, self.swaps[k]);
                }
            }
            BatchScheme::IidWithReplacement => {
                for slot in &mut self.out {
                    *slot = rng.random_range(0..n);
                }
            }
            BatchScheme::EpochReshuffle => {
                if self.epoch_pos + b > n {
                    for k in (1..n).rev() {
                        let j = rng.random_range(0..=k);
                        self.perm.swap(k, j);
                    }
                    self.epoch_pos = 0;
                }
                self.out
                    .copy_from_slice(&self.perm[self.epoch_pos..self.epoch_pos + b]);
                self.epoch_pos += b;
            }
        }
        &self.out
    }

    /// True when the internal index buffer is the identity (the (S) invariant between steps).
    #[cfg(test)]
    pub(crate) fn buffer_is_identity(&self) -> bool {
        self.perm.iter().enumerate().all(|(i, &v)| i == v)
    }
}
