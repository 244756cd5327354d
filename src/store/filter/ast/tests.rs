use serde_json::json;

use super::*;
use crate::model::{CONTACTS, TENANTS};
use crate::store::filter::SAMPLE_UUIDS;
use crate::store::filter::tests::{filter_of, render};

#[test]
fn capping_bounds_the_list_and_every_include() {
    let f = filter_of(
        &TENANTS,
        json!({"limit": 5000, "include": [{"relation": "contacts",
            "scope": {"include": ["tenant"]}}, {"relation": "lead", "scope": {"limit": 3}}]}),
    )
    .unwrap()
    .capped(100);
    assert_eq!(f.limit, Some(100));
    assert_eq!(f.include[0].scope.limit, Some(100));
    assert_eq!(f.include[0].scope.include[0].scope.limit, Some(100));
    assert_eq!(f.include[1].scope.limit, Some(3));
    assert_eq!(Filter::default().capped(7).limit, Some(7));
}

#[test]
fn where_cmp_checks_like_the_parser() {
    let tenant_id = CONTACTS.field("tenantId").unwrap();
    let w = Where::cmp(tenant_id, Op::Inq, &json!([SAMPLE_UUIDS[0]])).unwrap();
    let [(pg, _), (lite, _)] = render(
        &CONTACTS,
        &Filter {
            where_: Some(w),
            ..Filter::default()
        },
    );
    assert_eq!(pg, r#"WHERE "tenant_id" IN ($1) ORDER BY "id" ASC"#);
    assert_eq!(lite, r#"WHERE "tenant_id" IN (?) ORDER BY "id" ASC"#);
    assert!(Where::cmp(tenant_id, Op::Eq, &json!("x")).is_err());
    assert!(Where::cmp(tenant_id, Op::Like, &json!("x")).is_err());
}
