//! Word (.docx): paragraphs, headings by style, tables as rows.

use super::archive::Archive;
use super::xml::{Token, Writer, attr, tokens};

pub(super) fn docx(archive: &mut Archive<'_>) -> Result<String, String> {
    let xml = archive.text("word/document.xml")?;
    let mut writer = Writer::default();
    let mut in_text = false;
    for token in tokens(&xml)? {
        match token {
            Token::Open(name, attrs) => match name.as_str() {
                "t" => in_text = true,
                "tab" => writer.text("\t"),
                "br" | "cr" => writer.text("\n"),
                "pStyle" => {
                    let style = attr(&attrs, "val").unwrap_or_default().to_ascii_lowercase();
                    writer.heading = if style == "title" {
                        Some(1)
                    } else {
                        style.strip_prefix("heading").and_then(|n| n.trim().parse().ok())
                    };
                }
                "tr" => writer.start_row(),
                "tc" => writer.start_cell(),
                _ => {}
            },
            Token::Close(name) => match name.as_str() {
                "t" => in_text = false,
                "p" => writer.end_paragraph(),
                "tc" => writer.end_cell(),
                "tr" => writer.end_row(),
                "tbl" => writer.end_table(),
                _ => {}
            },
            Token::Text(text) if in_text => writer.text(&text),
            Token::Text(_) => {}
        }
    }
    Ok(writer.finish())
}
