//! Office, OpenDocument, EPUB and spreadsheet files as markdown, natively:
//! no converter process, no network.
//!
//! Each format becomes markdown whose headings say where a chunk came from
//! (`# Slide 3`, `# Sheet: Budget`, `###### Chapter 2`) and whose text keeps
//! the document's own headings, paragraphs and table rows.

mod archive;
mod docx;
mod epub;
mod opendocument;
mod pdf;
mod pptx;
mod spreadsheet;
mod xml;

use std::io::Cursor;

use calamine::Reader as _;
use rag_core::source::{Location, Section};

use archive::Archive;
use docx::docx;
use epub::epub;
use opendocument::{opendocument_slides, opendocument_text};
use pdf::pdf;
use pptx::pptx;
use spreadsheet::spreadsheet;

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
        "html" => match std::str::from_utf8(bytes) {
            Ok(html) => crate::html::html_to_markdown(html),
            Err(err) => Err(format!("the page is not UTF-8 ({err})")),
        },
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

#[cfg(test)]
mod tests;
