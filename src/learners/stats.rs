//! A learner's statistics in ONE aggregation command.
//!
//! The pipeline starts with an indexed `$match` on the learner's progress,
//! joins each entry to its module by `_id`, groups by category, and adds the
//! published catalogue per category, the learner's activity days and the
//! learner's own existence through `$unionWith` (each branch index-backed:
//! `published_category_position_id`, `user_at`, `_id`). Its cost follows the
//! learner's own data and the catalogue, never the number of users. The
//! rows are combined in [`assemble`], a pure function.

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

/// One row of the pipeline's output, tagged by its branch.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Row {
    /// The learner's progress on the published modules of one category.
    Progress {
        category: String,
        in_progress: i64,
        completed: i64,
        time: i64,
        score_sum: f64,
        score_count: i64,
    },
    /// Published modules of one category.
    Catalogue { category: String, total: i64 },
    /// One UTC day with activity, and the newest entry of that day.
    Day { day: String, last: bson::DateTime },
    /// The learner exists.
    User,
}

/// The single pipeline, run on `progress`.
pub fn pipeline(user_id: ObjectId) -> Vec<Document> {
    let count_if = |cond: Document| doc! { "$sum": { "$cond": [cond, 1, 0] } };
    vec![
        doc! { "$match": { "user_id": user_id } },
        doc! { "$project": { "_id": 0, "module_id": 1, "status": 1, "score": 1, "time_spent_seconds": 1 } },
        doc! { "$lookup": {
            "from": names::MODULES,
            "localField": "module_id",
            "foreignField": "_id",
            // Only what the grouping needs: never the module's content.
            "pipeline": [ { "$project": { "_id": 0, "published": 1, "category": 1 } } ],
            "as": "m",
        } },
        doc! { "$unwind": "$m" },
        doc! { "$match": { "m.published": true } },
        doc! { "$group": {
            "_id": "$m.category",
            "in_progress": count_if(doc! { "$eq": ["$status", "in_progress"] }),
            "completed": count_if(doc! { "$eq": ["$status", "completed"] }),
            "time": { "$sum": "$time_spent_seconds" },
            "score_sum": { "$sum": "$score" },
            "score_count": count_if(doc! { "$isNumber": "$score" }),
        } },
        doc! { "$project": {
            "_id": 0, "kind": { "$literal": "progress" }, "category": "$_id",
            "in_progress": 1, "completed": 1, "time": 1,
            "score_sum": { "$toDouble": "$score_sum" }, "score_count": 1,
        } },
        doc! { "$unionWith": { "coll": names::MODULES, "pipeline": [
            { "$match": { "published": true } },
            { "$group": { "_id": "$category", "total": { "$sum": 1 } } },
            { "$project": { "_id": 0, "kind": { "$literal": "catalogue" }, "category": "$_id", "total": 1 } },
        ] } },
        doc! { "$unionWith": { "coll": names::ACTIVITY, "pipeline": [
            { "$match": { "user_id": user_id } },
            { "$group": {
                "_id": { "$dateToString": { "format": "%Y-%m-%d", "date": "$at", "timezone": "UTC" } },
                "last": { "$max": "$at" },
            } },
            { "$project": { "_id": 0, "kind": { "$literal": "day" }, "day": "$_id", "last": 1 } },
        ] } },
        doc! { "$unionWith": { "coll": names::USERS, "pipeline": [
            { "$match": { "_id": user_id } },
            { "$project": { "_id": 0, "kind": { "$literal": "user" } } },
        ] } },
    ]
}

/// Runs the pipeline: exactly one database command. `None` when the user
/// does not exist.
pub async fn compute(db: &Db, user_id: ObjectId) -> ApiResult<Option<Stats>> {
    let cursor = db
        .run(
            db.raw(names::PROGRESS)
                .aggregate(pipeline(user_id))
                .max_time(db.op_timeout)
                .batch_size(10_000)
                .with_type::<Row>(),
        )
        .await?;
    let rows: Vec<Row> = db.run(cursor.try_collect()).await?;
    if !rows.contains(&Row::User) {
        return Ok(None);
    }
    Ok(Some(assemble(rows, Utc::now().date_naive())))
}

/// Combines the rows of [`pipeline`] into the statistics, as of `today`.
pub fn assemble(rows: Vec<Row>, today: NaiveDate) -> Stats {
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
    let mut days: Vec<NaiveDate> = Vec::new();
    let mut last_activity: Option<bson::DateTime> = None;
    let mut progress_rows = Vec::new();
    for row in rows {
        match row {
            Row::Catalogue { category, total } => {
                categories.entry(category).or_default().total += total
            }
            Row::Day { day, last } => {
                if let Ok(d) = NaiveDate::parse_from_str(&day, "%Y-%m-%d") {
                    days.push(d);
                }
                last_activity = Some(last_activity.map_or(last, |l| l.max(last)));
            }
            p @ Row::Progress { .. } => progress_rows.push(p),
            Row::User => {}
        }
    }
    // Progress counts only for categories of the published catalogue (the
    // pipeline already joined on published modules, so these always match).
    for row in progress_rows {
        if let Row::Progress {
            category,
            in_progress,
            completed,
            time,
            score_sum,
            score_count,
        } = row
            && let Some(acc) = categories.get_mut(&category)
        {
            acc.in_progress += in_progress;
            acc.completed += completed;
            acc.time += time;
            acc.score_sum += score_sum;
            acc.score_count += score_count;
        }
    }
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
        let rows = vec![
            Row::Catalogue {
                category: "rust".into(),
                total: 3,
            },
            Row::Catalogue {
                category: "go".into(),
                total: 1,
            },
            Row::Progress {
                category: "rust".into(),
                in_progress: 1,
                completed: 1,
                time: 100,
                score_sum: 150.0,
                score_count: 2,
            },
            Row::Day {
                day: "2026-11-21".into(),
                last: bson::DateTime::from_millis(1_000),
            },
            Row::User,
        ];
        let s = assemble(rows, d("2026-11-21"));
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
        let s = assemble(vec![Row::User], d("2026-11-21"));
        assert_eq!(
            (s.modules_total, s.completion_rate, s.average_score),
            (0, 0.0, None)
        );
        assert!(s.by_category.is_empty());
    }
}
