//! Text from other people made safe to print. Titles, orders and references come from remote
//! sellers and names from the user; any of them can hold terminal escape sequences, NUL, line
//! breaks or bidirectional overrides (U+202E turns `txt.exe` into `exe.txt` on screen). What a
//! person reads — the CLI's lines, the CSV a spreadsheet shows — goes through [`printable`];
//! JSON keeps the text as signed.

use std::borrow::Cow;

/// What stands in for a character that is not printed.
pub const REPLACEMENT: char = '\u{FFFD}';

/// Whether `c` is printed as is: not a control character (C0, DEL, C1: escapes, NUL, tabs,
/// line breaks), not a Unicode line or paragraph separator, and not an invisible formatting
/// character that reorders or hides text (bidirectional marks, embeddings, overrides and
/// isolates, zero-width characters, the byte order mark, interlinear annotations, tags).
pub fn is_printable(c: char) -> bool {
    !(c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{180E}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{FEFF}'
                | '\u{FFF9}'..='\u{FFFB}'
                | '\u{E0000}'..='\u{E007F}'
        ))
}

/// `text` with every character that is not [printable](is_printable) replaced by
/// [`REPLACEMENT`] (so that a reader sees something was there); borrowed when nothing is.
pub fn printable(text: &str) -> Cow<'_, str> {
    if text.chars().all(is_printable) {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(
            text.chars()
                .map(|c| if is_printable(c) { c } else { REPLACEMENT })
                .collect(),
        )
    }
}

/// [`printable`] for a document of lines: its line breaks (`\n`) are kept.
pub fn printable_lines(text: &str) -> Cow<'_, str> {
    if text.chars().all(|c| c == '\n' || is_printable(c)) {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(
            text.split('\n')
                .map(printable)
                .collect::<Vec<_>>()
                .join("\n"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_reordering_characters_are_replaced() {
        assert!(matches!(printable("Anna Müller 日本"), Cow::Borrowed(_)));
        assert_eq!(printable("a\u{1b}[31mred"), "a\u{FFFD}[31mred");
        assert_eq!(printable("nul\0"), "nul\u{FFFD}");
        assert_eq!(
            printable("tab\tcr\rlf\n"),
            "tab\u{FFFD}cr\u{FFFD}lf\u{FFFD}"
        );
        assert_eq!(printable("csi\u{9b}2J"), "csi\u{FFFD}2J");
        assert_eq!(printable("\u{202E}fdp.exe"), "\u{FFFD}fdp.exe");
        for c in [
            '\u{200E}',
            '\u{200F}',
            '\u{202A}',
            '\u{2066}',
            '\u{2069}',
            '\u{061C}',
            '\u{200B}',
            '\u{FEFF}',
            '\u{2028}',
            '\u{2029}',
            '\u{7f}',
            '\u{E0041}',
        ] {
            assert!(!is_printable(c), "{:04X}", c as u32);
        }
        assert_eq!(
            printable_lines("a\u{1b}b\nc\td\n"),
            "a\u{FFFD}b\nc\u{FFFD}d\n"
        );
        assert!(matches!(printable_lines("one\ntwo"), Cow::Borrowed(_)));
    }
}
