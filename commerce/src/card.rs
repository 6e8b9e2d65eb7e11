//! Refusing card numbers anywhere in a payload. The platform stores a payment method's type and
//! last four digits only; a full number that slipped into any field (a note, a trait, a
//! mis-mapped payment field) must never reach a table, a log or the lake. NUL characters are
//! refused the same way: JSON may carry them, PostgreSQL text and jsonb cannot, and a write
//! failing on one would fail on every retry.

use serde_json::Value;

use crate::error::Problem;

/// Every field of `value` holding something that looks like a full card number: 13 to 19
/// digits (spaces or dashes between them allowed, as people type them) that pass the Luhn check
/// and start like a card of a real scheme (2–6). The prefix rule keeps long numeric order ids
/// and phone numbers from being refused for passing Luhn by chance (one in ten does).
pub fn find_card_numbers(value: &Value) -> Vec<Problem> {
    let mut found = Vec::new();
    walk(value, &mut String::new(), &mut found, check);
    found
}

/// Every field of `value` whose text (or key) holds U+0000.
pub fn find_nul_characters(value: &Value) -> Vec<Problem> {
    let mut found = Vec::new();
    walk(
        value,
        &mut String::new(),
        &mut found,
        |text, path, found| {
            if text.contains('\0') && !found.iter().any(|p| p.field == path) {
                found.push(Problem::new(
                    if path.is_empty() { "(body)" } else { path },
                    "must not contain the NUL character (U+0000)",
                ));
            }
        },
    );
    found
}

type Check = fn(&str, &str, &mut Vec<Problem>);

fn walk(value: &Value, path: &mut String, found: &mut Vec<Problem>, check: Check) {
    match value {
        Value::String(s) => check(s, path, found),
        Value::Number(n) => check(&n.to_string(), path, found),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                walk(item, path, found, check);
                path.truncate(len);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                // A key can carry a number too (`{"4111…": true}`).
                check(key, path, found);
                walk(item, path, found, check);
                path.truncate(len);
            }
        }
        Value::Null | Value::Bool(_) => {}
    }
}

fn check(text: &str, path: &str, found: &mut Vec<Problem>) {
    if contains_card_number(text) && !found.iter().any(|p| p.field == path) {
        found.push(Problem::new(
            if path.is_empty() { "(body)" } else { path },
            "looks like a full payment card number; send only the card type and its last four digits (card_last4)",
        ));
    }
}

/// Whether `text` contains a card-like digit run (see [`find_card_numbers`]).
pub fn contains_card_number(text: &str) -> bool {
    // Runs of digits where single spaces or dashes between digits do not break the run.
    let bytes = text.as_bytes();
    let mut digits: Vec<u8> = Vec::with_capacity(19);
    let mut i = 0;
    while i <= bytes.len() {
        let b = bytes.get(i).copied();
        match b {
            Some(d @ b'0'..=b'9') => digits.push(d - b'0'),
            Some(b' ' | b'-')
                if !digits.is_empty() && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) => {}
            _ => {
                if run_has_card(&digits) {
                    return true;
                }
                digits.clear();
            }
        }
        i += 1;
    }
    false
}

/// A run longer than 19 digits may embed a card number; every 13–19 digit window is checked.
fn run_has_card(digits: &[u8]) -> bool {
    if digits.len() < 13 {
        return false;
    }
    (13..=19.min(digits.len())).any(|len| {
        digits
            .windows(len)
            .any(|w| (2..=6).contains(&w[0]) && luhn_valid(w))
    })
}

pub fn luhn_valid(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 1 {
                let twice = d * 2;
                if twice > 9 {
                    twice - 9
                } else {
                    twice
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn test_numbers_of_the_schemes_are_found_however_typed() {
        for number in [
            "4111111111111111",
            "4111 1111 1111 1111",
            "4111-1111-1111-1111",
            "5555555555554444",
            "378282246310005",
            "6011111111111117",
            "card: 4242424242424242 exp 12/30",
        ] {
            assert!(contains_card_number(number), "{number}");
        }
    }

    #[test]
    fn long_ids_that_fail_luhn_or_the_prefix_rule_pass() {
        // 4111111111111112 fails Luhn; 1000000000000008 passes Luhn but no scheme starts with 1.
        for text in [
            "4111111111111112",
            "1000000000000008",
            "order 12345678",
            "+49 30 1234567",
            "2026-11-30",
        ] {
            assert!(!contains_card_number(text), "{text}");
        }
        assert!(luhn_valid(&[
            1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8
        ]));
    }

    #[test]
    fn every_field_with_a_number_is_named_by_its_path() {
        let body = json!({
            "order_id": "A-1",
            "payment": {"method": "card", "card_number": "4111 1111 1111 1111"},
            "lines": [{"name": "gift"}, {"name": "note 5555555555554444"}],
            "reference": 4_012_888_888_881_881_u64,
        });
        let mut fields: Vec<String> = find_card_numbers(&body)
            .into_iter()
            .map(|p| p.field)
            .collect();
        fields.sort();
        assert_eq!(
            fields,
            ["lines[1].name", "payment.card_number", "reference"],
            "{fields:?}"
        );
    }

    #[test]
    fn every_field_or_key_with_a_nul_character_is_named_by_its_path() {
        let body = json!({
            "order_id": "A-1\u{0}",
            "lines": [{"name": "gift"}, {"na\u{0}me": "x"}],
        });
        let fields: Vec<String> = find_nul_characters(&body)
            .into_iter()
            .map(|p| p.field)
            .collect();
        assert_eq!(fields, ["lines[1].na\u{0}me", "order_id"], "{fields:?}");
    }
}
