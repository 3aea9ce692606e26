//! JSON-schema descriptions of the value types of pipeline files, so that a component's
//! config struct (with `#[derive(JsonSchema)]` and doc comments) documents its own keys.

use std::borrow::Cow;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};

use super::de::{OneOrMany, Spanned};
use super::values::{Duration, Parsed, Secret};

impl<T: JsonSchema> JsonSchema for Spanned<T> {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        T::schema_name()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        T::json_schema(generator)
    }
}

impl<T> JsonSchema for Parsed<T> {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "Text".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "string"})
    }
}

impl JsonSchema for Duration {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "string", "format": "duration"})
    }
}

impl JsonSchema for Secret {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "Secret".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "string", "writeOnly": true})
    }
}

impl JsonSchema for OneOrMany {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "Streams".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]})
    }
}

/// One key of a component's config, for docs tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyDoc {
    pub key: String,
    pub required: bool,
    /// The field's doc comment, on one line.
    pub meaning: String,
}

/// The keys of a config struct, in alphabetical order, from its schema.
pub fn keys_of<T: JsonSchema>() -> Vec<KeyDoc> {
    let schema = schemars::SchemaGenerator::default().into_root_schema_for::<T>();
    let required: Vec<&str> = schema
        .get("required")
        .and_then(|r| r.as_array())
        .map(|r| r.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    let Some(properties) = schema.get("properties").and_then(|p| p.as_object()) else {
        return Vec::new();
    };
    properties
        .iter()
        .map(|(key, property)| KeyDoc {
            key: key.clone(),
            required: required.contains(&key.as_str()),
            meaning: property
                .get("description")
                .and_then(|d| d.as_str())
                .unwrap_or_default()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
        })
        .collect()
}

/// A Markdown table of `keys`.
pub fn key_table(keys: &[KeyDoc]) -> String {
    let mut out = String::from("| key | required | meaning |\n|---|---|---|\n");
    for k in keys {
        let meaning = k.meaning.replace('|', "\\|");
        let required = if k.required { "yes" } else { "no" };
        out += &format!("| `{}` | {required} | {meaning} |\n", k.key);
    }
    out
}
