//! `flatcert measure`: numbers only — per-sample gradient moments, input gradients, first-layer
//! norms, losses and the T1/T2 checks, each labelled with its kind.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use flatcert::measure::first_order::{first_layer_norms, first_order_quantities};
use flatcert::measure::per_sample::{PerSampleOptions, per_sample_stats};
use flatcert::measurements::{
    MEASUREMENTS_SCHEMA, MeasurementInputs, MeasurementsDoc, quantity_table,
};

use super::inputs::InputArgs;
use super::progress;

/// Arguments of `flatcert measure`.
#[derive(Debug, Args)]
pub struct MeasureArgs {
    #[command(flatten)]
    pub inputs: InputArgs,
    /// Orders k of the moments (comma-separated, each ≥ 1).
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    pub k: Vec<u32>,
    /// Write the measurements document (JSON) here, atomically.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Samples per block of the streaming engine.
    #[arg(long, default_value_t = 128)]
    pub block: usize,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// Validate `--k`: every order ≥ 1 and ≤ 64 (moments of order 2k are evaluated in scaled form,
/// but orders beyond 64 carry no information a user can act on).
pub fn validate_ks(ks: &[u32]) -> Result<()> {
    if ks.is_empty() {
        return Err(
            flatcert::Error::invalid_argument("--k", "give at least one order k ≥ 1").into(),
        );
    }
    for &k in ks {
        if k == 0 || k > 64 {
            return Err(flatcert::Error::invalid_argument(
                "--k",
                format!("each k must lie in 1..=64, got {k}"),
            )
            .into());
        }
    }
    Ok(())
}

/// Run the measurement and build the document.
pub fn measure_document(args: &MeasureArgs) -> Result<MeasurementsDoc> {
    validate_ks(&args.k)?;
    if args.block == 0 {
        return Err(flatcert::Error::invalid_argument("--block", "must be ≥ 1").into());
    }
    let loaded = args.inputs.load(false)?;
    let (mlp, data) = (&loaded.mlp, &loaded.data);
    let pb = progress::bar(data.len() as u64, "per-sample", args.quiet);
    let opts = PerSampleOptions {
        block: args.block,
        ks: args.k.clone(),
        t1_points: 8,
    };
    let stats = per_sample_stats(mlp, data, &opts, &|k| pb.inc(k as u64))?;
    pb.finish_and_clear();
    let norms = first_layer_norms(mlp)?;
    let quantities = first_order_quantities(mlp, &stats, &norms, &args.k);
    let mut notes = Vec::new();
    if !stats.kink_samples.is_empty() {
        notes.push(format!(
            "{} samples have a pre-activation at a ReLU kink (|z| < 1e-12·scale); their Jacobian is set-valued and σ′(0) = {} was used (THEORY §3 Rules)",
            stats.kink_samples.len(),
            mlp.activation().derivative(0.0)
        ));
    }
    if let (Some(lr), Some(batch)) = (loaded.metadata.get("lr"), loaded.metadata.get("batch")) {
        notes.push(format!(
            "checkpoint metadata: trained with η = {lr} ({}), B = {batch}, sampling {}",
            loaded
                .metadata
                .get("lr_convention")
                .map_or("convention not stated", String::as_str),
            loaded
                .metadata
                .get("sampling")
                .map_or("not stated", String::as_str)
        ));
    }
    if loaded.embedded {
        notes.push(
            "bundled example: digits (UCI, CC BY 4.0), x scaled by 1/16, labels one-hot".into(),
        );
    }
    Ok(MeasurementsDoc {
        schema: MEASUREMENTS_SCHEMA.into(),
        inputs: MeasurementInputs {
            model: loaded.model_file.clone(),
            x: loaded.x_file.clone(),
            y: loaded.y_file.clone(),
            activation: mlp.activation().name(),
            widths: mlp.widths(),
            n: data.len(),
            parameters: mlp.num_params(),
            x_scale: loaded.x_scale,
            k: args.k.clone(),
            flatcert_version: env!("CARGO_PKG_VERSION").into(),
        },
        notes,
        quantities,
    })
}

/// `flatcert measure`.
pub fn run(args: &MeasureArgs) -> Result<i32> {
    let doc = measure_document(args)?;
    let i = &doc.inputs;
    println!(
        "flatcert measure — model {} ({} {:?}, P = {}), data {} (n = {})",
        i.model.path, i.activation, i.widths, i.parameters, i.x.path, i.n
    );
    print!("{}", quantity_table(&doc.quantities));
    for note in &doc.notes {
        println!("note: {note}");
    }
    if let Some(path) = &args.json {
        let text = doc.to_json()?;
        flatcert::io::write_atomic(path, text.as_bytes())?;
        eprintln!("wrote {}", path.display());
    }
    Ok(0)
}
