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

use serde_json::value::RawValue;

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

/// Sets the server-side fields of `event`, decoded from `raw` (with its context `at`, from
/// [`crate::wire::decode_located`]; `None` when unknown, as for an event converted from
/// another format), and returns its record.
pub fn enrich(
    event: &mut Event,
    raw: &RawValue,
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
    if let Some(record) = at.and_then(|at| spliced(raw.get(), at, server, agent)) {
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
    if !text.starts_with('{')
        || memchr::memchr3(b'\\', b'\n', b'\r', text.as_bytes()).is_some()
        || text.contains("\"received_at\"")
    {
        return None;
    }
    // The text must not hold the fields written into the context (the IP even when there is
    // none to write: the event's is then cleared).
    let context = match at {
        ContextAt::Absent if text.contains("\"context\"") => return None,
        ContextAt::Absent => None,
        ContextAt::Span(span) => {
            let context = text.get(span.clone())?;
            if !context.starts_with('{')
                || context.contains("\"ip\"")
                || (agent.is_some() && context.contains("\"user_agent\""))
            {
                return None;
            }
            Some(span.start)
        }
    };
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
        let raw = RawValue::from_string(text.to_owned()).unwrap();
        let (mut event, at) = decode_located(&raw).unwrap();
        let mut encoded = event.clone();
        let record = enrich(&mut event, &raw, at.as_ref(), server);
        enrich(&mut encoded, &raw, None, server);
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
            r#"{"event_id":"01936a1c-3b5e-7cc4-9a1e-4f1b2c3d4e5f","anonymous_id":"a","timestamp":1,"type":"custom","properties":{"name":"x","props":{"context":{"ip":"in the properties"}}},"context":{"locale":"fr"}}"#,
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
        let raw = RawValue::from_string(text).unwrap();
        let (mut event, at) = decode_located(&raw).unwrap();
        let record = enrich(&mut event, &raw, at.as_ref(), &server(None, Some(AGENT)));
        let decoded: Event = serde_json::from_slice(&record).unwrap();
        assert_eq!(decoded.context.user_agent.as_deref(), Some("Own/1.0"));
    }

    #[test]
    fn a_null_context_is_refused_as_before() {
        let text = FULL.replace(
            r#""context":{"page":{"url":"https://shop.example/p/1","title":"Shoes"},"locale":"de-CH","screen":{"width":1,"height":2}}"#,
            r#""context":null"#,
        );
        let raw = RawValue::from_string(text).unwrap();
        assert_eq!(
            decode_located(&raw).map(|(e, _)| e),
            crate::wire::decode_event(&raw)
        );
        assert!(decode_located(&raw).is_err());
    }
}
