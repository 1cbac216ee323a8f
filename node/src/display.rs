//! What people read: tables whose cells are [printable],
//! amounts in major units, keys with their contact names.

use anyhow::Result;
use passalong_api::contacts::ContactList;
use passalong_api::text::printable;
use passalong_protocol::{Currency, PublicKey};

use crate::client::Client;

/// Contact names, as `GET /v1/contacts` lists them.
#[derive(Default)]
pub struct Names(passalong_api::contacts::Names);

impl Names {
    /// The contacts of the node's identity.
    pub fn fetch(c: &Client) -> Result<Names> {
        Ok(Names::of(&c.get::<ContactList>("/v1/contacts")?))
    }

    /// The names of a contacts list.
    pub fn of(list: &ContactList) -> Names {
        Names(list.names())
    }

    /// The name of `key` (hex), or "" if it has none.
    pub fn name(&self, key: &str) -> &str {
        PublicKey::from_hex(key)
            .ok()
            .and_then(|k| self.0.get(&k))
            .map_or("", String::as_str)
    }

    /// As the API's CSV helpers take them.
    pub fn by_key(&self) -> &passalong_api::contacts::Names {
        &self.0
    }
}

/// An amount of the JSON API (an integer in minor units, possibly beyond 64 bits) as people
/// read it: major units with the code, `20.00 EUR`, `1200 JPY`; an amount beyond `i128` or an
/// unknown code as given.
pub fn money(amount: impl std::fmt::Display, code: &str) -> String {
    let raw = amount.to_string();
    match (raw.parse::<i128>(), Currency::parse(code)) {
        (Ok(n), Some(c)) => c.display(n),
        _ => format!("{raw} {code}"),
    }
}

/// Column alignment.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// Text.
    Left,
    /// Numbers and amounts.
    Right,
}

/// A table of text: columns as wide as their widest cell, two spaces apart; the last column
/// of text is not padded.
pub struct Table {
    columns: Vec<(&'static str, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these headings.
    pub fn new(columns: &[(&'static str, Align)]) -> Table {
        Table {
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    /// One row; each cell is made printable.
    pub fn row<S: AsRef<str>>(&mut self, cells: impl IntoIterator<Item = S>) {
        self.rows.push(
            cells
                .into_iter()
                .map(|c| printable(c.as_ref()).into_owned())
                .collect(),
        );
    }

    /// The lines, headings first, without a final line break.
    pub fn render(&self) -> String {
        let width = |s: &str| s.chars().count();
        let widths: Vec<usize> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, (h, _))| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(i))
                    .map(|c| width(c))
                    .chain([width(h)])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: Vec<&str>| {
            let mut out = String::new();
            for (i, ((_, align), w)) in self.columns.iter().zip(&widths).enumerate() {
                let cell = cells.get(i).copied().unwrap_or("");
                if i > 0 {
                    out.push_str("  ");
                }
                let pad = " ".repeat(w - width(cell).min(*w));
                match align {
                    Align::Left => {
                        out.push_str(cell);
                        out.push_str(&pad);
                    }
                    Align::Right => {
                        out.push_str(&pad);
                        out.push_str(cell);
                    }
                }
            }
            out.trim_end().to_string()
        };
        let mut lines = vec![line(self.columns.iter().map(|(h, _)| *h).collect())];
        lines.extend(
            self.rows
                .iter()
                .map(|r| line(r.iter().map(String::as_str).collect())),
        );
        lines.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_in_major_units() {
        assert_eq!(money(2000, "EUR"), "20.00 EUR");
        assert_eq!(money(1200, "JPY"), "1200 JPY");
        assert_eq!(money(-5, "EUR"), "-0.05 EUR");
        assert_eq!(money(1234u128, "KWD"), "1.234 KWD");
        assert_eq!(
            money(i128::MIN, "EUR").len(),
            i128::MIN.to_string().len() + 5
        );
        assert_eq!(
            money(u128::MAX, "EUR"),
            "340282366920938463463374607431768211455 EUR",
            "beyond i128: shown as given"
        );
        assert_eq!(money(5, "euro"), "5 euro");
    }

    #[test]
    fn columns_line_up_and_cells_are_printable() {
        let mut t = Table::new(&[("name", Align::Left), ("owed", Align::Right)]);
        t.row(["Anna", "1.00 EUR"]);
        t.row(["B\u{1b}[2J\u{202E}ob", "12345.00 EUR"]);
        let text = t.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], format!("name{}owed", " ".repeat(14)));
        assert_eq!(lines[1], format!("Anna{}1.00 EUR", " ".repeat(10)));
        assert_eq!(lines[2], "B\u{FFFD}[2J\u{FFFD}ob  12345.00 EUR");
    }
}
