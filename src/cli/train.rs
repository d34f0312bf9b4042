//! `flatcert train`: plain SGD exactly as THEORY.md §0 model (S) assumes, writing a
//! PyTorch-compatible safetensors checkpoint with the hyper-parameters in its metadata.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use flatcert::Activation;
use flatcert::io::SaveDtype;
use flatcert::train::{BatchScheme, TrainConfig, train};

use super::inputs::InputArgs;
use flatcert::progress;

/// Arguments of `flatcert train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Inputs x (.npy/.csv).
    #[arg(long)]
    pub x: PathBuf,
    /// Targets y (.npy/.csv), or integer labels with --one-hot C.
    #[arg(long)]
    pub y: PathBuf,
    /// Turn integer labels into one-hot targets with C classes.
    #[arg(long = "one-hot", value_name = "C")]
    pub one_hot: Option<usize>,
    /// Multiply every input by this factor.
    #[arg(long = "x-scale", allow_negative_numbers = true)]
    pub x_scale: Option<f64>,
    /// Layer widths d,m1,…,C (comma-separated).
    #[arg(long, value_delimiter = ',', required = true)]
    pub sizes: Vec<usize>,
    /// Activation between layers.
    #[arg(long, default_value = "relu")]
    pub activation: String,
    /// Learning rate η in the theory convention (loss ½‖f − y‖² summed over outputs; THEORY §0).
    #[arg(long, allow_negative_numbers = true)]
    pub lr: f64,
    /// Batch size B.
    #[arg(long)]
    pub batch: usize,
    /// Number of SGD steps.
    #[arg(long)]
    pub steps: u64,
    /// Seed of the ChaCha8 streams (initialization and batches).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Batch sampling: subsets (model S, default), with-replacement (S′), epoch-reshuffle
    /// (common practice, NOT covered by the theory).
    #[arg(long, default_value = "subsets")]
    pub sampling: String,
    /// Store weights as f32 (PyTorch's default) instead of f64.
    #[arg(long)]
    pub f32: bool,
    /// Output checkpoint (.safetensors), written atomically.
    #[arg(long)]
    pub out: PathBuf,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// `flatcert train`.
pub fn run(args: &TrainArgs) -> Result<i32> {
    let activation = Activation::parse(&args.activation)?;
    let sampling = BatchScheme::parse(&args.sampling)?;
    let inputs = InputArgs {
        model: None,
        x: Some(args.x.clone()),
        y: Some(args.y.clone()),
        activation: None,
        layers: None,
        one_hot: args.one_hot,
        x_scale: args.x_scale,
        arch: None,
        input_shape: None,
        max_memory: None,
    };
    let data = inputs.load_data_only()?;
    let cfg = TrainConfig {
        sizes: args.sizes.clone(),
        activation,
        lr: args.lr,
        batch: args.batch,
        steps: args.steps,
        seed: args.seed,
        sampling,
        log_every: (args.steps / 100).max(1),
    };
    cfg.validate(data.len(), data.dim(), data.outputs().unwrap_or(0))?;
    if !sampling.covered_by_theory() {
        eprintln!(
            "warning: per-epoch reshuffling is not covered by the theory (THEORY §0): certificates assume model S"
        );
    }
    let pb = progress::bar(args.steps, "sgd", args.quiet);
    let result = train(&data, &cfg, None, &|step, _| pb.set_position(step))?;
    pb.finish_and_clear();
    let result = result.into_converged(&cfg)?;
    let mut meta = result.metadata(&cfg);
    if let Some(s) = args.x_scale {
        meta.insert("x_scale".into(), format!("{s}"));
    }
    if let Some(c) = args.one_hot {
        meta.insert("one_hot".into(), c.to_string());
    }
    let dtype = if args.f32 {
        SaveDtype::F32
    } else {
        SaveDtype::F64
    };
    flatcert::io::save_checkpoint(&args.out, &result.mlp, &meta, dtype)?;
    println!(
        "trained {:?} {} for {} steps (η = {}, B = {}, {}): final train loss {:.6e}; wrote {}",
        cfg.sizes,
        activation,
        result.steps_done,
        cfg.lr,
        cfg.batch,
        sampling.name(),
        result.final_train_loss,
        args.out.display()
    );
    Ok(0)
}
