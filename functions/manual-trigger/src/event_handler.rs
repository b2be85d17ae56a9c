//! Parses the command, calls `shared`, maps the result. No business rules, no SDK types.

use serde_json::{Value, json};
use shared::config::Config;
use shared::domain::command::{self, Command};
use shared::domain::decision::Initiator;
use shared::engine::documents;
use shared::engine::failover::{Engine, ExecutionResult, MoveRequest};
use shared::engine::response::CommandResponse;
use shared::engine::status;
use shared::error::HandlerError;
use shared::ports::{Clock, ControlBucket, Notifier, ParameterStore};

/// What the handler needs, built once in `main`.
pub struct Deps<P, B, N, C> {
    /// The engine over its adapters.
    pub engine: Engine<P, B, N, C>,
    /// The function's configuration.
    pub config: Config,
}

/// Handles one invocation.
pub async fn handle<P: ParameterStore, B: ControlBucket, N: Notifier, C: Clock>(
    deps: &Deps<P, B, N, C>,
    payload: Value,
) -> Result<Value, HandlerError> {
    let engine = &deps.engine;
    let response = match command::parse(&payload) {
        Err(rejection) => {
            tracing::warn!(reason = %rejection, "command rejected");
            CommandResponse::rejected(rejection.0, active_site(deps).await)
        }
        Ok(Command::Status) => status::status(&engine.params, &deps.config).await?,
        Ok(Command::Move(m)) => {
            let name = if m.target == shared::domain::site::SiteName::Secondary { "failover" } else { "failback" };
            // The client token makes a retried command the same execution; without one, each command is new.
            let token = m.client_token.clone().unwrap_or_else(|| uuid_token());
            let request = MoveRequest {
                execution_id: format!("{name}-{token}"),
                initiator: Initiator::Human { requested_by: m.requested_by.clone() },
                target: m.target,
                reason: m.reason.clone(),
                trigger: json!({ "command": name, "target": m.target, "requested_by": m.requested_by, "reason": m.reason, "client_token": m.client_token }),
            };
            execution(name, engine.run(request).await?)
        }
        Ok(Command::Approve(a)) => execution("approve", engine.approve(&a.execution_id, &a.requested_by).await?),
        Ok(Command::Unlock(u)) => {
            let who = u.requested_by.as_deref().unwrap_or("unknown (no requested_by given)");
            execution("unlock", engine.unlock(&u.execution_id, who).await?)
        }
        Ok(other) => {
            let name = other.name();
            tracing::warn!(command = name, "command not available in this version");
            CommandResponse::rejected(
                format!(
                    "command {name:?} is valid but not available in this version; available: status, failover, failback, approve, unlock"
                ),
                active_site(deps).await,
            )
        }
    };
    tracing::info!(outcome = ?response.outcome, active_site = ?response.active_site, "command answered");
    // Serializing our own response types cannot fail (string keys, no non-finite floats).
    Ok(serde_json::to_value(&response).unwrap_or(Value::Null))
}

fn execution(command: &str, r: ExecutionResult) -> CommandResponse {
    let mut details = r.to_fields();
    details.insert("command".into(), json!(command));
    CommandResponse { outcome: r.outcome, active_site: r.active_site, message: Some(r.message), details }
}

fn uuid_token() -> String {
    shared::engine::failover::new_token()
}

/// The active site for a rejection's answer, best effort: a rejection must not depend on SSM being up.
async fn active_site<P: ParameterStore, B, N, C>(deps: &Deps<P, B, N, C>) -> Option<shared::domain::site::SiteName> {
    let docs = documents::load(&deps.engine.params, &deps.config.ssm_prefix).await.ok()?;
    docs.active.valid().map(|a| a.site)
}
