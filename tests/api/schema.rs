//! The schema against its exported SDL (drift) and against the public
//! contract (every type, field, argument and default present, unchanged).

use std::collections::HashMap;

use async_graphql::parser::{
    parse_schema,
    types::{TypeKind, TypeSystemDefinition},
};

const EXPORTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/schema/kairos.graphql");
const CONTRACT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/schema/contract.graphql");
const SHARED_CONTRACT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/spec/schema.graphql");

#[test]
fn the_exported_sdl_matches_the_running_schema() {
    let running = kairos::schema::sdl();
    if std::env::var("UPDATE_SCHEMA").is_ok() {
        std::fs::write(EXPORTED, &running).unwrap();
    }
    let exported = std::fs::read_to_string(EXPORTED).unwrap_or_default();
    assert!(
        exported == running,
        "schema/kairos.graphql drifted from the running schema: run `UPDATE_SCHEMA=1 cargo test --test api schema` \
         (or `cargo run -- schema > schema/kairos.graphql`) and review the diff"
    );
}

#[test]
fn the_vendored_contract_is_the_shared_one() {
    // CI has shared/ beside the clone; elsewhere the vendored copy stands.
    if let Ok(shared) = std::fs::read_to_string(SHARED_CONTRACT) {
        let vendored = std::fs::read_to_string(CONTRACT).unwrap();
        assert_eq!(
            vendored, shared,
            "schema/contract.graphql is older than shared/spec/schema.graphql"
        );
    }
}

/// Every type of an SDL by name: its kind and, per field, the type and
/// the arguments with their types and defaults.
type Shape = HashMap<String, (String, HashMap<String, String>)>;

fn shape(sdl: &str) -> Shape {
    let doc = parse_schema(sdl).expect("valid SDL");
    let mut out = Shape::new();
    for def in doc.definitions {
        let TypeSystemDefinition::Type(ty) = def else {
            continue;
        };
        let ty = ty.node;
        let mut members = HashMap::new();
        let kind = match &ty.kind {
            TypeKind::Scalar => "scalar",
            TypeKind::Object(o) => {
                for f in &o.fields {
                    let f = &f.node;
                    let args: Vec<String> = f
                        .arguments
                        .iter()
                        .map(|a| {
                            let a = &a.node;
                            let default = a
                                .default_value
                                .as_ref()
                                .map(|d| d.node.to_string())
                                .unwrap_or_default();
                            format!("{}: {} = {}", a.name.node, a.ty.node, default)
                        })
                        .collect();
                    members.insert(
                        f.name.node.to_string(),
                        format!("{} ({})", f.ty.node, args.join(", ")),
                    );
                }
                "type"
            }
            TypeKind::Enum(e) => {
                for v in &e.values {
                    members.insert(v.node.value.node.to_string(), String::new());
                }
                "enum"
            }
            TypeKind::InputObject(i) => {
                for f in &i.fields {
                    let f = &f.node;
                    let default = f
                        .default_value
                        .as_ref()
                        .map(|d| d.node.to_string())
                        .unwrap_or_default();
                    members.insert(
                        f.name.node.to_string(),
                        format!("{} = {}", f.ty.node, default),
                    );
                }
                "input"
            }
            TypeKind::Interface(_) => "interface",
            TypeKind::Union(_) => "union",
        };
        out.insert(ty.name.node.to_string(), (kind.to_string(), members));
    }
    out
}

/// Parts of contract 1.1 not served yet, each with the issue that adds it.
/// The test fails for anything else missing, and also when an entry here
/// is served (so the list only shrinks).
const PENDING_1_1: &[&str] = &[];

#[test]
fn every_type_field_and_argument_of_the_contract_is_served_unchanged() {
    let contract = shape(&std::fs::read_to_string(CONTRACT).unwrap());
    let running = shape(&kairos::schema::sdl());
    let mut missing = Vec::new();
    for (name, (kind, members)) in &contract {
        let Some((running_kind, running_members)) = running.get(name) else {
            missing.push(format!("type {name}"));
            continue;
        };
        if kind != running_kind {
            missing.push(format!("{name} is a {running_kind}, not a {kind}"));
        }
        for (member, signature) in members {
            match running_members.get(member) {
                None => missing.push(format!("{name}.{member}")),
                Some(s)
                    if kind == "type" && !s.starts_with(signature.split(" (").next().unwrap()) =>
                {
                    missing.push(format!("{name}.{member}: {s} instead of {signature}"))
                }
                Some(s) if kind != "enum" && kind != "type" && s != signature => {
                    missing.push(format!("{name}.{member}: {s} instead of {signature}"))
                }
                Some(s) if kind == "type" => {
                    // Every contract argument is there with its type and default
                    // (the service may add arguments).
                    let args = |sig: &str| -> Vec<String> {
                        let inner = sig
                            .split_once(" (")
                            .map(|(_, a)| a.trim_end_matches(')'))
                            .unwrap_or("");
                        inner
                            .split(", ")
                            .filter(|a| !a.is_empty())
                            .map(str::to_string)
                            .collect()
                    };
                    let served = args(s);
                    for arg in args(signature) {
                        if !served.contains(&arg) {
                            missing.push(format!("{name}.{member}({arg}) served as {s}"));
                        }
                    }
                }
                Some(_) => {}
            }
        }
    }
    missing.sort();
    let served_now: Vec<&&str> = PENDING_1_1
        .iter()
        .filter(|p| !missing.iter().any(|m| m == **p))
        .collect();
    assert!(
        served_now.is_empty(),
        "served now, remove from PENDING_1_1: {served_now:?}"
    );
    missing.retain(|m| !PENDING_1_1.contains(&m.as_str()));
    assert!(
        missing.is_empty(),
        "the running schema breaks the contract:\n{}",
        missing.join("\n")
    );
}
