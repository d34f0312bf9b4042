//! The exact Gram path and the per-sample curvature of a [`Sequential`] network (CNNs
//! included), THEORY.md §4 "Gram matrix" generalized by §7(c), (e):
//!
//! - the per-sample Jacobian rows `J_i` (`C × P`, θ in the network's flat order, biases
//!   included), **materialized one block of samples at a time** from the batched backward pass
//!   for all C outputs ([`Sequential::backward_outputs`]) and each layer's per-row parameter
//!   gradients ([`crate::net::Layer::row_param_grads`]: `δhᵀ` for a dense layer, one small GEMM of δ
//!   against the im2col patches for a convolution, §7(e));
//! - `K = (1/n)·[⟨J_{i,c}, J_{j,c′}⟩]` (`nC × nC`, row `i·C + c`) as the same
//!   [`GramMatrix`] as the dense path, streamed by blocks `K_(I,J) = (1/n) J_I J_Jᵀ`, with the
//!   rigorous formation-error bound of THEORY.md §3 item 2;
//! - per sample, `λ_i = λ_max(J_iJ_iᵀ)`, `tr H_i = ‖J_i‖_F²` and `‖H_i‖_F² = ‖J_iJ_iᵀ‖_F²`
//!   (`H_i = J_iᵀJ_i`, the Gauss–Newton model of T5).
//!
//! Memory is bounded by the block size: at most `rayon threads + 1` blocks of `J` (each
//! `block·C × P`, signed and absolute) are alive at once, never all n.

use nalgebra::DMatrix;
use rayon::prelude::*;

use super::arch::LayerSpec;
use super::curvature::{blocks_of, check_data, jacobian_chain_length, net_error, sub_batch};
use super::sequential::{NetCache, Sequential};
use super::tensor::{Shape, Tensor};
use crate::error::{Error, Result};
use crate::measure::QuantityMap;
use crate::measure::gram::{GramMatrix, GramOptions, format_bytes};
use crate::measure::hvp::mm;
use crate::quantity::{Quantity, gamma, round_up};

/// The per-sample Jacobian rows of one block of samples (THEORY.md §0: row `c` of `J_i` is
/// `∇_θ f_c(x_i)ᵀ`), stored as columns: column `(i − start)·C + c` of [`Self::rows`] is
/// `∇_θ f_c(x_i)` (length P, θ in [`Sequential::params`] order).
#[derive(Debug, Clone)]
pub struct JacobianBlock {
    /// First sample of the block.
    pub start: usize,
    /// One past the last sample.
    pub end: usize,
    /// Number of outputs C.
    pub outputs: usize,
    /// `P × bC`: the computed `Ĵ` rows as columns.
    pub rows: DMatrix<f64>,
    /// `P × bC`, when requested: the same entries computed from `|cotangent|` and `|layer
    /// input|` (`|δ||h|ᵀ`, or `Σ_t |δ_t||p_t|` for a convolution): an entrywise upper bound of
    /// `|J|` given the computed passes, used by the formation-error bound (THEORY.md §3 item 2).
    pub abs_rows: Option<DMatrix<f64>>,
}

fn abs_tensor(t: &Tensor) -> Tensor {
    Tensor {
        batch: t.batch,
        shape: t.shape,
        data: t.data.iter().map(|v| v.abs()).collect(),
    }
}

/// `P × bC` rows from a forward cache and the backward pass for all outputs.
fn rows_from(net: &Sequential, cache: &NetCache, cot: &[Tensor]) -> DMatrix<f64> {
    let c = net.output_dim();
    let b = cache.batch_size();
    let p = net.num_params();
    let off = net.param_offsets();
    let mut out = DMatrix::zeros(p, b * c);
    for (j, l) in net.layers().iter().enumerate() {
        let pj = l.num_params();
        if pj == 0 {
            continue;
        }
        let g = l.row_param_grads(&cache.inputs[j], &cot[j + 1]);
        out.as_mut_slice()
            .par_chunks_mut(p)
            .zip(g.par_chunks(pj))
            .for_each(|(col, row)| col[off[j]..off[j + 1]].copy_from_slice(row));
    }
    out
}

/// Materialize `J_i` for the samples `start..end` of `x` (THEORY.md §7(e)): one forward pass,
/// one backward pass for all C outputs, then each layer's per-row parameter gradients. With
/// `with_abs`, also the absolute-value rows of [`JacobianBlock::abs_rows`]. Memory
/// `O((end − start)·C·P)`.
pub fn jacobian_block(
    net: &Sequential,
    x: &Tensor,
    start: usize,
    end: usize,
    with_abs: bool,
) -> Result<JacobianBlock> {
    check_data(net, x, None)?;
    if start >= end || end > x.batch {
        return Err(Error::Internal(format!(
            "Jacobian block {start}..{end} of {} samples",
            x.batch
        )));
    }
    let cache = net
        .forward_cache(&sub_batch(x, start, end))
        .map_err(net_error)?;
    let cot = net.backward_outputs(&cache);
    let rows = rows_from(net, &cache, &cot);
    let abs_rows = with_abs.then(|| {
        let abs_cache = NetCache {
            inputs: cache.inputs.iter().map(abs_tensor).collect(),
        };
        let abs_cot: Vec<Tensor> = cot.iter().map(abs_tensor).collect();
        rows_from(net, &abs_cache, &abs_cot)
    });
    Ok(JacobianBlock {
        start,
        end,
        outputs: net.output_dim(),
        rows,
        abs_rows,
    })
}

/// The longest weight-gradient sum `T` over the layers: `H_out·W_out` of a convolution, 1 for a
/// dense layer (one product `δ_a h_b`), 0 without parameters.
fn max_gradient_sum(net: &Sequential) -> usize {
    let sh = net.shapes();
    net.layers()
        .iter()
        .enumerate()
        .map(|(j, l)| match l.spec() {
            LayerSpec::Conv2d { .. } => sh[j + 1].len() / sh[j + 1].dims()[0].max(1),
            LayerSpec::Linear { .. } => 1,
            // γ_c: Σ over the H·W pixels of (x − μ)/s times the cotangent.
            LayerSpec::BatchNorm2d { .. } => sh[j + 1].len() / sh[j + 1].dims()[0].max(1),
            _ => 0,
        })
        .max()
        .unwrap_or(0)
}

/// The inner-product length `k = P + 2T + 2` of the formation error (THEORY.md §3 item 2 for a
/// materialized J): each entry of `Ĵ` is a sum of at most `T` products of the given cotangents
/// and layer inputs (`|Ĵ − J̃| ≤ γ_T·J_abs`), `K̂` adds inner products of length P and the `1/n`,
/// and `(1 + γ_a)(1 + γ_b) ≤ 1 + γ_{a+b}` collects the steps.
pub fn net_gram_rounding_length(net: &Sequential) -> usize {
    net.num_params() + 2 * max_gradient_sum(net) + 2
}

/// Peak memory of [`build_gram`] in bytes (refused above `opts.memory_limit_bytes`): `7N²`
/// doubles with `N = nC` (K, the eigensolver's copy and vectors, and the residual, scaled-vector
/// and orthogonality matrices of the Weyl bound, as [`crate::measure::gram::gram_memory_bytes`]),
/// plus `threads + 1` Jacobian blocks (signed and absolute, `2·block·C·P` each) and, per block,
/// the forward cache and the cotangents of all C outputs (twice, for the absolute pass).
pub fn net_gram_memory_bytes(net: &Sequential, n: usize, block: usize) -> usize {
    let c = net.output_dim();
    let big_n = n.saturating_mul(c);
    let b = block.max(1).min(n.max(1));
    let act: usize = net.shapes().iter().map(Shape::len).sum();
    let per_block = b
        .saturating_mul(c)
        .saturating_mul(net.num_params())
        .saturating_mul(2)
        .saturating_add(b.saturating_mul(act).saturating_mul(2 * (c + 1)));
    let blocks = rayon::current_num_threads() + 1;
    big_n
        .saturating_mul(big_n)
        .saturating_mul(7)
        .saturating_add(per_block.saturating_mul(blocks))
        .saturating_mul(8)
}

/// Build `K = (1/n)𝐉𝐉ᵀ` of a [`Sequential`] on the samples `x` (THEORY.md §4 "Gram matrix",
/// §7(c)), the same [`GramMatrix`] as [`crate::measure::gram::build_gram`]: `nC × nC`, row and
/// column `i·C + c`, entry `(1/n)⟨∇_θ f_c(x_i), ∇_θ f_{c′}(x_j)⟩` over all P parameters
/// (biases included), exactly symmetric (lower triangle copied up). Feed it to
/// [`crate::measure::gram::gram_spectrum`] for the rigorous λ_max bracket, tr G, ‖G‖_F and the
/// reduced model of T5(e)–(h).
///
/// Streamed: for each block I of `opts.block` samples, `J_I` is materialized and `K_(I,J) =
/// (1/n)·J_IᵀJ_J` is formed by GEMM for every block `J ≤ I`. Refuses when
/// [`net_gram_memory_bytes`] (K, its eigensolver and the working set of a few blocks) exceeds
/// `opts.memory_limit_bytes`. Each materialized block is then kept for the later rows while it
/// fits in the memory left under the limit (so the peak never exceeds it); a block that was not
/// kept is re-materialized for each later row (up to `nb(nb+1)/2` backward passes for `nb`
/// blocks when the limit is tight, `nb` when everything fits).
///
/// Rigour (THEORY.md §3 item 2, for a materialized J): `‖K − K̂‖_F ≤ γ_{k+1}‖K_abs‖_F`
/// ([`GramMatrix::formation_error`]) with `k` = [`net_gram_rounding_length`] and
/// `K_abs = (1/n)·J_abs J_absᵀ` from [`JacobianBlock::abs_rows`] (one more γ step covers the
/// rounding of the computed `J_abs` and of its norm). **Covered**: the formation of each J entry
/// from the computed cotangents and layer inputs (the conv's sum over output positions), the
/// inner products of length P, the `1/n`. **Not covered** (as in the dense path, whose bound
/// starts "from given Δ_l, A_l"): the rounding of the forward and backward passes themselves,
/// THEORY.md §3 item 1, an a-priori estimate of relative size `2γ_K`
/// ([`super::curvature::jacobian_chain_length`]) that callers list as assumed.
pub fn build_gram(net: &Sequential, x: &Tensor, opts: &GramOptions) -> Result<GramMatrix> {
    check_data(net, x, None)?;
    let n = x.batch;
    let c = net.output_dim();
    let block = opts.block.max(1);
    let need = net_gram_memory_bytes(net, n, block);
    if need > opts.memory_limit_bytes {
        return Err(Error::invalid_argument(
            "--max-memory",
            format!(
                "the exact Gram path for nC = {} needs about {}, more than the memory limit of \
                 {}; raise --max-memory if the machine has it, lower the block size, or \
                 subsample the data (or use the operator path)",
                n * c,
                format_bytes(need),
                format_bytes(opts.memory_limit_bytes)
            ),
        ));
    }
    let big_n = n * c;
    let inv_n = 1.0 / n as f64;
    let blocks = blocks_of(n, block);
    // Blocks already materialized (as the outer block of an earlier row) are kept while they
    // fit in the memory left under the limit; the others are re-materialized when needed.
    let mut budget = opts.memory_limit_bytes - need;
    let mut kept: Vec<Option<JacobianBlock>> = vec![None; blocks.len()];
    let mut k = DMatrix::zeros(big_n, big_n);
    let mut abs_sq = 0.0;
    for (bi, &(si, ei)) in blocks.iter().enumerate() {
        let ji = jacobian_block(net, x, si, ei, true)?;
        let ai = ji.abs_rows.as_ref().expect("requested");
        // Blocks J ≤ I in parallel; each result is one GEMM pair, added in block order.
        let parts = blocks[..=bi]
            .par_iter()
            .zip(&kept[..=bi])
            .map(|(&(sj, ej), stored)| -> Result<(DMatrix<f64>, f64)> {
                let own;
                let jj = match stored {
                    _ if sj == si => &ji,
                    Some(b) => b,
                    None => {
                        own = jacobian_block(net, x, sj, ej, true)?;
                        &own
                    }
                };
                let aj = jj.abs_rows.as_ref().expect("requested");
                let kij = mm::mul(mm::view(&ji.rows).transpose(), mm::view(&jj.rows));
                let aij = mm::mul(mm::view(ai).transpose(), mm::view(aj));
                Ok((kij, aij.norm_squared()))
            })
            .collect::<Result<Vec<_>>>()?;
        for (&(sj, ej), (kij, asq)) in blocks[..=bi].iter().zip(parts) {
            k.view_mut((si * c, sj * c), ((ei - si) * c, (ej - sj) * c))
                .copy_from(&(kij * inv_n));
            // Off-diagonal blocks appear twice in K_abs.
            abs_sq += if sj == si { asq } else { 2.0 * asq };
        }
        let size = 2 * ji.rows.len() * 8;
        if size <= budget {
            budget -= size;
            kept[bi] = Some(ji);
        }
    }
    // Exactly symmetric: copy the lower triangle up (each entry keeps its own error bound).
    for j in 0..big_n {
        for i in 0..j {
            k[(i, j)] = k[(j, i)];
        }
    }
    let abs_frobenius = round_up(abs_sq.sqrt() * inv_n * (1.0 + gamma(big_n * big_n + 2)));
    let rounding_length = net_gram_rounding_length(net);
    let formation_error = round_up(gamma(rounding_length + 1) * abs_frobenius);
    Ok(GramMatrix {
        k,
        n,
        outputs: c,
        abs_frobenius,
        rounding_length,
        formation_error,
    })
}

/// Per-sample curvature of a [`Sequential`] (THEORY.md §4 "Per-sample quantities", §7(c)):
/// `H_i = J_iᵀJ_i` (the Gauss–Newton model), vectors indexed by sample. Every number is of kind
/// **exact** with an **a-priori** tolerance ([`Self::err`]; THEORY.md §3 item 1 "Otherwise":
/// no rigorous running bound through conv/pool layers yet, so the tol is an assumed estimate).
#[derive(Debug, Clone, PartialEq)]
pub struct NetCurvatureStats {
    /// Number of outputs C.
    pub outputs: usize,
    /// `λ_i = λ_max(J_iJ_iᵀ) = λ_max(J_iᵀJ_i) = ‖J_i‖₂²`.
    pub lambda: Vec<f64>,
    /// `tr H_i = ‖J_i‖_F²` (the trace of the C×C Gram).
    pub trace: Vec<f64>,
    /// `‖H_i‖_F² = ‖J_iJ_iᵀ‖_F²`.
    pub fro_sq: Vec<f64>,
    /// The C×C matrices `J_iJ_iᵀ`, row-major, sample after sample (`n·C²` entries), as
    /// [`crate::measure::per_sample::PerSampleStats::jjt`].
    pub jjt: Vec<f64>,
    /// Relative a-priori rounding estimate of `‖Ĵ_i − J_i‖_F / ‖J_i‖_F`: `γ_K` with `K` =
    /// [`super::curvature::jacobian_chain_length`] (assumed; THEORY.md §3 item 1).
    pub jacobian_rel_tol: f64,
    /// `γ` of the per-sample Gram's own formation (`P + 2T + 2`, [`net_gram_rounding_length`]),
    /// plus the C×C eigensolver (`8C² + 4`), as a relative size.
    pub gram_rel_tol: f64,
}

impl NetCurvatureStats {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.trace.len()
    }
    /// True when there are no samples.
    pub fn is_empty(&self) -> bool {
        self.trace.is_empty()
    }
    /// A-priori bound of `|tr H_i − trace[i]|`, of `‖H_i − Ĝ_i‖_F` and hence (Weyl) of
    /// `|λ_i − lambda[i]|`: with `e = jacobian_rel_tol·‖Ĵ_i‖_F` the estimated `‖Ĵ_i − J_i‖_F`,
    /// `(2‖Ĵ_i‖_F + e)e + tr·gram_rel_tol`, rounded up (the same form as
    /// [`crate::measure::per_sample::PerSampleStats::param_sq_err`], with an estimated e).
    pub fn err(&self, i: usize) -> f64 {
        let t = self.trace[i];
        let a = t.sqrt();
        let e = self.jacobian_rel_tol * a;
        round_up((2.0 * a + e) * e + t * self.gram_rel_tol)
    }

    /// The per-sample quantities with the names of the dense path (`certify::evidence::names`):
    /// `per_sample_lambda_max` = max_i λ_i, `per_sample_trace_sq_mean` = (1/n)Σ_i (tr H_i)²,
    /// `per_sample_fro_sq_mean` = (1/n)Σ_i ‖H_i‖_F² (T5(g), T5(i), T6, T7(d)), each kind exact
    /// with the a-priori tol of [`Self::err`] propagated as in the dense collector (a max moves
    /// by the largest err, a mean by the mean of `(2x + δ)δ`, plus the aggregation's rounding).
    /// The Wu–Ma–E `nonuniformity` is not here: it comes from the Gram path's reduced model
    /// ([`crate::measure::stability::wme_quantities`] on the [`GramMatrix`] of [`build_gram`]).
    pub fn quantities(&self) -> QuantityMap {
        let n = self.len();
        let nf = n as f64;
        let c = self.outputs.max(1);
        let note = "tol: a-priori rounding estimate of the conv/pool backward pass (THEORY §3 item 1, \
                    assumed)";
        let mut q = QuantityMap::new();
        let lmax = self.lambda.iter().copied().fold(0.0, f64::max);
        let lmax_err = (0..n).fold(0.0f64, |m, i| m.max(self.err(i)));
        q.insert(
            "per_sample_lambda_max".into(),
            Quantity::exact(lmax, round_up(lmax_err))
                .with_method("max_i λ_max(J_iJ_iᵀ), J_i materialized per block (THEORY §7(e))")
                .with_note(note),
        );
        let tr2 = self.trace.iter().map(|t| t * t).sum::<f64>() / nf;
        let tr2_err = (0..n)
            .map(|i| {
                let d = self.err(i);
                (2.0 * self.trace[i] + d) * d
            })
            .sum::<f64>()
            / nf;
        q.insert(
            "per_sample_trace_sq_mean".into(),
            Quantity::exact(
                tr2,
                round_up(tr2_err * (1.0 + gamma(n + 4)) + tr2 * gamma(n + 2)),
            )
            .with_method("(1/n) Σ_i (tr H_i)² = (1/n) Σ_i ‖J_i‖_F⁴ (T5g, T7d)")
            .with_note(note),
        );
        let fro2 = self.fro_sq.iter().sum::<f64>() / nf;
        let fro2_err = (0..n)
            .map(|i| {
                let d = self.err(i);
                (2.0 * self.fro_sq[i].sqrt() * (1.0 + gamma(c * c + 2)) + d) * d
            })
            .sum::<f64>()
            / nf;
        q.insert(
            "per_sample_fro_sq_mean".into(),
            Quantity::exact(
                fro2,
                round_up(fro2_err * (1.0 + gamma(n + 4)) + fro2 * gamma(c * c + n + 2)),
            )
            .with_method("(1/n) Σ_i ‖H_i‖_F², ‖H_i‖_F = ‖J_iJ_iᵀ‖_F (T5g)")
            .with_note(note),
        );
        q
    }
}

/// Largest eigenvalue of a small symmetric matrix (C×C).
fn small_lambda_max(m: &DMatrix<f64>) -> f64 {
    if m.nrows() == 1 {
        return m[(0, 0)];
    }
    m.clone()
        .symmetric_eigenvalues()
        .iter()
        .fold(f64::NEG_INFINITY, |a, &b| a.max(b))
}

/// Per-sample `λ_i`, `tr H_i`, `‖H_i‖_F²` and `J_iJ_iᵀ` of a [`Sequential`] on `x` (THEORY.md §4
/// "Per-sample quantities", §7(e)), from [`jacobian_block`]s of `block` samples (memory
/// `O(block·C·P)`). The C×C Gram `J_iJ_iᵀ` is one small GEMM per sample.
pub fn per_sample_curvature(
    net: &Sequential,
    x: &Tensor,
    block: usize,
) -> Result<NetCurvatureStats> {
    check_data(net, x, None)?;
    let c = net.output_dim();
    let n = x.batch;
    let mut out = NetCurvatureStats {
        outputs: c,
        lambda: Vec::with_capacity(n),
        trace: Vec::with_capacity(n),
        fro_sq: Vec::with_capacity(n),
        jjt: Vec::with_capacity(n * c * c),
        jacobian_rel_tol: gamma(jacobian_chain_length(net)),
        gram_rel_tol: gamma(net_gram_rounding_length(net) + 8 * c * c + 4),
    };
    for (s, e) in blocks_of(n, block) {
        let jb = jacobian_block(net, x, s, e, false)?;
        let per: Vec<DMatrix<f64>> = (0..e - s)
            .into_par_iter()
            .map(|i| {
                let cols = jb.rows.columns(i * c, c);
                let g = cols.transpose() * cols;
                // Exactly symmetric, as the dense path's per-sample Gram.
                DMatrix::from_fn(c, c, |a, b| if a >= b { g[(a, b)] } else { g[(b, a)] })
            })
            .collect();
        for g in per {
            out.trace.push(g.trace());
            out.fro_sq.push(g.norm_squared());
            out.lambda.push(small_lambda_max(&g));
            for a in 0..c {
                for b in 0..c {
                    out.jjt.push(g[(a, b)]);
                }
            }
        }
    }
    if let Some(i) = (0..n).find(|&i| !(out.trace[i].is_finite() && out.lambda[i].is_finite())) {
        return Err(Error::Numerical(format!(
            "per-sample Jacobian of sample {i} is not finite (overflow in the network)"
        )));
    }
    Ok(out)
}

/// The stacked Jacobian `𝐉` (`nC × P`, row `i·C + c` = `∇_θ f_c(x_i)ᵀ`) of all samples at once:
/// for tests and small problems only (memory `nC·P`); [`jacobian_block`] is the bounded form.
pub fn stacked_jacobian(net: &Sequential, x: &Tensor) -> Result<DMatrix<f64>> {
    Ok(jacobian_block(net, x, 0, x.batch, false)?.rows.transpose())
}
