//! The robustness stage of `certify` (T8–T10 evidence at a radius ε): T10 at every training
//! point, the T9 per-point data, T10 confronted with sampled Jacobian norms and slopes, and the
//! held-out coverage of (D_ε).

use nalgebra::DMatrix;
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, StandardNormal};

use super::RADIUS_SEARCH_FACTOR;
use crate::certify::evidence::Evidence;
use crate::certify::plan::Plan;
use crate::certify::theorems::Robust;
use crate::data::Dataset;
use crate::error::Result;
use crate::measure::lipschitz::{BallNorm, Prepared};
use crate::measure::robustness::{
    PointEngine, RadiusSearch, RobustnessConfig, Task, certify_points_with, coverage,
};
use crate::model::Mlp;
use crate::quantity::{Quantity, round_down};

/// True when every target row is one-hot (one entry 1, the others 0) and C ≥ 2.
pub fn targets_are_one_hot(data: &Dataset) -> bool {
    let Some(c) = data.outputs() else {
        return false;
    };
    c >= 2
        && (0..data.len()).all(|i| {
            data.y_row(i).is_some_and(|r| {
                r.iter().filter(|v| **v == 1.0).count() == 1
                    && r.iter().all(|v| *v == 0.0 || *v == 1.0)
            })
        })
}

/// ‖A‖₂ of a small matrix (C × d): √λ_max(AAᵀ) or √λ_max(AᵀA), whichever is smaller.
pub(crate) fn spectral_norm_small(a: &DMatrix<f64>) -> f64 {
    let g = if a.nrows() <= a.ncols() {
        a * a.transpose()
    } else {
        a.transpose() * a
    };
    g.symmetric_eigenvalues()
        .iter()
        .fold(0.0f64, |m, v| m.max(*v))
        .sqrt()
}

/// A uniform random point of the ℓ2 ball B(x0, ε).
fn ball_point(rng: &mut ChaCha8Rng, x0: &[f64], eps: f64) -> Vec<f64> {
    let d = x0.len();
    let g: Vec<f64> = (0..d).map(|_| StandardNormal.sample(rng)).collect();
    let norm = g
        .iter()
        .map(|v| v * v)
        .sum::<f64>()
        .sqrt()
        .max(f64::MIN_POSITIVE);
    let u: f64 = rng.random::<f64>();
    let r = eps * u.powf(1.0 / d as f64);
    x0.iter().zip(&g).map(|(x, gi)| x + r * gi / norm).collect()
}

fn forward_point(mlp: &Mlp, x: &[f64]) -> Vec<f64> {
    let xv = DMatrix::from_column_slice(x.len(), 1, x);
    mlp.forward(xv.as_view()).as_slice().to_vec()
}

/// T8–T10 evidence at radius ε for a dense MLP ([`robustness_with`]).
pub(super) fn robustness(
    mlp: &Mlp,
    data: &Dataset,
    test: Option<&Dataset>,
    plan: &Plan,
    eps: f64,
) -> Result<Robust> {
    let prep = Prepared::new(mlp)?;
    robustness_with(
        &prep,
        &|x| Ok(forward_point(mlp, x)),
        &|x| Ok(spectral_norm_small(&mlp.input_jacobian_forward(x))),
        data,
        test,
        plan,
        eps,
    )
}

/// f(x) at one point.
pub(crate) type PointFn<'a, T> = &'a (dyn Fn(&[f64]) -> Result<T> + Sync);

/// T8–T10 evidence at radius ε for any network (THEORY T8–T10, §7(d)): T10 at every training
/// point, the T9 per-point data (rigorous output enclosures for the gaps), T10 confronted with
/// samples (‖J_x‖₂ by `jacobian_norm`, slopes from `forward`) at the point with the largest
/// L_i(ε), and the held-out coverage.
pub(crate) fn robustness_with<E: PointEngine>(
    engine: &E,
    forward: PointFn<'_, Vec<f64>>,
    jacobian_norm: PointFn<'_, f64>,
    data: &Dataset,
    test: Option<&Dataset>,
    plan: &Plan,
    eps: f64,
) -> Result<Robust> {
    let classification = targets_are_one_hot(data);
    let task = if classification {
        Some(Task::Classification)
    } else {
        plan.tau.map(|tau| Task::Regression { tau })
    };
    let mut cfg = RobustnessConfig::new(
        eps,
        BallNorm::L2,
        task.unwrap_or(Task::Regression { tau: 0.0 }),
    );
    if plan.radius_steps > 0 {
        cfg.radius = Some(RadiusSearch {
            eps_max: RADIUS_SEARCH_FACTOR * eps,
            steps: plan.radius_steps,
        });
    }
    let certs = certify_points_with(engine, data, &cfg)?;
    let mut gaps = Vec::new();
    if classification {
        for (i, p) in certs.points.iter().enumerate() {
            let out = engine.output_box(data.x_row(i))?;
            let y = p.label.unwrap_or(0);
            gaps.push(
                (0..out.lo.len())
                    .map(|c| round_down(out.lo[y] - out.hi[c]))
                    .collect(),
            );
        }
    }
    let t10_index = certs
        .points
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.lipschitz.lip.value.total_cmp(&b.1.lipschitz.lip.value))
        .map_or(0, |(i, _)| i);
    let x0 = data.x_row(t10_index);
    let mut rng = ChaCha8Rng::seed_from_u64(plan.seed);
    let mut pts = vec![x0.to_vec()];
    for _ in 0..plan.t10_samples {
        pts.push(ball_point(&mut rng, x0, eps));
    }
    let t10_jacobians: Vec<f64> = pts
        .iter()
        .map(|x| jacobian_norm(x))
        .collect::<Result<_>>()?;
    let outs: Vec<Vec<f64>> = pts.iter().map(|x| forward(x)).collect::<Result<_>>()?;
    let mut t10_slopes = Vec::new();
    for j in 1..pts.len() {
        let (a, b) = (j - 1, j);
        let dx = pts[a]
            .iter()
            .zip(&pts[b])
            .map(|(u, v)| (u - v) * (u - v))
            .sum::<f64>()
            .sqrt();
        if dx > 0.0 {
            let df = outs[a]
                .iter()
                .zip(&outs[b])
                .map(|(u, v)| (u - v) * (u - v))
                .sum::<f64>()
                .sqrt();
            t10_slopes.push(df / dx);
        }
    }
    let coverage = match test {
        Some(t) => {
            let cv = coverage(data, t, eps)?;
            let mut d = cv
                .nearest_label_distances
                .clone()
                .unwrap_or_else(|| cv.nearest_distances.clone());
            d.sort_by(f64::total_cmp);
            let frac = cv
                .fraction_within_eps_same_label
                .as_ref()
                .unwrap_or(&cv.fraction_within_eps);
            Some(flatcert_bounds::t8::Coverage {
                test_points: t.len(),
                fraction_within: frac.value,
                fraction_tol: frac.tol,
                median_distance: d.get(d.len() / 2).copied().filter(|v| v.is_finite()),
                max_distance: d.last().copied().filter(|v| v.is_finite()),
            })
        }
        None => None,
    };
    Ok(Robust {
        certs,
        task,
        gaps,
        t10_index,
        t10_jacobians,
        t10_slopes,
        coverage,
    })
}

/// Summary quantities of the robustness stage (the full per-point data is in T8–T10).
pub(crate) fn robustness_quantities(q: &mut Evidence, r: &Robust, eps: f64) {
    let s = r.certs.summary();
    q.robustness.lipschitz_max = Some(
        s.lipschitz_max
            .clone()
            .with_note(format!("max_i L_i(ε), ε = {eps} (T10, ℓ2 ball)")),
    );
    q.robustness.lipschitz_mean = Some(
        s.lipschitz_mean
            .clone()
            .with_note(format!("mean_i L_i(ε), ε = {eps} (T10, ℓ2 ball)")),
    );
    if let Some(c) = &r.coverage {
        q.robustness.coverage_fraction = Some(
            Quantity::exact(c.fraction_within, c.fraction_tol).with_note(format!(
                "fraction of the {} held-out points within ε = {eps} of a training point (same \
                 class when labelled) (T8 D_ε)",
                c.test_points
            )),
        );
    }
}
