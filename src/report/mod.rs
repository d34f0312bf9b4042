//! The report directory of `flatcert certify --report DIR` (`docs/report.md`): `report.md` and
//! the SVG figures it links (relative links), built in memory first by [`crate::render`] and then
//! written file by file atomically (each to a temporary file in DIR, renamed into place), the
//! figures before `report.md`. On a write failure the files already written by this call are
//! removed again (and DIR, if this call created it), so nothing that looks like a result is left.
//!
//! This module is the only part of the report that touches the file system; every byte of it is
//! rendered by [`crate::render`] (Markdown by [`crate::render::markdown`], figures by
//! [`crate::render::figures`]), so `render` stays pure and testable in memory.

use std::path::{Path, PathBuf};

use crate::certify::Certificate;
use crate::certify::pipeline::Details;
use crate::error::{Error, Result};
use crate::render::figures::{Figure, curvature, radii, sobolev};
use crate::render::markdown::{FigureLink, render_markdown};

/// Name of the Markdown file inside the report directory.
pub const REPORT_FILE: &str = "report.md";

/// A rendered report: the Markdown and the figures it links.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// `report.md`.
    pub markdown: String,
    /// The SVG figures (file names relative to the report directory).
    pub figures: Vec<Figure>,
}

/// The figures of `cert` that can be drawn: T6(e) from the per-sample λ_i, T7 from the
/// certificate, T9 from the certified radii (with `--epsilon` and a radius search).
pub fn figures(cert: &Certificate, details: &Details) -> Result<Vec<Figure>> {
    let mut out = Vec::new();
    out.extend(curvature::figure(cert, &details.lambdas)?);
    out.extend(sobolev::figure(cert)?);
    out.extend(radii::figure(
        cert,
        details.radii.as_deref(),
        details.radius_cap,
    )?);
    Ok(out)
}

/// Render the whole report in memory.
pub fn build(cert: &Certificate, details: &Details) -> Result<Report> {
    let figures = figures(cert, details)?;
    let links: Vec<FigureLink> = figures
        .iter()
        .map(|f| FigureLink {
            theorem: f.theorem.to_string(),
            file: f.file.to_string(),
            title: f.title.clone(),
            caption: f.caption.clone(),
        })
        .collect();
    Ok(Report {
        markdown: render_markdown(cert, &links),
        figures,
    })
}

/// Check, before any long computation, that `dir` can hold a report: it is an existing directory,
/// or it does not exist and its parent directory does.
pub fn check_dir(dir: &Path) -> Result<()> {
    let bad = |msg: &str| Error::invalid_argument("--report", format!("{}: {msg}", dir.display()));
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(bad("exists and is not a directory")),
        Err(_) => {
            let parent = match dir.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            if parent.is_dir() {
                Ok(())
            } else {
                Err(bad("its parent directory does not exist"))
            }
        }
    }
}

/// Write `report` into `dir` (created if missing; its parent must exist): every figure, then
/// `report.md`, each atomically. On failure, what this call wrote is removed.
pub fn write(dir: &Path, report: &Report) -> Result<PathBuf> {
    check_dir(dir)?;
    let created = if dir.is_dir() {
        false
    } else {
        std::fs::create_dir(dir).map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        true
    };
    let mut written: Vec<PathBuf> = Vec::new();
    let md_path = dir.join(REPORT_FILE);
    let result = (|| -> Result<()> {
        for f in &report.figures {
            let p = dir.join(f.file);
            crate::io::write_atomic(&p, f.svg.as_bytes())?;
            written.push(p);
        }
        crate::io::write_atomic(&md_path, report.markdown.as_bytes())
    })();
    if let Err(e) = result {
        for p in &written {
            let _ = std::fs::remove_file(p);
        }
        if created {
            let _ = std::fs::remove_dir(dir);
        }
        return Err(e);
    }
    Ok(md_path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::svg::xml::well_formed;
    use crate::render::test_support::certificate_with;
    use flatcert_bounds::{Check, Value, Verdict};

    fn cert() -> Certificate {
        let mut t6 = Verdict::new("T6", "k-th moments");
        t6.hypotheses.push(Check::le(
            "per_sample",
            "max_i λ_i ≤ β_2",
            Value::exact(5.0, 0.0),
            Value::exact(400.0, 0.0),
        ));
        let mut t7 = Verdict::new("T7", "Sobolev regularization of SGD");
        t7.diagnostics.push(Check::le_bound(
            "b",
            "max_i ‖J_x(x_i)‖₂ ≤ bound",
            Value::exact(2.0, 0.0),
            Value::upper_bound(11.0, 0.0),
        ));
        certificate_with(vec![t6, t7], &[2], None)
    }

    fn details() -> Details {
        Details {
            lambdas: vec![1.0, 5.0, 2.5],
            radii: None,
            radius_cap: None,
        }
    }

    #[test]
    fn writes_the_markdown_and_every_linked_figure() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("rep");
        let r = build(&cert(), &details()).unwrap();
        assert_eq!(r.figures.len(), 2);
        let md_path = write(&out, &r).unwrap();
        let md = std::fs::read_to_string(&md_path).unwrap();
        assert_eq!(md, r.markdown);
        for f in ["t6_curvature.svg", "t7_sobolev.svg"] {
            assert!(md.contains(&format!("]({f})")), "{f} linked");
            let svg = std::fs::read_to_string(out.join(f)).unwrap();
            well_formed(&svg).unwrap();
        }
        let mut names: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["report.md", "t6_curvature.svg", "t7_sobolev.svg"]);
        // Deterministic: a second build is byte-identical.
        assert_eq!(build(&cert(), &details()).unwrap(), r);
    }

    #[test]
    fn refuses_a_file_or_a_missing_parent_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let r = build(&cert(), &details()).unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        assert!(write(&file, &r).is_err());
        let deep = dir.path().join("no/such/dir");
        let e = write(&deep, &r).unwrap_err();
        assert!(e.to_string().contains("--report"), "{e}");
        assert!(!dir.path().join("no").exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_failed_write_removes_what_it_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("rep");
        std::fs::create_dir(&out).unwrap();
        let mut r = build(&cert(), &details()).unwrap();
        // report.md is a directory: the last rename fails after the figures were written.
        std::fs::create_dir(out.join(REPORT_FILE)).unwrap();
        r.markdown.push('x');
        assert!(write(&out, &r).is_err());
        let names: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, [REPORT_FILE], "only the pre-existing entry is left");
    }
}
