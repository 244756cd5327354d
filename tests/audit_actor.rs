//! Who a write is stamped with, as the original stamps it: `createdBy` and `modifiedBy` from the
//! token's `userTenantId` (else its `id`), `deletedBy` from its `id` (else its `userTenantId`),
//! on SQLite and PostgreSQL.

mod common;
mod rest_support;

use common::*;
use rest_support::a_tenant;

const USER: &str = "aaaaaaaa-0000-4000-8000-0000000000a1";
const USER_TENANT: &str = "aaaaaaaa-0000-4000-8000-0000000000b2";

both_dbs!(
    writes_are_stamped_as_the_original_stamps_them,
    |app| async move {
        let token = arc_token(USER, USER_TENANT);
        let tenant = a_tenant(&app, "acme").await;
        let (status, contact) = app
            .post(
                "/contacts",
                Some(&token),
                &json!({"firstName": "Grace", "lastName": "Hopper", "email": "grace@acme.io",
                    "isPrimary": false, "tenantId": tenant}),
            )
            .await;
        assert_eq!(status, 200, "{contact}");
        assert_eq!(
            (&contact["createdBy"], &contact["modifiedBy"]),
            (&json!(USER_TENANT), &json!(USER_TENANT))
        );
        let id = contact["id"].as_str().unwrap().to_string();
        let (status, _) = app.delete(&format!("/contacts/{id}"), Some(&token)).await;
        assert_eq!(status, 204);

        // A deleted row is not served: read what was stamped from the database.
        let db = tms::store::Db::connect(&app.config_with(&[]))
            .await
            .unwrap();
        let sql = match db.backend() {
            tms::store::Backend::Postgres => {
                "SELECT deleted_by, modified_by FROM contacts WHERE id = $1::uuid"
            }
            tms::store::Backend::Sqlite => {
                "SELECT deleted_by, modified_by FROM contacts WHERE id = $1"
            }
        };
        let row = db
            .conn()
            .raw_fetch_optional(sql, &[tms::store::Param::Text(&id)], false)
            .await
            .unwrap()
            .expect("the row is kept");
        assert_eq!(row.text("deleted_by").unwrap().as_deref(), Some(USER));
        assert_eq!(
            row.text("modified_by").unwrap().as_deref(),
            Some(USER_TENANT)
        );
        db.close().await;
    }
);
