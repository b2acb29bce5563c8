//! Limits that async-graphql's depth and complexity do not cover.
//!
//! Complexity prices what a query makes the server resolve, but not every
//! field counts there (`__typename` is free), so a document of thousands of
//! aliased `__typename` passes it and still costs validation and
//! serialization work. This extension counts the fields a document names,
//! right after parsing and before any validation, and refuses documents
//! that name more than the complexity budget: no sensible query does.

use std::sync::Arc;

use async_graphql::{
    ServerError, ServerResult, Variables,
    extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery},
    parser::types::{ExecutableDocument, Selection, SelectionSet},
};

/// Refuses documents that name more than `max` fields (aliases included).
pub struct FieldCount {
    pub max: usize,
}

impl ExtensionFactory for FieldCount {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(FieldCountCheck { max: self.max })
    }
}

struct FieldCountCheck {
    max: usize,
}

#[async_trait::async_trait]
impl Extension for FieldCountCheck {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let doc = next.run(ctx, query, variables).await?;
        let named = count_fields(&doc);
        if named > self.max {
            return Err(ServerError::new(
                format!(
                    "the query names {named} fields; at most {} are allowed",
                    self.max
                ),
                None,
            ));
        }
        Ok(doc)
    }
}

/// Fields named in the operations and fragments of `doc`, each once.
pub fn count_fields(doc: &ExecutableDocument) -> usize {
    fn in_set(set: &SelectionSet) -> usize {
        set.items
            .iter()
            .map(|item| match &item.node {
                Selection::Field(f) => 1 + in_set(&f.node.selection_set.node),
                Selection::FragmentSpread(_) => 0,
                Selection::InlineFragment(f) => in_set(&f.node.selection_set.node),
            })
            .sum()
    }
    let operations: usize = doc
        .operations
        .iter()
        .map(|(_, op)| in_set(&op.node.selection_set.node))
        .sum();
    let fragments: usize = doc
        .fragments
        .values()
        .map(|f| in_set(&f.node.selection_set.node))
        .sum();
    operations + fragments
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_inline_fragments_and_fragments_all_count() {
        let doc = async_graphql::parser::parse_query(
            "{ a: __typename b: __typename me { id ... on User { email } } ...F } fragment F on Query { __typename }",
        )
        .unwrap();
        assert_eq!(count_fields(&doc), 6);
    }
}
