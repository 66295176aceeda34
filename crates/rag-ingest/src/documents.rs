//! Office, OpenDocument, EPUB and spreadsheet files as markdown, natively:
//! no converter process, no network.
//!
//! Each format becomes markdown whose headings say where a chunk came from
//! (`# Slide 3`, `# Sheet: Budget`, `###### Chapter 2`) and whose text keeps
//! the document's own headings, paragraphs and table rows.

use std::borrow::Cow;
use std::io::{Cursor, Read};

use calamine::Reader as _;
use quick_xml::events::Event;
use rag_core::source::{Location, Section};

/// Most bytes a zip-based document may expand to; more is a zip bomb.
pub const MAX_UNCOMPRESSED: u64 = 256 * 1024 * 1024;

/// Document formats read by `convert`, by extension.
pub const DOCUMENT_EXTENSIONS: &[&str] = &["pdf", "docx", "pptx", "odt", "odp", "epub", "xlsx", "xlsm", "xls", "ods"];

const PASSWORD_PROTECTED: &str = "the document is protected by a password; save a copy without it to index it";

/// The signature of an OLE compound file: what Office saves a
/// password-protected .docx, .xlsx or .pptx as, instead of a zip.
const OLE_SIGNATURE: &[u8] = b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1";

/// Converts a document to markdown; `Err` says why it cannot be read.
pub fn convert(extension: &str, bytes: &[u8]) -> Result<String, String> {
    convert_within(extension, bytes, MAX_UNCOMPRESSED)
}

/// [`convert`], with zip containers refused when they would expand past `limit` bytes.
fn convert_within(extension: &str, bytes: &[u8], limit: u64) -> Result<String, String> {
    if matches!(extension, "docx" | "pptx" | "xlsx" | "xlsm") && bytes.starts_with(OLE_SIGNATURE) {
        return Err(PASSWORD_PROTECTED.into());
    }
    // Spreadsheets in zips pass the same guard as every other zip-based
    // format (size, encrypted entries) before calamine sees them.
    if matches!(extension, "xlsx" | "xlsm" | "ods") {
        let mut archive = Archive::open(bytes, limit)?;
        if extension == "ods" {
            archive.refuse_opendocument_encryption()?;
        }
    }
    match extension {
        "pdf" => pdf(bytes),
        "xlsx" | "xlsm" => spreadsheet(calamine::Xlsx::new(Cursor::new(bytes))),
        "xls" => spreadsheet(calamine::Xls::new(Cursor::new(bytes))),
        "ods" => spreadsheet(calamine::Ods::new(Cursor::new(bytes))),
        _ => {
            let mut archive = Archive::open(bytes, limit)?;
            if matches!(extension, "odt" | "odp") {
                archive.refuse_opendocument_encryption()?;
            }
            match extension {
                "docx" => docx(&mut archive),
                "pptx" => pptx(&mut archive),
                "odt" => opendocument_text(&mut archive),
                "odp" => opendocument_slides(&mut archive),
                "epub" => epub(&mut archive),
                other => Err(format!("unknown document type {other}")),
            }
        }
    }
}

/// A line of document text that starts with `#` escaped, so that it is not
/// taken for a heading of the converted markdown (only the conversion's own
/// `# Page N` and `# Slide N` headings say where a chunk lies).
fn literal(line: &str) -> String {
    if line.starts_with('#') { format!("\\{line}") } else { line.to_string() }
}

/// The pages, slides, sheets and rows of a converted document, typed, with
/// their byte ranges in the markdown the conversion wrote: a `# Page N`,
/// `# Slide N` or `# Sheet: name` heading opens a section that runs to the
/// next one, and each `row N:` line of a sheet is a row. (Document text that
/// starts with `#` is escaped by the conversion, so only its own headings open
/// sections.)
pub(crate) fn sections(converted_from: &str, text: &str) -> Vec<Section> {
    let spreadsheet = matches!(converted_from, "xlsx" | "xlsm" | "xls" | "ods");
    let leading_number = |rest: &str| -> Option<u64> {
        rest[..rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len())].parse().ok()
    };
    let mut out = Vec::new();
    let mut open: Option<(Location, usize)> = None;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let bare = line.trim_end_matches(['\n', '\r']);
        let heading = match converted_from {
            "pdf" => bare.strip_prefix("# Page ").and_then(leading_number).map(Location::Page),
            "pptx" | "odp" => bare.strip_prefix("# Slide ").and_then(leading_number).map(Location::Slide),
            _ if spreadsheet => bare.strip_prefix("# Sheet: ").map(|name| Location::Sheet(name.to_string())),
            _ => None,
        };
        if let Some(location) = heading {
            if let Some((previous, start)) = open.replace((location, offset)) {
                out.push(Section { range: start..offset, location: previous });
            }
        } else if spreadsheet
            && let Some(row) = bare.strip_prefix("row ").and_then(|rest| rest.split_once(':'))
            && let Ok(row) = row.0.parse::<u64>()
        {
            out.push(Section { range: offset..offset + line.len(), location: Location::Row(row) });
        }
        offset += line.len();
    }
    if let Some((location, start)) = open {
        out.push(Section { range: start..text.len(), location });
    }
    out
}

/// A zip file read with a bound on what it may expand to.
struct Archive<'a> {
    zip: zip::ZipArchive<Cursor<&'a [u8]>>,
}

impl<'a> Archive<'a> {
    fn open(bytes: &'a [u8], limit: u64) -> Result<Self, String> {
        let mut zip =
            zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| format!("not a valid zip container ({e})"))?;
        let mut total = 0u64;
        for i in 0..zip.len() {
            let entry = zip.by_index_raw(i).map_err(|e| format!("damaged zip entry ({e})"))?;
            if entry.encrypted() {
                return Err(PASSWORD_PROTECTED.into());
            }
            total = total.saturating_add(entry.size());
        }
        if total > limit {
            return Err(format!("it would expand to {total} bytes, over the limit of {limit} (a zip bomb?)"));
        }
        Ok(Self { zip })
    }

    /// OpenDocument files saved with a password keep their entries
    /// encrypted with keys listed in the manifest (`manifest:encryption-data`);
    /// the zip itself carries no encryption flag.
    fn refuse_opendocument_encryption(&mut self) -> Result<(), String> {
        match self.text("META-INF/manifest.xml") {
            Ok(manifest) if manifest.contains("encryption-data") => Err(PASSWORD_PROTECTED.into()),
            _ => Ok(()),
        }
    }

    fn names(&self) -> Vec<String> {
        self.zip.file_names().filter_map(Result::ok).map(|n| n.into_owned()).collect()
    }

    fn text(&mut self, name: &str) -> Result<String, String> {
        let mut entry = self.zip.by_name(name).map_err(|_| format!("{name} is missing"))?;
        let mut bytes = Vec::with_capacity(usize::try_from(entry.size()).unwrap_or(0));
        // The declared size was checked; never read past it.
        entry
            .by_ref()
            .take(MAX_UNCOMPRESSED)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("cannot unpack {name}: {e}"))?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}

/// An XML element or text, flattened.
enum Token {
    Open(String, Vec<(String, String)>),
    Close(String),
    Text(String),
}

fn tokens(xml: &str) -> Result<Vec<Token>, String> {
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

fn local(name: &str) -> String {
    name.to_string()
}

fn attributes(e: &quick_xml::events::BytesStart<'_>) -> Vec<(String, String)> {
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

fn attr<'t>(attrs: &'t [(String, String)], key: &str) -> Option<&'t str> {
    attrs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// Paragraphs, headings and tables of a text body, as markdown.
#[derive(Default)]
struct Writer {
    out: String,
    paragraph: String,
    heading: Option<usize>,
    row: Option<Vec<String>>,
    cell: Option<String>,
}

impl Writer {
    fn text(&mut self, text: &str) {
        match &mut self.cell {
            Some(cell) => cell.push_str(text),
            None => self.paragraph.push_str(text),
        }
    }

    fn end_paragraph(&mut self) {
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

    fn start_row(&mut self) {
        self.row = Some(Vec::new());
    }

    fn start_cell(&mut self) {
        self.cell = Some(String::new());
    }

    fn end_cell(&mut self) {
        if let (Some(cell), Some(row)) = (self.cell.take(), &mut self.row) {
            row.push(cell.trim().replace('|', "\\|"));
        }
    }

    fn end_row(&mut self) {
        if let Some(row) = self.row.take()
            && row.iter().any(|c| !c.is_empty())
        {
            self.out.push_str(&format!("| {} |\n", row.join(" | ")));
        }
    }

    fn end_table(&mut self) {
        self.out.push('\n');
    }

    fn finish(mut self) -> String {
        self.end_paragraph();
        self.out
    }
}

fn docx(archive: &mut Archive<'_>) -> Result<String, String> {
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

/// DrawingML paragraphs (`a:p` / `a:t`), as lines; slide-number fields left out.
fn drawing_text(xml: &str) -> Result<Vec<String>, String> {
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
fn numbered(names: &[String], prefix: &str) -> Vec<(usize, String)> {
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

fn pptx(archive: &mut Archive<'_>) -> Result<String, String> {
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

/// OpenDocument text bodies (`text:h`, `text:p`, tables) into a writer.
fn opendocument_body(writer: &mut Writer, token: Token, depth: &mut usize) {
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

fn opendocument_text(archive: &mut Archive<'_>) -> Result<String, String> {
    let xml = archive.text("content.xml")?;
    let mut writer = Writer::default();
    let mut depth = 0;
    for token in tokens(&xml)? {
        opendocument_body(&mut writer, token, &mut depth);
    }
    Ok(writer.finish())
}

fn opendocument_slides(archive: &mut Archive<'_>) -> Result<String, String> {
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

fn epub(archive: &mut Archive<'_>) -> Result<String, String> {
    let container = archive.text("META-INF/container.xml")?;
    let opf_path = tokens(&container)?
        .into_iter()
        .find_map(|t| match t {
            Token::Open(name, attrs) if name == "rootfile" => attr(&attrs, "full-path").map(str::to_string),
            _ => None,
        })
        .ok_or("container.xml names no rootfile")?;
    let base = opf_path.rsplit_once('/').map_or(String::new(), |(dir, _)| format!("{dir}/"));
    let opf = tokens(&archive.text(&opf_path)?)?;
    let mut manifest = std::collections::HashMap::new();
    let mut spine = Vec::new();
    for token in opf {
        if let Token::Open(name, attrs) = token {
            match name.as_str() {
                "item" => {
                    if let (Some(id), Some(href)) = (attr(&attrs, "id"), attr(&attrs, "href")) {
                        manifest.insert(id.to_string(), href.to_string());
                    }
                }
                "itemref" => spine.extend(attr(&attrs, "idref").map(str::to_string)),
                _ => {}
            }
        }
    }
    let mut out = String::new();
    for (n, id) in spine.iter().enumerate() {
        let Some(href) = manifest.get(id) else { continue };
        let html = archive.text(&format!("{base}{href}"))?;
        let markdown = crate::extract::html_to_markdown(&html)?;
        if !markdown.trim().is_empty() {
            out.push_str(&format!("###### Chapter {}\n\n{}\n\n", n + 1, markdown.trim()));
        }
    }
    if out.is_empty() {
        return Err("no chapters with text".into());
    }
    Ok(out)
}

/// Each page under `# Page N`, its text from the PDF's text layer (lopdf).
fn pdf(bytes: &[u8]) -> Result<String, String> {
    let document = lopdf::Document::load_mem(bytes).map_err(|e| format!("not a readable PDF ({e})"))?;
    if document.is_encrypted() {
        return Err("the PDF is protected by a password; save a copy without it to index it".into());
    }
    let mut out = String::new();
    let mut with_text = 0;
    for number in document.get_pages().into_keys() {
        let text = document.extract_text(&[number]).unwrap_or_default();
        let text = literal(&text.split_whitespace().collect::<Vec<_>>().join(" "));
        if !text.is_empty() {
            with_text += 1;
            out.push_str(&format!("# Page {number}\n\n{text}\n\n"));
        }
    }
    if with_text == 0 {
        return Err("the PDF has no text layer (scanned or image-only); run OCR on it first".into());
    }
    Ok(out)
}

/// Each sheet under `# Sheet: name`, each row on one line with the header
/// row's names repeated (`row 7: item: Tea | cost: 3`), so a chunk stands alone.
fn spreadsheet<'b, W, E>(workbook: Result<W, E>) -> Result<String, String>
where
    W: calamine::Reader<Cursor<&'b [u8]>>,
    E: std::fmt::Display,
{
    use calamine::DataType;
    let mut workbook = workbook.map_err(|e| format!("not a readable spreadsheet ({e})"))?;
    let mut out = String::new();
    for name in workbook.sheet_names() {
        let Ok(range) = workbook.worksheet_range(&name) else { continue };
        let first_row = range.start().map_or(0, |(row, _)| row as usize);
        let mut rows = range.rows().enumerate().filter(|(_, r)| r.iter().any(|c| !c.is_empty()));
        let Some((_, header)) = rows.next() else { continue };
        let header: Vec<String> = header.iter().map(|c| c.to_string().trim().to_string()).collect();
        out.push_str(&format!("# Sheet: {name}\n\ncolumns: {}\n", header.join(" | ")));
        for (i, row) in rows {
            let cells: Vec<String> = row
                .iter()
                .enumerate()
                .filter(|(_, c)| !c.is_empty())
                .map(|(j, c)| match header.get(j).filter(|h| !h.is_empty()) {
                    Some(h) => format!("{h}: {c}"),
                    None => c.to_string(),
                })
                .collect();
            out.push_str(&format!("row {}: {}\n", first_row + i + 1, cells.join(" | ")));
        }
        out.push('\n');
    }
    if out.is_empty() {
        return Err("no sheet holds data".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::io::Write;

    /// A zip of the given files, as the document formats are.
    pub(crate) fn zip_of(files: &[(&str, &str)]) -> Vec<u8> {
        let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default();
        for (name, body) in files {
            writer.start_file(*name, options).unwrap();
            writer.write_all(body.as_bytes()).unwrap();
        }
        writer.finish().unwrap().into_inner()
    }

    const W: &str = r#"xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main""#;
    const A: &str = r#"xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/main""#;
    const ODF: &str = r#"xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" xmlns:draw="urn:oasis:names:tc:opendocument:xmlns:drawing:1.0" xmlns:presentation="urn:oasis:names:tc:opendocument:xmlns:presentation:1.0""#;

    fn run(text: &str) -> String {
        format!("<w:r><w:t>{text}</w:t></w:r>")
    }

    #[test]
    fn docx_headings_paragraphs_and_tables() {
        let body = format!(
            r#"<w:document {W}><w:body>
            <w:p><w:pPr><w:pStyle w:val="Heading1"/></w:pPr>{}</w:p>
            <w:p>{}{}</w:p>
            <w:tbl><w:tr><w:tc><w:p>{}</w:p></w:tc><w:tc><w:p>{}</w:p></w:tc></w:tr>
            <w:tr><w:tc><w:p>{}</w:p></w:tc><w:tc><w:p>{}</w:p></w:tc></w:tr></w:tbl>
            </w:body></w:document>"#,
            run("Quarterly report"),
            run("Revenue grew "),
            run("in R&amp;D."),
            run("Region"),
            run("Sales"),
            run("North"),
            run("42")
        );
        let out = convert("docx", &zip_of(&[("word/document.xml", &body)])).unwrap();
        assert_eq!(out, "# Quarterly report\n\nRevenue grew in R&D.\n\n| Region | Sales |\n| North | 42 |\n\n");
    }

    #[test]
    fn pptx_slides_in_order_with_notes() {
        let slide = |text: &str| format!(r#"<p:sld xmlns:p="p" {A}><a:p><a:r><a:t>{text}</a:t></a:r></a:p></p:sld>"#);
        let notes = format!(
            r#"<p:notes xmlns:p="p" {A}><a:p><a:r><a:t>Say the numbers slowly</a:t></a:r></a:p><a:p><a:fld type="slidenum"><a:t>10</a:t></a:fld></a:p></p:notes>"#
        );
        let file = zip_of(&[
            ("ppt/slides/slide10.xml", &slide("Roadmap")),
            ("ppt/slides/slide2.xml", &slide("Results")),
            ("ppt/notesSlides/notesSlide10.xml", &notes),
        ]);
        let out = convert("pptx", &file).unwrap();
        assert_eq!(out, "# Slide 2\n\nResults\n\n# Slide 10\n\nRoadmap\n\nNotes: Say the numbers slowly\n\n");
    }

    #[test]
    fn opendocument_text_and_slides() {
        let odt = format!(
            r#"<office:document-content {ODF}><office:body><office:text>
            <text:h text:outline-level="2">Method</text:h><text:p>We measured<text:s/>twice.</text:p>
            </office:text></office:body></office:document-content>"#
        );
        assert_eq!(convert("odt", &zip_of(&[("content.xml", &odt)])).unwrap(), "## Method\n\nWe measured twice.\n\n");
        let odp = format!(
            r#"<office:document-content {ODF}><office:body><office:presentation>
            <draw:page draw:name="Intro"><draw:frame><draw:text-box><text:p>Welcome all</text:p></draw:text-box></draw:frame>
            <presentation:notes><draw:frame><draw:text-box><text:p>Smile</text:p></draw:text-box></draw:frame></presentation:notes></draw:page>
            <draw:page draw:name="End"><draw:frame><draw:text-box><text:p>Thanks</text:p></draw:text-box></draw:frame></draw:page>
            </office:presentation></office:body></office:document-content>"#
        );
        let out = convert("odp", &zip_of(&[("content.xml", &odp)])).unwrap();
        assert_eq!(out, "# Slide 1 (Intro)\n\nWelcome all\n\nNotes: Smile\n\n# Slide 2 (End)\n\nThanks\n\n");
    }

    #[test]
    fn epub_chapters_follow_the_spine() {
        let container = r#"<container><rootfiles><rootfile full-path="OEBPS/book.opf"/></rootfiles></container>"#;
        let opf = r#"<package><manifest><item id="c1" href="one.xhtml"/><item id="c2" href="two.xhtml"/></manifest>
            <spine><itemref idref="c2"/><itemref idref="c1"/></spine></package>"#;
        let file = zip_of(&[
            ("META-INF/container.xml", container),
            ("OEBPS/book.opf", opf),
            ("OEBPS/one.xhtml", "<html><body><h1>Later</h1><p>Second in the spine.</p></body></html>"),
            ("OEBPS/two.xhtml", "<html><body><h1>Opening</h1><p>First in the spine.</p></body></html>"),
        ]);
        let out = convert("epub", &file).unwrap();
        let opening = out.find("###### Chapter 1\n\n# Opening").unwrap();
        assert!(opening < out.find("###### Chapter 2\n\n# Later").unwrap(), "{out}");
    }

    #[test]
    fn spreadsheets_repeat_the_header_on_every_row() {
        let content = format!(
            r#"<office:document-content {ODF}><office:body><office:spreadsheet>
            <table:table table:name="Budget">
            <table:table-row><table:table-cell office:value-type="string"><text:p>item</text:p></table:table-cell><table:table-cell office:value-type="string"><text:p>cost</text:p></table:table-cell></table:table-row>
            <table:table-row><table:table-cell office:value-type="string"><text:p>Tea</text:p></table:table-cell><table:table-cell office:value-type="float" office:value="3"><text:p>3</text:p></table:table-cell></table:table-row>
            </table:table></office:spreadsheet></office:body></office:document-content>"#
        );
        let manifest = r#"<manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0"><manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"></manifest:file-entry></manifest:manifest>"#;
        let file = zip_of(&[
            ("mimetype", "application/vnd.oasis.opendocument.spreadsheet"),
            ("META-INF/manifest.xml", manifest),
            ("content.xml", &content),
        ]);
        let out = convert("ods", &file).unwrap();
        assert_eq!(out, "# Sheet: Budget\n\ncolumns: item | cost\nrow 2: item: Tea | cost: 3\n\n");
    }

    /// A PDF of one page per entry, each with that line of text (none for "").
    fn pdf_of(pages: &[&str]) -> Vec<u8> {
        let pages: Vec<Vec<String>> =
            pages.iter().map(|p| if p.is_empty() { Vec::new() } else { vec![(*p).to_string()] }).collect();
        rag_testkit::documents::pdf(&pages)
    }

    #[test]
    fn pdf_text_by_page_and_image_only_pdfs_refused() {
        let out =
            convert("pdf", &pdf_of(&["Introduction to gardening", "", "Watering schedule for tomatoes"])).unwrap();
        assert_eq!(out, "# Page 1\n\nIntroduction to gardening\n\n# Page 3\n\nWatering schedule for tomatoes\n\n");
        let err = convert("pdf", &pdf_of(&["", ""])).unwrap_err();
        assert!(err.contains("no text layer"), "{err}");
        assert!(convert("pdf", b"%PDF-1.4 garbage").unwrap_err().contains("not a readable PDF"));
    }

    /// `pdf_of(pages)` encrypted (RC4, 128 bits) with the given user password.
    fn encrypted_pdf(pages: &[&str], user_password: &str) -> Vec<u8> {
        let mut doc = lopdf::Document::load_mem(&pdf_of(pages)).unwrap();
        let id = lopdf::Object::string_literal(&b"0123456789abcdef"[..]);
        doc.trailer.set("ID", vec![id.clone(), id]);
        let version = lopdf::encryption::EncryptionVersion::V2 {
            document: &doc,
            owner_password: "owner",
            user_password,
            key_length: 128,
            permissions: lopdf::encryption::Permissions::all(),
        };
        let state = lopdf::encryption::EncryptionState::try_from(version).unwrap();
        doc.encrypt(&state).unwrap();
        let mut bytes = Vec::new();
        doc.save_to(&mut bytes).unwrap();
        bytes
    }

    #[test]
    fn password_protected_pdfs_are_refused_and_owner_only_ones_read() {
        let locked = encrypted_pdf(&["Quarterly secrets"], "secret");
        assert!(!String::from_utf8_lossy(&locked).contains("Quarterly secrets"), "the fixture is really encrypted");
        let err = convert("pdf", &locked).unwrap_err();
        assert!(err.contains("protected by a password"), "{err}");
        // An owner password alone (printing or copying restricted) does not keep the text from a reader.
        let restricted = encrypted_pdf(&["Quarterly figures"], "");
        assert_eq!(convert("pdf", &restricted).unwrap(), "# Page 1\n\nQuarterly figures\n\n");
    }

    #[test]
    fn corrupt_encrypted_and_bomb_documents_are_refused_with_a_reason() {
        assert!(convert("docx", b"PK\x03\x04 not really").unwrap_err().contains("not a valid zip"));
        assert!(
            convert("docx", &zip_of(&[("other.xml", "<x/>")])).unwrap_err().contains("word/document.xml is missing")
        );
        let zeros = "0".repeat(2 * 1024 * 1024);
        let bomb = zip_of(&[("word/document.xml", &zeros)]);
        assert!(bomb.len() < 100_000, "compresses well");
        let err = Archive::open(&bomb, 1024 * 1024).err().unwrap();
        assert!(err.contains("zip bomb"), "{err}");
        assert!(convert("xlsx", b"garbage").unwrap_err().contains("not a valid zip"));
        // Spreadsheets pass the same guard before any parser sees them.
        let sheet_bomb = zip_of(&[("xl/worksheets/sheet1.xml", &zeros), ("[Content_Types].xml", "<Types/>")]);
        for extension in ["xlsx", "xlsm", "ods", "odt"] {
            let err = convert_within(extension, &sheet_bomb, 1024 * 1024).unwrap_err();
            assert!(err.contains("zip bomb"), "{extension}: {err}");
        }
    }

    #[test]
    fn opendocument_files_saved_with_a_password_say_so() {
        let manifest = r#"<manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0">
            <manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml" manifest:size="1234">
              <manifest:encryption-data manifest:checksum-type="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0#sha256-1k" manifest:checksum="x">
                <manifest:algorithm manifest:algorithm-name="http://www.w3.org/2001/04/xmlenc#aes256-cbc" manifest:initialisation-vector="y"/>
              </manifest:encryption-data>
            </manifest:file-entry>
          </manifest:manifest>"#;
        let locked = zip_of(&[("META-INF/manifest.xml", manifest), ("content.xml", "\u{1}\u{2}binary")]);
        for extension in ["odt", "ods", "odp"] {
            let err = convert(extension, &locked).unwrap_err();
            assert!(err.contains("protected by a password"), "{extension}: {err}");
        }
    }

    #[test]
    fn chunks_of_documents_know_their_page_slide_sheet_and_rows() {
        // Where a range of the converted text lies, from the typed sections.
        let at = |from: &str, text: &str, part: &str| {
            let document = rag_core::source::Document::new(text, "markdown").with_sections(sections(from, text));
            let start = text.find(part).unwrap();
            let found = document.location(start..start + part.len());
            assert!(found.keys().all(|k| rag_core::source::LOCATION_KEYS.contains(&k.as_str())), "{found:?}");
            serde_json::Value::Object(found)
        };
        let pages = "# Page 3\n\nthe text of page three\n\n# Page 4\n\nall of four\n\n# Page 5\n\nfive\n";
        assert_eq!(at("pdf", pages, "text of page three"), json!({"page_start": 3, "page_end": 3}));
        assert_eq!(
            at("pdf", pages, "three\n\n# Page 4\n\nall of four\n\n# Page 5\n\nfive"),
            json!({"page_start": 3, "page_end": 5})
        );
        let slides = "# Slide 11\n\nintro\n\n# Slide 12 (Roadmap)\n\nQ3 goals\n";
        assert_eq!(at("pptx", slides, "Q3 goals"), json!({"slide_start": 12, "slide_end": 12}));
        let sheet = "# Sheet: Budget\n\ncolumns: item | cost\nrow 7: item: Tea | cost: 3\nrow 8: item: Jam | cost: 4\n";
        assert_eq!(
            at("xlsx", sheet, "row 7: item: Tea | cost: 3\nrow 8: item: Jam"),
            json!({"sheet": "Budget", "row_start": 7, "row_end": 8})
        );
        assert_eq!(at("docx", pages, "all of four"), json!({}), "only the conversion's own headings count");
        // Document text that looks like a heading is escaped, so it never passes for a page.
        let out = convert("pdf", &pdf_of(&["# 4 Results follow"])).unwrap();
        assert_eq!(out, "# Page 1\n\n\\# 4 Results follow\n\n");
        assert_eq!(sections("pdf", &out).len(), 1);
    }

    #[test]
    fn password_protected_office_files_say_so() {
        // A zip whose entries carry the "encrypted" flag (ZipCrypto, as OpenDocument and old tools write).
        let mut zip = zip_of(&[("word/document.xml", "<w:document/>"), ("[Content_Types].xml", "<Types/>")]);
        for (signature, flags_at) in [(b"PK\x03\x04", 6), (b"PK\x01\x02", 8)] {
            let starts: Vec<usize> =
                zip.windows(4).enumerate().filter(|(_, w)| w == signature).map(|(i, _)| i).collect();
            for start in starts {
                zip[start + flags_at] |= 1;
            }
        }
        for extension in ["docx", "odt", "epub"] {
            let err = convert(extension, &zip).unwrap_err();
            assert!(err.contains("protected by a password"), "{extension}: {err}");
        }
        // Office's own protection: an OLE compound file in place of the zip.
        let mut ole = OLE_SIGNATURE.to_vec();
        ole.extend([0u8; 504]);
        for extension in ["docx", "xlsx", "pptx"] {
            assert!(convert(extension, &ole).unwrap_err().contains("protected by a password"), "{extension}");
        }
    }
}
