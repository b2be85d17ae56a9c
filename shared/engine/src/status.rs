//! `status`: the active site and its config, both sites, the policy, the data plane, and what is wrong.

use domain::site::SiteName;
use dr_failover::EngineSettings;
use dr_failover::response::{ActiveView, DataPlaneView, Fallible, PolicyView, SiteView, StatusAnswer};
use dr_ports::documents::{Doc, DrDocuments};
use std::collections::BTreeMap;

/// A document as `status` shows it: its view, or its problem.
fn view<T, V>(doc: &Doc<T>, valid: impl FnOnce(&T, i64) -> V) -> Fallible<V> {
    match doc {
        Doc::Valid { value, version } => Fallible::Read(valid(value, *version)),
        other => Fallible::Failed { error: other.problem().unwrap_or_default() },
    }
}

/// Renders the documents as the `status` answer (the command loads them once: `commands` shares them with the
/// workspace and Delta views, and fills in the rest: what is in flight, the executions, the incidents). Invalid
/// documents are reported, not raised: status is what on-call runs when something is already broken.
pub fn render(docs: &DrDocuments, settings: &EngineSettings) -> StatusAnswer {
    let active = view(&docs.active, |value, version| ActiveView {
        site: value.site,
        execution_id: value.execution_id.clone(),
        promoted_at: value.promoted_at.clone(),
        version,
        config: value.config.document().clone(),
    });
    let sites: BTreeMap<String, Fallible<SiteView>> = SiteName::ALL
        .iter()
        .map(|site| {
            let v = view(docs.site(*site), |value, version| SiteView { version, config: value.document().clone() });
            (site.as_str().to_owned(), v)
        })
        .collect();
    let policy = match &docs.policy {
        None => PolicyView {
            source: "default (parameter absent: approval mode)".into(),
            version: None,
            policy: Some(domain::policy::Policy::default()),
            error: None,
        },
        Some(Doc::Valid { value, version }) => {
            PolicyView { source: "parameter".into(), version: Some(*version), policy: Some(value.clone()), error: None }
        }
        Some(other) => PolicyView { source: "parameter".into(), version: None, policy: None, error: other.problem() },
    };
    let data_plane = view(&docs.data_plane, |value, version| DataPlaneView { version, locations: value.locations.clone() });
    StatusAnswer {
        command: "status".into(),
        environment: settings.environment.as_str().to_owned(),
        ssm_prefix: settings.prefix.as_str().to_owned(),
        active,
        sites,
        policy,
        data_plane,
        problems: problems(docs),
        workspaces: None,
        activation: None,
        delta_rpo: None,
        replication_incidents: None,
        in_flight: Fallible::Read(None),
        recent_executions: Fallible::Read(Vec::new()),
        resumable_executions: None,
        pages_owed: None,
    }
}

/// Every document problem, plus an active config that matches neither site.
pub fn problems(docs: &DrDocuments) -> Vec<String> {
    let mut out: Vec<String> = [
        docs.active.problem(),
        docs.primary.problem(),
        docs.secondary.problem(),
        docs.policy.as_ref().and_then(Doc::problem),
        docs.data_plane.problem(),
    ]
    .into_iter()
    .flatten()
    .collect();
    if let Some(active) = docs.active.valid()
        && let Some(site_doc) = docs.site(active.site).valid()
        && active.config.document() != site_doc.document()
    {
        out.push(format!(
            "the active config (site {}) differs from sites/{}: a site document changed after promotion, or active was edited by hand",
            active.site, active.site
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use dr_ports::documents;
    use dr_ports::error::StoreError;
    use dr_ports::memory::MemParameters;

    fn store(params: &[(&str, &str)]) -> MemParameters {
        let s = MemParameters::default();
        for (n, v) in params {
            s.seed(n, v, "String");
        }
        s
    }

    /// `status` as the command answers it, from the parameters alone.
    async fn status(store: &MemParameters, settings: &EngineSettings) -> Result<StatusAnswer, StoreError> {
        Ok(render(&documents::load(store, &settings.prefix).await?, settings))
    }

    fn config() -> EngineSettings {
        EngineSettings::example(domain::names::SsmPrefix::parse("/dr/prod").unwrap())
    }

    const P: &str = r#"{"workspace_url":"https://p.cloud.databricks.com","region":"us-east-1"}"#;
    const S: &str = r#"{"workspace_url":"https://s.cloud.databricks.com","region":"us-west-2"}"#;

    #[tokio::test]
    async fn reports_the_active_site_and_each_problem() {
        let store = store(&[
            ("/dr/prod/sites/primary", P),
            ("/dr/prod/sites/secondary", r#"{"region":"us-west-2"}"#),
            ("/dr/prod/active", r#"{"workspace_url":"https://p.cloud.databricks.com","region":"us-east-1","site":"primary"}"#),
        ]);
        let r = status(&store, &config()).await.unwrap();
        assert_eq!(r.active.read().map(|a| a.site), Some(SiteName::Primary));
        let problems = r.problems.join("\n");
        assert!(problems.contains("sites/secondary") && problems.contains("workspace_url"), "{problems}");
        assert!(problems.contains("/dr/prod/data-plane does not exist"), "{problems}");
        assert_eq!(r.policy.policy.map(|p| p.mode), Some(domain::policy::PolicyMode::Approval));
    }

    #[tokio::test]
    async fn flags_an_active_config_that_matches_no_site() {
        let store = store(&[
            ("/dr/prod/sites/primary", P),
            ("/dr/prod/sites/secondary", S),
            (
                "/dr/prod/active",
                r#"{"workspace_url":"https://other.cloud.databricks.com","region":"us-east-1","site":"primary"}"#,
            ),
        ]);
        let r = status(&store, &config()).await.unwrap();
        assert!(r.problems.join("\n").contains("differs from sites/primary"));
    }
}
