//! Lead tokens stay confined to their own lead and tenant for every kind of write, even when a
//! token carries more permission codes than the lead token tms issues.

mod common;
mod rest_support;

use common::*;
use rest_support::*;
use tms::auth::{Claims, now_secs};

/// A token confined to `lead` that carries every contact permission.
fn scoped_token(lead: &str) -> String {
    scoped_token_with(lead, &["10208", "10209", "10210", "10211"])
}

/// A token confined to `lead` that carries `permissions`.
fn scoped_token_with(lead: &str, permissions: &[&str]) -> String {
    let claims = Claims {
        id: Some(lead.to_string()),
        user_tenant_id: Some(lead.to_string()),
        permissions: permissions.iter().map(|p| p.to_string()).collect(),
        lead_id: Some(lead.to_string()),
        email: None,
        iss: JWT_ISSUER.to_string(),
        exp: now_secs() + 600,
        iat: now_secs(),
        nbf: None,
    };
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

/// A verified lead of `own.com` and the tenant `own` it onboarded: (lead id, tenant).
async fn lead_and_tenant(app: &TestApp) -> (String, Value) {
    let (lead, tenant, _) = lead_with_tenant(app, "own", "own.com").await;
    (lead, tenant)
}

both_dbs!(
    scoped_writes_never_leave_the_leads_tenant,
    [("LEAD_KEY_IN_RESPONSE", "true")],
    |app| async move {
        let admin = app.admin_token();
        let other = onboard(
            &app,
            &admin,
            onboarding("other", "Other", &["other.com"], "o"),
        )
        .await;
        let (lead_id, own) = lead_and_tenant(&app).await;
        let own_contact = id_of(&own["contacts"][0]);
        let other_contact = id_of(&other["contacts"][0]);
        let token = scoped_token(&lead_id);

        // Moving an own row to another tenant is refused, by PATCH, PUT and bulk PATCH: to the
        // lead's token, the other tenant does not exist.
        let to_other = json!({"tenantId": id_of(&other)});
        let (status, body) = app
            .patch(&format!("/contacts/{own_contact}"), Some(&token), &to_other)
            .await;
        assert_loopback_error(&body, 404, "NotFoundError");
        assert_eq!(status, 404);
        let mut replaced = own["contacts"][0].clone();
        for server_only in AUDIT_FIELDS {
            replaced.as_object_mut().unwrap().remove(server_only);
        }
        replaced["tenantId"] = json!(id_of(&other));
        let (status, _) = app
            .put(&format!("/contacts/{own_contact}"), Some(&token), &replaced)
            .await;
        assert_eq!(status, 404);
        let (status, _) = app.patch("/contacts", Some(&token), &to_other).await;
        assert_eq!(status, 404);
        let mine = get_ok(&app, &admin, &format!("/contacts/{own_contact}")).await;
        assert_eq!(mine["tenantId"], json!(id_of(&own)));

        // Rows of other tenants are out of reach.
        let (status, _) = app
            .patch(
                &format!("/contacts/{other_contact}"),
                Some(&token),
                &json!({"firstName": "x"}),
            )
            .await;
        assert_eq!(status, 404);
        let (status, _) = app
            .delete(&format!("/contacts/{other_contact}"), Some(&token))
            .await;
        assert_eq!(status, 404);
        let theirs = get_ok(&app, &admin, &format!("/contacts/{other_contact}")).await;
        assert_eq!(theirs["firstName"], other["contacts"][0]["firstName"]);

        // Bulk updates and lists see only the own tenant's rows.
        let (status, body) = app
            .patch("/contacts", Some(&token), &json!({"lastName": "Scoped"}))
            .await;
        assert_eq!((status.as_u16(), body), (200, json!({"count": 1})));
        let listed = get_ok(&app, &token, "/contacts").await;
        assert_eq!(listed.as_array().unwrap().len(), 1);
        assert_eq!(listed[0]["id"], json!(own_contact));
        let theirs = get_ok(&app, &admin, &format!("/contacts/{other_contact}")).await;
        assert_ne!(theirs["lastName"], json!("Scoped"));
    }
);

// A lead-scoped token that may change configs (tms never issues one, but a deployment could
// mint it) still cannot make an identity-provider config: not by changing a harmless config's
// key to one, nor by setting a provider's settings in one, by PATCH, PUT or bulk PATCH.
both_dbs!(
    scoped_config_writes_never_make_a_provider_config,
    [("LEAD_KEY_IN_RESPONSE", "true")],
    |app| async move {
        let (lead_id, own) = lead_and_tenant(&app).await;
        let token = scoped_token_with(&lead_id, &["10220", "10221", "10222"]);
        let tenant = id_of(&own);
        let config = create(
            &app,
            &token,
            "/tenant-configs",
            &json!({"configKey": "theme", "configValue": {}, "tenantId": tenant}),
        )
        .await;
        let path = format!("/tenant-configs/{}", id_of(&config));
        let renamed = json!({"configKey": "keycloak"});
        let (status, body) = app.patch(&path, Some(&token), &renamed).await;
        assert_loopback_error(&body, 403, "ForbiddenError");
        assert_eq!(status, 403, "{body}");
        let (status, body) = app.patch("/tenant-configs", Some(&token), &renamed).await;
        assert_eq!(status, 403, "{body}");
        let replaced = json!({"configKey": "keycloak", "configValue": {}, "tenantId": tenant});
        let (status, body) = app.put(&path, Some(&token), &replaced).await;
        assert_eq!(status, 403, "{body}");
        let (status, body) = app
            .patch(
                &path,
                Some(&token),
                &json!({"configValue": {"host": "http://evil.test"}}),
            )
            .await;
        assert_eq!(status, 204, "not a provider's config: {body}");
        let stored = get_ok(&app, &app.admin_token(), &path).await;
        assert_eq!(stored["configKey"], "theme");

        let provider = create(
            &app,
            &app.admin_token(),
            "/tenant-configs",
            &json!({"configKey": "keycloak", "configValue": {}, "tenantId": tenant}),
        )
        .await;
        let path = format!("/tenant-configs/{}", id_of(&provider));
        for value in [
            json!({"host": "http://evil.test"}),
            json!({"realm": "victim"}),
        ] {
            let (status, body) = app
                .patch(&path, Some(&token), &json!({"configValue": value}))
                .await;
            assert_loopback_error(&body, 403, "ForbiddenError");
            assert_eq!(status, 403, "{body}");
        }
        let stored = get_ok(&app, &app.admin_token(), &path).await;
        assert_eq!(stored["configValue"], json!({}));
    }
);

// One answer for "not yours": every route a lead's token may call answers an id of another
// tenant's row exactly as an id of no row at all — 404, with the same body — whether the id is
// in the path or names the tenant in the body. The lead's own token (its permission codes), and
// one confined to it carrying every code.
both_dbs!(
    another_tenants_rows_do_not_exist_for_a_lead,
    [("LEAD_KEY_IN_RESPONSE", "true")],
    |app| async move {
        let admin = app.admin_token();
        let other = onboard(
            &app,
            &admin,
            onboarding("other", "Other", &["other.com"], "o"),
        )
        .await;
        let other_id = id_of(&other);
        let other_contact = id_of(&other["contacts"][0]);
        let (status, other_lead) = app
            .post(
                "/leads",
                None,
                &json!({"firstName": "B", "lastName": "B", "email": "b@else.com",
                        "companyName": "Else"}),
            )
            .await;
        assert_eq!(status, 200, "{other_lead}");
        let other_invoice = create(
            &app,
            &admin,
            "/invoices",
            &json!({"startDate": "2026-12-01", "endDate": "2026-12-31", "amount": 10,
                    "currencyCode": "USD", "dueDate": "2027-01-30", "status": 0,
                    "tenantId": other_id}),
        )
        .await;
        let other_config = create(
            &app,
            &admin,
            "/tenant-configs",
            &json!({"configKey": "theme", "configValue": {}, "tenantId": other_id}),
        )
        .await;
        let (lead_id, own, lead_token) = lead_with_tenant(&app, "own", "own.com").await;
        let every_code: Vec<&str> = tms::auth::ALL_PERMISSIONS.to_vec();
        let wide = scoped_token_with(&lead_id, &every_code);

        // (method, path with {id}, body with {id}, the other tenant's id, token)
        let invoice = |tenant: &str| {
            json!({"startDate": "2026-12-01", "endDate": "2026-12-31", "amount": 5,
                   "currencyCode": "USD", "dueDate": "2027-01-30", "status": 0,
                   "tenantId": tenant})
        };
        let config =
            |tenant: &str| json!({"configKey": "theme", "configValue": {}, "tenantId": tenant});
        let invoice_id = id_of(&other_invoice);
        let config_id = id_of(&other_config);
        let provision = json!({"id": "s", "plan": {"tier": "BASIC"}});
        // (method, path with {id}, body with {id}, the other tenant's id): what the lead's own
        // token may call, then the rest with the wide one.
        let mut cases: Vec<(Method, &str, Option<Value>, &str)> = vec![
            (
                Method::GET,
                "/leads/{id}",
                None,
                other_lead["id"].as_str().unwrap(),
            ),
            (
                Method::POST,
                "/tenants/{id}/provision",
                Some(provision),
                &other_id,
            ),
            (Method::GET, "/tenants/{id}/provisioning", None, &other_id),
            (Method::GET, "/invoices/{id}/download", None, &invoice_id),
            (Method::POST, "/invoices", Some(invoice("{id}")), &other_id),
            (
                Method::POST,
                "/tenant-configs",
                Some(config("{id}")),
                &other_id,
            ),
        ];
        let lead_cases = cases.len();
        for (path, id) in [
            ("/tenants/{id}", &other_id),
            ("/contacts/{id}", &other_contact),
            ("/invoices/{id}", &invoice_id),
            ("/tenant-configs/{id}", &config_id),
        ] {
            cases.push((Method::GET, path, None, id));
            cases.push((Method::PATCH, path, Some(json!({})), id));
            cases.push((Method::DELETE, path, None, id));
        }
        cases.push((Method::GET, "/tenant-configs/{id}/tenant", None, &config_id));
        let move_there = json!({"tenantId": "{id}"});
        cases.push((
            Method::PATCH,
            "/contacts/{own}",
            Some(move_there),
            &other_id,
        ));

        let before = snapshot(&app).await;
        for (i, (method, path, body, theirs)) in cases.into_iter().enumerate() {
            let token = if i < lead_cases { &lead_token } else { &wide };
            let own_contact = id_of(&own["contacts"][0]);
            let nobody = uuid::Uuid::new_v4().to_string();
            let mut answers = Vec::new();
            for id in [theirs, nobody.as_str()] {
                let path = path.replace("{id}", id).replace("{own}", &own_contact);
                let body = body.as_ref().map(|b| b.to_string().replace("{id}", id));
                let response = app
                    .raw(
                        method.clone(),
                        &path,
                        Some(token),
                        body.as_deref().unwrap_or(""),
                        body.as_ref().map(|_| "application/json"),
                    )
                    .await;
                let said = response.text.replace(id, "<id>");
                answers.push((response.status, said));
            }
            assert_eq!(answers[0].0, 404, "{method} {path}: {}", answers[0].1);
            assert_eq!(
                answers[0], answers[1],
                "{method} {path}: theirs and nobody's alike"
            );
        }
        assert_unchanged(&before, &snapshot(&app).await, "refused calls");
    }
);
