//! The failover policy document `{prefix}/policy`.

use crate::error::InvalidDocument;
use serde::{Deserialize, Serialize};

/// How a health alarm may lead to a failover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyMode {
    /// Fail over without a human.
    Auto,
    /// Prepare the failover and page with the exact `approve` command; a human decides.
    Approval,
    /// The kill switch: page, never promote automatically.
    NotifyOnly,
}

/// A recurring window in which drills are refused (UTC).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockedWindow {
    /// Days of the week, `mon` .. `sun`; empty means every day.
    #[serde(default)]
    pub days: Vec<Weekday>,
    /// Start, `HH:MM` UTC.
    pub start: HourMinute,
    /// End, `HH:MM` UTC (exclusive); an end before the start wraps past midnight.
    pub end: HourMinute,
}

/// A day of the week.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

/// A time of day, minutes since midnight, written `HH:MM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HourMinute(pub u16);

impl TryFrom<String> for HourMinute {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a time; expected HH:MM (00:00 to 23:59)");
        let (h, m) = s.split_once(':').ok_or_else(bad)?;
        let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        if h > 23 || m > 59 || s.len() != 5 {
            return Err(bad());
        }
        Ok(HourMinute(h * 60 + m))
    }
}

impl From<HourMinute> for String {
    fn from(t: HourMinute) -> String {
        format!("{:02}:{:02}", t.0 / 60, t.0 % 60)
    }
}

/// Guard rails for drills.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrillGuardRails {
    /// Dates (`YYYY-MM-DD`, UTC) on which drills are refused (freezes, launches).
    #[serde(default)]
    pub blocked_dates: Vec<String>,
    /// Recurring windows in which drills are refused (business hours, batch windows).
    #[serde(default)]
    pub blocked_windows: Vec<BlockedWindow>,
}

/// The validated policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// `auto`, `approval` or `notify-only`.
    pub mode: PolicyMode,
    /// Names of the CloudWatch alarms that may trigger a failover.
    #[serde(default)]
    pub failover_alarms: Vec<String>,
    /// Minimum gap between automatic executions.
    #[serde(default = "default_cooldown")]
    pub cooldown_minutes: u32,
    /// Optional drill guard rails.
    #[serde(default)]
    pub drill: DrillGuardRails,
    /// The kinds the scheduled `check` applies sync for by itself (`jobs`, `cluster-policies`, `instance-pools`,
    /// `sql-warehouses`); empty (the default): `check` only reports the plan. Never prunes.
    #[serde(default)]
    pub sync_on_check: Vec<crate::kinds::ObjectKind>,
}

fn default_cooldown() -> u32 {
    60
}

impl Default for Policy {
    /// The policy used when `{prefix}/policy` does not exist: a human approves (CONTRACT.md).
    fn default() -> Self {
        Policy {
            mode: PolicyMode::Approval,
            failover_alarms: Vec::new(),
            cooldown_minutes: default_cooldown(),
            drill: DrillGuardRails::default(),
            sync_on_check: Vec::new(),
        }
    }
}

impl Policy {
    /// Validates the policy document; errors name the field and what is expected.
    ///
    /// Unknown fields are rejected: a typo in `failover_alarms` would otherwise silently disable failover.
    pub fn parse(what: &str, json: &str) -> Result<Policy, InvalidDocument> {
        let de = &mut serde_json::Deserializer::from_str(json);
        let policy: Policy = serde_path_to_error::deserialize(de)
            .map_err(|e| InvalidDocument { what: what.to_owned(), problem: super::describe_path_error(&e) })?;
        for d in &policy.drill.blocked_dates {
            if time::Date::parse(d, time::macros::format_description!("[year]-[month]-[day]")).is_err() {
                return Err(InvalidDocument {
                    what: what.to_owned(),
                    problem: format!("drill.blocked_dates: {d:?} is not a date; expected YYYY-MM-DD"),
                });
            }
        }
        if let Some(name) = policy.failover_alarms.iter().find(|a| a.trim().is_empty()) {
            return Err(InvalidDocument {
                what: what.to_owned(),
                problem: format!("failover_alarms: {name:?} is empty; expected alarm names"),
            });
        }
        if let Some(k) = policy.sync_on_check.iter().find(|k| !crate::kinds::SYNCED.contains(k)) {
            let synced: Vec<&str> = crate::kinds::SYNCED.iter().map(|k| k.as_str()).collect();
            return Err(InvalidDocument {
                what: what.to_owned(),
                problem: format!("sync_on_check: {k} is not synced; expected some of {}", synced.join(", ")),
            });
        }
        Ok(policy)
    }
}

impl Policy {
    /// Why a drill may not run at `now` (a blocked date or window of the guard rails), if it may not.
    pub fn drill_blocked(&self, now: time::OffsetDateTime) -> Option<String> {
        let now = now.to_offset(time::UtcOffset::UTC);
        let date = format!("{:04}-{:02}-{:02}", now.year(), u8::from(now.month()), now.day());
        if self.drill.blocked_dates.contains(&date) {
            return Some(format!("{date} is a blocked date for drills (policy drill.blocked_dates)"));
        }
        let minute = u16::from(now.hour()) * 60 + u16::from(now.minute());
        let today = Weekday::from_time(now.weekday());
        let yesterday = Weekday::from_time(now.weekday().previous());
        for (i, w) in self.drill.blocked_windows.iter().enumerate() {
            let on = |d: Weekday| w.days.is_empty() || w.days.contains(&d);
            let inside = if w.start <= w.end {
                on(today) && minute >= w.start.0 && minute < w.end.0
            } else {
                // Wraps past midnight: the part after midnight belongs to the window that started yesterday.
                (on(today) && minute >= w.start.0) || (on(yesterday) && minute < w.end.0)
            };
            if inside {
                return Some(format!(
                    "{:02}:{:02} UTC is inside blocked window {i} ({}-{} UTC) of policy drill.blocked_windows",
                    minute / 60,
                    minute % 60,
                    String::from(w.start),
                    String::from(w.end)
                ));
            }
        }
        None
    }
}

impl Weekday {
    fn from_time(d: time::Weekday) -> Weekday {
        match d {
            time::Weekday::Monday => Weekday::Mon,
            time::Weekday::Tuesday => Weekday::Tue,
            time::Weekday::Wednesday => Weekday::Wed,
            time::Weekday::Thursday => Weekday::Thu,
            time::Weekday::Friday => Weekday::Fri,
            time::Weekday::Saturday => Weekday::Sat,
            time::Weekday::Sunday => Weekday::Sun,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn drills_respect_blocked_dates_and_windows() {
        let p = Policy::parse(
            "p",
            r#"{"mode":"auto","drill":{"blocked_dates":["2026-12-24"],
                "blocked_windows":[{"days":["wed"],"start":"09:00","end":"17:00"},{"start":"23:00","end":"01:00"}]}}"#,
        )
        .unwrap();
        // 2026-11-25 is a Wednesday.
        assert!(p.drill_blocked(datetime!(2026-11-25 10:00 UTC)).unwrap().contains("window 0"));
        assert!(p.drill_blocked(datetime!(2026-11-25 17:00 UTC)).is_none());
        assert!(p.drill_blocked(datetime!(2026-11-26 10:00 UTC)).is_none());
        assert!(p.drill_blocked(datetime!(2026-12-24 03:00 UTC)).unwrap().contains("blocked date"));
        assert!(p.drill_blocked(datetime!(2026-11-27 23:30 UTC)).unwrap().contains("window 1"));
        assert!(p.drill_blocked(datetime!(2026-11-28 00:30 UTC)).unwrap().contains("window 1"));
        assert!(p.drill_blocked(datetime!(2026-11-28 01:00 UTC)).is_none());
    }

    #[test]
    fn parses_a_full_policy() {
        let p = Policy::parse(
            "p",
            r#"{"mode":"auto","failover_alarms":["a"],"cooldown_minutes":30,
                "drill":{"blocked_dates":["2026-12-24"],"blocked_windows":[{"days":["mon"],"start":"09:00","end":"17:30"}]}}"#,
        )
        .unwrap();
        assert_eq!(p.mode, PolicyMode::Auto);
        assert_eq!(p.drill.blocked_windows[0].end, HourMinute(17 * 60 + 30));
    }

    #[test]
    fn sync_on_check_names_synced_kinds_only() {
        let p = Policy::parse("p", r#"{"mode":"auto","sync_on_check":["jobs","sql-warehouses"]}"#).unwrap();
        assert_eq!(p.sync_on_check, [crate::kinds::ObjectKind::Jobs, crate::kinds::ObjectKind::SqlWarehouses]);
        let e = Policy::parse("p", r#"{"mode":"auto","sync_on_check":["tables"]}"#).unwrap_err().to_string();
        assert!(e.contains("sync_on_check") && e.contains("not synced"), "{e}");
        assert!(Policy::parse("p", r#"{"mode":"auto","sync_on_check":["job"]}"#).is_err());
        assert!(Policy::default().sync_on_check.is_empty());
    }

    #[test]
    fn defaults_cooldown_and_alarms() {
        let p = Policy::parse("p", r#"{"mode":"notify-only"}"#).unwrap();
        assert_eq!(p.cooldown_minutes, 60);
        assert!(p.failover_alarms.is_empty());
    }

    #[test]
    fn the_missing_policy_means_approval() {
        assert_eq!(Policy::default().mode, PolicyMode::Approval);
    }

    #[test]
    fn errors_name_the_field() {
        for (doc, needle) in [
            (r#"{"mode":"yolo"}"#, "mode"),
            (r#"{"mode":"auto","failover_alarm":["a"]}"#, "failover_alarm"),
            (r#"{"mode":"auto","cooldown_minutes":"ten"}"#, "cooldown_minutes"),
            (
                r#"{"mode":"auto","drill":{"blocked_windows":[{"start":"25:00","end":"01:00"}]}}"#,
                "drill.blocked_windows[0].start",
            ),
            (r#"{"mode":"auto","drill":{"blocked_dates":["tomorrow"]}}"#, "blocked_dates"),
            (r#"{"failover_alarms":[]}"#, "mode"),
        ] {
            let e = Policy::parse("SSM parameter /dr/x/policy", doc).unwrap_err().to_string();
            assert!(e.contains(needle), "{doc}: {e}");
        }
    }
}
