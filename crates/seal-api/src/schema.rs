//! Checking a document against one of seal's CRD schemas the way the API server does with strict
//! field validation (`kubectl apply` since Kubernetes 1.27): unknown fields, missing required
//! fields, wrong JSON types and values outside an enum, each reported with the JSON path of the
//! field. `seal convert` uses it so that an ESO manifest with a field seal does not implement is
//! refused by name, offline, instead of being dropped on the way.
//!
//! Messages name fields and list the allowed enum values from the schema; they never quote the
//! document's values.

use serde_json::Value;

/// The first way a document breaks the schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {problem}")]
pub(crate) struct SchemaViolation {
    /// The JSON path of the field (`spec.dataFrom[0].sourceRef`).
    pub path: String,
    /// What is wrong with it.
    pub problem: SchemaProblem,
}

/// What is wrong with a field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SchemaProblem {
    /// The schema has no such field.
    #[error("not a field seal knows")]
    Unknown,
    /// A required field is absent.
    #[error("required")]
    Missing,
    /// A value of the wrong JSON type.
    #[error("must be {0}")]
    WrongType(&'static str),
    /// A string outside the enum.
    #[error("must be one of {0}")]
    NotOneOf(String),
}

/// Checks `value` (found at `path`) against a structural `schema` (an `openAPIV3Schema` node as
/// JSON). Objects without `properties` or `additionalProperties` accept anything, as do nodes with
/// `x-kubernetes-preserve-unknown-fields`.
pub(crate) fn check(value: &Value, schema: &Value, path: &str) -> Result<(), SchemaViolation> {
    let fail = |problem| {
        Err(SchemaViolation {
            path: path.to_owned(),
            problem,
        })
    };
    if value.is_null() {
        return if schema["nullable"] == true {
            Ok(())
        } else {
            fail(SchemaProblem::WrongType(type_name(schema)))
        };
    }
    match schema["type"].as_str() {
        Some("object") => {
            let Value::Object(map) = value else {
                return fail(SchemaProblem::WrongType("an object"));
            };
            let properties = schema["properties"].as_object();
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            let open = schema["x-kubernetes-preserve-unknown-fields"] == true;
            for (key, child) in map {
                let child_path = join(path, key);
                match (properties.and_then(|p| p.get(key)), additional) {
                    (Some(child_schema), _) | (None, Some(child_schema)) => {
                        check(child, child_schema, &child_path)?;
                    }
                    (None, None) if open || properties.is_none() => {}
                    (None, None) => {
                        return Err(SchemaViolation {
                            path: child_path,
                            problem: SchemaProblem::Unknown,
                        });
                    }
                }
            }
            for required in schema["required"].as_array().into_iter().flatten() {
                let Some(required) = required.as_str() else {
                    continue;
                };
                if !map.contains_key(required) {
                    return Err(SchemaViolation {
                        path: join(path, required),
                        problem: SchemaProblem::Missing,
                    });
                }
            }
            Ok(())
        }
        Some("array") => {
            let Value::Array(items) = value else {
                return fail(SchemaProblem::WrongType("a list"));
            };
            for (i, item) in items.iter().enumerate() {
                check(item, &schema["items"], &format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        Some("string") => {
            let Some(text) = value.as_str() else {
                return fail(SchemaProblem::WrongType("a string"));
            };
            match schema["enum"].as_array() {
                Some(allowed) if !allowed.iter().any(|a| a == text) => {
                    let names: Vec<_> = allowed.iter().filter_map(Value::as_str).collect();
                    fail(SchemaProblem::NotOneOf(names.join(", ")))
                }
                _ => Ok(()),
            }
        }
        Some("boolean") if !value.is_boolean() => fail(SchemaProblem::WrongType("true or false")),
        Some("integer") if !(value.is_i64() || value.is_u64()) => {
            fail(SchemaProblem::WrongType("an integer"))
        }
        Some("number") if !value.is_number() => fail(SchemaProblem::WrongType("a number")),
        _ => Ok(()),
    }
}

/// The openAPIV3Schema of `spec` in a CRD, as JSON.
pub(crate) fn spec_schema(
    crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
) -> Value {
    let version = &crd.spec.versions[0];
    let schema = version
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .expect("invariant: kube-derive CRDs carry a schema");
    let value = serde_json::to_value(schema).expect("invariant: a schema serializes to JSON");
    value["properties"]["spec"].clone()
}

fn type_name(schema: &Value) -> &'static str {
    match schema["type"].as_str() {
        Some("object") => "an object",
        Some("array") => "a list",
        Some("string") => "a string",
        Some("boolean") => "true or false",
        Some("integer") => "an integer",
        Some("number") => "a number",
        _ => "set",
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string"},
                "mode": {"type": "string", "enum": ["A", "B"], "nullable": true},
                "items": {"type": "array", "items": {"type": "object", "properties": {"x": {"type": "integer"}}}},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "open": {"type": "object", "properties": {}, "x-kubernetes-preserve-unknown-fields": true},
                "flag": {"type": "boolean"}
            }
        })
    }

    fn problem(value: &Value) -> String {
        check(value, &schema(), "spec").unwrap_err().to_string()
    }

    #[test]
    fn a_valid_document_passes() {
        check(
            &json!({"name": "a", "mode": "B", "items": [{"x": 1}], "labels": {"k": "v"}, "open": {"any": [1]}, "flag": true}),
            &schema(),
            "spec",
        )
        .unwrap();
        check(&json!({"name": "a", "mode": null}), &schema(), "spec").unwrap();
    }

    #[test]
    fn each_problem_names_its_field_and_no_value() {
        assert_eq!(
            problem(&json!({"name": "a", "items": [{"x": 1}, {"y": "s3cret"}]})),
            "spec.items[1].y: not a field seal knows"
        );
        assert_eq!(problem(&json!({"mode": "A"})), "spec.name: required");
        assert_eq!(
            problem(&json!({"name": "a", "mode": "s3cret"})),
            "spec.mode: must be one of A, B"
        );
        assert_eq!(
            problem(&json!({"name": "a", "labels": {"k": 1}})),
            "spec.labels.k: must be a string"
        );
        assert_eq!(
            problem(&json!({"name": "a", "flag": "yes"})),
            "spec.flag: must be true or false"
        );
        assert_eq!(
            problem(&json!({"name": "a", "items": {}})),
            "spec.items: must be a list"
        );
        assert_eq!(
            problem(&json!({"name": null})),
            "spec.name: must be a string"
        );
    }
}
