//! The seed paper's VGG experiment (issue 14 item 6, THEORY.md §7): does SGD with a larger
//! learning rate find CNN solutions with smaller g_W(k) and g_x(k)?
//!
//! - Network: VGG config 'A' [16, M, 16, M, 32, M, 64, M, 64, M] (3×3 conv, padding 1, ReLU, 2×2
//!   max-pool) → flatten (64) → linear 64→128 → ReLU → linear 128→K, K = 2, on 3×32×32 inputs
//!   (71 410 parameters), PyTorch-default initialization from ChaCha8 stream 0 of the seed.
//! - Data (real, not synthetic): the first n = 1000 UCI digits of `data/digits/x.npy`, pixels/16,
//!   each 8×8 image upsampled to 32×32 by pixel replication (nearest neighbour, every pixel a 4×4
//!   block) and copied to 3 channels; two classes, digit ≤ 4 → class 0, digit ≥ 5 → class 1,
//!   one-hot targets; square loss ℓ_i = ½‖f(x_i) − y_i‖² (THEORY.md §0).
//! - Training: plain SGD, model (S) (`flatcert::train::train_net`), batch B, η in the theory
//!   convention (with K = 2, PyTorch `MSELoss(reduction='mean')` has η_torch = η·K/2 = η). One
//!   uninterrupted run per (η, seed); the full training loss is evaluated every epoch (n/B
//!   steps) and the run stops at the first evaluation ≤ `--target-loss`, or after
//!   `--max-epochs` epochs.
//! - Measured at the end (`flatcert::net::per_sample_stats`, kind: exact up to rounding): g_W(k),
//!   g_x(k) for k = 1, 2, 4, and the radial bound of THEORY.md §7(b),
//!   R_x(k) := ((1/n)Σ_i‖J_x(x_i)x_i‖^{2k})^{1/2k} ≤ ‖W‖_F·((1/n)Σ_i‖J_W(x_i)‖_F^{2k})^{1/2k} =: R_W(k),
//!   both sides computed (‖J_x(x_i)x_i‖² = Σ_c⟨x_i, ∇_x f_c(x_i)⟩², by forward mode).
//!
//! ```text
//! cargo run --release --example paper_vgg [-- --lrs 0.1,0.2,0.4 --seeds 4 --batch 10
//!     --max-epochs 100 --target-loss 1e-3 --out docs/figures]
//! ```
//! (the defaults shown; ≈ 20 min on 2 cores). Writes OUT/paper_vgg.json and OUT/paper_vgg.svg and
//! prints a table; docs/experiments.md ("paper_vgg") has the numbers and what they say.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::time::Instant;

use flatcert::Dataset;
use flatcert::io::write_atomic;
use flatcert::net::{ArchSpec, PerSampleOptions, Tensor, per_sample_stats};
use flatcert::render::svg::series_colour;
use flatcert::train::{BatchScheme, NetTrainConfig, init_net_pytorch_default, train_net};
use plotters::prelude::*;
use rand::SeedableRng;
use rand::rngs::ChaCha8Rng;

const SPEC: &str = r#"{"input_shape":[3,32,32],"layers":[
 {"type":"conv2d","name":"features.0","out_channels":16,"kernel":3,"padding":1},{"type":"relu"},{"type":"maxpool2d","kernel":2},
 {"type":"conv2d","name":"features.3","out_channels":16,"kernel":3,"padding":1},{"type":"relu"},{"type":"maxpool2d","kernel":2},
 {"type":"conv2d","name":"features.6","out_channels":32,"kernel":3,"padding":1},{"type":"relu"},{"type":"maxpool2d","kernel":2},
 {"type":"conv2d","name":"features.9","out_channels":64,"kernel":3,"padding":1},{"type":"relu"},{"type":"maxpool2d","kernel":2},
 {"type":"conv2d","name":"features.12","out_channels":64,"kernel":3,"padding":1},{"type":"relu"},{"type":"maxpool2d","kernel":2},
 {"type":"flatten"},{"type":"linear","name":"classifier.0","out_features":128},{"type":"relu"},
 {"type":"linear","name":"classifier.2","out_features":2}]}"#;

const N: usize = 1000;
const KS: [u32; 3] = [1, 2, 4];

struct Args {
    lrs: Vec<f64>,
    seeds: u64,
    batch: usize,
    max_epochs: u64,
    target_loss: f64,
    out: PathBuf,
}

fn parse_args() -> Result<Args, Box<dyn Error>> {
    let mut a = Args {
        lrs: vec![0.1, 0.2, 0.4],
        seeds: 4,
        batch: 10,
        max_epochs: 100,
        target_loss: 1e-3,
        out: PathBuf::from("docs/figures"),
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        let v = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--lrs" => a.lrs = v.split(',').map(str::parse).collect::<Result<_, _>>()?,
            "--seeds" => a.seeds = v.parse()?,
            "--batch" => a.batch = v.parse()?,
            "--max-epochs" => a.max_epochs = v.parse()?,
            "--target-loss" => a.target_loss = v.parse()?,
            "--out" => a.out = PathBuf::from(v),
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    Ok(a)
}

/// The first N digits, upsampled to 3×32×32, with two-class one-hot targets.
fn load_data() -> Result<Dataset, Box<dyn Error>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/digits");
    let (x, n_all, d) = flatcert::io::load_npy_matrix(&dir.join("x.npy"))?;
    let labels = flatcert::io::load_npy_labels(&dir.join("labels.npy"))?;
    if d != 64 || n_all < N || labels.len() != n_all {
        return Err("data/digits/x.npy must be [1797, 64] with 1797 labels".into());
    }
    let mut xs = Vec::with_capacity(N * 3 * 32 * 32);
    let mut ys = Vec::with_capacity(N * 2);
    for i in 0..N {
        let im = &x[i * 64..(i + 1) * 64];
        for _channel in 0..3 {
            for r in 0..32 {
                for c in 0..32 {
                    xs.push(im[(r / 4) * 8 + c / 4] / 16.0);
                }
            }
        }
        let class1 = labels[i] >= 5;
        ys.extend_from_slice(if class1 { &[0.0, 1.0] } else { &[1.0, 0.0] });
    }
    Ok(Dataset::new(
        xs,
        N,
        3 * 32 * 32,
        Some((ys, 2)),
        "digits x.npy (upsampled)",
        "digits labels (≥ 5)",
    )?)
}

/// One trained run and what was measured on it.
struct Run {
    lr: f64,
    seed: u64,
    epochs: u64,
    loss: f64,
    accuracy: f64,
    g_w: Vec<f64>,
    g_x: Vec<f64>,
    /// ((1/n)Σ‖J_x(x_i) x_i‖^{2k})^{1/2k}
    radial_x: Vec<f64>,
    /// ‖W‖_F · ((1/n)Σ‖J_W(x_i)‖_F^{2k})^{1/2k}
    radial_w: Vec<f64>,
    w_frob: f64,
    t1b: f64,
    secs: f64,
    /// (step, full training loss) once per epoch.
    history: Vec<(u64, f64)>,
}

fn power_mean(v: impl Iterator<Item = f64>, k: u32, n: usize) -> f64 {
    // v yields squared norms s_i; returns ((1/n) Σ s_i^k)^{1/(2k)}.
    (v.map(|s| s.powi(k as i32)).sum::<f64>() / n as f64).powf(0.5 / k as f64)
}

fn run_one(
    ds: &Dataset,
    spec: &ArchSpec,
    lr: f64,
    seed: u64,
    a: &Args,
) -> Result<Run, Box<dyn Error>> {
    let t0 = Instant::now();
    let net = init_net_pytorch_default(spec, &mut ChaCha8Rng::seed_from_u64(seed))?;
    let epoch = (N / a.batch) as u64;
    let cfg = NetTrainConfig {
        lr,
        batch: a.batch,
        steps: a.max_epochs * epoch,
        seed,
        sampling: BatchScheme::IidSubsets,
        log_every: epoch,
        stop_at_loss: Some(a.target_loss),
    };
    let progress = |step: u64, _: f64| {
        if step.is_multiple_of(epoch) {
            eprint!("\r  η = {lr}, seed {seed}: epoch {}", step / epoch);
        }
    };
    let r = train_net(ds, &cfg, net, &progress)?.into_converged(&cfg)?;
    eprintln!(" → train loss {:.4e}", r.final_train_loss);
    let (net, loss) = (r.net, r.final_train_loss);
    let epochs = r.steps_done.div_ceil(epoch);
    let history = r.history;
    let x = Tensor::new(N, net.input_shape(), ds.x().to_vec()).ok_or("data shape")?;
    let out = net.forward(&x)?;
    let y = ds.y().ok_or("targets")?;
    let correct = (0..N)
        .filter(|&i| (out.data[2 * i + 1] > out.data[2 * i]) == (y[2 * i + 1] > 0.5))
        .count();
    let st = per_sample_stats(
        &net,
        &x,
        &PerSampleOptions {
            ks: KS.to_vec(),
            block: 50,
        },
    )?;
    let first = &net.layers()[0];
    let nw = first.weight_len().ok_or("first layer has no weight")?;
    let w_frob = first.params()[..nw]
        .iter()
        .map(|v| v * v)
        .sum::<f64>()
        .sqrt();
    let c = st.outputs;
    let radial_sq: Vec<f64> = (0..N)
        .map(|i| {
            st.t1b_input_side[i * c..(i + 1) * c]
                .iter()
                .map(|v| v * v)
                .sum()
        })
        .collect();
    Ok(Run {
        lr,
        seed,
        epochs,
        loss,
        accuracy: correct as f64 / N as f64,
        g_w: st.g_w.clone(),
        g_x: st.g_x.clone(),
        radial_x: KS
            .iter()
            .map(|&k| power_mean(radial_sq.iter().copied(), k, N))
            .collect(),
        radial_w: KS
            .iter()
            .map(|&k| w_frob * power_mean(st.first_layer_sq.iter().copied(), k, N))
            .collect(),
        w_frob,
        t1b: st.t1b_max_rel_residual,
        secs: t0.elapsed().as_secs_f64(),
        history,
    })
}

fn log_range(v: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (lo, hi) = v.fold((f64::INFINITY, 0.0f64), |(l, h), x| (l.min(x), h.max(x)));
    if !lo.is_finite() || hi <= 0.0 {
        return 0.1..10.0;
    }
    let (lo, hi) = (lo / 1.5, hi * 1.5);
    if hi / lo < 10.0 {
        let mid = (lo * hi).sqrt();
        return mid / 10f64.sqrt()..mid * 10f64.sqrt();
    }
    lo..hi
}

/// g_W(k) against g_x(k) (k = 1, 2, 4, one panel each), one colour per learning rate; and, per
/// panel, the radial sides R_x(k) (hollow) against R_W(k) with the line R_x = R_W (the bound
/// holds for points below it) in a fourth panel.
fn plot(path: &Path, runs: &[Run], lrs: &[f64]) -> Result<(), Box<dyn Error>> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1400, 420)).into_drawing_area();
        root.fill(&WHITE)?;
        let panels = root.split_evenly((1, 4));
        for (p, area) in panels.iter().enumerate() {
            let (pts, title, xl, yl): (Vec<(usize, f64, f64)>, String, String, String) = if p < 3 {
                (
                    runs.iter()
                        .map(|r| {
                            (
                                lrs.iter().position(|&l| l == r.lr).unwrap_or(0),
                                r.g_x[p],
                                r.g_w[p],
                            )
                        })
                        .collect(),
                    format!("k = {}", KS[p]),
                    format!("g_x({})", KS[p]),
                    format!("g_W({})", KS[p]),
                )
            } else {
                (
                    runs.iter()
                        .flat_map(|r| {
                            let i = lrs.iter().position(|&l| l == r.lr).unwrap_or(0);
                            (0..KS.len()).map(move |k| (i, r.radial_w[k], r.radial_x[k]))
                        })
                        .collect(),
                    "radial T7 (§7b), k = 1, 2, 4; dashed: equality".to_string(),
                    "‖W‖_F·(mean ‖J_W‖_F^2k)^(1/2k)".to_string(),
                    "(mean ‖J_x x‖^2k)^(1/2k)".to_string(),
                )
            };
            let xs = log_range(pts.iter().map(|q| q.1));
            let ys = if p < 3 {
                log_range(pts.iter().map(|q| q.2))
            } else {
                log_range(pts.iter().flat_map(|q| [q.1, q.2]))
            };
            let mut chart = ChartBuilder::on(area)
                .caption(title, ("sans-serif", 16))
                .margin(10)
                .x_label_area_size(40)
                .y_label_area_size(55)
                .build_cartesian_2d(xs.clone().log_scale(), ys.clone().log_scale())?;
            chart
                .configure_mesh()
                .light_line_style(TRANSPARENT)
                .x_desc(xl)
                .y_desc(yl)
                .x_label_formatter(&|v| format!("{v:.2e}"))
                .y_label_formatter(&|v| format!("{v:.2e}"))
                .draw()?;
            for (i, &lr) in lrs.iter().enumerate() {
                let colour = series_colour(i);
                let group: Vec<(f64, f64)> = pts
                    .iter()
                    .filter(|q| q.0 == i)
                    .map(|q| (q.1, q.2))
                    .collect();
                chart
                    .draw_series(group.iter().map(|&q| Circle::new(q, 5, colour.filled())))?
                    .label(format!("η = {lr}"))
                    .legend(move |(x, y)| Circle::new((x + 10, y), 5, colour.filled()));
            }
            if p == 3 {
                let lo = xs.start.max(ys.start);
                let hi = xs.end.min(ys.end);
                if lo < hi {
                    chart.draw_series(DashedLineSeries::new(
                        vec![(lo, lo), (hi, hi)],
                        6,
                        4,
                        BLACK.stroke_width(1),
                    ))?;
                }
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.9))
                .border_style(BLACK)
                .draw()?;
        }
        root.present()?;
    }
    write_atomic(path, svg.as_bytes())?;
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    let a = parse_args()?;
    let t0 = Instant::now();
    let ds = load_data()?;
    let spec = ArchSpec::from_json(SPEC)?;
    let mut runs = Vec::new();
    for &lr in &a.lrs {
        for seed in 0..a.seeds {
            runs.push(run_one(&ds, &spec, lr, seed, &a)?);
        }
    }
    println!(
        "| η | seed | epochs | train loss | train acc | g_W(1) | g_W(2) | g_W(4) | g_x(1) | g_x(2) | g_x(4) | R_x(1) ≤ R_W(1) | R_x(2) ≤ R_W(2) | R_x(4) ≤ R_W(4) | ‖W‖_F | T1b resid | s |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in &runs {
        let radial: Vec<String> = (0..KS.len())
            .map(|k| format!("{:.3e} ≤ {:.3e}", r.radial_x[k], r.radial_w[k]))
            .collect();
        println!(
            "| {} | {} | {} | {:.2e} | {:.3} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} | {} | {:.3} | {:.1e} | {:.0} |",
            r.lr,
            r.seed,
            r.epochs,
            r.loss,
            r.accuracy,
            r.g_w[0],
            r.g_w[1],
            r.g_w[2],
            r.g_x[0],
            r.g_x[1],
            r.g_x[2],
            radial.join(" | "),
            r.w_frob,
            r.t1b,
            r.secs
        );
    }
    std::fs::create_dir_all(&a.out)?;
    let json = serde_json::json!({
        "network": "VGG config A [16,M,16,M,32,M,64,M,64,M] -> 64 -> 128 -> 2, 3x32x32, ReLU, f64, PyTorch-default init (ChaCha8 stream 0 of the seed)",
        "data": "first 1000 UCI digits (data/digits/x.npy), pixels/16, 8x8 upsampled to 32x32 by pixel replication, 3 channels; class = digit >= 5; one-hot targets",
        "sgd": "model (S): fresh uniform B-subset per step, constant eta (theory convention, = eta_torch for K = 2), no momentum, no weight decay; epochs of n/B steps until train loss <= target or max epochs",
        "batch": a.batch, "target_loss": a.target_loss, "max_epochs": a.max_epochs,
        "kind": "exact up to floating-point rounding (no rounding bound attached)",
        "runs": runs.iter().map(|r| serde_json::json!({
            "lr": r.lr, "seed": r.seed, "epochs": r.epochs, "train_loss": r.loss,
            "train_accuracy": r.accuracy, "ks": KS, "g_W": r.g_w, "g_x": r.g_x,
            "radial_input_side": r.radial_x, "radial_bound": r.radial_w, "w_frob": r.w_frob,
            "t1b_max_rel_residual": r.t1b, "seconds": r.secs, "loss_history": r.history,
        })).collect::<Vec<_>>(),
    });
    write_atomic(
        &a.out.join("paper_vgg.json"),
        serde_json::to_string_pretty(&json)?.as_bytes(),
    )?;
    plot(&a.out.join("paper_vgg.svg"), &runs, &a.lrs)?;
    println!(
        "wrote {} and {} ({:.0} s)",
        a.out.join("paper_vgg.json").display(),
        a.out.join("paper_vgg.svg").display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
