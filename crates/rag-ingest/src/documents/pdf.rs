//! PDF: each page's text layer under `# Page N`.

use super::literal;

/// Each page under `# Page N`, its text from the PDF's text layer (lopdf).
pub(super) fn pdf(bytes: &[u8]) -> Result<String, String> {
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
