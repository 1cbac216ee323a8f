//! Amounts for people: minor units written in major units with the currency's ISO 4217 minor
//! digits (EUR 2, JPY 0, KWD 3). The protocol itself only ever computes in minor units; this
//! is how the CLI's tables and the dashboard show them, so both say the same thing.

use crate::attestation::Currency;

/// ISO 4217 currencies whose minor unit is not 2 digits. Every other valid code has 2.
const MINOR_DIGITS: &[(&[u8; 3], u32)] = &[
    // 0 digits.
    (b"BIF", 0),
    (b"CLP", 0),
    (b"DJF", 0),
    (b"GNF", 0),
    (b"ISK", 0),
    (b"JPY", 0),
    (b"KMF", 0),
    (b"KRW", 0),
    (b"PYG", 0),
    (b"RWF", 0),
    (b"UGX", 0),
    (b"UYI", 0),
    (b"VND", 0),
    (b"VUV", 0),
    (b"XAF", 0),
    (b"XOF", 0),
    (b"XPF", 0),
    // 3 digits.
    (b"BHD", 3),
    (b"IQD", 3),
    (b"JOD", 3),
    (b"KWD", 3),
    (b"LYD", 3),
    (b"OMR", 3),
    (b"TND", 3),
    // 4 digits.
    (b"CLF", 4),
    (b"UYW", 4),
];

impl Currency {
    /// Digits after the decimal point of the major unit (ISO 4217; 2 for codes it does not list
    /// otherwise, as for most currencies).
    pub fn minor_digits(&self) -> u32 {
        MINOR_DIGITS
            .iter()
            .find(|(code, _)| **code == self.0)
            .map_or(2, |&(_, d)| d)
    }

    /// `amount` minor units in major units, without the code: `1234` EUR → `"12.34"`,
    /// `-5` EUR → `"-0.05"`, `1234` JPY → `"1234"`. Exact for any `i128`.
    pub fn major(&self, amount: i128) -> String {
        let digits = self.minor_digits();
        let sign = if amount < 0 { "-" } else { "" };
        let abs = amount.unsigned_abs();
        if digits == 0 {
            return format!("{sign}{abs}");
        }
        let unit = 10u128.pow(digits);
        format!(
            "{sign}{}.{:0width$}",
            abs / unit,
            abs % unit,
            width = digits as usize
        )
    }

    /// `amount` with the code: `"12.34 EUR"`.
    pub fn display(&self, amount: i128) -> String {
        format!("{} {}", self.major(amount), self.as_str())
    }

    /// Parses an amount written in major units (`"12.34"`, `"12"`, `"12.3"`) into minor units;
    /// `None` if it has more decimals than the currency allows, a sign, or anything else.
    pub fn parse_major(&self, text: &str) -> Option<u64> {
        let text = text.trim();
        let digits = self.minor_digits() as usize;
        let (int, frac) = match text.split_once('.') {
            Some((i, f)) => (i, f),
            None => (text, ""),
        };
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if int.is_empty() || !all_digits(int) || !all_digits(frac) || frac.len() > digits {
            return None;
        }
        if text.contains('.') && frac.is_empty() {
            return None;
        }
        let unit = 10u64.checked_pow(digits as u32)?;
        let frac_minor: u64 = if frac.is_empty() {
            0
        } else {
            format!("{frac:0<digits$}").parse().ok()?
        };
        int.parse::<u64>()
            .ok()?
            .checked_mul(unit)?
            .checked_add(frac_minor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(code: &str) -> Currency {
        Currency::parse(code).unwrap()
    }

    #[test]
    fn minor_digits_follow_iso_4217() {
        assert_eq!(c("EUR").minor_digits(), 2);
        assert_eq!(c("USD").minor_digits(), 2);
        assert_eq!(c("JPY").minor_digits(), 0);
        assert_eq!(c("KWD").minor_digits(), 3);
        assert_eq!(c("CLF").minor_digits(), 4);
        // Not an ISO code: two digits, like most.
        assert_eq!(c("XYZ").minor_digits(), 2);
    }

    #[test]
    fn major_units() {
        assert_eq!(c("EUR").major(1234), "12.34");
        assert_eq!(c("EUR").major(5), "0.05");
        assert_eq!(c("EUR").major(-5), "-0.05");
        assert_eq!(c("EUR").major(0), "0.00");
        assert_eq!(c("JPY").major(1234), "1234");
        assert_eq!(c("KWD").major(1234), "1.234");
        assert_eq!(c("KWD").major(-1), "-0.001");
        assert_eq!(c("EUR").display(100), "1.00 EUR");
        assert_eq!(
            c("EUR").major(i128::MIN),
            "-1701411834604692317316873037158841057.28"
        );
    }

    #[test]
    fn parses_major_units() {
        assert_eq!(c("EUR").parse_major("12.34"), Some(1234));
        assert_eq!(c("EUR").parse_major("12.3"), Some(1230));
        assert_eq!(c("EUR").parse_major("12"), Some(1200));
        assert_eq!(c("EUR").parse_major(" 0.05 "), Some(5));
        assert_eq!(c("EUR").parse_major("12.345"), None);
        assert_eq!(c("EUR").parse_major("12."), None);
        assert_eq!(c("EUR").parse_major(".5"), None);
        assert_eq!(c("EUR").parse_major("-1"), None);
        assert_eq!(c("EUR").parse_major("1e3"), None);
        assert_eq!(c("JPY").parse_major("1200"), Some(1200));
        assert_eq!(c("JPY").parse_major("12.5"), None);
        assert_eq!(c("KWD").parse_major("1.234"), Some(1234));
        assert_eq!(c("EUR").parse_major("184467440737095516.16"), None);
    }

    #[test]
    fn major_round_trips_through_parse() {
        for code in ["EUR", "JPY", "KWD", "CLF"] {
            for amount in [0u64, 1, 9, 10, 99, 100, 12345, 1_000_000_007] {
                let text = c(code).major(i128::from(amount));
                assert_eq!(c(code).parse_major(&text), Some(amount), "{code} {text}");
            }
        }
    }
}
