//! OpenDocument text (.odt) and presentations (.odp).

use super::archive::Archive;
use super::xml::{Token, Writer, attr, tokens};

/// OpenDocument text bodies (`text:h`, `text:p`, tables) into a writer.
pub(super) fn opendocument_body(writer: &mut Writer, token: Token, depth: &mut usize) {
    match token {
        Token::Open(name, attrs) => match name.as_str() {
            "h" => {
                *depth += 1;
                writer.heading = Some(attr(&attrs, "outline-level").and_then(|l| l.parse().ok()).unwrap_or(1));
            }
            "p" => *depth += 1,
            "tab" => writer.text("\t"),
            "line-break" => writer.text("\n"),
            "s" => writer.text(" "),
            "table-row" => writer.start_row(),
            "table-cell" => writer.start_cell(),
            _ => {}
        },
        Token::Close(name) => match name.as_str() {
            "h" | "p" => {
                *depth = depth.saturating_sub(1);
                writer.end_paragraph();
            }
            "table-cell" => writer.end_cell(),
            "table-row" => writer.end_row(),
            "table" => writer.end_table(),
            _ => {}
        },
        Token::Text(text) if *depth > 0 => writer.text(&text),
        Token::Text(_) => {}
    }
}

pub(super) fn opendocument_text(archive: &mut Archive<'_>) -> Result<String, String> {
    let xml = archive.text("content.xml")?;
    let mut writer = Writer::default();
    let mut depth = 0;
    for token in tokens(&xml)? {
        opendocument_body(&mut writer, token, &mut depth);
    }
    Ok(writer.finish())
}

pub(super) fn opendocument_slides(archive: &mut Archive<'_>) -> Result<String, String> {
    let xml = archive.text("content.xml")?;
    let mut writer = Writer::default();
    let mut depth = 0;
    let mut slide = 0;
    for token in tokens(&xml)? {
        match &token {
            Token::Open(name, attrs) if name == "page" => {
                slide += 1;
                writer.end_paragraph();
                let title = attr(attrs, "name").map(|n| format!(" ({n})")).unwrap_or_default();
                writer.out.push_str(&format!("# Slide {slide}{title}\n\n"));
            }
            Token::Open(name, _) if name == "notes" => writer.out.push_str("Notes: "),
            _ => {}
        }
        opendocument_body(&mut writer, token, &mut depth);
    }
    Ok(writer.finish())
}
