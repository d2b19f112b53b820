//! The upload-to-signed latency chart of the trust page: bars for the minutes of the last hour,
//! drawn as inline SVG on the server (no script, and nothing from package metadata in it).

use serde::Serialize;

use crate::view::Signing;

/// Minutes the chart covers, one bar each.
pub const MINUTES: i64 = 60;
const WIDTH: f64 = 600.0;
const HEIGHT: f64 = 140.0;
const MICROS_PER_MINUTE: i64 = 60_000_000;

/// The chart as the template draws it.
#[derive(Clone, Debug, Serialize)]
pub struct Chart {
    pub width: f64,
    pub height: f64,
    pub bars: Vec<Bar>,
    /// The latency the top of the chart stands for, as shown (`2.5 s`).
    pub top_label: String,
    pub changes: i64,
    /// The slowest change of the hour, as shown.
    pub worst: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Bar {
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
    /// What a pointer over the bar shows.
    pub title: String,
}

/// The chart of `signings` in the hour before `now`: each bar is the longest wait from a change
/// to its signature among the rounds that signed in that minute.
pub fn latency_chart(signings: &[Signing], now: i64) -> Chart {
    let start = now - MINUTES * MICROS_PER_MINUTE;
    let mut worst = [None::<i64>; MINUTES as usize];
    let mut counts = [0i64; MINUTES as usize];
    for signing in signings
        .iter()
        .filter(|s| s.signed > start && s.signed <= now)
    {
        let minute = ((signing.signed - start - 1) / MICROS_PER_MINUTE).clamp(0, MINUTES - 1);
        let slot = minute as usize;
        let latency = (signing.signed - signing.oldest_change).max(0);
        worst[slot] = Some(worst[slot].map_or(latency, |w| w.max(latency)));
        counts[slot] += signing.changes;
    }
    let highest = worst.iter().flatten().copied().max().unwrap_or(0);
    let top = nice_ceiling(highest.max(1_000));
    let slot_width = WIDTH / MINUTES as f64;
    let bars = worst
        .iter()
        .zip(counts)
        .enumerate()
        .filter_map(|(minute, (latency, changes))| {
            let latency = (*latency)?;
            // A bar of a quick round still shows: at least one pixel high.
            let height = (latency as f64 / top as f64 * HEIGHT).max(1.0);
            let ago = MINUTES - minute as i64;
            Some(Bar {
                x: minute as f64 * slot_width + 1.0,
                y: HEIGHT - height,
                width: slot_width - 2.0,
                height,
                title: format!(
                    "{ago} min ago: {changes} change{} signed, the slowest after {}",
                    if changes == 1 { "" } else { "s" },
                    crate::format::duration_micros(latency)
                ),
            })
        })
        .collect();
    Chart {
        width: WIDTH,
        height: HEIGHT,
        bars,
        top_label: crate::format::duration_micros(top),
        changes: counts.iter().sum(),
        worst: (highest > 0 || worst.iter().any(Option::is_some))
            .then(|| crate::format::duration_micros(highest)),
    }
}

/// The smallest of 1, 2 and 5 times a power of ten (in microseconds) that is at least `micros`.
fn nice_ceiling(micros: i64) -> i64 {
    let mut power = 1i64;
    loop {
        for step in [1, 2, 5] {
            let candidate = step * power;
            if candidate >= micros {
                return candidate;
            }
        }
        power = power.saturating_mul(10);
        if power == i64::MAX {
            return i64::MAX;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_fall_in_their_minute_and_show_the_slowest() {
        let now = 10_000 * MICROS_PER_MINUTE;
        let signings = [
            Signing {
                signed: now - 30_000_000,
                oldest_change: now - 31_000_000,
                changes: 2,
            },
            Signing {
                signed: now - 20_000_000,
                oldest_change: now - 23_000_000,
                changes: 1,
            },
            Signing {
                signed: now - 59 * MICROS_PER_MINUTE - 1,
                oldest_change: now - 59 * MICROS_PER_MINUTE - 200_001,
                changes: 1,
            },
            // Older than an hour: left out.
            Signing {
                signed: now - 61 * MICROS_PER_MINUTE,
                oldest_change: now - 62 * MICROS_PER_MINUTE,
                changes: 9,
            },
        ];
        let chart = latency_chart(&signings, now);
        assert_eq!(chart.bars.len(), 2);
        assert_eq!(chart.changes, 4);
        let last = chart.bars.last().unwrap();
        assert!(
            last.title.starts_with("1 min ago: 3 changes"),
            "{}",
            last.title
        );
        assert!(last.title.ends_with("3.0 s"), "{}", last.title);
        assert_eq!(chart.top_label, "5.0 s");
        assert!(chart.bars[0].x < 20.0);
        assert!((last.height - HEIGHT * 3.0 / 5.0).abs() < 0.01);
    }

    #[test]
    fn an_idle_hour_has_no_bars() {
        let chart = latency_chart(&[], 1_000_000_000);
        assert!(chart.bars.is_empty());
        assert!(chart.worst.is_none());
    }

    #[test]
    fn ceilings() {
        assert_eq!(nice_ceiling(1_000), 1_000);
        assert_eq!(nice_ceiling(1_001), 2_000);
        assert_eq!(nice_ceiling(3_000_000), 5_000_000);
        assert_eq!(nice_ceiling(6_000_000), 10_000_000);
    }
}
