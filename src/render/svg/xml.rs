//! A small XML well-formedness check for the report's SVG files (no XML crate is a dependency):
//! one root element, properly nested and closed tags, quoted and unique attributes, no raw `<`
//! in text or attribute values, and only the predefined or numeric entities. Comments, processing
//! instructions (`<?xml …?>`), `<!DOCTYPE …>` and CDATA sections are accepted and skipped.

/// `Ok(())` when `doc` is a well-formed XML document, else the first problem with its byte offset.
pub fn well_formed(doc: &str) -> Result<(), String> {
    let b = doc.as_bytes();
    let mut i = 0;
    let mut stack: Vec<&str> = Vec::new();
    let mut roots = 0usize;
    while i < b.len() {
        if b[i] == b'<' {
            let rest = &doc[i..];
            if rest.starts_with("<!--") {
                let end = find(doc, i + 4, "-->")?;
                i = end + 3;
            } else if rest.starts_with("<![CDATA[") {
                if stack.is_empty() {
                    return Err(format!("CDATA outside the root element at byte {i}"));
                }
                let end = find(doc, i + 9, "]]>")?;
                i = end + 3;
            } else if rest.starts_with("<?") {
                let end = find(doc, i + 2, "?>")?;
                i = end + 2;
            } else if rest.starts_with("<!") {
                if roots > 0 || !stack.is_empty() {
                    return Err(format!("declaration inside the document at byte {i}"));
                }
                let end = find(doc, i + 2, ">")?;
                i = end + 1;
            } else if rest.starts_with("</") {
                let (name, after) = name_at(doc, i + 2)?;
                let j = skip_ws(b, after);
                if b.get(j) != Some(&b'>') {
                    return Err(format!("malformed end tag </{name} at byte {i}"));
                }
                match stack.pop() {
                    Some(open) if open == name => {}
                    Some(open) => {
                        return Err(format!(
                            "</{name}> at byte {i} closes <{open}> (tags not nested)"
                        ));
                    }
                    None => return Err(format!("</{name}> at byte {i} closes nothing")),
                }
                i = j + 1;
            } else {
                let (name, mut j) = name_at(doc, i + 1)?;
                if stack.is_empty() {
                    roots += 1;
                    if roots > 1 {
                        return Err(format!("second root element <{name}> at byte {i}"));
                    }
                }
                let mut attrs: Vec<&str> = Vec::new();
                loop {
                    let k = skip_ws(b, j);
                    match b.get(k) {
                        Some(b'>') => {
                            stack.push(name);
                            i = k + 1;
                            break;
                        }
                        Some(b'/') if b.get(k + 1) == Some(&b'>') => {
                            i = k + 2;
                            break;
                        }
                        Some(_) if k > j => {
                            let (attr, after) = name_at(doc, k)?;
                            if attrs.contains(&attr) {
                                return Err(format!(
                                    "duplicate attribute {attr} in <{name}> at byte {k}"
                                ));
                            }
                            attrs.push(attr);
                            let e = skip_ws(b, after);
                            if b.get(e) != Some(&b'=') {
                                return Err(format!("attribute {attr} without '=' at byte {e}"));
                            }
                            let q = skip_ws(b, e + 1);
                            let quote = match b.get(q) {
                                Some(&c @ (b'"' | b'\'')) => c,
                                _ => {
                                    return Err(format!("unquoted value of {attr} at byte {q}"));
                                }
                            };
                            let close = b[q + 1..]
                                .iter()
                                .position(|&c| c == quote)
                                .map(|p| q + 1 + p)
                                .ok_or_else(|| format!("unterminated value of {attr}"))?;
                            text_ok(doc, q + 1, close)?;
                            j = close + 1;
                        }
                        Some(_) => {
                            return Err(format!("expected whitespace in <{name}> at byte {k}"));
                        }
                        None => return Err(format!("unterminated tag <{name}>")),
                    }
                }
            }
        } else {
            let end = b[i..]
                .iter()
                .position(|&c| c == b'<')
                .map_or(b.len(), |p| i + p);
            if stack.is_empty() && !doc[i..end].trim().is_empty() {
                return Err(format!("text outside the root element at byte {i}"));
            }
            text_ok(doc, i, end)?;
            i = end;
        }
    }
    if let Some(open) = stack.last() {
        return Err(format!("<{open}> is never closed"));
    }
    if roots == 0 {
        return Err("no root element".into());
    }
    Ok(())
}

fn find(doc: &str, from: usize, pat: &str) -> Result<usize, String> {
    doc[from..]
        .find(pat)
        .map(|p| from + p)
        .ok_or_else(|| format!("'{pat}' missing after byte {from}"))
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while b.get(i).is_some_and(|c| c.is_ascii_whitespace()) {
        i += 1;
    }
    i
}

/// An XML name at byte `i`: `[A-Za-z_:][A-Za-z0-9_:.-]*` (ASCII only, which SVG uses).
fn name_at(doc: &str, i: usize) -> Result<(&str, usize), String> {
    let b = doc.as_bytes();
    let start_ok = |c: u8| c.is_ascii_alphabetic() || c == b'_' || c == b':';
    if !b.get(i).copied().is_some_and(start_ok) {
        return Err(format!("expected a name at byte {i}"));
    }
    let mut j = i + 1;
    while b
        .get(j)
        .is_some_and(|&c| start_ok(c) || c.is_ascii_digit() || c == b'-' || c == b'.')
    {
        j += 1;
    }
    Ok((&doc[i..j], j))
}

/// Character data between `from` and `to`: no `<`, and every `&` starts a valid reference.
fn text_ok(doc: &str, from: usize, to: usize) -> Result<(), String> {
    let s = &doc[from..to];
    if let Some(p) = s.find('<') {
        return Err(format!("raw '<' at byte {}", from + p));
    }
    let mut rest = s;
    let mut off = from;
    while let Some(p) = rest.find('&') {
        let after = &rest[p + 1..];
        let semi = after
            .find(';')
            .ok_or_else(|| format!("unterminated '&' at byte {}", off + p))?;
        let ent = &after[..semi];
        let ok = matches!(ent, "amp" | "lt" | "gt" | "quot" | "apos")
            || ent
                .strip_prefix("#x")
                .is_some_and(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit()))
            || ent
                .strip_prefix('#')
                .is_some_and(|d| !d.is_empty() && d.chars().all(|c| c.is_ascii_digit()));
        if !ok {
            return Err(format!("unknown entity &{ent}; at byte {}", off + p));
        }
        off += p + 1 + semi + 1;
        rest = &after[semi + 1..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_well_formed_documents() {
        for doc in [
            "<svg/>",
            "<?xml version=\"1.0\"?>\n<!-- c --><svg a='1' b=\"x &amp; y\"><g><text>λ &lt; 2 &#955; &#x3bb;</text></g><path d=\"M 0 0\"/></svg>\n",
            "<!DOCTYPE svg><svg><![CDATA[ <raw> ]]></svg>",
        ] {
            assert_eq!(well_formed(doc), Ok(()), "{doc}");
        }
    }

    #[test]
    fn rejects_malformed_documents() {
        for doc in [
            "",
            "text",
            "<svg>",
            "<svg></g>",
            "<svg><g></svg></g>",
            "<svg/><svg/>",
            "<svg a=1/>",
            "<svg a='1' a='2'/>",
            "<svg>a < b</svg>",
            "<svg>a & b</svg>",
            "<svg>&nbsp;</svg>",
            "<svg a='<'/>",
            "<svg><!-- never closed </svg>",
            "<svg></svg>trailing",
            "<1svg/>",
        ] {
            assert!(well_formed(doc).is_err(), "accepted: {doc:?}");
        }
    }
}
