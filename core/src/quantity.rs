//! Kubernetes quantities (`resource.Quantity`) as the custom metrics API carries values.
//!
//! The HPA reads every value with `MilliValue()`, which rounds up to whole thousandths, so a
//! value is first rounded up to milli units and then written in the canonical decimal form Go
//! emits: trailing zeros moved into a suffix whose exponent is a multiple of 3 (`1500m`, `2`,
//! `1k`, `20666m`). See `docs/reference/custom-metrics-api.md` §4.

/// Why a value cannot be a quantity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// NaN or an infinity: never sent to an HPA.
    #[error("value is not finite")]
    NotFinite,
    /// Beyond what an int64 of milli units holds.
    #[error("value is out of the quantity range")]
    OutOfRange,
}

/// Rounds `value` up to milli units, as the HPA's `MilliValue()` does.
pub fn to_milli(value: f64) -> Result<i64, Error> {
    if !value.is_finite() {
        return Err(Error::NotFinite);
    }
    // The product is rounded to the nearest double first, so a value like 0.1 (stored as
    // 0.1000000000000000055…) gives exactly 100 rather than 101.
    let milli = (value * 1000.0).ceil();
    if milli.abs() >= 9.2e18 {
        return Err(Error::OutOfRange);
    }
    Ok(milli as i64)
}

/// The canonical quantity string of a value in milli units.
#[must_use]
pub fn format_milli(milli: i64) -> String {
    if milli == 0 {
        return "0".to_owned();
    }
    let mut mantissa = i128::from(milli);
    let mut exponent: i32 = -3;
    while mantissa % 10 == 0 {
        mantissa /= 10;
        exponent += 1;
    }
    // Lower the exponent to a multiple of 3 (Go's truncated remainder), scaling the mantissa.
    let remainder = exponent % 3;
    let adjust = if remainder < 0 {
        remainder + 3
    } else {
        remainder
    };
    mantissa *= 10i128.pow(adjust as u32);
    exponent -= adjust;
    let suffix = match exponent {
        -3 => "m",
        0 => "",
        3 => "k",
        6 => "M",
        9 => "G",
        12 => "T",
        15 => "P",
        _ => "E",
    };
    if exponent > 18 {
        // Unreachable for an i64 of milli units (at most ~9.2e15); kept total for safety.
        return format!("{milli}m");
    }
    format!("{mantissa}{suffix}")
}

/// The canonical quantity string of `value`, rounded up to milli units.
pub fn format(value: f64) -> Result<String, Error> {
    to_milli(value).map(format_milli)
}

/// A quantity's value in milli units, rounded up as `MilliValue()` does: a decimal number
/// with an optional decimal SI suffix (`1500m`, `2`, `1.5`, `20k`, `3M`) — the forms a
/// custom metrics API answers with. Binary suffixes (`Ki`) and exponents are not read: `None`.
#[must_use]
pub fn parse_milli(text: &str) -> Option<i64> {
    let digits_end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(digits_end);
    let exponent = match suffix {
        "m" => -3,
        "" => 0,
        "k" => 3,
        "M" => 6,
        "G" => 9,
        "T" => 12,
        "P" => 15,
        "E" => 18,
        _ => return None,
    };
    if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
        return None;
    }
    let value: f64 = number.parse().ok()?;
    to_milli(value * 10f64.powi(exponent)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_parse_back_to_milli_units() {
        for (text, milli) in [
            ("1500m", 1500),
            ("2", 2000),
            ("1.5", 1500),
            ("20k", 20_000_000),
            ("0", 0),
            ("-250m", -250),
            ("1.0005", 1001),
        ] {
            assert_eq!(parse_milli(text), Some(milli), "{text}");
        }
        for bad in ["", "m", "1Ki", "1e3", "x", "1.", ".5"] {
            assert_eq!(parse_milli(bad), None, "{bad}");
        }
        for milli in [1, 999, 1000, 20_666, 1_000_000, 123_456_789] {
            assert_eq!(parse_milli(&format_milli(milli)), Some(milli));
        }
    }

    #[test]
    fn canonical_forms_of_the_reference_table() {
        let table = [
            (0, "0"),
            (1, "1m"),
            (500, "500m"),
            (1500, "1500m"),
            (2000, "2"),
            (6667, "6667m"),
            (15000, "15"),
            (20000, "20"),
            (20666, "20666m"),
            (100_000, "100"),
            (1_000_000, "1k"),
            (1_500_000, "1500"),
            (2_000_000, "2k"),
            (-1500, "-1500m"),
            (-2000, "-2"),
            (1_000_000_000, "1M"),
            (i64::MAX, "9223372036854775807m"),
        ];
        for (milli, want) in table {
            assert_eq!(format_milli(milli), want, "{milli}");
        }
    }

    #[test]
    fn values_round_up_to_milli() {
        let cases = [
            (1.5, "1500m"),
            (0.1, "100m"),
            (0.0001, "1m"),
            (32.0, "32"),
            (1.23456, "1235m"),
            (-0.0004, "0"),
        ];
        for (value, want) in cases {
            assert_eq!(format(value).unwrap(), want, "{value}");
        }
        assert_eq!(format(f64::NAN), Err(Error::NotFinite));
        assert_eq!(format(f64::INFINITY), Err(Error::NotFinite));
        assert_eq!(format(1e20), Err(Error::OutOfRange));
    }
}
