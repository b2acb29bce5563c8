//! `kairos seed`: deterministic demo data of any size.
//!
//! The same flags always give the same documents (fixed RNG seed and
//! ObjectIds derived from counters), so demos, tests and load tests can
//! rely on them. Inserts are batched and unordered; the password is hashed
//! once and reused for every seeded user.

use bson::{Document, doc, oid::ObjectId};
use chrono::{Duration, Utc};
use rand::{Rng, SeedableRng, rngs::StdRng};

use crate::{
    auth::{Role, password::hash_password_blocking},
    db::{Db, names},
    learners::users::{NewUser, user_document},
};

/// The password of every seeded user.
pub const DEMO_PASSWORD: &str = "kairos-demo-password";
/// The seeded admin's login.
pub const DEMO_ADMIN: &str = "admin";

/// What to seed.
#[derive(Debug, Clone, clap::Args)]
pub struct SeedOptions {
    /// Learners to create (plus one admin).
    #[arg(long, default_value_t = 100)]
    pub users: u64,
    /// Modules in the catalogue (every tenth is unpublished).
    #[arg(long, default_value_t = 40)]
    pub modules: u64,
    /// Progress entries per learner (capped by the published modules).
    #[arg(long, default_value_t = 8)]
    pub progress_per_user: u64,
    /// Approximate size of each module's content, in bytes.
    #[arg(long, default_value_t = 20_000)]
    pub content_bytes: usize,
    /// Drop the existing users, modules, progress, activity and notifications first.
    #[arg(long)]
    pub reset: bool,
    /// Documents per insert batch.
    #[arg(long, default_value_t = 5_000)]
    pub batch: usize,
}

/// Counts of what was written.
#[derive(Debug, Default, Clone, Copy)]
pub struct SeedReport {
    pub users: u64,
    pub modules: u64,
    pub progress: u64,
    pub activity: u64,
    pub notifications: u64,
}

/// A deterministic ObjectId: a fixed timestamp, a kind byte and a counter.
pub fn seeded_id(kind: u8, n: u64) -> ObjectId {
    let mut bytes = [0u8; 12];
    bytes[..4].copy_from_slice(&0x6700_0000u32.to_be_bytes());
    bytes[4] = kind;
    bytes[5..].copy_from_slice(&n.to_be_bytes()[1..]);
    ObjectId::from_bytes(bytes)
}

const LEVELS: [&str; 3] = ["beginner", "intermediate", "advanced"];
const CATEGORIES: [&str; 6] = ["databases", "devops", "rust", "security", "testing", "web"];
const TOPICS: [&str; 12] = [
    "Foundations",
    "Ownership",
    "Indexes",
    "Pipelines",
    "Caching",
    "Observability",
    "Concurrency",
    "Deployment",
    "Threat Models",
    "Property Tests",
    "HTTP",
    "Schemas",
];
const WORDS: [&str; 24] = [
    "learners",
    "module",
    "practice",
    "example",
    "query",
    "index",
    "latency",
    "cache",
    "design",
    "review",
    "measure",
    "exercise",
    "concept",
    "pattern",
    "failure",
    "recovery",
    "throughput",
    "structure",
    "careful",
    "simple",
    "reliable",
    "data",
    "service",
    "test",
];

fn content(rng: &mut StdRng, bytes: usize) -> String {
    let mut out = String::with_capacity(bytes + 200);
    let mut section = 1;
    while out.len() < bytes {
        out.push_str(&format!("## Part {section}\n\n"));
        for _ in 0..6 {
            let n = rng.gen_range(8..20);
            let sentence: Vec<&str> = (0..n)
                .map(|_| WORDS[rng.gen_range(0..WORDS.len())])
                .collect();
            out.push_str(&sentence.join(" "));
            out.push_str(". ");
        }
        out.push_str("\n\n");
        section += 1;
    }
    out
}

async fn insert_batched(
    db: &Db,
    collection: &str,
    docs: &mut Vec<Document>,
    batch: usize,
    force: bool,
) -> anyhow::Result<()> {
    if docs.is_empty() || (!force && docs.len() < batch) {
        return Ok(());
    }
    db.raw(collection)
        .insert_many(std::mem::take(docs))
        .ordered(false)
        .await?;
    Ok(())
}

/// Seeds the database.
pub async fn seed(db: &Db, opts: &SeedOptions) -> anyhow::Result<SeedReport> {
    if opts.reset {
        for name in names::ALL {
            db.raw(name).delete_many(doc! {}).await?;
        }
    } else if db.raw(names::USERS).estimated_document_count().await? > 0 {
        anyhow::bail!(
            "the database already has users; pass --reset to replace them with demo data"
        );
    }
    let mut rng = StdRng::seed_from_u64(42);
    let mut report = SeedReport::default();
    let now = Utc::now();
    let batch = opts.batch.max(1);

    // Modules.
    let mut published = Vec::new();
    let mut docs = Vec::new();
    for i in 0..opts.modules {
        let id = seeded_id(2, i);
        let category = CATEGORIES[(i as usize) % CATEGORIES.len()];
        let topic = TOPICS[(i as usize / CATEGORIES.len()) % TOPICS.len()];
        let is_published = i % 10 != 9;
        if is_published {
            published.push((id, category));
        }
        let created =
            bson::DateTime::from_chrono(now - Duration::days(90) + Duration::hours(i as i64));
        docs.push(doc! {
            "_id": id,
            "slug": format!("{category}-{}-{i}", topic.to_lowercase().replace(' ', "-")),
            "title": format!("{} {topic} {}", capitalize(category), i + 1),
            "summary": format!("A practical module on {} for {category} learners.", topic.to_lowercase()),
            "category": category,
            "level": LEVELS[(i % 3) as usize],
            "tags": [category, topic.to_lowercase(), if i % 2 == 0 { "hands-on" } else { "theory" }],
            "duration_minutes": 15 + (i % 8) as i32 * 15,
            "position": i as i32,
            "published": is_published,
            "content": content(&mut rng, opts.content_bytes),
            "created_at": created,
            "updated_at": created,
        });
        report.modules += 1;
        insert_batched(db, names::MODULES, &mut docs, 200, false).await?;
    }
    insert_batched(db, names::MODULES, &mut docs, batch, true).await?;

    // Users: one admin and the learners, sharing one password hash.
    let hash =
        hash_password_blocking(DEMO_PASSWORD).map_err(|e| anyhow::anyhow!("{}", e.message()))?;
    let created = bson::DateTime::from_chrono(now - Duration::days(120));
    let admin = NewUser {
        email: "admin@kairos.test".into(),
        username: DEMO_ADMIN.into(),
        display_name: Some("Demo Admin".into()),
        password_hash: hash.clone(),
        role: Role::Admin,
    };
    docs.push(user_document(seeded_id(1, 0), &admin, created));
    report.users += 1;

    let mut progress = Vec::new();
    let mut activity = Vec::new();
    let mut notes = Vec::new();
    for u in 1..=opts.users {
        let user_id = seeded_id(1, u);
        let name = format!("learner{u:06}");
        let learner = NewUser {
            email: format!("{name}@kairos.test"),
            username: name.clone(),
            display_name: Some(format!("Learner {u}")),
            password_hash: hash.clone(),
            role: Role::Learner,
        };
        docs.push(user_document(user_id, &learner, created));
        report.users += 1;

        let take = (opts.progress_per_user as usize).min(published.len());
        let start = if published.is_empty() {
            0
        } else {
            rng.gen_range(0..published.len())
        };
        for k in 0..take {
            let (module_id, _) = published[(start + k) % published.len()];
            let n = report.progress;
            let days_ago = rng.gen_range(0..30);
            let started = now - Duration::days(days_ago) - Duration::minutes(rng.gen_range(0..600));
            let attempts: i64 = rng.gen_range(1..5);
            let completed = rng.gen_bool(0.4);
            let scored = rng.gen_bool(0.7);
            let score = scored.then(|| f64::from(rng.gen_range(40..=100)));
            let per_attempt: i64 = rng.gen_range(60..900);
            let updated = started + Duration::minutes(attempts * 20);
            let mut p = doc! {
                "_id": seeded_id(3, n),
                "user_id": user_id,
                "module_id": module_id,
                "status": if completed { "completed" } else { "in_progress" },
                "time_spent_seconds": per_attempt * attempts,
                "attempts": attempts,
                "started_at": bson::DateTime::from_chrono(started),
                "updated_at": bson::DateTime::from_chrono(updated),
            };
            if let Some(s) = score {
                p.insert("score", s);
            }
            if completed {
                p.insert("completed_at", bson::DateTime::from_chrono(updated));
            }
            progress.push(p);
            report.progress += 1;
            activity.push(doc! {
                "_id": seeded_id(4, report.activity), "user_id": user_id, "module_id": module_id,
                "kind": "started", "at": bson::DateTime::from_chrono(started), "time_spent_seconds": 0_i64,
            });
            report.activity += 1;
            for a in 1..=attempts {
                let last = a == attempts;
                let mut entry = doc! {
                    "_id": seeded_id(4, report.activity), "user_id": user_id, "module_id": module_id,
                    "kind": if last && completed { "completed" } else { "progressed" },
                    "at": bson::DateTime::from_chrono(started + Duration::minutes(a * 20)),
                    "time_spent_seconds": per_attempt,
                };
                if let (true, Some(s)) = (last, score) {
                    entry.insert("score", s);
                }
                activity.push(entry);
                report.activity += 1;
            }
        }
        notes.push(doc! {
            "_id": seeded_id(5, report.notifications), "user_id": user_id,
            "message": "Welcome to Kairos! Pick a module to start.", "read": u % 3 == 0,
            "created_at": created,
        });
        report.notifications += 1;
        if let Some(&(module_id, category)) = published.get((u as usize) % published.len().max(1)) {
            notes.push(doc! {
                "_id": seeded_id(5, report.notifications), "user_id": user_id, "module_id": module_id,
                "message": format!("A new {category} module is available."), "read": false,
                "created_at": bson::DateTime::from_chrono(now - Duration::days(1)),
            });
            report.notifications += 1;
        }
        insert_batched(db, names::USERS, &mut docs, batch, false).await?;
        insert_batched(db, names::PROGRESS, &mut progress, batch, false).await?;
        insert_batched(db, names::ACTIVITY, &mut activity, batch, false).await?;
        insert_batched(db, names::NOTIFICATIONS, &mut notes, batch, false).await?;
    }
    insert_batched(db, names::USERS, &mut docs, batch, true).await?;
    insert_batched(db, names::PROGRESS, &mut progress, batch, true).await?;
    insert_batched(db, names::ACTIVITY, &mut activity, batch, true).await?;
    insert_batched(db, names::NOTIFICATIONS, &mut notes, batch, true).await?;
    Ok(report)
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_ids_are_stable_and_distinct() {
        assert_eq!(seeded_id(1, 7), seeded_id(1, 7));
        assert_ne!(seeded_id(1, 7), seeded_id(2, 7));
        assert_ne!(seeded_id(1, 7), seeded_id(1, 8));
    }

    #[test]
    fn content_reaches_the_requested_size() {
        let mut rng = StdRng::seed_from_u64(1);
        let c = content(&mut rng, 20_000);
        assert!(c.len() >= 20_000 && c.len() < 21_000);
    }
}
