//! Query cost: what a request may ask for, what it is charged, and the
//! `extensions.cost` every response carries.
//!
//! The model is the one of Shopify's calculated query cost, the IBM GraphQL
//! Cost Directive specification and Apollo's demand control:
//! - a scalar or enum costs 0, an object 1;
//! - a list costs its size times one element, plus 1 when its elements are
//!   objects; the size is the field's `first` or `limit` argument (a
//!   variable, or the argument's default; clamped to 0–100, the resolver
//!   refuses larger pages), or 20 for a list without one;
//! - a connection (`…Connection` with `edges`/`nodes`) costs 1, plus what
//!   is asked once per page (`pageInfo` 1, `totalCount` 0), plus `first`
//!   times one item, an item costing at least 1 (the page is read whatever
//!   is selected). One item is what `nodes` asks of a node (the node 1 and
//!   its fields) plus what `edges` asks (the edge itself is free: `cursor`
//!   0, `node` 1 and its fields);
//! - nested lists multiply, aliases and repeated selections add up,
//!   fragments count where they are spread, skipped fields count nothing;
//! - a field declared `@cost(weight: N)` (next to its resolver) costs N
//!   instead of 1: the statistics aggregation and the admin dashboard cost
//!   the server more than an object read;
//! - introspection (`__schema`, `__type`) costs 1 per field, lists not
//!   multiplied (its size is bounded by the schema); `__typename` is free.
//!
//! So `modules(first: 100) { totalCount pageInfo { hasNextPage } edges {
//! cursor node { id title } } nodes { id } }` costs 1 + 1 + 100 × 2 = 202.
//!
//! The requested cost is computed after parsing, with the variables, and a
//! request costing more than `QUERY_COMPLEXITY_LIMIT` is refused before it
//! runs. The actual cost is computed after execution by the same rules on
//! the data returned: lists count the items they hold, null objects
//! nothing. Both, with the caller's bucket (`crate::http::throttle`), go to
//! `extensions.cost` in Shopify's shape.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
};

use async_graphql::{
    ErrorExtensionValues, Name, Positioned, Response, ServerError, ServerResult, ValidationResult,
    Value, Variables,
    extensions::{
        Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery,
        NextPrepareRequest, NextRequest, NextValidation,
    },
    indexmap::IndexMap,
    parser::types::{
        BaseType, Directive, ExecutableDocument, Field, OperationDefinition, OperationType,
        Selection, SelectionSet, Type,
    },
    registry::{MetaField, MetaType, MetaTypeName, Registry},
};
use axum::http::{HeaderValue, header};

use super::{
    context::{RequestData, Services},
    pagination::{DEFAULT_PAGE, MAX_PAGE},
};
use crate::{
    error::Code,
    http::throttle::{Reservation, ThrottleStatus},
};

/// The `@cost` and `@listSize` directives of the schema.
pub mod directive {
    use async_graphql::TypeDirective;

    // Set where the resolver is declared: `#[graphql(directive =
    // cost::apply(10))]`. Both show in the SDL, so that clients can price
    // their queries themselves; their descriptions are public.

    /// What the field costs in the query cost (`extensions.cost`) instead
    /// of what its type costs (an object 1, a scalar or an enum 0): fields
    /// that cost the server more declare more (IBM GraphQL Cost Directive
    /// specification).
    #[TypeDirective(location = "FieldDefinition")]
    pub fn cost(weight: u32) {}

    /// How many items a list that takes no `first` or `limit` is priced
    /// at (IBM GraphQL Cost Directive specification): `assumedSize` is the
    /// most items it holds; `sizedFields` names the lists of the returned
    /// object that hold as many items as this field's `first` asks.
    #[TypeDirective(name = "listSize", location = "FieldDefinition")]
    pub fn list_size(assumed_size: Option<u32>, sized_fields: Option<Vec<String>>) {}
}

/// Size assumed for a list that takes no `first` or `limit`.
const DEFAULT_LIST_SIZE: u64 = DEFAULT_PAGE as u64;

/// What a selection costs: once, and per item of the page when the
/// selection is on a connection.
#[derive(Debug, Clone, Copy, Default)]
struct Cost {
    once: u64,
    per_item: u64,
}

impl Cost {
    fn once(points: u64) -> Self {
        Cost {
            once: points,
            per_item: 0,
        }
    }
    fn add(self, other: Cost) -> Cost {
        Cost {
            once: self.once.saturating_add(other.once),
            per_item: self.per_item.saturating_add(other.per_item),
        }
    }
    fn total(self) -> u64 {
        self.once.saturating_add(self.per_item)
    }
}

fn named_type<'r>(registry: &'r Registry, field: &MetaField) -> Option<&'r MetaType> {
    registry
        .types
        .get(MetaTypeName::concrete_typename(&field.ty))
}

fn is_list(field: &MetaField) -> bool {
    MetaTypeName::create(&field.ty).is_list()
}

/// 1 for an object, interface or union; 0 for a scalar or an enum.
fn type_weight(ty: &MetaType) -> u64 {
    u64::from(!ty.is_leaf())
}

fn is_connection(ty: &MetaType) -> bool {
    ty.name().ends_with("Connection")
        && (ty.field_by_name("edges").is_some() || ty.field_by_name("nodes").is_some())
}

/// Whether `field` of a connection lists the page's items.
fn lists_items(parent_is_connection: bool, field: &MetaField) -> bool {
    parent_is_connection && matches!(field.name.as_str(), "edges" | "nodes") && is_list(field)
}

/// The field's own cost: its declared weight, else its type's.
fn field_weight(field: &MetaField, ty: &MetaType) -> u64 {
    field
        .directive_invocations
        .iter()
        .find(|d| d.name == "cost")
        .and_then(|d| match d.args.get("weight") {
            Some(Value::Number(n)) => n.as_u64(),
            _ => None,
        })
        .unwrap_or_else(|| type_weight(ty))
}

/// A field's `@listSize` declaration: the most items its list holds, and
/// the lists of its object sized by its own `first`.
fn list_size(field: &MetaField) -> (Option<u64>, Vec<&str>) {
    let Some(directive) = field
        .directive_invocations
        .iter()
        .find(|d| d.name == "listSize")
    else {
        return (None, Vec::new());
    };
    let assumed = match directive.args.get("assumedSize") {
        Some(Value::Number(n)) => n.as_u64(),
        _ => None,
    };
    let sized = match directive.args.get("sizedFields") {
        Some(Value::List(names)) => names
            .iter()
            .filter_map(|v| match v {
                Value::String(name) => Some(name.as_str()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    (assumed, sized)
}

/// The lists of an object that hold as many items as the field that
/// returned the object asked for (`@listSize(sizedFields:)`): that field
/// and its size.
type Sizing<'a> = Option<(&'a MetaField, u64)>;

/// Whether `name` is one of the lists `sizing` sizes.
fn sized_by(sizing: Sizing<'_>, name: &str) -> Option<u64> {
    let (field, size) = sizing?;
    list_size(field).1.contains(&name).then_some(size)
}

/// What the fragment cache knows a fragment by: its name and the sizing
/// it was priced under.
type FragmentKey<'a> = (&'a str, Option<(usize, u64)>);

fn fragment_key<'a>(name: &'a str, sizing: Sizing<'_>) -> FragmentKey<'a> {
    (
        name,
        sizing.map(|(field, size)| (std::ptr::from_ref(field) as usize, size)),
    )
}

fn root<'r>(registry: &'r Registry, op: &OperationDefinition) -> Option<&'r MetaType> {
    let name = match op.ty {
        OperationType::Query => Some(&registry.query_type),
        OperationType::Mutation => registry.mutation_type.as_ref(),
        OperationType::Subscription => registry.subscription_type.as_ref(),
    }?;
    registry.types.get(name)
}

/// Prices one operation before it runs.
struct Pricer<'a> {
    registry: &'a Registry,
    doc: &'a ExecutableDocument,
    variables: &'a Variables,
    op: &'a OperationDefinition,
    /// Fragment costs, computed once each: spreading a fragment many times
    /// (or fragments spreading each other) stays linear.
    fragments: HashMap<FragmentKey<'a>, Cost>,
    introspection_fragments: HashMap<&'a str, u64>,
    /// Fragments being priced: a fragment spread inside itself (refused by
    /// validation) is not followed again.
    spreading: HashSet<&'a str>,
}

impl<'a> Pricer<'a> {
    fn new(
        registry: &'a Registry,
        doc: &'a ExecutableDocument,
        op: &'a OperationDefinition,
        variables: &'a Variables,
    ) -> Self {
        Pricer {
            registry,
            doc,
            variables,
            op,
            fragments: HashMap::new(),
            introspection_fragments: HashMap::new(),
            spreading: HashSet::new(),
        }
    }

    fn operation(&mut self) -> u64 {
        match root(self.registry, self.op) {
            Some(ty) => self.set(&self.op.selection_set.node, ty, None).total(),
            None => 0,
        }
    }

    /// The value of a variable, or its default in the operation.
    fn variable(&self, name: &Name) -> Option<Value> {
        self.variables.get(name).cloned().or_else(|| {
            self.op
                .variable_definitions
                .iter()
                .find(|d| d.node.name.node == *name)
                .and_then(|d| d.node.default_value.as_ref())
                .map(|v| v.node.clone())
        })
    }

    fn skipped(&self, directives: &[Positioned<Directive>]) -> bool {
        directives.iter().any(|d| {
            let condition = d
                .node
                .get_argument("if")
                .and_then(|v| {
                    v.node
                        .clone()
                        .into_const_with(|n| self.variable(&n).ok_or(()))
                        .ok()
                })
                .and_then(|v| match v {
                    Value::Boolean(b) => Some(b),
                    _ => None,
                });
            match d.node.name.node.as_str() {
                "skip" => condition == Some(true),
                "include" => condition == Some(false),
                _ => false,
            }
        })
    }

    /// The page size a field asks for with its `first` or `limit`
    /// argument (clamped to 0–100: the resolvers refuse larger pages), else
    /// that argument's default; `None` when it has neither.
    fn slice(&self, field: &Field, meta: &MetaField) -> Option<u64> {
        ["first", "limit"]
            .into_iter()
            .filter_map(|name| {
                let declared = meta.args.get(name)?;
                let given = field.get_argument(name).and_then(|v| {
                    v.node
                        .clone()
                        .into_const_with(|n| self.variable(&n).ok_or(()))
                        .ok()
                });
                Some(match given {
                    Some(Value::Number(n)) => n.as_i64(),
                    _ => declared
                        .default_value
                        .as_deref()
                        .and_then(|d| d.parse().ok()),
                })
            })
            .next()
            .flatten()
            .map(|n: i64| n.clamp(0, i64::from(MAX_PAGE)) as u64)
    }

    /// The page size of a connection: its slice, else the default page.
    fn size(&self, field: &Field, meta: &MetaField) -> u64 {
        self.slice(field, meta).unwrap_or(DEFAULT_LIST_SIZE)
    }

    /// The length of a list: its slice, else the `first` of the field that
    /// sizes it, else its declared `assumedSize`, else the default.
    fn length(&self, field: &Field, meta: &MetaField, sizing: Sizing<'_>) -> u64 {
        self.slice(field, meta)
            .or_else(|| sized_by(sizing, &meta.name))
            .or_else(|| list_size(meta).0)
            .unwrap_or(DEFAULT_LIST_SIZE)
    }

    fn set(&mut self, set: &'a SelectionSet, ty: &'a MetaType, sizing: Sizing<'a>) -> Cost {
        let connection = is_connection(ty);
        let mut total = Cost::default();
        for item in &set.items {
            let cost = match &item.node {
                Selection::Field(f) if !self.skipped(&f.node.directives) => {
                    self.field(&f.node, ty, connection, sizing)
                }
                Selection::InlineFragment(f) if !self.skipped(&f.node.directives) => {
                    let on = f
                        .node
                        .type_condition
                        .as_ref()
                        .and_then(|c| self.registry.types.get(c.node.on.node.as_str()))
                        .unwrap_or(ty);
                    self.set(&f.node.selection_set.node, on, sizing)
                }
                Selection::FragmentSpread(s) if !self.skipped(&s.node.directives) => {
                    self.fragment(&s.node.fragment_name.node, sizing)
                }
                _ => Cost::default(),
            };
            total = total.add(cost);
        }
        total
    }

    fn fragment(&mut self, name: &'a Name, sizing: Sizing<'a>) -> Cost {
        let key = fragment_key(name.as_str(), sizing);
        if let Some(cost) = self.fragments.get(&key) {
            return *cost;
        }
        let Some(fragment) = self.doc.fragments.get(name) else {
            return Cost::default();
        };
        let Some(ty) = self
            .registry
            .types
            .get(fragment.node.type_condition.node.on.node.as_str())
        else {
            return Cost::default();
        };
        if !self.spreading.insert(name.as_str()) {
            return Cost::default();
        }
        let cost = self.set(&fragment.node.selection_set.node, ty, sizing);
        self.spreading.remove(name.as_str());
        self.fragments.insert(key, cost);
        cost
    }

    fn field(
        &mut self,
        field: &'a Field,
        parent: &'a MetaType,
        in_connection: bool,
        sizing: Sizing<'a>,
    ) -> Cost {
        match field.name.node.as_str() {
            "__typename" => return Cost::default(),
            "__schema" | "__type" => {
                return Cost::once(1 + self.introspection(&field.selection_set.node));
            }
            _ => {}
        }
        let Some(meta) = parent.field_by_name(&field.name.node) else {
            return Cost::default();
        };
        let Some(ty) = named_type(self.registry, meta) else {
            return Cost::default();
        };
        // The lists of this field's object that its `first` sizes.
        let inner = match list_size(meta).1.is_empty() {
            true => None,
            false => Some((meta, self.size(field, meta))),
        };
        let children = self.set(&field.selection_set.node, ty, inner);
        if lists_items(in_connection, meta) {
            let node = if meta.name == "nodes" {
                type_weight(ty)
            } else {
                0
            };
            return Cost {
                once: 0,
                per_item: node.saturating_add(children.total()),
            };
        }
        let weight = field_weight(meta, ty);
        if is_connection(ty) {
            let items = self
                .size(field, meta)
                .saturating_mul(children.per_item.max(1));
            return Cost::once(weight.saturating_add(children.once).saturating_add(items));
        }
        if is_list(meta) {
            let element = type_weight(ty).saturating_add(children.total());
            let items = self.length(field, meta, sizing).saturating_mul(element);
            return Cost::once(weight.saturating_add(items));
        }
        Cost::once(weight.saturating_add(children.total()))
    }

    /// Introspection: 1 per field, lists not multiplied.
    fn introspection(&mut self, set: &'a SelectionSet) -> u64 {
        let mut total = 0u64;
        for item in &set.items {
            let cost = match &item.node {
                Selection::Field(f) => 1 + self.introspection(&f.node.selection_set.node),
                Selection::InlineFragment(f) => self.introspection(&f.node.selection_set.node),
                Selection::FragmentSpread(s) => {
                    let name = &s.node.fragment_name.node;
                    if let Some(cost) = self.introspection_fragments.get(name.as_str()) {
                        *cost
                    } else if let Some(fragment) = self.doc.fragments.get(name)
                        && self.spreading.insert(name.as_str())
                    {
                        let cost = self.introspection(&fragment.node.selection_set.node);
                        self.spreading.remove(name.as_str());
                        self.introspection_fragments.insert(name.as_str(), cost);
                        cost
                    } else {
                        0
                    }
                }
            };
            total = total.saturating_add(cost);
        }
        total
    }
}

/// Counts what an executed operation returned, by the same rules.
struct Counter<'p, 'a> {
    pricer: &'p mut Pricer<'a>,
}

/// What a selection returned: once, per item, and how many items a
/// connection's `edges` or `nodes` held (`None` when neither was asked).
#[derive(Default)]
struct Returned {
    cost: Cost,
    items: Option<u64>,
}

impl<'a> Counter<'_, 'a> {
    fn operation(&mut self, data: &Value) -> u64 {
        let (Some(ty), Value::Object(data)) = (root(self.pricer.registry, self.pricer.op), data)
        else {
            return 0;
        };
        self.set(&self.pricer.op.selection_set.node, ty, data)
            .cost
            .total()
    }

    fn set(
        &mut self,
        set: &'a SelectionSet,
        ty: &'a MetaType,
        data: &IndexMap<Name, Value>,
    ) -> Returned {
        let connection = is_connection(ty);
        let mut out = Returned::default();
        for item in &set.items {
            let part = match &item.node {
                Selection::Field(f) => self.field(&f.node, ty, connection, data),
                Selection::InlineFragment(f) => {
                    let on = f
                        .node
                        .type_condition
                        .as_ref()
                        .and_then(|c| self.pricer.registry.types.get(c.node.on.node.as_str()))
                        .unwrap_or(ty);
                    self.set(&f.node.selection_set.node, on, data)
                }
                Selection::FragmentSpread(s) => {
                    let name = &s.node.fragment_name.node;
                    match self.pricer.doc.fragments.get(name).and_then(|f| {
                        let on = f.node.type_condition.node.on.node.as_str();
                        Some((f, self.pricer.registry.types.get(on)?))
                    }) {
                        Some((fragment, on)) if self.pricer.spreading.insert(name.as_str()) => {
                            let part = self.set(&fragment.node.selection_set.node, on, data);
                            self.pricer.spreading.remove(name.as_str());
                            part
                        }
                        _ => Returned::default(),
                    }
                }
            };
            out.cost = out.cost.add(part.cost);
            out.items = match (out.items, part.items) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
        }
        out
    }

    fn field(
        &mut self,
        field: &'a Field,
        parent: &'a MetaType,
        in_connection: bool,
        data: &IndexMap<Name, Value>,
    ) -> Returned {
        // Skipped fields, fragments of another type and failed parents are
        // simply not in the data.
        let Some(value) = data.get(&field.response_key().node) else {
            return Returned::default();
        };
        match field.name.node.as_str() {
            "__typename" => return Returned::default(),
            "__schema" | "__type" => {
                return Returned {
                    cost: Cost::once(1 + self.pricer.introspection(&field.selection_set.node)),
                    items: None,
                };
            }
            _ => {}
        }
        let Some(meta) = parent.field_by_name(&field.name.node) else {
            return Returned::default();
        };
        let Some(ty) = named_type(self.pricer.registry, meta) else {
            return Returned::default();
        };
        let weight = field_weight(meta, ty);
        if lists_items(in_connection, meta) {
            let node = if meta.name == "nodes" {
                type_weight(ty)
            } else {
                0
            };
            let (count, cost) = self.elements(field, ty, node, value);
            return Returned {
                cost: Cost {
                    once: 0,
                    per_item: cost,
                },
                items: Some(count),
            };
        }
        let once = match value {
            Value::Null => 0,
            Value::Object(object) if is_connection(ty) => {
                let page = self.set(&field.selection_set.node, ty, object);
                let asked = || self.pricer.size(field, meta);
                let items = page.items.unwrap_or_else(asked);
                weight
                    .saturating_add(page.cost.once)
                    .saturating_add(page.cost.per_item.max(items))
            }
            Value::List(_) => {
                let (_, cost) = self.elements(field, ty, type_weight(ty), value);
                weight.saturating_add(cost)
            }
            Value::Object(object) => {
                weight.saturating_add(self.set(&field.selection_set.node, ty, object).cost.total())
            }
            _ => weight,
        };
        Returned {
            cost: Cost::once(once),
            items: None,
        }
    }

    /// The elements of a (possibly nested) list: how many, and what they
    /// cost at `each` plus their selections.
    fn elements(
        &mut self,
        field: &'a Field,
        ty: &'a MetaType,
        each: u64,
        value: &Value,
    ) -> (u64, u64) {
        match value {
            Value::List(items) => items.iter().fold((0, 0), |(n, cost), item| {
                let (m, c) = self.elements(field, ty, each, item);
                (n + m, cost.saturating_add(c))
            }),
            Value::Object(object) => (
                1,
                each.saturating_add(self.set(&field.selection_set.node, ty, object).cost.total()),
            ),
            Value::Null => (0, 0),
            _ => (1, each),
        }
    }
}

/// Coerces the variables of the operation `name` of `doc` before it runs
/// (the GraphQL specification's CoerceVariableValues): a required variable
/// missing, or a scalar or enum value of the wrong kind, is a request error
/// rather than a field error halfway through execution. Input objects are
/// left to their resolvers.
pub fn coerce_variables(
    registry: &Registry,
    doc: &ExecutableDocument,
    name: Option<&str>,
    variables: &Variables,
) -> Result<(), String> {
    fn check(registry: &Registry, ty: &Type, value: &Value) -> bool {
        match (value, &ty.base) {
            (Value::Null, _) => ty.nullable,
            (Value::List(items), BaseType::List(inner)) => {
                items.iter().all(|item| check(registry, inner, item))
            }
            (_, BaseType::List(inner)) => check(registry, inner, value),
            (_, BaseType::Named(name)) => match registry.types.get(name.as_str()) {
                Some(MetaType::Scalar {
                    is_valid: Some(valid),
                    ..
                }) => valid(value),
                Some(MetaType::Enum { enum_values, .. }) => match value {
                    Value::Enum(v) => enum_values.contains_key(v.as_str()),
                    Value::String(v) => enum_values.contains_key(v.as_str()),
                    _ => false,
                },
                _ => true,
            },
        }
    }
    let Some(op) = operation(doc, name) else {
        return Ok(());
    };
    for definition in &op.variable_definitions {
        let definition = &definition.node;
        let var = &definition.name.node;
        let ty = &definition.var_type.node;
        match variables.get(var) {
            None if !ty.nullable && definition.default_value.is_none() => {
                return Err(format!(
                    "Variable \"${var}\" of required type \"{ty}\" was not provided."
                ));
            }
            Some(value) if !check(registry, ty, value) => {
                return Err(format!(
                    "Variable \"${var}\" got an invalid value for type \"{ty}\"."
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// The operation of `doc` that runs under `name`.
fn operation<'d>(
    doc: &'d ExecutableDocument,
    name: Option<&str>,
) -> Option<&'d OperationDefinition> {
    let mut ops = doc.operations.iter();
    match name {
        Some(name) => ops
            .find(|(n, _)| n.is_some_and(|n| n.as_str() == name))
            .map(|(_, op)| &op.node),
        None => {
            let (_, op) = ops.next()?;
            ops.next().is_none().then_some(&op.node)
        }
    }
}

/// The requested cost of the operation `name` of `doc` (see the module
/// documentation); `None` when the document has no such operation.
pub fn requested(
    registry: &Registry,
    doc: &ExecutableDocument,
    name: Option<&str>,
    variables: &Variables,
) -> Option<u64> {
    let op = operation(doc, name)?;
    Some(Pricer::new(registry, doc, op, variables).operation())
}

/// The actual cost of the operation `name` of `doc`, from the `data` it
/// returned.
pub fn actual(
    registry: &Registry,
    doc: &ExecutableDocument,
    name: Option<&str>,
    variables: &Variables,
    data: &Value,
) -> u64 {
    let Some(op) = operation(doc, name) else {
        return 0;
    };
    let mut pricer = Pricer::new(registry, doc, op, variables);
    Counter {
        pricer: &mut pricer,
    }
    .operation(data)
}

/// The schema extension that prices every request, refuses the ones over
/// `limit` or over the caller's bucket, charges the actual cost and adds
/// `extensions.cost` to every response.
#[derive(Clone, Copy)]
pub struct QueryCost {
    pub limit: u64,
}

impl ExtensionFactory for QueryCost {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(CostOfRequest {
            limit: self.limit,
            state: Mutex::default(),
        })
    }
}

/// One request's pricing.
struct CostOfRequest {
    limit: u64,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    doc: Option<Arc<ExecutableDocument>>,
    variables: Variables,
    /// The operation the request names, if it names one.
    operation: Option<String>,
    /// The requested cost, once the document validated.
    requested: Option<u64>,
    /// Whose bucket pays: `user:<id>` or `addr:<ip>`.
    caller: Option<String>,
    /// What `execute` found, for `extensions.cost`.
    report: Option<Report>,
}

#[derive(Clone, Copy)]
struct Report {
    requested: u64,
    actual: u64,
    throttle: Option<ThrottleStatus>,
}

impl Report {
    fn to_value(self) -> Value {
        let mut cost = IndexMap::new();
        cost.insert(Name::new("requestedQueryCost"), Value::from(self.requested));
        cost.insert(Name::new("actualQueryCost"), Value::from(self.actual));
        if let Some(t) = self.throttle {
            let mut status = IndexMap::new();
            status.insert(
                Name::new("maximumAvailable"),
                Value::from(t.maximum_available),
            );
            status.insert(
                Name::new("currentlyAvailable"),
                Value::from(t.currently_available),
            );
            status.insert(Name::new("restoreRate"), Value::from(t.restore_rate));
            cost.insert(Name::new("throttleStatus"), Value::Object(status));
        }
        Value::Object(cost)
    }
}

/// A request error (no path) with a public code.
fn refusal(code: Code, message: String, retry_after: Option<u64>) -> ServerError {
    let mut error = ServerError::new(message, None);
    let mut extensions = ErrorExtensionValues::default();
    extensions.set("code", code.as_str());
    if let Some(seconds) = retry_after {
        extensions.set("retryAfterSeconds", seconds);
    }
    error.extensions = Some(extensions);
    error
}

impl CostOfRequest {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait::async_trait]
impl Extension for CostOfRequest {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let mut response = next.run(ctx).await;
        let (report, caller) = {
            let state = self.state();
            let report = state.report.unwrap_or_else(|| {
                // Refused before execution (syntax, validation, the cost
                // limit): priced if it parsed, charged nothing.
                let requested = state.requested.or_else(|| {
                    state.doc.as_deref().and_then(|doc| {
                        requested(
                            &ctx.schema_env.registry,
                            doc,
                            state.operation.as_deref(),
                            &state.variables,
                        )
                    })
                });
                Report {
                    requested: requested.unwrap_or(0),
                    actual: 0,
                    throttle: None,
                }
            });
            (report, state.caller.clone())
        };
        let mut report = report;
        if report.throttle.is_none()
            && let (Some(services), Some(caller)) = (ctx.data_opt::<Services>(), caller)
        {
            report.throttle = Some(services.throttle.settle(&caller, 0, 0).await);
        }
        response.extensions.insert("cost".into(), report.to_value());
        response
    }

    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: async_graphql::Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<async_graphql::Request> {
        self.state().operation = request.operation_name.clone();
        next.run(ctx, request).await
    }

    /// Refuses a valid document that costs more than the limit, whatever
    /// its operation (subscriptions included), before it runs.
    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        let result = next.run(ctx).await?;
        let (requested, subscription, caller) = {
            let mut state = self.state();
            if let Some(doc) = state.doc.as_deref()
                && let Err(message) = coerce_variables(
                    &ctx.schema_env.registry,
                    doc,
                    state.operation.as_deref(),
                    &state.variables,
                )
            {
                return Err(vec![refusal(Code::BadUserInput, message, None)]);
            }
            let requested = state.doc.as_deref().and_then(|doc| {
                requested(
                    &ctx.schema_env.registry,
                    doc,
                    state.operation.as_deref(),
                    &state.variables,
                )
            });
            state.requested = requested;
            let subscription = state.doc.as_deref().is_some_and(|doc| {
                operation(doc, state.operation.as_deref())
                    .is_some_and(|op| op.ty == OperationType::Subscription)
            });
            if subscription {
                // Never needed again (a subscription is priced once, here):
                // a live subscription keeps no copy of its document.
                state.doc = None;
                state.variables = Variables::default();
            }
            (requested.unwrap_or(0), subscription, state.caller.clone())
        };
        if requested > self.limit {
            if let Some(services) = ctx.data_opt::<Services>() {
                services.metrics.cost_refused("cost_limit");
            }
            return Err(vec![refusal(
                Code::BadUserInput,
                format!(
                    "the query costs {requested} points; at most {} are allowed (see extensions.cost)",
                    self.limit
                ),
                None,
            )]);
        }
        // A subscription never reaches `execute`: it pays its requested
        // cost once, when it starts (its events are not charged: writes,
        // which are, bound their rate).
        if subscription
            && let (Some(services), Some(caller)) = (ctx.data_opt::<Services>(), caller)
            && let Reservation::Refused {
                status,
                retry_after,
            } = services.throttle.reserve(&caller, requested).await
        {
            services.metrics.cost_refused("throttled");
            services.metrics.rate_limited("cost");
            let seconds = retry_after.as_secs();
            return Err(vec![refusal(
                Code::RateLimited,
                format!(
                    "the subscription costs {requested} points and {} are left: retry after {seconds} s",
                    status.currently_available
                ),
                Some(seconds),
            )]);
        }
        Ok(result)
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let caller = ctx
            .data_opt::<RequestData>()
            .map(|data| crate::http::throttle::caller_key(data.viewer.as_ref(), data.client));
        self.state().caller = caller;
        let doc = next.run(ctx, query, variables).await?;
        let mut state = self.state();
        state.doc = Some(Arc::new(doc.clone()));
        state.variables = variables.clone();
        Ok(doc)
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let registry = &ctx.schema_env.registry;
        let (doc, variables, caller) = {
            let state = self.state();
            (
                state.doc.clone(),
                state.variables.clone(),
                state.caller.clone(),
            )
        };
        let Some(doc) = doc else {
            return next.run(ctx, operation_name).await;
        };
        let requested = self
            .state()
            .requested
            .or_else(|| requested(registry, &doc, operation_name, &variables))
            .unwrap_or(0);
        let services = ctx.data_opt::<Services>();
        let metrics = services.map(|s| &s.metrics);
        let mut report = Report {
            requested,
            actual: 0,
            throttle: None,
        };
        let throttle = services.zip(caller);
        if let Some((services, caller)) = &throttle {
            match services.throttle.reserve(caller, requested).await {
                Reservation::Granted(status) => report.throttle = Some(status),
                Reservation::Refused {
                    status,
                    retry_after,
                } => {
                    services.metrics.cost_refused("throttled");
                    services.metrics.rate_limited("cost");
                    report.throttle = Some(status);
                    self.state().report = Some(report);
                    let seconds = retry_after.as_secs();
                    let mut response = Response::from_errors(vec![refusal(
                        Code::RateLimited,
                        format!(
                            "the query costs {requested} points and {} are left: retry after {seconds} s",
                            status.currently_available
                        ),
                        Some(seconds),
                    )]);
                    response
                        .http_headers
                        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
                    return response;
                }
            }
        }
        let response = next.run(ctx, operation_name).await;
        report.actual = actual(registry, &doc, operation_name, &variables, &response.data);
        if let Some((services, caller)) = &throttle
            && report.actual != requested
        {
            report.throttle = Some(
                services
                    .throttle
                    .settle(caller, requested, report.actual)
                    .await,
            );
        }
        if let Some(m) = metrics {
            m.query_cost(operation_name.unwrap_or_default(), report.actual);
        }
        self.state().report = Some(report);
        response
    }
}

#[cfg(test)]
mod tests {
    use async_graphql::{EmptyMutation, Object, Schema, SimpleObject, Subscription};
    use futures::{Stream, StreamExt};
    use serde_json::json;

    use super::*;

    #[derive(SimpleObject, Clone)]
    struct Item {
        id: i32,
        tags: Vec<String>,
        child: Option<Box<Item>>,
    }

    fn item(id: i32) -> Item {
        Item {
            id,
            tags: vec!["a".into()],
            child: None,
        }
    }

    #[derive(SimpleObject)]
    struct ItemEdge {
        cursor: String,
        node: Item,
    }

    #[derive(SimpleObject)]
    struct ItemConnection {
        edges: Vec<ItemEdge>,
        nodes: Vec<Item>,
        total_count: i32,
        info: Item,
    }

    #[derive(SimpleObject)]
    struct Board {
        entries: Vec<Item>,
        total: i32,
    }

    struct Query;

    /// Every list holds 3 items, whatever is asked.
    #[Object]
    impl Query {
        async fn items(&self, #[graphql(default = 20)] first: Option<i32>) -> ItemConnection {
            let _ = first;
            ItemConnection {
                edges: (0..3)
                    .map(|i| ItemEdge {
                        cursor: i.to_string(),
                        node: item(i),
                    })
                    .collect(),
                nodes: (0..3).map(item).collect(),
                total_count: 3,
                info: item(0),
            }
        }
        async fn list(&self, limit: Option<i32>) -> Vec<Item> {
            let _ = limit;
            (0..3).map(item).collect()
        }
        async fn all(&self) -> Vec<Item> {
            (0..3).map(item).collect()
        }
        #[graphql(directive = directive::cost::apply(10))]
        async fn stats(&self) -> Item {
            item(0)
        }
        async fn item(&self) -> Option<Item> {
            Some(Item {
                child: Some(Box::new(item(1))),
                ..item(0)
            })
        }
        async fn nothing(&self) -> Option<Item> {
            None
        }
        #[graphql(directive = directive::list_size::apply(None, Some(vec!["entries".to_string()])))]
        async fn board(&self, #[graphql(default = 10)] first: Option<i32>) -> Board {
            let _ = first;
            Board {
                entries: (0..3).map(item).collect(),
                total: 3,
            }
        }
        #[graphql(directive = directive::list_size::apply(Some(367), None))]
        async fn series(&self) -> Vec<Item> {
            (0..3).map(item).collect()
        }
    }

    struct Subscription;

    #[Subscription]
    impl Subscription {
        async fn items(
            &self,
            #[graphql(default = 20)] first: Option<i32>,
        ) -> impl Stream<Item = Vec<Item>> {
            let _ = first;
            futures::stream::iter([(0..3).map(item).collect()])
        }
    }

    /// Runs `query` under `limit`; returns `extensions.cost` and the
    /// errors.
    async fn run(
        query: &str,
        variables: serde_json::Value,
        limit: u64,
    ) -> (serde_json::Value, Vec<ServerError>) {
        let schema = Schema::build(Query, EmptyMutation, Subscription)
            .extension(QueryCost { limit })
            .finish();
        let request = async_graphql::Request::new(query).variables(Variables::from_json(variables));
        let response = schema.execute(request).await;
        let cost = serde_json::to_value(&response.extensions["cost"]).unwrap();
        (cost, response.errors)
    }

    /// The requested cost of `query`.
    async fn price(query: &str, variables: serde_json::Value) -> u64 {
        let (cost, _) = run(query, variables, u64::MAX).await;
        cost["requestedQueryCost"].as_u64().unwrap()
    }

    #[tokio::test]
    async fn scalars_are_free_and_objects_cost_one() {
        assert_eq!(price("{ __typename item { id tags } }", json!({})).await, 1);
        assert_eq!(
            price("{ item { child { child { id } } } }", json!({})).await,
            3
        );
        assert_eq!(price("{ stats { id child { id } } }", json!({})).await, 11);
    }

    #[tokio::test]
    async fn a_page_costs_its_size_times_one_item() {
        let page = "{ items(first: 100) { totalCount info { id } edges { cursor node { id } } nodes { id } } }";
        assert_eq!(price(page, json!({})).await, 1 + 1 + 100 * 2);
        assert_eq!(price("{ items { nodes { id } } }", json!({})).await, 1 + 20);
        assert_eq!(
            price("{ items(first: 50) { totalCount } }", json!({})).await,
            1 + 50
        );
        assert_eq!(
            price(
                "query($n: Int) { items(first: $n) { nodes { child { id } } } }",
                json!({ "n": 10 })
            )
            .await,
            1 + 10 * 2
        );
        assert_eq!(
            price(
                "query($n: Int = 7) { items(first: $n) { nodes { id } } }",
                json!({})
            )
            .await,
            1 + 7
        );
        assert_eq!(
            price("{ items(first: 1000) { nodes { id } } }", json!({})).await,
            101
        );
    }

    #[tokio::test]
    async fn lists_multiply_and_aliases_fragments_add_up() {
        assert_eq!(
            price("{ list(limit: 5) { id child { id } } }", json!({})).await,
            1 + 5 * 2
        );
        assert_eq!(price("{ all { id } }", json!({})).await, 1 + 20);
        assert_eq!(
            price("{ a: items(first: 10) { nodes { ...F } } b: items(first: 10) { nodes { ...F } } } fragment F on Item { child { id } }", json!({})).await,
            2 * (1 + 10 * 2)
        );
        assert_eq!(
            price(
                "query($no: Boolean!) { item @include(if: $no) { id } all @skip(if: true) { id } }",
                json!({ "no": false })
            )
            .await,
            0
        );
    }

    #[tokio::test]
    async fn the_actual_cost_counts_what_was_returned() {
        let (cost, _) = run(
            "{ items(first: 100) { edges { node { id } } nodes { id } } nothing { id } item { child { id } } }",
            json!({}),
            1_000,
        )
        .await;
        assert_eq!(cost["requestedQueryCost"], 1 + 200 + 1 + 2);
        assert_eq!(cost["actualQueryCost"], 1 + 3 * 2 + 2);
        let (cost, _) = run("{ items(first: 30) { totalCount } }", json!({}), 1_000).await;
        assert_eq!(cost["actualQueryCost"], 31, "the page was read");
    }

    #[tokio::test]
    async fn a_query_over_the_limit_is_refused_with_its_cost() {
        let (cost, errors) = run(
            "{ a: items(first: 100) { nodes { id } } b: all { id } }",
            json!({}),
            100,
        )
        .await;
        assert_eq!(cost["requestedQueryCost"], 122);
        assert_eq!(cost["actualQueryCost"], 0);
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].message.contains("costs 122 points; at most 100"),
            "{}",
            errors[0].message
        );
    }

    #[tokio::test]
    async fn introspection_costs_one_per_field() {
        let query = "{ __schema { types { name fields { name type { ...T } } } } } fragment T on __Type { name ofType { name ofType { name } } }";
        assert_eq!(price(query, json!({})).await, 1 + 1 + 1 + 1 + 1 + 1 + 5);
    }

    #[tokio::test]
    async fn declared_list_sizes_price_lists_without_a_first() {
        assert_eq!(price("{ series { id } }", json!({})).await, 1 + 367);
        assert_eq!(
            price("{ board { total entries { id } } }", json!({})).await,
            1 + 1 + 10
        );
        assert_eq!(
            price(
                "{ board(first: 3) { entries { id child { id } } } }",
                json!({})
            )
            .await,
            1 + 1 + 3 * 2
        );
        assert_eq!(
            price(
                "{ a: board(first: 2) { ...B } b: board(first: 5) { ...B } } fragment B on Board { entries { id } }",
                json!({})
            )
            .await,
            (1 + 1 + 2) + (1 + 1 + 5)
        );
        let (cost, _) = run(
            "{ series { id } board(first: 50) { entries { id } } }",
            json!({}),
            1_000,
        )
        .await;
        assert_eq!(
            cost["actualQueryCost"],
            (1 + 3) + (1 + 1 + 3),
            "the items returned"
        );
    }

    #[tokio::test]
    async fn the_limit_applies_to_subscriptions_too() {
        let schema = Schema::build(Query, EmptyMutation, Subscription)
            .extension(QueryCost { limit: 100 })
            .finish();

        let refused: Vec<_> = schema
            .execute_stream("subscription { items(first: 100) { child { id } } }")
            .collect()
            .await;
        let accepted: Vec<_> = schema
            .execute_stream("subscription { items(first: 10) { child { id } } }")
            .collect()
            .await;

        assert_eq!(refused.len(), 1);
        assert!(
            refused[0].errors[0]
                .message
                .contains("costs 201 points; at most 100"),
            "{:?}",
            refused[0].errors
        );
        assert_eq!(accepted.len(), 1);
        assert!(accepted[0].errors.is_empty(), "{:?}", accepted[0].errors);
    }

    /// What each operation of the web app costs with its largest pages.
    #[tokio::test]
    async fn every_operation_of_the_web_app_fits_the_default_limit() {
        let manifest: serde_json::Value = serde_json::from_str(include_str!(
            "../../assets/webapp/persisted-query-manifest.json"
        ))
        .unwrap();
        // Limit 0: every operation is refused with its cost before any
        // resolver (which would need the services) runs.
        let schema = Schema::build(
            crate::schema::Query::default(),
            crate::schema::Mutation::default(),
            crate::schema::Subscription::default(),
        )
        .extension(QueryCost { limit: 0 })
        .finish();
        let limit = crate::config::Settings::from_source(&[("_", "")])
            .unwrap()
            .limits
            .query_complexity as u64;

        let operations = manifest["operations"].as_array().unwrap();
        assert!(operations.len() > 20);
        let mut most = 0;
        for op in operations {
            let request = async_graphql::Request::new(op["body"].as_str().unwrap())
                .variables(Variables::from_json(json!({ "first": 100 })));
            let response = schema.execute(request).await;
            let cost = serde_json::to_value(&response.extensions["cost"]).unwrap();
            let requested = cost["requestedQueryCost"].as_u64().unwrap();
            assert!(requested <= limit, "{}: {requested}", op["name"]);
            most = most.max(requested);
        }
        // A full page of modules with each one's progress (README).
        assert_eq!(most, 202);
    }
}
