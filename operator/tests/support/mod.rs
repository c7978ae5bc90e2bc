//! Shared by the chart and CRD suites: the chart's path, YAML reading, and the checks
//! the API server would run on a custom resource (structural schema and CEL rules).

#![allow(dead_code)]

use std::path::PathBuf;

use kube::core::cel::Validator;
use serde_json::{Value, json};

pub fn chart() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../charts/confer")
}

pub fn read_yaml(path: PathBuf) -> Value {
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The schema of `kind` from the committed CRD.
pub fn schema(plural: &str) -> Value {
    let crd = read_yaml(chart().join(format!("files/crds/{plural}.confer.dev.yaml")));
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

/// Structural checks of the OpenAPI subset CRDs use: types, required and unknown
/// fields, enums, int-or-string, embedded Kubernetes types.
fn check_structure(schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
    if value.is_null() && schema["nullable"] == json!(true) {
        return;
    }
    if schema["x-kubernetes-int-or-string"] == json!(true) {
        if !(value.is_string() || value.is_i64()) {
            errors.push(format!("{path}: expected an integer or a string"));
        }
        return;
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        errors.push(format!("{path}: {value} is not one of {allowed:?}"));
    }
    let type_ok = match schema["type"].as_str() {
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        _ => true,
    };
    if !type_ok {
        errors.push(format!(
            "{path}: expected {}, found {value}",
            schema["type"]
        ));
        return;
    }
    if let (Some(object), Some(properties)) = (value.as_object(), schema["properties"].as_object())
    {
        for required in schema["required"].as_array().into_iter().flatten() {
            let name = required.as_str().unwrap_or_default();
            if !object.contains_key(name) {
                errors.push(format!("{path}.{name}: required"));
            }
        }
        for (key, child) in object {
            match properties.get(key) {
                Some(child_schema) => {
                    check_structure(child_schema, child, &format!("{path}.{key}"), errors)
                }
                None if path.is_empty()
                    && ["apiVersion", "kind", "metadata"].contains(&key.as_str()) => {}
                None if schema["x-kubernetes-preserve-unknown-fields"] == json!(true) => {}
                None => errors.push(format!("{path}.{key}: unknown field")),
            }
        }
    } else if let (Some(object), Some(values)) =
        (value.as_object(), schema.get("additionalProperties"))
    {
        for (key, child) in object {
            check_structure(values, child, &format!("{path}.{key}"), errors);
        }
    }
    if let (Some(items), Some(schema)) = (value.as_array(), schema.get("items")) {
        for (i, item) in items.iter().enumerate() {
            check_structure(schema, item, &format!("{path}[{i}]"), errors);
        }
    }
}

/// Every problem the API server would report for `object` (and, on update, `old`).
pub fn problems(plural: &str, object: &Value, old: Option<&Value>) -> Vec<String> {
    let schema = schema(plural);
    let mut errors = Vec::new();
    check_structure(&schema, object, "", &mut errors);
    if let Err(failed) = Validator::new().validate(&schema, object, old) {
        errors.extend(
            failed
                .into_vec()
                .into_iter()
                .map(|e| format!("{}: {}", e.field_path, e.message)),
        );
    }
    errors
}
