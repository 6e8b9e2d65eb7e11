//! Reading a Segment message field by field, naming the Segment path (`context.page.url`,
//! `properties.products[2].price`) of every problem, and collecting all problems of a message so a
//! sender can fix them in one go.

use std::collections::BTreeMap;

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::FieldProblem;

/// A JSON object whose values keep their original text. Prices are read from that text, so
/// `19.99` never passes through a float.
pub(super) type Obj<'a> = BTreeMap<String, &'a RawValue>;

/// Every problem found in one message so far, and the shop's settings the reading follows.
#[derive(Debug, Default)]
pub(super) struct Problems {
    pub found: Vec<FieldProblem>,
    /// The currency of an amount whose message names none (see [`crate::Options`]).
    pub default_currency: Option<String>,
}

/// Joins a parent path and a key: `("context.page", "url")` → `context.page.url`.
pub(super) fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

/// The value at `key`, unless it is absent or JSON `null` (which Segment senders use for "unset").
pub(super) fn get<'a>(obj: &Obj<'a>, key: &str) -> Option<&'a RawValue> {
    obj.get(key)
        .copied()
        .filter(|raw| raw.get().trim() != "null")
}

impl Problems {
    pub fn fail(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.found.push(FieldProblem::new(field, reason));
    }

    /// The object at `key` (absent → `None`).
    pub fn object<'a>(&mut self, obj: &Obj<'a>, key: &str, path: &str) -> Option<Obj<'a>> {
        let raw = get(obj, key)?;
        match serde_json::from_str::<Obj<'a>>(raw.get()) {
            Ok(inner) => Some(inner),
            Err(_) => {
                self.fail(path, "must be a JSON object");
                None
            }
        }
    }

    /// Free text at `key`. Empty or blank text counts as absent: browsers send `referrer: ""`,
    /// and our schema refuses empty optional text.
    pub fn text(&mut self, obj: &Obj<'_>, key: &str, path: &str) -> Option<String> {
        let raw = get(obj, key)?;
        match serde_json::from_str::<String>(raw.get()) {
            Ok(s) if s.trim().is_empty() => None,
            Ok(s) => Some(s),
            Err(_) => {
                self.fail(path, "must be a string");
                None
            }
        }
    }

    /// An identifier at `key`: a string, or an integer (Segment senders often send numeric ids
    /// such as `product_id: 507`), kept as its decimal text.
    pub fn id(&mut self, obj: &Obj<'_>, key: &str, path: &str) -> Option<String> {
        let raw = get(obj, key)?;
        match serde_json::from_str::<Value>(raw.get()) {
            Ok(Value::String(s)) if s.trim().is_empty() => None,
            Ok(Value::String(s)) => Some(s),
            Ok(Value::Number(n)) if n.is_i64() || n.is_u64() => Some(n.to_string()),
            _ => {
                self.fail(path, "must be a string or an integer");
                None
            }
        }
    }

    /// A count (quantity, screen size) at `key`.
    pub fn count(&mut self, obj: &Obj<'_>, key: &str, path: &str) -> Option<u32> {
        let raw = get(obj, key)?;
        match serde_json::from_str::<u32>(raw.get()) {
            Ok(n) => Some(n),
            Err(_) => {
                self.fail(
                    path,
                    format!("must be a whole number from 0 to {}", u32::MAX),
                );
                None
            }
        }
    }

    /// Free-form properties at `key`, as plain JSON (absent → empty).
    pub fn props(&mut self, obj: &Obj<'_>, key: &str, path: &str) -> Map<String, Value> {
        let Some(raw) = get(obj, key) else {
            return Map::new();
        };
        match serde_json::from_str::<Map<String, Value>>(raw.get()) {
            Ok(map) => map,
            Err(_) => {
                self.fail(path, "must be a JSON object");
                Map::new()
            }
        }
    }

    /// A list of objects at `key` (Segment's `products`); absent → empty.
    pub fn objects<'a>(&mut self, obj: &Obj<'a>, key: &str, path: &str) -> Vec<(String, Obj<'a>)> {
        let Some(raw) = get(obj, key) else {
            return Vec::new();
        };
        let Ok(list) = serde_json::from_str::<Vec<&'a RawValue>>(raw.get()) else {
            self.fail(path, "must be a JSON array");
            return Vec::new();
        };
        let mut out = Vec::with_capacity(list.len());
        for (i, item) in list.into_iter().enumerate() {
            let item_path = format!("{path}[{i}]");
            match serde_json::from_str::<Obj<'a>>(item.get()) {
                Ok(inner) => out.push((item_path, inner)),
                Err(_) => self.fail(item_path, "must be a JSON object"),
            }
        }
        out
    }
}
