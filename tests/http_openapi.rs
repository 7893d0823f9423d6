//! `openapi.yaml` and the router describe the same routes, and every path parameter is declared.

use std::collections::BTreeSet;

use serde_yaml::Value;

const METHODS: [&str; 7] = ["get", "put", "post", "delete", "patch", "head", "options"];

fn spec() -> Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml"))
        .expect("openapi.yaml at the repository root");
    serde_yaml::from_str(&text).expect("openapi.yaml is valid YAML")
}

/// Follows a local `$ref` such as `#/components/parameters/TaskHub`.
fn resolve<'a>(root: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => r
            .trim_start_matches("#/")
            .split('/')
            .fold(root, |node, key| &node[key]),
        None => v,
    }
}

#[test]
fn router_and_openapi_agree() {
    let spec = spec();
    let mut documented = BTreeSet::new();
    for (path, item) in spec["paths"].as_mapping().expect("paths") {
        let path = path.as_str().unwrap();
        for m in METHODS {
            if item.get(m).is_some() {
                documented.insert((m.to_uppercase(), path.to_string()));
            }
        }
    }
    let served: BTreeSet<(String, String)> =
        taskhub::http::documented_routes().into_iter().collect();
    let missing_in_yaml: Vec<_> = served.difference(&documented).collect();
    let missing_in_router: Vec<_> = documented.difference(&served).collect();
    assert!(
        missing_in_yaml.is_empty() && missing_in_router.is_empty(),
        "served but not in openapi.yaml: {missing_in_yaml:?}\nin openapi.yaml but not served: {missing_in_router:?}"
    );
}

#[test]
fn every_operation_declares_its_path_parameters_and_responses() {
    let spec = spec();
    for (path, item) in spec["paths"].as_mapping().unwrap() {
        let path = path.as_str().unwrap();
        let wanted: BTreeSet<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        for m in METHODS {
            let Some(op) = item.get(m) else { continue };
            let declared: BTreeSet<&str> = op["parameters"]
                .as_sequence()
                .map(|ps| {
                    ps.iter()
                        .map(|p| resolve(&spec, p))
                        .filter(|p| p["in"].as_str() == Some("path"))
                        .filter_map(|p| p["name"].as_str())
                        .collect()
                })
                .unwrap_or_default();
            assert_eq!(declared, wanted, "{m} {path}: path parameters");
            let responses = op["responses"].as_mapping().expect("responses");
            assert!(!responses.is_empty(), "{m} {path}: no responses");
            for (code, response) in responses {
                let r = resolve(&spec, response);
                assert!(
                    r.get("description").is_some(),
                    "{m} {path} {code:?}: response without a description (bad $ref?)"
                );
            }
        }
    }
}
