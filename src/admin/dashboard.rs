//! The admin dashboard in ONE aggregation command.
//!
//! The pipeline runs on `users` and starts with an indexed `$match` on
//! `role` (index `role_id`), grouped into the user count; the asking admin
//! is a user, so there is always that one document to hang the rest on.
//! Then, by `$lookup`:
//! - the whole catalogue (`_id`, `published` and the summary fields; never
//!   `content`): small, and what `topModules` shows;
//! - `progress` by `module_id` IN the published module ids (localField on
//!   an array, index `module_status`), grouped per module;
//! - `activity` of the last 7 days (index `at_ttl`), grouped by user and
//!   counted.
//!
//! [`assemble`], a pure function, turns the one document into the figures.

use bson::{Document, doc, oid::ObjectId};
use chrono::{Duration, Utc};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};

use crate::{
    cache::{Cache, TtlClass},
    catalogue::{ModuleDoc, model::summary_projection, service::CATALOGUE},
    db::{Db, names},
    error::ApiResult,
    learners::ALL_PROGRESS,
};

/// The dashboard's figures (`CACHE_TTL_DASHBOARD_SECS`).
pub const DASHBOARD: TtlClass = TtlClass::new("dashboard", |s| s.ttl_dashboard);

/// The figures from the cache, or one aggregation; dropped by every
/// progress write (`ALL_PROGRESS`) and every catalogue write.
pub async fn cached(db: &Db, cache: &Cache) -> ApiResult<Figures> {
    cache
        .get_or_compute(DASHBOARD, "admin", &[ALL_PROGRESS, CATALOGUE], || {
            compute(db, db.lagging_read_preference.as_ref())
        })
        .await
}

/// Most entries `topModules(limit)` may ask for.
pub const MAX_TOP: i32 = 50;

/// One published module's figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModuleFigures {
    pub module: ModuleDoc,
    pub learners_started: i64,
    pub learners_completed: i64,
    pub completion_rate: f64,
    pub average_score: Option<f64>,
    pub average_time_seconds: Option<f64>,
}

/// Every figure of the dashboard (cached as a whole).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Figures {
    pub users_total: i64,
    pub active_users_last7_days: i64,
    pub modules_total: i64,
    pub modules_published: i64,
    pub completions_total: i64,
    pub average_score: Option<f64>,
    /// Published modules with at least one learner started, best first,
    /// at most [`MAX_TOP`].
    pub top_modules: Vec<ModuleFigures>,
}

/// Progress on one published module.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct ModuleRow {
    #[serde(rename = "_id")]
    pub module_id: ObjectId,
    pub started: i64,
    pub completed: i64,
    pub score_sum: f64,
    pub score_count: i64,
    pub time_sum: i64,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct CountRow {
    pub n: i64,
}

/// The one document the pipeline returns.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Raw {
    #[serde(default)]
    pub users: i64,
    #[serde(default)]
    pub modules: Vec<ModuleDoc>,
    #[serde(default)]
    pub per_module: Vec<ModuleRow>,
    #[serde(default)]
    pub active: Vec<CountRow>,
}

/// The single pipeline, run on `users`; `since` starts the 7-day window.
pub fn pipeline(since: bson::DateTime) -> Vec<Document> {
    let count_if = |cond: Document| doc! { "$sum": { "$cond": [cond, 1, 0] } };
    vec![
        doc! { "$match": { "role": { "$in": ["learner", "admin"] } } },
        doc! { "$project": { "_id": 0, "role": 1 } },
        doc! { "$group": { "_id": null, "users": { "$sum": 1 } } },
        doc! { "$lookup": {
            "from": names::MODULES,
            "as": "modules",
            "pipeline": [ { "$project": summary_projection() } ],
        } },
        doc! { "$set": { "published_ids": { "$map": {
            "input": { "$filter": { "input": "$modules", "cond": { "$eq": ["$$this.published", true] } } },
            "in": "$$this._id",
        } } } },
        doc! { "$lookup": {
            "from": names::PROGRESS,
            "localField": "published_ids",
            "foreignField": "module_id",
            "as": "per_module",
            "pipeline": [
                { "$match": { "status": { "$in": ["in_progress", "completed"] } } },
                { "$group": {
                    "_id": "$module_id",
                    "started": { "$sum": 1 },
                    "completed": count_if(doc! { "$eq": ["$status", "completed"] }),
                    "score_sum": { "$sum": "$score" },
                    "score_count": count_if(doc! { "$isNumber": "$score" }),
                    "time_sum": { "$sum": "$time_spent_seconds" },
                } },
                { "$set": { "score_sum": { "$toDouble": "$score_sum" }, "time_sum": { "$toLong": "$time_sum" } } },
            ],
        } },
        doc! { "$lookup": {
            "from": names::ACTIVITY,
            "as": "active",
            "pipeline": [
                { "$match": { "at": { "$gte": since } } },
                { "$group": { "_id": "$user_id" } },
                { "$group": { "_id": null, "n": { "$sum": 1 } } },
            ],
        } },
        doc! { "$project": { "_id": 0, "published_ids": 0 } },
    ]
}

/// Runs the pipeline: exactly one database command, on the configured
/// read preference for reads that may lag (`MONGODB_READ_PREFERENCE`).
pub async fn compute(
    db: &Db,
    read_preference: Option<&mongodb::options::ReadPreference>,
) -> ApiResult<Figures> {
    let since = bson::DateTime::from_chrono(Utc::now() - Duration::days(7));
    let users = db.raw(names::USERS);
    let mut op = users.aggregate(pipeline(since)).max_time(db.op_timeout);
    if let Some(rp) = read_preference {
        op = op.selection_criteria(mongodb::options::SelectionCriteria::ReadPreference(
            rp.clone(),
        ));
    }
    let cursor = db.run(op.with_type::<Raw>()).await?;
    let docs: Vec<Raw> = db.run(cursor.try_collect()).await?;
    Ok(assemble(docs.into_iter().next().unwrap_or_default()))
}

/// Combines the pipeline's document into the figures.
pub fn assemble(raw: Raw) -> Figures {
    let mean = |sum: f64, n: i64| (n > 0).then(|| sum / n as f64);
    let (mut completions, mut score_sum, mut score_count) = (0, 0.0, 0);
    let mut top: Vec<ModuleFigures> = Vec::new();
    for row in &raw.per_module {
        let Some(module) = raw
            .modules
            .iter()
            .find(|m| m.id == row.module_id && m.published)
        else {
            continue;
        };
        completions += row.completed;
        score_sum += row.score_sum;
        score_count += row.score_count;
        if row.started > 0 {
            top.push(ModuleFigures {
                module: module.clone(),
                learners_started: row.started,
                learners_completed: row.completed,
                completion_rate: row.completed as f64 / row.started as f64,
                average_score: mean(row.score_sum, row.score_count),
                average_time_seconds: mean(row.time_sum as f64, row.started),
            });
        }
    }
    // Most learners started first; ties by completion rate, then catalogue
    // order, so the list is stable.
    top.sort_by(|a, b| {
        b.learners_started
            .cmp(&a.learners_started)
            .then(b.completion_rate.total_cmp(&a.completion_rate))
            .then(a.module.position.cmp(&b.module.position))
            .then(a.module.id.cmp(&b.module.id))
    });
    top.truncate(MAX_TOP as usize);
    Figures {
        users_total: raw.users,
        active_users_last7_days: raw.active.first().map_or(0, |c| c.n),
        modules_total: raw.modules.len() as i64,
        modules_published: raw.modules.iter().filter(|m| m.published).count() as i64,
        completions_total: completions,
        average_score: mean(score_sum, score_count),
        top_modules: top,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::Level;

    fn module(position: i32, published: bool) -> ModuleDoc {
        ModuleDoc {
            id: ObjectId::new(),
            slug: format!("m{position}"),
            title: "t".into(),
            summary: "s".into(),
            category: "c".into(),
            level: Level::Beginner,
            tags: vec![],
            duration_minutes: 1,
            position,
            published,
            created_at: bson::DateTime::now(),
            updated_at: bson::DateTime::now(),
            content: None,
        }
    }

    fn row(m: &ModuleDoc, started: i64, completed: i64) -> ModuleRow {
        ModuleRow {
            module_id: m.id,
            started,
            completed,
            score_sum: 80.0 * completed as f64,
            score_count: completed,
            time_sum: 60 * started,
        }
    }

    #[test]
    fn top_modules_are_the_most_started_published_ones() {
        let (a, b, c, hidden) = (
            module(0, true),
            module(1, true),
            module(2, true),
            module(3, false),
        );
        let raw = Raw {
            users: 7,
            per_module: vec![
                row(&a, 2, 1),
                row(&b, 4, 1),
                row(&c, 2, 2),
                row(&hidden, 9, 9),
            ],
            modules: vec![a.clone(), b.clone(), c.clone(), hidden],
            active: vec![CountRow { n: 3 }],
        };
        let f = assemble(raw);
        let order: Vec<_> = f.top_modules.iter().map(|m| m.module.id).collect();
        assert_eq!(order, [b.id, c.id, a.id]);
        assert_eq!((f.modules_total, f.modules_published), (4, 3));
        assert_eq!(f.completions_total, 4);
        assert_eq!(f.average_score, Some(80.0));
        assert_eq!(f.top_modules[0].completion_rate, 0.25);
        assert_eq!(f.active_users_last7_days, 3);
    }

    #[test]
    fn an_empty_school_has_zeros_and_no_averages() {
        let f = assemble(Raw::default());
        assert_eq!(f.users_total, 0);
        assert_eq!(f.average_score, None);
        assert!(f.top_modules.is_empty());
    }
}
