//! Max-pool rules of the net IBP ([`super::ibp`], THEORY.md §7(d)): the interval max of each
//! window, and the derivative set — the selected entry when one entry of the window is certified
//! the largest, else the convex hull of the candidates' unit vectors, enclosed by the entry box
//! `[0, 1]` (centre ½, radius ½).

use super::conv::Window;
use super::{Shape, Tensor};
use crate::measure::lipschitz::{LayerBox, allowance, inflate, up};

/// The windows of a max-pool on one input shape: `windows[j]` lists the input indices of output
/// `j` (NCHW order, as [`super::MaxPool2d`]).
pub(crate) fn pool_windows(win: Window, shape: Shape) -> Vec<Vec<usize>> {
    let Shape::Image { c, h, w } = shape else {
        return Vec::new();
    };
    let Ok((ho, wo)) = win.output_hw(h, w) else {
        return Vec::new();
    };
    let (kh, kw) = win.kernel;
    let (sh, sw) = win.stride;
    let mut out = Vec::with_capacity(c * ho * wo);
    for ch in 0..c {
        for oy in 0..ho {
            for ox in 0..wo {
                let base = ch * h * w;
                out.push(
                    (0..kh)
                        .flat_map(|u| (0..kw).map(move |v| base + (oy * sh + u) * w + ox * sw + v))
                        .collect(),
                );
            }
        }
    }
    out
}

/// The candidates of each window that can be its largest entry over the box.
pub(crate) fn pool_candidates(windows: &[Vec<usize>], b: &LayerBox) -> Vec<Vec<usize>> {
    windows
        .iter()
        .map(|win| {
            let m = win
                .iter()
                .map(|&i| b.lo[i])
                .fold(f64::NEG_INFINITY, f64::max);
            let cand: Vec<usize> = win
                .iter()
                .copied()
                .filter(|&i| b.hi[i] >= m || b.hi[i].is_nan())
                .collect();
            if cand.is_empty() { win.clone() } else { cand }
        })
        .collect()
}

/// The output box of a max-pool: per window `[max lo, max hi]` (exact operations).
pub(crate) fn maxpool_box(win: Window, shape: Shape, b: &LayerBox) -> LayerBox {
    let (lo, hi) = pool_windows(win, shape)
        .iter()
        .map(|w| {
            let lo = w.iter().map(|&i| b.lo[i]).fold(f64::NEG_INFINITY, f64::max);
            let hi = w.iter().map(|&i| b.hi[i]).fold(f64::NEG_INFINITY, f64::max);
            (lo, hi)
        })
        .unzip();
    LayerBox { lo, hi }
}

/// One step of T10 step 3 through a max-pool with input box `b` (input shape `shape`): the
/// |W|-product `m` gets 1 on every candidate; the midpoint–radius enclosure `[pc ± pr]` routes
/// exactly through a unique candidate and through `½ ± ½` otherwise; sums over overlapping
/// windows are divided by `1 − γ_n` and their centre rounding joins the radius.
pub(crate) fn maxpool_backward(
    win: Window,
    shape: Shape,
    b: &LayerBox,
    pc: &Tensor,
    pr: &Tensor,
    m: &Tensor,
) -> (Tensor, Tensor, Tensor) {
    let r = pc.batch;
    let cands = pool_candidates(&pool_windows(win, shape), b);
    let (lin, lout) = (shape.len(), pc.row_len());
    let mut npc = Tensor::zeros(r, shape);
    let mut npr = Tensor::zeros(r, shape);
    let mut nm = Tensor::zeros(r, shape);
    let mut absacc = vec![0.0; lin];
    let mut count = vec![0usize; lin];
    for row in 0..r {
        absacc.iter_mut().for_each(|v| *v = 0.0);
        count.iter_mut().for_each(|v| *v = 0);
        let (ic, io) = (row * lin, row * lout);
        for (jj, cand) in cands.iter().enumerate() {
            let (p, q, mv) = (pc.data[io + jj], pr.data[io + jj], m.data[io + jj]);
            // One candidate: exact routing. Several: entries in [0, 1] = ½ ± ½.
            let (cp, rq) = if cand.len() == 1 {
                (p, q)
            } else {
                (0.5 * p, up(0.5 * p.abs() + q))
            };
            for &i in cand {
                npc.data[ic + i] += cp;
                absacc[i] += cp.abs();
                npr.data[ic + i] += rq;
                nm.data[ic + i] += mv;
                count[i] += 1;
            }
        }
        for i in 0..lin {
            let n = count[i];
            if n >= 1 {
                // Sum of n terms (γ_n); n = 1 still covers a subnormal ½p.
                let f = inflate(n);
                npr.data[ic + i] = up(up(npr.data[ic + i] * f) + allowance(n, absacc[i]));
                nm.data[ic + i] = up(nm.data[ic + i] * f);
            }
        }
    }
    (npc, npr, nm)
}
