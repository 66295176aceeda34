//! XML as a flat list of tokens, and the markdown [`Writer`] the XML-based
//! formats (Word, OpenDocument, EPUB) write into.

use std::borrow::Cow;

use quick_xml::events::Event;

/// An XML element or text, flattened.
pub(super) enum Token {
    Open(String, Vec<(String, String)>),
    Close(String),
    Text(String),
}

pub(super) fn tokens(xml: &str) -> Result<Vec<Token>, String> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut out = Vec::new();
    loop {
        match reader.read_event().map_err(|e| format!("malformed XML: {e}"))? {
            Event::Start(e) => out.push(Token::Open(local(e.local_name().as_ref()), attributes(&e))),
            Event::Empty(e) => {
                let name = local(e.local_name().as_ref());
                out.push(Token::Open(name.clone(), attributes(&e)));
                out.push(Token::Close(name));
            }
            Event::End(e) => out.push(Token::Close(local(e.local_name().as_ref()))),
            Event::Text(t) => out.push(Token::Text(t.xml10_content().into_owned())),
            Event::CData(t) => out.push(Token::Text(t.into_inner().into_owned())),
            Event::GeneralRef(r) => {
                let text: Cow<'_, str> = match r.resolve_char_ref() {
                    Ok(Some(c)) => Cow::Owned(c.to_string()),
                    _ => Cow::Borrowed(match &*r {
                        "amp" => "&",
                        "lt" => "<",
                        "gt" => ">",
                        "quot" => "\"",
                        "apos" => "'",
                        _ => "",
                    }),
                };
                out.push(Token::Text(text.into_owned()));
            }
            Event::Eof => return Ok(out),
            _ => {}
        }
    }
}

pub(super) fn local(name: &str) -> String {
    name.to_string()
}

pub(super) fn attributes(e: &quick_xml::events::BytesStart<'_>) -> Vec<(String, String)> {
    e.attributes()
        .filter_map(Result::ok)
        .map(|a| {
            let key = a.key.local_name().as_ref().to_string();
            let value =
                a.normalized_value(quick_xml::XmlVersion::Implicit1_0).map(|v| v.into_owned()).unwrap_or_default();
            (key, value)
        })
        .collect()
}

pub(super) fn attr<'t>(attrs: &'t [(String, String)], key: &str) -> Option<&'t str> {
    attrs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// Paragraphs, headings and tables of a text body, as markdown.
#[derive(Default)]
pub(super) struct Writer {
    pub(super) out: String,
    pub(super) paragraph: String,
    pub(super) heading: Option<usize>,
    pub(super) row: Option<Vec<String>>,
    pub(super) cell: Option<String>,
}

impl Writer {
    pub(super) fn text(&mut self, text: &str) {
        match &mut self.cell {
            Some(cell) => cell.push_str(text),
            None => self.paragraph.push_str(text),
        }
    }

    pub(super) fn end_paragraph(&mut self) {
        if let Some(cell) = &mut self.cell {
            if !cell.is_empty() && !cell.ends_with(' ') {
                cell.push(' ');
            }
            return;
        }
        let text = self.paragraph.trim().to_string();
        self.paragraph.clear();
        if text.is_empty() {
            self.heading = None;
            return;
        }
        match self.heading.take() {
            Some(level) => self.out.push_str(&format!("{} {text}\n\n", "#".repeat(level.clamp(1, 6)))),
            None => self.out.push_str(&format!("{text}\n\n")),
        }
    }

    pub(super) fn start_row(&mut self) {
        self.row = Some(Vec::new());
    }

    pub(super) fn start_cell(&mut self) {
        self.cell = Some(String::new());
    }

    pub(super) fn end_cell(&mut self) {
        if let (Some(cell), Some(row)) = (self.cell.take(), &mut self.row) {
            row.push(cell.trim().replace('|', "\\|"));
        }
    }

    pub(super) fn end_row(&mut self) {
        if let Some(row) = self.row.take()
            && row.iter().any(|c| !c.is_empty())
        {
            self.out.push_str(&format!("| {} |\n", row.join(" | ")));
        }
    }

    pub(super) fn end_table(&mut self) {
        self.out.push('\n');
    }

    pub(super) fn finish(mut self) -> String {
        self.end_paragraph();
        self.out
    }
}
