//! Go-style durations, as Nomad job files and output use them: `30s`, `5m`, `1h30m`, `250ms`.

use std::time::Duration;

/// Parses a duration such as `10s`, `1h30m` or `500ms`. A bare number is not accepted: the unit
/// must be written out, so `10` is never silently ten nanoseconds.
pub fn parse(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.chars().all(|c| c.is_ascii_digit()) && !t.is_empty() && t != "0" {
        return Err(format!("{t:?} has no unit (use e.g. \"{t}s\")"));
    }
    let d =
        humantime::parse_duration(t).map_err(|e| format!("{text:?} is not a duration ({e})"))?;
    // Go's (and so Nomad's) longest duration: a longer one would be cut short silently.
    let longest = Duration::from_nanos(i64::MAX as u64);
    if d > longest {
        return Err(format!(
            "{text:?} is longer than the longest duration, {}",
            format(longest)
        ));
    }
    Ok(d)
}

/// Formats like Go's `time.Duration.String()`: `10s`, `5m0s`, `1h30m0s`, `250ms`, `0s`.
pub fn format(d: Duration) -> String {
    let ms = d.as_millis() as u64;
    if ms == 0 {
        return "0s".to_string();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (h, m, s, frac) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    let secs = if frac == 0 {
        format!("{s}s")
    } else {
        format!("{s}.{}s", format!("{frac:03}").trim_end_matches('0'))
    };
    match (h, m) {
        (0, 0) => secs,
        (0, m) => format!("{m}m{secs}"),
        (h, m) => format!("{h}h{m}m{secs}"),
    }
}

/// [`format`] for a millisecond count, the unit of every `*_ms` proto field.
pub fn format_ms(ms: u64) -> String {
    format(Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_style() {
        assert_eq!(parse("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse("0").unwrap(), Duration::ZERO);
        assert!(parse("10").unwrap_err().contains("no unit"));
        assert!(parse("ten").is_err());
    }

    #[test]
    fn formats_go_style() {
        assert_eq!(format(Duration::from_secs(10)), "10s");
        assert_eq!(format(Duration::from_secs(300)), "5m0s");
        assert_eq!(format(Duration::from_secs(5400)), "1h30m0s");
        assert_eq!(format(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format(Duration::from_millis(250)), "250ms");
        assert_eq!(format(Duration::ZERO), "0s");
    }

    #[test]
    fn durations_beyond_go_s_longest_are_refused() {
        assert!(parse("2562047h").is_ok());
        let e = parse("9223372036854775807s").unwrap_err();
        assert_eq!(
            e,
            "\"9223372036854775807s\" is longer than the longest duration, 2562047h47m16.854s"
        );
    }
}
