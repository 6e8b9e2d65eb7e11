//! The model state as bytes and back, so it can be persisted (a SQLite blob, a DynamoDB item, an
//! S3 object) and survive restarts.
//!
//! A small hand-written little-endian format: no dependency, no field names repeated per item,
//! and every length checked against the bytes that remain before anything is allocated, so a
//! truncated or corrupt snapshot is an error, never a panic or a huge allocation. Derived data
//! (the id → index maps, the popularity boards, the item → sessions index) is not stored but
//! rebuilt on load, which yields the same recommendations as the state that was saved.
//!
//! Layout, version 2: magic `RMRECSNP`, version (u32), config, latest click time (f64), items
//! (epoch, then per item: id, clicks, log trending score), sessions (first sequence number, then
//! per session: key, last time, items), rules rows, co-purchase rows, then category names, each
//! item's category (u32, `u32::MAX` for none) and each session's purchased items. Strings are a
//! u32 length and UTF-8; lists a u32 count and their elements. Version 1 ends before the
//! categories and is still read (no categories, no purchases), so a stored model of the build
//! before keeps serving across the upgrade.

use crate::items::{ItemTable, NO_CATEGORY};
use crate::model::{ModelConfig, ModelState};
use crate::sessions::{SessionLimits, SessionRecord, SessionStore};
use crate::sparse::SparseRows;
use crate::ItemIx;

const MAGIC: &[u8; 8] = b"RMRECSNP";
const VERSION: u32 = 2;

/// Why bytes could not be read back as a model.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SnapshotError {
    /// The bytes do not start with the snapshot magic.
    #[error("not a recommendation model snapshot (bad magic)")]
    NotASnapshot,
    /// Written by a newer (or unknown) format version.
    #[error(
        "snapshot format version {found} is not supported (this build reads version {VERSION})"
    )]
    UnsupportedVersion {
        /// The version found.
        found: u32,
    },
    /// The bytes end in the middle of a value.
    #[error("snapshot ends early: {what} at byte {offset}")]
    Truncated {
        /// The value being read.
        what: &'static str,
        /// Where it started.
        offset: usize,
    },
    /// A value is out of range or inconsistent with the rest.
    #[error("snapshot is invalid at byte {offset}: {what}")]
    Invalid {
        /// What is wrong.
        what: &'static str,
        /// Where the value ends.
        offset: usize,
    },
}

impl ModelState {
    /// The model as bytes; [`ModelState::from_snapshot`] reads them back.
    pub fn to_snapshot(&self) -> Vec<u8> {
        let mut w = Writer(Vec::with_capacity(self.memory_bytes() / 2));
        w.0.extend_from_slice(MAGIC);
        w.u32(VERSION);
        write_config(&mut w, &self.config);
        w.f64(self.latest_time);
        let items = &self.items;
        w.f64(items.epoch().unwrap_or(f64::NAN));
        w.len(items.len());
        for ((id, &clicks), &trend) in items
            .ids()
            .iter()
            .zip(items.click_counts())
            .zip(items.trend_logs())
        {
            w.str(id);
            w.u32(clicks);
            w.f64(trend);
        }
        w.u32(self.sessions.first_seq());
        w.len(self.sessions.len());
        for record in self.sessions.records() {
            w.str(&record.key);
            w.f64(record.last_time);
            w.len(record.items.len());
            record.items.iter().for_each(|&i| w.u32(i));
        }
        for matrix in [&self.rules, &self.co_purchases] {
            w.len(matrix.rows().len());
            for row in matrix.rows() {
                w.len(row.len());
                for &(item, weight) in row {
                    w.u32(item);
                    w.f32(weight);
                }
            }
        }
        let (names, categories) = items.categories();
        w.len(names.len());
        names.iter().for_each(|name| w.str(name));
        categories.iter().for_each(|&c| w.u32(c));
        for record in self.sessions.records() {
            w.len(record.purchased.len());
            record.purchased.iter().for_each(|&i| w.u32(i));
        }
        w.0
    }

    /// Reads a model written by [`ModelState::to_snapshot`].
    pub fn from_snapshot(bytes: &[u8]) -> Result<Self, SnapshotError> {
        let mut r = Reader { bytes, at: 0 };
        if r.take(MAGIC.len(), "magic")? != MAGIC {
            return Err(SnapshotError::NotASnapshot);
        }
        let version = r.u32("version")?;
        if !(1..=VERSION).contains(&version) {
            return Err(SnapshotError::UnsupportedVersion { found: version });
        }
        let config = read_config(&mut r)?;
        let latest_time = r.f64("latest time")?;
        let epoch = Some(r.f64("epoch")?).filter(|e| !e.is_nan());
        let n_items = r.len("item count", 16)?;
        let (mut ids, mut clicks, mut trend) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..n_items {
            ids.push(r.str("item id")?.into());
            clicks.push(r.u32("item clicks")?);
            trend.push(r.f64("item trending score")?);
        }
        let (ids_at, n_ids) = (r.at, ids.len());
        let item = |r: &mut Reader<'_>, what| -> Result<ItemIx, SnapshotError> {
            let ix = r.u32(what)?;
            if (ix as usize) < n_items {
                Ok(ix)
            } else {
                Err(r.invalid("item index out of range"))
            }
        };
        let first_seq = r.u32("first session number")?;
        let n_sessions = r.len("session count", 16)?;
        if u64::from(first_seq) + n_sessions as u64 > u64::from(u32::MAX) {
            return Err(r.invalid("session numbers run past 2^32"));
        }
        if n_sessions > config.sessions.max_sessions {
            return Err(r.invalid("more sessions than the configuration keeps"));
        }
        let mut sessions = Vec::with_capacity(n_sessions);
        for _ in 0..n_sessions {
            let key = r.str("session key")?.into();
            let last_time = r.f64("session time")?;
            let len = r.len("session length", 4)?;
            if len > config.sessions.max_session_len {
                return Err(r.invalid("session longer than the configuration keeps"));
            }
            let items = (0..len)
                .map(|_| item(&mut r, "session item"))
                .collect::<Result<_, _>>()?;
            sessions.push(SessionRecord {
                key,
                items,
                purchased: Vec::new(),
                last_time,
            });
        }
        let mut matrices = Vec::with_capacity(2);
        for _ in 0..2 {
            let n_rows = r.len("row count", 4)?;
            if n_rows > n_items {
                return Err(r.invalid("more rows than items"));
            }
            let mut rows = Vec::with_capacity(n_rows);
            for _ in 0..n_rows {
                let len = r.len("row length", 8)?;
                let row = (0..len)
                    .map(|_| Ok((item(&mut r, "linked item")?, r.f32("link weight")?)))
                    .collect::<Result<Vec<_>, SnapshotError>>()?;
                rows.push(row);
            }
            let matrix = SparseRows::from_rows(config.max_links_per_item, rows)
                .ok_or_else(|| r.invalid("a row is not sorted by item"))?;
            matrices.push(matrix);
        }
        let mut categories = (Vec::new(), vec![NO_CATEGORY; n_ids]);
        if version >= 2 {
            let n_names = r.len("category count", 4)?;
            categories.0 = (0..n_names)
                .map(|_| Ok(r.str("category")?.into()))
                .collect::<Result<_, SnapshotError>>()?;
            for c in categories.1.iter_mut() {
                *c = r.u32("item category")?;
                if *c != NO_CATEGORY && *c as usize >= n_names {
                    return Err(r.invalid("category index out of range"));
                }
            }
            for session in &mut sessions {
                let len = r.len("purchase count", 4)?;
                if len > config.sessions.max_session_len {
                    return Err(r.invalid("more purchases than the configuration keeps"));
                }
                session.purchased = (0..len)
                    .map(|_| item(&mut r, "purchased item"))
                    .collect::<Result<_, _>>()?;
            }
        }
        if r.at != bytes.len() {
            return Err(r.invalid("bytes after the end of the snapshot"));
        }
        let items = ItemTable::from_parts(
            config.trending_half_life_secs,
            epoch,
            ids,
            clicks,
            trend,
            categories,
        )
        .ok_or(SnapshotError::Invalid {
            what: "an item id or a category name appears twice",
            offset: ids_at,
        })?;
        let co_purchases = matrices.pop().expect("two matrices read");
        let rules = matrices.pop().expect("two matrices read");
        Ok(ModelState {
            config,
            items,
            sessions: SessionStore::from_parts(config.sessions, first_seq, sessions),
            rules,
            co_purchases,
            latest_time,
        })
    }
}

fn write_config(w: &mut Writer, c: &ModelConfig) {
    w.u64(c.sessions.max_sessions as u64);
    w.u64(c.sessions.max_session_len as u64);
    w.0.push(u8::from(c.sessions.index));
    w.u64(c.sessions.max_sessions_per_item as u64);
    w.u64(c.rule_window as u64);
    w.u64(c.max_links_per_item as u64);
    w.0.push(u8::from(c.learn_orders));
    w.f64(c.trending_half_life_secs);
    w.u64(c.max_order_items as u64);
}

fn read_config(r: &mut Reader<'_>) -> Result<ModelConfig, SnapshotError> {
    let config = ModelConfig {
        sessions: SessionLimits {
            max_sessions: r.usize("max sessions")?,
            max_session_len: r.usize("max session length")?,
            index: r.bool("session index flag")?,
            max_sessions_per_item: r.usize("max sessions per item")?,
        },
        rule_window: r.usize("rule window")?,
        max_links_per_item: r.usize("max links per item")?,
        learn_orders: r.bool("orders flag")?,
        trending_half_life_secs: r.f64("trending half-life")?,
        max_order_items: r.usize("max order items")?,
    };
    let half_life = config.trending_half_life_secs;
    if !(half_life.is_finite() && half_life > 0.0) {
        return Err(r.invalid("trending half-life must be a positive number of seconds"));
    }
    Ok(config)
}

struct Writer(Vec<u8>);

impl Writer {
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn f32(&mut self, v: f32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn f64(&mut self, v: f64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn len(&mut self, len: usize) {
        self.u32(u32::try_from(len).expect("lists in a model are shorter than 2^32"));
    }
    fn str(&mut self, s: &str) {
        self.len(s.len());
        self.0.extend_from_slice(s.as_bytes());
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], SnapshotError> {
        let truncated = SnapshotError::Truncated {
            what,
            offset: self.at,
        };
        let end = self.at.checked_add(n).ok_or(truncated.clone())?;
        let slice = self.bytes.get(self.at..end).ok_or(truncated)?;
        self.at = end;
        Ok(slice)
    }
    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], SnapshotError> {
        Ok(self.take(N, what)?.try_into().expect("took N bytes"))
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, SnapshotError> {
        self.array(what).map(u32::from_le_bytes)
    }
    fn usize(&mut self, what: &'static str) -> Result<usize, SnapshotError> {
        let v = u64::from_le_bytes(self.array(what)?);
        usize::try_from(v).map_err(|_| self.invalid("number too large for this machine"))
    }
    fn f32(&mut self, what: &'static str) -> Result<f32, SnapshotError> {
        self.array(what).map(f32::from_le_bytes)
    }
    fn f64(&mut self, what: &'static str) -> Result<f64, SnapshotError> {
        self.array(what).map(f64::from_le_bytes)
    }
    fn bool(&mut self, what: &'static str) -> Result<bool, SnapshotError> {
        match self.take(1, what)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(self.invalid("a flag is neither 0 nor 1")),
        }
    }
    /// A list length whose elements take at least `min_element_bytes` each: longer than the
    /// bytes left means corruption, caught before allocating.
    fn len(
        &mut self,
        what: &'static str,
        min_element_bytes: usize,
    ) -> Result<usize, SnapshotError> {
        let len = self.u32(what)? as usize;
        if len.saturating_mul(min_element_bytes) > self.bytes.len() - self.at {
            return Err(SnapshotError::Truncated {
                what,
                offset: self.at,
            });
        }
        Ok(len)
    }
    fn str(&mut self, what: &'static str) -> Result<&'a str, SnapshotError> {
        let len = self.len(what, 1)?;
        let bytes = self.take(len, what)?;
        std::str::from_utf8(bytes).map_err(|_| self.invalid("a string is not UTF-8"))
    }
    fn invalid(&self, what: &'static str) -> SnapshotError {
        SnapshotError::Invalid {
            what,
            offset: self.at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Click;
    use crate::query::Query;
    use crate::strategy;
    use proptest::prelude::*;

    fn sample_model() -> ModelState {
        let log = [
            ("s1", "a", 1.0),
            ("s1", "b", 2.0),
            ("s2", "a", 3.0),
            ("s2", "c", 4.5),
        ]
        .map(|(session, item, time)| Click {
            session,
            item,
            time,
        });
        let mut model = ModelState::from_clicks(ModelConfig::default(), log);
        model.observe_order(&["a", "d"]);
        model.observe_view("s2", "b", 5.0, Some("shoes"));
        model.observe_purchase("s2", &["c", "e"], 6.0);
        model
    }

    #[test]
    fn round_trips_to_the_same_bytes_and_answers() {
        let model = sample_model();
        let bytes = model.to_snapshot();
        let back = ModelState::from_snapshot(&bytes).unwrap();
        assert_eq!(back.to_snapshot(), bytes);
        assert_eq!(back.config(), model.config());
        assert_eq!(back.category_of("b"), Some("shoes"));
        assert_eq!(
            back.session_history("s2"),
            Some((vec!["a", "c", "b"], vec!["c", "e"]))
        );
        let query = Query {
            clicks: &["a"],
            ..Query::default()
        };
        for name in strategy::NAMES {
            let s = strategy::by_name(name).unwrap();
            assert_eq!(
                back.recommend(s.as_ref(), &query, 5),
                model.recommend(s.as_ref(), &query, 5)
            );
        }
    }

    #[test]
    fn reads_a_version_1_snapshot_as_a_model_without_categories_or_purchases() {
        let log =
            [("s1", "a", 1.0), ("s1", "b", 2.0), ("s2", "a", 3.0)].map(|(session, item, time)| {
                Click {
                    session,
                    item,
                    time,
                }
            });
        let model = ModelState::from_clicks(ModelConfig::default(), log);
        let v2 = model.to_snapshot();
        // Version 1 is version 2 without its tail: no category name, every item without one,
        // every session without purchases.
        let tail = 4 + 4 * model.items().len() + 4 * model.sessions().len();
        let mut v1 = v2[..v2.len() - tail].to_vec();
        v1[8..12].copy_from_slice(&1u32.to_le_bytes());
        let back = ModelState::from_snapshot(&v1).unwrap();
        assert_eq!(back.to_snapshot(), v2);
    }

    #[test]
    fn rejects_foreign_truncated_and_corrupt_bytes() {
        let bytes = sample_model().to_snapshot();
        assert_eq!(
            ModelState::from_snapshot(b"{\"json\": true}").unwrap_err(),
            SnapshotError::NotASnapshot
        );
        let mut newer = bytes.clone();
        newer[8] = 9;
        assert_eq!(
            ModelState::from_snapshot(&newer).unwrap_err(),
            SnapshotError::UnsupportedVersion { found: 9 }
        );
        for cut in [4, 12, 40, bytes.len() - 1] {
            let err = ModelState::from_snapshot(&bytes[..cut]).unwrap_err();
            assert!(
                matches!(err, SnapshotError::Truncated { .. }),
                "cut {cut}: {err}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(
            ModelState::from_snapshot(&longer),
            Err(SnapshotError::Invalid {
                what: "bytes after the end of the snapshot",
                ..
            })
        ));
    }

    proptest! {
        /// Any click and order history survives the round trip, and no corruption of it panics.
        #[test]
        fn any_model_round_trips(
            log in proptest::collection::vec((0u8..5, 0u8..9, 0u32..10_000, 0u8..4), 0..60),
            orders in proptest::collection::vec((0u8..6, proptest::collection::vec(0u8..9, 0..4)), 0..4),
            flip in any::<(usize, u8)>(),
        ) {
            let mut model = ModelState::new(ModelConfig::default());
            for (s, i, t, c) in &log {
                let category = (*c > 0).then(|| format!("c{c}"));
                let (session, item) = (format!("s{s}"), format!("i{i}"));
                model.observe_view(&session, &item, f64::from(*t) / 10.0, category.as_deref());
            }
            for (s, order) in &orders {
                let ids: Vec<String> = order.iter().map(|i| format!("i{i}")).collect();
                model.observe_purchase(&format!("s{s}"), &ids, 1000.0);
            }
            let bytes = model.to_snapshot();
            let back = ModelState::from_snapshot(&bytes).unwrap();
            prop_assert_eq!(back.to_snapshot(), bytes.clone());
            let mut corrupt = bytes;
            let at = flip.0 % corrupt.len();
            corrupt[at] ^= flip.1.max(1);
            let _ = ModelState::from_snapshot(&corrupt);
        }
    }
}
