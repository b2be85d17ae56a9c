//! Parses the command, calls `shared`, maps the result. No business rules, no SDK types.

use serde_json::Value;
use shared::config::Config;
use shared::domain::command::{self, Command};
use shared::engine::documents;
use shared::engine::response::CommandResponse;
use shared::engine::status;
use shared::error::HandlerError;
use shared::ports::ParameterStore;

/// What the handler needs, built once in `main`.
pub struct Deps<P> {
    /// The DR parameters.
    pub params: P,
    /// The function's configuration.
    pub config: Config,
}

/// Handles one invocation.
pub async fn handle<P: ParameterStore>(deps: &Deps<P>, payload: Value) -> Result<Value, HandlerError> {
    let response = match command::parse(&payload) {
        Err(rejection) => {
            tracing::warn!(reason = %rejection, "command rejected");
            CommandResponse::rejected(rejection.0, active_site(deps).await)
        }
        Ok(Command::Status) => status::status(&deps.params, &deps.config).await?,
        Ok(other) => {
            let name = other.name();
            tracing::warn!(command = name, "command not available in this version");
            CommandResponse::rejected(
                format!("command {name:?} is valid but not available in this version; available: status"),
                active_site(deps).await,
            )
        }
    };
    tracing::info!(outcome = ?response.outcome, active_site = ?response.active_site, "command answered");
    // Serializing our own response types cannot fail (string keys, no non-finite floats).
    Ok(serde_json::to_value(&response).unwrap_or(Value::Null))
}

/// The active site for a rejection's answer, best effort: a rejection must not depend on SSM being up.
async fn active_site<P: ParameterStore>(deps: &Deps<P>) -> Option<shared::domain::site::SiteName> {
    let docs = documents::load(&deps.params, &deps.config.ssm_prefix).await.ok()?;
    docs.active.valid().map(|a| a.site)
}
