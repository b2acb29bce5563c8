//! The analytics' GraphQL face: a learner's activity per day, a period
//! against the one before, and the opt-in leaderboards. Data access is in
//! `analytics` and `leaderboard`; cache rules in `service`.

use async_graphql::{Context, ID, Object, SimpleObject};

use super::{
    analytics::{self, Day, Period},
    graphql::subject,
    leaderboard::{LeaderboardPeriod, Leaderboards},
    service,
};
use crate::{
    error::{ApiError, GqlResult},
    graphql::{
        ContextExt,
        cost::directive::{cost, list_size},
        scalars::DateTime,
    },
};

/// The declared cost of the analytics reads: each is one aggregation over
/// the learner's activity (the leaderboard's, over every opted-in
/// learner's, on a miss), priced as `progressStats` is.
const AGGREGATION_COST: u32 = 10;

/// The most days `activitySeries` returns: a range of 366 days that does
/// not start at the learner's midnight touches 367 dates.
const MAX_SERIES_DAYS: u32 = analytics::MAX_RANGE_DAYS as u32 + 1;

/// One calendar day of a learner's activity, in the learner's time zone.
pub struct ActivityDay(Day);

#[Object]
impl ActivityDay {
    /// YYYY-MM-DD in the learner's time zone.
    async fn date(&self) -> String {
        self.0.date.format("%Y-%m-%d").to_string()
    }
    async fn time_spent_seconds(&self) -> i64 {
        self.0.time_spent_seconds
    }
    /// Activity entries that day.
    async fn events(&self) -> i64 {
        self.0.events
    }
    /// Modules completed that day.
    async fn completions(&self) -> i64 {
        self.0.completions
    }
}

/// A learner's figures over the range [from, to).
pub struct PeriodStats(Period);

#[Object]
impl PeriodStats {
    async fn from(&self) -> DateTime {
        self.0.from.into()
    }
    async fn to(&self) -> DateTime {
        self.0.to.into()
    }
    async fn time_spent_seconds(&self) -> i64 {
        self.0.time_spent_seconds
    }
    async fn modules_completed(&self) -> i64 {
        self.0.modules_completed
    }
    /// Days (in the learner's time zone) with at least one activity entry.
    async fn active_days(&self) -> i64 {
        self.0.active_days
    }
    /// Mean of the scores reported in the range; null when none.
    async fn average_score(&self) -> Option<f64> {
        self.0.average_score
    }
}

/// A range and the range of the same length just before it.
#[derive(SimpleObject)]
pub struct PeriodComparison {
    current: PeriodStats,
    previous: PeriodStats,
}

/// One listed learner.
#[derive(SimpleObject)]
pub struct LeaderboardEntry {
    rank: i64,
    /// Display name, or username when none. Only learners who opted in
    /// are ever listed.
    name: String,
    modules_completed: i64,
    time_spent_seconds: i64,
    is_viewer: bool,
}

/// Learners who opted in, ranked by modules completed in the period, then
/// time spent.
#[derive(SimpleObject)]
pub struct Leaderboard {
    period: LeaderboardPeriod,
    category: Option<String>,
    entries: Vec<LeaderboardEntry>,
    /// The viewer's rank; null when the viewer has not opted in (an
    /// opted-in viewer without activity in the period ranks last).
    viewer_rank: Option<i64>,
    /// Learners who opted in and have activity in the period.
    participants: i64,
}

/// Largest `first` of a leaderboard.
const MAX_LEADERBOARD: i32 = 100;

/// Analytics queries.
#[derive(Default)]
pub struct AnalyticsQuery;

#[Object]
impl AnalyticsQuery {
    /// One entry per day in [from, to) (at most 366 days), days without
    /// activity included; an admin may pass another userId.
    #[graphql(
        cache_control(no_cache),
        directive = cost::apply(AGGREGATION_COST),
        // Its length is set by `from` and `to`: priced at the most days,
        // charged the days returned.
        directive = list_size::apply(Some(MAX_SERIES_DAYS), None)
    )]
    async fn activity_series(
        &self,
        ctx: &Context<'_>,
        from: DateTime,
        to: DateTime,
        user_id: Option<ID>,
    ) -> GqlResult<Vec<ActivityDay>> {
        let subject = subject(ctx, user_id)?;
        let days = service::activity_series(ctx.db(), ctx.cache(), subject, from.0, to.0).await?;
        Ok(days.into_iter().map(ActivityDay).collect())
    }

    /// Figures over [from, to) and over the range of the same length
    /// before it; an admin may pass another userId.
    #[graphql(cache_control(no_cache), directive = cost::apply(AGGREGATION_COST))]
    async fn period_stats(
        &self,
        ctx: &Context<'_>,
        from: DateTime,
        to: DateTime,
        user_id: Option<ID>,
    ) -> GqlResult<PeriodComparison> {
        let subject = subject(ctx, user_id)?;
        let (current, previous) =
            service::period_comparison(ctx.db(), ctx.cache(), subject, from.0, to.0).await?;
        Ok(PeriodComparison {
            current: PeriodStats(current),
            previous: PeriodStats(previous),
        })
    }

    /// Signed-in callers only. `first` is 1–100.
    #[graphql(
        cache_control(no_cache),
        directive = cost::apply(AGGREGATION_COST),
        // `entries` holds at most `first` learners.
        directive = list_size::apply(None, Some(vec!["entries".to_string()]))
    )]
    async fn leaderboard(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "Some(LeaderboardPeriod::Week)")] period: Option<
            LeaderboardPeriod,
        >,
        category: Option<String>,
        #[graphql(default = 10)] first: Option<i32>,
    ) -> GqlResult<Leaderboard> {
        let viewer = ctx.require_viewer()?;
        let first = first.unwrap_or(10);
        if !(1..=MAX_LEADERBOARD).contains(&first) {
            return Err(ApiError::bad_input("`first` must be between 1 and 100").into());
        }
        let period = period.unwrap_or(LeaderboardPeriod::Week);
        let board = ctx
            .data_unchecked::<Leaderboards>()
            .read(period, category.as_deref(), first as usize, viewer.user_id)
            .await?;
        Ok(Leaderboard {
            period,
            category,
            entries: board
                .entries
                .into_iter()
                .map(|e| LeaderboardEntry {
                    rank: e.rank,
                    name: e.name,
                    modules_completed: e.modules_completed,
                    time_spent_seconds: e.time_spent_seconds,
                    is_viewer: e.is_viewer,
                })
                .collect(),
            viewer_rank: board.viewer_rank,
            participants: board.participants,
        })
    }
}
