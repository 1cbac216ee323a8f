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

    /// A chain of `hops` referrals of one offer, signed by distinct keys.
    fn link(hops: usize) -> passalong_protocol::link::ShareLink {
        use passalong_protocol::attestation::{Body, Offer, Referral};
        use passalong_protocol::{Attestation, Currency, Keypair, Policy, Rule};
        let seller = Keypair::from_seed([1; 32]);
        let offer = Attestation::sign(
            Body::Offer(Offer {
                seller: seller.public(),
                title: "A record, pressed on 180 g vinyl".into(),
                content_hash: None,
                price_minor: 2000,
                currency: Currency::parse("EUR").unwrap(),
                policy: Policy {
                    pool_bps: 1000,
                    connector_bps: 0,
                    rule: Rule::Geometric { r_bps: 5000 },
                    max_depth: 16,
                    window_ms: 30 * 86_400_000,
                    require_purchase: false,
                },
                valid_from_ms: 0,
                valid_until_ms: None,
                created_at_ms: 1_767_225_600_000,
                checkout_url: Some("https://shop.example/buy/record".into()),
            }),
            &seller,
        );
        let mut chain = vec![offer];
        for i in 0..hops {
            let k = Keypair::from_seed([i as u8 + 2; 32]);
            let parent = (i > 0).then(|| chain[i].id);
            let r = Attestation::sign(
                Body::Referral(Referral {
                    referrer: k.public(),
                    offer: chain[0].id,
                    parent,
                    recipient: None,
                    community: None,
                    created_at_ms: 1_767_225_600_000 + i as u64,
                }),
                &k,
            );
            chain.push(r);
        }
        passalong_protocol::link::ShareLink::new(chain).unwrap()
    }

    /// The QR version of a share link per hop count: the full link's URL outgrows a phone's
    /// reach after a hop or two (and any QR code at all after a few), the short link's stays
    /// the same at every depth. Run with `--nocapture` for the table in docs/benchmarks.md.
    #[test]
    fn short_links_stay_scannable_at_every_depth() {
        use passalong_protocol::link::ShortLink;
        let base = "https://community.example";
        println!("hops  full-chars  full-version  short-chars  short-version");
        for hops in 0..=8 {
            let l = link(hops);
            let full = l.url(base);
            let short = ShortLink::of(&l).url(base);
            let fv = qr(&full).map_or("none".to_string(), |q| q.version.to_string());
            let sv = qr(&short).unwrap().version;
            println!(
                "{hops:>4}  {:>10}  {fv:>12}  {:>11}  {sv:>13}",
                full.len(),
                short.len()
            );
            assert!(sv <= 20, "{hops} hops: short link QR version {sv}");
        }
        // The full link is beyond version 20 from two hops on: why the QR code shows the short one.
        assert!(qr(&link(2).url(base)).map_or(true, |q| q.version > 20));
    }
}
