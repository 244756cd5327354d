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

#[test]
fn typed_comparisons_equal_the_parsed_ones() {
    let id = uuid::Uuid::new_v4();
    let contact_tenant = CONTACTS.field("tenantId").unwrap();
    assert_eq!(
        Where::uuid_is(contact_tenant, id),
        Where::cmp(
            contact_tenant,
            Op::Eq,
            &json!(id.to_string().to_uppercase())
        )
        .unwrap()
    );
    let primary = CONTACTS.field("isPrimary").unwrap();
    assert_eq!(
        Where::bool_is(primary, true),
        Where::cmp(primary, Op::Eq, &json!(true)).unwrap()
    );
    let status = TENANTS.field("status").unwrap();
    assert_eq!(
        Where::code_is(status, 2),
        Where::cmp(status, Op::Eq, &json!("PROVISIONING")).unwrap()
    );
}
