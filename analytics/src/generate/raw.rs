//! The raw lake objects for generated events as the processor lays them out: by event hour, at
//! most `per_object` lines each, named `part-<n>.json` in event order. Built in memory
//! ([`raw_objects`]) or, for a shop whose JSON does not fit in memory, streamed to disk
//! ([`RawLakeWriter`]); both give the same objects for the same events.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use retailmind_connectors::lake::event_partition;
use retailmind_schema::Event;

const DAY_MS: i64 = 86_400_000;

/// Spooled bytes held in memory before they are appended to the day files: bounds the writer's
/// memory whatever the size of the shop.
const SPOOL_FLUSH_BYTES: usize = 64 * 1024 * 1024;

/// A spooled line starts with its sort key: the event time as 16 hex digits with the sign bit
/// flipped (so byte order is time order for any `i64`), then the 36-character event id, whose
/// text order is its byte order.
const KEY_LEN: usize = 16 + 36;

/// The raw lake objects for `events`, in memory.
pub fn raw_objects(events: &[Event], per_object: usize) -> BTreeMap<String, Vec<u8>> {
    let mut sorted: Vec<&Event> = events.iter().collect();
    sorted.sort_by_key(|e| (e.timestamp, e.event_id));
    let lines: Vec<(i64, Vec<u8>)> = sorted
        .iter()
        .filter_map(|e| serde_json::to_vec(e).ok().map(|json| (e.timestamp, json)))
        .collect();
    let mut out = BTreeMap::new();
    let Ok(()) = cut_objects(
        lines.iter().map(|(at, json)| (*at, json.as_slice())),
        per_object,
        |key, body| -> Result<(), Infallible> {
            out.insert(key, body);
            Ok(())
        },
    );
    out
}

/// Writes `objects` under `root` (the local lake).
pub fn write_local(root: &Path, objects: &BTreeMap<String, Vec<u8>>) -> io::Result<()> {
    for (key, body) in objects {
        write_object(root, key, body)?;
    }
    Ok(())
}

fn write_object(root: &Path, key: &str, body: &[u8]) -> io::Result<()> {
    let path = root.join(key);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, body)
}

/// Cuts lines in event order into objects: a new one for each event hour and after every
/// `per_object` lines.
fn cut_objects<'a, E>(
    lines: impl Iterator<Item = (i64, &'a [u8])>,
    per_object: usize,
    mut object: impl FnMut(String, Vec<u8>) -> Result<(), E>,
) -> Result<(), E> {
    let per_object = per_object.max(1);
    let key = |prefix: &str, part: usize| format!("{prefix}part-{part:05}.json");
    // The hour prefix and part number of the object being filled, and its lines so far.
    let mut open: Option<(String, usize)> = None;
    let mut body = Vec::new();
    let mut count = 0;
    for (at, line) in lines {
        let prefix = event_partition(at);
        match &mut open {
            Some((p, part)) if *p == prefix => {
                if count == per_object {
                    object(key(p, *part), std::mem::take(&mut body))?;
                    *part += 1;
                    count = 0;
                }
            }
            _ => {
                if let Some((p, part)) = open.take() {
                    object(key(&p, part), std::mem::take(&mut body))?;
                }
                open = Some((prefix, 0));
                count = 0;
            }
        }
        body.extend_from_slice(line);
        body.push(b'\n');
        count += 1;
    }
    match open {
        Some((p, part)) => object(key(&p, part), body),
        None => Ok(()),
    }
}

/// What [`RawLakeWriter::finish`] wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawLake {
    pub events: usize,
    pub objects: usize,
    /// Bytes of JSON in the objects.
    pub bytes: u64,
}

/// Writes the raw lake objects of events pushed in any order, holding at most about
/// [`SPOOL_FLUSH_BYTES`] plus one day of JSON in memory: events are spooled by UTC day under
/// `<root>/.raw-spool/`, and [`finish`](RawLakeWriter::finish) sorts each day and cuts it into
/// the objects [`raw_objects`] would give, then removes the spool.
pub struct RawLakeWriter {
    root: PathBuf,
    spool: PathBuf,
    per_object: usize,
    /// Lines not yet appended to their day's spool file, by day number since the epoch.
    pending: BTreeMap<i64, Vec<u8>>,
    pending_bytes: usize,
    days: BTreeSet<i64>,
    events: usize,
}

impl RawLakeWriter {
    pub fn new(root: &Path, per_object: usize) -> io::Result<RawLakeWriter> {
        let spool = root.join(".raw-spool");
        std::fs::create_dir_all(&spool)?;
        Ok(RawLakeWriter {
            root: root.to_owned(),
            spool,
            per_object,
            pending: BTreeMap::new(),
            pending_bytes: 0,
            days: BTreeSet::new(),
            events: 0,
        })
    }

    pub fn push(&mut self, event: &Event) -> io::Result<()> {
        let day = event.timestamp.div_euclid(DAY_MS);
        let buf = self.pending.entry(day).or_default();
        let before = buf.len();
        let flipped = (event.timestamp as u64) ^ (1 << 63);
        write!(buf, "{flipped:016x}{}", event.event_id.hyphenated())?;
        serde_json::to_writer(&mut *buf, event)?;
        buf.push(b'\n');
        self.pending_bytes += buf.len() - before;
        self.days.insert(day);
        self.events += 1;
        if self.pending_bytes >= SPOOL_FLUSH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    fn spool_file(&self, day: i64) -> PathBuf {
        self.spool.join(format!("{day}.jsonl"))
    }

    fn flush(&mut self) -> io::Result<()> {
        for (day, lines) in std::mem::take(&mut self.pending) {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.spool_file(day))?
                .write_all(&lines)?;
        }
        self.pending_bytes = 0;
        Ok(())
    }

    /// Writes the objects, day by day, and removes the spool.
    pub fn finish(mut self) -> io::Result<RawLake> {
        self.flush()?;
        let mut done = RawLake {
            events: self.events,
            ..RawLake::default()
        };
        for &day in &self.days {
            let file = self.spool_file(day);
            let spooled = std::fs::read(&file)?;
            let mut lines: Vec<&[u8]> = spooled
                .split(|b| *b == b'\n')
                .filter(|l| l.len() > KEY_LEN)
                .collect();
            // Stable, as `raw_objects`' sort: copies of one event keep the order they came in.
            lines.sort_by_key(|l| &l[..KEY_LEN]);
            let timed = lines.iter().map(|l| {
                let flipped = std::str::from_utf8(&l[..16])
                    .ok()
                    .and_then(|hex| u64::from_str_radix(hex, 16).ok())
                    .unwrap_or_default();
                ((flipped ^ (1 << 63)) as i64, &l[KEY_LEN..])
            });
            cut_objects(timed, self.per_object, |key, body| {
                done.objects += 1;
                done.bytes += body.len() as u64;
                write_object(&self.root, &key, &body)
            })?;
            std::fs::remove_file(&file)?;
        }
        std::fs::remove_dir(&self.spool)?;
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::{shop, visitors, ShopOptions};

    fn read_tree(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                read_tree(root, &path, out);
            } else {
                let key = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.insert(key, std::fs::read(&path).unwrap());
            }
        }
    }

    #[test]
    fn the_streamed_lake_holds_the_objects_built_in_memory() {
        let options = ShopOptions {
            visitors: 120,
            days: 3,
            ..ShopOptions::default()
        };
        let events = shop(&options);
        let mut replayed = events.clone();
        // A repeated event (a replay) is written twice, in the order it came, by both.
        replayed.extend(events.iter().step_by(7).cloned());
        let expected = raw_objects(&replayed, 9);

        let dir = tempfile::tempdir().unwrap();
        let mut writer = RawLakeWriter::new(dir.path(), 9).unwrap();
        for visitor in visitors(&options) {
            for event in &visitor {
                writer.push(event).unwrap();
            }
        }
        for event in events.iter().step_by(7) {
            writer.push(event).unwrap();
        }
        let written = writer.finish().unwrap();

        let mut found = BTreeMap::new();
        read_tree(dir.path(), dir.path(), &mut found);
        assert_eq!(found, expected);
        assert_eq!(written.events, replayed.len());
        assert_eq!(written.objects, expected.len());
        assert_eq!(
            written.bytes,
            expected.values().map(|b| b.len() as u64).sum::<u64>()
        );
    }
}
