//! Campaign parameters from the page's query string (`?utm_source=…&utm_medium=…`).

use retailmind_schema::Utm;

use crate::text::{cut, parts};

/// The `utm_*` parameters of `search` (`location.search`, with or without the leading `?`).
/// The first occurrence of a parameter wins; empty ones are ignored. `None` when there is none.
pub fn parse_utm(search: &str) -> Option<Utm> {
    let mut utm = Utm::default();
    let mut any = false;
    let mut search = search;
    while let Some(rest) = search.strip_prefix('?') {
        search = rest;
    }
    for pair in parts(search, b'&') {
        let (key, value) = cut(pair, b'=', false).unwrap_or((pair, ""));
        let slot = match percent_decode(key).as_str() {
            "utm_source" => &mut utm.source,
            "utm_medium" => &mut utm.medium,
            "utm_campaign" => &mut utm.campaign,
            "utm_term" => &mut utm.term,
            "utm_content" => &mut utm.content,
            _ => continue,
        };
        let value = percent_decode(value);
        let value = value.trim();
        if slot.is_none() && !value.is_empty() {
            *slot = Some(value.to_owned());
            any = true;
        }
    }
    any.then_some(utm)
}

/// Decodes `application/x-www-form-urlencoded` text: `+` is a space, `%XX` a byte. Malformed
/// escapes stay as they are and invalid UTF-8 becomes U+FFFD, as browsers do.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    crate::text::utf8_lossy(&out)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_all_five_parameters() {
        let utm = parse_utm(
            "?utm_source=news&utm_medium=email&utm_campaign=spring+sale&utm_term=shoes&utm_content=top",
        )
        .expect("utm");
        assert_eq!(utm.source.as_deref(), Some("news"));
        assert_eq!(utm.medium.as_deref(), Some("email"));
        assert_eq!(utm.campaign.as_deref(), Some("spring sale"));
        assert_eq!(utm.term.as_deref(), Some("shoes"));
        assert_eq!(utm.content.as_deref(), Some("top"));
    }

    #[test]
    fn no_campaign_parameters_is_none() {
        assert_eq!(parse_utm(""), None);
        assert_eq!(parse_utm("?"), None);
        assert_eq!(parse_utm("?id=P1&q=red"), None);
        assert_eq!(parse_utm("?utm_source=&utm_medium=%20"), None);
    }

    #[test]
    fn decodes_escapes_and_keeps_the_first_value() {
        let utm = parse_utm("utm_source=caf%C3%A9&utm_source=other&x=1&utm_medium").expect("utm");
        assert_eq!(utm.source.as_deref(), Some("café"));
        assert_eq!(utm.medium, None);
    }

    #[test]
    fn malformed_escapes_survive() {
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("a%2Bb+c"), "a+b c");
        assert_eq!(percent_decode("%FF"), "\u{FFFD}");
    }
}
