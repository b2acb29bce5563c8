//! The catalogue: `modules` and `module`.

use bson::doc;
use serde_json::json;

use crate::helpers::{code, module, spawn_app};

const PAGE: &str =
    "query($first: Int, $after: String, $category: String, $level: Level, $search: String) {
  modules(first: $first, after: $after, category: $category, level: $level, search: $search) {
    totalCount
    edges { cursor node { slug position } }
    nodes { slug }
    pageInfo { hasNextPage endCursor }
  }
}";

fn slugs(data: &serde_json::Value) -> Vec<String> {
    data["modules"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["slug"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn modules_are_paged_in_position_order_with_a_total() {
    let app = spawn_app().await;
    // Positions out of insertion order, and one tie broken by id.
    app.insert_modules(vec![
        module("c", 3, doc! {}),
        module("a", 1, doc! {}),
        module("b1", 2, doc! {}),
        module("b2", 2, doc! {}),
        module("d", 4, doc! {}),
        module("hidden", 0, doc! { "published": false }),
    ])
    .await;

    let first = app.ok(PAGE, json!({ "first": 2 }), None).await;
    assert_eq!(slugs(&first), ["a", "b1"]);
    assert_eq!(first["modules"]["totalCount"], 5);
    assert_eq!(first["modules"]["pageInfo"]["hasNextPage"], true);

    let after = first["modules"]["pageInfo"]["endCursor"].clone();
    let second = app
        .ok(PAGE, json!({ "first": 2, "after": after }), None)
        .await;
    assert_eq!(slugs(&second), ["b2", "c"]);
    let after = second["modules"]["pageInfo"]["endCursor"].clone();
    let last = app
        .ok(PAGE, json!({ "first": 2, "after": after }), None)
        .await;
    assert_eq!(slugs(&last), ["d"]);
    assert_eq!(last["modules"]["pageInfo"]["hasNextPage"], false);
    assert_eq!(last["modules"]["totalCount"], 5);
}

#[tokio::test]
async fn admins_also_see_unpublished_modules() {
    let app = spawn_app().await;
    app.insert_modules(vec![
        module("pub", 1, doc! {}),
        module("draft", 2, doc! { "published": false }),
    ])
    .await;
    let admin = app.admin_token().await;
    let data = app.ok(PAGE, json!({}), Some(&admin)).await;
    assert_eq!(slugs(&data), ["pub", "draft"]);
    let data = app.ok(PAGE, json!({}), None).await;
    assert_eq!(slugs(&data), ["pub"]);
}

#[tokio::test]
async fn category_level_and_search_filter_the_list() {
    let app = spawn_app().await;
    app.insert_modules(vec![
        module(
            "rust-intro",
            1,
            doc! { "category": "rust", "title": "Intro to Rust", "level": "beginner" },
        ),
        module(
            "rust-async",
            2,
            doc! { "category": "rust", "title": "Async Rust", "level": "advanced" },
        ),
        module(
            "db-index",
            3,
            doc! { "category": "db", "summary": "All about B-Trees", "level": "advanced" },
        ),
        module(
            "web",
            4,
            doc! { "category": "web", "tags": ["HTTP", "Caching"] },
        ),
    ])
    .await;
    let by_cat = app.ok(PAGE, json!({ "category": "rust" }), None).await;
    assert_eq!(slugs(&by_cat), ["rust-intro", "rust-async"]);
    assert_eq!(by_cat["modules"]["totalCount"], 2);

    let by_level = app.ok(PAGE, json!({ "level": "ADVANCED" }), None).await;
    assert_eq!(slugs(&by_level), ["rust-async", "db-index"]);

    // Case-insensitive over title, summary and tags.
    assert_eq!(
        slugs(&app.ok(PAGE, json!({ "search": "RUST" }), None).await),
        ["rust-intro", "rust-async"]
    );
    assert_eq!(
        slugs(&app.ok(PAGE, json!({ "search": "b-trees" }), None).await),
        ["db-index"]
    );
    assert_eq!(
        slugs(&app.ok(PAGE, json!({ "search": "caching" }), None).await),
        ["web"]
    );
    let both = app
        .ok(PAGE, json!({ "search": "rust", "level": "BEGINNER" }), None)
        .await;
    assert_eq!(slugs(&both), ["rust-intro"]);
}

#[tokio::test]
async fn search_text_full_of_regex_metacharacters_matches_literally() {
    let app = spawn_app().await;
    app.insert_modules(vec![
        module("cpp", 1, doc! { "title": "C++ (and .* friends)" }),
        module("other", 2, doc! { "title": "Something else" }),
    ])
    .await;
    for search in ["C++", "(and .*", ".*", "[", "\\", "^$|?", "{\"$gt\": \"\"}"] {
        let body = app.gql(PAGE, json!({ "search": search }), None).await;
        assert!(body.get("errors").is_none(), "{search}: {body}");
        let found = slugs(&body["data"]);
        let expected: Vec<&str> = if "C++ (and .* friends)"
            .to_lowercase()
            .contains(&search.to_lowercase())
        {
            vec!["cpp"]
        } else {
            vec![]
        };
        assert_eq!(found, expected, "search {search:?}");
    }
}

#[tokio::test]
async fn bad_page_sizes_and_forged_cursors_are_bad_user_input() {
    let app = spawn_app().await;
    app.insert_modules(vec![module("a", 1, doc! {}), module("b", 2, doc! {})])
        .await;
    for first in [101, -1, 1000] {
        let body = app.gql(PAGE, json!({ "first": first }), None).await;
        assert_eq!(code(&body), "BAD_USER_INPUT", "first={first}: {body}");
    }
    let page = app.ok(PAGE, json!({ "first": 1 }), None).await;
    let cursor = page["modules"]["pageInfo"]["endCursor"]
        .as_str()
        .unwrap()
        .to_string();
    let mut tampered = cursor.clone();
    tampered.insert(3, 'x');
    for bad in [
        "garbage",
        "",
        "eyJzIjoibW9kdWxlcyJ9.AAAA",
        tampered.as_str(),
    ] {
        let body = app.gql(PAGE, json!({ "after": bad }), None).await;
        assert_eq!(code(&body), "BAD_USER_INPUT", "cursor {bad:?}: {body}");
    }
    // A real cursor used with other filters is not valid either.
    let body = app
        .gql(
            PAGE,
            json!({ "after": cursor, "category": "general" }),
            None,
        )
        .await;
    assert_eq!(code(&body), "BAD_USER_INPUT", "{body}");
    // Wrong types are the client's error too.
    let body = app.gql(PAGE, json!({ "first": "ten" }), None).await;
    assert_eq!(code(&body), "BAD_USER_INPUT", "{body}");
    let body = app.gql(PAGE, json!({ "level": "EXPERT" }), None).await;
    assert_eq!(code(&body), "BAD_USER_INPUT", "{body}");
}

#[tokio::test]
async fn a_page_costs_one_database_command_and_never_reads_content() {
    let app = spawn_app().await;
    app.insert_modules(
        (0..30)
            .map(|i| module(&format!("m{i}"), i, doc! {}))
            .collect(),
    )
    .await;
    let before = app.db.commands.total();
    let data = app.ok(PAGE, json!({ "first": 25 }), None).await;
    let after = app.db.commands.total();
    assert_eq!(slugs(&data).len(), 25);
    assert_eq!(after - before, 1, "one command for items and totalCount");

    // Selecting content on a list costs one more command for the whole page.
    let before = app.db.commands.total();
    let data = app
        .ok(
            "{ modules(first: 10) { nodes { slug content } } }",
            json!({}),
            None,
        )
        .await;
    assert_eq!(app.db.commands.total() - before, 2);
    assert!(
        data["modules"]["nodes"][9]["content"]
            .as_str()
            .unwrap()
            .starts_with("Content of m9.")
    );
}

#[tokio::test]
async fn a_module_is_found_by_id_or_slug_with_its_content() {
    let app = spawn_app().await;
    let ids = app
        .insert_modules(vec![
            module("one", 1, doc! {}),
            module("draft", 2, doc! { "published": false }),
        ])
        .await;
    let q = "query($id: ID, $slug: String) { module(id: $id, slug: $slug) { id slug content published } }";
    let by_id = app.ok(q, json!({ "id": ids[0].to_hex() }), None).await;
    assert_eq!(by_id["module"]["slug"], "one");
    assert!(
        by_id["module"]["content"]
            .as_str()
            .unwrap()
            .starts_with("Content of one.")
    );
    let by_slug = app.ok(q, json!({ "slug": "one" }), None).await;
    assert_eq!(by_slug["module"]["id"], ids[0].to_hex());

    // Unknown and unpublished look the same to a non-admin.
    let unknown = app.gql(q, json!({ "slug": "nope" }), None).await;
    assert_eq!(code(&unknown), "NOT_FOUND");
    let draft = app.gql(q, json!({ "id": ids[1].to_hex() }), None).await;
    assert_eq!(code(&draft), "NOT_FOUND");
    assert_eq!(
        unknown["errors"][0]["message"],
        draft["errors"][0]["message"]
    );
    let admin = app.admin_token().await;
    let draft = app
        .ok(q, json!({ "id": ids[1].to_hex() }), Some(&admin))
        .await;
    assert_eq!(draft["module"]["published"], false);
}

#[tokio::test]
async fn module_arguments_are_validated() {
    let app = spawn_app().await;
    let q = "query($id: ID, $slug: String) { module(id: $id, slug: $slug) { id } }";
    for vars in [
        json!({}),
        json!({ "id": "5f1d7f1c2b3a4c5d6e7f8091", "slug": "x" }),
        json!({ "id": "not-an-id" }),
        json!({ "id": "ZZZZZZZZZZZZZZZZZZZZZZZZ" }),
        json!({ "id": "{\"$gt\": \"\"}" }),
    ] {
        let body = app.gql(q, vars.clone(), None).await;
        assert_eq!(code(&body), "BAD_USER_INPUT", "{vars}: {body}");
    }
}
