//! Human output in Nomad's shapes: aligned `key = value` blocks, column tables, timestamps,
//! short IDs; and `-json` output of the API's own messages.

use std::time::{Duration, UNIX_EPOCH};

/// The first 8 characters of an ID, as Nomad shows them.
pub fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

/// An RFC 3339 timestamp (UTC, seconds) for Unix milliseconds; `<none>` for 0.
pub fn time(unix_ms: i64) -> String {
    if unix_ms <= 0 {
        return "<none>".into();
    }
    let t = UNIX_EPOCH + Duration::from_millis(unix_ms as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// A size as Nomad shows it: `0 B`, `512 KiB`, `3.4 MiB`, `1.2 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if v >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0} {}", UNITS[unit])
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// How long ago, like `5s ago`, `3m2s ago`.
pub fn ago(unix_ms: i64, now_ms: i64) -> String {
    if unix_ms <= 0 {
        return "<none>".into();
    }
    let d = Duration::from_millis(now_ms.saturating_sub(unix_ms).max(0) as u64 / 1000 * 1000);
    format!("{} ago", yurt_types::duration::format(d))
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `text` and spaces up to `width` characters (by hand: `format!`'s width stops at 65,535).
fn padded(out: &mut String, text: &str, width: usize) {
    out.push_str(text);
    let n = width.saturating_sub(text.chars().count());
    out.extend(std::iter::repeat_n(' ', n));
}

/// `Key = value` lines with the `=` aligned.
pub fn kv(rows: &[(&str, String)]) -> String {
    let width = rows
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (k, v) in rows {
        padded(&mut out, k, width);
        out.push_str(" = ");
        out.push_str(v);
        out.push('\n');
    }
    out
}

/// Columns separated by two spaces, each as wide as its widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut s = String::new();
        for (i, c) in cells.into_iter().enumerate() {
            if i == last {
                s.push_str(c);
            } else {
                padded(&mut s, c, widths.get(i).copied().unwrap_or(0));
                s.push_str("  ");
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

/// Prints a message (proto, with serde) as indented JSON.
pub fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}")) + "\n"
}

pub fn or_none(s: &str) -> String {
    if s.is_empty() {
        "<none>".into()
    } else {
        s.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_as_nomad_shows_them() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(512 * 1024), "512 KiB");
        assert_eq!(bytes(3 * 1024 * 1024 + 400 * 1024), "3.4 MiB");
        assert_eq!(bytes(32 << 20), "32 MiB");
        assert_eq!(bytes(5 << 40), "5 TiB");
    }

    #[test]
    fn very_long_cells_and_keys_do_not_panic_and_stay_aligned() {
        let long = "x".repeat(70_000);
        let t = table(&["ID", "Status"], &[vec![long.clone(), "running".into()]]);
        assert!(t.starts_with("ID"), "{}", &t[..20]);
        assert!(t.ends_with(&format!("{long}  running\n")));
        let t = table(&["ID", "Status"], &[vec!["café".into(), "dead".into()]]);
        assert_eq!(t, "ID    Status\ncafé  dead\n");
        assert_eq!(
            kv(&[("A", "1".into()), ("Bcd", "2".into())]),
            "A   = 1\nBcd = 2\n"
        );
    }

    #[test]
    fn tables_and_kv_align() {
        let t = table(
            &["ID", "Status"],
            &[
                vec!["a".into(), "running".into()],
                vec!["long-id".into(), "x".into()],
            ],
        );
        assert_eq!(t, "ID       Status\na        running\nlong-id  x\n");
        assert_eq!(
            kv(&[("ID", "1".into()), ("Name", "w".into())]),
            "ID   = 1\nName = w\n"
        );
        assert_eq!(short("0123456789"), "01234567");
        assert_eq!(time(0), "<none>");
        assert_eq!(time(1_000), "1970-01-01T00:00:01Z");
        assert_eq!(ago(1_000, 66_000), "1m5s ago");
    }
}
