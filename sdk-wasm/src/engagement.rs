//! Engaged time and scroll depth of the current page. Pure; `autocapture.rs` feeds it the
//! browser's visibility, focus and scroll events.

/// Time is engaged while the page is visible and its window has focus.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Engagement {
    engaged_ms: f64,
    /// Since when the page has been engaged, if it is now.
    since: Option<f64>,
    /// Deepest point of the page seen, in percent of its height.
    max_scroll: u32,
}

impl Engagement {
    pub fn new(now: f64, active: bool) -> Engagement {
        Engagement {
            since: active.then_some(now),
            ..Engagement::default()
        }
    }

    /// The page became engaged or stopped being (visibility, focus).
    pub fn set_active(&mut self, active: bool, now: f64) {
        match (self.since, active) {
            (None, true) => self.since = Some(now),
            (Some(start), false) => {
                self.engaged_ms += (now - start).max(0.0);
                self.since = None;
            }
            _ => {}
        }
    }

    pub fn scrolled(&mut self, percent: u32) {
        self.max_scroll = self.max_scroll.max(percent.min(100));
    }

    /// Engaged milliseconds and deepest scroll so far, then starts counting afresh (the page may
    /// be hidden and shown again: each report holds only what came after the last).
    pub fn take(&mut self, now: f64) -> (i64, u32) {
        let running = self.since.map_or(0.0, |s| (now - s).max(0.0));
        let out = ((self.engaged_ms + running) as i64, self.max_scroll);
        self.engaged_ms = 0.0;
        self.max_scroll = 0;
        if self.since.is_some() {
            self.since = Some(now);
        }
        out
    }
}

/// How far down the page the viewport's bottom edge is, in percent.
pub fn scroll_percent(scroll_y: f64, viewport_height: f64, page_height: f64) -> u32 {
    if page_height <= 0.0 || viewport_height >= page_height {
        return 100;
    }
    (((scroll_y + viewport_height) / page_height) * 100.0).clamp(0.0, 100.0) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_engaged_time() {
        let mut e = Engagement::new(0.0, true);
        e.set_active(false, 1_000.0);
        e.set_active(false, 5_000.0);
        e.set_active(true, 9_000.0);
        assert_eq!(e.take(9_500.0).0, 1_500);
        // Counting starts afresh, and carries on while still engaged.
        assert_eq!(e.take(10_000.0).0, 500);
        e.set_active(false, 10_000.0);
        assert_eq!(e.take(20_000.0).0, 0);
    }

    #[test]
    fn keeps_the_deepest_scroll() {
        let mut e = Engagement::new(0.0, false);
        e.scrolled(40);
        e.scrolled(20);
        e.scrolled(400);
        assert_eq!(e.take(0.0), (0, 100));
        assert_eq!(e.take(0.0), (0, 0));
    }

    #[test]
    fn scroll_depth_of_the_viewport_bottom() {
        assert_eq!(scroll_percent(0.0, 500.0, 2000.0), 25);
        assert_eq!(scroll_percent(1500.0, 500.0, 2000.0), 100);
        assert_eq!(scroll_percent(0.0, 800.0, 600.0), 100, "short page");
        assert_eq!(scroll_percent(0.0, 0.0, 0.0), 100);
    }
}
