//! A JSON text writer small enough for the wasm build: no serde, no `core::fmt`.
//!
//! The tracker writes every event as JSON text once, when it is recorded; batches are that text
//! joined. `wire.rs` says what goes in; this module only says how JSON is spelled.

/// Appends `s` as a JSON string literal.
pub fn push_str(out: &mut String, s: &str) {
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.push_str("\\u00");
                out.push(HEX[(c as usize) >> 4] as char);
                out.push(HEX[(c as usize) & 15] as char);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Appends `n` in decimal.
pub fn push_int(out: &mut String, n: i64) {
    if n < 0 {
        out.push('-');
    }
    let mut digits = [0u8; 20];
    let mut len = 0;
    let mut rest = n.unsigned_abs();
    loop {
        digits[len] = b'0' + (rest % 10) as u8;
        len += 1;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    for d in digits[..len].iter().rev() {
        out.push(*d as char);
    }
}

/// `n` in decimal, for messages.
pub fn int_text(n: i64) -> String {
    let mut s = String::new();
    push_int(&mut s, n);
    s
}

/// Writes one JSON object's members; `end` closes it. Optional members that are `None` are
/// left out, as the schema's `skip_serializing_if` does.
pub struct Obj<'a> {
    out: &'a mut String,
    first: bool,
}

impl<'a> Obj<'a> {
    pub fn new(out: &'a mut String) -> Obj<'a> {
        out.push('{');
        Obj { out, first: true }
    }

    /// Writes the member's key and returns the buffer for its value.
    pub fn key(&mut self, key: &str) -> &mut String {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        push_str(self.out, key);
        self.out.push(':');
        self.out
    }

    pub fn str(&mut self, key: &str, value: &str) -> &mut Self {
        push_str(self.key(key), value);
        self
    }

    pub fn opt_str(&mut self, key: &str, value: Option<&str>) -> &mut Self {
        if let Some(v) = value {
            self.str(key, v);
        }
        self
    }

    pub fn int(&mut self, key: &str, value: i64) -> &mut Self {
        push_int(self.key(key), value);
        self
    }

    pub fn opt_int(&mut self, key: &str, value: Option<i64>) -> &mut Self {
        if let Some(v) = value {
            self.int(key, v);
        }
        self
    }

    pub fn bool(&mut self, key: &str, value: bool) -> &mut Self {
        self.key(key).push_str(if value { "true" } else { "false" });
        self
    }

    /// A member whose value is JSON text already.
    pub fn raw(&mut self, key: &str, json: &str) -> &mut Self {
        self.key(key).push_str(json);
        self
    }

    pub fn end(&mut self) {
        self.out.push('}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_round_trip_through_serde_json() {
        for s in [
            "",
            "plain",
            "quote \" and \\ back",
            "line\nbreak\ttab\r",
            "\u{1}\u{1f}",
            "é€😀",
            "</script>",
        ] {
            let mut out = String::new();
            push_str(&mut out, s);
            let back: String = serde_json::from_str(&out).expect("valid JSON");
            assert_eq!(back, s);
        }
    }

    #[test]
    fn integers_in_decimal() {
        for n in [0, 7, -7, 10, 1_732_530_000_000, i64::MAX, i64::MIN] {
            assert_eq!(int_text(n), n.to_string());
        }
    }

    #[test]
    fn objects_skip_missing_members() {
        let mut out = String::new();
        Obj::new(&mut out)
            .str("a", "x")
            .opt_str("b", None)
            .opt_int("c", Some(-3))
            .bool("d", true)
            .raw("e", "[1]")
            .end();
        assert_eq!(out, r#"{"a":"x","c":-3,"d":true,"e":[1]}"#);
    }
}
