//! Cutting browser-supplied text to the collector's limits, so that one overlong page title or
//! URL does not get a whole event refused.

/// `s` cut to at most `max` characters.
pub fn fit_chars(mut s: String, max: usize) -> String {
    if let Some((cut, _)) = s.char_indices().nth(max) {
        s.truncate(cut);
    }
    s
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
    fn cuts_by_bytes_on_a_character_boundary() {
        assert_eq!(fit_bytes("aé".into(), 2), "a");
        assert_eq!(fit_bytes("aé".into(), 3), "aé");
        assert_eq!(fit_bytes("€€".into(), 4), "€");
    }

    #[test]
    fn blank_is_none() {
        assert_eq!(non_empty(" \n".into()), None);
        assert_eq!(non_empty("x".into()).as_deref(), Some("x"));
    }
}
