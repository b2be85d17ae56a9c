//! The `sync` section of a site document: how the values local to the other site map onto this one.
//!
//! The section lives in the document of the site being written to (the standby) and maps the active site's
//! values to its own, so each direction has its own map: the secondary's document maps the primary's values
//! while the secondary is the standby, and the primary's maps the secondary's after a failover.
//!
//! ```json
//! "sync": {
//!   "instance_profiles": {"arn:aws:iam::1:instance-profile/etl-use1": "arn:aws:iam::1:instance-profile/etl-usw2"},
//!   "storage_roots": {"s3://acme-use1/": "s3://acme-usw2/"},
//!   "zone_ids": {"us-east-1a": "us-west-2a"},
//!   "run_as": {"etl@acme.com": "etl@acme.com"},
//!   "external_locations": {"landing-use1": "landing-usw2"},
//!   "storage_credentials": {"cred-use1": "cred-usw2"}
//! }
//! ```
//!
//! Every map is optional and takes non-empty strings. `storage_roots` maps by the longest matching prefix;
//! the others map whole values. A zone of `auto` needs no mapping. A run-as principal missing from `run_as` is
//! kept as it is (users, groups and service principals are account-wide, the same in both workspaces); every
//! other value missing from its map blocks the object that names it.

use serde_json::Value;
use std::collections::BTreeMap;

/// The keys a `sync` section may hold.
pub const KEYS: [&str; 6] =
    ["instance_profiles", "storage_roots", "zone_ids", "run_as", "external_locations", "storage_credentials"];

/// A validated `sync` section (all maps empty when the document has none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncSettings {
    /// Instance profile ARNs, the active site's to this site's.
    pub instance_profiles: BTreeMap<String, String>,
    /// Storage path prefixes (`s3://bucket/` or deeper), the active site's to this site's.
    pub storage_roots: BTreeMap<String, String>,
    /// Availability zones (`aws_attributes.zone_id`), the active site's to this site's.
    pub zone_ids: BTreeMap<String, String>,
    /// Run-as principals (user names, service principal application ids), where they differ.
    pub run_as: BTreeMap<String, String>,
    /// Unity Catalog external location names, the active site's to this site's.
    pub external_locations: BTreeMap<String, String>,
    /// Unity Catalog storage credential names, the active site's to this site's.
    pub storage_credentials: BTreeMap<String, String>,
}

impl SyncSettings {
    /// Validates the `sync` value of a site document (absent: no mappings).
    pub fn from_value(v: Option<&Value>) -> Result<SyncSettings, String> {
        let Some(v) = v else { return Ok(SyncSettings::default()) };
        let Value::Object(o) = v else {
            return Err(format!(
                "`sync` is {}; expected an object of maps such as {{\"zone_ids\": {{\"us-east-1a\": \"us-west-2a\"}}}}",
                crate::describe_json(v)
            ));
        };
        if let Some(k) = o.keys().find(|k| !KEYS.contains(&k.as_str())) {
            return Err(format!("`sync.{k}` is not a setting; expected some of {}", KEYS.join(", ")));
        }
        let map = |key: &str| -> Result<BTreeMap<String, String>, String> {
            let Some(v) = o.get(key) else { return Ok(BTreeMap::new()) };
            let Value::Object(m) = v else {
                return Err(format!(
                    "`sync.{key}` is {}; expected an object mapping the active site's values to this site's",
                    crate::describe_json(v)
                ));
            };
            m.iter()
                .map(|(from, to)| match to {
                    Value::String(s) if !s.trim().is_empty() && !from.trim().is_empty() => Ok((from.clone(), s.clone())),
                    other => Err(format!(
                        "`sync.{key}[{from:?}]` is {}; expected a non-empty string (this site's value)",
                        crate::describe_json(other)
                    )),
                })
                .collect()
        };
        Ok(SyncSettings {
            instance_profiles: map("instance_profiles")?,
            storage_roots: map("storage_roots")?,
            zone_ids: map("zone_ids")?,
            run_as: map("run_as")?,
            external_locations: map("external_locations")?,
            storage_credentials: map("storage_credentials")?,
        })
    }

    /// `path` with its longest mapped prefix replaced, or `None` when no prefix matches.
    pub fn storage_path(&self, path: &str) -> Option<String> {
        self.storage_roots
            .iter()
            .filter(|(from, _)| path.starts_with(from.as_str()))
            .max_by_key(|(from, _)| from.len())
            .map(|(from, to)| format!("{to}{}", &path[from.len()..]))
    }
}
