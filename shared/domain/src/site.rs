//! Workspace site documents: `{prefix}/sites/{primary,secondary}` and the live `{prefix}/active`.

use crate::error::InvalidDocument;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;

/// One of the two sites of a protected environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SiteName {
    /// The site that normally serves.
    Primary,
    /// The standby site in the other region.
    Secondary,
}

impl SiteName {
    /// Both sites, primary first.
    pub const ALL: [SiteName; 2] = [SiteName::Primary, SiteName::Secondary];

    /// `primary` or `secondary`, as in parameter names and documents.
    pub fn as_str(self) -> &'static str {
        match self {
            SiteName::Primary => "primary",
            SiteName::Secondary => "secondary",
        }
    }

    /// The other site.
    pub fn other(self) -> SiteName {
        match self {
            SiteName::Primary => SiteName::Secondary,
            SiteName::Secondary => SiteName::Primary,
        }
    }

    /// Parses `primary` / `secondary`.
    pub fn parse(s: &str) -> Option<SiteName> {
        match s {
            "primary" => Some(SiteName::Primary),
            "secondary" => Some(SiteName::Secondary),
            _ => None,
        }
    }
}

impl fmt::Display for SiteName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Keys the handlers add to the active document; a site document must not carry them.
pub const ACTIVE_ONLY_KEYS: [&str; 3] = ["site", "execution_id", "promoted_at"];

/// A validated site document: what consumers need to reach a workspace.
///
/// The raw JSON object is kept as written (operators may add any keys: warehouse ids, secret names), so
/// that promotion copies it verbatim; only the keys the handlers rely on are validated.
#[derive(Debug, Clone, PartialEq)]
pub struct SiteConfig {
    doc: Map<String, Value>,
}

impl SiteConfig {
    /// Validates a site document. `what` names the document in errors.
    pub fn parse(what: &str, json: &str) -> Result<SiteConfig, InvalidDocument> {
        let invalid = |problem: String| InvalidDocument { what: what.to_owned(), problem };
        let value: Value = serde_json::from_str(json).map_err(|e| invalid(format!("not JSON ({e}); expected a JSON object")))?;
        let Value::Object(doc) = value else {
            return Err(invalid("expected a JSON object".into()));
        };
        for key in ACTIVE_ONLY_KEYS {
            if doc.contains_key(key) {
                return Err(invalid(format!(
                    "key `{key}` is reserved for {{prefix}}/active and must not appear in a site document"
                )));
            }
        }
        Self::from_map(doc).map_err(invalid)
    }

    fn from_map(doc: Map<String, Value>) -> Result<SiteConfig, String> {
        let url = match doc.get("workspace_url") {
            Some(Value::String(s)) => s,
            Some(_) => return Err("`workspace_url` must be a string".into()),
            None => return Err("missing `workspace_url` (expected an https URL of the Databricks workspace)".into()),
        };
        validate_workspace_url(url).map_err(|p| format!("`workspace_url` {p}"))?;
        match doc.get("region") {
            Some(Value::String(r)) if is_region_code(r) => {}
            Some(v) => return Err(format!("`region` is {v}; expected an AWS region code such as us-west-2")),
            None => return Err("missing `region` (expected an AWS region code such as us-west-2)".into()),
        }
        match doc.get("token_parameter") {
            None | Some(Value::String(_)) => {}
            Some(_) => return Err("`token_parameter` must be the name of a SecureString parameter (a string)".into()),
        }
        ActivationSettings::from_value(doc.get("activation"))?;
        ExportSettings::from_value(doc.get("export"))?;
        crate::sync_settings::SyncSettings::from_value(doc.get("sync"))?;
        Ok(SiteConfig { doc })
    }

    /// The workspace URL.
    pub fn workspace_url(&self) -> &str {
        self.doc.get("workspace_url").and_then(Value::as_str).unwrap_or_default()
    }

    /// The AWS region code of the site.
    pub fn region(&self) -> &str {
        self.doc.get("region").and_then(Value::as_str).unwrap_or_default()
    }

    /// The document as written.
    pub fn document(&self) -> &Map<String, Value> {
        &self.doc
    }

    /// How the site's workspace is exported (`export` in the document; defaults when absent).
    pub fn export_settings(&self) -> ExportSettings {
        // Validated at parse: a document that reached here has a valid `export` or none.
        ExportSettings::from_value(self.doc.get("export")).unwrap_or_default()
    }
}

impl SiteConfig {
    /// How the other site's values map onto this one when this site is the standby (`sync` in the document;
    /// no mappings when absent).
    pub fn sync_settings(&self) -> crate::sync_settings::SyncSettings {
        // Validated at parse: a document that reached here has a valid `sync` or none.
        crate::sync_settings::SyncSettings::from_value(self.doc.get("sync")).unwrap_or_default()
    }
}

/// A site's activation settings (its document's `activation` key).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ActivationSettings {
    /// `(key, value)`: jobs whose `settings.tags[key] == value` are resumed (target) and paused (former).
    pub job_tag: Option<(String, String)>,
    /// SQL warehouses (names or ids) started in the target.
    pub warehouses: Vec<String>,
}

impl ActivationSettings {
    /// The settings of a site document (`None`: it has no `activation` key), or what is wrong with them.
    pub fn of(config: &SiteConfig) -> Result<Option<ActivationSettings>, String> {
        Self::from_value(config.document().get("activation"))
    }

    /// Validates the `activation` value of a site document.
    pub fn from_value(v: Option<&Value>) -> Result<Option<ActivationSettings>, String> {
        let Some(v) = v else { return Ok(None) };
        let Value::Object(m) = v else {
            return Err(format!(
                "`activation` is {}; expected an object such as {{\"job_tag\": \"dr=active-passive\", \"warehouses\": [\"bi\"]}}",
                crate::describe_json(v)
            ));
        };
        for k in m.keys() {
            if k != "job_tag" && k != "warehouses" {
                return Err(format!("`activation.{k}` is not a known key; expected `job_tag` and `warehouses`"));
            }
        }
        let job_tag = match m.get("job_tag") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => match s.split_once('=') {
                Some((k, val)) if !k.trim().is_empty() && !val.trim().is_empty() => {
                    Some((k.trim().to_owned(), val.trim().to_owned()))
                }
                _ => return Err(format!("`activation.job_tag` is {s:?}; expected `key=value`, e.g. \"dr=active-passive\"")),
            },
            Some(other) => {
                return Err(format!(
                    "`activation.job_tag` is {}; expected a string `key=value`, e.g. \"dr=active-passive\"",
                    crate::describe_json(other)
                ));
            }
        };
        let warehouses = match m.get("warehouses") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .map(|w| match w {
                    Value::String(s) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
                    other => Err(format!(
                        "`activation.warehouses` holds {}; expected SQL warehouse names or ids (non-empty strings)",
                        crate::describe_json(other)
                    )),
                })
                .collect::<Result<_, _>>()?,
            Some(other) => {
                return Err(format!(
                    "`activation.warehouses` is {}; expected an array of SQL warehouse names or ids",
                    crate::describe_json(other)
                ));
            }
        };
        Ok(Some(ActivationSettings { job_tag, warehouses }))
    }

    /// `key=value` of the job tag, for messages.
    pub fn tag_text(&self) -> String {
        self.job_tag.as_ref().map(|(k, v)| format!("{k}={v}")).unwrap_or_default()
    }

    /// Whether a job with these tags (`settings.tags`) carries the selecting tag.
    pub fn selects(&self, tags: &BTreeMap<String, String>) -> bool {
        self.job_tag.as_ref().is_some_and(|(k, v)| tags.get(k) == Some(v))
    }
}

/// A site's export settings: `"export": {"sql_warehouse_id": "..."}` in its document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportSettings {
    /// The SQL warehouse that reads Unity Catalog's tables and grants in bulk from
    /// `system.information_schema` (the SQL Statement Execution API); without it, each schema's tables and each
    /// securable's grants are read by their own calls.
    pub sql_warehouse_id: Option<String>,
}

impl ExportSettings {
    /// Validates `export` (absent is the defaults).
    pub fn from_value(v: Option<&Value>) -> Result<ExportSettings, String> {
        let Some(v) = v else { return Ok(ExportSettings::default()) };
        let Value::Object(o) = v else { return Err(format!("`export` is {v}; expected an object")) };
        if let Some(k) = o.keys().find(|k| k.as_str() != "sql_warehouse_id") {
            return Err(format!("`export.{k}` is not a setting; expected only `sql_warehouse_id`"));
        }
        match o.get("sql_warehouse_id") {
            None | Some(Value::Null) => Ok(ExportSettings::default()),
            Some(Value::String(id)) if !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric()) => {
                Ok(ExportSettings { sql_warehouse_id: Some(id.clone()) })
            }
            Some(v) => Err(format!("`export.sql_warehouse_id` is {v}; expected a SQL warehouse id (letters and digits)")),
        }
    }
}

/// The parsed `{prefix}/active` document: a site's document plus who put it there and when.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveConfig {
    /// Which site is live.
    pub site: SiteName,
    /// The execution that promoted it (absent when operators created the parameter by hand).
    pub execution_id: Option<String>,
    /// When it was promoted (RFC 3339), if recorded.
    pub promoted_at: Option<String>,
    /// The site's document as it was promoted.
    pub config: SiteConfig,
}

impl ActiveConfig {
    /// Validates the active document.
    pub fn parse(what: &str, json: &str) -> Result<ActiveConfig, InvalidDocument> {
        let invalid = |problem: String| InvalidDocument { what: what.to_owned(), problem };
        let value: Value = serde_json::from_str(json).map_err(|e| invalid(format!("not JSON ({e}); expected a JSON object")))?;
        let Value::Object(mut doc) = value else {
            return Err(invalid("expected a JSON object".into()));
        };
        let site = match doc.remove("site") {
            Some(Value::String(s)) => {
                SiteName::parse(&s).ok_or_else(|| invalid(format!("`site` is {s:?}; expected \"primary\" or \"secondary\"")))?
            }
            Some(v) => return Err(invalid(format!("`site` is {v}; expected \"primary\" or \"secondary\""))),
            None => return Err(invalid("missing `site` (expected \"primary\" or \"secondary\")".into())),
        };
        let mut opt_string = |key: &str| -> Result<Option<String>, InvalidDocument> {
            match doc.remove(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s)),
                Some(v) => Err(invalid(format!("`{key}` is {v}; expected a string"))),
            }
        };
        let execution_id = opt_string("execution_id")?;
        let promoted_at = opt_string("promoted_at")?;
        let config = SiteConfig::from_map(doc).map_err(invalid)?;
        Ok(ActiveConfig { site, execution_id, promoted_at, config })
    }

    /// Builds the document a promotion writes: the site's document plus `site`, `execution_id`, `promoted_at`.
    pub fn promotion_document(site: SiteName, config: &SiteConfig, execution_id: &str, promoted_at: &str) -> Map<String, Value> {
        let mut doc = config.document().clone();
        doc.insert("site".into(), Value::String(site.as_str().into()));
        doc.insert("execution_id".into(), Value::String(execution_id.into()));
        doc.insert("promoted_at".into(), Value::String(promoted_at.into()));
        doc
    }
}

/// An AWS region code: `us-west-2`, `eu-central-1`, `us-gov-west-1`, `ap-southeast-5`.
pub fn is_region_code(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() >= 3
        && parts.len() <= 4
        && parts[0].len() == 2
        && parts.iter().all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()))
        && parts.last().is_some_and(|p| p.chars().all(|c| c.is_ascii_digit()))
}

/// `https://host[...]`, or `http://` only for a loopback host (local runs and tests).
fn validate_workspace_url(s: &str) -> Result<(), String> {
    let url = url::Url::parse(s).map_err(|e| format!("is not a URL ({e}); expected https://<workspace>.cloud.databricks.com"))?;
    let host = url.host_str().unwrap_or_default();
    if host.is_empty() {
        return Err("has no host".into());
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(&url) => Ok(()),
        "http" => Err(format!("uses plain http for {host}; expected https (http is allowed only for a loopback host)")),
        other => Err(format!("has scheme {other:?}; expected https")),
    }
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_a_site_with_extra_keys() {
        let s = SiteConfig::parse(
            "p",
            r#"{"workspace_url":"https://a.cloud.databricks.com","region":"us-east-1","warehouse_id":"abc"}"#,
        )
        .unwrap();
        assert_eq!(s.region(), "us-east-1");
        assert_eq!(s.document()["warehouse_id"], "abc");
    }

    #[test]
    fn export_settings_name_an_optional_sql_warehouse_and_nothing_else() {
        let site = |export: &str| {
            SiteConfig::parse(
                "p",
                &format!(r#"{{"workspace_url":"https://a.cloud.databricks.com","region":"us-east-1"{export}}}"#),
            )
        };
        assert_eq!(site("").unwrap().export_settings(), ExportSettings::default());
        let s = site(r#","export":{"sql_warehouse_id":"1234abcd"}"#).unwrap();
        assert_eq!(s.export_settings().sql_warehouse_id.as_deref(), Some("1234abcd"));
        for (bad, says) in [
            (r#","export":{"sql_warehouse_id":""}"#, "sql_warehouse_id"),
            (r#","export":{"sql_warehouse_id":"a/b"}"#, "sql_warehouse_id"),
            (r#","export":{"warehouse":"a"}"#, "export.warehouse"),
            (r#","export":"a""#, "expected an object"),
        ] {
            let e = site(bad).unwrap_err();
            assert!(e.to_string().contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn http_only_for_loopback() {
        assert!(SiteConfig::parse("p", r#"{"workspace_url":"http://127.0.0.1:8080","region":"us-east-1"}"#).is_ok());
        assert!(SiteConfig::parse("p", r#"{"workspace_url":"http://localhost","region":"us-east-1"}"#).is_ok());
        let e = SiteConfig::parse("p", r#"{"workspace_url":"http://a.cloud.databricks.com","region":"us-east-1"}"#).unwrap_err();
        assert!(e.to_string().contains("plain http"), "{e}");
    }

    #[test]
    fn names_the_bad_field() {
        for (doc, needle) in [
            (r#"{"region":"us-east-1"}"#, "missing `workspace_url`"),
            (r#"{"workspace_url":"https://x.y","region":"Virginia"}"#, "`region`"),
            (r#"{"workspace_url":"https://x.y"}"#, "missing `region`"),
            (r#"{"workspace_url":"https://x.y","region":"us-east-1","site":"primary"}"#, "reserved"),
            (r#"[1]"#, "JSON object"),
            (r#"{"workspace_url":"ftp://x.y","region":"us-east-1"}"#, "scheme"),
            (r#"{"workspace_url":"https://x.y","region":"us-east-1","token_parameter":3}"#, "token_parameter"),
            (r#"{"workspace_url":"https://x.y","region":"us-east-1","activation":{"job_tag":"dr"}}"#, "key=value"),
            (r#"{"workspace_url":"https://x.y","region":"us-east-1","sync":{"zones":{}}}"#, "`sync.zones` is not a setting"),
            (r#"{"workspace_url":"https://x.y","region":"us-east-1","sync":{"zone_ids":{"a":""}}}"#, "sync.zone_ids"),
            (r#"{"workspace_url":"https://x.y","region":"us-east-1","sync":{"run_as":[1]}}"#, "`sync.run_as` is an array"),
        ] {
            let e = SiteConfig::parse("SSM parameter /dr/p/sites/primary", doc).unwrap_err().to_string();
            assert!(e.contains(needle) && e.contains("/dr/p/sites/primary"), "{doc}: {e}");
        }
    }

    #[test]
    fn region_codes() {
        for ok in ["us-east-1", "eu-central-2", "us-gov-west-1", "ap-southeast-5"] {
            assert!(is_region_code(ok), "{ok}");
        }
        for bad in ["US East (N. Virginia)", "us-east", "useast1", "", "us-east-1a"] {
            assert!(!is_region_code(bad), "{bad}");
        }
    }

    #[test]
    fn active_round_trips_through_the_promotion_document() {
        let site =
            SiteConfig::parse("s", r#"{"workspace_url":"https://b.cloud.databricks.com","region":"us-west-2","k":"v"}"#).unwrap();
        let doc = ActiveConfig::promotion_document(SiteName::Secondary, &site, "ex-1", "2026-01-01T00:00:00Z");
        let active = ActiveConfig::parse("a", &serde_json::to_string(&doc).unwrap()).unwrap();
        assert_eq!(active.site, SiteName::Secondary);
        assert_eq!(active.execution_id.as_deref(), Some("ex-1"));
        assert_eq!(active.config, site);
    }

    #[test]
    fn active_requires_a_known_site() {
        let e =
            ActiveConfig::parse("a", r#"{"workspace_url":"https://b.c","region":"us-west-2","site":"tertiary"}"#).unwrap_err();
        assert!(e.to_string().contains("`site`"), "{e}");
    }
}
