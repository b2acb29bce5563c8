//! The learners' GraphQL face: users, progress, statistics, history,
//! registration and login. Data access is in `users`, `progress` and
//! `stats`; cache rules and progress writes in `service`.

use async_graphql::{Context, ID, InputObject, Object, SimpleObject, Subscription};
use bson::oid::ObjectId;
use futures::{StreamExt, stream::BoxStream};

use super::{
    credentials,
    model::{ActivityDoc, ActivityKind, ProgressDoc, ProgressStatus, Role, UserDoc},
    progress, service, stats, users, zone,
};
use crate::{
    auth::{Viewer, password},
    catalogue::{Module, ModuleLoader},
    error::{ApiError, GqlResult},
    graphql::{
        ContextExt,
        cost::directive::cost,
        pagination::{Connection, Node, TotalCount, page, page_size},
        parse_id,
        scalars::DateTime,
    },
};

/// The declared cost of `progressStats`: one aggregation over the learner's
/// progress and the catalogue, priced as ten object reads.
const STATS_COST: u32 = 10;

/// A user as seen by themself or an admin; never any secret.
#[derive(Clone, Debug)]
pub struct User(pub UserDoc);

impl Node for User {
    const LIST_NAME: &'static str = "User";
}

#[Object]
impl User {
    async fn id(&self) -> ID {
        ID(self.0.id.to_hex())
    }
    async fn email(&self) -> &str {
        &self.0.email
    }
    async fn username(&self) -> &str {
        &self.0.username
    }
    async fn display_name(&self) -> Option<&str> {
        self.0.display_name.as_deref()
    }
    async fn role(&self) -> Role {
        self.0.role
    }
    async fn created_at(&self) -> DateTime {
        self.0.created_at.into()
    }
    /// IANA time zone name; "UTC" until the user sets one. Days, streaks
    /// and activity series are counted in it.
    async fn time_zone(&self) -> &str {
        &self.0.time_zone
    }
    /// Whether the user appears on leaderboards; false until they opt in.
    async fn leaderboard_opt_in(&self) -> bool {
        self.0.leaderboard_opt_in
    }
}

/// Loads the module of a progress or activity entry through the request's
/// loader (one round trip for a page).
async fn module_of(ctx: &Context<'_>, id: ObjectId) -> GqlResult<Module> {
    match ctx.loader::<ModuleLoader>().load_one(id).await? {
        Some(m) => Ok(Module::from(m)),
        None => Err(ApiError::NotFound("the module of this entry no longer exists".into()).into()),
    }
}

/// A learner's progress on one module.
#[derive(Clone, Debug)]
pub struct Progress(pub ProgressDoc);

impl Node for Progress {
    const LIST_NAME: &'static str = "Progress";
}

impl From<ProgressDoc> for Progress {
    fn from(doc: ProgressDoc) -> Self {
        Progress(doc)
    }
}

#[Object]
impl Progress {
    async fn module(&self, ctx: &Context<'_>) -> GqlResult<Module> {
        module_of(ctx, self.0.module_id).await
    }
    async fn status(&self) -> ProgressStatus {
        self.0.status
    }
    /// Best score so far, 0–100; null until the learner is scored.
    async fn score(&self) -> Option<f64> {
        self.0.score
    }
    async fn time_spent_seconds(&self) -> i64 {
        self.0.time_spent_seconds
    }
    async fn attempts(&self) -> i64 {
        self.0.attempts
    }
    async fn started_at(&self) -> DateTime {
        self.0.started_at.into()
    }
    async fn completed_at(&self) -> Option<DateTime> {
        self.0.completed_at.map(Into::into)
    }
    async fn updated_at(&self) -> DateTime {
        self.0.updated_at.into()
    }
}

/// One learner's statistics, computed by one aggregation on a miss.
#[derive(Clone, Debug)]
pub struct ProgressStats(pub stats::Stats);

#[Object]
impl ProgressStats {
    /// Published modules in the catalogue.
    async fn modules_total(&self) -> i64 {
        self.0.modules_total
    }
    /// Published modules the learner has started (in progress or completed).
    async fn modules_started(&self) -> i64 {
        self.0.modules_started
    }
    async fn modules_in_progress(&self) -> i64 {
        self.0.modules_in_progress
    }
    async fn modules_completed(&self) -> i64 {
        self.0.modules_completed
    }
    /// modulesCompleted / modulesTotal, between 0 and 1; 0 when modulesTotal is 0.
    async fn completion_rate(&self) -> f64 {
        self.0.completion_rate
    }
    async fn total_time_seconds(&self) -> i64 {
        self.0.total_time_seconds
    }
    /// Mean of the non-null scores of the learner's published modules.
    async fn average_score(&self) -> Option<f64> {
        self.0.average_score
    }
    async fn last_activity_at(&self) -> Option<DateTime> {
        self.0.last_activity_at.map(Into::into)
    }
    /// Consecutive calendar days (in the learner's time zone) with at
    /// least one activity entry, ending today or yesterday; 0 otherwise.
    async fn current_streak_days(&self) -> i64 {
        self.0.current_streak_days
    }
    /// The longest run of such days ever.
    async fn longest_streak_days(&self) -> i64 {
        self.0.longest_streak_days
    }
    /// One entry per category of the published catalogue, sorted by category.
    async fn by_category(&self) -> &[stats::CategoryStats] {
        &self.0.by_category
    }
}

/// One start, progress or completion event.
#[derive(Clone, Debug)]
pub struct ActivityEntry(pub ActivityDoc);

impl Node for ActivityEntry {
    const LIST_NAME: &'static str = "Activity";
}

#[Object]
impl ActivityEntry {
    async fn id(&self) -> ID {
        ID(self.0.id.to_hex())
    }
    async fn module(&self, ctx: &Context<'_>) -> GqlResult<Module> {
        module_of(ctx, self.0.module_id).await
    }
    async fn kind(&self) -> ActivityKind {
        self.0.kind
    }
    async fn at(&self) -> DateTime {
        self.0.at.into()
    }
    /// Seconds added by this event (0 for STARTED).
    async fn time_spent_seconds(&self) -> i64 {
        self.0.time_spent_seconds
    }
    async fn score(&self) -> Option<f64> {
        self.0.score
    }
}

/// Whether an email or username is still free.
#[derive(SimpleObject)]
pub struct Availability {
    /// Null when the argument was not given. Comparison is case-insensitive.
    email_available: Option<bool>,
    username_available: Option<bool>,
}

/// A token and the user it signs in.
#[derive(SimpleObject)]
pub struct AuthPayload {
    token: String,
    expires_at: DateTime,
    user: User,
}

#[derive(InputObject)]
pub struct RegisterInput {
    email: String,
    /// 3–32 characters of letters, digits, '_', '.', '-'.
    username: String,
    /// At least 10 characters.
    password: String,
    display_name: Option<String>,
}

#[derive(InputObject)]
pub struct LoginInput {
    /// Email or username, case-insensitive.
    login: String,
    password: String,
}

#[derive(InputObject)]
pub struct ProgressInput {
    module_id: ID,
    /// Seconds spent since the last report, 0 to 86400.
    time_spent_seconds: i32,
    /// 0–100; the stored score is the best one reported.
    score: Option<f64>,
    /// true marks the module COMPLETED (it stays completed).
    #[graphql(default_with = "Some(false)")]
    completed: Option<bool>,
    /// Optional, chosen by the client for each report (1–64 characters).
    /// The same report sent again with the same key by the same learner
    /// returns the first answer and changes nothing (keys are kept 24
    /// hours), so a client may retry a report whose answer it never
    /// received.
    idempotency_key: Option<String>,
}

/// Whose data a learner-scoped field reads: the viewer's own, or (for an
/// admin) the given user's. A learner naming someone else is FORBIDDEN.
pub(super) fn subject(ctx: &Context<'_>, user_id: Option<ID>) -> GqlResult<ObjectId> {
    let viewer = ctx.require_viewer()?;
    match user_id {
        None => Ok(viewer.user_id),
        Some(id) => {
            let id = parse_id(&id, "userId")?;
            if id == viewer.user_id || viewer.role == Role::Admin {
                Ok(id)
            } else {
                Err(ApiError::forbidden().into())
            }
        }
    }
}

fn token_payload(ctx: &Context<'_>, user: UserDoc) -> GqlResult<AuthPayload> {
    let (token, expires) = ctx.services().tokens.issue(Viewer {
        user_id: user.id,
        role: user.role,
    })?;
    Ok(AuthPayload {
        token,
        expires_at: expires.into(),
        user: User(user),
    })
}

/// Learner queries.
#[derive(Default)]
pub struct LearnerQuery;

#[Object]
impl LearnerQuery {
    /// The signed-in user, or null for an anonymous caller.
    #[graphql(cache_control(no_cache))]
    async fn me(&self, ctx: &Context<'_>) -> GqlResult<Option<User>> {
        let Some(v) = ctx.viewer() else {
            return Ok(None);
        };
        Ok(users::find_by_id(ctx.db(), v.user_id).await?.map(User))
    }

    #[graphql(cache_control(no_cache))]
    async fn availability(
        &self,
        ctx: &Context<'_>,
        email: Option<String>,
        username: Option<String>,
    ) -> GqlResult<Availability> {
        let db = ctx.db();
        let email_available = match email {
            None => None,
            Some(e) => {
                let e = credentials::validate_email(&e)?;
                Some(!users::exists(db, "email_lower", &e.to_lowercase()).await?)
            }
        };
        let username_available = match username {
            None => None,
            Some(u) => {
                let u = credentials::validate_username(&u)?;
                Some(!users::exists(db, "username_lower", &u.to_lowercase()).await?)
            }
        };
        Ok(Availability {
            email_available,
            username_available,
        })
    }

    /// The signed-in learner's progress, most recently updated first.
    #[graphql(cache_control(no_cache))]
    async fn my_progress(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: Option<i32>,
        after: Option<String>,
        status: Option<ProgressStatus>,
    ) -> GqlResult<Connection<Progress, TotalCount>> {
        let viewer = ctx.require_viewer()?;
        let limit = page_size(first)?;
        let scope = serde_json::json!([
            "myProgress",
            viewer.user_id.to_hex(),
            status.map(|s| s.as_str())
        ])
        .to_string();
        let after: Option<progress::ProgressKey> = after
            .map(|c| ctx.cursors().decode(&scope, &c))
            .transpose()?;
        let with_total = ctx.selects("totalCount");
        let q = progress::ProgressPage {
            status,
            after,
            limit,
            with_total,
        };
        let (items, total) =
            service::progress_page(ctx.db(), ctx.cache(), viewer.user_id, &q).await?;
        let items: Vec<Progress> = items.into_iter().map(Progress).collect();
        Ok(Connection::with_total(
            page(ctx.cursors(), &scope, items, limit, |p: &Progress| {
                progress::progress_key(&p.0)
            }),
            total,
        ))
    }

    /// The signed-in learner's statistics; an admin may pass another userId.
    #[graphql(cache_control(no_cache), directive = cost::apply(STATS_COST))]
    async fn progress_stats(
        &self,
        ctx: &Context<'_>,
        user_id: Option<ID>,
    ) -> GqlResult<ProgressStats> {
        let subject = subject(ctx, user_id)?;
        Ok(ProgressStats(
            service::statistics(ctx.db(), ctx.cache(), subject).await?,
        ))
    }

    /// The signed-in learner's activity, newest first; an admin may pass
    /// another userId.
    #[graphql(cache_control(no_cache))]
    async fn history(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: Option<i32>,
        after: Option<String>,
        user_id: Option<ID>,
    ) -> GqlResult<Connection<ActivityEntry>> {
        let own = ctx.require_viewer()?.user_id;
        let subject = subject(ctx, user_id)?;
        let limit = page_size(first)?;
        let scope = serde_json::json!(["history", subject.to_hex()]).to_string();
        let after: Option<progress::ActivityKey> = after
            .map(|c| ctx.cursors().decode(&scope, &c))
            .transpose()?;
        if subject != own && users::find_by_id(ctx.db(), subject).await?.is_none() {
            return Err(stats::unknown_user().into());
        }
        let items =
            service::history_page(ctx.db(), ctx.cache(), subject, after.as_ref(), limit).await?;
        let items: Vec<ActivityEntry> = items.into_iter().map(ActivityEntry).collect();
        Ok(Connection::from_page(page(
            ctx.cursors(),
            &scope,
            items,
            limit,
            |a: &ActivityEntry| progress::activity_key(&a.0),
        )))
    }
}

/// The signed-in user's own settings; fields left out are unchanged.
#[derive(InputObject)]
pub struct UpdateMeInput {
    /// Empty or blank clears it.
    display_name: Option<String>,
    /// An IANA time zone name; an unknown one is BAD_USER_INPUT.
    time_zone: Option<String>,
    leaderboard_opt_in: Option<bool>,
}

/// Registration, login and the user's own settings.
#[derive(Default)]
pub struct AuthMutation;

#[Object]
impl AuthMutation {
    /// New users are LEARNERs. Duplicate email or username
    /// (case-insensitive) is CONFLICT.
    async fn register(&self, ctx: &Context<'_>, input: RegisterInput) -> GqlResult<AuthPayload> {
        check_auth_attempt(ctx)?;
        let email = credentials::validate_email(&input.email)?;
        let username = credentials::validate_username(&input.username)?;
        credentials::validate_password(&input.password)?;
        let display_name = credentials::validate_display_name(input.display_name)?;
        let password_hash = password::hash_password(input.password).await?;
        let user = users::register(
            ctx.db(),
            users::NewUser {
                email,
                username,
                display_name,
                password_hash,
                role: Role::Learner,
            },
        )
        .await?;
        token_payload(ctx, user)
    }

    /// Wrong login or password is UNAUTHENTICATED with the same message
    /// for both cases.
    async fn login(&self, ctx: &Context<'_>, input: LoginInput) -> GqlResult<AuthPayload> {
        check_auth_attempt(ctx)?;
        let wrong = || ApiError::Unauthenticated("wrong login or password".into());
        if input.login.len() > 254 || input.password.chars().count() > 1024 {
            return Err(wrong().into());
        }
        let found = users::find_credentials(ctx.db(), &input.login).await?;
        let (user, hash) = match found {
            Some(c) => (Some(c.user), c.password_hash),
            None => (None, None),
        };
        let ok = password::verify_password(input.password, hash).await?;
        match user {
            Some(user) if ok => token_payload(ctx, user),
            _ => Err(wrong().into()),
        }
    }
}

#[Object]
impl AccountMutation {
    /// The signed-in user's own settings; fields left out are unchanged.
    async fn update_me(&self, ctx: &Context<'_>, input: UpdateMeInput) -> GqlResult<User> {
        let viewer = ctx.require_viewer()?;
        let settings = users::Settings {
            display_name: input
                .display_name
                .map(|n| credentials::validate_display_name(Some(n)))
                .transpose()?,
            time_zone: input
                .time_zone
                .map(|z| zone::parse(z.trim()).map(|tz| tz.name().to_string()))
                .transpose()?,
            leaderboard_opt_in: input.leaderboard_opt_in,
        };
        let user =
            service::update_settings(ctx.db(), ctx.cache(), viewer.user_id, &settings).await?;
        Ok(User(user))
    }
}

/// The user's own settings.
#[derive(Default)]
pub struct AccountMutation;

/// Progress as it changes, from any device and any instance.
#[derive(Default)]
pub struct ProgressSubscription;

#[Subscription]
impl ProgressSubscription {
    /// The signed-in learner's progress as it changes; an admin may pass
    /// another userId (FORBIDDEN for anyone else, as for queries).
    async fn progress_changed(
        &self,
        ctx: &Context<'_>,
        user_id: Option<ID>,
    ) -> async_graphql::Result<BoxStream<'static, Progress>> {
        let subject = subject(ctx, user_id)?;
        Ok(ctx
            .services()
            .live
            .subscribe(crate::live::Topic::Progress, subject)
            .filter_map(|doc| {
                std::future::ready(
                    bson::from_document::<ProgressDoc>((*doc).clone())
                        .ok()
                        .map(Progress),
                )
            })
            .boxed())
    }
}

/// Progress writes.
#[derive(Default)]
pub struct ProgressMutation;

#[Object]
impl ProgressMutation {
    /// Idempotent: starting a started module returns its progress unchanged.
    async fn start_module(&self, ctx: &Context<'_>, module_id: ID) -> GqlResult<Progress> {
        let viewer = ctx.require_viewer()?;
        let module_id = parse_id(&module_id, "moduleId")?;
        let started = service::start(
            ctx.db(),
            ctx.cache(),
            &ctx.services().events,
            viewer.user_id,
            module_id,
        )
        .await?;
        Ok(Progress(started))
    }

    /// Starts the module if needed, adds the time, keeps the best score,
    /// appends an activity entry.
    async fn record_progress(
        &self,
        ctx: &Context<'_>,
        input: ProgressInput,
    ) -> GqlResult<Progress> {
        let viewer = ctx.require_viewer()?;
        let module_id = parse_id(&input.module_id, "moduleId")?;
        let report = progress::Report::new(
            module_id,
            input.time_spent_seconds,
            input.score,
            input.completed,
            input.idempotency_key,
        )?;
        let recorded = service::record(
            ctx.db(),
            ctx.cache(),
            &ctx.services().events,
            viewer.user_id,
            report,
        )
        .await?;
        Ok(Progress(recorded))
    }
}

/// Called first by `login` and `register`: RATE_LIMITED when the caller's
/// address has used up its attempts for now.
fn check_auth_attempt(ctx: &Context<'_>) -> Result<(), ApiError> {
    let Some(addr) = ctx.client_addr() else {
        return Ok(());
    };
    let services = ctx.services();
    services.auth_limiter.check(addr).map_err(|wait| {
        services.metrics.rate_limited("auth");
        ApiError::RateLimited(format!(
            "too many sign-in attempts from this address: retry in {} s",
            wait.as_secs().max(1)
        ))
    })
}
