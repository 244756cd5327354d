//! Where a filter comes from: the `filter` or `where` parameter of the query string, as URL-encoded
//! JSON or in the bracket form that `qs` parses. The result is plain JSON for the parser.

use serde_json::{Map, Value};

use super::ast::{FilterError, err};

/// Most bracket-form entries of one parameter, and most segments in one bracket key.
const MAX_BRACKET_ENTRIES: usize = 4096;
const MAX_BRACKET_SEGMENTS: usize = 32;

#[cfg(test)]
mod tests;

/// Reads parameter `name` (`"filter"` or `"where"`) from a raw query string, in JSON form
/// (`filter={"where":{"status":0}}`, URL-encoded) or in bracket form
/// (`filter[where][status]=0&filter[limit]=5&filter[order][0]=name%20DESC`, as `qs` parses it).
/// Returns `None` when the parameter is absent or empty. Bracket values stay strings; the
/// parsers coerce them to the field types.
pub fn query_param(raw_query: Option<&str>, name: &str) -> Result<Option<Value>, FilterError> {
    let Some(raw) = raw_query else {
        return Ok(None);
    };
    let mut json: Option<String> = None;
    let mut tree: Option<Value> = None;
    let mut entries = 0usize;
    for (key, value) in form_urlencoded::parse(raw.as_bytes()) {
        let Some(rest) = key.strip_prefix(name) else {
            continue;
        };
        if rest.is_empty() {
            if json.is_some() {
                return err(format!("{name:?} is given more than once"));
            }
            json = Some(value.into_owned());
            continue;
        }
        if !rest.starts_with('[') {
            continue; // another parameter whose name starts the same
        }
        entries += 1;
        if entries > MAX_BRACKET_ENTRIES {
            return err(format!(
                "{name:?} has more than {MAX_BRACKET_ENTRIES} bracket entries"
            ));
        }
        let segments = bracket_segments(rest)
            .ok_or_else(|| FilterError::new(format!("malformed parameter name {key:?}")))?;
        let root = tree.get_or_insert_with(|| Value::Object(Map::new()));
        insert_bracket(root, &segments, value.into_owned())
            .map_err(|path| FilterError::new(format!("conflicting values for {name}{path}")))?;
    }
    match (json, tree) {
        (Some(_), Some(_)) => err(format!(
            "{name:?} is given both as JSON and in bracket form"
        )),
        (Some(text), None) if text.trim().is_empty() => Ok(None),
        (Some(text), None) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| FilterError::new(format!("{name:?} is not valid JSON: {e}"))),
        (None, Some(tree)) => Ok(Some(arrays_from_indices(tree))),
        (None, None) => Ok(None),
    }
}

/// `[where][or][0][name]` → `["where", "or", "0", "name"]`; `None` when malformed.
fn bracket_segments(mut rest: &str) -> Option<Vec<&str>> {
    let mut segments = Vec::new();
    while !rest.is_empty() {
        let inner = rest.strip_prefix('[')?;
        let end = inner.find(']')?;
        let segment = &inner[..end];
        if segment.contains('[') {
            return None;
        }
        segments.push(segment);
        if segments.len() > MAX_BRACKET_SEGMENTS {
            return None;
        }
        rest = &inner[end + 1..];
    }
    Some(segments)
}

fn is_index(key: &str) -> bool {
    key.parse::<usize>().is_ok_and(|i| i.to_string() == key)
}

/// Sets `segments` of `node` to `value`, qs-style: an empty segment (`[]`) appends, a repeated
/// leaf turns into a list. Returns the conflicting path on error.
fn insert_bracket(node: &mut Value, segments: &[&str], value: String) -> Result<(), String> {
    let Value::Object(map) = node else {
        return Err(String::new());
    };
    let (first, rest) = match segments.split_first() {
        Some(split) => split,
        None => return Err(String::new()),
    };
    let key = if first.is_empty() {
        next_index(map).ok_or_else(String::new)?
    } else {
        (*first).to_string()
    };
    let at = |path: String| format!("[{key}]{path}");
    if rest.is_empty() {
        match map.get_mut(&key) {
            None => {
                map.insert(key, Value::String(value));
            }
            Some(Value::String(previous)) => {
                let previous = std::mem::take(previous);
                let mut list = Map::new();
                list.insert("0".into(), Value::String(previous));
                list.insert("1".into(), Value::String(value));
                map.insert(key, Value::Object(list));
            }
            Some(Value::Object(list)) if list.keys().all(|k| is_index(k)) => {
                let index = next_index(list).ok_or_else(|| at(String::new()))?;
                list.insert(index, Value::String(value));
            }
            Some(_) => return Err(at(String::new())),
        }
        return Ok(());
    }
    let child = map
        .entry(key.clone())
        .or_insert_with(|| Value::Object(Map::new()));
    if !child.is_object() {
        return Err(at(String::new()));
    }
    insert_bracket(child, rest, value).map_err(at)
}

/// The index after the largest one in `map`; `None` when there is none after it.
fn next_index(map: &Map<String, Value>) -> Option<String> {
    match map.keys().filter_map(|k| k.parse::<usize>().ok()).max() {
        None => Some("0".into()),
        Some(max) => max.checked_add(1).map(|i| i.to_string()),
    }
}

/// Objects whose keys are all array indices become arrays (in index order, gaps closed).
fn arrays_from_indices(v: Value) -> Value {
    match v {
        Value::Object(map) if !map.is_empty() && map.keys().all(|k| is_index(k)) => {
            let mut items: Vec<(usize, Value)> = map
                .into_iter()
                .map(|(k, v)| (k.parse().unwrap_or(usize::MAX), arrays_from_indices(v)))
                .collect();
            items.sort_by_key(|(i, _)| *i);
            Value::Array(items.into_iter().map(|(_, v)| v).collect())
        }
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, arrays_from_indices(v)))
                .collect(),
        ),
        other => other,
    }
}
