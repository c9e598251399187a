//! Printing answers: a fixed set of columns per resource for people, or the
//! Connect (proto) JSON of the response messages — as JSON or as YAML — for
//! scripts. Tables show ids in full and never wrap.

use clap::ValueEnum;
use comfy_table::{ContentArrangement, Table, presets};
use serde_json::Value;

use super::{Failure, Outcome};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
    Yaml,
}

/// One column of a table: its header, where its value is in the resource's
/// JSON (a dotted path of JSON field names), the prefix to drop from enum
/// values (`RUNNER_PHASE_ACTIVE` shows as `ACTIVE`), and what an absent value
/// shows as (proto JSON leaves out false and zero).
pub struct Column {
    pub header: &'static str,
    pub path: &'static str,
    pub enum_prefix: &'static str,
    pub absent: &'static str,
}

pub const fn col(header: &'static str, path: &'static str) -> Column {
    Column {
        header,
        path,
        enum_prefix: "",
        absent: "",
    }
}

/// A boolean column: absent is false.
pub const fn flag_col(header: &'static str, path: &'static str) -> Column {
    Column {
        absent: "false",
        ..col(header, path)
    }
}

/// A number column: absent is 0.
pub const fn count_col(header: &'static str, path: &'static str) -> Column {
    Column {
        absent: "0",
        ..col(header, path)
    }
}

pub const fn enum_col(header: &'static str, path: &'static str, prefix: &'static str) -> Column {
    Column {
        enum_prefix: prefix,
        ..col(header, path)
    }
}

/// The text of one cell.
pub fn cell(value: &Value, column: &Column) -> String {
    let mut current = value;
    for part in column.path.split('.') {
        match current.get(part) {
            Some(next) => current = next,
            None => return column.absent.to_string(),
        }
    }
    let text = |v: &Value| match v {
        Value::Null => column.absent.to_string(),
        Value::String(s) => s
            .strip_prefix(column.enum_prefix)
            .filter(|_| !column.enum_prefix.is_empty())
            .unwrap_or(s)
            .to_string(),
        other => other.to_string(),
    };
    match current {
        Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(","),
        other => text(other),
    }
}

fn new_table() -> Table {
    let mut table = Table::new();
    table
        .load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled);
    table
}

/// A table with one row per item.
pub fn table(items: &[Value], columns: &[Column]) -> String {
    let mut table = new_table();
    table.set_header(columns.iter().map(|c| c.header));
    for item in items {
        table.add_row(columns.iter().map(|c| cell(item, c)));
    }
    trim_lines(&table.to_string())
}

/// A two-column table (field, value) for one item.
pub fn vertical(item: &Value, columns: &[Column]) -> String {
    let mut table = new_table();
    for column in columns {
        table.add_row(vec![column.header.to_string(), cell(item, column)]);
    }
    trim_lines(&table.to_string())
}

/// Drops the padding the table puts around each line.
fn trim_lines(text: &str) -> String {
    text.lines()
        .map(|l| l.strip_prefix(' ').unwrap_or(l).trim_end())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Prints a JSON value as JSON (pretty) or YAML.
pub fn print_document(format: Format, value: &Value) -> Outcome {
    let text = match format {
        Format::Yaml => serde_yaml::to_string(value)
            .map_err(|e| Failure::other(format!("encoding YAML: {e}")))?,
        _ => serde_json::to_string_pretty(value)
            .map_err(|e| Failure::other(format!("encoding JSON: {e}")))?,
    };
    println!("{}", text.trim_end());
    Ok(())
}

/// Prints all `items` of a list: a table, or `{"<key>": [items]}` (the list
/// response with every page in one).
pub fn print_list(format: Format, key: &str, items: Vec<Value>, columns: &[Column]) -> Outcome {
    match format {
        Format::Table => {
            println!("{}", table(&items, columns));
            Ok(())
        }
        _ => print_document(format, &serde_json::json!({ key: items })),
    }
}

/// Prints a response holding one item under `key` (e.g. GetRunnerResponse's
/// `runner`): the item as a vertical table, or the whole response.
pub fn print_item(format: Format, response: &Value, key: &str, columns: &[Column]) -> Outcome {
    match format {
        Format::Table => {
            let item = response.get(key).cloned().unwrap_or(Value::Null);
            println!("{}", vertical(&item, columns));
            Ok(())
        }
        _ => print_document(format, response),
    }
}

/// Prints what a command did: a sentence for people, the response for scripts.
pub fn print_done(format: Format, response: &Value, sentence: &str) -> Outcome {
    match format {
        Format::Table => {
            println!("{sentence}");
            Ok(())
        }
        _ => print_document(format, response),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cells_follow_paths_strip_enum_prefixes_and_join_lists() {
        let runner = json!({
            "runnerId": "r1",
            "status": {"phase": "RUNNER_PHASE_ACTIVE", "capabilities": ["A", "B"]},
        });
        assert_eq!(cell(&runner, &col("ID", "runnerId")), "r1");
        assert_eq!(
            cell(&runner, &enum_col("PHASE", "status.phase", "RUNNER_PHASE_")),
            "ACTIVE"
        );
        assert_eq!(cell(&runner, &col("CAPS", "status.capabilities")), "A,B");
        assert_eq!(cell(&runner, &col("MISSING", "spec.name")), "");
        assert_eq!(cell(&runner, &flag_col("FLAG", "spec.enabled")), "false");
        assert_eq!(cell(&runner, &count_col("COUNT", "spec.count")), "0");
    }

    #[test]
    fn tables_have_a_header_and_full_values() {
        let id = "0f8fad5b-d9cb-469f-a165-70867728950e";
        let text = table(
            &[json!({"id": id, "name": "a runner"})],
            &[col("ID", "id"), col("NAME", "name")],
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].starts_with("ID"), "{text}");
        assert!(
            lines[1].contains(id) && lines[1].ends_with("a runner"),
            "{text}"
        );
    }
}
