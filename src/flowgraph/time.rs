//! Wall-clock time as Unix nanoseconds, and RFC 3339 timestamps (a capture's `start_time`)
//! turned into them.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in ns since the Unix epoch (UTC).
pub fn now_unix_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses an RFC 3339 timestamp (`2024-05-01T12:00:00.250Z`, `…+02:00`) into Unix ns.
pub fn parse_rfc3339_ns(text: &str) -> Result<i64, String> {
    crate::iq::sidecar::check_rfc3339(text)?;
    let b = text.as_bytes();
    let num = |from: usize, n: usize| -> i64 {
        b[from..from + n]
            .iter()
            .fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0'))
    };
    let (year, month, day) = (num(0, 4), num(5, 2) as u32, num(8, 2) as u32);
    let (hour, minute, second) = (num(11, 2), num(14, 2), num(17, 2).min(59));
    let mut i = 19;
    let mut frac_ns = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let mut scale = 100_000_000i64;
        while let Some(d) = b.get(i).filter(|d| d.is_ascii_digit()) {
            frac_ns += i64::from(d - b'0') * scale;
            scale /= 10;
            i += 1;
        }
    }
    let offset_s = match b.get(i) {
        Some(b'Z' | b'z') => 0,
        Some(sign @ (b'+' | b'-')) => {
            let s = (num(i + 1, 2) * 60 + num(i + 4, 2)) * 60;
            if *sign == b'+' { s } else { -s }
        }
        _ => return Err(format!("'{text}' has no time zone (Z or ±hh:mm)")),
    };
    let secs =
        days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset_s;
    secs.checked_mul(1_000_000_000)
        .and_then(|s| s.checked_add(frac_ns))
        .ok_or_else(|| format!("'{text}' is out of range"))
}

/// Formats Unix ns as RFC 3339 UTC with nanoseconds, `2024-05-01T12:00:00.250000000Z`.
pub fn format_rfc3339(unix_ns: i64) -> String {
    let secs = unix_ns.div_euclid(1_000_000_000);
    let nanos = unix_ns.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Inverse of days_from_civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips_through_unix_ns() {
        assert_eq!(parse_rfc3339_ns("1970-01-01T00:00:00Z"), Ok(0));
        let t = parse_rfc3339_ns("2024-05-01T12:00:00.250Z").expect("valid");
        // 2024-05-01 is day 19844 since the epoch.
        assert_eq!(
            t,
            (19_844 * 86_400 + 12 * 3600) * 1_000_000_000 + 250_000_000
        );
        assert_eq!(format_rfc3339(t), "2024-05-01T12:00:00.250000000Z");
        assert_eq!(
            parse_rfc3339_ns("2024-05-01T14:00:00.250+02:00"),
            Ok(t),
            "offsets are applied"
        );
        assert_eq!(format_rfc3339(-1), "1969-12-31T23:59:59.999999999Z");
        assert!(parse_rfc3339_ns("2024-13-01T00:00:00Z").is_err());
    }
}
