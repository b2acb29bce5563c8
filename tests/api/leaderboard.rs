//! The leaderboard off the request path: a read never waits for a
//! rebuild once a ranking exists (it gets the previous one while the
//! rebuild runs in the background), the rebuild's figures follow within
//! the lag bound, and opting in or out shows on the very next read of any
//! instance, without a rebuild, with the learner's own figures.

use std::time::{Duration, Instant};

use bson::doc;
use serde_json::{Value, json};

use crate::{
    cache::two_instances_on_one_redis,
    faults::Faulty,
    helpers::{TestApp, module, unique_db},
};

const BOARD: &str = "{ leaderboard(period: WEEK) { participants viewerRank
    entries { rank name modulesCompleted timeSpentSeconds } } }";
const RECORD: &str = "mutation($m: ID!, $t: Int!, $c: Boolean) {
    recordProgress(input: { moduleId: $m, timeSpentSeconds: $t, completed: $c }) { status } }";
const OPT_IN: &str = "mutation($o: Boolean!) { updateMe(input: { leaderboardOptIn: $o }) { id } }";

/// (name, modules completed, time spent) of each listed learner.
fn listed(board: &Value) -> Vec<(String, i64, i64)> {
    board["leaderboard"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_string(),
                e["modulesCompleted"].as_i64().unwrap(),
                e["timeSpentSeconds"].as_i64().unwrap(),
            )
        })
        .collect()
}

fn row(name: &str, completed: i64, time: i64) -> (String, i64, i64) {
    (name.to_string(), completed, time)
}

async fn record(app: &TestApp, token: &str, m: &bson::oid::ObjectId, time: i32, done: bool) {
    app.ok(
        RECORD,
        json!({ "m": m.to_hex(), "t": time, "c": done }),
        Some(token),
    )
    .await;
}

async fn opt_in(app: &TestApp, token: &str, on: bool) {
    app.ok(OPT_IN, json!({ "o": on }), Some(token)).await;
}

/// A learner opted in, with `time` seconds on `m`.
async fn learner(app: &TestApp, name: &str, m: &bson::oid::ObjectId, time: i32) -> String {
    let (token, _) = app.register(name).await;
    opt_in(app, &token, true).await;
    record(app, &token, m, time, false).await;
    token
}

#[tokio::test]
async fn a_read_during_a_slow_rebuild_gets_the_previous_ranking_and_the_rebuild_follows() {
    // Rankings are due for a rebuild after 2 s.
    let f = Faulty::spawn_with(&unique_db("board"), &[("LEADERBOARD_REFRESH_SECS", "2")]).await;
    let app = &f.app;
    let m = app.insert_modules(vec![module("b1", 1, doc! {})]).await[0];
    let ann = learner(app, "ann", &m, 100).await;
    let ben = learner(app, "ben", &m, 50).await;
    let first = app.ok(BOARD, json!({}), Some(&ann)).await;
    assert_eq!(listed(&first), [row("ann", 0, 100), row("ben", 0, 50)]);

    // From now on this service's aggregations wait 12 s before they run:
    // the rebuild of the ranking is stuck (reads run no aggregation).
    f.arm(
        1000,
        doc! { "failCommands": ["aggregate"], "blockConnection": true, "blockTimeMS": 12_000 },
    )
    .await;
    record(app, &ben, &m, 200, false).await;
    // Past the refresh age: the refresher (or this read) has started the
    // rebuild, which cannot have finished; the read does not wait for it.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let during = app.ok(BOARD, json!({}), Some(&ann)).await;
    assert_eq!(
        listed(&during),
        [row("ann", 0, 100), row("ben", 0, 50)],
        "the previous ranking while the rebuild is pending"
    );
    assert_eq!(during["leaderboard"]["viewerRank"], 1);

    // The rebuild lands by itself, within the lag bound (60 s) of the write.
    let written = Instant::now();
    loop {
        let now = app.ok(BOARD, json!({}), Some(&ann)).await;
        if listed(&now) == [row("ben", 0, 250), row("ann", 0, 100)] {
            assert_eq!(now["leaderboard"]["viewerRank"], 2);
            break;
        }
        assert_eq!(
            listed(&now),
            [row("ann", 0, 100), row("ben", 0, 50)],
            "either ranking, nothing else"
        );
        assert!(
            written.elapsed() < Duration::from_secs(60),
            "the rebuild never landed"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    f.off().await;

    // Writes keep reaching the board without anyone asking for a rebuild.
    record(app, &ann, &m, 400, true).await;
    let written = Instant::now();
    loop {
        let now = app.ok(BOARD, json!({}), Some(&ben)).await;
        if listed(&now) == [row("ann", 1, 500), row("ben", 0, 250)] {
            break;
        }
        assert!(
            written.elapsed() < Duration::from_secs(60),
            "the write never reached the board: {now}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn opting_out_during_a_pending_rebuild_hides_the_learner_at_once() {
    let f = Faulty::spawn_with(&unique_db("board"), &[("LEADERBOARD_REFRESH_SECS", "1")]).await;
    let app = &f.app;
    let m = app.insert_modules(vec![module("b1", 1, doc! {})]).await[0];
    let ann = learner(app, "ann", &m, 100).await;
    let ben = learner(app, "ben", &m, 50).await;
    assert_eq!(
        listed(&app.ok(BOARD, json!({}), Some(&ben)).await),
        [row("ann", 0, 100), row("ben", 0, 50)]
    );
    f.arm(
        1000,
        doc! { "failCommands": ["aggregate"], "blockConnection": true, "blockTimeMS": 12_000 },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    // The rebuild is stuck; ann opts out and is gone from the next read.
    opt_in(app, &ann, false).await;
    let board = app.ok(BOARD, json!({}), Some(&ben)).await;
    assert_eq!(listed(&board), [row("ben", 0, 50)]);
    assert_eq!(board["leaderboard"]["participants"], 1);
    assert_eq!(board["leaderboard"]["viewerRank"], 1);
    assert!(!board.to_string().contains("ann"), "{board}");
    let own = app.ok(BOARD, json!({}), Some(&ann)).await;
    assert_eq!(own["leaderboard"]["viewerRank"], Value::Null);
    f.off().await;
}

#[tokio::test]
async fn opting_in_and_out_on_one_instance_shows_on_the_next_read_of_another() {
    let (a, b, _redis, _admin) = two_instances_on_one_redis().await;
    let ids = a
        .insert_modules(vec![
            module("o1", 1, doc! {}),
            module("o2", 2, doc! {}),
            module("o3", 3, doc! {}),
        ])
        .await;
    let ann = learner(&a, "ann", &ids[0], 100).await;
    record(&a, &ann, &ids[0], 0, true).await;
    // A ranks before ben opts in; ben's figures predate his opt-in.
    assert_eq!(
        listed(&a.ok(BOARD, json!({}), Some(&ann)).await),
        [row("ann", 1, 100)]
    );
    let (ben, _) = b.register("ben").await;
    record(&b, &ben, &ids[1], 300, true).await;
    record(&b, &ben, &ids[2], 20, true).await;
    opt_in(&b, &ben, true).await;
    let board = a.ok(BOARD, json!({}), Some(&ben)).await;
    assert_eq!(listed(&board), [row("ben", 2, 320), row("ann", 1, 100)]);
    assert_eq!(board["leaderboard"]["participants"], 2);
    assert_eq!(board["leaderboard"]["viewerRank"], 1);

    opt_in(&b, &ann, false).await;
    let board = a.ok(BOARD, json!({}), Some(&ben)).await;
    assert_eq!(listed(&board), [row("ben", 2, 320)]);
    assert_eq!(board["leaderboard"]["participants"], 1);
    assert!(!board.to_string().contains("ann"), "{board}");

    opt_in(&b, &ann, true).await;
    let board = a.ok(BOARD, json!({}), Some(&ann)).await;
    assert_eq!(listed(&board), [row("ben", 2, 320), row("ann", 1, 100)]);
    assert_eq!(board["leaderboard"]["viewerRank"], 2);
}
