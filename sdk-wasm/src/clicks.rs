//! Rules for click autocapture: which elements count, what is kept of them, and when a link
//! leaves the shop. The DOM walking is in `autocapture.rs`; these rules build natively.

use crate::text::{cut, until_any};

/// The elements a click is recorded for; a click inside one (on an icon in a button) counts as
/// a click on it.
pub const CLICKABLE_SELECTOR: &str = "a, button, [role=button], input[type=submit]";

/// Elements carrying this attribute, and everything inside them, are never recorded.
pub const IGNORE_SELECTOR: &str = "[data-rm-ignore]";

/// Longest element text kept, in characters (also of its id and of each class name).
pub const MAX_TEXT_CHARS: usize = 255;

/// Most class names kept of a clicked element.
pub const MAX_CLASSES: usize = 50;

/// The visible text of an element as one line: whitespace runs collapsed, trimmed, cut to
/// [`MAX_TEXT_CHARS`]. `None` when nothing is left (icon-only buttons).
pub fn clean_text(raw: &str) -> Option<String> {
    let mut out = String::new();
    for (count, word) in raw.split_whitespace().enumerate() {
        if count > 0 {
            out.push(' ');
        }
        out.push_str(word);
        if out.len() >= MAX_TEXT_CHARS * 4 {
            // Enough for any cut below; stops a huge container from being copied whole.
            break;
        }
    }
    if let Some(cut) = crate::text::char_end(&out, MAX_TEXT_CHARS) {
        out.truncate(cut);
        out.truncate(out.trim_end().len());
    }
    (!out.is_empty()).then_some(out)
}

/// The `host[:port]` of an absolute http(s) URL, lower-cased, without user info.
pub fn http_host(url: &str) -> Option<String> {
    host_of(url).map(str::to_ascii_lowercase)
}

/// The `host[:port]` of an absolute http(s) URL as written (any case), without user info.
fn host_of(url: &str) -> Option<&str> {
    let (scheme, rest) = cut(url, b':', false)?;
    let rest = rest.strip_prefix("//")?;
    if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
        return None;
    }
    let authority = until_any(rest, b"/?#");
    let host = cut(authority, b'@', true).map_or(authority, |(_, h)| h);
    (!host.is_empty()).then_some(host)
}

/// A link is outbound when it is an http(s) URL on another host than the page's
/// (`location.host`). Relative links, `mailto:`, `tel:` and `javascript:` stay on the page.
pub fn is_outbound(href: &str, page_host: &str) -> bool {
    host_of(href).is_some_and(|host| !host.eq_ignore_ascii_case(page_host))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_one_trimmed_line() {
        assert_eq!(
            clean_text("\n   Add   to\tcart \n").as_deref(),
            Some("Add to cart")
        );
        assert_eq!(clean_text("  \n "), None);
    }

    #[test]
    fn text_is_cut_at_255_characters_not_bytes() {
        let long = "é".repeat(300);
        let cut = clean_text(&long).expect("text");
        assert_eq!(cut.chars().count(), MAX_TEXT_CHARS);
        let words = "ab ".repeat(200);
        let cut = clean_text(&words).expect("text");
        assert!(cut.chars().count() <= MAX_TEXT_CHARS);
        assert!(!cut.ends_with(' '));
    }

    #[test]
    fn outbound_means_another_host() {
        let page = "shop.example:8701";
        assert!(is_outbound("https://partner.example/x", page));
        assert!(is_outbound("http://shop.example/", page), "other port");
        assert!(
            is_outbound("https://www.shop.example:8701/", page),
            "subdomain"
        );
        assert!(!is_outbound("http://SHOP.example:8701/cart.html", page));
        assert!(!is_outbound("http://user@shop.example:8701/p?id=1", page));
        assert!(!is_outbound("/cart.html", page));
        assert!(!is_outbound("product.html?id=P1", page));
        assert!(!is_outbound("mailto:help@partner.example", page));
        assert!(!is_outbound("javascript:void(0)", page));
    }

    #[test]
    fn host_of_a_url() {
        assert_eq!(
            http_host("https://a.example/p").as_deref(),
            Some("a.example")
        );
        assert_eq!(
            http_host("HTTP://A.example:80?x").as_deref(),
            Some("a.example:80")
        );
        assert_eq!(http_host("https:///nohost"), None);
        assert_eq!(http_host("ftp://a.example/"), None);
    }
}
