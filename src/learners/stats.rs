//! A learner's statistics in ONE aggregation command.
//!
//! The pipeline runs on `users` and starts with an indexed `$match` on the
//! learner's `_id` (so an unknown learner is simply no result). Three
//! `$lookup` stages then join by indexed equality (`localField` /
//! `foreignField`, the form both MongoDB and the surrogate serve from an
//! index, unlike `$unionWith` or correlated sub-pipelines):
//! - `progress` by `user_id` (index `user_updated`), each entry joined to
//!   its module by `_id` and projected to `published` and `category`, then
//!   grouped by category;
//! - `activity` by `user_id` (index `user_at`), grouped by UTC day;
//! - the published catalogue grouped by category (uncorrelated: MongoDB
//!   runs it once; index `published_category_position_id`).
//!
//! The result is one small document whose size follows the learner's own
//! data and the catalogue, never the number of users. [`assemble`], a pure
//! function, turns it into the figures.

use std::collections::BTreeMap;

use bson::{Document, doc, oid::ObjectId};
use chrono::{Duration, NaiveDate, Utc};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};

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
    pub by_category: Vec<CategoryStats>,
}

/// The learner's progress on the published modules of one category.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct ProgressRow {
    #[serde(rename = "_id")]
    pub category: String,
    pub in_progress: i64,
    pub completed: i64,
    pub time: i64,
    pub score_sum: f64,
    pub score_count: i64,
}

/// One UTC day with activity, and the newest entry of that day.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct DayRow {
    #[serde(rename = "_id")]
    pub day: String,
    pub last: bson::DateTime,
}

/// Published modules of one category.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct CatalogueRow {
    #[serde(rename = "_id")]
    pub category: String,
    pub total: i64,
}

/// The one document the pipeline returns.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Raw {
    #[serde(default)]
    pub progress: Vec<ProgressRow>,
    #[serde(default)]
    pub days: Vec<DayRow>,
    #[serde(default)]
    pub catalogue: Vec<CatalogueRow>,
}

/// The single pipeline, run on `users`.
pub fn pipeline(user_id: ObjectId) -> Vec<Document> {
    let count_if = |cond: Document| doc! { "$sum": { "$cond": [cond, 1, 0] } };
    vec![
        doc! { "$match": { "_id": user_id } },
        doc! { "$project": { "_id": 1 } },
        doc! { "$lookup": {
            "from": names::PROGRESS,
            "localField": "_id",
            "foreignField": "user_id",
            "as": "progress",
            "pipeline": [
                { "$project": { "_id": 0, "module_id": 1, "status": 1, "score": 1, "time_spent_seconds": 1 } },
                { "$lookup": {
                    "from": names::MODULES,
                    "localField": "module_id",
                    "foreignField": "_id",
                    // Only what the grouping needs: never the module's content.
                    "pipeline": [ { "$project": { "_id": 0, "published": 1, "category": 1 } } ],
                    "as": "m",
                } },
                { "$unwind": "$m" },
                { "$match": { "m.published": true } },
                { "$group": {
                    "_id": "$m.category",
                    "in_progress": count_if(doc! { "$eq": ["$status", "in_progress"] }),
                    "completed": count_if(doc! { "$eq": ["$status", "completed"] }),
                    "time": { "$sum": "$time_spent_seconds" },
                    "score_sum": { "$sum": "$score" },
                    "score_count": count_if(doc! { "$isNumber": "$score" }),
                } },
                { "$set": { "score_sum": { "$toDouble": "$score_sum" }, "time": { "$toLong": "$time" } } },
            ],
        } },
        doc! { "$lookup": {
            "from": names::ACTIVITY,
            "localField": "_id",
            "foreignField": "user_id",
            "as": "days",
            "pipeline": [
                { "$group": {
                    "_id": { "$dateToString": { "format": "%Y-%m-%d", "date": "$at", "timezone": "UTC" } },
                    "last": { "$max": "$at" },
                } },
            ],
        } },
        doc! { "$lookup": {
            "from": names::MODULES,
            "as": "catalogue",
            "pipeline": [
                { "$match": { "published": true } },
                { "$group": { "_id": "$category", "total": { "$sum": 1 } } },
            ],
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
    Ok(docs
        .into_iter()
        .next()
        .map(|raw| assemble(raw, Utc::now().date_naive())))
}

/// Combines the pipeline's document into the statistics, as of `today`.
pub fn assemble(raw: Raw, today: NaiveDate) -> Stats {
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
    for c in raw.catalogue {
        categories.entry(c.category).or_default().total += c.total;
    }
    // Progress counts only for categories of the published catalogue (the
    // pipeline already joined on published modules, so these always match).
    for p in raw.progress {
        if let Some(acc) = categories.get_mut(&p.category) {
            acc.in_progress += p.in_progress;
            acc.completed += p.completed;
            acc.time += p.time;
            acc.score_sum += p.score_sum;
            acc.score_count += p.score_count;
        }
    }
    let last_activity = raw.days.iter().map(|d| d.last).max();
    let days: Vec<NaiveDate> = raw
        .days
        .iter()
        .filter_map(|d| NaiveDate::parse_from_str(&d.day, "%Y-%m-%d").ok())
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
        current_streak_days: streak(days, today),
        by_category,
    }
}

/// Consecutive UTC days with activity ending today or yesterday; 0 otherwise.
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
        let raw = Raw {
            catalogue: vec![
                CatalogueRow {
                    category: "rust".into(),
                    total: 3,
                },
                CatalogueRow {
                    category: "go".into(),
                    total: 1,
                },
            ],
            progress: vec![ProgressRow {
                category: "rust".into(),
                in_progress: 1,
                completed: 1,
                time: 100,
                score_sum: 150.0,
                score_count: 2,
            }],
            days: vec![DayRow {
                day: "2026-11-21".into(),
                last: bson::DateTime::from_millis(1_000),
            }],
        };
        let s = assemble(raw, d("2026-11-21"));
        assert_eq!(s.modules_total, 4);
        assert_eq!(s.modules_started, 2);
        assert_eq!(s.modules_completed, 1);
        assert_eq!(s.completion_rate, 0.25);
        assert_eq!(s.average_score, Some(75.0));
        assert_eq!(s.current_streak_days, 1);
        let names: Vec<_> = s.by_category.iter().map(|c| c.category.as_str()).collect();
        assert_eq!(names, ["go", "rust"]);
        assert_eq!(s.by_category[0].average_score, None);
    }

    #[test]
    fn an_empty_catalogue_has_a_zero_completion_rate() {
        let s = assemble(Raw::default(), d("2026-11-21"));
        assert_eq!(
            (s.modules_total, s.completion_rate, s.average_score),
            (0, 0.0, None)
        );
        assert!(s.by_category.is_empty());
    }
}
