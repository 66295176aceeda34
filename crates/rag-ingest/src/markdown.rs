//! Markdown structure: YAML front matter, heading paths, Obsidian-style
//! `#tags` and `[[wikilinks]]`.

use serde_json::{Map, Value};

/// Most bytes of front matter read: a closing `---` further down is not
/// looked for, and the file has no front matter.
pub const MAX_FRONT_MATTER_BYTES: usize = 64 * 1024;

/// Front matter's fields, and the byte offset where the body after it starts.
pub type FrontMatter = (Map<String, Value>, usize);

/// Front matter at the start of a markdown text: its fields, and the byte
/// offset where the body starts. `Ok(None)` when there is none (no closing
/// `---` within [`MAX_FRONT_MATTER_BYTES`], or not a YAML mapping); `Err`
/// when it is hostile: nested or aliased past the bounds of
/// [`yaml_to_json`](crate::yaml_to_json).
///
/// ```
/// let (fields, body) = rag_ingest::front_matter("---\ntitle: Plan\ntags: [a, b]\n---\n# Body\n").unwrap().unwrap();
/// assert_eq!(fields["title"], "Plan");
/// assert_eq!(fields["tags"][1], "b");
/// assert_eq!(body, 33);
/// ```
pub fn front_matter(text: &str) -> Result<Option<FrontMatter>, crate::YamlError> {
    let Some(rest) = text.strip_prefix("---\n").or_else(|| text.strip_prefix("---\r\n")) else {
        return Ok(None);
    };
    let start = text.len() - rest.len();
    let mut offset = start;
    for line in rest.split_inclusive('\n') {
        let trimmed = line.trim_end();
        if trimmed == "---" || trimmed == "..." {
            let yaml = &text[start..offset];
            let fields = if yaml.trim().is_empty() {
                Map::new()
            } else {
                match crate::yaml_to_json(yaml)? {
                    Some(Value::Object(fields)) => fields,
                    _ => return Ok(None),
                }
            };
            return Ok(Some((fields, offset + line.len())));
        }
        offset += line.len();
        if offset - start > MAX_FRONT_MATTER_BYTES {
            break;
        }
    }
    Ok(None)
}

/// Tags of front matter: `tags: [a, b]`, `tags: a, b` or `tags: a`.
pub fn front_matter_tags(fields: &Map<String, Value>) -> Vec<String> {
    let list = fields.get("tags").or_else(|| fields.get("tag"));
    let mut tags: Vec<String> = match list {
        Some(Value::Array(items)) => items.iter().filter_map(|v| v.as_str()).map(str::to_string).collect(),
        Some(Value::String(s)) => s.split([',', ' ']).filter(|t| !t.is_empty()).map(str::to_string).collect(),
        _ => Vec::new(),
    };
    for tag in &mut tags {
        *tag = tag.trim_start_matches('#').to_string();
    }
    tags.retain(|t| !t.is_empty());
    tags
}

/// An ATX heading (`## Title`) outside code fences.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heading {
    /// Byte offset of the heading line.
    pub offset: usize,
    /// 1 for `#`, 6 for `######`.
    pub level: usize,
    /// The heading text.
    pub title: String,
}

/// The headings of a markdown text, in order.
pub fn headings(text: &str) -> Vec<Heading> {
    let mut out = Vec::new();
    let mut fence: Option<&str> = None;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        if let Some(marker) = fence {
            if trimmed.starts_with(marker) {
                fence = None;
            }
        } else if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            fence = Some(&trimmed[..3]);
        } else if line.starts_with('#') {
            let level = line.bytes().take_while(|b| *b == b'#').count();
            let rest = &line[level..];
            if level <= 6 && (rest.starts_with(' ') || rest.starts_with('\t') || rest.trim().is_empty()) {
                let title = rest.trim().trim_end_matches('#').trim().to_string();
                if !title.is_empty() {
                    out.push(Heading { offset, level, title });
                }
            }
        }
        offset += line.len();
    }
    out
}

/// The heading path in force from each heading on, e.g. `Install > Linux`:
/// one entry per heading, in order.
pub fn heading_paths(headings: &[Heading]) -> Vec<String> {
    let mut stack: Vec<&Heading> = Vec::new();
    headings
        .iter()
        .map(|heading| {
            while stack.last().is_some_and(|top| top.level >= heading.level) {
                stack.pop();
            }
            stack.push(heading);
            stack.iter().map(|h| h.title.as_str()).collect::<Vec<_>>().join(" > ")
        })
        .collect()
}

/// The heading path in force at byte `offset`, e.g. `Install > Linux`.
pub fn heading_path(headings: &[Heading], offset: usize) -> String {
    let last = headings.partition_point(|h| h.offset <= offset);
    last.checked_sub(1).map(|i| heading_paths(&headings[..=i]).swap_remove(i)).unwrap_or_default()
}

/// Obsidian-style `#tags` in a text (not headings, not in code).
///
/// ```
/// assert_eq!(rag_ingest::inline_tags("Plans #work and #home/garden, not #1 or a#b"), ["work", "home/garden"]);
/// ```
pub fn inline_tags(text: &str) -> Vec<String> {
    let mut tags = Vec::new();
    for line in outside_code(text) {
        let bytes = line.as_bytes();
        for (i, _) in line.match_indices('#') {
            let before_ok = i == 0 || bytes[i - 1].is_ascii_whitespace() || bytes[i - 1] == b'(';
            let tag: String =
                line[i + 1..].chars().take_while(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '/')).collect();
            let tag = tag.trim_end_matches('/').to_string();
            if before_ok && !tag.is_empty() && !tag.chars().all(|c| c.is_ascii_digit()) && !tags.contains(&tag) {
                tags.push(tag);
            }
        }
    }
    tags
}

/// `[[wikilink]]` targets in a text (`[[Note|alias]]` and `[[Note#Part]]` give `Note`).
///
/// ```
/// assert_eq!(rag_ingest::wikilinks("See [[Plan]] and [[Ideas#Later|later]]."), ["Plan", "Ideas"]);
/// ```
pub fn wikilinks(text: &str) -> Vec<String> {
    let mut links = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("[[") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("]]") else { break };
        let inner = &after[..end];
        let target = inner.split(['|', '#', '^']).next().unwrap_or_default().trim().to_string();
        if !target.is_empty() && !inner.contains('\n') && !links.contains(&target) {
            links.push(target);
        }
        rest = &after[end + 2..];
    }
    links
}

/// Lines of `text` outside fenced code blocks and not headings.
fn outside_code(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut in_fence = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            in_fence = !in_fence;
            continue;
        }
        let is_heading = line.starts_with('#') && line.trim_start_matches('#').starts_with(' ');
        if !in_fence && !is_heading {
            out.push(line);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heading_paths_follow_nesting() {
        let text =
            "# Guide\nintro\n## Install\n### Linux\napt\n### Mac\nbrew\n## Usage\nrun\n```\n# not a heading\n```\n";
        let hs = headings(text);
        assert_eq!(
            hs.iter().map(|h| h.title.as_str()).collect::<Vec<_>>(),
            ["Guide", "Install", "Linux", "Mac", "Usage"]
        );
        assert_eq!(heading_path(&hs, text.find("apt").unwrap()), "Guide > Install > Linux");
        assert_eq!(heading_path(&hs, text.find("brew").unwrap()), "Guide > Install > Mac");
        assert_eq!(heading_path(&hs, text.find("run").unwrap()), "Guide > Usage");
        assert_eq!(heading_path(&hs, 0), "Guide");
    }

    #[test]
    fn front_matter_needs_a_closing_line_and_a_mapping() {
        assert_eq!(front_matter("---\ntitle: x\nno end"), Ok(None));
        assert_eq!(front_matter("# no front matter"), Ok(None));
        assert_eq!(front_matter("---\n- a list\n---\nbody"), Ok(None));
        let (fields, _) = front_matter("---\ntags: one, two\n---\n").unwrap().unwrap();
        assert_eq!(front_matter_tags(&fields), ["one", "two"]);
        assert_eq!(front_matter("---\n---\nbody").unwrap().map(|(f, at)| (f.len(), at)), Some((0, 8)));
    }

    #[test]
    fn a_closing_line_is_looked_for_only_so_far() {
        let far = format!("---\ntitle: x\n{}---\nbody", "filler line\n".repeat(MAX_FRONT_MATTER_BYTES / 12 + 1));
        assert_eq!(front_matter(&far), Ok(None));
    }

    #[test]
    fn hostile_front_matter_is_refused_not_expanded() {
        let deep = format!("---\n{}x\n---\nbody", "- ".repeat(10_000));
        assert_eq!(front_matter(&deep), Err(crate::YamlError::TooDeep));
        let mut laughs = String::from("---\nl0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for i in 1..9 {
            laughs += &format!("l{i}: &l{i} [{}]\n", vec![format!("*l{}", i - 1); 10].join(", "));
        }
        laughs += "---\nbody";
        assert_eq!(front_matter(&laughs), Err(crate::YamlError::TooManyValues));
    }

    #[test]
    fn tags_in_code_and_headings_are_not_tags() {
        assert_eq!(inline_tags("## Heading #x\n```\n#notatag\n```\ntext #real"), ["real"]);
    }
}
