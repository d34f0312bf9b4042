//! Per-sample quantities of a [`Sequential`] network (THEORY.md §4 and §7(e)): Jacobian norms,
//! first-layer and input-gradient norms, the moments g_W(k) and g_x(k) of T7(e), the T1b
//! identity, and the per-sample loss-gradient norms — without materializing full per-sample
//! gradients. Dense layers use the factorized sums of §4; a convolution's per-sample weight
//! gradient (C_out·C_in·k_h·k_w entries) is formed by one small GEMM per sample (§7(e)).
//!
//! Every number here is computed in f64 and is of kind *exact* up to floating-point rounding
//! (no estimate, no bound); no rounding error bound is attached yet.

use rayon::prelude::*;

use super::error::{NetError, NetResult};
use super::sequential::Sequential;
use super::tensor::{Shape, Tensor};

/// Per-sample statistics of the Jacobians `J_i = ∂f(x_i)/∂θ` (`C × P`) and `J_x(x_i)`.
#[derive(Debug, Clone, PartialEq)]
pub struct NetPerSample {
    /// Number of samples n.
    pub n: usize,
    /// Number of outputs C.
    pub outputs: usize,
    /// The moment orders k (THEORY.md T7(e)), e.g. `[1, 2, 4]`.
    pub ks: Vec<u32>,
    /// `‖J_i‖_F² = Σ_c ‖∇_θ f_c(x_i)‖² = tr(J_iᵀJ_i)`, all layers and biases (kind: exact).
    pub jacobian_sq: Vec<f64>,
    /// `‖J_W(x_i)‖_F²`, the first layer's weight block (no bias), as in T1–T3 (kind: exact).
    pub first_layer_sq: Vec<f64>,
    /// `‖J_x(x_i)‖_F²` (kind: exact).
    pub input_sq: Vec<f64>,
    /// `g_W(k) = ((1/n)Σ_iΣ_cΣ_p|∂f_c(x_i)/∂θ_p|^{2k})^{1/(2k)}` for each k of `ks`, all
    /// parameters and biases; `g_W(1)² = tr G` (kind: exact).
    pub g_w: Vec<f64>,
    /// `g_x(k) = ((1/n)Σ_iΣ_cΣ_j|∂f_c(x_i)/∂x_j|^{2k})^{1/(2k)}` (kind: exact).
    pub g_x: Vec<f64>,
    /// T1b per sample and output (`n·C`, row `i·C + c`): `⟨x_i, ∇_x f_c(x_i)⟩` by forward mode
    /// (a JVP along `x_i`), independent of the backward pass.
    pub t1b_input_side: Vec<f64>,
    /// T1b: `⟨W, ∇_W f_c(x_i)⟩` from the backward pass (the first layer's weight gradient).
    pub t1b_weight_side: Vec<f64>,
    /// Largest T1b residual `|⟨x,∇_x f_c⟩ − ⟨W,∇_W f_c⟩| / (‖x_i‖‖∇_x f_c‖ + ‖W‖_F‖∇_W f_c‖_F)`
    /// over samples and outputs (0 where the scale is 0). The scale bounds both sides by
    /// Cauchy–Schwarz, so a residual near u = 1.1e-16 means the identity holds to rounding.
    pub t1b_max_rel_residual: f64,
}

/// Options of [`per_sample_stats`].
#[derive(Debug, Clone, PartialEq)]
pub struct PerSampleOptions {
    /// Moment orders k ≥ 1 (THEORY.md T7(e)).
    pub ks: Vec<u32>,
    /// Samples per block: memory is O(block · C · the largest activation).
    pub block: usize,
}

impl Default for PerSampleOptions {
    fn default() -> Self {
        Self {
            ks: vec![1, 2, 4],
            block: 64,
        }
    }
}

/// Per-block partial results, merged in sample order.
struct Block {
    jac: Vec<f64>,
    first: Vec<f64>,
    input: Vec<f64>,
    sw: Vec<f64>,
    sx: Vec<f64>,
    t1x: Vec<f64>,
    t1w: Vec<f64>,
    rel: f64,
}

fn check_data(net: &Sequential, x: &Tensor) -> NetResult<()> {
    if x.shape != net.input_shape() || x.batch == 0 {
        return Err(NetError::Input(format!(
            "{} samples of shape {}, expected at least one of shape {}",
            x.batch,
            x.shape,
            net.input_shape()
        )));
    }
    Ok(())
}

fn sub_batch(x: &Tensor, start: usize, end: usize) -> Tensor {
    let len = x.row_len();
    Tensor {
        batch: end - start,
        shape: x.shape,
        data: x.data[start * len..end * len].to_vec(),
    }
}

/// Per-sample Jacobian norms, moments and the T1b check for the samples `x` (THEORY.md §4,
/// §7(a), §7(e), T7(e)). Requires the first layer to carry the bilinear weight `W` (a `conv2d`
/// or `linear` layer at index 0), as T1b does.
pub fn per_sample_stats(
    net: &Sequential,
    x: &Tensor,
    opts: &PerSampleOptions,
) -> NetResult<NetPerSample> {
    check_data(net, x)?;
    let first = &net.layers()[0];
    let bilinear = matches!(
        first.spec(),
        super::LayerSpec::Conv2d { .. } | super::LayerSpec::Linear { .. }
    );
    let Some(nw) = first.weight_len().filter(|_| bilinear) else {
        return Err(NetError::Input(format!(
            "the first layer is {}; T1b and J_W need a bilinear first layer (conv2d or linear)",
            first.kind()
        )));
    };
    if opts.ks.is_empty() || opts.ks.contains(&0) || opts.block == 0 {
        return Err(NetError::Input(
            "moment orders k must be ≥ 1 and the block size positive".into(),
        ));
    }
    let w = first.params();
    let w_norm = w[..nw].iter().map(|v| v * v).sum::<f64>().sqrt();
    // Powers 2 (norms) and 2k (moments).
    let mut powers: Vec<i32> = vec![2];
    powers.extend(opts.ks.iter().map(|&k| 2 * k as i32));
    let np = powers.len();
    let c = net.output_dim();
    let n = x.batch;
    let starts: Vec<usize> = (0..n).step_by(opts.block).collect();
    let blocks: Vec<Block> = starts
        .iter()
        .map(|&s| -> NetResult<Block> {
            let e = (s + opts.block).min(n);
            let xb = sub_batch(x, s, e);
            let b = e - s;
            let cache = net.forward_cache(&xb)?;
            let cot = net.backward_outputs(&cache);
            // Parameter power sums, rows i·C + c, summed over layers.
            let mut rows = vec![0.0; b * c * np];
            let mut first_rows = vec![0.0; b * c];
            for (j, l) in net.layers().iter().enumerate() {
                if l.num_params() == 0 {
                    continue;
                }
                let ps = l.row_param_power_sums(&cache.inputs[j], &cot[j + 1], &powers);
                for (r, acc) in rows.iter_mut().enumerate() {
                    *acc += ps.weight[r] + ps.bias[r];
                }
                if j == 0 {
                    for (r, f) in first_rows.iter_mut().enumerate() {
                        *f = ps.weight[r * np];
                    }
                }
            }
            // First-layer weight gradients, materialized (small for a conv, §7(e)), for T1b.
            let g0 = first.row_param_grads(&cache.inputs[0], &cot[1]);
            let p0 = first.num_params();
            let t1w: Vec<f64> = g0
                .par_chunks(p0)
                .map(|g| g[..nw].iter().zip(&w[..nw]).map(|(a, b)| a * b).sum())
                .collect();
            // ⟨x_i, ∇_x f_c(x_i)⟩ by forward mode: one JVP along x_i gives all C outputs.
            let t1x_t = net.jvp_input(&cache, &xb)?;
            let t1x = t1x_t.data;
            let gx = &cot[0];
            let mut input = vec![0.0; b];
            let mut sx = vec![0.0; b * opts.ks.len()];
            let mut rel = 0.0f64;
            for i in 0..b {
                let xn = xb.row(i).iter().map(|v| v * v).sum::<f64>().sqrt();
                for ci in 0..c {
                    let r = i * c + ci;
                    let g = gx.row(r);
                    let sq: f64 = g.iter().map(|v| v * v).sum();
                    input[i] += sq;
                    for (kj, &k) in opts.ks.iter().enumerate() {
                        sx[i * opts.ks.len() + kj] +=
                            g.iter().map(|v| v.powi(2 * k as i32)).sum::<f64>();
                    }
                    let scale = xn * sq.sqrt() + w_norm * first_rows[r].sqrt();
                    if scale > 0.0 {
                        rel = rel.max((t1x[r] - t1w[r]).abs() / scale);
                    }
                }
            }
            let mut jac = vec![0.0; b];
            let mut first_sq = vec![0.0; b];
            let mut sw = vec![0.0; b * opts.ks.len()];
            for i in 0..b {
                for ci in 0..c {
                    let r = i * c + ci;
                    jac[i] += rows[r * np];
                    first_sq[i] += first_rows[r];
                    for kj in 0..opts.ks.len() {
                        sw[i * opts.ks.len() + kj] += rows[r * np + 1 + kj];
                    }
                }
            }
            Ok(Block {
                jac,
                first: first_sq,
                input,
                sw,
                sx,
                t1x,
                t1w,
                rel,
            })
        })
        .collect::<NetResult<_>>()?;
    let nk = opts.ks.len();
    let mut out = NetPerSample {
        n,
        outputs: c,
        ks: opts.ks.clone(),
        jacobian_sq: Vec::with_capacity(n),
        first_layer_sq: Vec::with_capacity(n),
        input_sq: Vec::with_capacity(n),
        g_w: vec![0.0; nk],
        g_x: vec![0.0; nk],
        t1b_input_side: Vec::with_capacity(n * c),
        t1b_weight_side: Vec::with_capacity(n * c),
        t1b_max_rel_residual: 0.0,
    };
    let mut sum_w = vec![0.0; nk];
    let mut sum_x = vec![0.0; nk];
    for b in blocks {
        out.jacobian_sq.extend(b.jac);
        out.first_layer_sq.extend(b.first);
        out.input_sq.extend(b.input);
        out.t1b_input_side.extend(b.t1x);
        out.t1b_weight_side.extend(b.t1w);
        out.t1b_max_rel_residual = out.t1b_max_rel_residual.max(b.rel);
        for (a, bx) in b.sw.chunks(nk).zip(b.sx.chunks(nk)) {
            for kj in 0..nk {
                sum_w[kj] += a[kj];
                sum_x[kj] += bx[kj];
            }
        }
    }
    for (kj, &k) in opts.ks.iter().enumerate() {
        let e = 1.0 / (2.0 * f64::from(k));
        out.g_w[kj] = (sum_w[kj] / n as f64).powf(e);
        out.g_x[kj] = (sum_x[kj] / n as f64).powf(e);
    }
    Ok(out)
}

/// Per-sample loss-gradient norms `‖∇_θ ℓ_i‖` with `ℓ_i = ½‖f(x_i) − y_i‖²` (THEORY.md §0):
/// `∇_θ ℓ_i = J_iᵀ res_i`, one backward pass with the residuals as cotangents and the
/// factorized per-row sums (kind: exact). `y` is `n × C`.
pub fn loss_gradient_norms(net: &Sequential, x: &Tensor, y: &Tensor) -> NetResult<Vec<f64>> {
    check_data(net, x)?;
    let c = net.output_dim();
    if y.batch != x.batch || y.shape != Shape::Flat(c) {
        return Err(NetError::Input(format!(
            "targets: {} rows of shape {}, expected {} rows of shape [{c}]",
            y.batch, y.shape, x.batch
        )));
    }
    let cache = net.forward_cache(x)?;
    let mut res = cache.output().clone();
    res.data.iter_mut().zip(&y.data).for_each(|(f, t)| *f -= t);
    let cot = net.backward_from(&cache, res);
    let mut sq = vec![0.0; x.batch];
    for (j, l) in net.layers().iter().enumerate() {
        if l.num_params() == 0 {
            continue;
        }
        let ps = l.row_param_power_sums(&cache.inputs[j], &cot[j + 1], &[2]);
        for (i, s) in sq.iter_mut().enumerate() {
            *s += ps.weight[i] + ps.bias[i];
        }
    }
    Ok(sq.into_iter().map(f64::sqrt).collect())
}
