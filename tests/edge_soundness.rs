//! Issue 15 (and issue 12 item 1): the audit's constructions at the edges — a zero residual, a
//! residual below the forward pass's rounding, cancellation, near-kink units — built with the
//! seeded generator of `flatcert::testutil`, each `exact` residual quantity checked against a
//! reference computed in fixed-point big-integer arithmetic.
//!
//! **The reference.** Every number is an integer multiple of 2⁻⁶⁰⁰ (`Fx`). Additions are exact;
//! a product or quotient is truncated once, an error ≤ 2⁻⁶⁰⁰ relative to the unit; every f64
//! input (weights, data, targets — all ≥ 2⁻⁶⁰⁰ in magnitude or 0 here) converts exactly. exp is
//! evaluated by halving to |r| ≤ 2⁻²⁰, 40 Taylor terms (truncation < 2⁻⁸⁰⁰) and squaring back;
//! log1p by Newton on exp from the f64 value (quadratic convergence, 8 steps from 1e-16). With
//! at most ~10⁵ operations on numbers below 2⁶⁰, the reference is within 2⁻⁴⁵⁰ ≈ 3e-136 of the
//! true value: far below every tolerance compared here (≥ 1e-40), so "|value − truth| ≤ tol" is
//! decided by the reference exactly as by the truth, up to that margin, which each comparison
//! subtracts from the tolerance.

use flatcert::certify::{KinksMode, Plan, run};
use flatcert::measure::QuantityMap;
use flatcert::measure::first_order::{first_layer_norms, first_order_quantities};
use flatcert::measure::per_sample::{PerSampleOptions, per_sample_stats};
use flatcert::model::Mlp;
use flatcert::quantity::Kind;
use flatcert::testutil::random_mlp;
use flatcert::{Activation, Dataset};
use nalgebra::DMatrix;
use num_bigint::BigInt;
use num_traits::{Signed, ToPrimitive, Zero};
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};

const P: u32 = 600;

/// A fixed-point number `v·2⁻⁶⁰⁰`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Fx(BigInt);

impl Fx {
    fn zero() -> Self {
        Fx(BigInt::zero())
    }
    fn one() -> Self {
        Fx(BigInt::from(1) << P)
    }
    /// Exact for every finite f64 with |x| ≥ 2⁻⁶⁰⁰ or x = 0 (asserted).
    fn from_f64(x: f64) -> Self {
        assert!(x.is_finite());
        if x == 0.0 {
            return Fx::zero();
        }
        let bits = x.to_bits();
        let neg = bits >> 63 == 1;
        let exp = ((bits >> 52) & 0x7ff) as i64;
        let frac = bits & ((1u64 << 52) - 1);
        let (mant, e) = if exp == 0 {
            (frac, -1074)
        } else {
            (frac | (1u64 << 52), exp - 1075)
        };
        let shift = e + P as i64;
        assert!(shift >= 0, "{x} is below the reference's resolution");
        let v = BigInt::from(mant) << (shift as u32);
        Fx(if neg { -v } else { v })
    }
    fn add(&self, o: &Fx) -> Fx {
        Fx(&self.0 + &o.0)
    }
    fn sub(&self, o: &Fx) -> Fx {
        Fx(&self.0 - &o.0)
    }
    fn mul(&self, o: &Fx) -> Fx {
        Fx((&self.0 * &o.0) >> P)
    }
    fn div(&self, o: &Fx) -> Fx {
        Fx((&self.0 << P) / &o.0)
    }
    fn abs(&self) -> Fx {
        Fx(self.0.abs())
    }
    fn is_pos(&self) -> bool {
        self.0.is_positive()
    }
    fn to_f64(&self) -> f64 {
        let s = self.0.bits().saturating_sub(64);
        (&self.0 >> s).to_f64().unwrap() * 2f64.powi(s as i32 - P as i32)
    }
    fn exp(&self) -> Fx {
        // Halve until |r| ≤ 2⁻²⁰, Taylor, square back.
        let mut k = 0u32;
        while (self.0.abs() >> k) > (BigInt::from(1) << (P - 20)) {
            k += 1;
        }
        let r = Fx(&self.0 >> k);
        let (mut term, mut sum) = (Fx::one(), Fx::one());
        for j in 1..40 {
            term = Fx(term.mul(&r).0 / j);
            sum = sum.add(&term);
        }
        for _ in 0..k {
            sum = sum.mul(&sum);
        }
        sum
    }
    /// log(1 + t), t ≥ 0, by Newton on exp.
    fn ln1p(&self) -> Fx {
        let mut y = Fx::from_f64(self.to_f64().ln_1p());
        let one_t = Fx::one().add(self);
        for _ in 0..8 {
            y = y.add(&one_t.mul(&Fx(-y.0.clone()).exp())).sub(&Fx::one());
        }
        y
    }
}

fn sigma(act: Activation, z: &Fx) -> Fx {
    match act {
        Activation::Relu => {
            if z.is_pos() {
                z.clone()
            } else {
                Fx::zero()
            }
        }
        Activation::LeakyRelu { alpha } => {
            if z.is_pos() {
                z.clone()
            } else {
                z.mul(&Fx::from_f64(alpha))
            }
        }
        Activation::Identity => z.clone(),
        Activation::Tanh => {
            let e = z.add(z).exp();
            Fx::one().sub(&Fx::from_f64(2.0).div(&e.add(&Fx::one())))
        }
        Activation::Sigmoid => Fx::one().div(&Fx::one().add(&Fx(-z.0.clone()).exp())),
        Activation::Softplus => {
            let pos = if z.is_pos() { z.clone() } else { Fx::zero() };
            pos.add(&Fx(-z.abs().0).exp().ln1p())
        }
    }
}

fn sigma_prime(act: Activation, z: &Fx) -> Fx {
    match act {
        Activation::Relu => {
            if z.is_pos() {
                Fx::one()
            } else {
                Fx::zero()
            }
        }
        Activation::LeakyRelu { alpha } => {
            if z.is_pos() {
                Fx::one()
            } else {
                Fx::from_f64(alpha)
            }
        }
        Activation::Identity => Fx::one(),
        Activation::Tanh => {
            let t = sigma(act, z);
            Fx::one().sub(&t.mul(&t))
        }
        Activation::Sigmoid => {
            let s = sigma(act, z);
            s.mul(&Fx::one().sub(&s))
        }
        Activation::Softplus => sigma(Activation::Sigmoid, z),
    }
}

/// The reference network: weights as `Fx`.
struct RefNet {
    act: Activation,
    w: Vec<Vec<Vec<Fx>>>,
    b: Vec<Vec<Fx>>,
}

impl RefNet {
    fn of(mlp: &Mlp) -> Self {
        RefNet {
            act: mlp.activation(),
            w: mlp
                .layers()
                .iter()
                .map(|l| {
                    (0..l.weight.nrows())
                        .map(|r| l.weight.row(r).iter().map(|&v| Fx::from_f64(v)).collect())
                        .collect()
                })
                .collect(),
            b: mlp
                .layers()
                .iter()
                .map(|l| l.bias.iter().map(|&v| Fx::from_f64(v)).collect())
                .collect(),
        }
    }

    /// (pre-activations z_1..z_L, activations h_0..h_{L−1}).
    fn forward(&self, x: &[f64]) -> (Vec<Vec<Fx>>, Vec<Vec<Fx>>) {
        let mut h = vec![x.iter().map(|&v| Fx::from_f64(v)).collect::<Vec<_>>()];
        let mut z = Vec::new();
        for (l, (w, b)) in self.w.iter().zip(&self.b).enumerate() {
            let zl: Vec<Fx> = w
                .iter()
                .zip(b)
                .map(|(row, bi)| {
                    row.iter()
                        .zip(&h[l])
                        .fold(bi.clone(), |acc, (a, c)| acc.add(&a.mul(c)))
                })
                .collect();
            if l + 1 < self.w.len() {
                h.push(zl.iter().map(|v| sigma(self.act, v)).collect());
            }
            z.push(zl);
        }
        (z, h)
    }

    /// The input Jacobian J_x(x), C rows of d entries (one backward pass per output).
    fn input_jacobian(&self, x: &[f64]) -> Vec<Vec<Fx>> {
        let (z, _) = self.forward(x);
        let depth = self.w.len();
        let c = self.b[depth - 1].len();
        (0..c)
            .map(|k| {
                let mut delta: Vec<Fx> = (0..c)
                    .map(|j| if j == k { Fx::one() } else { Fx::zero() })
                    .collect();
                for l in (0..depth).rev() {
                    let m = self.w[l][0].len();
                    delta = (0..m)
                        .map(|j| {
                            let s = self.w[l]
                                .iter()
                                .zip(&delta)
                                .fold(Fx::zero(), |acc, (row, d)| acc.add(&row[j].mul(d)));
                            if l > 0 {
                                s.mul(&sigma_prime(self.act, &z[l - 1][j]))
                            } else {
                                s
                            }
                        })
                        .collect();
                }
                delta
            })
            .collect()
    }

    /// The parameter gradient of ⟨cot, f(x)⟩ (a VJP), flattened layer by layer (W then b).
    fn vjp(&self, x: &[f64], cot: &[Fx]) -> Vec<Fx> {
        let (z, h) = self.forward(x);
        let depth = self.w.len();
        let mut delta: Vec<Fx> = cot.to_vec();
        let mut grads: Vec<Vec<Fx>> = vec![Vec::new(); depth];
        for l in (0..depth).rev() {
            let mut g = Vec::new();
            for d in &delta {
                for hv in &h[l] {
                    g.push(d.mul(hv));
                }
            }
            g.extend(delta.iter().cloned());
            grads[l] = g;
            if l > 0 {
                let m = self.w[l][0].len();
                delta = (0..m)
                    .map(|j| {
                        let s = self.w[l]
                            .iter()
                            .zip(&delta)
                            .fold(Fx::zero(), |acc, (row, d)| acc.add(&row[j].mul(d)));
                        s.mul(&sigma_prime(self.act, &z[l - 1][j]))
                    })
                    .collect();
            }
        }
        grads.concat()
    }
}

/// The reference values of the residual quantities.
struct Truth {
    max_abs: Fx,
    loss: Fx,
    max_norm_sq: Fx,
    grad_norm_sq: Fx,
}

fn truth(mlp: &Mlp, x: &[f64], y: &[f64], n: usize) -> Truth {
    let net = RefNet::of(mlp);
    let (d, c) = (mlp.input_dim(), mlp.output_dim());
    let mut max_abs = Fx::zero();
    let mut sum_sq = Fx::zero();
    let mut max_norm_sq = Fx::zero();
    let mut grad: Vec<Fx> = vec![Fx::zero(); mlp.num_params()];
    for i in 0..n {
        let xi = &x[i * d..(i + 1) * d];
        let (z, _) = net.forward(xi);
        let out = z.last().unwrap();
        let r: Vec<Fx> = (0..c)
            .map(|k| out[k].sub(&Fx::from_f64(y[i * c + k])))
            .collect();
        let mut norm_sq = Fx::zero();
        for v in &r {
            max_abs = max_abs.clone().max(v.abs());
            norm_sq = norm_sq.add(&v.mul(v));
        }
        sum_sq = sum_sq.add(&norm_sq);
        max_norm_sq = max_norm_sq.max(norm_sq);
        for (g, v) in grad.iter_mut().zip(net.vjp(xi, &r)) {
            *g = g.add(&v);
        }
    }
    let nn = Fx(BigInt::from(n) << P);
    let grad_norm_sq = grad
        .iter()
        .map(|g| g.div(&nn))
        .fold(Fx::zero(), |a, g| a.add(&g.mul(&g)));
    Truth {
        max_abs,
        loss: sum_sq.div(&Fx(BigInt::from(2 * n) << P)),
        max_norm_sq,
        grad_norm_sq,
    }
}

/// √v (v ≥ 0), truncated: an error ≤ 2⁻⁶⁰⁰·(1 + …), within the reference's allowance.
fn fx_sqrt(v: &Fx) -> Fx {
    Fx((&v.0 << P).sqrt())
}

/// Reference values of the input-gradient quantities: per sample ‖J_x‖_F² and ‖J_x‖₂² (C ≤ 2:
/// the closed-form top eigenvalue of the C×C Gram).
fn input_grad_truth(mlp: &Mlp, x: &[f64], n: usize) -> (Vec<Fx>, Vec<Fx>) {
    assert!(mlp.output_dim() <= 2);
    let net = RefNet::of(mlp);
    let d = mlp.input_dim();
    let mut fro = Vec::new();
    let mut spec = Vec::new();
    for i in 0..n {
        let j = net.input_jacobian(&x[i * d..(i + 1) * d]);
        let dot = |a: &[Fx], b: &[Fx]| {
            a.iter()
                .zip(b)
                .fold(Fx::zero(), |s, (u, v)| s.add(&u.mul(v)))
        };
        let g: Vec<Vec<Fx>> = j
            .iter()
            .map(|a| j.iter().map(|b| dot(a, b)).collect())
            .collect();
        if g.len() == 1 {
            fro.push(g[0][0].clone());
            spec.push(g[0][0].clone());
        } else {
            let (a, b, c) = (&g[0][0], &g[0][1], &g[1][1]);
            let half = |v: Fx| Fx(v.0 >> 1);
            let mean = half(a.add(c));
            let dif = half(a.sub(c));
            let disc = fx_sqrt(&dif.mul(&dif).add(&b.mul(b)));
            fro.push(a.add(c));
            spec.push(mean.add(&disc));
        }
    }
    (fro, spec)
}

/// `input_grad_moment_k{1,2}` and `input_grad_spectral_max` against the reference (issue 15
/// item 3): compared through powers, (v − tol)₊^{2k} ≤ truth^{2k} ≤ (v + tol)^{2k}.
fn check_input_grads(mlp: &Mlp, x: &[f64], q: &QuantityMap, n: usize) {
    let (fro, spec) = input_grad_truth(mlp, x, n);
    let nn = Fx(BigInt::from(n) << P);
    let pow = |v: &Fx, k: u32| (1..k).fold(v.clone(), |a, _| a.mul(v));
    for k in [1u32, 2] {
        let name = format!("input_grad_moment_k{k}");
        let qq = &q[&name];
        let mean = fro
            .iter()
            .fold(Fx::zero(), |s, a| s.add(&pow(a, k)))
            .div(&nn);
        let lo = Fx::from_f64((qq.value - qq.tol).max(0.0) * (1.0 - 1e-15));
        let hi = Fx::from_f64((qq.value + qq.tol) * (1.0 + 1e-15));
        let (lo2, hi2) = (lo.mul(&lo), hi.mul(&hi));
        eprintln!(
            "{name}: value {:e} tol {:e} truth^(2k) {:e}",
            qq.value,
            qq.tol,
            mean.to_f64()
        );
        assert!(
            pow(&lo2, k) <= mean.add(&slack()) && mean.sub(&slack()) <= pow(&hi2, k),
            "{name}: value {:e} ± {:e}, truth {:e}",
            qq.value,
            qq.tol,
            mean.to_f64().powf(0.5 / k as f64)
        );
    }
    let qq = &q["input_grad_spectral_max"];
    let max = spec.iter().cloned().max().unwrap();
    let lo = Fx::from_f64((qq.value - qq.tol).max(0.0) * (1.0 - 1e-15));
    let hi = Fx::from_f64((qq.value + qq.tol) * (1.0 + 1e-15));
    eprintln!(
        "input_grad_spectral_max: value {:e} tol {:e} truth {:e}",
        qq.value,
        qq.tol,
        max.to_f64().sqrt()
    );
    assert!(
        lo.mul(&lo) <= max.add(&slack()) && max.sub(&slack()) <= hi.mul(&hi),
        "input_grad_spectral_max: value {:e} ± {:e}, truth {:e}",
        qq.value,
        qq.tol,
        max.to_f64().sqrt()
    );
}

/// The reference's own error allowance (module docs): 2⁻⁴⁵⁰.
fn slack() -> Fx {
    Fx(BigInt::from(1) << (P - 450))
}

/// |value − truth| ≤ tol (exact comparison on the reference, minus its allowance).
fn assert_within(name: &str, q: &QuantityMap, t: &Fx) {
    let qq = &q[name];
    eprintln!(
        "{name}: value {:e} tol {:e} truth {:e}",
        qq.value,
        qq.tol,
        t.to_f64()
    );
    assert_eq!(qq.kind, Kind::Exact, "{name}");
    let diff = Fx::from_f64(qq.value).sub(t).abs().add(&slack());
    assert!(
        diff <= Fx::from_f64(qq.tol),
        "{name}: value {:e}, truth {:e}, |diff| {:e} > tol {:e}",
        qq.value,
        t.to_f64(),
        diff.to_f64(),
        qq.tol
    );
}

/// ‖·‖ from its square: |value − √t| ≤ tol ⟺ (value − tol)₊² ≤ t ≤ (value + tol)².
fn assert_norm_within(name: &str, q: &QuantityMap, t_sq: &Fx) {
    let qq = &q[name];
    eprintln!(
        "{name}: value {:e} tol {:e} truth {:e}",
        qq.value,
        qq.tol,
        t_sq.to_f64().sqrt()
    );
    assert_eq!(qq.kind, Kind::Exact, "{name}");
    let lo = Fx::from_f64((qq.value - qq.tol).max(0.0) * (1.0 - 1e-15));
    let hi = Fx::from_f64((qq.value + qq.tol) * (1.0 + 1e-15));
    // The 1e-15 relative widening covers the f64 rounding of value ± tol (≤ 2 ulps).
    assert!(
        lo.mul(&lo) <= t_sq.add(&slack()) && t_sq.sub(&slack()) <= hi.mul(&hi),
        "{name}: value {:e} ± {:e}, truth {:e}",
        qq.value,
        qq.tol,
        t_sq.to_f64().sqrt()
    );
}

/// Targets computed by flatcert's own float64 forward pass (row-major n × C).
fn own_outputs(mlp: &Mlp, x: &[f64], n: usize) -> Vec<f64> {
    let d = mlp.input_dim();
    let xm = DMatrix::from_row_slice(n, d, x).transpose();
    let f = mlp.forward(xm.as_view());
    (0..n)
        .flat_map(|i| (0..mlp.output_dim()).map(move |k| (i, k)))
        .map(|(i, k)| f[(k, i)])
        .collect()
}

fn uniform(n: usize, lo: f64, hi: f64, seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(lo..hi)).collect()
}

fn dataset(x: Vec<f64>, n: usize, d: usize, y: Vec<f64>, c: usize) -> Dataset {
    Dataset::new(x, n, d, Some((y, c)), "x", "y").unwrap()
}

/// The measured quantities (the `measure` path) and the per-sample engine's stats.
fn measure(mlp: &Mlp, ds: &Dataset) -> QuantityMap {
    let st = per_sample_stats(mlp, ds, &PerSampleOptions::default(), &|_| {}).unwrap();
    let norms = first_layer_norms(mlp).unwrap();
    first_order_quantities(mlp, &st, &norms, &[1, 2])
}

/// Every residual quantity of `certify` against the reference.
fn check_residuals(mlp: &Mlp, x: &[f64], y: &[f64], n: usize, plan: &Plan) -> QuantityMap {
    let ds = dataset(x.to_vec(), n, mlp.input_dim(), y.to_vec(), mlp.output_dim());
    let t = truth(mlp, x, y, n);
    let m = measure(mlp, &ds);
    assert_within("max_abs_residual", &m, &t.max_abs);
    assert_within("train_loss", &m, &t.loss);
    let cert = run(mlp, &ds, None, plan).unwrap();
    let q = cert.measurements.quantities;
    assert_within("max_abs_residual", &q, &t.max_abs);
    assert_within("train_loss", &q, &t.loss);
    assert_norm_within("max_residual_norm", &q, &t.max_norm_sq);
    assert_norm_within("loss_gradient_norm", &q, &t.grad_norm_sq);
    for name in ["max_abs_residual", "train_loss", "max_residual_norm"] {
        assert!(q[name].tol > 0.0, "{name}: tol 0");
    }
    if mlp.output_dim() <= 2 {
        check_input_grads(mlp, x, &q, n);
    }
    q
}

/// Issue 15 item 1: softplus 2–3–2–2–1, n = 8, targets = flatcert's own float64 outputs. The
/// computed residual is 0; its tol must cover the true (nonzero) residual, and the Gauss–Newton
/// hypothesis must stay.
#[test]
fn softplus_own_outputs_zero_residual_is_not_interpolation() {
    let mlp = random_mlp(&[2, 3, 2, 2, 1], Activation::Softplus, 15);
    let n = 8;
    let x = uniform(n * 2, -2.0, 2.0, 151);
    let y = own_outputs(&mlp, &x, n);
    let t = truth(&mlp, &x, &y, n);
    assert!(
        t.max_abs.is_pos(),
        "the construction needs a nonzero true residual"
    );
    let q = check_residuals(&mlp, &x, &y, n, &Plan::new(1.0, 2));
    assert_eq!(q["max_abs_residual"].value, 0.0);
    assert_eq!(q["train_loss"].value, 0.0);
    assert!(q["max_abs_residual"].tol > 0.0 && q["train_loss"].tol > 0.0);
    let ds = dataset(x, n, 2, y, 1);
    let cert = run(&mlp, &ds, None, &Plan::new(1.0, 2)).unwrap();
    assert!(
        cert.summary.gauss_newton.is_some(),
        "the caveat was dropped"
    );
    let gn = cert
        .summary
        .assumed
        .iter()
        .find(|h| h.name == "gauss_newton_model")
        .expect("Gauss–Newton model listed as assumed");
    assert!(gn.size.is_some_and(|s| s > 0.0), "{gn:?}");
    for id in ["T4", "T5"] {
        if let Some(v) = cert.verdicts.verdict(id) {
            assert!(
                v.check("gauss_newton_model").is_some(),
                "{id} lacks the Gauss–Newton hypothesis"
            );
        }
    }
}

/// Issues 12/15 (THEORY §3 item 1, "Otherwise"): for a smooth σ the Jacobian tolerances are
/// a-priori estimates (the |W| backward bound at the computed σ′(ẑ) omits σ′(ẑ) − σ′(z)), so
/// every computed Jacobian-dependent verdict (T1–T8) lists `backward_rounding` as assumed, with
/// the relative size 2γ_K, K = Σ_l(m_{l−1} + 1) + C; a piecewise-linear σ does not (its bound is
/// rigorous given the activation pattern, which has its own hypothesis).
#[test]
fn smooth_activation_backward_rounding_is_assumed_with_its_size() {
    let n = 8;
    let x = uniform(n * 2, -2.0, 2.0, 152);
    let y = uniform(n, -1.0, 1.0, 153);
    for (act, smooth) in [
        (Activation::Softplus, true),
        (Activation::Tanh, true),
        (Activation::Sigmoid, true),
        (Activation::Relu, false),
    ] {
        let mlp = random_mlp(&[2, 3, 2, 1], act, 16);
        let ds = dataset(x.clone(), n, 2, y.clone(), 1);
        let cert = run(&mlp, &ds, None, &Plan::new(0.5, 2)).unwrap();
        let listed = cert
            .summary
            .assumed
            .iter()
            .filter(|h| h.name == "backward_rounding")
            .collect::<Vec<_>>();
        if !smooth {
            assert!(listed.is_empty(), "{act:?}: {listed:?}");
            continue;
        }
        // K = (2 + 1) + (3 + 1) + (2 + 1) + C = 11; the size is 2γ_11 = 2·11u/(1 − 11u).
        let u = f64::EPSILON / 2.0;
        let want = 2.0 * 11.0 * u / (1.0 - 11.0 * u);
        let size = cert.measurements.quantities["smooth_backward_rounding"].value;
        assert!(
            (size - want).abs() <= 1e-3 * want,
            "{act:?}: {size} vs {want}"
        );
        assert!(!listed.is_empty(), "{act:?}: not in summary.assumed");
        for h in &listed {
            assert_eq!(h.size, Some(size), "{act:?}: {h:?}");
        }
        for id in ["T1", "T3", "T4", "T6"] {
            let v = cert
                .verdicts
                .verdict(id)
                .unwrap_or_else(|| panic!("{act:?}: {id} computed"));
            let c = v
                .check("backward_rounding")
                .unwrap_or_else(|| panic!("{act:?}: {id} lacks backward_rounding"));
            assert_eq!(c.status.name(), "assumed", "{act:?} {id}");
        }
    }
}

/// Issue 15 item 2: leaky_relu 0.1 2–3–2–2–2 on x ∈ [−100, 100], y := f(x) in float64. The tol
/// must scale with |f|, |y| and the running bound, not with the (rounding-level) residual.
#[test]
fn leaky_relu_large_inputs_residual_tolerances() {
    let mlp = random_mlp(&[2, 3, 2, 2, 2], Activation::LeakyRelu { alpha: 0.1 }, 25);
    let n = 8;
    let x = uniform(n * 2, -100.0, 100.0, 252);
    let y = own_outputs(&mlp, &x, n);
    check_residuals(&mlp, &x, &y, n, &Plan::new(0.01, 2));
    // And with targets off the outputs (an ordinary nonzero residual).
    let y2 = uniform(n * 2, -5.0, 5.0, 253);
    check_residuals(&mlp, &x, &y2, n, &Plan::new(0.01, 2));
}

/// Issue 15 item 3's deep identity net 4–16–32–48–16–8–C whose last layer is projected so that
/// W₆⋯W₁ ≈ 0: with M = W₅⋯W₁ (8 × 4), W₆ ← W₆(I − M M⁺), M⁺ from the normal equations.
fn cancelling_identity_net(outputs: usize, seed: u64) -> Mlp {
    let mlp = random_mlp(&[4, 16, 32, 48, 16, 8, outputs], Activation::Identity, seed);
    let layers = mlp.layers();
    let mut m = layers[0].weight.clone();
    for l in &layers[1..5] {
        m = &l.weight * m;
    }
    let mtm_inv = (m.transpose() * &m).try_inverse().unwrap();
    let proj = DMatrix::<f64>::identity(8, 8) - &m * mtm_inv * m.transpose();
    let mut new_layers = layers.to_vec();
    new_layers[5].weight = &layers[5].weight * proj;
    let mlp = Mlp::new(new_layers, Activation::Identity).unwrap();
    let mut prod = mlp.layers()[0].weight.clone();
    for l in &mlp.layers()[1..] {
        prod = &l.weight * prod;
    }
    assert!(prod.amax() < 1e-13, "W₆⋯W₁ ≈ 0: {}", prod.amax());
    mlp
}

/// Issue 15 item 3's net, residual side: a deep identity net 4–16–32–48–16–8–2 whose last layer
/// is projected so that W₆⋯W₁ ≈ 0 (f(x) ≈ b-only: heavy cancellation in every output).
#[test]
fn deep_identity_cancelling_product_residuals() {
    let mlp = cancelling_identity_net(2, 35);
    let n = 8;
    let x = uniform(n * 4, -3.0, 3.0, 351);
    let y = own_outputs(&mlp, &x, n);
    check_residuals(&mlp, &x, &y, n, &Plan::new(0.01, 2));
}

/// Small ReLU and tanh nets with ordinary targets and with their own outputs as targets.
#[test]
fn relu_and_tanh_residuals_within_tol() {
    for (act, seed) in [(Activation::Relu, 45), (Activation::Tanh, 46)] {
        let mlp = random_mlp(&[3, 6, 5, 2], act, seed);
        let n = 10;
        let x = uniform(n * 3, -2.0, 2.0, seed + 100);
        let y = uniform(n * 2, -1.0, 1.0, seed + 200);
        check_residuals(&mlp, &x, &y, n, &Plan::new(0.05, 2));
        let y = own_outputs(&mlp, &x, n);
        let q = check_residuals(&mlp, &x, &y, n, &Plan::new(0.05, 2));
        assert!(q["max_abs_residual"].tol > 0.0);
    }
}

/// Issue 15 item 4: leaky_relu 0.01 2–8–8–8–8–3 classifier, 24 points, 4 of them moved onto a
/// kink (layers 1, 2, 4). The activation pattern there is an assumed hypothesis of every
/// Jacobian-dependent verdict, with N and the samples; `--kinks strict` makes them inconclusive.
#[test]
fn near_kink_units_are_an_assumed_hypothesis() {
    let act = Activation::LeakyRelu { alpha: 0.01 };
    let mlp = random_mlp(&[2, 8, 8, 8, 8, 3], act, 55);
    let n = 24;
    let x = uniform(n * 2, -1.0, 1.0, 551);
    // Shift biases so that the computed pre-activation of (sample, layer, unit) is ≈ 0, one
    // target at a time in layer order (later layers see the earlier shifts).
    let targets = [(3usize, 1usize, 0usize), (7, 1, 3), (11, 2, 1), (19, 4, 2)];
    let mut layers = mlp.layers().to_vec();
    for &(i, l, j) in &targets {
        let cur = Mlp::new(layers.clone(), act).unwrap();
        let xi = DMatrix::from_column_slice(2, 1, &x[i * 2..i * 2 + 2]);
        let cache = cur.forward_cache(xi.as_view());
        let z = cache.pre[l - 1][(j, 0)];
        layers[l - 1].bias[j] -= z;
    }
    let mlp = Mlp::new(layers, act).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(552);
    let mut y = vec![0.0; n * 3];
    for i in 0..n {
        y[i * 3 + rng.random_range(0..3usize)] = 1.0;
    }
    let ds = dataset(x.clone(), n, 2, y, 3);
    let st = per_sample_stats(&mlp, &ds, &PerSampleOptions::default(), &|_| {}).unwrap();
    for &(i, l, j) in &targets {
        assert!(
            st.near_kinks
                .iter()
                .any(|k| k.sample == i && k.layer == l && k.unit == j),
            "unit ({i}, {l}, {j}) not flagged: {:?}",
            st.near_kinks
        );
    }
    // The σ′ actually used is the computed sign's, and it is reported.
    for k in &st.near_kinks {
        assert_eq!(k.derivative_used, if k.z > 0.0 { 1.0 } else { 0.01 });
        assert!(k.z.abs() <= k.bound);
    }
    let plan = Plan::new(0.01, 1);
    let cert = run(&mlp, &ds, None, &plan).unwrap();
    let h = cert
        .summary
        .assumed
        .iter()
        .find(|h| h.name == "activation_pattern")
        .expect("near-kink hypothesis listed in summary.assumed");
    assert_eq!(h.size, Some(st.near_kink_units as f64));
    assert!(st.near_kink_units >= 4);
    for &(i, _, _) in &targets {
        assert!(
            h.statement.contains(&i.to_string()),
            "sample {i} not named: {}",
            h.statement
        );
    }
    assert!(h.statement.contains("σ′ used"), "{}", h.statement);
    // The table and the Markdown report show it.
    let table = flatcert::render::render(
        &[],
        &cert.verdicts,
        &cert.summary,
        flatcert::render::Style::default(),
    );
    assert!(table.contains("near-kink units"), "{table}");
    let md = flatcert::render::render_markdown(&cert, &[]);
    assert!(
        md.contains("near-kink units"),
        "markdown report lacks the hypothesis"
    );
    for id in ["T2", "T3", "T4", "T5", "T6", "T7"] {
        if let Some(v) = cert.verdicts.verdict(id) {
            assert_eq!(
                v.check("activation_pattern").map(|c| c.status),
                Some(flatcert_bounds::Status::Assumed),
                "{id}"
            );
        }
    }
    // Strict: every computed Jacobian-dependent verdict is inconclusive, the run not certified.
    let mut strict = plan.clone();
    strict.kinks = KinksMode::Strict;
    let cert = run(&mlp, &ds, None, &strict).unwrap();
    assert_eq!(cert.summary.exit_code, 1);
    // Recorded, and `verify` recomputes with the same mode.
    assert_eq!(cert.hyper.kinks, KinksMode::Strict);
    assert_eq!(
        flatcert::certify::verify::plan_of(&cert).unwrap().kinks,
        KinksMode::Strict
    );
    let mut seen = 0;
    for id in ["T1", "T2", "T3", "T4", "T5", "T6", "T7"] {
        if let Some(v) = cert.verdicts.verdict(id) {
            seen += 1;
            assert_eq!(
                v.check("activation_pattern").map(|c| c.status),
                Some(flatcert_bounds::Status::Inconclusive),
                "{id}"
            );
            assert_ne!(v.status(), flatcert_bounds::Status::Certified, "{id}");
        }
    }
    assert!(seen >= 4, "too few verdicts computed: {seen}");
    assert!(
        cert.summary
            .inconclusive
            .iter()
            .any(|h| h.name == "activation_pattern")
    );
}

/// Without near-kink units there is no such hypothesis (and a smooth net never has one).
#[test]
fn no_kink_hypothesis_without_near_kink_units() {
    let mlp = random_mlp(&[3, 6, 2], Activation::Tanh, 65);
    let n = 10;
    let x = uniform(n * 3, -2.0, 2.0, 651);
    let y = uniform(n * 2, -1.0, 1.0, 652);
    let ds = dataset(x, n, 3, y, 2);
    // η far above η_suff, so that T5(i) is inconclusive and the exact route (f) runs (THEORY
    // T5, rev. 2: (i) first): only then does T5 rest on the rounding-of-K allowance.
    let cert = run(&mlp, &ds, None, &Plan::new(1e3, 2)).unwrap();
    assert_eq!(cert.measurements.quantities["near_kink_units"].value, 0.0);
    // Issue 15 item 5: T5(f)'s rounding-of-K allowance is an assumed hypothesis with its size.
    let t5 = cert
        .verdicts
        .verdict("T5")
        .expect("T5 computed on the Gram path");
    assert!(t5.check("stability").is_some());
    let size = cert.measurements.quantities["mean_square_rounding_allowance"].value;
    let h = cert
        .summary
        .assumed
        .iter()
        .find(|h| h.name == "rounding_of_k")
        .expect("rounding_of_k in summary.assumed");
    assert_eq!((h.theorem.as_str(), h.size), ("T5", Some(size)));
    assert!(size > 0.0);
    assert!(
        !cert
            .summary
            .assumed
            .iter()
            .any(|h| h.name == "activation_pattern")
    );
}

/// The one case where a residual is *proven* 0: THEORY §5's abs network on integer data, where
/// every operation is exact (checked by FMA/TwoSum). Then tol = 0, H = G is proven (ReLU, no
/// near-kink unit) and no Gauss–Newton hypothesis is needed.
#[test]
fn exactly_computed_zero_residual_is_proven() {
    let mlp = flatcert::testutil::abs_net();
    let ds = dataset(vec![-1.0, 1.0, 2.0], 3, 1, vec![1.0, 1.0, 2.0], 1);
    let cert = run(&mlp, &ds, None, &Plan::new(0.22, 1)).unwrap();
    let q = &cert.measurements.quantities;
    let r = &q["max_abs_residual"];
    assert_eq!((r.value, r.tol), (0.0, 0.0), "{r:?}");
    assert_eq!(q["near_kink_units"].value, 0.0);
    assert!(cert.summary.gauss_newton.is_none());
    assert!(
        !cert
            .summary
            .assumed
            .iter()
            .any(|h| h.name == "gauss_newton_model")
    );
    // One target off by one ulp: no longer proven, the hypothesis is back.
    let ds = dataset(
        vec![-1.0, 1.0, 2.0],
        3,
        1,
        vec![1.0, 1.0, 2.0 + f64::EPSILON * 2.0],
        1,
    );
    let cert = run(&mlp, &ds, None, &Plan::new(0.22, 1)).unwrap();
    assert!(cert.summary.gauss_newton.is_some());
}

/// Reference `‖J_θ(x_i)‖_F²` per sample (C = 1: J_θ(x_i) is the parameter gradient of f, and
/// λ_max(J_iJ_iᵀ) = ‖J_θ(x_i)‖_F²).
fn param_sq_truth(mlp: &Mlp, x: &[f64], n: usize) -> Vec<Fx> {
    assert_eq!(mlp.output_dim(), 1);
    let net = RefNet::of(mlp);
    let d = mlp.input_dim();
    (0..n)
        .map(|i| {
            net.vjp(&x[i * d..(i + 1) * d], &[Fx::one()])
                .iter()
                .fold(Fx::zero(), |s, g| s.add(&g.mul(g)))
        })
        .collect()
}

/// Issue 15 item 2 / issue 12 item 1, parameter side: `gauss_newton_trace`,
/// `per_sample_lambda_max`, `param_grad_moment_k1`, `per_sample_trace_sq_mean` and
/// `per_sample_fro_sq_mean` against the reference (C = 1). Returns the largest
/// |value − truth|/value over `gauss_newton_trace` and `per_sample_lambda_max`.
fn check_param_grads(mlp: &Mlp, x: &[f64], n: usize) -> f64 {
    let t = param_sq_truth(mlp, x, n);
    let nn = Fx(BigInt::from(n) << P);
    let mean = t.iter().fold(Fx::zero(), |s, v| s.add(v)).div(&nn);
    let max = t.iter().cloned().max().unwrap();
    let mean_sq = t.iter().fold(Fx::zero(), |s, v| s.add(&v.mul(v))).div(&nn);
    let y = vec![0.0; n];
    let ds = dataset(x.to_vec(), n, mlp.input_dim(), y, 1);
    let m = measure(mlp, &ds);
    assert_within("gauss_newton_trace", &m, &mean);
    assert_within("per_sample_lambda_max", &m, &max);
    assert_norm_within("param_grad_moment_k1", &m, &mean);
    let cert = run(mlp, &ds, None, &Plan::new(0.01, 2)).unwrap();
    let q = cert.measurements.quantities;
    assert_within("gauss_newton_trace", &q, &mean);
    assert_within("per_sample_lambda_max", &q, &max);
    assert_within("per_sample_trace_sq_mean", &q, &mean_sq);
    assert_within("per_sample_fro_sq_mean", &q, &mean_sq);
    for name in [
        "gauss_newton_trace",
        "per_sample_lambda_max",
        "per_sample_trace_sq_mean",
        "per_sample_fro_sq_mean",
    ] {
        assert!(q[name].tol > 0.0, "{name}: tol 0");
    }
    let rel = |name: &str, t: &Fx| {
        let v = m[name].value;
        Fx::from_f64(v).sub(t).abs().to_f64() / v
    };
    rel("gauss_newton_trace", &mean).max(rel("per_sample_lambda_max", &max))
}

/// The deep identity net of issue 15 item 3 with C = 1 (W₆ projected so that W₆⋯W₁ ≈ 0: the
/// input gradient cancels) and a ReLU net.
#[test]
fn param_gradient_quantities_within_tol() {
    let mlp = cancelling_identity_net(1, 36);
    let n = 8;
    check_param_grads(&mlp, &uniform(n * 4, -3.0, 3.0, 361), n);
    let mlp = random_mlp(&[3, 6, 5, 1], Activation::Relu, 47);
    let n = 10;
    check_param_grads(&mlp, &uniform(n * 3, -2.0, 2.0, 147), n);
}

fn dense(w: &[f64], rows: usize, cols: usize) -> flatcert::model::Dense {
    flatcert::model::Dense {
        weight: DMatrix::from_row_slice(rows, cols, w),
        bias: nalgebra::DVector::zeros(rows),
    }
}

/// Constructions where the computed ‖Ĵ_i‖² is off by far more than the old relative tol
/// 2γ_K·value (so the |W| backward bound and the forward bound are what cover it): (a) Δ_1 =
/// W₂ᵀW₃ᵀ cancels to ~4e-14 while ‖x‖ = 10¹² multiplies its rounding; (b) ĥ_2 = W₂ĥ_1 cancels
/// to ~3 with a rounding error ~10⁻⁵ (inputs 10¹²), and ‖ĥ_2‖² enters tr G through W₃'s
/// gradient.
#[test]
fn param_gradient_tol_covers_cancellation_beyond_relative() {
    let id = Activation::Identity;
    // (a) 1–1–2–1: W₁ = 1e-12, W₂ = (a, b)ᵀ, W₃ = (c, −d) with bd = ac(1 + 1e-12).
    let (a, b, c) = (0.1234567891, 0.2718281828, 0.3456789123);
    let d = a * c / b * (1.0 + 1e-12);
    let mlp = Mlp::new(
        vec![
            dense(&[1e-12], 1, 1),
            dense(&[a, b], 2, 1),
            dense(&[c, -d], 1, 2),
        ],
        id,
    )
    .unwrap();
    let x = [1e12, -0.7e12, 0.9e12];
    let worst = check_param_grads(&mlp, &x, 3);
    eprintln!("(a) worst |value − truth|/value {worst:e}");
    assert!(worst > 1e-11, "(a) is not adversarial: {worst:e}");
    // (b) 1–2–1–1: W₁ = (0.1, 0.3)ᵀ, W₂ = (0.3, −0.1(1 + 1e-12)), W₃ = 0.
    let mlp = Mlp::new(
        vec![
            dense(&[0.1, 0.3], 2, 1),
            dense(&[0.3, -0.1 * (1.0 + 1e-12)], 1, 2),
            dense(&[0.0], 1, 1),
        ],
        id,
    )
    .unwrap();
    let x = [1e12, -0.7e12, 0.9e12];
    let worst = check_param_grads(&mlp, &x, 3);
    eprintln!("(b) worst |value − truth|/value {worst:e}");
    assert!(worst > 1e-11, "(b) is not adversarial: {worst:e}");
}
