//! A shopper's visit as the processor builds it: the row of the sessions table and the lake's
//! `sessions` export.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// The event id of the session's first event: stable, so a replay rebuilds the same session.
    pub session_id: String,
    pub anonymous_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Event time of the first and last event, ms since the Unix epoch.
    pub start_ms: i64,
    pub end_ms: i64,
    pub event_count: u32,
    pub page_views: u32,
    pub entry_url: String,
    pub exit_url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referrer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utm_source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utm_medium: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utm_campaign: Option<String>,
    pub products_viewed: u32,
    pub cart_adds: u32,
    pub purchases: u32,
    /// Revenue of the purchases in [`currency`](Self::currency), in its minor units.
    pub revenue_minor: i64,
    /// The currency of `revenue_minor`: that of the first order the session counted. `None`
    /// before any order, and in sessions stored before currencies were told apart (whose
    /// revenue may mix them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// Revenue of the orders in any other currency, one entry per currency in the order first
    /// seen (at most [`MAX_OTHER_CURRENCIES`]): a shopper who switched the shop's currency
    /// within a visit. Kept apart, since amounts in different currencies do not add up.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other_revenue: Vec<CurrencyRevenue>,
    /// Time the visitor spent on the pages with the tab visible and focused, summed from the
    /// tracker's [`PAGE_ENGAGEMENT`] reports. `None` when the sender reports none (a Segment
    /// library, a server): unknown, not zero.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engaged_ms: Option<u64>,
    /// The visitor engaged: over 10 s of engaged time (of the session's span when no engaged
    /// time is reported), 2+ pages seen, or a purchase.
    #[serde(default)]
    pub engaged: bool,
    /// One page and no engagement.
    #[serde(default)]
    pub bounce: bool,
    /// `desktop`, `mobile`, `tablet`, `bot` or `unknown`, from the first event's user agent.
    #[serde(default)]
    pub device: String,
    /// 1 for the visitor's first session, 2 for the next, … (as far as the store knows them).
    #[serde(default)]
    pub session_number: u32,
    /// Ids of every event folded in, so a replayed event is counted once.
    pub event_ids: Vec<Uuid>,
    /// The orders counted in `purchases` and `revenue_minor`, each once: the shop's server
    /// (`/v1/transactions`) and the thank-you page (and its reloads) report one order under
    /// different event ids. Sessions stored before this field have it empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub orders: Vec<SessionOrder>,
    /// Bumped on every write; stores write only when the stored version is the one read.
    pub version: u64,
}

/// Most orders a session remembers: past them (a visitor placing dozens of orders in one visit
/// is a script) purchases are counted without being told apart, which keeps a session's item
/// within DynamoDB's 400 KB however long its order ids.
pub const MAX_SESSION_ORDERS: usize = 64;

/// Currencies besides the session's own that `other_revenue` keeps at most: the revenue of any
/// further one is left out of the session (the order and its purchase events keep it), which
/// bounds the item whatever a sender makes up.
pub const MAX_OTHER_CURRENCIES: usize = 8;

/// One order a session counted, and the revenue it counted for it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionOrder {
    pub order_id: String,
    pub revenue_minor: i64,
    /// Empty in sessions stored before currencies were told apart.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub currency: String,
}

/// Revenue in one currency, in its minor units.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurrencyRevenue {
    pub currency: String,
    pub revenue_minor: i64,
}

/// Events a session holds by default before the next one starts, however active the visitor
/// (processor setting `session_max_events`). Every event's id is kept, and a DynamoDB item
/// holds at most 400 KB: at this count the ids take about 200 KB.
pub const MAX_SESSION_EVENTS: u32 = 5_000;

/// The largest `session_max_events` a processor accepts: a session's item at this many events,
/// every other field at its longest, stays under nine tenths of DynamoDB's 400 KB (a larger
/// item could never be written, and its shard would stop there).
pub const SESSION_EVENTS_LIMIT: u32 = 8_000;

/// A session counts as engaged past this much engaged time.
pub const ENGAGED_AFTER_MS: u64 = 10_000;

/// The custom event in which the tracker reports a page's engaged time (`engaged_ms`) and
/// scroll depth (`scroll_depth_pct`) when the visitor leaves it.
pub const PAGE_ENGAGEMENT: &str = "page_engagement";

/// The property of a [`PAGE_ENGAGEMENT`] event that holds the page's engaged milliseconds.
pub const ENGAGED_MS: &str = "engaged_ms";

impl Session {
    /// Adds `delta` to the revenue in `currency`: to `revenue_minor` when it is the session's
    /// currency (or the session has none yet and no revenue), otherwise to that currency's
    /// entry of `other_revenue`. An empty `currency` is revenue counted before currencies were
    /// told apart, which stays in `revenue_minor`, where it was counted.
    pub fn add_revenue(&mut self, currency: &str, delta: i64) {
        if currency.is_empty() {
            self.revenue_minor += delta;
            return;
        }
        if self.currency.is_none() && self.revenue_minor == 0 {
            self.currency = Some(currency.to_owned());
        }
        if self.currency.as_deref() == Some(currency) {
            self.revenue_minor += delta;
            return;
        }
        if let Some(other) = self
            .other_revenue
            .iter_mut()
            .find(|r| r.currency == currency)
        {
            other.revenue_minor += delta;
        } else if self.other_revenue.len() < MAX_OTHER_CURRENCIES {
            self.other_revenue.push(CurrencyRevenue {
                currency: currency.to_owned(),
                revenue_minor: delta,
            });
        }
    }

    pub fn duration_ms(&self) -> i64 {
        self.end_ms - self.start_ms
    }

    /// Recomputes the flags that follow from the counts (after every fold).
    pub fn settle(&mut self) {
        // A span is an upper bound of engaged time (a tab left open in the background counts
        // in it), so it decides only for senders that report no engaged time.
        let engaged_for = self
            .engaged_ms
            .unwrap_or_else(|| u64::try_from(self.duration_ms()).unwrap_or(0));
        self.engaged = engaged_for > ENGAGED_AFTER_MS || self.page_views >= 2 || self.purchases > 0;
        self.bounce = self.page_views <= 1 && !self.engaged;
    }
}

/// Coarse device class from a user agent, enough for dashboards.
pub fn device_class(user_agent: Option<&str>) -> &'static str {
    let Some(ua) = user_agent else {
        return "unknown";
    };
    let ua = ua.to_ascii_lowercase();
    if [
        "bot",
        "crawler",
        "spider",
        "headlesschrome",
        "curl/",
        "python-requests",
    ]
    .iter()
    .any(|m| ua.contains(m))
    {
        "bot"
    } else if ua.contains("ipad")
        || ua.contains("tablet")
        || (ua.contains("android") && !ua.contains("mobile"))
    {
        "tablet"
    } else if ua.contains("mobi") || ua.contains("iphone") || ua.contains("android") {
        "mobile"
    } else if ua.contains("windows")
        || ua.contains("macintosh")
        || ua.contains("x11")
        || ua.contains("cros")
    {
        "desktop"
    } else {
        "unknown"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_are_classified_from_common_agents() {
        let cases = [
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148",
                "mobile",
            ),
            (
                "Mozilla/5.0 (Linux; Android 14; Pixel 8) Mobile Safari/537.36",
                "mobile",
            ),
            ("Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X)", "tablet"),
            (
                "Mozilla/5.0 (Linux; Android 13; SM-X700) Safari/537.36",
                "tablet",
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/120.0",
                "desktop",
            ),
            (
                "Mozilla/5.0 (X11; Linux x86_64) HeadlessChrome/120.0",
                "bot",
            ),
            ("Googlebot/2.1 (+http://www.google.com/bot.html)", "bot"),
            ("something else", "unknown"),
        ];
        for (ua, class) in cases {
            assert_eq!(device_class(Some(ua)), class, "{ua}");
        }
        assert_eq!(device_class(None), "unknown");
    }

    #[test]
    fn engagement_and_bounce_follow_the_counts() {
        let mut s = Session {
            page_views: 1,
            end_ms: 5_000,
            ..Session::default()
        };
        s.settle();
        assert!(!s.engaged && s.bounce);
        s.end_ms = 11_000;
        s.settle();
        assert!(s.engaged && !s.bounce);
        let mut two_pages = Session {
            page_views: 2,
            ..Session::default()
        };
        two_pages.settle();
        assert!(two_pages.engaged && !two_pages.bounce);
    }
}
