//! Numbers and times as people read them.

/// A wait in microseconds, in the unit that reads best (`850 ms`, `3.0 s`, `2.5 min`, `4.0 h`).
pub fn duration_micros(micros: i64) -> String {
    let micros = micros.max(0) as f64;
    if micros < 1_000_000.0 {
        format!("{:.0} ms", micros / 1_000.0)
    } else if micros < 120_000_000.0 {
        format!("{:.1} s", micros / 1_000_000.0)
    } else if micros < 7_200_000_000.0 {
        format!("{:.1} min", micros / 60_000_000.0)
    } else {
        format!("{:.1} h", micros / 3_600_000_000.0)
    }
}

/// A span of time in whole units, for "in 3 days" and "5 min ago".
pub fn span(micros: i64) -> String {
    let seconds = micros.unsigned_abs() / 1_000_000;
    let (count, unit) = match seconds {
        0..60 => (seconds, "s"),
        60..7_200 => (seconds / 60, "min"),
        7_200..172_800 => (seconds / 3_600, "h"),
        _ => (seconds / 86_400, "days"),
    };
    if unit == "days" && count == 1 {
        "1 day".to_string()
    } else {
        format!("{count} {unit}")
    }
}

/// How long ago `then` was, seen at `now`.
pub fn ago(then: i64, now: i64) -> String {
    if then > now {
        return "just now".to_string();
    }
    format!("{} ago", span(now - then))
}

/// How long until `then`, seen at `now`; "expired … ago" once it has passed.
pub fn left(then: i64, now: i64) -> String {
    if then <= now {
        format!("expired {} ago", span(now - then))
    } else {
        format!("in {}", span(then - now))
    }
}

/// A time in UTC to the minute (`2026-11-30 01:52 UTC`).
pub fn utc(micros: i64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| "?".to_string())
}

/// A size in bytes, in decimal units as PyPI shows them (`12.3 kB`).
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["kB", "MB", "GB", "TB"];
    if bytes < 1_000 {
        return format!("{bytes} bytes");
    }
    let mut value = bytes as f64 / 1_000.0;
    let mut unit = 0;
    while value >= 1_000.0 && unit < UNITS.len() - 1 {
        value /= 1_000.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readable() {
        assert_eq!(duration_micros(850_000), "850 ms");
        assert_eq!(duration_micros(3_000_000), "3.0 s");
        assert_eq!(duration_micros(150_000_000), "2.5 min");
        assert_eq!(size(999), "999 bytes");
        assert_eq!(size(12_345), "12.3 kB");
        assert_eq!(size(5_000_000), "5.0 MB");
        assert_eq!(ago(0, 300_000_000), "5 min ago");
        assert_eq!(left(86_400_000_000 * 3, 0), "in 3 days");
        assert_eq!(left(0, 7_200_000_000), "expired 2 h ago");
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
    }
}
