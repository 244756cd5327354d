//! Properties over arbitrary input: no query string or JSON makes parsing or rendering panic, and
//! every random valid filter parses and renders alike on both databases.

use proptest::prelude::*;
use rand::SeedableRng;
use serde_json::{Value, json};

use super::render;
use crate::model::{ALL, Resource};
use crate::store::filter::{
    Filter, MAX_DEPTH, MAX_INCLUDE_DEPTH, Op, SAMPLE_TEXTS, SAMPLE_TIMESTAMPS, SAMPLE_UUIDS,
    parse_filter, parse_where, query_param, random_filter, random_where,
};

/// Renders on both backends and checks that the two bind the same number of values.
fn render_all(resource: &'static Resource, filter: &Filter) {
    let [(_, pv), (_, lv)] = render(resource, filter);
    assert_eq!(pv.len(), lv.len());
    for include in &filter.include {
        render_all((include.relation.target)(), &include.scope);
    }
}

fn json_leaf() -> impl Strategy<Value = Value> {
    let words: Vec<&'static str> = ALL
        .iter()
        .flat_map(|r| r.fields.iter().map(|f| f.name))
        .chain(Op::ALL.iter().map(|o| o.name()))
        .chain(SAMPLE_TEXTS.iter().copied())
        .chain(SAMPLE_UUIDS.iter().copied())
        .chain(SAMPLE_TIMESTAMPS.iter().copied())
        .chain([
            "ACTIVE",
            "PAID",
            "true",
            "false",
            "name DESC",
            "contacts",
            "tenant",
        ])
        .collect();
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        (0u64..3000).prop_map(Value::from),
        proptest::sample::select(words).prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ]
}

fn json_key() -> impl Strategy<Value = String> {
    let keys: Vec<&'static str> = ALL
        .iter()
        .flat_map(|r| r.fields.iter().map(|f| f.name))
        .chain(Op::ALL.iter().map(|o| o.name()))
        .chain([
            "where", "fields", "order", "limit", "skip", "offset", "include", "relation", "scope",
            "and", "or", "0", "1",
        ])
        .chain(
            ALL.iter()
                .flat_map(|r| r.relations.iter().map(|rel| rel.name)),
        )
        .collect();
    prop_oneof![
        9 => proptest::sample::select(keys).prop_map(str::to_string),
        1 => "[a-z]{0,6}",
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((json_key(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn query_string() -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        json_key(),
        Just(String::new()),
        "[0-9]{1,2}",
        Just("%5B".to_string()),
        Just("]".to_string()),
    ];
    let key = (
        prop_oneof![Just("filter"), Just("where"), Just("filte")],
        proptest::collection::vec(segment, 0..6),
    )
        .prop_map(|(name, segs)| {
            let brackets: String = segs.iter().map(|s| format!("[{s}]")).collect();
            format!("{name}{brackets}")
        });
    let value = prop_oneof![
        json_leaf().prop_map(|v| match v {
            Value::String(s) => s,
            other => other.to_string(),
        }),
        json_value().prop_map(|v| v.to_string()),
        "[%+&=a-z0-9{}\\[\\]\":,]{0,16}",
    ];
    proptest::collection::vec((key, value), 0..8).prop_map(|pairs| {
        pairs
            .into_iter()
            .map(|(k, v)| {
                let v: String = form_urlencoded::byte_serialize(v.as_bytes()).collect();
                format!("{k}={v}")
            })
            .collect::<Vec<_>>()
            .join("&")
    })
}

fn parse_everything(v: &Value) {
    for resource in ALL {
        if let Ok(filter) = parse_filter(resource, v) {
            render_all(resource, &filter);
        }
        if let Ok(w) = parse_where(resource, v) {
            let filter = Filter {
                where_: Some(w),
                ..Filter::default()
            };
            render_all(resource, &filter);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_query_strings_never_panic(raw in query_string(), noise in ".{0,40}") {
        for q in [raw.as_str(), noise.as_str()] {
            for name in ["filter", "where"] {
                if let Ok(Some(v)) = query_param(Some(q), name) {
                    parse_everything(&v);
                }
            }
        }
    }

    #[test]
    fn arbitrary_json_never_panics(v in json_value()) {
        parse_everything(&v);
        parse_everything(&json!({ "where": v.clone() }));
        parse_everything(&json!({ "include": [{"relation": "tenant", "scope": v}] }));
    }

    #[test]
    fn random_valid_filters_parse_and_render_alike(seed in any::<u64>()) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        for resource in ALL {
            let v = random_filter(resource, &mut rng, MAX_INCLUDE_DEPTH);
            let filter = parse_filter(resource, &v)
                .unwrap_or_else(|e| panic!("{v} for {}: {e}", resource.table));
            render_all(resource, &filter);
            let w = random_where(resource, &mut rng, MAX_DEPTH);
            let parsed = parse_where(resource, &w);
            // Large random trees may hit the condition cap; anything else is a bug.
            if let Err(e) = &parsed {
                prop_assert!(e.0.contains("more than"), "{w}: {e}");
            }
        }
    }
}
