//! Index bootstrap against the surrogate: apply, check, drift.

use bson::doc;
use kairos::db::{
    Db,
    indexes::{self, Outcome},
};

use crate::helpers::{test_settings, unique_db};

async fn fresh_db() -> Db {
    let settings = test_settings(&unique_db("idx"), &[]);
    Db::connect(&settings.mongo).await.unwrap()
}

#[tokio::test]
async fn apply_creates_what_is_missing_and_check_then_passes() {
    let db = fresh_db().await;
    let decls = indexes::load(None, 86_400).unwrap();
    let first = indexes::reconcile(&db, &decls, true).await.unwrap();
    assert!(
        first
            .iter()
            .all(|l| matches!(l.outcome, Outcome::Created | Outcome::Unsupported(_))),
        "{first:#?}"
    );
    assert!(
        first
            .iter()
            .filter(|l| l.outcome == Outcome::Created)
            .count()
            >= 15
    );

    let again = indexes::reconcile(&db, &decls, true).await.unwrap();
    assert!(
        again
            .iter()
            .all(|l| matches!(l.outcome, Outcome::Unchanged | Outcome::Unsupported(_))),
        "{again:#?}"
    );

    let check = indexes::reconcile(&db, &decls, false).await.unwrap();
    assert!(check.iter().all(|l| !l.outcome.is_drift()), "{check:#?}");
}

#[tokio::test]
async fn check_reports_missing_undeclared_and_conflicting_indexes() {
    let db = fresh_db().await;
    let decls = indexes::load(None, 86_400).unwrap();
    let missing = indexes::reconcile(&db, &decls, false).await.unwrap();
    assert!(
        missing.iter().any(|l| l.outcome == Outcome::Missing),
        "{missing:#?}"
    );

    indexes::reconcile(&db, &decls, true).await.unwrap();
    db.raw("users")
        .create_index(
            mongodb::IndexModel::builder()
                .keys(doc! { "email": 1 })
                .build(),
        )
        .await
        .unwrap();
    db.db
        .run_command(doc! { "dropIndexes": "modules", "index": "position_id" })
        .await
        .unwrap();
    db.db
        .run_command(doc! { "createIndexes": "modules", "indexes": [ { "key": { "position": -1 }, "name": "position_id" } ] })
        .await
        .unwrap();

    let check = indexes::reconcile(&db, &decls, false).await.unwrap();
    let find = |name: &str| {
        check
            .iter()
            .find(|l| l.name == name)
            .unwrap()
            .outcome
            .clone()
    };
    assert_eq!(find("email_1"), Outcome::Undeclared);
    assert!(matches!(find("position_id"), Outcome::Conflicting(_)));
    // apply leaves both alone and still reports them.
    let apply = indexes::reconcile(&db, &decls, true).await.unwrap();
    assert!(
        apply
            .iter()
            .any(|l| matches!(l.outcome, Outcome::Conflicting(_)))
    );
}

#[tokio::test]
async fn the_activity_ttl_follows_the_retention_setting() {
    let db = fresh_db().await;
    let decls = indexes::load(None, 30 * 86_400).unwrap();
    indexes::reconcile(&db, &decls, true).await.unwrap();
    let reply = db
        .db
        .run_command(doc! { "listIndexes": "activity" })
        .await
        .unwrap();
    let batch = reply
        .get_document("cursor")
        .unwrap()
        .get_array("firstBatch")
        .unwrap();
    let ttl = batch
        .iter()
        .filter_map(|b| b.as_document())
        .find(|d| d.get_str("name") == Ok("at_ttl"))
        .unwrap();
    let secs = ttl.get("expireAfterSeconds").unwrap();
    assert_eq!(
        secs.as_i64()
            .or(secs.as_i32().map(i64::from))
            .or(secs.as_f64().map(|f| f as i64)),
        Some(30 * 86_400)
    );
}
