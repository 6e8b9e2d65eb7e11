//! The session snapshot as the embedded store keeps it: a compact binary row value.
//!
//! A batch writes one snapshot per visitor it touched, so their size is most of what a batch
//! writes to the WAL (and copies back at the checkpoint), and their encoding ran on the
//! processor's critical path. JSON spelled every field name and every event id as 36 characters
//! of text; this format writes lengths and numbers as varints and ids as their 16 bytes, about
//! a third of the size, and encodes several times faster.
//!
//! Layout: the format byte [`FORMAT`], then every field of [`Session`] in declaration order:
//! strings as a varint length and UTF-8 bytes, optional strings as 0 (none) or length + 1,
//! integers as (zig-zag for signed) LEB128 varints, flags as one byte, the event ids as a
//! count and 16 bytes each; an optional number as 0 (none) or the number + 1. Rows written as
//! JSON text by earlier versions still read: SQLite hands them back as TEXT, these as BLOB. So do
//! rows of format 1, which predates `engaged_ms` (read as unknown), of format 2, which predates
//! `orders` (read as none), and of format 3, which predates currencies (an order's is read as
//! empty, the session's as none, and `other_revenue` as none).

use retailmind_schema::{CurrencyRevenue, Session, SessionOrder};
use uuid::Uuid;

use crate::error::{ConnectorError, Result};

/// The first byte of this format. JSON text starts with `{`, so a reader can never mistake one
/// for the other even without SQLite's value type.
const FORMAT: u8 = 4;

/// The format before currencies, still read.
const FORMAT_WITHOUT_CURRENCIES: u8 = 3;

/// The format before `orders`, still read.
const FORMAT_WITHOUT_ORDERS: u8 = 2;

/// The format before `engaged_ms` (and `orders`), still read.
const FORMAT_WITHOUT_ENGAGED_TIME: u8 = 1;

pub fn encode(session: &Session) -> Vec<u8> {
    // Destructured in full: a field added to `Session` fails to compile here until the format
    // carries it, instead of being silently dropped from every stored session.
    let Session {
        session_id,
        anonymous_id,
        user_id,
        start_ms,
        end_ms,
        event_count,
        page_views,
        entry_url,
        exit_url,
        referrer,
        utm_source,
        utm_medium,
        utm_campaign,
        products_viewed,
        cart_adds,
        purchases,
        revenue_minor,
        currency,
        other_revenue,
        engaged_ms,
        engaged,
        bounce,
        device,
        session_number,
        event_ids,
        orders,
        version,
    } = session;
    let mut out = Writer(Vec::with_capacity(
        128 + session_id.len()
            + anonymous_id.len()
            + entry_url.len()
            + exit_url.len()
            + 16 * event_ids.len(),
    ));
    out.0.push(FORMAT);
    out.text(session_id);
    out.text(anonymous_id);
    out.optional(user_id);
    out.signed(*start_ms);
    out.signed(*end_ms);
    out.unsigned(u64::from(*event_count));
    out.unsigned(u64::from(*page_views));
    out.text(entry_url);
    out.text(exit_url);
    out.optional(referrer);
    out.optional(utm_source);
    out.optional(utm_medium);
    out.optional(utm_campaign);
    out.unsigned(u64::from(*products_viewed));
    out.unsigned(u64::from(*cart_adds));
    out.unsigned(u64::from(*purchases));
    out.signed(*revenue_minor);
    out.optional_unsigned(*engaged_ms);
    out.0.push(u8::from(*engaged));
    out.0.push(u8::from(*bounce));
    out.text(device);
    out.unsigned(u64::from(*session_number));
    out.unsigned(event_ids.len() as u64);
    for id in event_ids {
        out.0.extend_from_slice(id.as_bytes());
    }
    out.unsigned(orders.len() as u64);
    for order in orders {
        out.text(&order.order_id);
        out.signed(order.revenue_minor);
        out.text(&order.currency);
    }
    out.optional(currency);
    out.unsigned(other_revenue.len() as u64);
    for other in other_revenue {
        out.text(&other.currency);
        out.signed(other.revenue_minor);
    }
    out.unsigned(*version);
    out.0
}

pub fn decode(bytes: &[u8]) -> Result<Session> {
    let mut r = Reader { rest: bytes };
    let format = r.byte()?;
    if ![
        FORMAT,
        FORMAT_WITHOUT_CURRENCIES,
        FORMAT_WITHOUT_ORDERS,
        FORMAT_WITHOUT_ENGAGED_TIME,
    ]
    .contains(&format)
    {
        return Err(corrupt(format!("unknown format byte {format}")));
    }
    let mut session = Session {
        session_id: r.text()?,
        anonymous_id: r.text()?,
        user_id: r.optional()?,
        start_ms: r.signed()?,
        end_ms: r.signed()?,
        event_count: r.small()?,
        page_views: r.small()?,
        entry_url: r.text()?,
        exit_url: r.text()?,
        referrer: r.optional()?,
        utm_source: r.optional()?,
        utm_medium: r.optional()?,
        utm_campaign: r.optional()?,
        products_viewed: r.small()?,
        cart_adds: r.small()?,
        purchases: r.small()?,
        revenue_minor: r.signed()?,
        // Read after the orders, where the format keeps them.
        currency: None,
        other_revenue: Vec::new(),
        engaged_ms: match format {
            FORMAT_WITHOUT_ENGAGED_TIME => None,
            _ => r.optional_unsigned()?,
        },
        engaged: r.flag()?,
        bounce: r.flag()?,
        device: r.text()?,
        session_number: r.small()?,
        event_ids: {
            let count = r.length()?;
            let ids = r.take(count.checked_mul(16).ok_or_else(too_long)?)?;
            ids.chunks_exact(16)
                .map(|id| Uuid::from_slice(id).map_err(|e| corrupt(e.to_string())))
                .collect::<Result<_>>()?
        },
        orders: match format {
            FORMAT_WITHOUT_ENGAGED_TIME | FORMAT_WITHOUT_ORDERS => Vec::new(),
            _ => {
                let count = r.length()?;
                // Each order takes two bytes at least: a count past what is left is damage,
                // not a reason to allocate.
                if count > r.rest.len() / 2 {
                    return Err(too_long());
                }
                (0..count)
                    .map(|_| {
                        Ok(SessionOrder {
                            order_id: r.text()?,
                            revenue_minor: r.signed()?,
                            currency: match format {
                                FORMAT_WITHOUT_CURRENCIES => String::new(),
                                _ => r.text()?,
                            },
                        })
                    })
                    .collect::<Result<_>>()?
            }
        },
        version: 0,
    };
    if format == FORMAT {
        session.currency = r.optional()?;
        let count = r.length()?;
        // Each entry takes two bytes at least.
        if count > r.rest.len() / 2 {
            return Err(too_long());
        }
        session.other_revenue = (0..count)
            .map(|_| {
                Ok(CurrencyRevenue {
                    currency: r.text()?,
                    revenue_minor: r.signed()?,
                })
            })
            .collect::<Result<_>>()?;
    }
    session.version = r.unsigned()?;
    if !r.rest.is_empty() {
        return Err(corrupt(format!("{} bytes after the end", r.rest.len())));
    }
    Ok(session)
}

struct Writer(Vec<u8>);

impl Writer {
    fn unsigned(&mut self, mut n: u64) {
        while n >= 0x80 {
            self.0.push((n as u8) | 0x80);
            n >>= 7;
        }
        self.0.push(n as u8);
    }

    fn signed(&mut self, n: i64) {
        self.unsigned(((n << 1) ^ (n >> 63)) as u64);
    }

    fn text(&mut self, s: &str) {
        self.unsigned(s.len() as u64);
        self.0.extend_from_slice(s.as_bytes());
    }

    fn optional_unsigned(&mut self, n: Option<u64>) {
        self.unsigned(n.map_or(0, |n| n.saturating_add(1)));
    }

    fn optional(&mut self, s: &Option<String>) {
        match s {
            None => self.0.push(0),
            Some(s) => {
                self.unsigned(s.len() as u64 + 1);
                self.0.extend_from_slice(s.as_bytes());
            }
        }
    }
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.rest.len() {
            return Err(corrupt(format!(
                "{n} bytes wanted, {} left",
                self.rest.len()
            )));
        }
        let (taken, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(taken)
    }

    fn byte(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn unsigned(&mut self) -> Result<u64> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            if shift == 63 && b > 1 {
                break;
            }
            n |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(corrupt("a varint longer than 64 bits".into()))
    }

    fn signed(&mut self) -> Result<i64> {
        let n = self.unsigned()?;
        Ok(((n >> 1) as i64) ^ -((n & 1) as i64))
    }

    fn small(&mut self) -> Result<u32> {
        u32::try_from(self.unsigned()?).map_err(|_| corrupt("a count over u32".into()))
    }

    fn length(&mut self) -> Result<usize> {
        usize::try_from(self.unsigned()?).map_err(|_| too_long())
    }

    fn flag(&mut self) -> Result<bool> {
        match self.byte()? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(corrupt(format!("flag byte {other}"))),
        }
    }

    fn text(&mut self) -> Result<String> {
        let n = self.length()?;
        self.utf8(n)
    }

    fn optional_unsigned(&mut self) -> Result<Option<u64>> {
        Ok(self.unsigned()?.checked_sub(1))
    }

    fn optional(&mut self) -> Result<Option<String>> {
        match self.length()? {
            0 => Ok(None),
            n => self.utf8(n - 1).map(Some),
        }
    }

    fn utf8(&mut self, n: usize) -> Result<String> {
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec()).map_err(|e| corrupt(e.to_string()))
    }
}

fn too_long() -> ConnectorError {
    corrupt("a length past the end".into())
}

/// A stored snapshot that does not decode, in either format.
pub(super) fn corrupt(detail: String) -> ConnectorError {
    ConnectorError::Corrupt {
        what: "sessions.snapshot".into(),
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every field set, and the edges of the encoding: non-ASCII, an empty but present string,
    /// a negative amount, the largest version.
    fn full() -> Session {
        Session {
            anonymous_id: "visitor-ä".into(),
            referrer: Some(String::new()),
            utm_medium: None,
            revenue_minor: -4_990,
            event_count: 300,
            event_ids: vec![Uuid::from_u128(1), Uuid::from_u128(u128::MAX)],
            orders: vec![
                SessionOrder {
                    order_id: "A-1".into(),
                    revenue_minor: 12_990,
                    currency: "EUR".into(),
                },
                SessionOrder {
                    order_id: "Ä-2".into(),
                    revenue_minor: -4_990,
                    currency: String::new(),
                },
            ],
            version: u64::MAX,
            ..crate::test_fixtures::full_session()
        }
    }

    #[test]
    fn every_field_survives_a_round_trip() {
        for session in [full(), Session::default()] {
            assert_eq!(decode(&encode(&session)).unwrap(), session);
        }
    }

    /// `session` (no currency, no other revenue, no order's currency) in format 3: this format
    /// without an order's currency, nor the session's currency and other revenue before the
    /// version.
    fn in_format_3(session: &Session) -> Vec<u8> {
        assert!(session.currency.is_none() && session.other_revenue.is_empty());
        assert!(session.orders.iter().all(|o| o.currency.is_empty()));
        let bytes = encode(session);
        // Where each order's empty currency is: where a currency of one letter differs.
        let mut cut: Vec<usize> = (0..session.orders.len())
            .map(|k| {
                let mut lettered = session.clone();
                lettered.orders[k].currency = "X".into();
                let other = encode(&lettered);
                (0..bytes.len()).find(|&i| bytes[i] != other[i]).unwrap()
            })
            .collect();
        let mut version = Writer(Vec::new());
        version.unsigned(session.version);
        let before_version = bytes.len() - version.0.len();
        cut.extend([before_version - 2, before_version - 1]);
        let mut old: Vec<u8> = bytes
            .iter()
            .enumerate()
            .filter(|(i, _)| !cut.contains(i))
            .map(|(_, b)| *b)
            .collect();
        old[0] = FORMAT_WITHOUT_CURRENCIES;
        old
    }

    #[test]
    fn rows_of_the_format_before_currencies_still_read() {
        let mut session = Session {
            currency: None,
            other_revenue: Vec::new(),
            ..full()
        };
        for order in &mut session.orders {
            order.currency.clear();
        }
        assert_eq!(decode(&in_format_3(&session)).unwrap(), session);
    }

    /// `session` (which has no orders) in format 2: format 3 without the orders' count.
    fn in_format_2(session: &Session) -> Vec<u8> {
        assert!(session.orders.is_empty());
        let (none, one) = (
            in_format_3(session),
            in_format_3(&Session {
                orders: vec![SessionOrder::default()],
                ..session.clone()
            }),
        );
        let at = (0..none.len()).find(|&i| none[i] != one[i]).unwrap();
        let mut old = none;
        old.remove(at);
        old[0] = FORMAT_WITHOUT_ORDERS;
        old
    }

    #[test]
    fn rows_of_the_format_before_orders_still_read() {
        let session = Session {
            orders: Vec::new(),
            currency: None,
            other_revenue: Vec::new(),
            ..full()
        };
        assert_eq!(decode(&in_format_2(&session)).unwrap(), session);
    }

    #[test]
    fn rows_of_the_format_before_engaged_time_still_read() {
        let session = Session {
            engaged_ms: None,
            orders: Vec::new(),
            currency: None,
            other_revenue: Vec::new(),
            ..full()
        };
        let (unknown, zero) = (
            in_format_2(&session),
            in_format_2(&Session {
                engaged_ms: Some(0),
                ..session.clone()
            }),
        );
        // Format 1 is format 2 without the engaged time's byte.
        let at = (0..unknown.len()).find(|&i| unknown[i] != zero[i]).unwrap();
        let mut old = unknown.clone();
        old.remove(at);
        old[0] = FORMAT_WITHOUT_ENGAGED_TIME;
        assert_eq!(decode(&old).unwrap(), session);
    }

    #[test]
    fn it_is_far_smaller_than_the_json_it_replaces() {
        let mut session = full();
        session.event_ids = (0..4).map(Uuid::from_u128).collect();
        let (binary, json) = (
            encode(&session).len(),
            serde_json::to_vec(&session).unwrap().len(),
        );
        assert!(binary * 2 < json, "binary {binary} bytes, JSON {json}");
    }

    #[test]
    fn damaged_rows_are_errors_not_panics() {
        let good = encode(&full());
        for cut in 0..good.len() {
            assert!(decode(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = good.clone();
        longer.push(0);
        assert!(decode(&longer).is_err());
        let mut other_format = good;
        other_format[0] = b'{';
        assert!(decode(&other_format).is_err());
        // The version is the last field: a varint there whose tenth byte carries more than the
        // 64th bit must not decode to a truncated number.
        let mut overlong = encode(&Session {
            version: 1,
            ..full()
        });
        overlong.pop();
        overlong.extend_from_slice(&[0xff; 9]);
        overlong.push(0x02);
        assert!(decode(&overlong).is_err());
        overlong.pop();
        overlong.push(0x01);
        assert_eq!(decode(&overlong).unwrap().version, u64::MAX);
    }
}
