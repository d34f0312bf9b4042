//! `flatcert train`: plain SGD exactly as THEORY.md §0 model (S) assumes, writing a
//! PyTorch-compatible safetensors checkpoint with the hyper-parameters in its metadata. With
//! `--arch spec.json` it trains a `net::Sequential` (a CNN, docs/cnn.md) instead of a dense MLP.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use flatcert::Activation;
use flatcert::io::SaveDtype;
use flatcert::train::{
    BatchScheme, NetTrainConfig, TrainConfig, init_net_pytorch_default, read_arch, save_net, train,
    train_net,
};

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
    /// Layer widths d,m1,…,C (comma-separated) of a dense MLP.
    #[arg(long, value_delimiter = ',', required_unless_present = "arch")]
    pub sizes: Vec<usize>,
    /// Activation between layers (dense MLP).
    #[arg(long, default_value = "relu")]
    pub activation: String,
    /// Architecture spec (JSON, docs/cnn.md) of a network to train instead of a dense MLP; every
    /// conv2d/linear layer needs out_channels/out_features. x holds each sample flattened NCHW.
    #[arg(long, conflicts_with_all = ["sizes", "activation", "f32"])]
    pub arch: Option<PathBuf>,
    /// Per-sample shape C,H,W of flat data (with --arch); must equal the spec's input_shape.
    #[arg(long = "input-shape", value_delimiter = ',', requires = "arch")]
    pub input_shape: Option<Vec<usize>>,
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
        example: None,
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
    if let Some(arch) = &args.arch {
        return run_arch(args, arch, sampling, &data);
    }
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

/// `flatcert train --arch spec.json`: SGD (model S) on the network of the spec, PyTorch-default
/// initialization from the seed, F64 checkpoint with the spec in its metadata.
fn run_arch(
    args: &TrainArgs,
    arch: &std::path::Path,
    sampling: BatchScheme,
    data: &flatcert::Dataset,
) -> Result<i32> {
    use rand::SeedableRng;
    let spec = read_arch(arch, args.input_shape.as_deref())?;
    let mut rng = rand::rngs::ChaCha8Rng::seed_from_u64(args.seed);
    let net = init_net_pytorch_default(&spec, &mut rng)
        .map_err(|e| flatcert::net::in_file(&arch.display().to_string(), e))?;
    let cfg = NetTrainConfig {
        lr: args.lr,
        batch: args.batch,
        steps: args.steps,
        seed: args.seed,
        sampling,
        log_every: (args.steps / 100).max(1),
        stop_at_loss: None,
    };
    flatcert::train::net::check_net_data(&net, data)?;
    cfg.validate(data.len())?;
    if !sampling.covered_by_theory() {
        eprintln!(
            "warning: per-epoch reshuffling is not covered by the theory (THEORY §0): certificates assume model S"
        );
    }
    let pb = progress::bar(args.steps, "sgd", args.quiet);
    let result = train_net(data, &cfg, net, &|step, _| pb.set_position(step))?;
    pb.finish_and_clear();
    let result = result.into_converged(&cfg)?;
    let mut meta = result.metadata(&cfg);
    if let Some(s) = args.x_scale {
        meta.insert("x_scale".into(), format!("{s}"));
    }
    if let Some(c) = args.one_hot {
        meta.insert("one_hot".into(), c.to_string());
    }
    save_net(&args.out, &result.net, &meta)?;
    println!(
        "trained {} ({} parameters, input {}) for {} steps (η = {}, B = {}, {}): final train loss {:.6e}; wrote {}",
        arch.display(),
        result.net.num_params(),
        spec.input_shape,
        result.steps_done,
        cfg.lr,
        cfg.batch,
        sampling.name(),
        result.final_train_loss,
        args.out.display()
    );
    Ok(0)
}
