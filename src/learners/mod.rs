//! Learners: accounts, progress, statistics and history.

pub mod auth;
pub mod loaders;
pub mod model;
pub mod progress;
pub mod stats;
pub mod users;

use async_graphql::{Context, ID, InputObject, Object, SimpleObject, dataloader::DataLoader};
use bson::oid::ObjectId;

pub use auth::Viewer;
use model::{ActivityDoc, ProgressDoc, UserDoc};
pub use model::{ActivityKind, ProgressStatus, Role};

use crate::{
    cache::{Scope, TtlClass, digest},
    catalogue::{Module, loaders::ModuleLoader},
    error::{ApiError, GqlResult},
    graphql::{
        app,
        pagination::{ActivityConnection, ProgressConnection, page, page_size},
        parse_id, require_viewer,
        scalars::DateTime,
        selects, viewer,
    },
};

/// A user as seen by themself or an admin; never any secret.
#[derive(Clone, Debug)]
pub struct User(pub UserDoc);

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
}

/// Loads the module of a progress or activity entry through the request's
/// loader (one round trip for a page).
async fn module_of(ctx: &Context<'_>, id: ObjectId) -> GqlResult<Module> {
    let loader = ctx.data_unchecked::<DataLoader<ModuleLoader>>();
    match loader.load_one(id).await? {
        Some(m) => Ok(Module::from(m)),
        None => Err(ApiError::NotFound("the module of this entry no longer exists".into()).into()),
    }
}

/// A learner's progress on one module.
#[derive(Clone, Debug)]
pub struct Progress(pub ProgressDoc);

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
    /// Consecutive UTC calendar days with activity, ending today or yesterday.
    async fn current_streak_days(&self) -> i64 {
        self.0.current_streak_days
    }
    /// One entry per category of the published catalogue, sorted by category.
    async fn by_category(&self) -> &[stats::CategoryStats] {
        &self.0.by_category
    }
}

/// One start, progress or completion event.
#[derive(Clone, Debug)]
pub struct ActivityEntry(pub ActivityDoc);

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
}

/// Whose data a learner-scoped field reads: the viewer's own, or (for an
/// admin) the given user's. A learner naming someone else is FORBIDDEN.
fn subject(ctx: &Context<'_>, user_id: Option<ID>) -> GqlResult<ObjectId> {
    let viewer = require_viewer(ctx)?;
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

/// Drops what a progress write makes stale: the learner's stats, progress
/// and history, and the dashboard.
async fn invalidate_learner(ctx: &Context<'_>, user_id: ObjectId) {
    app(ctx)
        .cache
        .invalidate(&[Scope::Learner(user_id), Scope::Dashboard])
        .await;
}

fn token_payload(ctx: &Context<'_>, user: UserDoc) -> GqlResult<AuthPayload> {
    let (token, expires) = app(ctx).tokens.issue(Viewer {
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
        let Some(v) = viewer(ctx) else {
            return Ok(None);
        };
        Ok(users::find_by_id(&app(ctx).db, v.user_id).await?.map(User))
    }

    #[graphql(cache_control(no_cache))]
    async fn availability(
        &self,
        ctx: &Context<'_>,
        email: Option<String>,
        username: Option<String>,
    ) -> GqlResult<Availability> {
        let db = &app(ctx).db;
        let email_available = match email {
            None => None,
            Some(e) => {
                let e = auth::validate_email(&e)?;
                Some(!users::exists(db, "email_lower", &e.to_lowercase()).await?)
            }
        };
        let username_available = match username {
            None => None,
            Some(u) => {
                let u = auth::validate_username(&u)?;
                Some(!users::exists(db, "username_lower", &u.to_lowercase()).await?)
            }
        };
        Ok(Availability {
            email_available,
            username_available,
        })
    }

    /// The signed-in learner's progress, most recently updated first.
    #[graphql(
        complexity = "crate::graphql::page_cost(first, child_complexity)",
        cache_control(no_cache)
    )]
    async fn my_progress(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: Option<i32>,
        after: Option<String>,
        status: Option<ProgressStatus>,
    ) -> GqlResult<ProgressConnection> {
        let viewer = *require_viewer(ctx)?;
        let app = app(ctx);
        let limit = page_size(first)?;
        let scope = serde_json::json!([
            "myProgress",
            viewer.user_id.to_hex(),
            status.map(|s| s.as_str())
        ])
        .to_string();
        let after: Option<progress::ProgressKey> =
            after.map(|c| app.cursors.decode(&scope, &c)).transpose()?;
        let with_total = selects(ctx, "totalCount");
        let key = format!(
            "{}:{}",
            viewer.user_id.to_hex(),
            digest(&(status.map(|s| s.as_str()), &after, limit, with_total))
        );
        let (items, total) = app
            .cache
            .get_or_compute(
                TtlClass::Progress,
                &key,
                &[Scope::Learner(viewer.user_id)],
                || {
                    progress::list(
                        &app.db,
                        viewer.user_id,
                        status,
                        after.as_ref(),
                        limit,
                        with_total,
                    )
                },
            )
            .await?;
        let items: Vec<Progress> = items.into_iter().map(Progress).collect();
        Ok(ProgressConnection::from_page(
            page(&app.cursors, &scope, items, limit, |p: &Progress| {
                progress::progress_key(&p.0)
            }),
            total,
        ))
    }

    /// The signed-in learner's statistics; an admin may pass another userId.
    #[graphql(cache_control(no_cache))]
    async fn progress_stats(
        &self,
        ctx: &Context<'_>,
        user_id: Option<ID>,
    ) -> GqlResult<ProgressStats> {
        let subject = subject(ctx, user_id)?;
        let app = app(ctx);
        let computed = app
            .cache
            .get_or_compute(
                TtlClass::Stats,
                &subject.to_hex(),
                &[Scope::Learner(subject), Scope::Catalogue],
                || stats::compute(&app.db, subject),
            )
            .await?;
        match computed {
            Some(s) => Ok(ProgressStats(s)),
            None => Err(stats::unknown_user().into()),
        }
    }

    /// The signed-in learner's activity, newest first; an admin may pass
    /// another userId.
    #[graphql(
        complexity = "crate::graphql::page_cost(first, child_complexity)",
        cache_control(no_cache)
    )]
    async fn history(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: Option<i32>,
        after: Option<String>,
        user_id: Option<ID>,
    ) -> GqlResult<ActivityConnection> {
        let own = require_viewer(ctx)?.user_id;
        let subject = subject(ctx, user_id)?;
        let app = app(ctx);
        let limit = page_size(first)?;
        let scope = serde_json::json!(["history", subject.to_hex()]).to_string();
        let after: Option<progress::ActivityKey> =
            after.map(|c| app.cursors.decode(&scope, &c)).transpose()?;
        if subject != own && users::find_by_id(&app.db, subject).await?.is_none() {
            return Err(stats::unknown_user().into());
        }
        let key = format!("{}:{}", subject.to_hex(), digest(&(&after, limit)));
        let items = app
            .cache
            .get_or_compute(TtlClass::History, &key, &[Scope::Learner(subject)], || {
                progress::history(&app.db, subject, after.as_ref(), limit)
            })
            .await?;
        let items: Vec<ActivityEntry> = items.into_iter().map(ActivityEntry).collect();
        Ok(ActivityConnection::from_page(page(
            &app.cursors,
            &scope,
            items,
            limit,
            |a: &ActivityEntry| progress::activity_key(&a.0),
        )))
    }
}

/// Registration and login.
#[derive(Default)]
pub struct AuthMutation;

#[Object]
impl AuthMutation {
    /// New users are LEARNERs. Duplicate email or username
    /// (case-insensitive) is CONFLICT.
    async fn register(&self, ctx: &Context<'_>, input: RegisterInput) -> GqlResult<AuthPayload> {
        crate::http::ratelimit::check_auth_attempt(ctx)?;
        let email = auth::validate_email(&input.email)?;
        let username = auth::validate_username(&input.username)?;
        auth::validate_password(&input.password)?;
        let display_name = auth::validate_display_name(input.display_name)?;
        let password_hash = auth::hash_password(input.password).await?;
        let user = users::register(
            &app(ctx).db,
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
        crate::http::ratelimit::check_auth_attempt(ctx)?;
        let wrong = || ApiError::Unauthenticated("wrong login or password".into());
        if input.login.len() > 254 || input.password.chars().count() > 1024 {
            return Err(wrong().into());
        }
        let found = users::find_credentials(&app(ctx).db, &input.login).await?;
        let (user, hash) = match found {
            Some(c) => (Some(c.user), c.password_hash),
            None => (None, None),
        };
        let ok = auth::verify_password(input.password, hash).await?;
        match user {
            Some(user) if ok => token_payload(ctx, user),
            _ => Err(wrong().into()),
        }
    }
}

/// Progress writes.
#[derive(Default)]
pub struct ProgressMutation;

#[Object]
impl ProgressMutation {
    /// Idempotent: starting a started module returns its progress unchanged.
    async fn start_module(&self, ctx: &Context<'_>, module_id: ID) -> GqlResult<Progress> {
        let viewer = *require_viewer(ctx)?;
        let module_id = parse_id(&module_id, "moduleId")?;
        let db = &app(ctx).db;
        if !progress::module_is_published(db, module_id).await? {
            return Err(ApiError::NotFound("no such module".into()).into());
        }
        let started = progress::start(db, viewer.user_id, module_id).await;
        invalidate_learner(ctx, viewer.user_id).await;
        Ok(Progress(started?))
    }

    /// Starts the module if needed, adds the time, keeps the best score,
    /// appends an activity entry.
    async fn record_progress(
        &self,
        ctx: &Context<'_>,
        input: ProgressInput,
    ) -> GqlResult<Progress> {
        let viewer = *require_viewer(ctx)?;
        let module_id = parse_id(&input.module_id, "moduleId")?;
        let report = progress::Report::new(
            module_id,
            input.time_spent_seconds,
            input.score,
            input.completed,
        )?;
        let db = &app(ctx).db;
        if !progress::module_is_published(db, module_id).await? {
            return Err(ApiError::NotFound("no such module".into()).into());
        }
        let recorded = progress::record(db, viewer.user_id, report).await;
        // Also after a failure: part of the write may have landed.
        invalidate_learner(ctx, viewer.user_id).await;
        Ok(Progress(recorded?))
    }
}
