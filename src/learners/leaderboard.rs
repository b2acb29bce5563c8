//! Leaderboards: learners who opted in, ranked by modules completed in a
//! period, then time spent.
//!
//! **Cost.** A request must not cost more as the school grows. Each
//! instance keeps, per (period, category), a ranking of every opted-in
//! learner with activity in the period, built by one aggregation and
//! rebuilt when its *stamp* changes. The stamp is a small cached value
//! (`leaderboard` class, 60 s, depending on the [`MEMBERS`] scope), so a
//! ranking is rebuilt at most once a minute per instance, and at once
//! after anyone opts in or out anywhere (the scope's generation is shared
//! through Redis). A read is then one cache lookup for the stamp, a slice
//! of the ranking and one `find` by `_id` of at most `first + 1` users,
//! whose names and opt-in are read fresh: a rename shows on the very next
//! read, and a learner who opted out is never listed, even by a ranking
//! built before they did.
//!
//! **The build.** One aggregation on `users`, from the opted-in learners
//! (index `leaderboard_opt_in`), joined by equality `$lookup` to their
//! `progress` (all time) or `activity` (the last 7 or 30 days), counting
//! only published modules (of the category, when given). Its cost follows
//! the opted-in learners' data, once a minute, not per request.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_graphql::Enum;
use bson::{Document, doc, oid::ObjectId};
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use serde::Deserialize;

use super::model::UserDoc;
use crate::{
    cache::{Cache, Scope, TtlClass, digest},
    db::{Db, names},
    error::ApiResult,
};

/// Who is on the leaderboards: bumped by every change of opt-in.
pub const MEMBERS: Scope = Scope::named("leaderboard_members");

/// The stamp of a ranking: figures lag writes by at most this TTL.
pub const STAMP: TtlClass = TtlClass::new("leaderboard", |_| Duration::from_secs(60));

/// How far back a leaderboard looks.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum LeaderboardPeriod {
    /// The last 7 days (a rolling window: the same for every zone).
    Week,
    /// The last 30 days.
    Month,
    AllTime,
}

impl LeaderboardPeriod {
    fn as_str(self) -> &'static str {
        match self {
            LeaderboardPeriod::Week => "week",
            LeaderboardPeriod::Month => "month",
            LeaderboardPeriod::AllTime => "all_time",
        }
    }

    /// The start of the period as of `now`; `None` for all time.
    pub fn since(self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            LeaderboardPeriod::Week => Some(now - chrono::Duration::days(7)),
            LeaderboardPeriod::Month => Some(now - chrono::Duration::days(30)),
            LeaderboardPeriod::AllTime => None,
        }
    }
}

/// One opted-in learner's figures in the period.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Standing {
    #[serde(rename = "_id")]
    pub user_id: ObjectId,
    #[serde(default)]
    pub completed: i64,
    #[serde(default)]
    pub time: i64,
}

/// Every participant in rank order, with the position of each.
pub struct Ranking {
    stamp: u64,
    standings: Vec<Standing>,
    position: HashMap<ObjectId, usize>,
}

impl Ranking {
    /// Orders by modules completed, then time spent (both descending), then
    /// id, so that equal figures still rank the same way every time.
    pub fn new(stamp: u64, mut standings: Vec<Standing>) -> Self {
        standings.sort_by(|a, b| {
            (b.completed, b.time)
                .cmp(&(a.completed, a.time))
                .then(a.user_id.cmp(&b.user_id))
        });
        let position = standings
            .iter()
            .enumerate()
            .map(|(i, s)| (s.user_id, i))
            .collect();
        Ranking {
            stamp,
            standings,
            position,
        }
    }
}

/// The rankings this instance holds, per (period, category).
#[derive(Default)]
pub struct Leaderboards {
    rankings: Mutex<HashMap<String, Arc<Ranking>>>,
    builds: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Leaderboards {
    fn current(&self, key: &str, stamp: u64) -> Option<Arc<Ranking>> {
        self.rankings
            .lock()
            .expect("leaderboards poisoned")
            .get(key)
            .filter(|r| r.stamp == stamp)
            .cloned()
    }

    fn build_lock(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.builds
            .lock()
            .expect("leaderboards poisoned")
            .entry(key.to_string())
            .or_default()
            .clone()
    }
}

/// The published modules (of `category`) whose progress counts.
async fn counted_modules(db: &Db, category: Option<&str>) -> ApiResult<Vec<ObjectId>> {
    let mut filter = doc! { "published": true };
    if let Some(c) = category {
        filter.insert("category", c);
    }
    #[derive(Deserialize)]
    struct Id {
        #[serde(rename = "_id")]
        id: ObjectId,
    }
    let cursor = db
        .run(
            db.collection::<Id>(names::MODULES)
                .find(filter)
                .projection(doc! { "_id": 1 })
                .max_time(db.op_timeout),
        )
        .await?;
    let ids: Vec<Id> = db.run(cursor.try_collect()).await?;
    Ok(ids.into_iter().map(|i| i.id).collect())
}

/// The ranking pipeline, run on `users`.
pub fn pipeline(modules: &[ObjectId], since: Option<DateTime<Utc>>) -> Vec<Document> {
    let (from, completed) = match since {
        None => (names::PROGRESS, doc! { "$eq": ["$$e.status", "completed"] }),
        Some(_) => (names::ACTIVITY, doc! { "$eq": ["$$e.kind", "completed"] }),
    };
    let mut keep = vec![bson::Bson::from(doc! { "$in": ["$$e.module_id", modules] })];
    if let Some(since) = since {
        keep.push(doc! { "$gte": ["$$e.at", bson::DateTime::from_chrono(since)] }.into());
    }
    vec![
        doc! { "$match": { "leaderboard_opt_in": true } },
        doc! { "$project": { "_id": 1 } },
        doc! { "$lookup": { "from": from, "localField": "_id", "foreignField": "user_id", "as": "e" } },
        doc! { "$project": {
            "e": { "$filter": { "input": "$e", "as": "e", "cond": { "$and": keep } } },
        } },
        doc! { "$match": { "e.0": { "$exists": true } } },
        doc! { "$project": {
            "completed": { "$size": { "$filter": { "input": "$e", "as": "e", "cond": completed } } },
            // `$map` rather than the `$e.time_spent_seconds` path: the same
            // sum, which one surrogate build answers as 0 for the path.
            "time": { "$sum": { "$map": { "input": "$e", "as": "x", "in": "$$x.time_spent_seconds" } } },
        } },
    ]
}

/// Builds a ranking: the counted modules, then one aggregation.
async fn build(
    db: &Db,
    period: LeaderboardPeriod,
    category: Option<&str>,
) -> ApiResult<Vec<Standing>> {
    let modules = counted_modules(db, category).await?;
    if modules.is_empty() {
        return Ok(Vec::new());
    }
    let cursor = db
        .run(
            db.raw(names::USERS)
                .aggregate(pipeline(&modules, period.since(Utc::now())))
                .max_time(db.op_timeout)
                .with_type::<Standing>(),
        )
        .await?;
    db.run(cursor.try_collect()).await
}

/// The current ranking of (period, category): this instance's copy while
/// its stamp holds, else rebuilt once however many requests wait for it.
async fn ranking(
    db: &Db,
    cache: &Cache,
    boards: &Leaderboards,
    period: LeaderboardPeriod,
    category: Option<&str>,
) -> ApiResult<Arc<Ranking>> {
    let key = format!("{}:{}", period.as_str(), digest(&category));
    let stamp: u64 = cache
        .get_or_compute(STAMP, &key, &[MEMBERS], || async { Ok(rand::random()) })
        .await?;
    if let Some(r) = boards.current(&key, stamp) {
        return Ok(r);
    }
    let lock = boards.build_lock(&key);
    let _guard = lock.lock().await;
    if let Some(r) = boards.current(&key, stamp) {
        return Ok(r);
    }
    let ranking = Arc::new(Ranking::new(stamp, build(db, period, category).await?));
    boards
        .rankings
        .lock()
        .expect("leaderboards poisoned")
        .insert(key, ranking.clone());
    Ok(ranking)
}

/// One listed learner.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub rank: i64,
    pub name: String,
    pub modules_completed: i64,
    pub time_spent_seconds: i64,
    pub is_viewer: bool,
}

/// What a leaderboard read answers.
#[derive(Debug, Clone, PartialEq)]
pub struct Board {
    pub entries: Vec<Entry>,
    pub viewer_rank: Option<i64>,
    pub participants: i64,
}

/// The top `first` of (period, category) as `viewer` sees it.
pub async fn read(
    db: &Db,
    cache: &Cache,
    boards: &Leaderboards,
    period: LeaderboardPeriod,
    category: Option<&str>,
    first: usize,
    viewer: ObjectId,
) -> ApiResult<Board> {
    let ranking = ranking(db, cache, boards, period, category).await?;
    let top = &ranking.standings[..first.min(ranking.standings.len())];
    // Names and opt-in fresh from `users`, the viewer's too, in one find.
    let ids: Vec<ObjectId> = top
        .iter()
        .map(|s| s.user_id)
        .chain(std::iter::once(viewer))
        .collect();
    let cursor = db
        .run(
            db.collection::<UserDoc>(names::USERS)
                .find(doc! { "_id": { "$in": ids }, "leaderboard_opt_in": true })
                .projection(super::model::user_projection())
                .max_time(db.op_timeout),
        )
        .await?;
    let opted_in: Vec<UserDoc> = db.run(cursor.try_collect()).await?;
    let opted_in: HashMap<ObjectId, UserDoc> = opted_in.into_iter().map(|u| (u.id, u)).collect();
    let entries = top
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            let user = opted_in.get(&s.user_id)?;
            Some(Entry {
                rank: i as i64 + 1,
                name: user.public_name().to_string(),
                modules_completed: s.completed,
                time_spent_seconds: s.time,
                is_viewer: s.user_id == viewer,
            })
        })
        .collect();
    let participants = ranking.standings.len() as i64;
    // An opted-in viewer without activity in the period ranks after
    // every participant.
    let viewer_rank = opted_in.contains_key(&viewer).then(|| {
        ranking
            .position
            .get(&viewer)
            .map_or(participants + 1, |&i| i as i64 + 1)
    });
    Ok(Board {
        entries,
        viewer_rank,
        participants,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rankings_order_by_completions_then_time_then_id() {
        let ids: Vec<ObjectId> = (0..4).map(|_| ObjectId::new()).collect();
        let s = |i: usize, completed, time| Standing {
            user_id: ids[i],
            completed,
            time,
        };
        let r = Ranking::new(
            1,
            vec![s(0, 1, 500), s(1, 2, 10), s(2, 1, 900), s(3, 1, 500)],
        );
        let order: Vec<ObjectId> = r.standings.iter().map(|s| s.user_id).collect();
        assert_eq!(order, [ids[1], ids[2], ids[0], ids[3]]);
        assert_eq!(r.position[&ids[3]], 3);
    }
}
