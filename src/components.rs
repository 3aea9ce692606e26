//! The built-in source and sink types: each folder's registration table.

use crate::connector::Registry;

/// Every built-in type.
pub fn builtin() -> Registry {
    crate::sinks::register(crate::sources::register(Registry::new()))
}

/// The generated parts of `docs/pipeline-spec.md`: one key table per source and sink type,
/// between `<!-- keys:source:NAME -->` (or `sink`) and `<!-- /keys -->` lines.
pub fn key_tables(registry: &Registry) -> Vec<(String, String)> {
    use crate::config::schema::key_table;
    let sources = registry.sources().iter().map(|t| {
        let table = format!("{}.\n\n{}", capitalise(t.about), key_table(&(t.keys)()));
        (format!("source:{}", t.name), table)
    });
    let sinks = registry.sinks().iter().map(|t| {
        let table = format!("{}.\n\n{}", capitalise(t.about), key_table(&(t.keys)()));
        (format!("sink:{}", t.name), table)
    });
    sources.chain(sinks).collect()
}

fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map_or_else(String::new, |c| c.to_uppercase().chain(chars).collect())
}

/// `doc` with every generated block replaced by the registry's current table; blocks whose
/// type is not registered are left as they are.
pub fn render_key_tables(doc: &str, registry: &Registry) -> String {
    let tables = key_tables(registry);
    let mut out = String::with_capacity(doc.len());
    let mut lines = doc.split_inclusive('\n');
    while let Some(line) = lines.next() {
        out.push_str(line);
        let marker = line
            .trim()
            .strip_prefix("<!-- keys:")
            .and_then(|rest| rest.strip_suffix(" -->"));
        let Some((_, table)) = marker.and_then(|m| tables.iter().find(|(name, _)| name == m))
        else {
            continue;
        };
        // Skip the old block up to its end marker, then write the table and the marker.
        for old in lines.by_ref() {
            if old.trim() == "<!-- /keys -->" {
                out.push_str(table);
                out.push_str(old);
                break;
            }
        }
    }
    out
}
