//! Days as the lake names them: `YYYY-MM-DD`, UTC. Pure.

const DAY_MS: i64 = 86_400_000;

/// The UTC day of a time in ms since the Unix epoch.
pub fn day_of(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    name(t.date())
}

/// The day before a `YYYY-MM-DD` day; `None` for anything else.
pub fn previous_day(day: &str) -> Option<String> {
    parse_day(day)?.previous_day().map(name)
}

/// The day after a `YYYY-MM-DD` day; `None` for anything else.
pub fn next_day(day: &str) -> Option<String> {
    parse_day(day)?.next_day().map(name)
}

fn name(date: time::Date) -> String {
    format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

/// Parses `YYYY-MM-DD` strictly; `None` for anything else.
pub fn parse_day(day: &str) -> Option<time::Date> {
    let b = day.as_bytes();
    if !day.is_ascii() || b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |s: &str| -> Option<i32> {
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let year = num(&day[0..4])?;
    let month = u8::try_from(num(&day[5..7])?).ok()?;
    let dom = u8::try_from(num(&day[8..10])?).ok()?;
    time::Date::from_calendar_date(year, time::Month::try_from(month).ok()?, dom).ok()
}

/// Start of a `YYYY-MM-DD` day in ms since the Unix epoch.
pub fn day_start_ms(day: &str) -> Option<i64> {
    let date = parse_day(day)?;
    Some(date.midnight().assume_utc().unix_timestamp() * 1000)
}

/// End (exclusive) of a day in ms since the Unix epoch.
pub fn day_end_ms(day: &str) -> Option<i64> {
    day_start_ms(day).map(|s| s + DAY_MS)
}

/// The day in an object key: `…/dt=2024-11-25/…` or Firehose's `…/2024/11/25/…`.
pub fn day_in_key(key: &str) -> Option<String> {
    if let Some(rest) = key.split("dt=").nth(1) {
        let day = rest.get(..10)?;
        return parse_day(day).map(|_| day.to_owned());
    }
    let parts: Vec<&str> = key.split('/').collect();
    parts.windows(3).find_map(|w| {
        let day = format!("{}-{}-{}", w[0], w[1], w[2]);
        (w[0].len() == 4 && parse_day(&day).is_some()).then_some(day)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_utc_and_round_trip() {
        assert_eq!(day_of(1_732_527_000_000), "2024-11-25");
        assert_eq!(day_start_ms("2024-11-25"), Some(1_732_492_800_000));
        assert_eq!(day_end_ms("2024-11-25"), Some(1_732_492_800_000 + DAY_MS));
        assert_eq!(day_of(day_end_ms("2024-11-25").unwrap() - 1), "2024-11-25");
        assert_eq!(previous_day("2024-03-01").as_deref(), Some("2024-02-29"));
        assert_eq!(previous_day("2025-01-01").as_deref(), Some("2024-12-31"));
        assert_eq!(previous_day("2024-13-01"), None);
    }

    #[test]
    fn only_real_days_parse() {
        for bad in [
            "2024-13-01",
            "2€1-01-01",
            "2024-0€-1",
            "2024-02-30",
            "24-01-01",
            "2024/01/01",
            "2024-01-0x",
            "' OR 1=1",
        ] {
            assert_eq!(parse_day(bad), None, "{bad}");
        }
    }

    #[test]
    fn days_are_found_in_both_key_layouts() {
        assert_eq!(
            day_in_key("events/dt=2024-11-25/hour=09/part-1.json").as_deref(),
            Some("2024-11-25")
        );
        assert_eq!(
            day_in_key("events/2024/11/25/09/retailmind-lake-1").as_deref(),
            Some("2024-11-25")
        );
        assert_eq!(day_in_key("events/part.json"), None);
    }
}
