//! Plain-text tables as kubectl prints them: left-aligned columns, three
//! spaces apart, no borders, no trailing spaces.

/// Space between columns.
const GAP: usize = 3;

/// A header and rows of cells, all of the header's length.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Table {
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Self {
        Self {
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    /// The width of each column: its widest cell.
    pub fn widths(&self) -> Vec<usize> {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| width(h)).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(width(cell));
            }
        }
        widths
    }

    /// The header and every row, each line ending in `\n`.
    pub fn render(&self) -> String {
        let widths = self.widths();
        let mut out = line(&self.headers, &widths);
        for row in &self.rows {
            out.push_str(&line(row, &widths));
        }
        out
    }

    /// The rows only (for `--no-headers`).
    pub fn render_rows(&self) -> String {
        let widths = self.widths();
        self.rows.iter().map(|r| line(r, &widths)).collect()
    }
}

/// One row padded to `widths` (cells wider than their column push the rest
/// right, as kubectl's watch output does).
pub fn line(cells: &[String], widths: &[usize]) -> String {
    let mut out = String::new();
    let last = cells.len().saturating_sub(1);
    for (i, cell) in cells.iter().enumerate() {
        out.push_str(cell);
        if i < last {
            let w = widths.get(i).copied().unwrap_or(0);
            let pad = w.saturating_sub(width(cell)) + GAP;
            out.extend(std::iter::repeat_n(' ', pad));
        }
    }
    let trimmed = out.trim_end().len();
    out.truncate(trimmed);
    out.push('\n');
    out
}

fn width(s: &str) -> usize {
    s.chars().count()
}

/// Indents every line of `text` by `n` spaces (tables inside `describe`).
pub fn indent(text: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    text.lines().map(|l| format!("{pad}{l}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_without_trailing_spaces() {
        let mut t = Table::new(&["NAME", "STATUS", "AGE"]);
        t.push(vec!["gpu-1".into(), "Ready".into(), "5m".into()]);
        t.push(vec!["a-much-longer-name".into(), "".into(), "2d".into()]);
        assert_eq!(
            t.render(),
            "NAME                 STATUS   AGE\n\
             gpu-1                Ready    5m\n\
             a-much-longer-name            2d\n"
        );
    }
}
