//! Segment-spec messages as the collector takes them: converted by `retailmind_segment` (pure,
//! and fuzzed with the tracker's format), each problem an answer's [`RejectedField`].

use retailmind_schema::Event;
use retailmind_segment::Options;
use serde_json::value::RawValue;

use crate::ingest::RejectedField;

pub use retailmind_segment::NO_PAGE_URL;

/// [`retailmind_segment::convert`], its problems as the answer names them.
pub fn convert(
    raw: &RawValue,
    default_type: Option<&str>,
    now_ms: i64,
    batch_context: Option<&RawValue>,
    options: &Options,
) -> Result<Event, Vec<RejectedField>> {
    retailmind_segment::convert(raw, default_type, now_ms, batch_context, options).map_err(
        |problems| {
            problems
                .into_iter()
                .map(|p| RejectedField::new(p.field, p.reason))
                .collect()
        },
    )
}
