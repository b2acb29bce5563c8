//! A learner's activity per day and over a period against the one before,
//! each in ONE aggregation command.
//!
//! The pipeline runs on `users` like the statistics (`stats.rs`): an
//! indexed `$match` on the learner's `_id`, then a plain equality `$lookup`
//! of `activity` by `user_id` (index `user_at`), trimmed to the range with
//! `$filter`, and grouped on the server into 15-minute UTC buckets. Every
//! offset of the tz database is a multiple of 15 minutes, so each bucket
//! lies within one calendar day in any zone: Rust maps buckets to the
//! learner's days with the same tz database (`chrono-tz`) as the streaks,
//! daylight-saving changes included, and a zone name the server's own tz
//! database would not know cannot fail the command. What comes back is at
//! most 96 buckets per active day of one learner, never anything that grows
//! with the number of users. An unknown learner is no document at all.

use std::collections::{BTreeMap, BTreeSet};

use bson::{Document, doc, oid::ObjectId};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use chrono_tz::Tz;
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};

use super::zone;
use crate::{
    db::{Db, names},
    error::{ApiError, ApiResult},
};

/// Longest range of `activitySeries` and `periodStats`: a leap year.
pub const MAX_RANGE_DAYS: i64 = 366;

/// Checks a `[from, to)` range: non-empty and at most 366 days.
pub fn check_range(from: DateTime<Utc>, to: DateTime<Utc>) -> ApiResult<()> {
    if from >= to {
        return Err(ApiError::bad_input("`from` must be before `to`"));
    }
    if to - from > Duration::days(MAX_RANGE_DAYS) {
        return Err(ApiError::bad_input(format!(
            "the range may span at most {MAX_RANGE_DAYS} days"
        )));
    }
    Ok(())
}

/// One 15-minute bucket of activity as the pipeline returns it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Bucket {
    /// Start of the bucket; `None` for the placeholder of a learner with
    /// no activity in the range.
    pub start: Option<bson::DateTime>,
    /// Whether the bucket's entries are at or after the split instant.
    #[serde(default)]
    pub current: bool,
    #[serde(default)]
    pub time: i64,
    #[serde(default)]
    pub events: i64,
    #[serde(default)]
    pub completions: i64,
    #[serde(default)]
    pub score_sum: f64,
    #[serde(default)]
    pub score_count: i64,
    #[serde(default)]
    pub time_zone: Option<String>,
}

/// The single pipeline, run on `users`: the learner's activity in
/// [start, end) in 15-minute buckets, each flagged by whether it is at or
/// after `split`.
pub fn pipeline(
    user_id: ObjectId,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    split: DateTime<Utc>,
) -> Vec<Document> {
    let (start, end, split) = (
        bson::DateTime::from_chrono(start),
        bson::DateTime::from_chrono(end),
        bson::DateTime::from_chrono(split),
    );
    vec![
        doc! { "$match": { "_id": user_id } },
        doc! { "$project": { "_id": 1, "time_zone": 1 } },
        doc! { "$lookup": {
            "from": names::ACTIVITY, "localField": "_id", "foreignField": "user_id", "as": "a",
        } },
        doc! { "$project": {
            "time_zone": 1,
            "a": { "$filter": { "input": "$a", "as": "e", "cond": { "$and": [
                { "$gte": ["$$e.at", start] },
                { "$lt": ["$$e.at", end] },
            ] } } },
        } },
        // Kept when empty, so that a learner without activity still
        // answers (and only an unknown one answers nothing).
        doc! { "$unwind": { "path": "$a", "preserveNullAndEmptyArrays": true } },
        doc! { "$group": {
            "_id": {
                "start": { "$cond": [
                    { "$ifNull": ["$a.at", false] },
                    { "$dateTrunc": { "date": "$a.at", "unit": "minute", "binSize": 15 } },
                    null,
                ] },
                "current": { "$gte": ["$a.at", split] },
            },
            "time": { "$sum": "$a.time_spent_seconds" },
            "events": { "$sum": { "$cond": [{ "$ifNull": ["$a.at", false] }, 1, 0] } },
            "completions": { "$sum": { "$cond": [{ "$eq": ["$a.kind", "completed"] }, 1, 0] } },
            "score_sum": { "$sum": "$a.score" },
            "score_count": { "$sum": { "$cond": [{ "$isNumber": "$a.score" }, 1, 0] } },
            "time_zone": { "$first": "$time_zone" },
        } },
        doc! { "$project": {
            "_id": 0,
            "start": "$_id.start",
            "current": "$_id.current",
            "time": 1, "events": 1, "completions": 1, "score_sum": 1, "score_count": 1,
            "time_zone": 1,
        } },
    ]
}

/// The buckets of a learner's activity in [start, end) and the learner's
/// zone: exactly one database command. `None` for an unknown learner.
pub async fn buckets(
    db: &Db,
    user_id: ObjectId,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    split: DateTime<Utc>,
) -> ApiResult<Option<(Tz, Vec<Bucket>)>> {
    let cursor = db
        .run(
            db.raw(names::USERS)
                .aggregate(pipeline(user_id, start, end, split))
                .max_time(db.op_timeout)
                .with_type::<Bucket>(),
        )
        .await?;
    let rows: Vec<Bucket> = db.run(cursor.try_collect()).await?;
    if rows.is_empty() {
        return Ok(None);
    }
    let tz = zone::stored(
        rows.iter()
            .find_map(|b| b.time_zone.as_deref())
            .unwrap_or(zone::DEFAULT_ZONE),
    );
    Ok(Some((tz, rows)))
}

/// One calendar day of activity in the learner's zone.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Day {
    pub date: NaiveDate,
    pub time_spent_seconds: i64,
    pub events: i64,
    pub completions: i64,
}

/// One entry per day in [from, to) in `tz`, days without activity as zeros.
pub fn series(tz: Tz, buckets: &[Bucket], from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Day> {
    let mut days: BTreeMap<NaiveDate, Day> = zone::days_between(from, to, tz)
        .into_iter()
        .map(|date| {
            (
                date,
                Day {
                    date,
                    ..Day::default()
                },
            )
        })
        .collect();
    for b in buckets {
        let Some(start) = b.start else { continue };
        if let Some(day) = days.get_mut(&zone::local_date(start.to_chrono(), tz)) {
            day.time_spent_seconds += b.time;
            day.events += b.events;
            day.completions += b.completions;
        }
    }
    days.into_values().collect()
}

/// A learner's figures over one range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Period {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub time_spent_seconds: i64,
    pub modules_completed: i64,
    pub active_days: i64,
    pub average_score: Option<f64>,
}

/// Folds the buckets of one side of the split into a period.
pub fn period(
    tz: Tz,
    buckets: &[Bucket],
    current: bool,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Period {
    let (mut time, mut completed, mut score_sum, mut score_count) = (0, 0, 0.0, 0);
    let mut days = BTreeSet::new();
    for b in buckets.iter().filter(|b| b.current == current) {
        let Some(start) = b.start else { continue };
        if b.events > 0 {
            days.insert(zone::local_date(start.to_chrono(), tz));
        }
        time += b.time;
        completed += b.completions;
        score_sum += b.score_sum;
        score_count += b.score_count;
    }
    Period {
        from,
        to,
        time_spent_seconds: time,
        modules_completed: completed,
        active_days: days.len() as i64,
        average_score: (score_count > 0).then(|| score_sum / score_count as f64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn bucket(start: &str, current: bool, time: i64, completions: i64) -> Bucket {
        Bucket {
            start: Some(bson::DateTime::from_chrono(utc(start))),
            current,
            time,
            events: 1,
            completions,
            ..Bucket::default()
        }
    }

    #[test]
    fn ranges_must_be_ordered_and_at_most_366_days() {
        let from = utc("2026-01-01T00:00:00Z");
        assert!(check_range(from, from + Duration::days(366)).is_ok());
        for to in [from, from - Duration::days(1), from + Duration::days(367)] {
            assert_eq!(
                check_range(from, to).unwrap_err().code().as_str(),
                "BAD_USER_INPUT"
            );
        }
    }

    #[test]
    fn a_series_has_every_day_of_the_range_in_the_learner_s_zone() {
        let kolkata = chrono_tz::Asia::Kolkata;
        // The 21st in Kolkata runs from 20th 18:30Z to 21st 18:30Z.
        let from = utc("2026-11-19T18:30:00Z");
        let to = utc("2026-11-22T18:30:00Z");
        let buckets = [
            bucket("2026-11-20T18:30:00Z", true, 10, 0),
            bucket("2026-11-21T18:15:00Z", true, 5, 1),
            Bucket::default(),
        ];
        let days = series(kolkata, &buckets, from, to);
        let dates: Vec<String> = days.iter().map(|d| d.date.to_string()).collect();
        assert_eq!(dates, ["2026-11-20", "2026-11-21", "2026-11-22"]);
        assert_eq!(days[0].events, 0);
        assert_eq!(
            (
                days[1].time_spent_seconds,
                days[1].events,
                days[1].completions
            ),
            (15, 2, 1)
        );
        assert_eq!(
            days[2],
            Day {
                date: days[2].date,
                ..Day::default()
            }
        );
    }

    #[test]
    fn a_period_counts_its_own_side_of_the_split() {
        let la = chrono_tz::America::Los_Angeles;
        let mut scored = bucket("2026-11-21T07:45:00Z", true, 30, 1);
        scored.score_sum = 150.0;
        scored.score_count = 2;
        let buckets = [
            scored,
            // The same LA day (the 20th), another bucket: one active day.
            bucket("2026-11-20T20:00:00Z", true, 20, 0),
            bucket("2026-11-13T20:00:00Z", false, 7, 0),
        ];
        let (from, to) = (utc("2026-11-20T08:00:00Z"), utc("2026-11-27T08:00:00Z"));
        let current = period(la, &buckets, true, from, to);
        assert_eq!(
            (
                current.time_spent_seconds,
                current.modules_completed,
                current.active_days
            ),
            (50, 1, 1)
        );
        assert_eq!(current.average_score, Some(75.0));
        let previous = period(la, &buckets, false, from - (to - from), from);
        assert_eq!((previous.time_spent_seconds, previous.active_days), (7, 1));
        assert_eq!(previous.average_score, None);
    }
}
