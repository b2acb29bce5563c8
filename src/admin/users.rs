//! The admin's user list: prefix search on email or username through the
//! lowercase copies (`email_lower_unique`, `username_lower_unique`, an
//! anchored, escaped regex that the index serves as a range), a role filter
//! (`role_id`), keyset pages in `_id` order. Never reads `password_hash`.

use bson::{Bson, Document, doc, oid::ObjectId};

use crate::{
    db::{
        Db, names,
        page::{self, PageQuery},
    },
    error::{ApiError, ApiResult},
    learners::{Role, model::UserDoc, model::user_projection},
};

/// Longest search text: an email is at most 254 characters.
pub const MAX_SEARCH: usize = 254;

/// The filters of `users(...)`.
#[derive(Debug, Clone, Default)]
pub struct UserFilter {
    /// Lowercased, trimmed prefix; `None` when not given or blank.
    pub prefix: Option<String>,
    pub role: Option<Role>,
}

impl UserFilter {
    pub fn new(search: Option<String>, role: Option<Role>) -> ApiResult<Self> {
        let prefix = search
            .map(|s| s.trim().to_lowercase())
            .filter(|s| !s.is_empty());
        if prefix
            .as_ref()
            .is_some_and(|s| s.chars().count() > MAX_SEARCH)
        {
            return Err(ApiError::bad_input(format!(
                "`search` may be at most {MAX_SEARCH} characters"
            )));
        }
        Ok(UserFilter { prefix, role })
    }

    /// The identity of the list these filters select, bound into cursors.
    pub fn scope(&self) -> String {
        serde_json::json!(["users", self.prefix, self.role.map(Role::as_str)]).to_string()
    }

    /// The `$match`: user text only ever becomes an escaped, anchored
    /// pattern, never an operator.
    pub fn to_match(&self) -> Document {
        let mut m = Document::new();
        if let Some(role) = self.role {
            m.insert("role", role.as_str());
        }
        if let Some(p) = &self.prefix {
            let pattern = format!("^{}", regex::escape(p));
            m.insert(
                "$or",
                vec![
                    Bson::Document(doc! { "email_lower": { "$regex": &pattern } }),
                    Bson::Document(doc! { "username_lower": { "$regex": &pattern } }),
                ],
            );
        }
        m
    }
}

/// One page (`limit + 1` items) in `_id` order and, with `with_total`, the
/// size of the filtered list, in one command.
pub async fn list(
    db: &Db,
    filter: &UserFilter,
    after: Option<&str>,
    limit: i64,
    with_total: bool,
) -> ApiResult<(Vec<UserDoc>, i64)> {
    let after = after
        .map(|a| ObjectId::parse_str(a).map_err(|_| ApiError::bad_input("invalid cursor")))
        .transpose()?;
    page::fetch(
        db,
        PageQuery {
            collection: names::USERS,
            filter: filter.to_match(),
            sort: doc! { "_id": 1 },
            after: after.map(|a| doc! { "_id": { "$gt": a } }),
            projection: Some(user_projection()),
            limit,
            with_total,
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_text_becomes_an_anchored_escaped_lowercase_prefix() {
        let f = UserFilter::new(Some(" Ada.L+ ".into()), Some(Role::Learner)).unwrap();
        let m = f.to_match();
        assert_eq!(m.get_str("role").unwrap(), "learner");
        let or = m.get_array("$or").unwrap();
        let email = or[0]
            .as_document()
            .unwrap()
            .get_document("email_lower")
            .unwrap();
        assert_eq!(email.get_str("$regex").unwrap(), r"^ada\.l\+");
    }

    #[test]
    fn blank_search_is_no_filter_and_overlong_search_is_bad_input() {
        assert!(
            UserFilter::new(Some("  ".into()), None)
                .unwrap()
                .to_match()
                .is_empty()
        );
        assert!(UserFilter::new(Some("x".repeat(255)), None).is_err());
    }
}
