//! Campaign parameters from the page's query string (`?utm_source=…&utm_medium=…`).
//!
//! The browser decodes the query (`URLSearchParams`, in `glue.js`): percent escapes, `+` and
//! invalid UTF-8 come out as every other script on the page sees them. The rules of which
//! parameters count are here.

use retailmind_schema::Utm;

/// The `utm_*` parameters of the query, whose decoded names and values in page order are
/// `param(0)` (the first name), `param(1)` (its value), `param(2)`, … until `None`. The first
/// non-blank value of a parameter wins, trimmed. `None` when there is none.
pub fn utm_from_params(mut param: impl FnMut(u32) -> Option<String>) -> Option<Utm> {
    let mut utm = Utm::default();
    let mut any = false;
    let mut i = 0;
    while let (Some(key), Some(value)) = (param(i), param(i + 1)) {
        i += 2;
        let slot = match key.as_str() {
            "utm_source" => &mut utm.source,
            "utm_medium" => &mut utm.medium,
            "utm_campaign" => &mut utm.campaign,
            "utm_term" => &mut utm.term,
            "utm_content" => &mut utm.content,
            _ => continue,
        };
        let value = value.trim();
        if slot.is_none() && !value.is_empty() {
            *slot = Some(value.to_owned());
            any = true;
        }
    }
    any.then_some(utm)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `utm_from_params` of these `(name, value)` pairs.
    fn params(pairs: &[(&str, &str)]) -> Option<Utm> {
        let flat: Vec<&str> = pairs.iter().flat_map(|(k, v)| [*k, *v]).collect();
        utm_from_params(|i| flat.get(i as usize).map(|s| s.to_string()))
    }

    #[test]
    fn reads_all_five_parameters() {
        let utm = params(&[
            ("utm_source", "news"),
            ("utm_medium", "email"),
            ("utm_campaign", "spring sale"),
            ("utm_term", "shoes"),
            ("utm_content", "top"),
        ])
        .expect("utm");
        assert_eq!(utm.source.as_deref(), Some("news"));
        assert_eq!(utm.medium.as_deref(), Some("email"));
        assert_eq!(utm.campaign.as_deref(), Some("spring sale"));
        assert_eq!(utm.term.as_deref(), Some("shoes"));
        assert_eq!(utm.content.as_deref(), Some("top"));
    }

    #[test]
    fn no_campaign_parameters_is_none() {
        assert_eq!(params(&[]), None);
        assert_eq!(params(&[("id", "P1"), ("q", "red")]), None);
        assert_eq!(params(&[("utm_source", ""), ("utm_medium", " ")]), None);
    }

    #[test]
    fn the_first_non_blank_value_wins_trimmed() {
        let utm = params(&[
            ("utm_source", " \t"),
            ("utm_source", " café "),
            ("utm_source", "other"),
            ("x", "1"),
            ("utm_medium", ""),
        ])
        .expect("utm");
        assert_eq!(utm.source.as_deref(), Some("café"));
        assert_eq!(utm.medium, None);
    }
}
