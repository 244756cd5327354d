//! The tenant lifecycle (`docs/lifecycle.md`): its states, the moves allowed between them, and the one way a
//! lifecycle operation (provision, the webhook's result, deprovision, suspend, reactivate) moves
//! a tenant — a conditional update on the state it was read in, so that of two racing requests
//! only one moves it and the other learns the state it is in now. An administrator's direct
//! `PATCH`/`PUT` of `status` is an operator override and does not go through here.

use std::fmt;

use serde_json::Value;
use uuid::Uuid;

use crate::model::{TENANTS, fields};
use crate::store::crud::{self, Actor, Scope, Target, WriteError};
use crate::store::filter::{Filter, Where};
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
}

/// A lifecycle move, named by what asks for it. Operators (the API, the billing run) ask for
/// [`Move::Provision`], [`Move::Deprovision`], [`Move::Suspend`] and [`Move::Reactivate`]; the
/// others are made only by a pipeline's signed result or an operation's deadline. Each move has
/// its own starting states, so no operator's move can take a tenant out from under a running
/// pipeline: nothing an operator asks for starts from PROVISIONING or DEPROVISIONING.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Move {
    /// PENDINGPROVISION, or PROVISIONFAILED (the retry) → PROVISIONING.
    Provision,
    /// The provisioning succeeded: PROVISIONING → ACTIVE.
    Provisioned,
    /// The provisioning failed or passed its deadline: PROVISIONING → PROVISIONFAILED.
    ProvisioningFailed,
    /// ACTIVE, SUSPENDED or PROVISIONFAILED → DEPROVISIONING.
    Deprovision,
    /// The offboarding succeeded: DEPROVISIONING → INACTIVE.
    Offboarded,
    /// The offboarding failed or passed its deadline: DEPROVISIONING → back to where it started
    /// (ACTIVE, SUSPENDED or PROVISIONFAILED).
    OffboardingFailed(TenantStatus),
    /// ACTIVE → SUSPENDED.
    Suspend,
    /// SUSPENDED → ACTIVE.
    Reactivate,
}

impl Move {
    /// Every move an operator may ask for.
    pub const OPERATOR: [Move; 4] = [
        Self::Provision,
        Self::Deprovision,
        Self::Suspend,
        Self::Reactivate,
    ];

    /// Its name in audit records (`action`).
    pub fn action(self) -> &'static str {
        match self {
            Self::Provision => "provision",
            Self::Provisioned => "provisioned",
            Self::ProvisioningFailed => "provisioning-failed",
            Self::Deprovision => "deprovision",
            Self::Offboarded => "offboarded",
            Self::OffboardingFailed(_) => "offboarding-failed",
            Self::Suspend => "suspend",
            Self::Reactivate => "reactivate",
        }
    }

    /// Where the move takes the tenant.
    pub fn target(self) -> TenantStatus {
        use TenantStatus::*;
        match self {
            Self::Provision => Provisioning,
            Self::Provisioned | Self::Reactivate => Active,
            Self::ProvisioningFailed => ProvisionFailed,
            Self::Deprovision => Deprovisioning,
            Self::Offboarded => Inactive,
            Self::OffboardingFailed(back) => back,
            Self::Suspend => Suspended,
        }
    }

    /// Whether the move may start from `from`.
    pub fn starts_from(self, from: TenantStatus) -> bool {
        use TenantStatus::*;
        match self {
            Self::Provision => matches!(from, PendingProvision | ProvisionFailed),
            Self::Provisioned | Self::ProvisioningFailed => from == Provisioning,
            Self::Deprovision => matches!(from, Active | Suspended | ProvisionFailed),
            Self::Offboarded => from == Deprovisioning,
            Self::OffboardingFailed(back) => {
                from == Deprovisioning && matches!(back, Active | Suspended | ProvisionFailed)
            }
            Self::Suspend => from == Active,
            Self::Reactivate => from == Suspended,
        }
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

/// The tenant `id` as `scope` sees it, with its contacts and address (for events).
pub async fn tenant_with_relations(
    conn: &mut Conn<'_>,
    id: Uuid,
    scope: Scope,
) -> Result<Option<Object>, sqlx::Error> {
    let with = Filter::including(&[fields::tenant_contacts(), fields::tenant_address()]);
    crud::find_by_id(conn, &TENANTS, id, &with, scope).await
}

/// The state of the live tenant `id` (`None` when there is none).
pub async fn status_of(conn: &mut Conn<'_>, id: Uuid) -> Result<Option<TenantStatus>, sqlx::Error> {
    let filter = Filter {
        fields: Some(vec![fields::tenant_status()]),
        ..Filter::default()
    };
    let tenant = crud::find_by_id(conn, &TENANTS, id, &filter, Scope::All).await?;
    Ok(tenant
        .and_then(|t| t.get("status").and_then(Value::as_i64))
        .and_then(TenantStatus::from_code))
}

/// Makes `step` on the live tenant `id`, with `extra` fields set in the same update (a failure
/// reason, say), stamping `modifiedOn`/`modifiedBy` for `actor`; returns the state it left.
/// The update only applies while the tenant is still in the state it was read in: a concurrent
/// move in between makes this one fail with the state the tenant is in now.
pub async fn make_move(
    conn: &mut Conn<'_>,
    id: Uuid,
    step: Move,
    extra: &Object,
    actor: &Actor,
) -> Result<TenantStatus, LifecycleError> {
    let to = step.target();
    let current = status_of(conn, id).await?.ok_or(LifecycleError::NotFound)?;
    if !step.starts_from(current) {
        return Err(LifecycleError::Illegal {
            current,
            wanted: to,
        });
    }
    let in_current = Where::And(vec![
        Where::uuid_is(TENANTS.id_field(), id),
        Where::code_is(fields::tenant_status(), current.code()),
    ]);
    let mut values = extra.clone();
    values.insert("status".into(), Value::from(to.code()));
    let moved = crud::update_as(
        conn,
        &TENANTS,
        Target::Matching(Some(&in_current)),
        &values,
        actor,
        step.action(),
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

    /// Every move with the states it starts from, and where it goes.
    fn table() -> Vec<(Move, Vec<TenantStatus>)> {
        let all_moves = [
            Move::Provision,
            Move::Provisioned,
            Move::ProvisioningFailed,
            Move::Deprovision,
            Move::Offboarded,
            Move::Suspend,
            Move::Reactivate,
        ]
        .into_iter()
        .chain(TenantStatus::ALL.map(Move::OffboardingFailed));
        all_moves
            .map(|step| {
                let from = TenantStatus::ALL
                    .into_iter()
                    .filter(|s| step.starts_from(*s))
                    .collect();
                (step, from)
            })
            .collect()
    }

    #[test]
    fn each_move_starts_only_from_its_documented_states() {
        let expected: Vec<(Move, Vec<TenantStatus>)> = vec![
            (Move::Provision, vec![PendingProvision, ProvisionFailed]),
            (Move::Provisioned, vec![Provisioning]),
            (Move::ProvisioningFailed, vec![Provisioning]),
            (Move::Deprovision, vec![Active, ProvisionFailed, Suspended]),
            (Move::Offboarded, vec![Deprovisioning]),
            (Move::Suspend, vec![Active]),
            (Move::Reactivate, vec![Suspended]),
            (Move::OffboardingFailed(Active), vec![Deprovisioning]),
            (Move::OffboardingFailed(PendingProvision), vec![]),
            (Move::OffboardingFailed(Provisioning), vec![]),
            (
                Move::OffboardingFailed(ProvisionFailed),
                vec![Deprovisioning],
            ),
            (Move::OffboardingFailed(Deprovisioning), vec![]),
            (Move::OffboardingFailed(Inactive), vec![]),
            (Move::OffboardingFailed(Suspended), vec![Deprovisioning]),
        ];
        assert_eq!(table(), expected);
    }

    #[test]
    fn no_operator_move_takes_a_tenant_from_its_pipeline() {
        for step in Move::OPERATOR {
            for running in [Provisioning, Deprovisioning] {
                assert!(!step.starts_from(running), "{step:?} from {running}");
            }
        }
        // Nothing leaves INACTIVE; nothing goes back to PENDINGPROVISION.
        for (step, from) in table() {
            assert!(!from.contains(&Inactive), "{step:?}");
            if !from.is_empty() {
                assert_ne!(step.target(), PendingProvision, "{step:?}");
            }
        }
    }
}
