//! Small documents built in memory, for tests and benchmarks of extraction:
//! a zip of given entries (the container of DOCX, PPTX, ODT, EPUB ...), a PDF
//! with a text layer, an OpenDocument spreadsheet.
//!
//! ```
//! let pdf = rag_testkit::documents::pdf(&[vec!["Intro".into()], vec![], vec!["Results".into()]]);
//! assert!(pdf.starts_with(b"%PDF-1.5"));
//! ```

use std::io::Write;

/// A zip holding `files` (name, contents), deflated.
pub fn zip(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, body) in files {
        writer.start_file(*name, zip::write::SimpleFileOptions::default()).expect("zip entry");
        writer.write_all(body).expect("zip write");
    }
    writer.finish().expect("zip finish").into_inner()
}

/// A PDF with one page per entry of `pages`, each showing its lines in
/// Helvetica; a page with no lines has no text layer (as a scan has none).
pub fn pdf(pages: &[Vec<String>]) -> Vec<u8> {
    use lopdf::content::{Content, Operation};
    use lopdf::{Document, Object, Stream, dictionary};
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let font = doc.add_object(dictionary! { "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica" });
    let resources = doc.add_object(dictionary! { "Font" => dictionary! { "F1" => font } });
    let mut kids: Vec<Object> = Vec::new();
    for lines in pages {
        let mut operations = Vec::new();
        if !lines.is_empty() {
            operations.push(Operation::new("BT", vec![]));
            operations.push(Operation::new("Tf", vec!["F1".into(), 10.into()]));
            operations.push(Operation::new("Td", vec![72.into(), 740.into()]));
            for line in lines {
                operations.push(Operation::new("Td", vec![0.into(), (-14).into()]));
                operations.push(Operation::new("Tj", vec![Object::string_literal(line.as_str())]));
            }
            operations.push(Operation::new("ET", vec![]));
        }
        let encoded = Content { operations }.encode().expect("PDF content");
        let stream = doc.add_object(Stream::new(dictionary! {}, encoded));
        let id = doc.add_object(dictionary! {
            "Type" => "Page", "Parent" => pages_id, "Contents" => stream, "Resources" => resources,
            "MediaBox" => vec![0.into(), 0.into(), 612.into(), 792.into()],
        });
        kids.push(id.into());
    }
    let count = kids.len() as i64;
    doc.objects
        .insert(pages_id, Object::Dictionary(dictionary! { "Type" => "Pages", "Kids" => kids, "Count" => count }));
    let catalog = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    doc.trailer.set("Root", catalog);
    let mut bytes = Vec::new();
    doc.save_to(&mut bytes).expect("PDF save");
    bytes
}

/// An OpenDocument spreadsheet with one sheet of string cells; the first row
/// is the header.
pub fn ods(sheet: &str, rows: &[&[&str]]) -> Vec<u8> {
    let cell = |text: &str| {
        format!(r#"<table:table-cell office:value-type="string"><text:p>{text}</text:p></table:table-cell>"#)
    };
    let body: String = rows
        .iter()
        .map(|row| format!("<table:table-row>{}</table:table-row>", row.iter().map(|c| cell(c)).collect::<String>()))
        .collect();
    let content = format!(
        r#"<office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0"><office:body><office:spreadsheet><table:table table:name="{sheet}">{body}</table:table></office:spreadsheet></office:body></office:document-content>"#
    );
    let manifest = r#"<manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0"><manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"></manifest:file-entry></manifest:manifest>"#;
    zip(&[
        ("mimetype", b"application/vnd.oasis.opendocument.spreadsheet"),
        ("META-INF/manifest.xml", manifest.as_bytes()),
        ("content.xml", content.as_bytes()),
    ])
}

/// An Excel workbook (`.xlsx`) with one sheet of inline string cells; the
/// first row is the header.
pub fn xlsx(sheet: &str, rows: &[&[&str]]) -> Vec<u8> {
    let column = |i: usize| char::from(b'A' + u8::try_from(i % 26).unwrap_or(0));
    let body: String = rows
        .iter()
        .enumerate()
        .map(|(r, row)| {
            let cells: String = row
                .iter()
                .enumerate()
                .map(|(c, text)| format!(r#"<c r="{}{}" t="inlineStr"><is><t>{text}</t></is></c>"#, column(c), r + 1))
                .collect();
            format!(r#"<row r="{}">{cells}</row>"#, r + 1)
        })
        .collect();
    xlsx_with_sheet_data(sheet, &body)
}

/// An Excel workbook (`.xlsx`) with one sheet whose `<sheetData>` is given as
/// XML, for fixtures no well-behaved writer makes (hostile cell references).
pub fn xlsx_with_sheet_data(sheet: &str, body: &str) -> Vec<u8> {
    const MAIN: &str = "http://schemas.openxmlformats.org/spreadsheetml/2006/main";
    const REL: &str = "http://schemas.openxmlformats.org/officeDocument/2006/relationships";
    let content_types = r#"<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>"#;
    let root_rels = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="{REL}/officeDocument" Target="xl/workbook.xml"/></Relationships>"#
    );
    let workbook = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="{MAIN}" xmlns:r="{REL}"><sheets><sheet name="{sheet}" sheetId="1" r:id="rId1"/></sheets></workbook>"#
    );
    let workbook_rels = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="{REL}/worksheet" Target="worksheets/sheet1.xml"/></Relationships>"#
    );
    let worksheet = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="{MAIN}"><sheetData>{body}</sheetData></worksheet>"#
    );
    zip(&[
        ("[Content_Types].xml", content_types.as_bytes()),
        ("_rels/.rels", root_rels.as_bytes()),
        ("xl/workbook.xml", workbook.as_bytes()),
        ("xl/_rels/workbook.xml.rels", workbook_rels.as_bytes()),
        ("xl/worksheets/sheet1.xml", worksheet.as_bytes()),
    ])
}
