//! Short names for the imports and exports wasm-bindgen generates (`__wbg_Error_52673b7de5a0ca89`,
//! `wasm_bindgen_94c9fb257b783896___convert__closures_____invoke___…`, `__wbindgen_malloc`, …):
//! each one is spelled out in the wasm and again in the JS glue, and their hashes do not
//! compress. They are only the handshake between the wasm and its glue, so the release build
//! renames them in both (as a minifier renames locals); the API's names, `memory` and the
//! imports from our own `glue.js` stay as they are.

use anyhow::{bail, ensure, Context, Result};

/// Names wasm-bindgen makes up: its JS shims (imports), its allocator, tables and closure shims
/// (exports).
fn is_generated(name: &str) -> bool {
    ["__wbg_", "__wbindgen_", "__externref_", "wasm_bindgen_"]
        .iter()
        .any(|prefix| name.starts_with(prefix))
}

/// `$0`, `$1`, … `$z`, `$10`, …: `$` never starts a name wasm-bindgen writes.
fn short_name(n: usize) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut digits = Vec::new();
    let mut n = n;
    loop {
        digits.push(DIGITS[n % DIGITS.len()]);
        n /= DIGITS.len();
        if n == 0 {
            break;
        }
    }
    digits.reverse();
    format!("${}", String::from_utf8_lossy(&digits))
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8> {
        let b = *self.bytes.get(self.at).context("wasm ends early")?;
        self.at += 1;
        Ok(b)
    }

    fn leb(&mut self) -> Result<u32> {
        let (mut value, mut shift) = (0u32, 0);
        loop {
            let b = self.byte()?;
            ensure!(shift < 32, "LEB128 too long");
            value |= u32::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
            shift += 7;
        }
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8]> {
        let end = self.at.checked_add(len).context("length overflow")?;
        let slice = self.bytes.get(self.at..end).context("wasm ends early")?;
        self.at = end;
        Ok(slice)
    }

    fn name(&mut self) -> Result<&'a str> {
        let len = self.leb()? as usize;
        std::str::from_utf8(self.take(len)?).context("import name is not UTF-8")
    }

    /// Skips a table's or memory's limits.
    fn limits(&mut self) -> Result<()> {
        let flags = self.byte()?;
        self.leb()?;
        if flags & 1 != 0 {
            self.leb()?;
        }
        Ok(())
    }
}

fn push_leb(out: &mut Vec<u8>, mut value: u32) {
    loop {
        let b = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn push_name(out: &mut Vec<u8>, name: &str) {
    push_leb(out, name.len() as u32);
    out.extend_from_slice(name.as_bytes());
}

/// Each renamed name: `(old, new)`.
pub type Renames = Vec<(String, String)>;

/// The module with its generated imports and exports renamed, and their names.
pub fn shorten_names(wasm: &[u8]) -> Result<(Vec<u8>, Renames)> {
    ensure!(wasm.starts_with(b"\0asm"), "not a wasm module");
    let mut r = Reader { bytes: wasm, at: 8 };
    let mut out = wasm[..8].to_vec();
    let mut renames = Vec::new();
    while r.at < wasm.len() {
        let id = r.byte()?;
        let len = r.leb()? as usize;
        let body = r.take(len)?;
        let section = match id {
            2 => rename_entries(body, true, &mut renames)?,
            7 => rename_entries(body, false, &mut renames)?,
            _ => body.to_vec(),
        };
        out.push(id);
        push_leb(&mut out, section.len() as u32);
        out.extend_from_slice(&section);
    }
    Ok((out, renames))
}

/// `name`, or a short one for a generated name (noted in `renames`).
fn rename(name: &str, renames: &mut Renames) -> String {
    if !is_generated(name) {
        return name.to_owned();
    }
    let short = short_name(renames.len());
    renames.push((name.to_owned(), short.clone()));
    short
}

/// An import (`imports`) or export section with the generated names renamed.
fn rename_entries(body: &[u8], imports: bool, renames: &mut Renames) -> Result<Vec<u8>> {
    let mut s = Reader { bytes: body, at: 0 };
    let mut section = Vec::new();
    let count = s.leb()?;
    push_leb(&mut section, count);
    for _ in 0..count {
        if imports {
            push_name(&mut section, s.name()?);
        }
        let name = s.name()?;
        push_name(&mut section, &rename(name, renames));
        let desc_start = s.at;
        match (imports, s.byte()?) {
            // An export's index, an imported function's type, a tag's attribute and type.
            (false, _) | (true, 0) => {
                s.leb()?;
            }
            (true, 4) => {
                s.byte()?;
                s.leb()?;
            }
            (true, 1) => {
                s.byte()?;
                s.limits()?;
            }
            (true, 2) => s.limits()?,
            (true, 3) => {
                s.byte()?;
                s.byte()?;
            }
            (true, kind) => bail!("unknown import kind {kind}"),
        }
        section.extend_from_slice(&body[desc_start..s.at]);
    }
    ensure!(s.at == body.len(), "section has trailing bytes");
    Ok(section)
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$'
}

/// `files` (the glue's JS and TypeScript) with every whole-word `old` replaced by its `new`.
/// Fails if an `old` name occurs in none of them (the glue is not what this expects) or a `new`
/// one occurs already.
pub fn rename_in_glue(files: &mut [String], renames: &[(String, String)]) -> Result<()> {
    for (old, new) in renames {
        let mut found = false;
        for text in files.iter_mut() {
            ensure!(
                find_word(text, new).is_none(),
                "{new} already occurs in the glue"
            );
            let mut out = String::with_capacity(text.len());
            let mut rest = text.as_str();
            while let Some(at) = find_word(rest, old) {
                found = true;
                out.push_str(&rest[..at]);
                out.push_str(new);
                rest = &rest[at + old.len()..];
            }
            out.push_str(rest);
            *text = out;
        }
        ensure!(found, "{old} not found in the glue");
    }
    Ok(())
}

fn find_word(haystack: &str, word: &str) -> Option<usize> {
    let bytes = haystack.as_bytes();
    let mut from = 0;
    while let Some(at) = haystack[from..].find(word).map(|i| i + from) {
        let before = at.checked_sub(1).map(|i| bytes[i]);
        let after = bytes.get(at + word.len()).copied();
        if !before.is_some_and(is_word_byte) && !after.is_some_and(is_word_byte) {
            return Some(at);
        }
        // `word` is ASCII: its end is a character boundary.
        from = at + word.len();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A module importing `f` from `glue.js` and two generated shims from `wbg`, plus a memory
    /// and a type section around them.
    fn module() -> Vec<u8> {
        let mut imports = Vec::new();
        push_leb(&mut imports, 4);
        for (module, name) in [
            ("./glue.js", "qPut"),
            ("wbg", "__wbg_Error_52673b7de5a0ca89"),
            ("wbg", "__wbindgen_init_externref_table"),
        ] {
            push_name(&mut imports, module);
            push_name(&mut imports, name);
            imports.extend_from_slice(&[0, 0]);
        }
        push_name(&mut imports, "env");
        push_name(&mut imports, "memory");
        imports.extend_from_slice(&[2, 1, 17, 200, 1]);
        let mut exports = Vec::new();
        push_leb(&mut exports, 2);
        for (name, index) in [("track", 3), ("__wbindgen_malloc", 200)] {
            push_name(&mut exports, name);
            exports.push(0);
            push_leb(&mut exports, index);
        }
        let mut wasm = b"\0asm\x01\0\0\0".to_vec();
        wasm.extend_from_slice(&[1, 4, 1, 0x60, 0, 0]);
        for (id, section) in [(2, imports), (7, exports)] {
            wasm.push(id);
            push_leb(&mut wasm, section.len() as u32);
            wasm.extend_from_slice(&section);
        }
        wasm.extend_from_slice(&[0, 3, 1, b'x', 9]);
        wasm
    }

    #[test]
    fn only_generated_names_are_renamed_and_the_rest_is_kept() {
        let wasm = module();
        let (out, renames) = shorten_names(&wasm).expect("parses");
        let renamed: Vec<(&str, &str)> = renames
            .iter()
            .map(|(old, new)| (old.as_str(), new.as_str()))
            .collect();
        assert_eq!(
            renamed,
            [
                ("__wbg_Error_52673b7de5a0ca89", "$0"),
                ("__wbindgen_init_externref_table", "$1"),
                ("__wbindgen_malloc", "$2")
            ]
        );
        let again = shorten_names(&out).expect("still a module");
        assert!(again.1.is_empty(), "nothing generated is left");
        let text = String::from_utf8_lossy(&out);
        for kept in ["qPut", "memory", "./glue.js", "track"] {
            assert!(text.contains(kept), "{kept}");
        }
        assert!(
            out.ends_with(&[0, 3, 1, b'x', 9]),
            "later sections are copied"
        );
        assert!(out.len() < wasm.len());
    }

    #[test]
    fn glue_names_are_replaced_as_whole_words() {
        let renames = [
            ("__wbg_a_1".to_owned(), "$0".to_owned()),
            ("__wbindgen_free".to_owned(), "$1".to_owned()),
        ];
        let mut files = [
            "imports.wbg.__wbg_a_1 = function() {}; x.__wbg_a_12; export function __wbg_a_1("
                .into(),
            "readonly __wbindgen_free: () => void; // …".into(),
        ];
        rename_in_glue(&mut files, &renames).expect("renamed");
        assert_eq!(
            files,
            [
                "imports.wbg.$0 = function() {}; x.__wbg_a_12; export function $0(",
                "readonly $1: () => void; // …"
            ]
        );
        assert!(rename_in_glue(&mut ["__wbg_a_1".into()], &renames).is_err());
        assert!(rename_in_glue(&mut ["__wbg_a_1 __wbindgen_free $0".into()], &renames).is_err());
    }

    #[test]
    fn short_names_are_distinct() {
        let names: std::collections::HashSet<String> = (0..5000).map(short_name).collect();
        assert_eq!(names.len(), 5000);
        assert_eq!(short_name(0), "$0");
        assert_eq!(short_name(62), "$10");
    }
}
