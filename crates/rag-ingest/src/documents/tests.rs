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
    let out = convert("pdf", &pdf_of(&["Introduction to gardening", "", "Watering schedule for tomatoes"])).unwrap();
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
    assert!(convert("docx", &zip_of(&[("other.xml", "<x/>")])).unwrap_err().contains("word/document.xml is missing"));
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
        let starts: Vec<usize> = zip.windows(4).enumerate().filter(|(_, w)| w == signature).map(|(i, _)| i).collect();
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
