use serde_json::{Value, json};

use super::*;
use crate::model::{CONTACTS, INVOICES, LEADS, RESOURCES, TENANTS};
use crate::store::filter::tests::{filter_of, where_of};

#[test]
fn filter_parts_parse() {
    let f = filter_of(
        &TENANTS,
        json!({"fields": {"name": true, "key": true}, "order": "name desc, key",
               "limit": "5", "skip": "2", "offset": 2}),
    )
    .unwrap();
    let names: Vec<_> = f.fields.unwrap().iter().map(|f| f.name).collect();
    assert_eq!(names, ["name", "key"]);
    assert_eq!(f.order.len(), 2);
    assert!(f.order[0].descending);
    assert_eq!(f.order[1].field.name, "key");
    assert!(!f.order[1].descending);
    assert_eq!((f.limit, f.skip), (Some(5), Some(2)));

    // Array form, kept in declaration order whatever the request order.
    let f = filter_of(&TENANTS, json!({"fields": ["key", "id", "name"]})).unwrap();
    let names: Vec<_> = f.fields.unwrap().iter().map(|f| f.name).collect();
    assert_eq!(names, ["id", "name", "key"]);

    // Only false: everything else. Mixed: the true ones.
    let f = filter_of(
        &CONTACTS,
        json!({"fields": {"email": false, "deleted": "false"}}),
    )
    .unwrap();
    let names: Vec<_> = f.fields.unwrap().iter().map(|f| f.name).collect();
    assert_eq!(names.len(), CONTACTS.fields.len() - 2);
    assert!(!names.contains(&"email") && !names.contains(&"deleted"));
    let f = filter_of(&CONTACTS, json!({"fields": {"email": true, "id": false}})).unwrap();
    let names: Vec<_> = f.fields.unwrap().iter().map(|f| f.name).collect();
    assert_eq!(names, ["email"]);
    assert!(
        filter_of(&CONTACTS, json!({"fields": {}}))
            .unwrap()
            .fields
            .is_none()
    );
    assert!(
        filter_of(&CONTACTS, json!({"fields": []}))
            .unwrap()
            .fields
            .is_none()
    );

    // skip 0 is no skip; a limit above the list cap parses (lists clamp it).
    let f = filter_of(&TENANTS, json!({"limit": 5, "skip": 0})).unwrap();
    assert_eq!((f.limit, f.skip), (Some(5), None));
    let f = filter_of(&TENANTS, json!({"limit": 5000, "skip": 7})).unwrap();
    assert_eq!((f.limit, f.skip), (Some(5000), Some(7)));
    assert_eq!(filter_of(&TENANTS, Value::Null).unwrap(), Filter::default());
    assert_eq!(
        filter_of(&TENANTS, json!({"where": null, "limit": null})).unwrap(),
        Filter::default()
    );
}

#[test]
fn include_parses_recursively() {
    let f = filter_of(&TENANTS, json!({"include": "contacts"})).unwrap();
    assert_eq!(f.include.len(), 1);
    assert_eq!(f.include[0].relation.name, "contacts");
    assert_eq!(f.include[0].scope, Filter::default());

    let f = filter_of(&TENANTS, json!({"include": ["contacts", "lead"]})).unwrap();
    let names: Vec<_> = f.include.iter().map(|i| i.relation.name).collect();
    assert_eq!(names, ["contacts", "lead"]);

    let f = filter_of(
        &TENANTS,
        json!({"include": [{"relation": "contacts", "scope": {
            "where": {"isPrimary": true}, "fields": ["email", "tenantId"],
            "order": "email", "limit": 2,
            "include": [{"relation": "tenant", "scope": {"fields": {"name": true}}}],
        }}]}),
    )
    .unwrap();
    let scope = &f.include[0].scope;
    assert!(scope.where_.is_some());
    assert_eq!(scope.limit, Some(2));
    assert_eq!(scope.include[0].relation.name, "tenant");
    assert_eq!(
        scope.include[0].scope.fields.as_ref().unwrap()[0].name,
        "name"
    );

    // Lead → tenant → contacts is depth 2; one more level is refused.
    let ok = json!({"include": [{"relation": "tenant", "scope": {"include": ["contacts"]}}]});
    assert!(filter_of(&LEADS, ok).is_ok());
    let too_deep = json!({"include": [{"relation": "tenant", "scope": {"include": [
        {"relation": "contacts", "scope": {"include": ["tenant"]}}]}}]});
    assert_eq!(
        filter_of(&LEADS, too_deep).unwrap_err(),
        "in the scope of include \"tenant\": in the scope of include \"contacts\": \
         include is nested deeper than 2 levels"
    );
    // Scope errors name the include.
    assert_eq!(
        filter_of(
            &TENANTS,
            json!({"include": [{"relation": "contacts", "scope": {"where": {"name": 1}}}]})
        )
        .unwrap_err(),
        "in the scope of include \"contacts\": unknown field \"name\" in where"
    );
}

#[test]
fn errors_name_the_problem() {
    let t = &TENANTS;
    let cases: Vec<(&'static Resource, Value, &str)> = vec![
        (t, json!([]), "filter must be a JSON object"),
        (t, json!("x"), "filter must be a JSON object"),
        (
            t,
            json!({"wher": {}}),
            "unknown filter key \"wher\"; expected where, fields, order, limit, skip, offset or include",
        ),
        (t, json!({"where": []}), "where must be an object"),
        (
            t,
            json!({"where": {"nope": 1}}),
            "unknown field \"nope\" in where",
        ),
        (
            t,
            json!({"where": {"address.city": "x"}}),
            "unknown field \"address.city\" in where",
        ),
        (
            t,
            json!({"where": {"name": {"foo": 1}}}),
            "unknown operator \"foo\" on \"name\"",
        ),
        (
            t,
            json!({"where": {"name": {"regexp": "^a"}}}),
            "unknown operator \"regexp\" on \"name\"",
        ),
        (
            t,
            json!({"where": {"name": {"exists": true}}}),
            "unknown operator \"exists\" on \"name\"",
        ),
        (
            t,
            json!({"where": {"name": {}}}),
            "no operator given for \"name\"",
        ),
        (
            t,
            json!({"where": {"name": 5}}),
            "invalid value for \"name\": must be a string",
        ),
        (
            t,
            json!({"where": {"deleted": "yes"}}),
            "invalid value for \"deleted\": must be a boolean",
        ),
        (
            t,
            json!({"where": {"id": "not-a-uuid"}}),
            "invalid value for \"id\": \"not-a-uuid\" is not a UUID",
        ),
        (
            t,
            json!({"where": {"id": 5}}),
            "invalid value for \"id\": must be a UUID string",
        ),
        (
            t,
            json!({"where": {"createdOn": {"gt": "yesterday"}}}),
            "invalid value for \"createdOn\": \"yesterday\" is not an ISO 8601 date-time",
        ),
        (
            t,
            json!({"where": {"createdOn": {"gt": "9999-12-31T23:30:00-01:00"}}}),
            "invalid value for \"createdOn\": \"9999-12-31T23:30:00-01:00\" is outside the years 0000 to 9999",
        ),
        (
            t,
            json!({"where": {"status": 9}}),
            "invalid value for \"status\": must be one of 0 (ACTIVE), 1 (PENDINGPROVISION), 2 (PROVISIONING), 3 (PROVISIONFAILED), 4 (DEPROVISIONING), 5 (INACTIVE), 6 (SUSPENDED)",
        ),
        (
            &INVOICES,
            json!({"where": {"amount": "1.23456"}}),
            "invalid value for \"amount\": must have at most 4 decimal places",
        ),
        (
            t,
            json!({"where": {"name": "a\u{0}b"}}),
            "invalid value for \"name\": must not contain NUL characters",
        ),
        (
            t,
            json!({"where": {"name": {"gt": null}}}),
            "operator \"gt\" on \"name\" cannot take null",
        ),
        (
            t,
            json!({"where": {"name": {"inq": {"a": 1}}}}),
            "operator \"inq\" on \"name\" takes an array of values",
        ),
        (
            t,
            json!({"where": {"name": {"nin": [null]}}}),
            "operator \"nin\" on \"name\" cannot take null in its list",
        ),
        (
            t,
            json!({"where": {"status": {"between": [1]}}}),
            "operator \"between\" on \"status\" takes an array of exactly two non-null values",
        ),
        (
            t,
            json!({"where": {"status": {"between": [1, 2, 3]}}}),
            "operator \"between\" on \"status\" takes an array of exactly two non-null values",
        ),
        (
            t,
            json!({"where": {"status": {"like": "1%"}}}),
            "operator \"like\" can only be used on text fields, not on \"status\"",
        ),
        (
            t,
            json!({"where": {"name": {"ilike": 5}}}),
            "operator \"ilike\" on \"name\" takes a string pattern",
        ),
        (
            t,
            json!({"where": {"name": {"like": "abc\\"}}}),
            "pattern for \"name\" ends with an unescaped backslash",
        ),
        (
            t,
            json!({"where": {"domains": {"neq": "a.com"}}}),
            "operator \"neq\" cannot be used on \"domains\"; only equality (contains) is supported",
        ),
        (
            t,
            json!({"where": {"domains": ["a.com"]}}),
            "invalid value for \"domains\": must be a string (a domain to look for)",
        ),
        (
            &RESOURCES,
            json!({"where": {"metadata": {"a": 1}}}),
            "field \"metadata\" cannot be used in where",
        ),
        (
            t,
            json!({"where": {"and": []}}),
            "\"and\" must be a non-empty array of where objects",
        ),
        (
            t,
            json!({"where": {"or": {"key": "a"}}}),
            "\"or\" must be a non-empty array of where objects",
        ),
        (
            t,
            json!({"where": {"or": ["x"]}}),
            "where must be an object",
        ),
        (t, json!({"limit": 0}), "limit must be a positive integer"),
        (t, json!({"limit": "0"}), "limit must be a positive integer"),
        (
            t,
            json!({"limit": -1}),
            "limit must be a non-negative integer",
        ),
        (
            t,
            json!({"limit": 2.5}),
            "limit must be a non-negative integer",
        ),
        (
            t,
            json!({"limit": "ten"}),
            "limit must be a non-negative integer",
        ),
        (
            t,
            json!({"limit": true}),
            "limit must be a non-negative integer",
        ),
        (
            t,
            json!({"skip": -5}),
            "skip must be a non-negative integer",
        ),
        (
            t,
            json!({"offset": 1e300}),
            "offset must be a non-negative integer",
        ),
        (
            t,
            json!({"skip": 18446744073709551615u64}),
            "skip is too large",
        ),
        (
            t,
            json!({"skip": 1, "offset": 2}),
            "skip and offset are both given and differ",
        ),
        (
            t,
            json!({"fields": {"nope": true}}),
            "unknown field \"nope\" in fields",
        ),
        (
            t,
            json!({"fields": ["nope"]}),
            "unknown field \"nope\" in fields",
        ),
        (
            t,
            json!({"fields": {"name": "maybe"}}),
            "fields.name must be true or false",
        ),
        (
            t,
            json!({"fields": 5}),
            "fields must be an object or an array of field names",
        ),
        (
            t,
            json!({"fields": [5]}),
            "fields must be an object or an array of field names",
        ),
        (
            &RESOURCES,
            json!({"fields": {"id": false, "deleted": false, "deletedOn": false,
                "deletedBy": false, "createdOn": false, "modifiedOn": false,
                "createdBy": false, "modifiedBy": false, "externalIdentifier": false,
                "type": false, "metadata": false, "tenantId": false}}),
            "fields excludes every field",
        ),
        (
            t,
            json!({"order": "nope"}),
            "unknown field \"nope\" in order",
        ),
        (
            t,
            json!({"order": "name UP"}),
            "invalid order direction \"UP\" for \"name\"; expected ASC or DESC",
        ),
        (
            t,
            json!({"order": "name ASC extra"}),
            "invalid order \"name ASC extra\"; expected \"field\", \"field ASC\" or \"field DESC\"",
        ),
        (
            t,
            json!({"order": ""}),
            "invalid order \"\"; expected \"field\", \"field ASC\" or \"field DESC\"",
        ),
        (
            t,
            json!({"order": "domains"}),
            "field \"domains\" cannot be used in order",
        ),
        (
            t,
            json!({"order": [1]}),
            "order must be a string or an array of strings",
        ),
        (
            t,
            json!({"order": {"name": "ASC"}}),
            "order must be a string or an array of strings",
        ),
        (
            t,
            json!({"include": "nope"}),
            "unknown relation \"nope\" in include",
        ),
        (
            t,
            json!({"include": [{"relation": "contacts", "where": {}}]}),
            "unknown include key \"where\"; expected relation and scope",
        ),
        (
            t,
            json!({"include": [{"scope": {}}]}),
            "include entries need a \"relation\" name",
        ),
        (
            t,
            json!({"include": [5]}),
            "include must be a relation name, an object or an array of them",
        ),
        (
            t,
            json!({"include": ["contacts", {"relation": "contacts"}]}),
            "relation \"contacts\" is included twice",
        ),
        (
            t,
            json!({"include": [{"relation": "contacts", "scope": []}]}),
            "in the scope of include \"contacts\": filter must be a JSON object",
        ),
    ];
    for (resource, v, expected) in cases {
        assert_eq!(
            parse_filter(resource, &v).map(|_| ()),
            Err(FilterError(expected.to_string())),
            "{v}"
        );
    }
}

#[test]
fn counts_are_capped() {
    let many: Vec<Value> = (0..=MAX_CONDITIONS)
        .map(|i| json!({"key": i.to_string()}))
        .collect();
    assert_eq!(
        where_of(&TENANTS, json!({ "or": many })).unwrap_err(),
        "where has more than 100 conditions"
    );
    let list: Vec<Value> = (0..=MAX_LIST_LEN).map(|i| json!(i.to_string())).collect();
    assert_eq!(
        where_of(&TENANTS, json!({"key": {"inq": list}})).unwrap_err(),
        "operator \"inq\" on \"key\" takes at most 1000 values"
    );
    let list: Vec<Value> = (0..MAX_LIST_LEN).map(|i| json!(i.to_string())).collect();
    let three: Vec<Value> = (0..3)
        .map(|_| json!({"key": {"nin": list.clone()}}))
        .collect();
    assert_eq!(
        where_of(&TENANTS, json!({ "and": three })).unwrap_err(),
        "where binds more than 2000 values"
    );
    let order: Vec<Value> = (0..=MAX_ORDER).map(|_| json!("name")).collect();
    assert_eq!(
        filter_of(&TENANTS, json!({ "order": order })).unwrap_err(),
        "order has more than 32 entries"
    );
}
