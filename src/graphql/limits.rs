//! Limits that async-graphql's depth and complexity do not cover.
//!
//! Complexity prices what a query makes the server resolve, but not every
//! field counts there (`__typename` is free), so a document of thousands of
//! aliased `__typename` passes it and still costs validation and
//! serialization work. This extension counts the fields a document names,
//! right after parsing and before any validation, and refuses documents
//! that name more than the complexity budget: no sensible query does.
//! Aliases are capped apart (`QUERY_ALIAS_LIMIT`): scalars cost nothing in
//! the cost model (`graphql::cost`), and a hundred aliases of one field are
//! already more than any screen needs. Fields repeated in one selection
//! under the same key (graphql-cop's "field duplication", 500
//! `__typename`) are merged and answered once, but validation compares
//! them pairwise: they are capped by the same number.
//!
//! Depth is measured here too rather than by async-graphql's
//! `limit_depth`, which counts introspection: the query every developer
//! tool sends (GraphiQL, codegen, Apollo's tooling) nests `ofType` nine
//! times and would be refused. Introspection's depth is bounded by the
//! schema, not by data, and its fields still count toward the field limit;
//! with introspection off (production) it answers nothing anyway.

use std::{collections::HashSet, sync::Arc};

use async_graphql::{
    ServerError, ServerResult, Variables,
    extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery},
    parser::types::{ExecutableDocument, Field, Selection, SelectionSet},
};

/// Refuses documents that name more than `max_fields` fields (aliases
/// included), use more than `max_aliases` aliases (or repeat as many
/// fields in the same selection) or nest fields deeper
/// than `max_depth` (introspection left out; see the module documentation).
/// One extension for the three checks: every extension also wraps each
/// field's resolution.
#[derive(Clone, Copy)]
pub struct DocumentLimits {
    pub max_fields: usize,
    pub max_aliases: usize,
    pub max_depth: usize,
}

impl ExtensionFactory for DocumentLimits {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(*self)
    }
}

#[async_trait::async_trait]
impl Extension for DocumentLimits {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let doc = next.run(ctx, query, variables).await?;
        let named = count_fields(&doc);
        if named > self.max_fields {
            return Err(ServerError::new(
                format!(
                    "the query names {named} fields; at most {} are allowed",
                    self.max_fields
                ),
                None,
            ));
        }
        let aliases = count_aliases(&doc);
        if aliases > self.max_aliases {
            return Err(ServerError::new(
                format!(
                    "the query uses {aliases} aliases; at most {} are allowed",
                    self.max_aliases
                ),
                None,
            ));
        }
        let repeated = count_repeated(&doc);
        if repeated > self.max_aliases {
            return Err(ServerError::new(
                format!(
                    "the query repeats {repeated} fields in the same selection; at most {} are allowed",
                    self.max_aliases
                ),
                None,
            ));
        }
        let depth = depth(&doc);
        if depth > self.max_depth {
            return Err(ServerError::new(
                format!(
                    "the query nests fields {depth} deep; at most {} are allowed",
                    self.max_depth
                ),
                None,
            ));
        }
        Ok(doc)
    }
}

/// The deepest nesting of fields in the operations of `doc`, fragments
/// inlined as async-graphql's own depth limit counts them, introspection
/// subtrees left out. A fragment spread inside itself (refused later by
/// validation) is not followed again.
pub fn depth(doc: &ExecutableDocument) -> usize {
    fn in_set<'a>(
        doc: &'a ExecutableDocument,
        set: &'a SelectionSet,
        spreading: &mut HashSet<&'a str>,
    ) -> usize {
        set.items
            .iter()
            .map(|item| match &item.node {
                Selection::Field(f) => match f.node.name.node.as_str() {
                    "__schema" | "__type" => 0,
                    _ => 1 + in_set(doc, &f.node.selection_set.node, spreading),
                },
                Selection::InlineFragment(f) => in_set(doc, &f.node.selection_set.node, spreading),
                Selection::FragmentSpread(s) => {
                    let name = s.node.fragment_name.node.as_str();
                    let Some(fragment) = doc.fragments.get(&s.node.fragment_name.node) else {
                        return 0;
                    };
                    if !spreading.insert(name) {
                        return 0;
                    }
                    let d = in_set(doc, &fragment.node.selection_set.node, spreading);
                    spreading.remove(name);
                    d
                }
            })
            .max()
            .unwrap_or(0)
    }
    doc.operations
        .iter()
        .map(|(_, op)| in_set(doc, &op.node.selection_set.node, &mut HashSet::new()))
        .max()
        .unwrap_or(0)
}

/// Fields named in the operations and fragments of `doc`, each once.
pub fn count_fields(doc: &ExecutableDocument) -> usize {
    count_in_document(doc, |_| 1)
}

/// Aliased fields in the operations and fragments of `doc`, each once.
pub fn count_aliases(doc: &ExecutableDocument) -> usize {
    count_in_document(doc, |f| usize::from(f.alias.is_some()))
}

/// Fields written again in the same selection under a response key it
/// already has (`{ __typename __typename }` repeats one): they are merged,
/// so they only make validation work (pairwise) and no sensible query has
/// them. Each selection of the operations and fragments of `doc` once.
pub fn count_repeated(doc: &ExecutableDocument) -> usize {
    fn in_set(set: &SelectionSet) -> usize {
        let mut keys = HashSet::new();
        set.items
            .iter()
            .map(|item| match &item.node {
                Selection::Field(f) => {
                    let again = !keys.insert(f.node.response_key().node.as_str());
                    usize::from(again) + in_set(&f.node.selection_set.node)
                }
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

/// The sum of `weigh` over the fields written in `doc` (fragments counted
/// where they are defined, not where they are spread).
fn count_in_document(doc: &ExecutableDocument, weigh: impl Fn(&Field) -> usize + Copy) -> usize {
    fn in_set(set: &SelectionSet, weigh: impl Fn(&Field) -> usize + Copy) -> usize {
        set.items
            .iter()
            .map(|item| match &item.node {
                Selection::Field(f) => weigh(&f.node) + in_set(&f.node.selection_set.node, weigh),
                Selection::FragmentSpread(_) => 0,
                Selection::InlineFragment(f) => in_set(&f.node.selection_set.node, weigh),
            })
            .sum()
    }
    let operations: usize = doc
        .operations
        .iter()
        .map(|(_, op)| in_set(&op.node.selection_set.node, weigh))
        .sum();
    let fragments: usize = doc
        .fragments
        .values()
        .map(|f| in_set(&f.node.selection_set.node, weigh))
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
        assert_eq!(count_aliases(&doc), 2);
    }

    #[test]
    fn repeated_fields_are_counted_per_selection() {
        let doc = async_graphql::parser::parse_query(
            "{ __typename __typename a: __typename me { id id } ...F } fragment F on Query { me { id } me { id } }",
        )
        .unwrap();
        assert_eq!(count_repeated(&doc), 3);
    }

    fn depth_of(query: &str) -> usize {
        depth(&async_graphql::parser::parse_query(query).unwrap())
    }

    #[test]
    fn depth_counts_fields_through_fragments_as_async_graphql_does() {
        assert_eq!(depth_of("{ me { id } }"), 2);
        assert_eq!(
            depth_of("{ a { ...F } } fragment F on A { b { ... on B { c { d } } } }"),
            4
        );
        assert_eq!(depth_of("query A { a } query B { a { b { c } } }"), 3);
    }

    #[test]
    fn depth_leaves_introspection_out_but_not_what_sits_beside_it() {
        let type_ref = "kind name ofType { ".repeat(9) + "name" + &" }".repeat(9);
        let introspection = format!(
            "{{ __schema {{ types {{ fields {{ args {{ type {{ {type_ref} }} }} }} }} }} }}"
        );
        assert_eq!(depth_of(&introspection), 0);
        assert_eq!(depth_of("{ __type(name: \"A\") { name } me { id } }"), 2);
    }

    #[test]
    fn a_fragment_spread_inside_itself_does_not_loop() {
        assert_eq!(depth_of("{ ...F } fragment F on Query { me { ...F } }"), 1);
    }
}
