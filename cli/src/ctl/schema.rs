//! `herd explain`: a field's type, description and sub-fields, read from the
//! JSON Schema the server derives from herd's types (`$ref`s into `$defs`,
//! `Option<T>` as `anyOf [T, null]` or `type: [T, "null"]`).

use serde_json::{Map, Value};

/// Width descriptions are wrapped to.
const WRAP: usize = 76;
/// Deepest level `--recursive` descends to (the types have no cycles; this
/// only guards against a schema that does).
const MAX_DEPTH: usize = 12;

/// The text `herd explain KIND[.path]` prints.
pub fn explain(
    kind: &str,
    api_version: &str,
    schema: &Value,
    path: &[&str],
    recursive: bool,
) -> Result<String, String> {
    let defs = schema.get("$defs").and_then(Value::as_object);
    let walker = Walker { defs };
    let mut node = schema;
    let mut walked = vec![kind.to_owned()];
    for field in path {
        let object = walker.object_of(node);
        let props = object
            .and_then(|o| o.get("properties"))
            .and_then(Value::as_object);
        match props.and_then(|p| p.get(*field)) {
            Some(next) => node = next,
            None => {
                let here = walked.join(".");
                return Err(match props {
                    Some(p) if !p.is_empty() => format!(
                        "field {field:?} does not exist in {here}; its fields are: {}",
                        p.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                    _ => format!("{here} is <{}> and has no fields", walker.type_name(node)),
                });
            }
        }
        walked.push((*field).to_owned());
    }

    let mut out = format!("KIND:       {kind}\nVERSION:    {api_version}\n\n");
    if let Some(field) = path.last() {
        out.push_str(&format!("FIELD: {field} <{}>\n\n", walker.type_name(node)));
    }
    out.push_str("DESCRIPTION:\n");
    let description = walker.description(node);
    if description.is_empty() {
        out.push_str("    <empty>\n");
    } else {
        out.push_str(&wrap(&description, 4));
    }
    let enums = walker.enum_values(node);
    if !enums.is_empty() {
        out.push_str("\nENUM:\n");
        for v in enums {
            out.push_str(&format!("    {v}\n"));
        }
    }
    if let Some(default) = walker.default(node) {
        out.push_str(&format!("\nDEFAULT: {default}\n"));
    }
    let with_fields = walker.object_of(node).filter(|o| {
        o.get("properties")
            .and_then(Value::as_object)
            .is_some_and(|p| !p.is_empty())
    });
    if let Some(object) = with_fields {
        out.push_str("\nFIELDS:\n");
        walker.fields(object, 1, recursive, &mut out);
    }
    Ok(out)
}

struct Walker<'a> {
    defs: Option<&'a Map<String, Value>>,
}

impl<'a> Walker<'a> {
    /// Follows a `$ref` into `$defs`.
    fn deref(&self, node: &'a Value) -> &'a Value {
        let mut node = node;
        for _ in 0..MAX_DEPTH {
            let Some(name) = node.get("$ref").and_then(Value::as_str).and_then(ref_name) else {
                break;
            };
            match self.defs.and_then(|d| d.get(name)) {
                Some(def) => node = def,
                None => break,
            }
        }
        node
    }

    /// The non-null branch of `anyOf [T, null]`, dereferenced.
    fn unwrap(&self, node: &'a Value) -> &'a Value {
        let node = self.deref(node);
        for key in ["anyOf", "oneOf"] {
            if let Some(branches) = node.get(key).and_then(Value::as_array) {
                let real: Vec<&Value> = branches.iter().filter(|b| !is_null_type(b)).collect();
                if let [only] = real.as_slice() {
                    return self.deref(only);
                }
            }
        }
        node
    }

    /// The schema whose `properties` apply at `node`: the node itself, or
    /// the items of an array of objects.
    fn object_of(&self, node: &'a Value) -> Option<&'a Value> {
        let node = self.unwrap(node);
        if node.get("properties").is_some() {
            return Some(node);
        }
        let items = node.get("items")?;
        let items = self.unwrap(items);
        items.get("properties").is_some().then_some(items)
    }

    /// `string`, `integer`, `[]Condition`, `map[string]string`, `NodeSpec`.
    fn type_name(&self, node: &Value) -> String {
        let named = named_ref(node).or_else(|| {
            ["anyOf", "oneOf"].iter().find_map(|k| {
                let branches = node.get(*k)?.as_array()?;
                let real: Vec<&Value> = branches.iter().filter(|b| !is_null_type(b)).collect();
                match real.as_slice() {
                    [only] => named_ref(only),
                    _ => None,
                }
            })
        });
        if let Some(name) = named {
            return name.to_owned();
        }
        let node = self.unwrap(node);
        match primary_type(node) {
            Some("array") => match node.get("items") {
                Some(items) => format!("[]{}", self.type_name(items)),
                None => "[]Object".to_owned(),
            },
            Some("object") => match node.get("additionalProperties") {
                Some(v @ Value::Object(_)) => format!("map[string]{}", self.type_name(v)),
                _ => "Object".to_owned(),
            },
            Some(t) => t.to_owned(),
            None if node.get("enum").is_some() => "string".to_owned(),
            None => "Object".to_owned(),
        }
    }

    /// The field's own description, else its type's.
    fn description(&self, node: &Value) -> String {
        let own = node.get("description").and_then(Value::as_str);
        let typed = self.unwrap(node).get("description").and_then(Value::as_str);
        own.or(typed).unwrap_or("").to_owned()
    }

    fn enum_values(&self, node: &Value) -> Vec<String> {
        self.unwrap(node)
            .get("enum")
            .and_then(Value::as_array)
            .map(|vs| {
                vs.iter()
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A default worth telling (not an empty string, list or object).
    fn default(&self, node: &Value) -> Option<String> {
        let d = node.get("default")?;
        match d {
            Value::String(s) if s.is_empty() => None,
            Value::Array(a) if a.is_empty() => None,
            Value::Object(_) | Value::Null => None,
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }
    }

    fn fields(&self, object: &Value, depth: usize, recursive: bool, out: &mut String) {
        let Some(props) = object.get("properties").and_then(Value::as_object) else {
            return;
        };
        let required: Vec<&str> = object
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let pad = "  ".repeat(depth);
        for (name, field) in props {
            let mut line = format!("{pad}{name}\t<{}>", self.type_name(field));
            if required.contains(&name.as_str()) {
                line.push_str(" -required-");
            }
            out.push_str(&line);
            out.push('\n');
            if recursive {
                let child = self.object_of(field).filter(|_| depth < MAX_DEPTH);
                if let Some(child) = child {
                    self.fields(child, depth + 1, true, out);
                }
            } else {
                let description = self.description(field);
                if !description.is_empty() {
                    out.push_str(&wrap(&description, depth * 2 + 2));
                }
            }
        }
    }
}

fn ref_name(r: &str) -> Option<&str> {
    r.strip_prefix("#/$defs/")
        .or_else(|| r.strip_prefix("#/definitions/"))
}

fn named_ref(node: &Value) -> Option<&str> {
    node.get("$ref").and_then(Value::as_str).and_then(ref_name)
}

fn is_null_type(node: &Value) -> bool {
    node.get("type").and_then(Value::as_str) == Some("null")
}

/// `"integer"` from `type: "integer"` or `type: ["integer", "null"]`.
fn primary_type(node: &Value) -> Option<&str> {
    match node.get("type")? {
        Value::String(s) => Some(s),
        Value::Array(types) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null"),
        _ => None,
    }
}

/// Rust doc comments wrap at their own width; join each paragraph into one
/// line, then wrap it to [`WRAP`] columns at `indent`.
fn wrap(text: &str, indent: usize) -> String {
    let pad = " ".repeat(indent);
    let mut out = String::new();
    for (i, paragraph) in text.split("\n\n").enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let mut line = String::new();
        for word in paragraph.split_whitespace() {
            if !line.is_empty() && indent + line.len() + 1 + word.len() > WRAP {
                out.push_str(&format!("{pad}{line}\n"));
                line.clear();
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        if !line.is_empty() {
            out.push_str(&format!("{pad}{line}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use herd_api::{ModelAssignment, Node, Resource};

    use super::*;

    #[test]
    fn nested_field_through_a_ref_and_an_option() {
        let schema = ModelAssignment::kind_schema();
        let text = explain(
            "ModelAssignment",
            "herd/v1",
            &schema,
            &["spec", "nodeSelector"],
            false,
        )
        .expect("explain");
        assert!(
            text.contains("FIELD: nodeSelector <NodeSelector>"),
            "{text}"
        );
        assert!(
            text.contains("  matchLabels\t<map[string]string>"),
            "{text}"
        );
        assert!(text.contains("    Nodes must carry every one"), "{text}");
    }

    #[test]
    fn scalars_enums_arrays_and_errors() {
        let schema = Node::kind_schema();
        let text =
            explain("Node", "herd/v1", &schema, &["spec", "maxParallel"], false).expect("explain");
        assert!(text.contains("FIELD: maxParallel <integer>"), "{text}");
        assert!(text.contains("DEFAULT: 4"), "{text}");

        let text =
            explain("Node", "herd/v1", &schema, &["status", "conditions"], false).expect("explain");
        assert!(text.contains("FIELD: conditions <[]Condition>"), "{text}");
        assert!(text.contains("  type\t<string> -required-"), "{text}");

        let text = explain(
            "Node",
            "herd/v1",
            &schema,
            &["status", "conditions", "status"],
            false,
        )
        .expect("explain");
        assert!(
            text.contains("ENUM:\n    True\n    False\n    Unknown"),
            "{text}"
        );

        let err =
            explain("Node", "herd/v1", &schema, &["spec", "olamaUrl"], false).expect_err("typo");
        assert!(
            err.contains("\"olamaUrl\" does not exist in Node.spec"),
            "{err}"
        );
        assert!(err.contains("url") && err.contains("caCert"), "{err}");

        let err = explain("Node", "herd/v1", &schema, &["spec", "weight", "x"], false)
            .expect_err("scalar");
        assert!(
            err.contains("Node.spec.weight is <integer> and has no fields"),
            "{err}"
        );
    }

    #[test]
    fn recursive_lists_the_tree() {
        let schema = ModelAssignment::kind_schema();
        let text =
            explain("ModelAssignment", "herd/v1", &schema, &["spec"], true).expect("explain");
        assert!(
            text.contains("  nodeSelector\t<NodeSelector>\n    matchLabels\t<map[string]string>\n"),
            "{text}"
        );
    }
}
