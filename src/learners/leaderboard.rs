//! Leaderboards: learners who opted in, ranked by modules completed in a
//! period, then time spent.
//!
//! **Cost.** A read costs the same whatever the size of the school, and
//! never waits for a rebuild once a ranking exists. Each instance keeps,
//! per (period, category), a ranking of every opted-in learner with
//! activity in the period (its *base*), built by one aggregation in a
//! background task. A read is one cache lookup (the membership stamp, see
//! below), a merge of the first `first` standings and one `find` by `_id`
//! of at most `first + 1` users, whose names and opt-in are read fresh:
//! a rename shows on the very next read, and a learner who opted out is
//! never listed, even by a ranking built before they did.
//!
//! **Freshness.** A base older than `LEADERBOARD_REFRESH_SECS` (default
//! 30, at most 30) is rebuilt in the background, once per (period,
//! category) per instance at a time, by the read that finds it due or by
//! this instance's refresher (a tick a second); reads meanwhile get the
//! previous ranking. A build may take the operation deadline (20 s), and
//! never so long that the refresh age, a tick and a build pass 59 s: the
//! figures lag writes by under 60 s while the database answers (a failed
//! build leaves the previous ranking served, and is tried again 5 s
//! later). Only the first read of a board on an instance waits for its
//! build (at most that long, then `UNAVAILABLE` while the build goes on);
//! boards are not warmed at start, as a ranking
//! built before the catalogue or the data arrive would be served as it is
//! until its refresh. A board nobody read for [`IDLE`] is dropped, with
//! its refreshes, and its next read is a first read again.
//!
//! **Opt-in changes** take effect on the very next read without a
//! rebuild. `updateMe` stamps `leaderboard_opt_in_at` and bumps the
//! [`MEMBERS`] scope (shared through Redis), which changes the cached
//! membership stamp. A read whose ranking carries an older stamp first
//! lays the changes over its base: of the users whose opt-in changed
//! since the base's snapshot (index `leaderboard_opt_in_at`, less a
//! margin for clocks), those opted out now are hidden, and those opted in
//! now and missing from the base are added with figures of their own,
//! fresh, from one aggregation on their entries (none when nobody joined).
//! That work follows the number of opt-in changes of the last minute or
//! two, not the school, and is done once per change per board and
//! instance. Opt-ins written by other tools without the stamp count from
//! the next refresh.
//!
//! **The build.** The opted-in ids (index `leaderboard_opt_in`) and one
//! aggregation on `progress` (all time; index `module_status`) or
//! `activity` (the last 7 or 30 days; index `at_ttl`), from a `$match` on
//! the period and the counted modules (published, of the category when
//! given), grouped by learner; Rust keeps the opted-in. Its cost follows
//! the period's entries, in the background, at most once per refresh age.

use std::{
    cmp::Reverse,
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use async_graphql::Enum;
use bson::{Document, doc, oid::ObjectId};
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use serde::Deserialize;
use tokio::sync::watch;

use super::model::UserDoc;
use crate::{
    cache::{Cache, Scope, TtlClass},
    db::{Db, names},
    error::{ApiError, ApiResult},
};

/// Who is on the leaderboards: bumped by every change of opt-in.
pub const MEMBERS: Scope = Scope::named("leaderboard_members");

/// The membership stamp: a random value cached under [`MEMBERS`], so it
/// changes on every opt-in change anywhere (and at the latest each minute).
pub const STAMP: TtlClass = TtlClass::new("leaderboard", |_| Duration::from_secs(60));

/// How far before a base's snapshot opt-in changes are looked for: the
/// instances' clocks may differ, and a change is stamped before it
/// commits.
const CHANGE_MARGIN: chrono::Duration = chrono::Duration::seconds(60);

/// A board nobody read for this long is dropped (no more refreshes).
pub const IDLE: Duration = Duration::from_secs(600);

/// How often the refresher looks for due boards.
const TICK: Duration = Duration::from_secs(1);

/// The wait after a failed refresh before the next try.
const RETRY: Duration = Duration::from_secs(5);

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

/// Rank order: modules completed, then time spent (both descending), then
/// id, so that equal figures still rank the same way every time.
fn order(s: &Standing) -> (Reverse<i64>, Reverse<i64>, ObjectId) {
    (Reverse(s.completed), Reverse(s.time), s.user_id)
}

/// A built ranking: every opted-in participant at the snapshot, in rank
/// order.
pub struct Base {
    /// When the build began: the figures are at least this fresh.
    started: Instant,
    /// The same instant by the wall clock, for the opt-in changes after it.
    snapshot: DateTime<Utc>,
    /// The counted modules and the period's start, as built.
    modules: Vec<ObjectId>,
    since: Option<DateTime<Utc>>,
    standings: Vec<Standing>,
    position: HashMap<ObjectId, usize>,
}

impl Base {
    pub fn new(
        snapshot: DateTime<Utc>,
        modules: Vec<ObjectId>,
        since: Option<DateTime<Utc>>,
        mut standings: Vec<Standing>,
    ) -> Self {
        standings.sort_by_key(order);
        let position = standings
            .iter()
            .enumerate()
            .map(|(i, s)| (s.user_id, i))
            .collect();
        Base {
            started: Instant::now(),
            snapshot,
            modules,
            since,
            standings,
            position,
        }
    }
}

/// What a read ranks: a base with the opt-in changes since its snapshot
/// laid over it.
pub struct Ranking {
    /// The membership stamp this ranking is exact for.
    members: u64,
    base: Arc<Base>,
    /// Learners who opted out since the snapshot: not shown.
    hidden: HashSet<ObjectId>,
    /// Learners opted in since, with figures of their own, in rank order.
    added: Vec<Standing>,
}

impl Ranking {
    pub fn new(
        members: u64,
        base: Arc<Base>,
        hidden: HashSet<ObjectId>,
        mut added: Vec<Standing>,
    ) -> Self {
        added.sort_by_key(order);
        Ranking {
            members,
            base,
            hidden,
            added,
        }
    }

    /// Learners shown: opted in with activity in the period.
    pub fn participants(&self) -> usize {
        let hidden = self
            .hidden
            .iter()
            .filter(|id| self.base.position.contains_key(id))
            .count();
        self.base.standings.len() - hidden + self.added.len()
    }

    /// The first `n` shown, in rank order.
    pub fn top(&self, n: usize) -> Vec<&Standing> {
        let mut base = self
            .base
            .standings
            .iter()
            .filter(|s| !self.hidden.contains(&s.user_id))
            .peekable();
        let mut added = self.added.iter().peekable();
        let mut top = Vec::with_capacity(n);
        while top.len() < n {
            let next = match (base.peek(), added.peek()) {
                (Some(b), Some(a)) if order(a) < order(b) => added.next(),
                (Some(_), _) => base.next(),
                (None, _) => added.next(),
            };
            match next {
                Some(s) => top.push(s),
                None => break,
            }
        }
        top
    }

    /// The rank (from 1) of `user` among those shown; `None` when not shown.
    pub fn rank(&self, user: ObjectId) -> Option<usize> {
        let standing = match self.added.iter().find(|s| s.user_id == user) {
            Some(s) => s,
            None if self.hidden.contains(&user) => return None,
            None => &self.base.standings[*self.base.position.get(&user)?],
        };
        let key = order(standing);
        let base_before = self.base.standings.partition_point(|s| order(s) < key);
        let hidden_before = self
            .hidden
            .iter()
            .filter_map(|id| self.base.position.get(id))
            .filter(|&&i| i < base_before)
            .count();
        let added_before = self.added.partition_point(|s| order(s) < key);
        Some(base_before - hidden_before + added_before + 1)
    }
}

/// The published modules (of `category`) whose progress counts.
async fn counted_modules(db: &Db, category: Option<&str>) -> ApiResult<Vec<ObjectId>> {
    let mut filter = doc! { "published": true };
    if let Some(c) = category {
        filter.insert("category", c);
    }
    ids(db, names::MODULES, filter).await
}

/// The `_id`s of the documents of `collection` matching `filter`, read from
/// an index when one covers the filter.
async fn ids<C: FromIterator<ObjectId>>(
    db: &Db,
    collection: &str,
    filter: Document,
) -> ApiResult<C> {
    #[derive(Deserialize)]
    struct Id {
        #[serde(rename = "_id")]
        id: ObjectId,
    }
    let cursor = db
        .run(
            db.collection::<Id>(collection)
                .find(filter)
                .projection(doc! { "_id": 1 })
                .max_time(db.op_timeout),
        )
        .await?;
    let ids: Vec<Id> = db.run(cursor.try_collect()).await?;
    Ok(ids.into_iter().map(|i| i.id).collect())
}

/// The figures pipeline, run on `progress` (all time) or `activity` (from
/// `since`): the counted modules' entries of the period (of `users` only,
/// when given), grouped by learner.
///
/// The first `$match` holds one indexed predicate (the learners, else the
/// period's start on `activity`, else the modules on `progress`) and the
/// second the others: MongoDB coalesces the two and plans from all of
/// them; the surrogate plans from the first stage alone, and scans for a
/// filter with two operator fields.
pub fn pipeline(
    modules: &[ObjectId],
    since: Option<DateTime<Utc>>,
    users: Option<&[ObjectId]>,
) -> Vec<Document> {
    let mut filter = Document::new();
    if let Some(users) = users {
        filter.insert("user_id", doc! { "$in": users });
    }
    if let Some(since) = since {
        filter.insert("at", doc! { "$gte": bson::DateTime::from_chrono(since) });
    }
    filter.insert("module_id", doc! { "$in": modules });
    let completed = match since {
        None => doc! { "$eq": ["$status", "completed"] },
        Some(_) => doc! { "$eq": ["$kind", "completed"] },
    };
    let (first, rest): (Document, Document) = {
        let mut it = filter.into_iter();
        let first = it.next().into_iter().collect();
        (first, it.collect())
    };
    let mut stages = vec![doc! { "$match": first }];
    if !rest.is_empty() {
        stages.push(doc! { "$match": rest });
    }
    stages.push(doc! { "$group": {
        "_id": "$user_id",
        "completed": { "$sum": { "$cond": [completed, 1, 0] } },
        "time": { "$sum": "$time_spent_seconds" },
    } });
    stages
}

/// The period's figures of every learner with entries (of `users` only,
/// when given), in one aggregation.
async fn figures(
    db: &Db,
    modules: &[ObjectId],
    since: Option<DateTime<Utc>>,
    users: Option<&[ObjectId]>,
) -> ApiResult<Vec<Standing>> {
    let from = if since.is_some() {
        names::ACTIVITY
    } else {
        names::PROGRESS
    };
    let cursor = db
        .run(
            db.raw(from)
                .aggregate(pipeline(modules, since, users))
                .max_time(db.op_timeout)
                .with_type::<Standing>(),
        )
        .await?;
    db.run(cursor.try_collect()).await
}

/// Every learner opted in now (index `leaderboard_opt_in`, covered).
async fn opted_in(db: &Db) -> ApiResult<HashSet<ObjectId>> {
    ids(db, names::USERS, doc! { "leaderboard_opt_in": true }).await
}

/// Builds the base of (period, category) as of now.
async fn build_base(db: &Db, period: LeaderboardPeriod, category: Option<&str>) -> ApiResult<Base> {
    let snapshot = Utc::now();
    let since = period.since(snapshot);
    let modules = counted_modules(db, category).await?;
    if modules.is_empty() {
        return Ok(Base::new(snapshot, modules, since, Vec::new()));
    }
    let (members, mut standings) =
        futures::try_join!(opted_in(db), figures(db, &modules, since, None))?;
    standings.retain(|s| members.contains(&s.user_id));
    Ok(Base::new(snapshot, modules, since, standings))
}

/// The opt-in changes since `base`'s snapshot: who opted out (hidden),
/// and the figures of those opted in now but not in the base (a learner
/// in the base and opted in now keeps the base's figures: they do not
/// depend on the opt-in).
async fn changes(db: &Db, base: &Base) -> ApiResult<(HashSet<ObjectId>, Vec<Standing>)> {
    #[derive(Deserialize)]
    struct Changed {
        #[serde(rename = "_id")]
        id: ObjectId,
        #[serde(default)]
        leaderboard_opt_in: bool,
    }
    let after = bson::DateTime::from_chrono(base.snapshot - CHANGE_MARGIN);
    let cursor = db
        .run(
            db.collection::<Changed>(names::USERS)
                .find(doc! { "leaderboard_opt_in_at": { "$gte": after } })
                .projection(doc! { "_id": 1, "leaderboard_opt_in": 1 })
                .max_time(db.op_timeout),
        )
        .await?;
    let changed: Vec<Changed> = db.run(cursor.try_collect()).await?;
    let (mut hidden, mut joined) = (HashSet::new(), Vec::new());
    for c in changed {
        if !c.leaderboard_opt_in {
            hidden.insert(c.id);
        } else if !base.position.contains_key(&c.id) {
            joined.push(c.id);
        }
    }
    let added = if joined.is_empty() || base.modules.is_empty() {
        Vec::new()
    } else {
        figures(db, &base.modules, base.since, Some(&joined)).await?
    };
    Ok((hidden, added))
}

/// The membership stamp (see [`STAMP`]).
async fn members_stamp(cache: &Cache) -> ApiResult<u64> {
    cache
        .get_or_compute(STAMP, "members", &[MEMBERS], || async {
            Ok(rand::random())
        })
        .await
}

/// A board: (period, category).
type Key = (LeaderboardPeriod, Option<String>);

/// One board on this instance.
struct Slot {
    ranking: Option<Arc<Ranking>>,
    /// A build is running (at most one per board).
    building: bool,
    /// Counts the builds that ended, either way (first reads wait on it).
    ended: watch::Sender<u64>,
    /// Why the last build failed.
    error: Option<ApiError>,
    /// No refresh before this, after a failure.
    retry_at: Option<Instant>,
    read_at: Instant,
    /// One overlay of opt-in changes at a time.
    patching: Arc<tokio::sync::Mutex<()>>,
}

impl Slot {
    fn new() -> Self {
        Slot {
            ranking: None,
            building: false,
            ended: watch::Sender::new(0),
            error: None,
            retry_at: None,
            read_at: Instant::now(),
            patching: Arc::default(),
        }
    }
}

struct Inner {
    db: Db,
    cache: Arc<Cache>,
    /// A base this old is rebuilt (`LEADERBOARD_REFRESH_SECS`).
    refresh: Duration,
    /// The most a build may take: with the refresh age and a tick, under
    /// the 60 s the figures may lag.
    deadline: Duration,
    slots: Mutex<HashMap<Key, Slot>>,
    /// Whether the refresher task runs.
    tending: AtomicBool,
}

/// The boards this instance holds.
#[derive(Clone)]
pub struct Leaderboards(Arc<Inner>);

impl Inner {
    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Slot>> {
        self.slots.lock().expect("leaderboards poisoned")
    }

    /// Starts the build of `key` in a task of its own: a read that stops
    /// waiting does not stop it.
    fn start_build(self: &Arc<Self>, key: &Key, slot: &mut Slot) {
        slot.building = true;
        let inner = self.clone();
        let key = key.clone();
        tokio::spawn(async move {
            let built = async {
                // The stamp before the snapshot: a change after it shows
                // as another stamp on the next read.
                let members = members_stamp(&inner.cache).await?;
                let base = tokio::time::timeout(
                    inner.deadline,
                    build_base(&inner.db, key.0, key.1.as_deref()),
                )
                .await
                .map_err(|_| ApiError::Unavailable)??;
                Ok::<_, ApiError>(Ranking::new(
                    members,
                    Arc::new(base),
                    HashSet::new(),
                    Vec::new(),
                ))
            }
            .await;
            let mut slots = inner.slots();
            let Some(slot) = slots.get_mut(&key) else {
                return;
            };
            slot.building = false;
            match built {
                Ok(ranking) => {
                    slot.ranking = Some(Arc::new(ranking));
                    slot.error = None;
                    slot.retry_at = None;
                }
                Err(e) => {
                    tracing::warn!(board = ?key, error = %e.message(), "leaderboard build failed");
                    slot.error = Some(e);
                    slot.retry_at = Some(Instant::now() + RETRY);
                }
            }
            slot.ended.send_modify(|n| *n += 1);
        });
    }

    /// Starts a rebuild of a board whose base is due, unless one runs.
    fn refresh_if_due(self: &Arc<Self>, key: &Key, slot: &mut Slot) {
        let due = slot
            .ranking
            .as_ref()
            .is_some_and(|r| r.base.started.elapsed() >= self.refresh);
        let waited = slot.retry_at.is_none_or(|t| Instant::now() >= t);
        if due && waited && !slot.building {
            self.start_build(key, slot);
        }
    }

    /// The refresher's round: drops idle boards, refreshes due ones.
    fn tend(self: &Arc<Self>) {
        let mut slots = self.slots();
        slots.retain(|_, s| s.building || s.read_at.elapsed() < IDLE);
        for (key, slot) in slots.iter_mut() {
            self.refresh_if_due(key, slot);
        }
    }

    /// The board's ranking as held (its refresh started when due), else
    /// the first build's, awaited for at most the operation deadline.
    async fn held(self: &Arc<Self>, key: &Key) -> ApiResult<Arc<Ranking>> {
        let mut ended = {
            let mut slots = self.slots();
            let slot = slots.entry(key.clone()).or_insert_with(Slot::new);
            slot.read_at = Instant::now();
            if let Some(r) = slot.ranking.clone() {
                self.refresh_if_due(key, slot);
                return Ok(r);
            }
            if !slot.building {
                self.start_build(key, slot);
            }
            slot.ended.subscribe()
        };
        if tokio::time::timeout(self.deadline, ended.changed())
            .await
            .is_err()
        {
            return Err(ApiError::Unavailable);
        }
        let mut slots = self.slots();
        let Some(slot) = slots.get(key) else {
            return Err(ApiError::Unavailable);
        };
        let Some(r) = slot.ranking.clone() else {
            return Err(slot.error.clone().unwrap_or(ApiError::Unavailable));
        };
        // A category without counted modules is not kept: it would only
        // hold a slot (anyone can name one).
        if r.base.modules.is_empty() && key.1.is_some() && !slot.building {
            slots.remove(key);
        }
        Ok(r)
    }

    /// The board's ranking exact for the membership stamp `members`.
    async fn ranking(self: &Arc<Self>, key: &Key, members: u64) -> ApiResult<Arc<Ranking>> {
        let held = self.held(key).await?;
        if held.members == members {
            return Ok(held);
        }
        let lock = self.slots().get(key).map(|s| s.patching.clone());
        let _patching = match &lock {
            Some(l) => Some(l.lock().await),
            None => None,
        };
        // Another read may have laid the same changes meanwhile, or a
        // build ended.
        let held = self
            .slots()
            .get(key)
            .and_then(|s| s.ranking.clone())
            .unwrap_or(held);
        if held.members == members {
            return Ok(held);
        }
        let (hidden, added) = changes(&self.db, &held.base).await?;
        let ranking = Arc::new(Ranking::new(members, held.base.clone(), hidden, added));
        if let Some(slot) = self.slots().get_mut(key) {
            // Not over a newer base that ended meanwhile.
            if slot
                .ranking
                .as_ref()
                .is_some_and(|r| Arc::ptr_eq(&r.base, &ranking.base))
            {
                slot.ranking = Some(ranking.clone());
            }
        }
        Ok(ranking)
    }
}

impl Leaderboards {
    /// Boards on `db`, their bases rebuilt when `refresh` old.
    pub fn new(db: Db, cache: Arc<Cache>, refresh: Duration) -> Self {
        let lag = Duration::from_secs(59);
        let deadline = db.op_timeout.min(lag.saturating_sub(refresh + TICK));
        Leaderboards(Arc::new(Inner {
            db,
            cache,
            refresh,
            deadline,
            slots: Mutex::default(),
            tending: AtomicBool::new(false),
        }))
    }

    /// Starts the refresher once: it ends with the boards.
    fn tend(&self) {
        if self.0.tending.swap(true, Ordering::Relaxed) {
            return;
        }
        let boards = Arc::downgrade(&self.0);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match boards.upgrade() {
                    Some(inner) => inner.tend(),
                    None => break,
                }
            }
        });
    }

    /// The top `first` of (period, category) as `viewer` sees it.
    pub async fn read(
        &self,
        period: LeaderboardPeriod,
        category: Option<&str>,
        first: usize,
        viewer: ObjectId,
    ) -> ApiResult<Board> {
        self.tend();
        let db = &self.0.db;
        let members = members_stamp(&self.0.cache).await?;
        let ranking = self
            .0
            .ranking(&(period, category.map(str::to_string)), members)
            .await?;
        let top = ranking.top(first);
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
        let opted_in: HashMap<ObjectId, UserDoc> =
            opted_in.into_iter().map(|u| (u.id, u)).collect();
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
        let participants = ranking.participants() as i64;
        // An opted-in viewer without activity in the period ranks after
        // every participant.
        let viewer_rank = opted_in
            .contains_key(&viewer)
            .then(|| ranking.rank(viewer).map_or(participants + 1, |r| r as i64));
        Ok(Board {
            entries,
            viewer_rank,
            participants,
        })
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn standing(user_id: ObjectId, completed: i64, time: i64) -> Standing {
        Standing {
            user_id,
            completed,
            time,
        }
    }

    fn base(standings: Vec<Standing>) -> Arc<Base> {
        Arc::new(Base::new(Utc::now(), Vec::new(), None, standings))
    }

    #[test]
    fn rankings_order_by_completions_then_time_then_id() {
        let ids: Vec<ObjectId> = (0..4).map(|_| ObjectId::new()).collect();
        let s = |i: usize, c, t| standing(ids[i], c, t);
        let b = base(vec![s(0, 1, 500), s(1, 2, 10), s(2, 1, 900), s(3, 1, 500)]);
        let r = Ranking::new(1, b, HashSet::new(), Vec::new());
        let order: Vec<ObjectId> = r.top(10).iter().map(|s| s.user_id).collect();
        assert_eq!(order, [ids[1], ids[2], ids[0], ids[3]]);
        assert_eq!(r.rank(ids[3]), Some(4));
        assert_eq!(r.participants(), 4);
    }

    /// The overlay of opt-in changes ranks as a ranking built from scratch
    /// with the same figures would.
    #[test]
    fn opt_in_changes_laid_over_a_base_rank_as_a_rebuild_would() {
        let ids: Vec<ObjectId> = (0..7).map(|_| ObjectId::new()).collect();
        let s = |i: usize, c, t| standing(ids[i], c, t);
        // 0..5 in the base; 1 opts out, 5 and 6 opt in (6 without
        // activity); 3 is hidden and added with other figures (a shape
        // the reads never make, which the merge handles all the same).
        let b = base(vec![
            s(0, 3, 10),
            s(1, 2, 50),
            s(2, 2, 40),
            s(3, 1, 10),
            s(4, 0, 5),
        ]);
        let hidden: HashSet<ObjectId> = [1, 3, 5, 6].iter().map(|&i| ids[i]).collect();
        let added = vec![s(5, 2, 45), s(3, 4, 1)];
        let r = Ranking::new(2, b, hidden, added);
        let rebuilt = Ranking::new(
            2,
            base(vec![
                s(0, 3, 10),
                s(2, 2, 40),
                s(3, 4, 1),
                s(4, 0, 5),
                s(5, 2, 45),
            ]),
            HashSet::new(),
            Vec::new(),
        );
        let ids_of = |r: &Ranking, n| r.top(n).iter().map(|s| s.user_id).collect::<Vec<_>>();
        for n in 0..8 {
            assert_eq!(ids_of(&r, n), ids_of(&rebuilt, n), "top {n}");
        }
        assert_eq!(ids_of(&r, 8), [ids[3], ids[0], ids[5], ids[2], ids[4]]);
        for id in &ids {
            assert_eq!(r.rank(*id), rebuilt.rank(*id), "rank of {id}");
        }
        assert_eq!(r.rank(ids[1]), None, "opted out");
        assert_eq!(r.rank(ids[6]), None, "no activity");
        assert_eq!(r.participants(), 5);
    }

    #[test]
    fn each_pipeline_starts_on_one_indexed_predicate() {
        let (m, u) = ([ObjectId::new()], [ObjectId::new()]);
        let first = |p: Vec<Document>| {
            let stage = p[0].get_document("$match").unwrap().clone();
            stage.keys().cloned().collect::<Vec<_>>()
        };
        assert_eq!(first(pipeline(&m, None, None)), ["module_id"]);
        assert_eq!(first(pipeline(&m, Some(Utc::now()), None)), ["at"]);
        assert_eq!(first(pipeline(&m, Some(Utc::now()), Some(&u))), ["user_id"]);
        let all = pipeline(&m, Some(Utc::now()), Some(&u));
        let rest = all[1].get_document("$match").unwrap();
        assert!(rest.contains_key("at") && rest.contains_key("module_id"));
        assert!(all[2].contains_key("$group"));
    }
}
