//! What `certify` and `bound` share on stdout: the output format and the table's header lines.

use anyhow::Result;
use flatcert::certify::Certificate;
use flatcert::quantity::shortest;

/// What `certify` prints on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The terminal table.
    Table,
    /// The certificate (JSON).
    Json,
    /// The Markdown report.
    Markdown,
}

/// Parse `--format` of `certify` and `bound`: table, json or markdown.
pub fn parse_format(s: &str) -> Result<Format> {
    match s {
        "table" => Ok(Format::Table),
        "json" => Ok(Format::Json),
        "markdown" | "md" => Ok(Format::Markdown),
        other => Err(flatcert::Error::invalid_argument(
            "--format",
            format!("'{other}' is not one of table, json, markdown"),
        )
        .into()),
    }
}

/// The header lines of the table.
pub fn header(cert: &Certificate, title: &str) -> Vec<String> {
    let h = &cert.hyper;
    let i = &cert.inputs;
    let mut lines = vec![title.to_string()];
    let net = flatcert::measurements::network_label(
        &i.activation,
        &i.widths,
        i.parameters,
        i.architecture.as_ref(),
    );
    if let Some(f) = &i.files {
        lines.push(format!(
            "  model {} ({}); data {} (n = {})",
            f.model.path, net, f.x.path, i.n
        ));
    } else {
        lines.push(format!("  model {net}, n = {}", i.n));
    }
    lines.push(format!(
        "  η = {} (theory convention; given {} as {}; PyTorch MSELoss equivalent η_torch = {}), \
         B = {}, p = {:.6}, π = {:.6}, k = {:?}",
        shortest(h.eta),
        shortest(h.lr_given),
        h.lr_convention.name(),
        shortest(h.eta_torch_mse),
        h.batch,
        h.p,
        h.pi,
        h.k
    ));
    lines.push(format!("  sampling: {}", h.sampling_model));
    if let Some(e) = h.epsilon {
        lines.push(format!(
            "  ε = {e} (ℓ2), ε_y = {}{}",
            h.epsilon_y,
            h.tau.map_or(String::new(), |t| format!(", τ = {t}"))
        ));
    }
    for n in &cert.measurements.notes {
        lines.push(format!("  note: {n}"));
    }
    lines
}
