//! `status`: the active site and its config, both sites, the policy, the data plane, and what is wrong.

use super::documents::{Doc, DrDocuments};
use super::response::{CommandResponse, Outcome};
use crate::failover::EngineSettings;
use domain::site::SiteName;
use serde_json::{Map, Value, json};

/// Renders the documents as the `status` answer (the command loads them once: `commands` shares them with the
/// workspace and Delta views). Invalid documents are reported, not raised: status is what on-call runs when
/// something is already broken.
pub fn render(docs: &DrDocuments, settings: &EngineSettings) -> CommandResponse {
    let mut details = Map::new();
    details.insert("command".into(), json!("status"));
    details.insert("environment".into(), json!(settings.environment.as_str()));
    details.insert("ssm_prefix".into(), json!(settings.prefix.as_str()));

    let active = match &docs.active {
        Doc::Valid { value, version } => json!({
            "site": value.site,
            "execution_id": value.execution_id,
            "promoted_at": value.promoted_at,
            "version": version,
            "config": value.config.document(),
        }),
        other => json!({ "error": other.problem() }),
    };
    details.insert("active".into(), active);

    let mut sites = Map::new();
    for site in SiteName::ALL {
        let v = match docs.site(site) {
            Doc::Valid { value, version } => json!({ "version": version, "config": value.document() }),
            other => json!({ "error": other.problem() }),
        };
        sites.insert(site.as_str().into(), v);
    }
    details.insert("sites".into(), Value::Object(sites));

    let policy = match &docs.policy {
        None => {
            json!({ "source": "default (parameter absent: approval mode)", "policy": domain::policy::Policy::default() })
        }
        Some(Doc::Valid { value, version }) => json!({ "source": "parameter", "version": version, "policy": value }),
        Some(other) => json!({ "source": "parameter", "error": other.problem() }),
    };
    details.insert("policy".into(), policy);

    let data_plane = match &docs.data_plane {
        Doc::Valid { value, version } => json!({ "version": version, "locations": value.locations }),
        other => json!({ "error": other.problem() }),
    };
    details.insert("data_plane".into(), data_plane);
    details.insert("problems".into(), json!(problems(docs)));

    CommandResponse { outcome: Outcome::Noop, active_site: docs.active.valid().map(|a| a.site), message: None, details }
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
    use crate::documents;
    use crate::error::StoreError;
    use crate::ports::memory::MemParameters;

    fn store(params: &[(&str, &str)]) -> MemParameters {
        let s = MemParameters::default();
        for (n, v) in params {
            s.seed(n, v, "String");
        }
        s
    }

    /// `status` as the command answers it, from the parameters alone.
    async fn status(store: &MemParameters, settings: &EngineSettings) -> Result<CommandResponse, StoreError> {
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
        assert_eq!(r.outcome, Outcome::Noop);
        assert_eq!(r.active_site, Some(SiteName::Primary));
        let problems = r.details["problems"].to_string();
        assert!(problems.contains("sites/secondary") && problems.contains("workspace_url"), "{problems}");
        assert!(problems.contains("/dr/prod/data-plane does not exist"), "{problems}");
        assert_eq!(r.details["policy"]["policy"]["mode"], "approval");
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
        assert!(r.details["problems"].to_string().contains("differs from sites/primary"));
    }
}
