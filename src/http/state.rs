//! The state every handler reaches: the service's [`Services`](crate::domain::Services), built
//! once by `App::build`.

use axum::extract::FromRef;

use crate::auth::JwtKeys;

/// What every handler can reach.
pub type AppState = crate::domain::Services;

impl FromRef<AppState> for JwtKeys {
    fn from_ref(state: &AppState) -> Self {
        state.jwt.clone()
    }
}
