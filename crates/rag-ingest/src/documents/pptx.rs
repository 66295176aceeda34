//! PowerPoint (.pptx): each slide under `# Slide N`, with its notes.

use super::archive::Archive;
use super::literal;
use super::xml::{Token, attr, tokens};

/// DrawingML paragraphs (`a:p` / `a:t`), as lines; slide-number fields left out.
pub(super) fn drawing_text(xml: &str) -> Result<Vec<String>, String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    let (mut in_text, mut in_field) = (false, false);
    for token in tokens(xml)? {
        match token {
            Token::Open(name, attrs) => match name.as_str() {
                "t" => in_text = true,
                "fld" => in_field = attr(&attrs, "type").is_some_and(|t| t.starts_with("slidenum")),
                "br" => line.push('\n'),
                _ => {}
            },
            Token::Close(name) => match name.as_str() {
                "t" => in_text = false,
                "fld" => in_field = false,
                "p" => {
                    if !line.trim().is_empty() {
                        lines.push(literal(line.trim()));
                    }
                    line.clear();
                }
                _ => {}
            },
            Token::Text(text) if in_text && !in_field => line.push_str(&text),
            Token::Text(_) => {}
        }
    }
    Ok(lines)
}

/// Entries `prefix{N}.xml`, ordered by N.
pub(super) fn numbered(names: &[String], prefix: &str) -> Vec<(usize, String)> {
    let mut found: Vec<(usize, String)> = names
        .iter()
        .filter_map(|name| {
            let n = name.strip_prefix(prefix)?.strip_suffix(".xml")?.parse().ok()?;
            Some((n, name.clone()))
        })
        .collect();
    found.sort();
    found
}

pub(super) fn pptx(archive: &mut Archive<'_>) -> Result<String, String> {
    let names = archive.names();
    let slides = numbered(&names, "ppt/slides/slide");
    if slides.is_empty() {
        return Err("no slides found".into());
    }
    let mut out = String::new();
    for (n, name) in slides {
        let lines = drawing_text(&archive.text(&name)?)?;
        out.push_str(&format!("# Slide {n}\n\n"));
        for line in lines {
            out.push_str(&line);
            out.push_str("\n\n");
        }
        let notes_name = format!("ppt/notesSlides/notesSlide{n}.xml");
        if names.contains(&notes_name) {
            let notes = drawing_text(&archive.text(&notes_name)?)?;
            if !notes.is_empty() {
                out.push_str(&format!("Notes: {}\n\n", notes.join(" ")));
            }
        }
    }
    Ok(out)
}
