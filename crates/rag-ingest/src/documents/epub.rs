//! EPUB: the spine's chapters in reading order.

use super::archive::Archive;
use super::xml::{Token, attr, tokens};

pub(super) fn epub(archive: &mut Archive<'_>) -> Result<String, String> {
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
        let markdown = crate::html::html_to_markdown(&html)?;
        if !markdown.trim().is_empty() {
            out.push_str(&format!("###### Chapter {}\n\n{}\n\n", n + 1, markdown.trim()));
        }
    }
    if out.is_empty() {
        return Err("no chapters with text".into());
    }
    Ok(out)
}
