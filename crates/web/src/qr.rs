//! QR codes of share links, drawn as inline SVG (no image request, no script).

use qrcode::types::{QrError, Version};
use qrcode::{EcLevel, QrCode};

/// A QR code of `text`: the SVG to inline and the QR version (1–40; a phone camera reads
/// versions up to about 20 from a screen without trouble).
pub struct Qr {
    /// `<svg …>…</svg>`, dark modules on white.
    pub svg: String,
    /// The symbol version: its size is `17 + 4 × version` modules a side.
    pub version: i16,
}

/// Draws `text` at error-correction level M (15 % of the symbol may be damaged).
pub fn qr(text: &str) -> Result<Qr, QrError> {
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M)?;
    let version = match code.version() {
        Version::Normal(v) | Version::Micro(v) => v,
    };
    let svg = code
        .render::<qrcode::render::svg::Color<'_>>()
        .quiet_zone(true)
        .module_dimensions(4, 4)
        .dark_color(qrcode::render::svg::Color("#000000"))
        .light_color(qrcode::render::svg::Color("#ffffff"))
        .build();
    // Inline in HTML: drop the XML prolog.
    let svg = match svg.find("<svg") {
        Some(i) => svg[i..].to_string(),
        None => svg,
    };
    Ok(Qr { svg, version })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_an_inline_svg_and_reports_its_version() {
        let q = qr("pl1.abc").unwrap();
        assert!(q.svg.starts_with("<svg"), "{}", &q.svg[..40]);
        assert!(q.svg.ends_with("</svg>"));
        assert!(
            !q.svg.contains("style"),
            "no inline style: the CSP forbids it"
        );
        assert_eq!(q.version, 1);
        let long = "x".repeat(600);
        assert!(qr(&long).unwrap().version > 10);
        assert!(qr(&"x".repeat(5000)).is_err(), "too long for any version");
    }
}
