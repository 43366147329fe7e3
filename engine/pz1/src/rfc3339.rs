//! RFC 3339 timestamps for event times, without a date library.
//!
//! An event's `updated_at` is 2026-01-01T00:00:00Z plus `e` seconds. The only
//! calendar work needed is days -> (year, month, day), done with Howard
//! Hinnant's `civil_from_days` (proleptic Gregorian, exact for every day).

use super::json::write_u64_padded;

/// 2026-01-01 as days since 1970-01-01.
const EPOCH_DAYS: u64 = 20_454;
const SECS_PER_DAY: u64 = 86_400;

/// (year, month 1-12, day 1-31) of the day `days` after 1970-01-01.
pub(super) fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Shift the epoch to 0000-03-01 so leap days fall at the end of a year.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March = 0
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Appends the RFC 3339 UTC time `e` seconds after 2026-01-01T00:00:00Z,
/// e.g. `2026-01-01T00:00:07Z` (always 20 bytes until year 9999).
pub(super) fn write_updated_at(out: &mut Vec<u8>, e: u64) {
    let (year, month, day) = civil_from_days(EPOCH_DAYS + e / SECS_PER_DAY);
    let sod = e % SECS_PER_DAY;
    write_u64_padded(out, year, 4);
    out.push(b'-');
    write_u64_padded(out, month, 2);
    out.push(b'-');
    write_u64_padded(out, day, 2);
    out.push(b'T');
    write_u64_padded(out, sod / 3600, 2);
    out.push(b':');
    write_u64_padded(out, sod / 60 % 60, 2);
    out.push(b':');
    write_u64_padded(out, sod % 60, 2);
    out.push(b'Z');
}

/// The RFC 3339 UTC time `e` seconds after 2026-01-01T00:00:00Z.
pub(super) fn updated_at(e: u64) -> String {
    let mut out = Vec::with_capacity(20);
    write_updated_at(&mut out, e);
    String::from_utf8(out).expect("ascii digits and separators")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_leap(y: u64) -> bool {
        y.is_multiple_of(4) && (!y.is_multiple_of(100) || y.is_multiple_of(400))
    }

    #[test]
    fn known_instants() {
        let day = SECS_PER_DAY;
        let cases = [
            (0, "2026-01-01T00:00:00Z"),
            (7, "2026-01-01T00:00:07Z"),
            (59, "2026-01-01T00:00:59Z"),
            (3_599, "2026-01-01T00:59:59Z"),
            (day - 1, "2026-01-01T23:59:59Z"),
            (day, "2026-01-02T00:00:00Z"),
            (31 * day - 1, "2026-01-31T23:59:59Z"),
            (31 * day, "2026-02-01T00:00:00Z"),
            (59 * day, "2026-03-01T00:00:00Z"), // 2026 is not a leap year
            (365 * day - 1, "2026-12-31T23:59:59Z"),
            (365 * day, "2027-01-01T00:00:00Z"),
            ((365 * 2 + 31 + 28) * day, "2028-02-29T00:00:00Z"),
            ((365 * 2 + 31 + 29) * day, "2028-03-01T00:00:00Z"),
            ((365 * 3 + 366) * day, "2030-01-01T00:00:00Z"),
        ];
        for (e, want) in cases {
            assert_eq!(updated_at(e), want, "e = {e}");
        }
    }

    #[test]
    fn civil_from_days_matches_a_day_by_day_walk() {
        // Walk every day from 1970 to 2500 (covers 2100, a non-leap century,
        // and 2400, a leap one) and compare.
        let (mut y, mut m, mut d) = (1970, 1, 1);
        for days in 0..194_000 {
            assert_eq!(civil_from_days(days), (y, m, d), "days = {days}");
            let len = match m {
                2 if is_leap(y) => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            d += 1;
            if d > len {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
        assert_eq!(civil_from_days(EPOCH_DAYS), (2026, 1, 1));
        assert!(y > 2500);
    }

    #[test]
    fn huge_offsets_do_not_panic() {
        let s = updated_at(u64::MAX);
        assert!(s.ends_with('Z') && s.len() > 20, "{s}");
    }
}
