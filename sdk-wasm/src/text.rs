//! Cutting browser-supplied text to the collector's limits, so that one overlong page title or
//! URL does not get a whole event refused.

/// Where the character after the first `max` of `s` starts; `None` if `s` has no more than
/// `max` characters. Counts the bytes that start a character (`char_indices().nth(max)`
/// brings in a general iterator for the same answer).
pub fn char_end(s: &str, max: usize) -> Option<usize> {
    let mut count = 0;
    for (i, b) in s.bytes().enumerate() {
        // Continuation bytes are 0b10xx_xxxx.
        if b & 0xc0 != 0x80 {
            if count == max {
                return Some(i);
            }
            count += 1;
        }
    }
    None
}

/// `s` cut to at most `max` characters.
pub fn fit_chars(mut s: String, max: usize) -> String {
    if let Some(cut) = char_end(&s, max) {
        s.truncate(cut);
    }
    s
}

/// `bytes` as text, each maximal invalid subsequence replaced by U+FFFD: what
/// `String::from_utf8_lossy` gives (and the WHATWG decoder), without its chunk iterator and
/// table.
pub fn utf8_lossy(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        // A lead byte's sequence length and the range its second byte must be in (which rules
        // out overlong forms, surrogates and code points past U+10FFFF).
        let (len, low, high) = match bytes[i] {
            0x00..=0x7f => (1, 0, 0),
            0xc2..=0xdf => (2, 0x80, 0xbf),
            0xe0 => (3, 0xa0, 0xbf),
            0xed => (3, 0x80, 0x9f),
            0xe1..=0xef => (3, 0x80, 0xbf),
            0xf0 => (4, 0x90, 0xbf),
            0xf1..=0xf3 => (4, 0x80, 0xbf),
            0xf4 => (4, 0x80, 0x8f),
            _ => (0, 0, 0),
        };
        let mut valid = usize::from(len > 0);
        while valid < len {
            let (lo, hi) = if valid == 1 {
                (low, high)
            } else {
                (0x80, 0xbf)
            };
            match bytes.get(i + valid) {
                Some(&b) if (lo..=hi).contains(&b) => valid += 1,
                _ => break,
            }
        }
        if valid == len && len > 0 {
            // SAFETY: a complete, well-formed sequence, checked byte by byte above.
            out.push_str(unsafe { std::str::from_utf8_unchecked(&bytes[i..i + len]) });
        } else {
            out.push('\u{fffd}');
        }
        i += valid.max(1);
    }
    out
}

/// `s` cut to at most `max` bytes of UTF-8, never inside a character.
pub fn fit_bytes(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

/// `Some(s)` unless `s` is empty or only whitespace: the schema refuses empty optional texts.
pub fn non_empty(s: String) -> Option<String> {
    (!s.trim().is_empty()).then_some(s)
}

/// The parts joined. `[..].concat()` and `format!` cost the wasm far more.
pub fn cat(parts: &[&str]) -> String {
    let mut out = String::new();
    for p in parts {
        out.push_str(p);
    }
    out
}

/// `s` split around its first (`last`: its last) `sep`, an ASCII character; a byte search, where
/// `split_once` brings in the standard library's general pattern searchers.
pub fn cut(s: &str, sep: u8, last: bool) -> Option<(&str, &str)> {
    let bytes = s.as_bytes();
    let at = if last {
        bytes.iter().rposition(|&b| b == sep)
    } else {
        bytes.iter().position(|&b| b == sep)
    }?;
    // SAFETY: `at` holds an ASCII byte, so both sides of it are character boundaries.
    unsafe { Some((s.get_unchecked(..at), s.get_unchecked(at + 1..))) }
}

/// The parts of `s` between its `sep`s (an ASCII character), as `split` gives them: `""` is one
/// empty part.
pub fn parts(mut s: &str, sep: u8) -> impl Iterator<Item = &str> {
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        Some(match cut(s, sep, false) {
            Some((head, rest)) => {
                s = rest;
                head
            }
            None => {
                done = true;
                s
            }
        })
    })
}

/// `s` up to its first byte in `stops` (ASCII characters), or all of it.
pub fn until_any<'a>(s: &'a str, stops: &[u8]) -> &'a str {
    // Not `stops.contains`: for bytes that is core's word-at-a-time memchr, a few hundred bytes
    // of wasm for three separators.
    #[allow(clippy::manual_contains)]
    let end = s
        .bytes()
        .position(|b| stops.iter().any(|&s| s == b))
        .unwrap_or(s.len());
    // SAFETY: `end` is the length or holds an ASCII byte: a character boundary.
    unsafe { s.get_unchecked(..end) }
}

/// A decimal integer with an optional `-`, as [`crate::json::push_int`] writes it; `None` for
/// anything else or an overflow.
pub fn parse_int(s: &str) -> Option<i64> {
    let (negative, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    if digits.is_empty() {
        return None;
    }
    let mut n: i64 = 0;
    for b in digits.bytes() {
        if !b.is_ascii_digit() {
            return None;
        }
        let d = i64::from(b - b'0');
        n = n
            .checked_mul(10)?
            .checked_add(if negative { -d } else { d })?;
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_by_characters() {
        assert_eq!(fit_chars("héllo".into(), 2), "hé");
        assert_eq!(fit_chars("abc".into(), 3), "abc");
        assert_eq!(fit_chars(String::new(), 0), "");
    }

    #[test]
    fn lossy_decoding_is_std_s() {
        let mut cases: Vec<Vec<u8>> = Vec::new();
        // Every sequence of up to two bytes, and three-byte ones around every lead byte.
        for a in 0..=255u8 {
            cases.push(vec![a]);
            for b in 0..=255u8 {
                cases.push(vec![a, b]);
            }
            for b in [0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0x41] {
                for c in [0x41, 0x80, 0xbf, 0xc0, 0xe2] {
                    cases.push(vec![a, b, c]);
                    cases.push(vec![a, b, c, 0x80]);
                    cases.push(vec![a, b, c, 0xbf, 0x41]);
                }
            }
        }
        cases.push("é€😀 plain".as_bytes().to_vec());
        cases.push(b"\xf4\x90\x80\x80\xed\xa0\x80\xe0\x80\xaf".to_vec());
        for bytes in cases {
            assert_eq!(
                utf8_lossy(&bytes),
                String::from_utf8_lossy(&bytes),
                "{bytes:x?}"
            );
        }
    }

    #[test]
    fn character_ends_are_std_s() {
        for s in ["", "a", "héllo", "€😀x", "😀😀😀"] {
            for max in 0..7 {
                assert_eq!(
                    char_end(s, max),
                    s.char_indices().nth(max).map(|(i, _)| i),
                    "{s} {max}"
                );
            }
        }
    }

    #[test]
    fn cuts_by_bytes_on_a_character_boundary() {
        assert_eq!(fit_bytes("aé".into(), 2), "a");
        assert_eq!(fit_bytes("aé".into(), 3), "aé");
        assert_eq!(fit_bytes("€€".into(), 4), "€");
    }

    #[test]
    fn integers_parse_as_std_does() {
        for s in [
            "0",
            "7",
            "-7",
            "1732530000000",
            "9223372036854775807",
            "-9223372036854775808",
        ] {
            assert_eq!(parse_int(s), s.parse().ok(), "{s}");
        }
        for bad in ["", "-", "12x", " 1", "9223372036854775808", "1.5", "--1"] {
            assert_eq!(parse_int(bad), None, "{bad}");
        }
    }

    #[test]
    fn cuts_at_a_byte() {
        assert_eq!(cut("a|b|c", b'|', false), Some(("a", "b|c")));
        assert_eq!(cut("a|b|c", b'|', true), Some(("a|b", "c")));
        assert_eq!(cut("é|€", b'|', false), Some(("é", "€")));
        assert_eq!(cut("abc", b'|', false), None);
        assert_eq!(until_any("host:1/p?q#f", b"/?#"), "host:1");
        assert_eq!(until_any("héllo", b"/"), "héllo");
        assert_eq!(cat(&["a", "", "bc"]), "abc");
        for s in ["", "a", "a,b,,c", ",", "é,€"] {
            assert_eq!(
                parts(s, b',').collect::<Vec<_>>(),
                s.split(',').collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn blank_is_none() {
        assert_eq!(non_empty(" \n".into()), None);
        assert_eq!(non_empty("x".into()).as_deref(), Some("x"));
    }
}
