//! Drift between two exports of the same kinds: the two sites now, or one site over time.
//!
//! Objects are matched by [`identity::of`] and compared by [`identity::content`], so workspace-local ids,
//! timestamps, runtime state and the secondary's paused schedules never read as drift.
//!
//! Rules of [`diff`]:
//!
//! - `removed`: identities in `base` and not in `other`; `added`: in `other` and not in `base`; `changed`:
//!   in both, with a different content. Each list is sorted by identity, so the same inputs give the same
//!   drift whatever order the API listed them in.
//! - Duplicates (two jobs named `X` with the same tags, which the Jobs API allows): each side is a multiset.
//!   Copies with equal content are matched first; the remaining copies are paired in canonical order and a
//!   pair that differs makes one [`Changed`] entry for `X` (fields of every differing pair, merged); copies
//!   left over after pairing repeat the identity once per copy in `removed` or `added`. So "2 jobs named X"
//!   in `base` against 1 in `other` gives `X` once in `removed`, and counts stay true in sentences.
//! - Objects without an identity are counted in `unidentified`, never compared; clusters that exist for
//!   one run ([`identity::is_ephemeral`]) are left out entirely.
//! - `Changed::fields` are the paths that differ, dotted, at most two levels deep (`settings.tasks`,
//!   `settings.max_concurrent_runs`, `owner`): enough to say where to look, short enough for a chat line.
//! - `exact` is the caller's: true only when both exports of the kind were complete. A partial export makes
//!   `removed`/`added` a guess, which the sentences say.

use super::{ObjectKind, identity};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// One object present in both exports whose configuration differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changed {
    /// Its identity ([`identity::of`]).
    pub identity: String,
    /// The dotted paths that differ, at most two levels deep, sorted: `settings.tasks`, `owner`.
    pub fields: Vec<String>,
}

/// The drift of one kind between two exports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindDrift {
    /// The kind compared.
    pub kind: ObjectKind,
    /// Identities in `other` and not in `base`, sorted (repeated once per extra duplicate).
    pub added: Vec<String>,
    /// Identities in `base` and not in `other`, sorted (repeated once per missing duplicate).
    pub removed: Vec<String>,
    /// Identities in both whose content differs, sorted.
    pub changed: Vec<Changed>,
    /// Identities in `base` and not in `other` that the API stopped listing on its own, not removed by anyone:
    /// clusters terminated more than [`CLUSTER_LISTING_WINDOW_MS`] before `other` was taken (set by
    /// [`KindDrift::set_aside_aged_out_clusters`]), and their permissions. Sorted; empty for every other kind.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aged_out: Vec<String>,
    /// Objects of either side without an identity: not compared.
    pub unidentified: usize,
    /// Whether both exports were complete (otherwise `added`/`removed` may be an artefact of a partial read).
    pub exact: bool,
}

/// How long `clusters/list` keeps listing a terminated cluster that is not pinned: "all pinned and active
/// clusters, and all clusters terminated within the last 30 days" (https://docs.databricks.com/api/workspace/clusters/list;
/// databricks-sdk-go `service/compute/api.go`, `ClustersAPI.List`).
pub const CLUSTER_LISTING_WINDOW_MS: i64 = 30 * 24 * 3600 * 1000;

/// Whether a cluster, as an earlier export saw it, may since have left `clusters/list` on its own at `now_ms`:
/// it was `TERMINATED` and its `terminated_time` (epoch ms) is at least [`CLUSTER_LISTING_WINDOW_MS`] before
/// `now_ms`. A pinned cluster never leaves the listing; the listing does not say which clusters are pinned, so a
/// cluster that went missing past the window is taken as aged out (deleting it is the other possibility).
pub fn may_have_aged_out(cluster: &Value, now_ms: i64) -> bool {
    let terminated = cluster.get("state").and_then(Value::as_str) == Some("TERMINATED");
    let at = cluster.get("terminated_time").and_then(Value::as_i64);
    terminated && at.is_some_and(|t| now_ms.saturating_sub(t) >= CLUSTER_LISTING_WINDOW_MS)
}

/// The identities of the clusters of an earlier export that [`may_have_aged_out`] by `now_ms`.
pub fn aged_out_clusters(clusters: &[Value], now_ms: i64) -> BTreeSet<String> {
    clusters.iter().filter(|c| may_have_aged_out(c, now_ms)).filter_map(|c| identity::of(ObjectKind::Clusters, c)).collect()
}

impl KindDrift {
    /// Whether nothing was added, removed or changed (unidentified objects and exactness aside).
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }

    /// For one site over time: moves from `removed` to `aged_out` each cluster of `aged` (from
    /// [`aged_out_clusters`]), and the cluster's permissions (`clusters:{name}`), so that the API's 30-day
    /// window never reads as a removal. Other kinds are left as they are.
    pub fn set_aside_aged_out_clusters(&mut self, aged: &BTreeSet<String>) {
        let matches = |id: &str| match self.kind {
            ObjectKind::Clusters => aged.contains(id),
            ObjectKind::Permissions => id.strip_prefix("clusters:").is_some_and(|name| aged.contains(name)),
            _ => false,
        };
        if aged.is_empty() || !self.removed.iter().any(|id| matches(id)) {
            return;
        }
        let (out, kept): (Vec<String>, Vec<String>) = std::mem::take(&mut self.removed).into_iter().partition(|id| matches(id));
        self.removed = kept;
        self.aged_out.extend(out);
        self.aged_out.sort();
    }
}

/// The drift of every compared kind between two exports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drift {
    /// What `base` is, for sentences: `primary`, `previous snapshot`.
    pub base: String,
    /// What `other` is: `secondary`, `this snapshot`.
    pub other: String,
    /// One entry per compared kind, in the caller's order.
    pub kinds: Vec<KindDrift>,
}

impl Drift {
    /// Whether no kind has an addition, removal or change.
    pub fn is_empty(&self) -> bool {
        self.kinds.iter().all(KindDrift::is_empty)
    }

    /// The drift of `kind`, if it was compared.
    pub fn kind(&self, kind: ObjectKind) -> Option<&KindDrift> {
        self.kinds.iter().find(|k| k.kind == kind)
    }

    /// One line comparing two sites: `secondary is missing 3 jobs and 1 catalog that primary has; secondary
    /// has 1 extra job; 2 jobs differ`, or `secondary is in step with primary (21 types compared)`.
    pub fn sentence_between_sites(&self) -> String {
        let (base, other) = (&self.base, &self.other);
        let mut parts = Vec::new();
        let missing = self.phrases(|k| k.removed.len(), None);
        if !missing.is_empty() {
            parts.push(format!("{other} is missing {} that {base} has", join(&missing)));
        }
        let extra = self.phrases(|k| k.added.len(), Some("extra"));
        if !extra.is_empty() {
            parts.push(format!("{other} has {}", join(&extra)));
        }
        let changed = self.phrases(|k| k.changed.len(), None);
        if !changed.is_empty() {
            let one = changed.len() == 1 && self.kinds.iter().map(|k| k.changed.len()).sum::<usize>() == 1;
            parts.push(format!("{} {}", join(&changed), if one { "differs" } else { "differ" }));
        }
        parts.extend(self.unidentified_part());
        let note = self.not_exact_note();
        if parts.is_empty() {
            let n = self.kinds.len();
            let types = if n == 1 { "type" } else { "types" };
            return match note {
                Some(note) => format!("{other} is in step with {base} ({n} {types} compared; {note})"),
                None => format!("{other} is in step with {base} ({n} {types} compared)"),
            };
        }
        let line = parts.join("; ");
        match note {
            Some(note) => format!("{line} ({note})"),
            None => line,
        }
    }

    /// One line comparing a site with its own earlier export: `since the previous snapshot: +2 jobs,
    /// -1 table, 3 jobs changed`, or `no change since the previous snapshot`.
    pub fn sentence_over_time(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        parts.extend(self.phrases(|k| k.added.len(), None).into_iter().map(|p| format!("+{p}")));
        parts.extend(self.phrases(|k| k.removed.len(), None).into_iter().map(|p| format!("-{p}")));
        parts.extend(self.phrases(|k| k.changed.len(), None).into_iter().map(|p| format!("{p} changed")));
        parts.extend(
            // The clusters' permissions went with them: the clusters alone are counted.
            self.phrases(|k| if k.kind == ObjectKind::Clusters { k.aged_out.len() } else { 0 }, None)
                .into_iter()
                .map(|p| format!("{p} aged out of the listing (terminated over 30 days ago, not pinned)")),
        );
        parts.extend(self.unidentified_part());
        let note = self.not_exact_note().map(|n| format!(" ({n})")).unwrap_or_default();
        if parts.is_empty() {
            format!("no change since the {}{note}", self.base)
        } else {
            format!("since the {}: {}{note}", self.base, parts.join(", "))
        }
    }

    /// `count_phrase` of every kind with a non-zero count, in kind order; `adjective` goes between the
    /// number and the noun ("1 extra job").
    fn phrases(&self, count: impl Fn(&KindDrift) -> usize, adjective: Option<&str>) -> Vec<String> {
        self.kinds
            .iter()
            .filter(|k| count(k) > 0)
            .map(|k| {
                let phrase = k.kind.count_phrase(count(k));
                match (adjective, phrase.split_once(' ')) {
                    (Some(adj), Some((n, noun))) => format!("{n} {adj} {noun}"),
                    _ => phrase,
                }
            })
            .collect()
    }

    fn unidentified_part(&self) -> Option<String> {
        let phrases = self.phrases(|k| k.unidentified, None);
        (!phrases.is_empty()).then(|| format!("not compared, no identity: {}", join(&phrases)))
    }

    fn not_exact_note(&self) -> Option<String> {
        let kinds: Vec<&str> = self.kinds.iter().filter(|k| !k.exact).map(|k| k.kind.as_str()).collect();
        (!kinds.is_empty()).then(|| format!("not exact for {}: an export was partial or skipped", kinds.join(", ")))
    }
}

/// "a", "a and b", "a, b and c".
fn join(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// One side's objects of a kind, by identity: the canonical text and content of each copy, sorted by the
/// canonical text.
fn by_identity(kind: ObjectKind, objects: &[Value], unidentified: &mut usize) -> BTreeMap<String, Vec<(String, Value)>> {
    let mut map: BTreeMap<String, Vec<(String, Value)>> = BTreeMap::new();
    for object in objects {
        if identity::is_ephemeral(kind, object) {
            continue;
        }
        let Some(id) = identity::of(kind, object) else {
            *unidentified += 1;
            continue;
        };
        let content = identity::content(kind, object);
        map.entry(id).or_default().push((identity::canonical(&content), content));
    }
    for copies in map.values_mut() {
        copies.sort_by(|a, b| a.0.cmp(&b.0));
    }
    map
}

/// The drift of `kind` from `base` to `other` (see the module rules); `exact` is whether both exports
/// were complete.
pub fn diff(kind: ObjectKind, base: &[Value], other: &[Value], exact: bool) -> KindDrift {
    let mut unidentified = 0;
    let base = by_identity(kind, base, &mut unidentified);
    let other = by_identity(kind, other, &mut unidentified);
    let mut drift = KindDrift {
        kind,
        added: Vec::new(),
        removed: Vec::new(),
        changed: Vec::new(),
        aged_out: Vec::new(),
        unidentified,
        exact,
    };
    let empty = Vec::new();
    let ids: BTreeSet<&String> = base.keys().chain(other.keys()).collect();
    for id in ids {
        let b = base.get(id).unwrap_or(&empty);
        let o = other.get(id).unwrap_or(&empty);
        // Match equal copies first (both sorted by canonical text: a merge).
        let (mut left_b, mut left_o) = (Vec::new(), Vec::new());
        let (mut i, mut j) = (0, 0);
        while i < b.len() && j < o.len() {
            match b[i].0.cmp(&o[j].0) {
                std::cmp::Ordering::Equal => {
                    i += 1;
                    j += 1;
                }
                std::cmp::Ordering::Less => {
                    left_b.push(&b[i].1);
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    left_o.push(&o[j].1);
                    j += 1;
                }
            }
        }
        left_b.extend(b[i..].iter().map(|c| &c.1));
        left_o.extend(o[j..].iter().map(|c| &c.1));
        let pairs = left_b.len().min(left_o.len());
        let mut fields = BTreeSet::new();
        for (x, y) in left_b.iter().zip(&left_o) {
            fields.extend(differing_fields(x, y));
        }
        if pairs > 0 {
            drift.changed.push(Changed { identity: id.clone(), fields: fields.into_iter().collect() });
        }
        drift.removed.extend(std::iter::repeat_n(id.clone(), left_b.len() - pairs));
        drift.added.extend(std::iter::repeat_n(id.clone(), left_o.len() - pairs));
    }
    drift
}

/// Dotted paths, at most two levels deep, where `a` and `b` differ.
fn differing_fields(a: &Value, b: &Value) -> Vec<String> {
    let (Value::Object(a), Value::Object(b)) = (a, b) else {
        return vec!["(whole object)".to_owned()];
    };
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let mut out = Vec::new();
    for key in keys {
        let (x, y) = (a.get(key), b.get(key));
        if x == y {
            continue;
        }
        match (x, y) {
            (Some(Value::Object(x)), Some(Value::Object(y))) => {
                let inner: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
                out.extend(inner.into_iter().filter(|k| x.get(*k) != y.get(*k)).map(|k| format!("{key}.{k}")));
            }
            _ => out.push(key.clone()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(id: i64, name: &str, max_runs: i64, pause: &str) -> Value {
        json!({"job_id": id, "created_time": id * 1000, "settings": {
            "name": name, "max_concurrent_runs": max_runs,
            "schedule": {"quartz_cron_expression": "0 0 2 * * ?", "pause_status": pause},
            "tasks": [{"task_key": "a", "notebook_task": {"notebook_path": "/Repos/x/a"}}]}})
    }

    fn primary() -> Vec<Value> {
        vec![
            job(1, "etl", 1, "UNPAUSED"),
            job(2, "report", 1, "UNPAUSED"),
            job(3, "only-primary", 1, "UNPAUSED"),
            json!({"job_id": 4}),
        ]
    }

    fn secondary() -> Vec<Value> {
        vec![job(91, "report", 2, "PAUSED"), job(92, "etl", 1, "PAUSED"), job(93, "only-secondary", 1, "PAUSED")]
    }

    #[test]
    fn additions_removals_and_changes_are_exact_on_a_hand_built_pair() {
        let d = diff(ObjectKind::Jobs, &primary(), &secondary(), true);
        assert_eq!(d.removed, vec!["only-primary"]);
        assert_eq!(d.added, vec!["only-secondary"]);
        assert_eq!(d.changed, vec![Changed { identity: "report".into(), fields: vec!["settings.max_concurrent_runs".into()] }]);
        assert_eq!(d.unidentified, 1);
        assert!(d.exact);
        // Identical exports (ids, timestamps, pause status aside) have no drift.
        assert!(
            diff(ObjectKind::Jobs, &primary()[..2], &[job(7, "report", 1, "PAUSED"), job(8, "etl", 1, "PAUSED")], true)
                .is_empty()
        );
    }

    #[test]
    fn diff_is_deterministic_whatever_the_listing_order() {
        let a = diff(ObjectKind::Jobs, &primary(), &secondary(), true);
        let mut p = primary();
        p.reverse();
        let mut s = secondary();
        s.rotate_left(1);
        assert_eq!(diff(ObjectKind::Jobs, &p, &s, true), a);
    }

    #[test]
    fn duplicates_compare_as_multisets() {
        let base = vec![job(1, "dup", 1, "UNPAUSED"), job(2, "dup", 1, "UNPAUSED"), job(3, "dup", 5, "UNPAUSED")];
        // One equal copy matched; one differing copy paired (changed); one copy left over (removed).
        let d = diff(ObjectKind::Jobs, &base, &[job(9, "dup", 1, "PAUSED"), job(10, "dup", 3, "PAUSED")], true);
        assert_eq!(d.removed, vec!["dup"]);
        assert!(d.added.is_empty());
        assert_eq!(d.changed.len(), 1);
        assert_eq!(d.changed[0].fields, vec!["settings.max_concurrent_runs"]);
        // Two equal copies against one: one removed, nothing changed.
        let d = diff(ObjectKind::Jobs, &base[..2], &base[..1], true);
        assert_eq!((d.removed.len(), d.changed.len()), (1, 0));
        let d = diff(ObjectKind::Jobs, &base[..1], &base[..2], true);
        assert_eq!(d.added, vec!["dup"]);
    }

    #[test]
    fn fields_stop_at_two_levels_and_include_missing_keys() {
        let a = json!({"owner": "a", "settings": {"tasks": [1], "x": 1}, "only_a": {"deep": {"deeper": 1}}});
        let b = json!({"owner": "b", "settings": {"tasks": [2], "x": 1, "y": {}}});
        assert_eq!(differing_fields(&a, &b), vec!["only_a", "owner", "settings.tasks", "settings.y"]);
    }

    #[test]
    fn ephemeral_clusters_are_left_out() {
        let base = vec![json!({"cluster_name": "job-1-run-1", "cluster_source": "JOB"}), json!({"cluster_name": "shared"})];
        let d = diff(ObjectKind::Clusters, &base, &[json!({"cluster_name": "shared", "cluster_id": "x"})], true);
        assert!(d.is_empty() && d.unidentified == 0);
    }

    #[test]
    fn a_cluster_terminated_past_the_window_is_aged_out_not_removed() {
        let now = 100 * CLUSTER_LISTING_WINDOW_MS;
        let cluster = |name: &str, state: &str, terminated: Option<i64>| {
            let mut c = json!({"cluster_name": name, "state": state, "cluster_source": "UI"});
            if let Some(t) = terminated {
                c["terminated_time"] = json!(t);
            }
            c
        };
        let base = vec![
            cluster("old-adhoc", "TERMINATED", Some(now - CLUSTER_LISTING_WINDOW_MS - 1)),
            cluster("young-adhoc", "TERMINATED", Some(now - CLUSTER_LISTING_WINDOW_MS + 60_000)),
            cluster("running", "RUNNING", Some(now - 2 * CLUSTER_LISTING_WINDOW_MS)),
            cluster("no-time", "TERMINATED", None),
            cluster("kept", "TERMINATED", Some(now - 2 * CLUSTER_LISTING_WINDOW_MS)),
        ];
        let other = vec![cluster("kept", "TERMINATED", Some(now - 2 * CLUSTER_LISTING_WINDOW_MS))];
        let aged = aged_out_clusters(&base, now);
        let mut d = diff(ObjectKind::Clusters, &base, &other, true);
        d.set_aside_aged_out_clusters(&aged);
        assert_eq!(d.aged_out, ["old-adhoc"]);
        assert_eq!(d.removed, ["no-time", "running", "young-adhoc"], "deleted inside the window: removed");
        // Its permissions went with it; a job of the same name did not.
        let acl = |t: &str, n: &str| json!({"object_type": t, "object_name": n, "access_control_list": []});
        let perms = vec![acl("clusters", "old-adhoc"), acl("clusters", "running"), acl("jobs", "old-adhoc")];
        let mut p = diff(ObjectKind::Permissions, &perms, &[], true);
        p.set_aside_aged_out_clusters(&aged);
        assert_eq!(p.aged_out, ["clusters:old-adhoc"]);
        assert_eq!(p.removed, ["clusters:running", "jobs:old-adhoc"]);
        let over_time = Drift { base: "previous snapshot".into(), other: "this snapshot".into(), kinds: vec![d] };
        let line = over_time.sentence_over_time();
        assert!(line.contains("-3 clusters") && line.contains("1 cluster aged out of the listing"), "{line}");
        // Only clusters and their permissions: a job is never aged out.
        let jobs = vec![json!({"job_id": 1, "settings": {"name": "old-adhoc"}})];
        let mut d = diff(ObjectKind::Jobs, &jobs, &[], true);
        d.set_aside_aged_out_clusters(&aged);
        assert!(d.aged_out.is_empty() && d.removed.len() == 1);
    }

    fn kd(kind: ObjectKind, added: usize, removed: usize, changed: usize, exact: bool) -> KindDrift {
        KindDrift {
            kind,
            added: (0..added).map(|i| format!("a{i}")).collect(),
            removed: (0..removed).map(|i| format!("r{i}")).collect(),
            changed: (0..changed).map(|i| Changed { identity: format!("c{i}"), fields: vec![] }).collect(),
            aged_out: vec![],
            unidentified: 0,
            exact,
        }
    }

    #[test]
    fn sentences_between_sites() {
        let sites = |kinds| Drift { base: "primary".into(), other: "secondary".into(), kinds };
        let d = sites(vec![kd(ObjectKind::Jobs, 1, 3, 2, true), kd(ObjectKind::Catalogs, 0, 1, 0, true)]);
        assert!(!d.is_empty());
        assert_eq!(
            d.sentence_between_sites(),
            "secondary is missing 3 jobs and 1 catalog that primary has; secondary has 1 extra job; 2 jobs differ"
        );
        let d = sites(vec![kd(ObjectKind::Tables, 0, 0, 1, false)]);
        assert_eq!(d.sentence_between_sites(), "1 table differs (not exact for tables: an export was partial or skipped)");
        let none = sites(ObjectKind::ALL.into_iter().map(|k| kd(k, 0, 0, 0, true)).collect());
        assert!(none.is_empty());
        assert_eq!(none.sentence_between_sites(), "secondary is in step with primary (21 types compared)");
        let mut partial = none.clone();
        partial.kinds[8].exact = false;
        partial.kinds[0].unidentified = 2;
        assert_eq!(
            partial.sentence_between_sites(),
            "not compared, no identity: 2 jobs (not exact for tables: an export was partial or skipped)"
        );
        partial.kinds[0].unidentified = 0;
        assert_eq!(
            partial.sentence_between_sites(),
            "secondary is in step with primary (21 types compared; not exact for tables: an export was partial or skipped)"
        );
    }

    #[test]
    fn sentences_over_time() {
        let time = |kinds| Drift { base: "previous snapshot".into(), other: "this snapshot".into(), kinds };
        let d = time(vec![kd(ObjectKind::Jobs, 2, 0, 3, true), kd(ObjectKind::Tables, 0, 1, 0, true)]);
        assert_eq!(d.sentence_over_time(), "since the previous snapshot: +2 jobs, -1 table, 3 jobs changed");
        assert_eq!(time(vec![kd(ObjectKind::Jobs, 0, 0, 0, true)]).sentence_over_time(), "no change since the previous snapshot");
    }

    #[test]
    fn drift_round_trips_through_json() {
        let d = Drift {
            base: "primary".into(),
            other: "secondary".into(),
            kinds: vec![diff(ObjectKind::Jobs, &primary(), &secondary(), true)],
        };
        let text = serde_json::to_string(&d).unwrap_or_default();
        assert!(text.contains("\"kind\":\"jobs\""));
        assert_eq!(serde_json::from_str::<Drift>(&text).ok(), Some(d));
    }
}
