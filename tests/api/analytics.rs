//! Time zones, activity series, period comparisons and leaderboards, each
//! checked against figures the test computes itself from the data it
//! inserted.

use std::collections::{BTreeMap, BTreeSet};

use bson::{Document, doc, oid::ObjectId};
use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use serde_json::{Value, json};

use crate::helpers::{TestApp, code, module, spawn_app};

const UPDATE_ME: &str = "mutation($i: UpdateMeInput!) { updateMe(input: $i) {
    displayName timeZone leaderboardOptIn } }";
const SERIES: &str = "query($f: DateTime!, $t: DateTime!, $u: ID) {
    activitySeries(from: $f, to: $t, userId: $u) { date timeSpentSeconds events completions } }";
const PERIOD: &str = "query($f: DateTime!, $t: DateTime!, $u: ID) {
    periodStats(from: $f, to: $t, userId: $u) {
      current { from to timeSpentSeconds modulesCompleted activeDays averageScore }
      previous { from to timeSpentSeconds modulesCompleted activeDays averageScore } } }";
const BOARD: &str = "query($p: LeaderboardPeriod, $c: String, $n: Int) {
    leaderboard(period: $p, category: $c, first: $n) {
      period category participants viewerRank
      entries { rank name modulesCompleted timeSpentSeconds isViewer } } }";
const STREAKS: &str = "{ progressStats { currentStreakDays longestStreakDays } }";

fn rfc(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Local midnight of `day` in `tz`, as the test computes it (first
/// instant of the day, which every zone here has at 00:00).
fn midnight(tz: Tz, day: NaiveDate) -> DateTime<Utc> {
    tz.from_local_datetime(&day.and_hms_opt(0, 0, 0).unwrap())
        .earliest()
        .unwrap()
        .with_timezone(&Utc)
}

/// One activity entry as another tool would store it.
struct Event {
    at: DateTime<Utc>,
    kind: &'static str,
    time: i64,
    score: Option<f64>,
}

fn activity_doc(user: ObjectId, module: ObjectId, e: &Event) -> Document {
    doc! {
        "_id": ObjectId::new(), "user_id": user, "module_id": module, "kind": e.kind,
        "at": bson::DateTime::from_chrono(e.at), "time_spent_seconds": e.time, "score": e.score,
    }
}

async fn insert_events(app: &TestApp, user: ObjectId, module: ObjectId, events: &[Event]) {
    let docs: Vec<Document> = events
        .iter()
        .map(|e| activity_doc(user, module, e))
        .collect();
    app.db.raw("activity").insert_many(docs).await.unwrap();
}

/// Events at awkward instants around the US spring change (2026-03-08)
/// and local midnights in several zones: deterministic, not 15-minute
/// aligned, some exactly at a midnight or a second before one.
fn awkward_events() -> Vec<Event> {
    let base = Utc.with_ymd_and_hms(2026, 3, 4, 0, 0, 0).unwrap();
    let kinds = ["started", "progressed", "completed", "progressed"];
    let mut out = Vec::new();
    let mut seed: u64 = 42;
    for i in 0..120 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let minutes = (seed >> 33) % (12 * 24 * 60);
        out.push(Event {
            at: base + Duration::minutes(minutes as i64) + Duration::seconds(i % 7),
            kind: kinds[i as usize % 4],
            time: (seed >> 20) as i64 % 900,
            score: (i % 3 == 0).then_some(((seed >> 40) % 101) as f64),
        });
    }
    for (tz, day) in [
        (chrono_tz::America::Los_Angeles, (2026, 3, 8)),
        (chrono_tz::America::Los_Angeles, (2026, 3, 9)),
        (chrono_tz::Pacific::Auckland, (2026, 3, 10)),
        (chrono_tz::Asia::Kolkata, (2026, 3, 11)),
    ] {
        let m = midnight(tz, NaiveDate::from_ymd_opt(day.0, day.1, day.2).unwrap());
        for at in [m, m - Duration::seconds(1)] {
            out.push(Event {
                at,
                kind: "progressed",
                time: 11,
                score: None,
            });
        }
    }
    out
}

#[tokio::test]
async fn update_me_sets_only_the_given_fields_and_rejects_unknown_zones() {
    let app = spawn_app().await;
    let (token, _) = app.register("zoned").await;
    let me = app
        .ok(
            "{ me { timeZone leaderboardOptIn displayName } }",
            json!({}),
            Some(&token),
        )
        .await;
    assert_eq!(
        me["me"],
        json!({ "timeZone": "UTC", "leaderboardOptIn": false, "displayName": null })
    );

    let set = app
        .ok(
            UPDATE_ME,
            json!({ "i": { "timeZone": "Asia/Kolkata", "displayName": "Zed" } }),
            Some(&token),
        )
        .await;
    assert_eq!(
        set["updateMe"],
        json!({ "displayName": "Zed", "timeZone": "Asia/Kolkata", "leaderboardOptIn": false })
    );
    let set = app
        .ok(
            UPDATE_ME,
            json!({ "i": { "leaderboardOptIn": true } }),
            Some(&token),
        )
        .await;
    assert_eq!(
        set["updateMe"],
        json!({ "displayName": "Zed", "timeZone": "Asia/Kolkata", "leaderboardOptIn": true })
    );
    for bad in ["Mars/Olympus", "", "UTC+2", "Europe/Paris\u{0}"] {
        let body = app
            .gql(UPDATE_ME, json!({ "i": { "timeZone": bad } }), Some(&token))
            .await;
        assert_eq!(code(&body), "BAD_USER_INPUT", "{bad:?}: {body}");
    }
    let body = app
        .gql(
            UPDATE_ME,
            json!({ "i": { "timeZone": { "$gt": "" } } }),
            Some(&token),
        )
        .await;
    assert!(body.get("errors").is_some());
    let body = app
        .gql(UPDATE_ME, json!({ "i": { "timeZone": "UTC" } }), None)
        .await;
    assert_eq!(code(&body), "UNAUTHENTICATED");
    // Nothing changed by the rejected calls.
    let me = app.ok("{ me { timeZone } }", json!({}), Some(&token)).await;
    assert_eq!(me["me"]["timeZone"], "Asia/Kolkata");
}

#[tokio::test]
async fn users_written_without_the_new_fields_read_as_utc_and_not_opted_in() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    // A user as an older seeder writes it: no time_zone, no opt-in.
    app.db
        .raw("users")
        .insert_one(doc! {
            "_id": ObjectId::new(), "email": "old@example.org", "email_lower": "old@example.org",
            "username": "old", "username_lower": "old", "role": "learner",
            "created_at": bson::DateTime::now(),
        })
        .await
        .unwrap();
    let data = app
        .ok(
            "{ users(search: \"old\") { nodes { username timeZone leaderboardOptIn } } }",
            json!({}),
            Some(&admin),
        )
        .await;
    assert_eq!(
        data["users"]["nodes"],
        json!([{ "username": "old", "timeZone": "UTC", "leaderboardOptIn": false }])
    );
}

/// The series the test expects: local dates of [from, to) in `tz`, each
/// with the sums of the events whose instant falls on it.
fn expected_series(events: &[Event], tz: Tz, from: DateTime<Utc>, to: DateTime<Utc>) -> Value {
    let mut days: BTreeMap<NaiveDate, (i64, i64, i64)> = BTreeMap::new();
    let mut t = from;
    while t < to {
        days.entry(t.with_timezone(&tz).date_naive()).or_default();
        t += Duration::minutes(15);
    }
    days.entry((to - Duration::seconds(1)).with_timezone(&tz).date_naive())
        .or_default();
    for e in events.iter().filter(|e| e.at >= from && e.at < to) {
        let d = days.get_mut(&e.at.with_timezone(&tz).date_naive()).unwrap();
        d.0 += e.time;
        d.1 += 1;
        d.2 += i64::from(e.kind == "completed");
    }
    Value::Array(
        days.into_iter()
            .map(|(date, (time, events, completions))| {
                json!({ "date": date.to_string(), "timeSpentSeconds": time, "events": events, "completions": completions })
            })
            .collect(),
    )
}

#[tokio::test]
async fn activity_series_counts_days_in_the_learner_s_zone_across_a_dst_change() {
    let app = spawn_app().await;
    let ids = app.insert_modules(vec![module("tz", 1, doc! {})]).await;
    let (token, user_id) = app.register("series").await;
    let user = ObjectId::parse_str(&user_id).unwrap();
    let events = awkward_events();
    insert_events(&app, user, ids[0], &events).await;
    // Noise from another learner never counts.
    let (_, other) = app.register("noise").await;
    insert_events(
        &app,
        ObjectId::parse_str(&other).unwrap(),
        ids[0],
        &awkward_events(),
    )
    .await;

    for tz in [
        chrono_tz::America::Los_Angeles,
        chrono_tz::Pacific::Auckland,
        chrono_tz::Asia::Kolkata,
        chrono_tz::UTC,
    ] {
        app.ok(
            UPDATE_ME,
            json!({ "i": { "timeZone": tz.name() } }),
            Some(&token),
        )
        .await;
        let from = midnight(tz, NaiveDate::from_ymd_opt(2026, 3, 5).unwrap());
        let to = midnight(tz, NaiveDate::from_ymd_opt(2026, 3, 14).unwrap());
        let data = app
            .ok(
                SERIES,
                json!({ "f": rfc(from), "t": rfc(to) }),
                Some(&token),
            )
            .await;
        let got = &data["activitySeries"];
        assert_eq!(got, &expected_series(&events, tz, from, to), "zone {tz}");
        assert_eq!(got.as_array().unwrap().len(), 9, "zone {tz}: nine days");
        // A range not aligned on midnights covers every day it touches.
        let (f2, t2) = (from + Duration::hours(5), to - Duration::hours(3));
        let data = app
            .ok(SERIES, json!({ "f": rfc(f2), "t": rfc(t2) }), Some(&token))
            .await;
        assert_eq!(
            data["activitySeries"],
            expected_series(&events, tz, f2, t2),
            "zone {tz}, unaligned"
        );
    }
    // Spot checks that do not depend on the test's own arithmetic: in Los
    // Angeles the 8th lasts 23 hours and the second before the 9th's
    // midnight (06:59:59Z) belongs to the 8th.
    app.ok(
        UPDATE_ME,
        json!({ "i": { "timeZone": "America/Los_Angeles" } }),
        Some(&token),
    )
    .await;
    let data = app
        .ok(
            SERIES,
            json!({ "f": "2026-03-09T06:59:59Z", "t": "2026-03-09T07:00:01Z" }),
            Some(&token),
        )
        .await;
    let days = data["activitySeries"].as_array().unwrap();
    assert_eq!(days.len(), 2);
    assert_eq!(
        (days[0]["date"].as_str(), days[0]["events"].as_i64()),
        (Some("2026-03-08"), Some(1))
    );
    assert_eq!(
        (days[1]["date"].as_str(), days[1]["events"].as_i64()),
        (Some("2026-03-09"), Some(1))
    );
}

#[tokio::test]
async fn activity_series_and_period_stats_cost_one_aggregation_and_are_fresh_after_writes() {
    let app = spawn_app().await;
    let ids = app.insert_modules(vec![module("one", 1, doc! {})]).await;
    let (token, _) = app.register("fresh").await;
    let now = Utc::now();
    let (from, to) = (rfc(now - Duration::days(3)), rfc(now + Duration::days(1)));
    let vars = json!({ "f": from, "t": to });
    for query in [SERIES, PERIOD] {
        let before = app.db.commands.snapshot();
        app.ok(query, vars.clone(), Some(&token)).await;
        let after = app.db.commands.snapshot();
        let sent: u64 = after.values().sum::<u64>() - before.values().sum::<u64>();
        let aggregates = after.get("aggregate").copied().unwrap_or(0)
            - before.get("aggregate").copied().unwrap_or(0);
        assert_eq!(
            (sent, aggregates),
            (1, 1),
            "{query}: one aggregation on a miss"
        );
        let before = app.db.commands.total();
        app.ok(query, vars.clone(), Some(&token)).await;
        assert_eq!(app.db.commands.total(), before, "{query}: none on a hit");
    }
    app.ok(
        "mutation($m: ID!) { recordProgress(input: { moduleId: $m, timeSpentSeconds: 40, score: 90, completed: true }) { status } }",
        json!({ "m": ids[0].to_hex() }),
        Some(&token),
    )
    .await;
    let series = app.ok(SERIES, vars.clone(), Some(&token)).await;
    let total: i64 = series["activitySeries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["timeSpentSeconds"].as_i64().unwrap())
        .sum();
    let events: i64 = series["activitySeries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["events"].as_i64().unwrap())
        .sum();
    assert_eq!(
        (total, events),
        (40, 2),
        "started + completed, right after the write"
    );
    let period = app.ok(PERIOD, vars, Some(&token)).await;
    assert_eq!(period["periodStats"]["current"]["modulesCompleted"], 1);
    assert_eq!(period["periodStats"]["current"]["averageScore"], 90.0);
    assert_eq!(period["periodStats"]["current"]["activeDays"], 1);
}

#[tokio::test]
async fn period_stats_compare_the_range_with_the_one_before_in_the_learner_s_zone() {
    let app = spawn_app().await;
    let ids = app.insert_modules(vec![module("p", 1, doc! {})]).await;
    let (token, user_id) = app.register("period").await;
    let user = ObjectId::parse_str(&user_id).unwrap();
    let events = awkward_events();
    insert_events(&app, user, ids[0], &events).await;
    for tz in [
        chrono_tz::Pacific::Auckland,
        chrono_tz::America::Los_Angeles,
    ] {
        app.ok(
            UPDATE_ME,
            json!({ "i": { "timeZone": tz.name() } }),
            Some(&token),
        )
        .await;
        let from = midnight(tz, NaiveDate::from_ymd_opt(2026, 3, 9).unwrap());
        let to = midnight(tz, NaiveDate::from_ymd_opt(2026, 3, 13).unwrap()) + Duration::hours(7);
        let expect = |a: DateTime<Utc>, b: DateTime<Utc>| {
            let inside: Vec<&Event> = events.iter().filter(|e| e.at >= a && e.at < b).collect();
            let scores: Vec<f64> = inside.iter().filter_map(|e| e.score).collect();
            let days: BTreeSet<NaiveDate> = inside
                .iter()
                .map(|e| e.at.with_timezone(&tz).date_naive())
                .collect();
            json!({
                "from": rfc(a), "to": rfc(b),
                "timeSpentSeconds": inside.iter().map(|e| e.time).sum::<i64>(),
                "modulesCompleted": inside.iter().filter(|e| e.kind == "completed").count(),
                "activeDays": days.len(),
                "averageScore": if scores.is_empty() { Value::Null } else { json!(scores.iter().sum::<f64>() / scores.len() as f64) },
            })
        };
        let data = app
            .ok(
                PERIOD,
                json!({ "f": rfc(from), "t": rfc(to) }),
                Some(&token),
            )
            .await;
        let got = &data["periodStats"];
        assert_eq!(got["current"], expect(from, to), "zone {tz}");
        assert_eq!(
            got["previous"],
            expect(from - (to - from), from),
            "zone {tz}"
        );
    }
}

#[tokio::test]
async fn ranges_are_validated() {
    let app = spawn_app().await;
    let (token, _) = app.register("ranges").await;
    for (f, t) in [
        ("2026-01-02T00:00:00Z", "2026-01-02T00:00:00Z"),
        ("2026-01-03T00:00:00Z", "2026-01-02T00:00:00Z"),
        ("2026-01-01T00:00:00Z", "2027-01-03T00:00:00Z"),
    ] {
        for q in [SERIES, PERIOD] {
            let body = app.gql(q, json!({ "f": f, "t": t }), Some(&token)).await;
            assert_eq!(code(&body), "BAD_USER_INPUT", "{f}..{t}: {body}");
        }
    }
    let body = app
        .gql(
            SERIES,
            json!({ "f": "yesterday", "t": "2026-01-02T00:00:00Z" }),
            Some(&token),
        )
        .await;
    assert!(body.get("errors").is_some());
    // 366 days is allowed.
    let data = app
        .ok(
            SERIES,
            json!({ "f": "2027-01-01T00:00:00Z", "t": "2028-01-02T00:00:00Z" }),
            Some(&token),
        )
        .await;
    assert_eq!(data["activitySeries"].as_array().unwrap().len(), 366);
}

#[tokio::test]
async fn analytics_follow_the_privacy_rules() {
    let app = spawn_app().await;
    let (alice, alice_id) = app.register("alice").await;
    let (bob, _) = app.register("bob").await;
    let admin = app.admin_token().await;
    let range = json!({ "f": "2026-01-01T00:00:00Z", "t": "2026-01-08T00:00:00Z" });
    let with_user = |u: &str| {
        let mut v = range.clone();
        v["u"] = json!(u);
        v
    };
    for q in [SERIES, PERIOD] {
        assert_eq!(
            code(&app.gql(q, range.clone(), None).await),
            "UNAUTHENTICATED"
        );
        assert_eq!(
            code(&app.gql(q, with_user(&alice_id), Some(&bob)).await),
            "FORBIDDEN"
        );
        assert!(
            app.gql(q, with_user(&alice_id), Some(&admin))
                .await
                .get("errors")
                .is_none()
        );
        assert!(
            app.gql(q, with_user(&alice_id), Some(&alice))
                .await
                .get("errors")
                .is_none()
        );
        let unknown = ObjectId::new().to_hex();
        assert_eq!(
            code(&app.gql(q, with_user(&unknown), Some(&admin)).await),
            "NOT_FOUND"
        );
        assert_eq!(
            code(&app.gql(q, with_user("nope"), Some(&admin)).await),
            "BAD_USER_INPUT"
        );
    }
    assert_eq!(
        code(&app.gql(BOARD, json!({}), None).await),
        "UNAUTHENTICATED"
    );
    for n in [0, -1, 101] {
        assert_eq!(
            code(&app.gql(BOARD, json!({ "n": n }), Some(&alice)).await),
            "BAD_USER_INPUT"
        );
    }
}

#[tokio::test]
async fn streaks_follow_the_learner_s_midnight() {
    let app = spawn_app().await;
    let ids = app.insert_modules(vec![module("s", 1, doc! {})]).await;
    let (token, user_id) = app.register("streaky").await;
    let user = ObjectId::parse_str(&user_id).unwrap();
    let la = chrono_tz::America::Los_Angeles;
    let today = Utc::now().with_timezone(&la).date_naive();
    let at = |days_ago: i64, h: u32, m: u32| {
        la.from_local_datetime(
            &(today - Duration::days(days_ago))
                .and_hms_opt(h, m, 0)
                .unwrap(),
        )
        .earliest()
        .unwrap()
        .with_timezone(&Utc)
    };
    // Yesterday 15:00 and 17:30 in Los Angeles: one local day, but on both
    // sides of a UTC midnight (UTC-7 or UTC-8). A run of three local days
    // a week earlier.
    let events: Vec<Event> = [
        at(1, 15, 0),
        at(1, 17, 30),
        at(8, 12, 0),
        at(9, 12, 0),
        at(10, 23, 59),
    ]
    .into_iter()
    .map(|at| Event {
        at,
        kind: "progressed",
        time: 1,
        score: None,
    })
    .collect();
    insert_events(&app, user, ids[0], &events).await;
    // The independent computation: days in each zone, then the runs.
    let streaks = |tz: Tz| {
        let days: BTreeSet<NaiveDate> = events
            .iter()
            .map(|e| e.at.with_timezone(&tz).date_naive())
            .collect();
        let today = Utc::now().with_timezone(&tz).date_naive();
        let mut longest = 0;
        let mut run = 0;
        let mut prev: Option<NaiveDate> = None;
        for d in &days {
            run = if prev.is_some_and(|p| p + Duration::days(1) == *d) {
                run + 1
            } else {
                1
            };
            longest = longest.max(run);
            prev = Some(*d);
        }
        let mut current = 0;
        let mut day = if days.contains(&today) {
            today
        } else {
            today - Duration::days(1)
        };
        while days.contains(&day) {
            current += 1;
            day -= Duration::days(1);
        }
        json!({ "currentStreakDays": current, "longestStreakDays": longest })
    };
    let utc = app.ok(STREAKS, json!({}), Some(&token)).await;
    assert_eq!(utc["progressStats"], streaks(chrono_tz::UTC));
    app.ok(
        UPDATE_ME,
        json!({ "i": { "timeZone": "America/Los_Angeles" } }),
        Some(&token),
    )
    .await;
    let local = app.ok(STREAKS, json!({}), Some(&token)).await;
    assert_eq!(
        local["progressStats"],
        streaks(la),
        "exact right after the zone changed"
    );
    assert_eq!(local["progressStats"]["currentStreakDays"], 1);
    assert_eq!(local["progressStats"]["longestStreakDays"], 3);
    assert_ne!(
        utc["progressStats"], local["progressStats"],
        "the zone matters here"
    );
}

/// A learner's data for the leaderboard test: completions and time on
/// the modules `modules`, reported through the API.
async fn learn(app: &TestApp, token: &str, modules: &[ObjectId], completed: usize, time: i32) {
    for (i, m) in modules.iter().enumerate() {
        app.ok(
            "mutation($m: ID!, $t: Int!, $c: Boolean) { recordProgress(input: { moduleId: $m, timeSpentSeconds: $t, completed: $c }) { status } }",
            json!({ "m": m.to_hex(), "t": if i == 0 { time } else { 0 }, "c": i < completed }),
            Some(token),
        )
        .await;
    }
}

fn names(board: &Value) -> Vec<String> {
    board["leaderboard"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn the_leaderboard_lists_only_learners_who_opted_in_ranked_and_fresh_on_changes() {
    let app = spawn_app().await;
    let ids = app
        .insert_modules(vec![
            module("l1", 1, doc! { "category": "rust" }),
            module("l2", 2, doc! { "category": "rust" }),
            module("l3", 3, doc! { "category": "go" }),
            module("draft", 4, doc! { "category": "rust", "published": false }),
        ])
        .await;
    // (name, opted in, modules, completed, time)
    let people: Vec<(&str, bool, Vec<ObjectId>, usize, i32)> = vec![
        ("ann", true, vec![ids[0], ids[1]], 2, 100),
        ("ben", true, vec![ids[2]], 1, 500),
        ("cat", false, vec![ids[0], ids[1], ids[2]], 3, 900),
        ("dan", true, vec![ids[0]], 1, 100),
        ("eve", true, vec![], 0, 0),
    ];
    let mut tokens = BTreeMap::new();
    for (name, opt_in, modules, completed, time) in &people {
        let (token, _) = app.register(name).await;
        app.ok(
            UPDATE_ME,
            json!({ "i": { "leaderboardOptIn": opt_in } }),
            Some(&token),
        )
        .await;
        learn(&app, &token, modules, *completed, *time).await;
        tokens.insert(*name, token);
    }
    // Old completed progress written by another tool for a sixth learner:
    // all time only.
    let (fay, fay_id) = app.register("fay").await;
    app.ok(
        UPDATE_ME,
        json!({ "i": { "leaderboardOptIn": true } }),
        Some(&fay),
    )
    .await;
    let long_ago = bson::DateTime::from_chrono(Utc::now() - Duration::days(40));
    let fay_id = ObjectId::parse_str(&fay_id).unwrap();
    for m in [ids[0], ids[1], ids[2], ids[3]] {
        app.db
            .raw("progress")
            .insert_one(doc! {
                "_id": ObjectId::new(), "user_id": fay_id, "module_id": m, "status": "completed",
                "score": 50.0, "time_spent_seconds": 10_i64, "attempts": 1_i64,
                "started_at": long_ago, "completed_at": long_ago, "updated_at": long_ago,
            })
            .await
            .unwrap();
        app.db
            .raw("activity")
            .insert_one(doc! {
                "_id": ObjectId::new(), "user_id": fay_id, "module_id": m, "kind": "completed",
                "at": long_ago, "time_spent_seconds": 10_i64,
            })
            .await
            .unwrap();
    }

    // The independent ranking: opted-in learners with activity, by
    // completions then time; fay's draft module does not count.
    let week = app.ok(BOARD, json!({}), Some(&tokens["eve"])).await;
    assert_eq!(names(&week), ["ann", "ben", "dan"]);
    let lb = &week["leaderboard"];
    assert_eq!(lb["period"], "WEEK");
    assert_eq!(lb["participants"], 3);
    assert_eq!(
        lb["viewerRank"], 4,
        "eve opted in without activity: after everyone"
    );
    assert_eq!(
        lb["entries"][0],
        json!({ "rank": 1, "name": "ann", "modulesCompleted": 2, "timeSpentSeconds": 100, "isViewer": false })
    );
    assert_eq!(lb["entries"][1]["timeSpentSeconds"], 500);
    let all = app
        .ok(BOARD, json!({ "p": "ALL_TIME" }), Some(&tokens["ben"]))
        .await;
    assert_eq!(names(&all), ["fay", "ann", "ben", "dan"]);
    assert_eq!(all["leaderboard"]["entries"][0]["modulesCompleted"], 3);
    assert_eq!(all["leaderboard"]["viewerRank"], 3);
    assert_eq!(all["leaderboard"]["entries"][2]["isViewer"], true);
    let month = app
        .ok(
            BOARD,
            json!({ "p": "MONTH", "c": "go" }),
            Some(&tokens["ben"]),
        )
        .await;
    assert_eq!(names(&month), ["ben"]);
    assert_eq!(month["leaderboard"]["category"], "go");
    let first = app.ok(BOARD, json!({ "n": 1 }), Some(&tokens["cat"])).await;
    assert_eq!(names(&first), ["ann"]);
    assert_eq!(
        first["leaderboard"]["viewerRank"],
        Value::Null,
        "cat has not opted in"
    );

    // A read while nothing changed costs one `find` (fresh names), no
    // aggregation.
    let before = app.db.commands.snapshot();
    app.ok(BOARD, json!({}), Some(&tokens["eve"])).await;
    let after = app.db.commands.snapshot();
    let delta: BTreeMap<&String, u64> = after
        .iter()
        .map(|(k, v)| (k, v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect();
    assert_eq!(delta, BTreeMap::from([(&"find".to_string(), 1)]));

    // Opting in, renaming and opting out show on the very next read.
    app.ok(
        UPDATE_ME,
        json!({ "i": { "leaderboardOptIn": true } }),
        Some(&tokens["cat"]),
    )
    .await;
    let board = app.ok(BOARD, json!({}), Some(&tokens["cat"])).await;
    assert_eq!(names(&board), ["cat", "ann", "ben", "dan"]);
    assert_eq!(board["leaderboard"]["viewerRank"], 1);
    assert_eq!(board["leaderboard"]["entries"][0]["isViewer"], true);
    app.ok(
        UPDATE_ME,
        json!({ "i": { "displayName": "Annie" } }),
        Some(&tokens["ann"]),
    )
    .await;
    assert_eq!(
        names(&app.ok(BOARD, json!({}), Some(&tokens["eve"])).await),
        ["cat", "Annie", "ben", "dan"]
    );
    app.ok(
        UPDATE_ME,
        json!({ "i": { "leaderboardOptIn": false } }),
        Some(&tokens["cat"]),
    )
    .await;
    let board = app.ok(BOARD, json!({}), Some(&tokens["eve"])).await;
    assert_eq!(names(&board), ["Annie", "ben", "dan"]);
    assert_eq!(board["leaderboard"]["participants"], 3);
    let entries = board["leaderboard"]["entries"].to_string();
    assert!(
        !entries.contains("\"cat\""),
        "an opted-out name appears nowhere: {entries}"
    );
}

async fn export(app: &TestApp, query: &str, token: Option<&str>, gzip: bool) -> reqwest::Response {
    let mut req = app
        .client
        .get(format!("{}/exports/progress.csv?{query}", app.address));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if gzip {
        req = req.header("accept-encoding", "gzip");
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn the_progress_export_is_admin_only_quoted_neutralised_and_filtered_by_range() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let ids = app
        .insert_modules(vec![
            module(
                "csv-a",
                1,
                doc! { "category": "rust", "title": "=HYPERLINK(\"x\")" },
            ),
            module(
                "csv-b",
                2,
                doc! { "category": "go", "title": "Commas, \"quotes\"\nand lines" },
            ),
        ])
        .await;
    let (token, user_id) = app.register("exporter").await;
    app.ok(
        UPDATE_ME,
        json!({ "i": { "displayName": "@evil" } }),
        Some(&token),
    )
    .await;
    for m in &ids {
        app.ok(
            "mutation($m: ID!) { recordProgress(input: { moduleId: $m, timeSpentSeconds: 30, score: 50 }) { status } }",
            json!({ "m": m.to_hex() }),
            Some(&token),
        )
        .await;
    }
    // Progress updated long before the range is not exported.
    let old = bson::DateTime::from_chrono(Utc::now() - Duration::days(100));
    app.db.raw("progress").insert_one(doc! {
        "_id": ObjectId::new(), "user_id": ObjectId::parse_str(&user_id).unwrap(), "module_id": ObjectId::new(),
        "status": "in_progress", "time_spent_seconds": 1_i64, "attempts": 1_i64,
        "started_at": old, "updated_at": old,
    }).await.unwrap();
    let range = format!(
        "from={}&to={}",
        rfc(Utc::now() - Duration::days(1)),
        rfc(Utc::now() + Duration::days(1))
    );

    // Who may export.
    let anonymous = export(&app, &range, None, false).await;
    assert_eq!(anonymous.status(), 401);
    let body: Value = anonymous.json().await.unwrap();
    assert_eq!(code(&body), "UNAUTHENTICATED");
    let learner = export(&app, &range, Some(&token), false).await;
    assert_eq!(learner.status(), 403);
    assert_eq!(code(&learner.json::<Value>().await.unwrap()), "FORBIDDEN");
    let forged = export(&app, &range, Some("not.a.token"), false).await;
    assert_eq!(forged.status(), 401);
    for bad in [
        "from=yesterday&to=2026-01-01T00:00:00Z",
        "to=2026-01-01T00:00:00Z",
        "from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z",
    ] {
        let resp = export(&app, bad, Some(&admin), false).await;
        assert_eq!(resp.status(), 400, "{bad}");
        assert_eq!(code(&resp.json::<Value>().await.unwrap()), "BAD_USER_INPUT");
    }

    let resp = export(&app, &range, Some(&admin), false).await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let text = resp.text().await.unwrap();
    let mut reader = csv::ReaderBuilder::new().from_reader(text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_string)
        .collect();
    assert_eq!(header[..3], ["user_id", "username", "display_name"]);
    assert!(
        header.contains(&"module_slug".to_string()) && header.contains(&"updated_at".to_string())
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(
        rows.len(),
        2,
        "two modules in range, the old entry left out:\n{text}"
    );
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    for row in &rows {
        assert_eq!(&row[col("user_id")], user_id.as_str());
        assert_eq!(&row[col("username")], "exporter");
        assert_eq!(&row[col("display_name")], "'@evil");
        assert_eq!(&row[col("time_spent_seconds")], "30");
        assert_eq!(&row[col("score")], "50");
    }
    let titles: BTreeSet<&str> = rows
        .iter()
        .map(|r| r.get(col("module_title")).unwrap())
        .collect();
    assert_eq!(
        titles,
        BTreeSet::from(["'=HYPERLINK(\"x\")", "Commas, \"quotes\"\nand lines"])
    );
    assert!(text.contains("\r\n"), "RFC 4180 line ends");

    // A category, and gzip when asked.
    let resp = export(&app, &format!("{range}&category=go"), Some(&admin), true).await;
    assert_eq!(resp.headers()["content-encoding"], "gzip");
    let bytes = resp.bytes().await.unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut text)
        .unwrap();
    let rows = text.trim_end().split("\r\n").count();
    assert_eq!(rows, 1 + 1, "the header and the go module:\n{text}");
    assert!(text.contains("csv-b") && !text.contains("csv-a"));
}
