//! A learner's statistics in ONE aggregation command.
//!
//! The pipeline runs on `users` and starts with an indexed `$match` on the
//! learner's `_id` (an unknown learner is simply no result). It then joins
//! with plain equality `$lookup`s (`localField`/`foreignField`), the form
//! that MongoDB and both SecantusDB builds serve from an index (sub-pipeline
//! and `$unionWith` forms scan on one build or the other):
//! - `progress` by `user_id` (index `user_module_unique`);
//! - `activity` by `user_id` (index `user_at`), keeping only `at`;
//! - the published catalogue as `{_id, category}` (uncorrelated: MongoDB
//!   runs it once per command; never `content`).
//!
//! The one small document it returns follows the learner's own data and
//! the catalogue, never the number of users; [`assemble`], a pure function,
//! joins progress to categories and computes every figure.

use std::collections::{BTreeMap, HashMap};

use bson::{Document, doc, oid::ObjectId};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};

use super::zone;
use crate::{
    db::{Db, names},
    error::{ApiError, ApiResult},
};

/// Per-category figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, async_graphql::SimpleObject)]
#[serde(rename_all = "camelCase")]
pub struct CategoryStats {
    pub category: String,
    pub modules_total: i64,
    pub modules_completed: i64,
    pub time_spent_seconds: i64,
    pub average_score: Option<f64>,
}

/// Every figure of `ProgressStats` (the GraphQL type wraps it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub modules_total: i64,
    pub modules_started: i64,
    pub modules_in_progress: i64,
    pub modules_completed: i64,
    pub completion_rate: f64,
    pub total_time_seconds: i64,
    pub average_score: Option<f64>,
    pub last_activity_at: Option<bson::DateTime>,
    pub current_streak_days: i64,
    #[serde(default)]
    pub longest_streak_days: i64,
    pub by_category: Vec<CategoryStats>,
}

/// One progress entry, trimmed to what the statistics read.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct ProgressLite {
    pub module_id: Option<ObjectId>,
    pub status: Option<String>,
    pub score: Option<f64>,
    #[serde(default)]
    pub time_spent_seconds: i64,
}

/// A published module and its category.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct CatalogueEntry {
    #[serde(rename = "_id")]
    pub id: ObjectId,
    #[serde(default)]
    pub category: String,
}

/// The one document the pipeline returns.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Raw {
    #[serde(default)]
    pub progress: Vec<ProgressLite>,
    #[serde(default)]
    pub activity_at: Vec<bson::DateTime>,
    #[serde(default)]
    pub catalogue: Vec<CatalogueEntry>,
    /// The learner's zone (absent in documents written by other tools).
    #[serde(default)]
    pub time_zone: Option<String>,
}

/// The single pipeline, run on `users`.
pub fn pipeline(user_id: ObjectId) -> Vec<Document> {
    vec![
        doc! { "$match": { "_id": user_id } },
        doc! { "$project": { "_id": 1, "time_zone": 1 } },
        doc! { "$lookup": {
            "from": names::PROGRESS, "localField": "_id", "foreignField": "user_id", "as": "progress",
        } },
        doc! { "$lookup": {
            "from": names::ACTIVITY, "localField": "_id", "foreignField": "user_id", "as": "activity",
        } },
        doc! { "$lookup": {
            "from": names::MODULES,
            "as": "catalogue",
            "pipeline": [
                { "$match": { "published": true } },
                { "$project": { "_id": 1, "category": 1 } },
            ],
        } },
        doc! { "$project": {
            "_id": 0,
            "progress": { "$map": { "input": "$progress", "as": "p", "in": {
                "module_id": "$$p.module_id",
                "status": "$$p.status",
                "score": "$$p.score",
                "time_spent_seconds": "$$p.time_spent_seconds",
            } } },
            "activity_at": { "$map": { "input": "$activity", "as": "a", "in": "$$a.at" } },
            "catalogue": 1,
            "time_zone": 1,
        } },
    ]
}

/// Runs the pipeline: exactly one database command. `None` when the user
/// does not exist.
pub async fn compute(db: &Db, user_id: ObjectId) -> ApiResult<Option<Stats>> {
    let cursor = db
        .run(
            db.raw(names::USERS)
                .aggregate(pipeline(user_id))
                .max_time(db.op_timeout)
                .with_type::<Raw>(),
        )
        .await?;
    let docs: Vec<Raw> = db.run(cursor.try_collect()).await?;
    Ok(docs.into_iter().next().map(|raw| assemble(raw, Utc::now())))
}

/// Combines the pipeline's document into the statistics, as of `now`;
/// days are counted in the learner's zone.
pub fn assemble(raw: Raw, now: DateTime<Utc>) -> Stats {
    let tz = zone::stored(raw.time_zone.as_deref().unwrap_or(zone::DEFAULT_ZONE));
    let today = zone::local_date(now, tz);
    #[derive(Default)]
    struct Acc {
        total: i64,
        in_progress: i64,
        completed: i64,
        time: i64,
        score_sum: f64,
        score_count: i64,
    }
    let mut categories: BTreeMap<String, Acc> = BTreeMap::new();
    let mut category_of: HashMap<ObjectId, String> = HashMap::new();
    for m in raw.catalogue {
        categories.entry(m.category.clone()).or_default().total += 1;
        category_of.insert(m.id, m.category);
    }
    // Only progress on published modules counts.
    for p in raw.progress {
        let Some(acc) = p
            .module_id
            .and_then(|id| category_of.get(&id))
            .and_then(|c| categories.get_mut(c))
        else {
            continue;
        };
        match p.status.as_deref() {
            Some("in_progress") => acc.in_progress += 1,
            Some("completed") => acc.completed += 1,
            _ => {}
        }
        acc.time += p.time_spent_seconds;
        if let Some(score) = p.score {
            acc.score_sum += score;
            acc.score_count += 1;
        }
    }
    let last_activity = raw.activity_at.iter().copied().max();
    let days: Vec<NaiveDate> = raw
        .activity_at
        .iter()
        .map(|at| zone::local_date(at.to_chrono(), tz))
        .collect();
    let mean = |sum: f64, n: i64| (n > 0).then(|| sum / n as f64);
    let (mut total, mut in_progress, mut completed, mut time, mut score_sum, mut score_count) =
        (0, 0, 0, 0, 0.0, 0);
    let by_category = categories
        .into_iter()
        .map(|(category, acc)| {
            total += acc.total;
            in_progress += acc.in_progress;
            completed += acc.completed;
            time += acc.time;
            score_sum += acc.score_sum;
            score_count += acc.score_count;
            CategoryStats {
                category,
                modules_total: acc.total,
                modules_completed: acc.completed,
                time_spent_seconds: acc.time,
                average_score: mean(acc.score_sum, acc.score_count),
            }
        })
        .collect();
    Stats {
        modules_total: total,
        modules_started: in_progress + completed,
        modules_in_progress: in_progress,
        modules_completed: completed,
        completion_rate: if total > 0 {
            completed as f64 / total as f64
        } else {
            0.0
        },
        total_time_seconds: time,
        average_score: mean(score_sum, score_count),
        last_activity_at: last_activity,
        longest_streak_days: longest_streak(days.clone()),
        current_streak_days: streak(days, today),
        by_category,
    }
}

/// The longest run of consecutive days in `days` (any order, repeats allowed).
pub fn longest_streak(mut days: Vec<NaiveDate>) -> i64 {
    days.sort_unstable();
    days.dedup();
    let (mut best, mut run) = (0, 0);
    let mut previous: Option<NaiveDate> = None;
    for day in days {
        run = match previous {
            Some(p) if p.succ_opt() == Some(day) => run + 1,
            _ => 1,
        };
        best = best.max(run);
        previous = Some(day);
    }
    best
}

/// Consecutive days with activity ending today or yesterday; 0 otherwise.
pub fn streak(mut days: Vec<NaiveDate>, today: NaiveDate) -> i64 {
    days.sort_unstable_by(|a, b| b.cmp(a));
    days.dedup();
    let Some(&newest) = days.first() else {
        return 0;
    };
    if newest != today && newest != today - Duration::days(1) {
        return 0;
    }
    let mut count = 0;
    let mut expected = newest;
    for day in days {
        if day == expected {
            count += 1;
            expected -= Duration::days(1);
        } else if day < expected {
            break;
        }
    }
    count
}

/// NOT_FOUND for an unknown learner.
pub fn unknown_user() -> ApiError {
    ApiError::NotFound("no such user".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn noon(s: &str) -> DateTime<Utc> {
        d(s).and_hms_opt(12, 0, 0).unwrap().and_utc()
    }

    #[test]
    fn the_longest_streak_is_the_longest_run_ever() {
        assert_eq!(longest_streak(vec![]), 0);
        assert_eq!(longest_streak(vec![d("2026-01-05")]), 1);
        let days = vec![
            d("2026-01-01"),
            d("2026-01-02"),
            d("2026-01-02"),
            d("2026-01-03"),
            d("2026-02-10"),
            d("2026-02-11"),
            d("2025-12-31"),
        ];
        assert_eq!(longest_streak(days), 4);
    }

    #[test]
    fn streaks_follow_the_learner_s_midnight() {
        // Activity at 07:30Z on two consecutive UTC days: in Los Angeles
        // (UTC-8) those are the 19th and 20th; at 06:00Z on the 21st it is
        // still the 20th there, so the streak is alive and 2 long, while
        // in UTC "today" is the 21st and the streak also counts 2.
        let raw = |zone: &str| Raw {
            activity_at: vec![
                bson::DateTime::parse_rfc3339_str("2026-11-19T07:30:00Z").unwrap(),
                bson::DateTime::parse_rfc3339_str("2026-11-20T07:30:00Z").unwrap(),
            ],
            time_zone: Some(zone.into()),
            ..Raw::default()
        };
        let now = DateTime::parse_from_rfc3339("2026-11-22T06:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        // Los Angeles: days 18th and 19th; today is the 21st: broken.
        assert_eq!(
            assemble(raw("America/Los_Angeles"), now).current_streak_days,
            0
        );
        // UTC: days 19th and 20th; today the 22nd: broken as well.
        assert_eq!(assemble(raw("UTC"), now).current_streak_days, 0);
        // Auckland (UTC+13): days 19th and 20th at 20:30; today is the 22nd
        // at 19:00: broken; at 2026-11-21T06:00Z it is the 21st 19:00 there.
        let earlier = DateTime::parse_from_rfc3339("2026-11-21T06:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let s = assemble(raw("Pacific/Auckland"), earlier);
        assert_eq!((s.current_streak_days, s.longest_streak_days), (2, 2));
        // The same instant in Los Angeles is the 20th 22:00: alive too.
        assert_eq!(
            assemble(raw("America/Los_Angeles"), earlier).current_streak_days,
            2
        );
        // In UTC it is the 21st: yesterday (20th) ends the run: alive.
        assert_eq!(assemble(raw("UTC"), earlier).current_streak_days, 2);
    }

    #[test]
    fn a_streak_ends_today_or_yesterday() {
        let today = d("2026-11-21");
        assert_eq!(streak(vec![], today), 0);
        assert_eq!(streak(vec![d("2026-11-21")], today), 1);
        assert_eq!(streak(vec![d("2026-11-20"), d("2026-11-19")], today), 2);
        assert_eq!(streak(vec![d("2026-11-19"), d("2026-11-18")], today), 0);
        assert_eq!(
            streak(
                vec![d("2026-11-21"), d("2026-11-20"), d("2026-11-18")],
                today
            ),
            2
        );
        assert_eq!(
            streak(
                vec![d("2026-11-21"), d("2026-11-21"), d("2026-11-20")],
                today
            ),
            2
        );
    }

    #[test]
    fn a_streak_crosses_month_and_year_ends() {
        let today = d("2027-01-01");
        assert_eq!(
            streak(
                vec![d("2027-01-01"), d("2026-12-31"), d("2026-12-30")],
                today
            ),
            3
        );
    }

    #[test]
    fn rows_combine_into_stats_sorted_by_category() {
        let (r1, r2, r3, g1) = (
            ObjectId::new(),
            ObjectId::new(),
            ObjectId::new(),
            ObjectId::new(),
        );
        let entry = |id, category: &str| CatalogueEntry {
            id,
            category: category.into(),
        };
        let progress = |id, status: &str, score, time| ProgressLite {
            module_id: Some(id),
            status: Some(status.into()),
            score,
            time_spent_seconds: time,
        };
        let raw = Raw {
            catalogue: vec![
                entry(r1, "rust"),
                entry(r2, "rust"),
                entry(r3, "rust"),
                entry(g1, "go"),
            ],
            progress: vec![
                progress(r1, "in_progress", Some(100.0), 60),
                progress(r2, "completed", Some(50.0), 40),
                // An unpublished (or deleted) module does not count.
                progress(ObjectId::new(), "completed", Some(1.0), 1000),
            ],
            activity_at: vec![
                bson::DateTime::from_millis(1_795_219_199_000), // 2026-11-20T23:59:59Z
                bson::DateTime::from_millis(1_795_219_201_000), // 2026-11-21T00:00:01Z
            ],
            time_zone: None,
        };
        let s = assemble(raw, noon("2026-11-21"));
        assert_eq!(s.modules_total, 4);
        assert_eq!(s.modules_started, 2);
        assert_eq!(s.modules_completed, 1);
        assert_eq!(s.completion_rate, 0.25);
        assert_eq!(s.average_score, Some(75.0));
        assert_eq!(s.current_streak_days, 2);
        assert_eq!(s.total_time_seconds, 100);
        assert_eq!(
            s.last_activity_at,
            Some(bson::DateTime::from_millis(1_795_219_201_000))
        );
        let names: Vec<_> = s.by_category.iter().map(|c| c.category.as_str()).collect();
        assert_eq!(names, ["go", "rust"]);
        assert_eq!(s.by_category[0].average_score, None);
    }

    #[test]
    fn an_empty_catalogue_has_a_zero_completion_rate() {
        let s = assemble(Raw::default(), noon("2026-11-21"));
        assert_eq!(
            (s.modules_total, s.completion_rate, s.average_score),
            (0, 0.0, None)
        );
        assert!(s.by_category.is_empty());
    }
}
