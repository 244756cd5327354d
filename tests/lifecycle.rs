//! The tenant lifecycle as the store applies it: a move happens only from the state the tenant
//! was read in, so of racing moves exactly one wins; an illegal move names both states; unknown
//! and soft-deleted tenants are not found. On SQLite and PostgreSQL.

mod common;

use common::*;
use tms::domain::tenant::{self, LifecycleError, Move, TenantStatus};
use tms::model::TENANTS;
use tms::store::crud::{self, Actor, Scope, Target};
use tms::store::{Db as Store, Object};
use uuid::Uuid;

fn actor() -> Actor {
    Actor {
        id: "lifecycle-test".into(),
        scope: Scope::All,
        who: tms::audit::Who::system("lifecycle-test"),
    }
}

async fn a_tenant(db: &Store, key: &str, status: TenantStatus) -> Uuid {
    let values: Object = serde_json::from_value(json!({
        "name": key, "key": key, "domains": [format!("{key}.io")], "status": status.code(),
    }))
    .unwrap();
    let row = crud::create(&mut db.conn(), &TENANTS, &values, &actor())
        .await
        .unwrap();
    Uuid::parse_str(row["id"].as_str().unwrap()).unwrap()
}

async fn lifecycle(kind: Db, test: &str) {
    let Some(t) = TestDb::connect(kind, test).await else {
        return;
    };
    t.db.migrate().await.unwrap();
    let db = &t.db;
    let none = Object::new();

    // A legal move, and the reason stored with it in the same update.
    let id = a_tenant(db, "one", TenantStatus::PendingProvision).await;
    let left = tenant::make_move(&mut db.conn(), id, Move::Provision, &none, &actor())
        .await
        .unwrap();
    assert_eq!(left, TenantStatus::PendingProvision);
    assert_eq!(
        tenant::status_of(&mut db.conn(), id).await.unwrap(),
        Some(TenantStatus::Provisioning)
    );

    // An illegal one: nothing changes, and the error names both states.
    let err = tenant::make_move(&mut db.conn(), id, Move::Suspend, &none, &actor())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Tenant is PROVISIONING (2); it cannot move to SUSPENDED (6)"
    );
    assert_eq!(
        tenant::status_of(&mut db.conn(), id).await.unwrap(),
        Some(TenantStatus::Provisioning)
    );

    // Racing moves from one state: exactly one wins, in every round.
    for round in 0..10 {
        let id = a_tenant(db, &format!("race{round}"), TenantStatus::PendingProvision).await;
        let (a, b) = tokio::join!(
            async {
                let mut tx = db.begin().await.unwrap();
                let moved =
                    tenant::make_move(&mut tx.conn(), id, Move::Provision, &none, &actor()).await;
                tx.commit().await.unwrap();
                moved
            },
            async {
                let mut tx = db.begin().await.unwrap();
                let moved =
                    tenant::make_move(&mut tx.conn(), id, Move::Provision, &none, &actor()).await;
                tx.commit().await.unwrap();
                moved
            }
        );
        let wins = [&a, &b].iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "round {round}: {a:?} {b:?}");
        let loser = if a.is_ok() { b } else { a };
        assert!(
            matches!(
                loser,
                Err(LifecycleError::Illegal {
                    current: TenantStatus::Provisioning,
                    wanted: TenantStatus::Provisioning
                })
            ),
            "round {round}: {loser:?}"
        );
    }

    // Unknown and soft-deleted tenants are not found.
    let err = tenant::make_move(
        &mut db.conn(),
        Uuid::new_v4(),
        Move::Provision,
        &none,
        &actor(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, LifecycleError::NotFound), "{err:?}");
    let gone = a_tenant(db, "gone", TenantStatus::PendingProvision).await;
    crud::soft_delete(&mut db.conn(), &TENANTS, Target::Id(gone), &actor(), "ops")
        .await
        .unwrap();
    let err = tenant::make_move(&mut db.conn(), gone, Move::Provision, &none, &actor())
        .await
        .unwrap_err();
    assert!(matches!(err, LifecycleError::NotFound), "{err:?}");
    t.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_moves_are_conditional_on_sqlite() {
    lifecycle(Db::Sqlite, "lifecycle_moves_are_conditional_on_sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_moves_are_conditional_on_postgres() {
    lifecycle(Db::Postgres, "lifecycle_moves_are_conditional_on_postgres").await;
}
