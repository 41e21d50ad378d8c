//! `statusgate schema config|profile|canonical`: the JSON Schema (draft 2020-12) of the main
//! file, a vendor profile and the canonical profile, generated from the raw serde types
//! (`schema::RawConfig`, `spec::RawProfile`, `spec::RawCanonical`). The same text is shipped
//! under docs/schema/ for editors (`# yaml-language-server: $schema=...`); tests/schema.rs keeps
//! the two equal and validates every shipped YAML file against it.

use clap::ValueEnum;
use schemars::{generate::SchemaSettings, JsonSchema, Schema};

use super::schema::{RawCanonical, RawConfig, RawProfile};

/// Which file's schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SchemaKind {
    /// The main file (statusgate.yaml): docs/schema/statusgate.schema.json.
    Config,
    /// A vendor profile (rules/huawei-vpcep.yaml, ...): docs/schema/profile.schema.json.
    Profile,
    /// The canonical profile (rules/canonical.yaml): docs/schema/canonical.schema.json.
    Canonical,
}

impl SchemaKind {
    /// The file name under docs/schema/.
    pub fn file_name(self) -> &'static str {
        match self {
            SchemaKind::Config => "statusgate.schema.json",
            SchemaKind::Profile => "profile.schema.json",
            SchemaKind::Canonical => "canonical.schema.json",
        }
    }
}

fn root<T: JsonSchema>(title: &str) -> Schema {
    let mut schema = SchemaSettings::draft2020_12()
        .into_generator()
        .into_root_schema_for::<T>();
    schema.insert("title".into(), title.into());
    schema
}

/// The schema as shipped: pretty JSON and a final newline.
pub fn render(kind: SchemaKind) -> String {
    let schema = match kind {
        SchemaKind::Config => root::<RawConfig>("statusgate main configuration file"),
        SchemaKind::Profile => root::<RawProfile>("statusgate vendor profile"),
        SchemaKind::Canonical => root::<RawCanonical>("statusgate canonical profile"),
    };
    let mut text = serde_json::to_string_pretty(&schema).expect("a schema is JSON");
    text.push('\n');
    text
}
