//! The certificate plan from `flatcert certify`'s flags: η, its convention and B from the flags,
//! else the checkpoint's metadata (through the one resolver,
//! [`flatcert::problem::training_hyper`]), and every other setting.

use anyhow::Result;

use flatcert::certify::plan::{parse_curvature, parse_sampling};
use flatcert::certify::{KinksMode, LrConventionName, Plan};
use flatcert::problem::Source;

use super::certify::CertifyArgs;

/// The plan from the flags, with η, its convention and B resolved from the flags, else the
/// checkpoint's `meta`data (the notes say which came from where).
pub(super) fn plan_of(
    args: &CertifyArgs,
    meta: &std::collections::BTreeMap<String, String>,
) -> Result<Plan> {
    let mut notes = Vec::new();
    // η, its convention and B: the flags, else the checkpoint's metadata (one resolver for
    // every command, flatcert::problem::Problem::training_hyper).
    let hyper = flatcert::problem::training_hyper(meta, args.lr, None, args.batch);
    let lr = match hyper.lr {
        Source::Given(lr) => lr,
        Source::Metadata(lr) => {
            notes.push(format!(
                "η = {lr} read from the checkpoint's metadata (the learning rate it was trained \
                 with)"
            ));
            lr
        }
        Source::Missing | Source::Unusable(_) => {
            return Err(flatcert::Error::invalid_argument(
                "--lr",
                "is required: the checkpoint's metadata has no 'lr'",
            )
            .into());
        }
    };
    let conv = match (&args.lr_convention, hyper.lr_convention) {
        (Some(c), _) => LrConventionName::parse(c)?,
        (None, Source::Given(c) | Source::Metadata(c)) => c,
        (None, Source::Unusable(text)) => LrConventionName::parse(&text)?,
        (None, Source::Missing) => LrConventionName::Theory,
    };
    let batch = match hyper.batch {
        Source::Given(b) => b,
        Source::Metadata(b) => {
            notes.push(format!("B = {b} read from the checkpoint's metadata"));
            b
        }
        Source::Missing | Source::Unusable(_) => {
            return Err(flatcert::Error::invalid_argument(
                "--batch",
                "is required: the checkpoint's metadata has no 'batch'",
            )
            .into());
        }
    };
    let sampling = match (&args.sampling, meta.get("sampling")) {
        (Some(s), _) => parse_sampling(s)?,
        (None, Some(s)) if s == "epoch_reshuffle" => {
            notes.push(
                "the checkpoint was trained with per-epoch reshuffling, which the theory does not \
                 cover; certifying model S (i.i.d. uniform B-subsets) instead"
                    .into(),
            );
            parse_sampling("without-replacement")?
        }
        (None, Some(s)) => parse_sampling(s)?,
        (None, None) => parse_sampling("without-replacement")?,
    };
    let mut plan = Plan::new(lr, batch);
    plan.lr_convention = conv;
    plan.sampling = sampling;
    plan.ks = args.k.clone();
    plan.curvature = parse_curvature(&args.curvature)?;
    if args.per_point && args.epsilon.is_none() {
        return Err(flatcert::Error::invalid_argument(
            "--per-point",
            "needs --epsilon (the per-point results are T9/T10 at a radius ε)",
        )
        .into());
    }
    plan.per_point = args.per_point;
    plan.epsilon = args.epsilon;
    plan.epsilon_y = args.epsilon_y.unwrap_or(0.0);
    plan.tau = args.tau;
    plan.gram_limit = args.gram_limit;
    plan.t5_steps = args.t5_steps;
    plan.t5_rank = args.t5_rank;
    plan.delta = args.delta;
    plan.max_products = args.max_products;
    plan.radius_steps = args.radius_steps;
    plan.seed = args.seed;
    plan.kinks = KinksMode::parse(&args.kinks)?;
    plan.memory_limit_bytes = args.inputs.memory_limit()?;
    plan.notes = notes;
    Ok(plan)
}
