//! HTML pages as markdown, within bounds a hostile page cannot break.
//!
//! The HTML parser checks scopes by walking its stack of open elements, so a
//! page of nested tags costs time quadratic in their depth, and the
//! HTML-to-markdown walk recurses once per level. A page is measured twice:
//! its tags are counted before parsing (cheap, and an upper bound for well
//! formed pages), and the parsed tree's real depth before the walk.

use std::rc::Rc;

/// Deepest element nesting an HTML page may have. Real pages stay under a
/// hundred.
pub const MAX_HTML_DEPTH: usize = 256;

/// Deepest nesting the tag count before parsing may reach: above this the
/// page is refused unparsed. Looser than [`MAX_HTML_DEPTH`], as unclosed tags
/// the parser closes itself count here.
const MAX_TAG_DEPTH: usize = 4 * MAX_HTML_DEPTH;

/// Elements that never have content.
const VOID: &[&str] = &[
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track", "wbr",
    "keygen", "frame", "basefont", "bgsound", "isindex",
];

/// Elements whose end tag may be left out: the parser closes them at the
/// next sibling, so they do not nest when unclosed.
const OPTIONAL_END: &[&str] = &[
    "p", "li", "dt", "dd", "tr", "td", "th", "thead", "tbody", "tfoot", "option", "optgroup", "rb", "rt", "rp", "rtc",
    "colgroup", "caption", "html", "head", "body",
];

/// Elements whose content is text, not tags, up to their own end tag.
const RAW_TEXT: &[&str] =
    &["script", "style", "textarea", "title", "xmp", "iframe", "noembed", "noframes", "plaintext"];

/// HTML as markdown; scripts, styles and other non-content dropped. A page
/// nested deeper than [`MAX_HTML_DEPTH`] is refused, not walked.
pub(crate) fn html_to_markdown(html: &str) -> Result<String, String> {
    let too_deep = || format!("elements nest deeper than {MAX_HTML_DEPTH} levels; not read");
    if tag_depth(html) > MAX_TAG_DEPTH {
        return Err(too_deep());
    }
    let converter = htmd::HtmlToMarkdown::builder()
        .skip_tags(vec!["script", "style", "noscript", "template", "svg", "head", "nav", "iframe"])
        .build();
    let tree = converter.html_to_tree(html).map_err(|e| e.to_string())?;
    if tree_depth(&tree) > MAX_HTML_DEPTH {
        return Err(too_deep());
    }
    Ok(converter.tree_to_markdown(&tree))
}

/// The deepest nesting of start tags not yet closed, reading tags only: void
/// elements, self-closing tags, elements whose end tag is optional, comments
/// and raw text do not count.
fn tag_depth(html: &str) -> usize {
    let bytes = html.as_bytes();
    let (mut depth, mut deepest, mut at) = (0usize, 0usize, 0usize);
    while let Some(offset) = memchr_lt(&bytes[at..]) {
        let start = at + offset + 1;
        let Some(&first) = bytes.get(start) else { break };
        if bytes[start..].starts_with(b"!--") {
            at = find(bytes, start, b"-->").map_or(bytes.len(), |end| end + 3);
            continue;
        }
        let closing = first == b'/';
        let name_start = if closing { start + 1 } else { start };
        let name_end = bytes[name_start..]
            .iter()
            .position(|b| !(b.is_ascii_alphanumeric() || *b == b'-' || *b == b':'))
            .map_or(bytes.len(), |n| name_start + n);
        let tag_end = bytes[name_end..].iter().position(|b| *b == b'>').map_or(bytes.len(), |n| name_end + n);
        at = (tag_end + 1).min(bytes.len());
        if name_end == name_start || !bytes[name_start].is_ascii_alphabetic() {
            continue; // `<!DOCTYPE`, `<?xml`, a stray `<`
        }
        let name = html[name_start..name_end].to_ascii_lowercase();
        if VOID.contains(&name.as_str()) || OPTIONAL_END.contains(&name.as_str()) {
            continue;
        }
        if closing {
            depth = depth.saturating_sub(1);
        } else if bytes[..at].ends_with(b"/>") {
            // `<x/>`: opens and closes.
        } else if RAW_TEXT.contains(&name.as_str()) {
            let end_tag = format!("</{name}");
            at = find_ignoring_case(html, at, &end_tag).unwrap_or(bytes.len());
        } else {
            depth += 1;
            deepest = deepest.max(depth);
        }
    }
    deepest
}

fn memchr_lt(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|b| *b == b'<')
}

fn find(bytes: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    bytes.get(from..)?.windows(needle.len()).position(|w| w == needle).map(|i| from + i)
}

fn find_ignoring_case(text: &str, from: usize, needle: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    bytes.get(from..)?.windows(needle.len()).position(|w| w.eq_ignore_ascii_case(needle.as_bytes())).map(|i| from + i)
}

/// How deep a parsed page's elements nest, measured without recursion.
fn tree_depth(root: &Rc<htmd::Node>) -> usize {
    let mut deepest = 0;
    let mut pending = vec![(Rc::clone(root), 0usize)];
    while let Some((node, depth)) = pending.pop() {
        deepest = deepest.max(depth);
        pending.extend(node.children.borrow().iter().map(|child| (Rc::clone(child), depth + 1)));
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deeply_nested_pages_are_refused_before_parsing() {
        for tag in ["div", "b", "span", "table"] {
            let deep = format!("<html><body>{}x</body></html>", format!("<{tag}>").repeat(200_000));
            let refused = html_to_markdown(&deep);
            assert!(matches!(&refused, Err(r) if r.contains("nest deeper than 256")), "{tag}: {refused:?}");
        }
    }

    #[test]
    fn depth_between_the_two_bounds_is_caught_after_parsing() {
        let deep = format!("{}x{}", "<div>".repeat(MAX_HTML_DEPTH + 10), "</div>".repeat(MAX_HTML_DEPTH + 10));
        assert!(tag_depth(&deep) <= MAX_TAG_DEPTH);
        assert!(html_to_markdown(&deep).unwrap_err().contains("nest deeper"));
    }

    #[test]
    fn ordinary_pages_pass_however_many_tags_they_hold() {
        let nested = format!("{}text{}", "<div>".repeat(100), "</div>".repeat(100));
        assert!(html_to_markdown(&nested).unwrap().contains("text"));
        // Unclosed paragraphs and list items close each other: no depth.
        let flat = format!("<ul>{}</ul>{}<br><img src=x>", "<li>item".repeat(5_000), "<p>para".repeat(5_000));
        assert_eq!(tag_depth(&flat), 1);
        assert!(html_to_markdown(&flat).unwrap().contains("para"));
        let script =
            format!("<script>{}</script><div/><!-- {} --><p>after</p>", "<div>".repeat(10_000), "<b>".repeat(10_000));
        assert_eq!(tag_depth(&script), 0);
        assert!(html_to_markdown(&script).unwrap().contains("after"));
    }
}
