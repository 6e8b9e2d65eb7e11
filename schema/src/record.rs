//! The stream record of an accepted event: the event with its server-side fields set, as JSON.
//!
//! The record is the text the event arrived as, with `received_at`, `context.ip` and (when the
//! sender named none) `context.user_agent` written in, instead of the decoded event encoded
//! again: encoding was a sixth of the collector's CPU per event, the copy is a memcpy. The
//! record decodes to exactly the enriched event. Whenever the text could say otherwise (it names
//! a server-side field itself, even as `null`, or holds an escape, which could spell one), or is
//! not an object, or holds a line break (the lake keeps one event per line), the event is
//! encoded instead. Fields the schema does not know stay in a copied text as sent (within the
//! event size limit) and are never interpreted; an encoded event drops them.

use std::fmt::Write as _;
use std::sync::OnceLock;

use memchr::memmem::Finder;

use crate::wire::ContextAt;
use crate::Event;

/// What the collector knows about an event that the sender must not set.
#[derive(Clone, Copy, Debug)]
pub struct ServerFields<'a> {
    pub received_at: i64,
    pub ip: Option<&'a str>,
    /// The request's User-Agent, used when the event names none.
    pub user_agent: Option<&'a str>,
}

/// Sets the server-side fields of `event`, decoded from the JSON `text` (with its context `at`,
/// from [`crate::wire::decode_located`]; `None` when unknown, as for an event converted from
/// another format), and returns its record.
pub fn enrich(
    event: &mut Event,
    text: &str,
    at: Option<&ContextAt>,
    server: &ServerFields<'_>,
) -> Vec<u8> {
    event.received_at = Some(server.received_at);
    event.context.ip = server.ip.map(str::to_owned);
    let agent = match server.user_agent {
        Some(agent) if event.context.user_agent.is_none() => {
            event.context.user_agent = Some(agent.to_owned());
            Some(agent)
        }
        _ => None,
    };
    if let Some(record) = at.and_then(|at| spliced(text, at, server, agent)) {
        return record;
    }
    // Every string and number of an event encodes; only a map with non-string keys could fail,
    // and an event has none.
    serde_json::to_vec(event).expect("an event encodes as JSON")
}

/// `text` with the server-side fields written in, or `None` when the text might contradict
/// them. `agent`: the User-Agent to add to the context.
fn spliced(
    text: &str,
    at: &ContextAt,
    server: &ServerFields<'_>,
    agent: Option<&str>,
) -> Option<Vec<u8>> {
    let finders = Needles::get();
    let bytes = text.as_bytes();
    if !text.starts_with('{')
        || memchr::memchr3(b'\\', b'\n', b'\r', bytes).is_some()
        || finders.received_at.find(bytes).is_some()
    {
        return None;
    }
    let context = match at {
        ContextAt::Absent if finders.context.find(bytes).is_some() => return None,
        ContextAt::Absent => None,
        ContextAt::Present => Some(context_brace(text, &finders.context)?),
    };
    // The text must not hold the fields written into the context (the IP even when there is
    // none to write: the event's is then cleared). Anywhere in the text, not only in the
    // context: finding where the context ends would take another pass.
    if context.is_some()
        && (finders.ip.find(bytes).is_some()
            || (agent.is_some() && finders.user_agent.find(bytes).is_some()))
    {
        return None;
    }
    let mut added = String::with_capacity(64 + agent.map_or(0, str::len));
    if let Some(ip) = server.ip {
        added.push_str("\"ip\":");
        added.push_str(&serde_json::to_string(ip).ok()?);
    }
    if let Some(agent) = agent {
        if !added.is_empty() {
            added.push(',');
        }
        added.push_str("\"user_agent\":");
        added.push_str(&serde_json::to_string(agent).ok()?);
    }

    let mut out = String::with_capacity(text.len() + added.len() + 48);
    out.push('{');
    let _ = write!(out, "\"received_at\":{},", server.received_at);
    match context {
        None => {
            if !added.is_empty() {
                out.push_str("\"context\":{");
                out.push_str(&added);
                out.push_str("},");
            }
            out.push_str(&text[1..]);
        }
        Some(brace) => {
            out.push_str(&text[1..=brace]);
            let rest = &text[brace + 1..];
            if !added.is_empty() {
                out.push_str(&added);
                if !rest.trim_start().starts_with('}') {
                    out.push(',');
                }
            }
            out.push_str(rest);
        }
    }
    Some(out.into_bytes())
}

/// The keys [`spliced`] looks for, as JSON strings, with their searchers built once.
struct Needles {
    received_at: Finder<'static>,
    context: Finder<'static>,
    ip: Finder<'static>,
    user_agent: Finder<'static>,
}

impl Needles {
    fn get() -> &'static Needles {
        static NEEDLES: OnceLock<Needles> = OnceLock::new();
        NEEDLES.get_or_init(|| Needles {
            received_at: Finder::new(b"\"received_at\""),
            context: Finder::new(b"\"context\""),
            ip: Finder::new(b"\"ip\""),
            user_agent: Finder::new(b"\"user_agent\""),
        })
    }
}

/// Where the `context` object of `text`, an event (valid JSON without a backslash) that has a
/// context, opens. Without escapes every `"` delimits a string, so `"context"` in the text is the
/// string `context`: when it is there once, it is the event's key. Otherwise (also named inside
/// the properties, say, or the context given as an array) `None`.
fn context_brace(text: &str, context: &Finder<'static>) -> Option<usize> {
    let mut found = context.find_iter(text.as_bytes());
    let key = found.next()?;
    if found.next().is_some() {
        return None;
    }
    let json_space: &[char] = &[' ', '\t', '\n', '\r'];
    let value = text[key + context.needle().len()..]
        .trim_start_matches(json_space)
        .strip_prefix(':')?
        .trim_start_matches(json_space);
    value.starts_with('{').then(|| text.len() - value.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::decode_located;

    const AGENT: &str = "Mozilla/5.0 (X11; Linux x86_64) \"quoted\" \\ agent";

    fn server(ip: Option<&'static str>, agent: Option<&'static str>) -> ServerFields<'static> {
        ServerFields {
            received_at: 1_800_000_000_123,
            ip,
            user_agent: agent,
        }
    }

    /// Enriches `text` both ways (spliced where possible, and always encoded) and checks that
    /// the record decodes to the enriched event; returns whether the splice was taken.
    fn check(text: &str, server: &ServerFields<'_>) -> bool {
        let (mut event, at) = decode_located(text).unwrap();
        let mut encoded = event.clone();
        let record = enrich(&mut event, text, at.as_ref(), server);
        enrich(&mut encoded, text, None, server);
        assert_eq!(event, encoded, "both ways set the same fields");
        let decoded: Event = serde_json::from_slice(&record)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&record)));
        assert_eq!(
            decoded,
            event,
            "record {}",
            String::from_utf8_lossy(&record)
        );
        record != serde_json::to_vec(&event).unwrap()
    }

    const FULL: &str = r#"{"event_id":"01936a1c-3b5e-7cc4-9a1e-4f1b2c3d4e5f","anonymous_id":"a-1","timestamp":1800000000000,"context":{"page":{"url":"https://shop.example/p/1","title":"Shoes"},"locale":"de-CH","screen":{"width":1,"height":2}},"type":"product_view","properties":{"product_id":"P1","price_minor":100,"currency":"EUR"}}"#;

    #[test]
    fn the_text_as_received_takes_every_server_field() {
        for (ip, agent) in [
            (Some("203.0.113.7"), Some(AGENT)),
            (Some("2001:db8::1"), None),
            (None, Some(AGENT)),
            (None, None),
        ] {
            assert!(check(FULL, &server(ip, agent)), "{ip:?} {agent:?}");
        }
    }

    #[test]
    fn contexts_empty_absent_spaced_or_last_are_all_written_into() {
        let texts = [
            r#"{"event_id":"01936a1c-3b5e-7cc4-9a1e-4f1b2c3d4e5f","anonymous_id":"a","timestamp":1,"type":"page_view","properties":{},"context":{}}"#,
            r#"{"event_id":"01936a1c-3b5e-7cc4-9a1e-4f1b2c3d4e5f","anonymous_id":"a","timestamp":1,"type":"page_view","properties":{},"context":{  }}"#,
            r#"{"event_id":"01936a1c-3b5e-7cc4-9a1e-4f1b2c3d4e5f","anonymous_id":"a","timestamp":1,"type":"page_view","properties":{}}"#,
            "{ \"event_id\" : \"01936a1c-3b5e-7cc4-9a1e-4f1b2c3d4e5f\" ,\t \"context\" : { \"locale\" : \"fr\" } , \"anonymous_id\":\"a\",\"timestamp\":1,\"type\":\"page_view\",\"properties\":{} }",
        ];
        for text in texts {
            assert!(
                check(text, &server(Some("198.51.100.1"), Some(AGENT))),
                "{text}"
            );
            check(text, &server(None, None));
        }
    }

    #[test]
    fn a_text_naming_a_server_field_or_holding_an_escape_is_encoded_instead() {
        let texts = [
            FULL.replace(r#""timestamp""#, r#""received_at":5,"timestamp""#),
            FULL.replace(r#""timestamp""#, r#""received_at":null,"timestamp""#),
            FULL.replace(r#""locale""#, r#""ip":"10.0.0.1","locale""#),
            FULL.replace(r#""locale""#, r#""ip":null,"locale""#),
            FULL.replace(r#""locale""#, r#""user_agent":null,"locale""#),
            FULL.replace(r#""timestamp""#, r#""received\u005fat":null,"timestamp""#),
            FULL.replace(r#""locale""#, r#""i\u0070":null,"locale""#),
            FULL.replace(r#""Shoes""#, r#""Sh\"oes""#),
            // `context` or `ip` named elsewhere too: where the context is would take another pass.
            r#"{"event_id":"01936a1c-3b5e-7cc4-9a1e-4f1b2c3d4e5f","anonymous_id":"a","timestamp":1,"type":"custom","properties":{"name":"x","props":{"context":{"ip":"in the properties"}}},"context":{"locale":"fr"}}"#.to_owned(),
            r#"{"event_id":"01936a1c-3b5e-7cc4-9a1e-4f1b2c3d4e5f","anonymous_id":"a","timestamp":1,"type":"custom","properties":{"name":"x","props":{"ip":"10.0.0.1"}},"context":{"locale":"fr"}}"#.to_owned(),
            // The context given as an array (serde reads a struct from one).
            r#"{"event_id":"01936a1c-3b5e-7cc4-9a1e-4f1b2c3d4e5f","anonymous_id":"a","timestamp":1,"type":"page_view","properties":{},"context":[{"url":"https://shop.example/"}]}"#.to_owned(),
            // The lake keeps one event per line.
            FULL.replace(r#","type""#, "\n,\"type\""),
            FULL.replace(r#","type""#, "\r,\"type\""),
            // serde reads a struct from an array too: its fields in order.
            r#"["01936a1c-3b5e-7cc4-9a1e-4f1b2c3d4e5f","a{b",null,null,1,5,{"page":{"url":"https://shop.example/"}},"page_view",{}]"#.to_owned(),
        ];
        for text in &texts {
            assert!(
                !check(text, &server(Some("203.0.113.7"), Some(AGENT))),
                "{text}"
            );
        }
    }

    #[test]
    fn the_senders_own_user_agent_is_kept() {
        let text = FULL.replace(r#""locale""#, r#""user_agent":"Own/1.0","locale""#);
        assert!(check(&text, &server(Some("203.0.113.7"), Some(AGENT))));
        let (mut event, at) = decode_located(&text).unwrap();
        let record = enrich(&mut event, &text, at.as_ref(), &server(None, Some(AGENT)));
        let decoded: Event = serde_json::from_slice(&record).unwrap();
        assert_eq!(decoded.context.user_agent.as_deref(), Some("Own/1.0"));
    }

    #[test]
    fn a_null_context_is_refused_as_before() {
        let text = FULL.replace(
            r#""context":{"page":{"url":"https://shop.example/p/1","title":"Shoes"},"locale":"de-CH","screen":{"width":1,"height":2}}"#,
            r#""context":null"#,
        );
        let raw = serde_json::value::RawValue::from_string(text).unwrap();
        assert_eq!(
            decode_located(raw.get()).map(|(e, _)| e),
            crate::wire::decode_event(&raw)
        );
        assert!(decode_located(raw.get()).is_err());
    }
}
