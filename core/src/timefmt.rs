//! RFC 3339 timestamps in UTC, written without a date-time library.

/// The proleptic Gregorian date `(year, month, day)` `days` after 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
#[must_use]
pub fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + u64::from(month <= 2), month, day)
}

/// `2026-11-22T01:02:03Z`: whole seconds, as Kubernetes' `metav1.Time` writes them.
#[must_use]
pub fn rfc3339_seconds(millis: u64) -> String {
    let (date, time) = parts(millis);
    format!("{date}T{time}Z")
}

/// `2026-11-22T01:02:03.123000000Z`: nine fraction digits, as container runtimes write them.
#[must_use]
pub fn rfc3339_nanos(millis: u64) -> String {
    let (date, time) = parts(millis);
    format!("{date}T{time}.{:03}000000Z", millis % 1000)
}

fn parts(millis: u64) -> (String, String) {
    let secs = millis / 1000;
    let (year, month, day) = civil_from_days(secs / 86_400);
    let rem = secs % 86_400;
    (
        format!("{year:04}-{month:02}-{day:02}"),
        format!("{:02}:{:02}:{:02}", rem / 3600, rem / 60 % 60, rem % 60),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        assert_eq!(rfc3339_seconds(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_seconds(1_714_564_800_999), "2024-05-01T12:00:00Z");
        assert_eq!(rfc3339_seconds(1_709_208_000_000), "2024-02-29T12:00:00Z");
        assert_eq!(
            rfc3339_nanos(1_475_713_029_669),
            "2016-10-06T00:17:09.669000000Z"
        );
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
