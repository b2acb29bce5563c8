//! One integration-test binary: every test drives the HTTP endpoint of a
//! real service spawned on port 0 against the surrogate database.

mod admin;
mod analytics;
mod cache;
mod catalogue;
mod cost;
mod explain;
mod faults;
mod graphql_over_http;
mod helpers;
mod indexes;
mod leaderboard;
mod learners;
mod live;
mod notifications;
mod protection;
mod response_cache;
mod scale;
mod scale_balancer;
mod schema;
mod web;
