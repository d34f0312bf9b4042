//! Regenerate the bundled `digits-cnn` checkpoint (issue 14 item 6): the CNN of
//! `flatcert::example::CNN_ARCH` trained by plain SGD (model (S) of THEORY.md §0) on the 256
//! bundled digits with the hyper-parameters `flatcert::example::CNN_TRAIN`.
//!
//! ```text
//! cargo run --release --example make_digits_cnn [-- --out PATH --lr η --batch B --steps T --seed S]
//! ```
//!
//! Defaults reproduce `data/digits/cnn.safetensors` byte for byte (the run is deterministic and
//! the header canonical). Other values are for exploring; the written metadata records them.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use flatcert::example::{CNN_TRAIN, cnn_metadata, train_digits_cnn};
use flatcert::train::net_checkpoint_bytes;

fn main() -> anyhow::Result<()> {
    let mut cfg = CNN_TRAIN;
    let mut out = PathBuf::from("data/digits/cnn.safetensors");
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let val = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--out" => out = PathBuf::from(val),
            "--lr" => cfg.lr = val.parse()?,
            "--batch" => cfg.batch = val.parse()?,
            "--steps" => cfg.steps = val.parse()?,
            "--seed" => cfg.seed = val.parse()?,
            other => bail!("unknown flag {other}; expected --out, --lr, --batch, --steps, --seed"),
        }
    }
    cfg.log_every = (cfg.steps / 20).max(1);
    let t0 = Instant::now();
    let result = train_digits_cnn(&cfg, &|_, _| {})?.into_converged(&cfg)?;
    for (step, loss) in &result.history {
        println!("step {step:>8}  train loss {loss:.6e}");
    }
    let meta = cnn_metadata(&result, &cfg);
    flatcert::io::write_atomic(&out, &net_checkpoint_bytes(&result.net, &meta)?)?;
    println!(
        "η = {}, B = {}, T = {}, seed {}: final train loss {:.6e}, {} parameters, {:.1} s; wrote {}",
        cfg.lr,
        cfg.batch,
        cfg.steps,
        cfg.seed,
        result.final_train_loss,
        result.net.num_params(),
        t0.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(())
}
