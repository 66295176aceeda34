//! Spreadsheets (.xlsx, .xlsm, .xls, .ods): each sheet under `# Sheet:
//! name`, each row on a line of its own.

use std::io::Cursor;

/// Each sheet under `# Sheet: name`, each row on one line with the header
/// row's names repeated (`row 7: item: Tea | cost: 3`), so a chunk stands alone.
pub(super) fn spreadsheet<'b, W, E>(workbook: Result<W, E>) -> Result<String, String>
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
