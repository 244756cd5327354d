//! The tenant lifecycle (`docs/lifecycle.md`): its states, the moves allowed between them, and the one way a
//! lifecycle operation (provision, the webhook's result, deprovision, suspend, reactivate) moves
//! a tenant — a conditional update on the state it was read in, so that of two racing requests
//! only one moves it and the other learns the state it is in now. An administrator's direct
//! `PATCH`/`PUT` of `status` is an operator override and does not go through here.

use std::fmt;

use serde_json::Value;
use uuid::Uuid;

use crate::model::TENANTS;
use crate::store::crud::{self, Actor, Scope, Target, WriteError};
use crate::store::filter::{Filter, Op, Where};
use crate::store::{Conn, Object};

/// A tenant's state; the number is its wire value (`status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TenantStatus {
    Active = 0,
    PendingProvision = 1,
    Provisioning = 2,
    ProvisionFailed = 3,
    Deprovisioning = 4,
    Inactive = 5,
    Suspended = 6,
}

impl TenantStatus {
    pub const ALL: [TenantStatus; 7] = [
        Self::Active,
        Self::PendingProvision,
        Self::Provisioning,
        Self::ProvisionFailed,
        Self::Deprovisioning,
        Self::Inactive,
        Self::Suspended,
    ];

    /// The wire value.
    pub fn code(self) -> i64 {
        self as i64
    }

    pub fn from_code(code: i64) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.code() == code)
    }

    /// The name the original gives the state (`PENDINGPROVISION`).
    pub fn name(self) -> &'static str {
        crate::model::TENANT_STATUS[self as usize]
    }

    /// Whether a lifecycle operation may move a tenant from `self` to `to`:
    ///
    /// - provision: PENDINGPROVISION or PROVISIONFAILED (the retry) → PROVISIONING;
    /// - the provisioning result (or its deadline): PROVISIONING → ACTIVE | PROVISIONFAILED;
    /// - offboarding: ACTIVE | SUSPENDED | PROVISIONFAILED → DEPROVISIONING, and its result →
    ///   INACTIVE, or back to where it started when it failed;
    /// - suspend and reactivate: ACTIVE ⇄ SUSPENDED.
    pub fn can_move_to(self, to: Self) -> bool {
        use TenantStatus::*;
        matches!(
            (self, to),
            (PendingProvision | ProvisionFailed, Provisioning)
                | (Provisioning, Active | ProvisionFailed)
                | (Active | Suspended | ProvisionFailed, Deprovisioning)
                | (
                    Deprovisioning,
                    Inactive | Active | Suspended | ProvisionFailed
                )
                | (Active, Suspended)
                | (Suspended, Active)
        )
    }
}

impl fmt::Display for TenantStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.code())
    }
}

/// Why a lifecycle move did not happen.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error("EntityNotFound")]
    NotFound,
    /// The tenant is in a state from which the operation cannot move it (409).
    #[error("Tenant is {current}; it cannot move to {wanted}")]
    Illegal {
        current: TenantStatus,
        wanted: TenantStatus,
    },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Write(WriteError),
}

impl From<WriteError> for LifecycleError {
    fn from(err: WriteError) -> Self {
        match err {
            WriteError::Db(err) => Self::Database(err),
            other => Self::Write(other),
        }
    }
}

fn by_id(id: Uuid) -> Where {
    Where::cmp(TENANTS.id_field(), Op::Eq, &Value::from(id.to_string()))
        .expect("a UUID is a valid id")
}

fn status_field() -> &'static crate::model::Field {
    TENANTS.field("status").expect("tenants have a status")
}

/// The state of the live tenant `id` (`None` when there is none).
pub async fn status_of(conn: &mut Conn<'_>, id: Uuid) -> Result<Option<TenantStatus>, sqlx::Error> {
    let filter = Filter {
        fields: Some(vec![status_field()]),
        ..Filter::default()
    };
    let tenant = crud::find_by_id(conn, &TENANTS, id, &filter, Scope::All).await?;
    Ok(tenant
        .and_then(|t| t.get("status").and_then(Value::as_i64))
        .and_then(TenantStatus::from_code))
}

/// Moves the live tenant `id` to `to`, with `extra` fields set in the same update (a failure
/// reason, say), stamping `modifiedOn`/`modifiedBy` for `actor`; returns the state it left.
/// The update only applies while the tenant is still in the state it was read in: a concurrent
/// move in between makes this one fail with the state the tenant is in now.
pub async fn move_to(
    conn: &mut Conn<'_>,
    id: Uuid,
    to: TenantStatus,
    extra: &Object,
    actor: &Actor,
) -> Result<TenantStatus, LifecycleError> {
    let current = status_of(conn, id).await?.ok_or(LifecycleError::NotFound)?;
    if !current.can_move_to(to) {
        return Err(LifecycleError::Illegal {
            current,
            wanted: to,
        });
    }
    let in_current = Where::And(vec![
        by_id(id),
        Where::cmp(status_field(), Op::Eq, &Value::from(current.code()))
            .expect("a status code is a valid status"),
    ]);
    let mut values = extra.clone();
    values.insert("status".into(), Value::from(to.code()));
    let moved = crud::update(
        conn,
        &TENANTS,
        Target::Matching(Some(&in_current)),
        &values,
        actor,
    )
    .await?;
    if moved == 0 {
        let now = status_of(conn, id).await?.ok_or(LifecycleError::NotFound)?;
        return Err(LifecycleError::Illegal {
            current: now,
            wanted: to,
        });
    }
    Ok(current)
}

#[cfg(test)]
mod tests {
    use super::*;
    use TenantStatus::*;

    #[test]
    fn codes_and_names_are_the_wire_values() {
        for status in TenantStatus::ALL {
            assert_eq!(TenantStatus::from_code(status.code()), Some(status));
        }
        assert_eq!(TenantStatus::from_code(7), None);
        assert_eq!(PendingProvision.name(), "PENDINGPROVISION");
        assert_eq!(Suspended.to_string(), "SUSPENDED (6)");
    }

    #[test]
    fn only_the_lifecycle_moves_are_allowed() {
        let allowed: Vec<(TenantStatus, TenantStatus)> = TenantStatus::ALL
            .into_iter()
            .flat_map(|from| TenantStatus::ALL.into_iter().map(move |to| (from, to)))
            .filter(|(from, to)| from.can_move_to(*to))
            .collect();
        assert_eq!(
            allowed,
            vec![
                (Active, Deprovisioning),
                (Active, Suspended),
                (PendingProvision, Provisioning),
                (Provisioning, Active),
                (Provisioning, ProvisionFailed),
                (ProvisionFailed, Provisioning),
                (ProvisionFailed, Deprovisioning),
                (Deprovisioning, Active),
                (Deprovisioning, ProvisionFailed),
                (Deprovisioning, Inactive),
                (Deprovisioning, Suspended),
                (Suspended, Active),
                (Suspended, Deprovisioning),
            ]
        );
        // Nothing leaves INACTIVE; nothing goes back to PENDINGPROVISION.
        assert!(
            TenantStatus::ALL
                .iter()
                .all(|to| !Inactive.can_move_to(*to))
        );
        assert!(
            TenantStatus::ALL
                .iter()
                .all(|from| !from.can_move_to(PendingProvision))
        );
    }
}
