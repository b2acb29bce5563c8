//! Learners' time zones: IANA names checked against the tz database, and
//! the calendar day of an instant in a zone (daylight-saving changes
//! included), which days, streaks and activity series are counted in.

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

use crate::error::{ApiError, ApiResult};

/// The zone of a user who never chose one.
pub const DEFAULT_ZONE: &str = "UTC";

/// Parses an IANA zone name (`Europe/Paris`, `UTC`); anything the tz
/// database does not know is BAD_USER_INPUT.
pub fn parse(name: &str) -> ApiResult<Tz> {
    if name.len() > 64 {
        return Err(ApiError::bad_input("`timeZone` is not an IANA time zone"));
    }
    name.parse::<Tz>().map_err(|_| {
        ApiError::bad_input(format!(
            "`timeZone` must be an IANA time zone name such as \"Europe/Paris\", not {name:?}"
        ))
    })
}

/// The zone stored for a user; a name the tz database no longer knows
/// (written by another tool) counts as UTC rather than failing reads.
pub fn stored(name: &str) -> Tz {
    name.parse().unwrap_or(Tz::UTC)
}

/// The calendar day of `at` in `zone`.
pub fn local_date(at: DateTime<Utc>, zone: Tz) -> NaiveDate {
    at.with_timezone(&zone).date_naive()
}

/// The instant a calendar day starts in `zone`. A day whose midnight is
/// skipped by a daylight-saving change starts at the first instant that
/// exists on it.
pub fn start_of(day: NaiveDate, zone: Tz) -> DateTime<Utc> {
    let mut time = day.and_hms_opt(0, 0, 0).expect("midnight exists");
    // Transitions move clocks by at most a few hours; step until one exists.
    for _ in 0..48 {
        if let Some(t) = zone.from_local_datetime(&time).earliest() {
            return t.with_timezone(&Utc);
        }
        time += Duration::minutes(30);
    }
    Utc.from_utc_datetime(&day.and_hms_opt(0, 0, 0).expect("midnight exists"))
}

/// The calendar days (in `zone`) that the instants of [from, to) fall on,
/// in order.
pub fn days_between(from: DateTime<Utc>, to: DateTime<Utc>, zone: Tz) -> Vec<NaiveDate> {
    if from >= to {
        return Vec::new();
    }
    let last = local_date(to - Duration::milliseconds(1), zone);
    let mut day = local_date(from, zone);
    let mut out = Vec::new();
    while day <= last {
        out.push(day);
        day = day.succ_opt().expect("dates stay in range");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn iana_names_parse_and_others_are_bad_input() {
        assert!(parse("Europe/Paris").is_ok());
        assert!(parse("UTC").is_ok());
        assert!(parse("Asia/Kolkata").is_ok());
        for bad in [
            "Mars/Olympus",
            "",
            "utc+2",
            "Europe/Paris; drop",
            &"A".repeat(200),
        ] {
            let err = parse(bad).unwrap_err();
            assert_eq!(err.code().as_str(), "BAD_USER_INPUT", "{bad}");
        }
        assert_eq!(stored("Not/AZone"), Tz::UTC);
    }

    #[test]
    fn midnight_falls_on_different_days_on_both_sides_of_utc() {
        // 2026-11-21T07:30Z is still the 20th in Los Angeles (UTC-8),
        // already the 21st in Kolkata (UTC+5:30) and Auckland (UTC+13).
        let at = utc("2026-11-21T07:30:00Z");
        assert_eq!(
            local_date(at, chrono_tz::America::Los_Angeles),
            d("2026-11-20")
        );
        assert_eq!(local_date(at, chrono_tz::Asia::Kolkata), d("2026-11-21"));
        // 11:00Z is the next day in Auckland already.
        let late = utc("2026-11-21T11:00:00Z");
        assert_eq!(
            local_date(late, chrono_tz::Pacific::Auckland),
            d("2026-11-22")
        );
        // Kolkata's day starts at 18:30Z the day before.
        assert_eq!(
            start_of(d("2026-11-21"), chrono_tz::Asia::Kolkata),
            utc("2026-11-20T18:30:00Z")
        );
    }

    #[test]
    fn days_follow_daylight_saving_changes() {
        let la = chrono_tz::America::Los_Angeles;
        // 2026-03-08: clocks go 02:00 → 03:00 in Los Angeles; the day is 23 h.
        assert_eq!(start_of(d("2026-03-08"), la), utc("2026-03-08T08:00:00Z"));
        assert_eq!(start_of(d("2026-03-09"), la), utc("2026-03-09T07:00:00Z"));
        assert_eq!(local_date(utc("2026-03-09T06:59:59Z"), la), d("2026-03-08"));
        assert_eq!(local_date(utc("2026-03-09T07:00:00Z"), la), d("2026-03-09"));
        let days = days_between(
            start_of(d("2026-03-07"), la),
            start_of(d("2026-03-10"), la),
            la,
        );
        assert_eq!(days, [d("2026-03-07"), d("2026-03-08"), d("2026-03-09")]);
        // Auckland leaves summer time on 2026-04-05 (03:00 → 02:00): 25 h.
        let akl = chrono_tz::Pacific::Auckland;
        let (start, end) = (
            start_of(d("2026-04-05"), akl),
            start_of(d("2026-04-06"), akl),
        );
        assert_eq!((end - start).num_hours(), 25);
    }

    #[test]
    fn a_day_whose_midnight_is_skipped_starts_at_the_first_instant_it_has() {
        // Chile's spring change: 2026-09-06 starts at 01:00 local (UTC-3).
        let santiago = chrono_tz::America::Santiago;
        let start = start_of(d("2026-09-06"), santiago);
        assert_eq!(local_date(start, santiago), d("2026-09-06"));
        assert_eq!(
            local_date(start - Duration::seconds(1), santiago),
            d("2026-09-05")
        );
    }
}
