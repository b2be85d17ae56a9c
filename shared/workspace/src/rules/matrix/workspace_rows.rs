//! The rows of workspace objects: both sites' exports of the row's kinds compared (complete, fresh, the drift
//! between the sites), and the notebooks and files outside Repos.

use super::{MatrixEvidence, Protection, SiteExport, ago, join, span};
use crate::rules::drift::Drift;
use crate::rules::{ExportStatus, ObjectKind};
use domain::site::SiteName;

/// Why an export of a kind is not complete, in words.
pub(super) fn incomplete(site: SiteName, kind: ObjectKind, status: Option<&(ExportStatus, usize)>) -> Option<String> {
    match status {
        Some((ExportStatus::Complete, _)) => None,
        Some((ExportStatus::Partial { error }, n)) => Some(format!("{site} {kind} export partial after {n} ({error})")),
        Some((ExportStatus::Skipped { reason }, _)) => Some(format!("{site} {kind} not exported ({reason})")),
        None => Some(format!("{site} {kind} not in the export")),
    }
}

/// The rule of control-plane rows backed by exported kinds.
pub(super) fn kinds_rule(ev: &MatrixEvidence, kinds: &[ObjectKind]) -> (Protection, String) {
    if !ev.secondary_configured {
        return (Protection::AtRisk, "no secondary workspace configured".to_owned());
    }
    let (Some(primary), Some(secondary)) = (ev.exports.get(&SiteName::Primary), ev.exports.get(&SiteName::Secondary)) else {
        let missing: Vec<&str> =
            SiteName::ALL.into_iter().filter(|s| !ev.exports.contains_key(s)).map(SiteName::as_str).collect();
        return (Protection::Unknown, format!("no export of {} yet", missing.join(" or ")));
    };
    let Seen { mut problems, counts, compared, neither } = seen_in_exports(kinds, primary, secondary);
    if compared.is_empty() {
        return (Protection::Unknown, neither.join("; "));
    }
    let oldest = primary.exported_at.min(secondary.exported_at);
    let mut text = format!("{}, exported {}", join(&counts), ago(ev.now - oldest));
    for (site, export) in [(SiteName::Primary, primary), (SiteName::Secondary, secondary)] {
        let age = ev.now - export.exported_at;
        if age > ev.max_export_age {
            problems.push(format!("{site} export stale: {} old (limit {})", span(age), span(ev.max_export_age)));
        }
    }
    let Some(drift) = &ev.site_drift else {
        text.push_str("; no drift between the sites computed yet");
        problems.extend(neither);
        return if problems.is_empty() {
            (Protection::Unknown, text)
        } else {
            (Protection::AtRisk, format!("{text}; {}", problems.join("; ")))
        };
    };
    let missing_none = describe_drift(drift, &compared, &mut text, &mut problems);
    let status = if missing_none && problems.is_empty() { Protection::Protected } else { Protection::AtRisk };
    problems.extend(neither);
    if problems.is_empty() { (status, text) } else { (status, format!("{text}; {}", problems.join("; "))) }
}

/// What both sites' exports show of a row's kinds.
struct Seen {
    /// Incomplete exports, by site and kind.
    problems: Vec<String>,
    /// Each compared kind's count in the primary (and the secondary's).
    counts: Vec<String>,
    /// The kinds exported from at least one site.
    compared: Vec<ObjectKind>,
    /// The kinds exported from neither site, and why.
    neither: Vec<String>,
}

/// Sorts `kinds` into compared (exported from at least one site, each incomplete export a problem) and exported
/// from neither (a feature not enabled, or no access: nothing seen, nothing compared).
fn seen_in_exports(kinds: &[ObjectKind], primary: &SiteExport, secondary: &SiteExport) -> Seen {
    let mut seen = Seen { problems: Vec::new(), counts: Vec::new(), compared: Vec::new(), neither: Vec::new() };
    for &kind in kinds {
        let (p, s) = (primary.kinds.get(&kind), secondary.kinds.get(&kind));
        let complete = |x: Option<&(ExportStatus, usize)>| x.is_some_and(|(st, _)| st.is_complete());
        let exported =
            |x: Option<&(ExportStatus, usize)>| matches!(x, Some((ExportStatus::Complete | ExportStatus::Partial { .. }, _)));
        if !exported(p) && !exported(s) {
            let why = match p {
                Some((ExportStatus::Skipped { reason }, _)) => reason.clone(),
                _ => "not in the export".to_owned(),
            };
            seen.neither.push(format!("{kind} not exported from either site ({why})"));
            continue;
        }
        seen.compared.push(kind);
        let count = |x: Option<&(ExportStatus, usize)>| x.map_or(0, |(_, n)| *n);
        seen.counts.push(format!("{} (secondary {})", kind.count_phrase(count(p)), count(s)));
        for (site, status) in [(SiteName::Primary, p), (SiteName::Secondary, s)] {
            if !complete(status) {
                seen.problems.extend(incomplete(site, kind, status));
            }
        }
    }
    seen
}

/// Appends what the drift between the sites says of the `compared` kinds to `text` (what the secondary misses,
/// what differs) and to `problems` (kinds without a drift); answers whether the secondary misses nothing.
fn describe_drift(drift: &Drift, compared: &[ObjectKind], text: &mut String, problems: &mut Vec<String>) -> bool {
    let missing: Vec<String> = compared
        .iter()
        .filter_map(|k| drift.kind(*k))
        .filter(|k| !k.removed.is_empty())
        .map(|k| k.kind.count_phrase(k.removed.len()))
        .collect();
    let differ: Vec<String> = compared
        .iter()
        .filter_map(|k| drift.kind(*k))
        .filter(|k| !k.changed.is_empty())
        .map(|k| k.kind.count_phrase(k.changed.len()))
        .collect();
    let not_compared: Vec<&str> = compared.iter().filter(|k| drift.kind(**k).is_none()).map(|k| k.as_str()).collect();
    if missing.is_empty() {
        text.push_str("; secondary misses nothing");
    } else {
        text.push_str(&format!("; secondary missing {}", join(&missing)));
    }
    if !differ.is_empty() {
        let one = differ.len() == 1 && differ[0].starts_with("1 ");
        text.push_str(&format!("; {} {}", join(&differ), if one { "differs" } else { "differ" }));
    }
    if !not_compared.is_empty() {
        problems.push(format!("drift not computed for {}", not_compared.join(", ")));
    }
    missing.is_empty()
}

/// Notebook Source Code / Workspace Files: the kinds rule on workspace objects and repos, then at risk for
/// anything outside Repos in the primary.
pub(super) fn outside_repos(
    ev: &MatrixEvidence,
    count: fn(&SiteExport) -> usize,
    noun: &str,
    advice: &str,
) -> (Protection, String) {
    let (status, text) = kinds_rule(ev, &[ObjectKind::WorkspaceObjects, ObjectKind::Repos]);
    let Some(primary) = ev.exports.get(&SiteName::Primary) else {
        return (status, text);
    };
    match count(primary) {
        0 => (status, format!("no {noun} outside Repos; {text}")),
        n => {
            // Outside Git is at risk whatever the exports say: nothing else keeps their source.
            (Protection::AtRisk, format!("{n} {noun}{} outside Repos: {advice}; {text}", if n == 1 { "" } else { "s" }))
        }
    }
}
