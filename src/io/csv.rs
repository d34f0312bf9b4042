//! Numeric `.csv` matrices: one sample per line, the delimiter (`,`, `;` or tab) detected from
//! the first line, an optional header line (detected when the first line has a non-numeric
//! field), blank lines allowed only at the end. Every cell must be a finite number.

use std::path::Path;

use super::{display_name, one_line, read_file};
use crate::error::{Error, Result};

/// Longest excerpt of an offending cell quoted in an error message.
const MAX_SHOWN: usize = 40;

fn shown(cell: &str) -> String {
    if cell.chars().count() <= MAX_SHOWN {
        cell.to_string()
    } else {
        format!("{}…", cell.chars().take(MAX_SHOWN).collect::<String>())
    }
}

/// One cell without surrounding whitespace and one optional pair of double quotes.
fn clean(cell: &str) -> &str {
    let c = cell.trim();
    c.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .map_or(c, str::trim)
}

/// Choose the delimiter that occurs most often in `line` (`,` on ties or when none occurs).
fn detect_delimiter(line: &str) -> char {
    let count = |c: char| line.matches(c).count();
    [',', ';', '\t']
        .into_iter()
        .fold((',', 0), |best, c| {
            let k = count(c);
            if k > best.1 { (c, k) } else { best }
        })
        .0
}

/// Parse a numeric CSV file held in memory into a row-major `(data, n, d)`; `name` is used in
/// error messages. See [`load_csv_matrix`].
pub fn parse_csv_matrix(bytes: &[u8], name: &str) -> Result<(Vec<f64>, usize, usize)> {
    parse_csv(bytes, name).map_err(one_line)
}

fn parse_csv(bytes: &[u8], name: &str) -> Result<(Vec<f64>, usize, usize)> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let line = 1 + bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        Error::bad_input(
            name,
            format!("line {line}"),
            "is not valid UTF-8 text; expected a numeric CSV file",
        )
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<(usize, &str)> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .collect();
    // Blank lines are fine before the first and after the last non-blank line only.
    let first = lines.iter().position(|(_, l)| !l.trim().is_empty());
    let last = lines.iter().rposition(|(_, l)| !l.trim().is_empty());
    let (Some(first), Some(last)) = (first, last) else {
        return Err(Error::bad_input(
            name,
            "rows",
            "the file is empty; expected rows of numbers, one sample per line",
        ));
    };
    let body = &lines[first..=last];
    let delim = detect_delimiter(body[0].1);
    let is_number = |c: &str| clean(c).parse::<f64>().is_ok();
    let has_header = !body[0].1.split(delim).all(is_number);
    let (expected, expected_from) = (body[0].1.split(delim).count(), body[0].0);
    let rows = if has_header { &body[1..] } else { body };
    if rows.is_empty() {
        return Err(Error::bad_input(
            name,
            "rows",
            "no data rows after the header line; expected rows of numbers",
        ));
    }
    // Every cell takes at least one byte, so the file size bounds the number of values: never
    // trust rows × (columns of the first line) alone.
    let mut data = Vec::with_capacity(rows.len().saturating_mul(expected).min(bytes.len()));
    for &(ln, line) in rows {
        if line.trim().is_empty() {
            return Err(Error::bad_input(
                name,
                format!("line {ln}"),
                "is empty; blank lines are only allowed at the end of the file",
            ));
        }
        let count = line.split(delim).count();
        if count != expected {
            return Err(Error::bad_input(
                name,
                format!("line {ln}"),
                format!(
                    "has {count} columns, expected {expected} (the column count of line {expected_from}, delimiter {:?})",
                    delim
                ),
            ));
        }
        for (col, cell) in line.split(delim).enumerate() {
            let c = clean(cell);
            let field = || format!("line {ln}, column {}", col + 1);
            let v: f64 = c.parse().map_err(|_| {
                Error::bad_input(
                    name,
                    field(),
                    format!(
                        "'{}' is not a number; expected a finite decimal number",
                        shown(c)
                    ),
                )
            })?;
            if !v.is_finite() {
                return Err(Error::bad_input(
                    name,
                    field(),
                    format!(
                        "'{}' is not finite; NaN and infinite values are not allowed",
                        shown(c)
                    ),
                ));
            }
            data.push(v);
        }
    }
    Ok((data, rows.len(), expected))
}

/// Load a numeric CSV file as a row-major `n × d` matrix `(data, n, d)`.
///
/// The delimiter (`,`, `;` or tab) is detected from the first line; the first line is a header
/// (and skipped) when any of its fields is not a number. Ragged rows, non-numeric cells and
/// NaN/Inf literals are errors naming the line and column.
pub fn load_csv_matrix(path: &Path) -> Result<(Vec<f64>, usize, usize)> {
    parse_csv_matrix(&read_file(path)?, &display_name(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> (Vec<f64>, usize, usize) {
        parse_csv_matrix(s.as_bytes(), "x.csv").unwrap()
    }
    fn err(s: &str) -> String {
        parse_csv_matrix(s.as_bytes(), "x.csv")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn without_header() {
        assert_eq!(
            ok("1,2,3\n4,5.5,-6e1\n"),
            (vec![1.0, 2.0, 3.0, 4.0, 5.5, -60.0], 2, 3)
        );
        assert_eq!(ok("1\n2\n3"), (vec![1.0, 2.0, 3.0], 3, 1));
    }

    #[test]
    fn with_header_crlf_quotes_and_trailing_blank_lines() {
        let s = "\u{feff}\"a\",\"b\"\r\n\"1\", 2\r\n3 ,4\r\n\r\n\n  \n";
        assert_eq!(ok(s), (vec![1.0, 2.0, 3.0, 4.0], 2, 2));
    }

    #[test]
    fn semicolon_and_tab_are_detected() {
        assert_eq!(ok("x;y\n1.5;2\n"), (vec![1.5, 2.0], 1, 2));
        assert_eq!(ok("1\t2\n3\t4\n"), (vec![1.0, 2.0, 3.0, 4.0], 2, 2));
        assert_eq!(ok("1;2\n3;4\n"), (vec![1.0, 2.0, 3.0, 4.0], 2, 2));
    }

    #[test]
    fn ragged_row_names_line_and_expected_count() {
        let e = err("1,2,3\n4,5,6\n7,8\n");
        assert!(
            e.contains("x.csv: line 3: has 2 columns, expected 3"),
            "{e}"
        );
    }

    #[test]
    fn non_numeric_cell_names_line_and_column() {
        let e = err("a,b\n1,2\n3,abc\n");
        assert!(
            e.contains("x.csv: line 3, column 2: 'abc' is not a number"),
            "{e}"
        );
        let e = err("1,2\n3,\n");
        assert!(e.contains("line 2, column 2: '' is not a number"), "{e}");
    }

    #[test]
    fn nan_and_inf_literals_are_rejected_naming_the_cell() {
        assert!(err("1,nan\n").contains("line 1, column 2: 'nan' is not finite"));
        assert!(err("h1,h2\n1,2\n-Inf,0\n").contains("line 3, column 1: '-Inf' is not finite"));
    }

    #[test]
    fn empty_inputs_are_errors() {
        assert!(err("").contains("x.csv: rows: the file is empty"));
        assert!(err("\n \n").contains("the file is empty"));
        assert!(err("a,b\n").contains("no data rows after the header"));
        assert!(err("1,2\n\n3,4\n").contains("line 2: is empty"));
        assert!(
            parse_csv_matrix(b"1,2\n\xff,3\n", "x.csv")
                .unwrap_err()
                .to_string()
                .contains("line 2: is not valid UTF-8")
        );
    }

    #[test]
    fn wide_first_line_with_many_rows_does_not_overallocate() {
        // 200 001 columns declared by the first line × 200 000 rows would be 320 GB.
        let mut s = ",".repeat(200_000);
        s.push('\n');
        s.push_str(&"1\n".repeat(200_000));
        // The all-empty first line is taken as a header; line 2 is then ragged.
        let e = err(&s);
        assert!(e.contains("line 2: has 1 columns, expected 200001"), "{e}");
        let mut s = "0,".repeat(100_000);
        s.push_str("0\n");
        s.push_str(&"1\n".repeat(100_000));
        assert!(err(&s).contains("line 2: has 1 columns, expected 100001"));
    }

    #[test]
    fn missing_file_is_io_error() {
        let e = load_csv_matrix(Path::new("/nonexistent/x.csv")).unwrap_err();
        assert!(matches!(e, Error::Io { .. }), "{e}");
    }
}
