//! Which open pages an alarm's `OK` resolves, whatever path delivered it and whatever came between.
//!
//! CloudWatch's state machine does not hand the `OK` the `ALARM` it ends: an alarm whose metrics stop in a
//! regional outage goes `ALARM` -> `INSUFFICIENT_DATA` -> `OK`, and that `OK`'s previous state is the
//! `INSUFFICIENT_DATA`; an `OK` delivered through SNS carries no previous state's time at all; deliveries are
//! unordered, so an `OK` can arrive after the next `ALARM`. So each alarm keeps one small document (by its ARN):
//! the executions whose `ALARM` page is open, each with the time the alarm went into `ALARM`, and the newest
//! `OK` seen. An `OK` at `t` resolves every page opened by an `ALARM` before `t`, and only those; an `ALARM`
//! handled after an `OK` later than itself is already over. Both sides update the document by compare-and-swap,
//! so an `ALARM` and its `OK` handled at once still meet.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// One open page: the execution that sent it and when the alarm went into `ALARM`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenPage {
    /// The execution whose `ALARM` page is open.
    pub execution_id: String,
    /// When the alarm went into `ALARM` (its state change time).
    #[serde(with = "time::serde::rfc3339")]
    pub alarm_time: OffsetDateTime,
}

/// An alarm's open pages and its newest recovery.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlarmPages {
    /// The alarm's ARN.
    pub alarm_arn: String,
    /// The pages open, oldest first.
    pub open: Vec<OpenPage>,
    /// The state change time of the newest `OK` seen.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub last_ok: Option<OffsetDateTime>,
}

impl AlarmPages {
    /// The document of a new alarm.
    pub fn new(alarm_arn: &str) -> AlarmPages {
        AlarmPages { alarm_arn: alarm_arn.to_owned(), ..AlarmPages::default() }
    }

    /// Whether the alarm went `OK` after `alarm_time`: an `ALARM` of that time is already over.
    pub fn recovered_since(&self, alarm_time: OffsetDateTime) -> Option<OffsetDateTime> {
        self.last_ok.filter(|ok| *ok > alarm_time)
    }

    /// Records the page an `ALARM` of `alarm_time` opened for `execution_id`. `Some(ok)` when the alarm already
    /// went `OK` after it: the page is to be resolved at once (and is not kept open).
    pub fn opened(&mut self, execution_id: &str, alarm_time: OffsetDateTime) -> Option<OffsetDateTime> {
        if let Some(ok) = self.recovered_since(alarm_time) {
            return Some(ok);
        }
        if !self.open.iter().any(|p| p.execution_id == execution_id) {
            self.open.push(OpenPage { execution_id: execution_id.to_owned(), alarm_time });
            self.open.sort_by_key(|p| p.alarm_time);
        }
        None
    }

    /// Records an `OK` of `ok_time`: the executions whose pages it resolves (opened by an `ALARM` before it). They
    /// stay open until [`closed`](Self::closed), once each one's `OK` page is recorded in its execution's record:
    /// an `OK` whose handling stops midway (a failing topic, a crash) finds them again when it is delivered again.
    /// A later `ALARM`'s page is not among them; a repeated or older `OK` finds what is left before it.
    pub fn recovered(&mut self, ok_time: OffsetDateTime) -> Vec<String> {
        self.last_ok = self.last_ok.max(Some(ok_time));
        self.open.iter().filter(|p| p.alarm_time < ok_time).map(|p| p.execution_id.clone()).collect()
    }

    /// Forgets `execution_id`'s page (resolved another way: approved and executed, cancelled).
    pub fn closed(&mut self, execution_id: &str) {
        self.open.retain(|p| p.execution_id != execution_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const T1: OffsetDateTime = datetime!(2026-12-07 01:00 UTC);
    const T2: OffsetDateTime = datetime!(2026-12-07 01:05 UTC);
    const T3: OffsetDateTime = datetime!(2026-12-07 01:10 UTC);

    #[test]
    fn an_ok_resolves_the_pages_opened_before_it_whatever_came_between() {
        // ALARM at T1, INSUFFICIENT_DATA, then OK at T3: the OK's previous state is not the ALARM, yet it resolves.
        let mut p = AlarmPages::new("arn:a");
        assert_eq!(p.opened("alarm-1", T1), None);
        assert_eq!(p.recovered(T3), ["alarm-1"]);
        // Until its OK page is recorded, the same OK again (EventBridge and SNS both, or a redelivery after a
        // failure) finds it again; once closed, nothing is left to resolve.
        assert_eq!(p.recovered(T3), ["alarm-1"]);
        p.closed("alarm-1");
        assert!(p.open.is_empty());
        assert!(p.recovered(T3).is_empty());
    }

    #[test]
    fn a_late_ok_resolves_only_the_alarm_before_it() {
        // ALARM T1, OK T2, ALARM T3; the OK handled last: it resolves T1's page, never T3's.
        let mut p = AlarmPages::new("arn:a");
        p.opened("alarm-1", T1);
        p.opened("alarm-3", T3);
        assert_eq!(p.recovered(T2), ["alarm-1"]);
        p.closed("alarm-1");
        assert_eq!(p.open.iter().map(|o| o.execution_id.as_str()).collect::<Vec<_>>(), ["alarm-3"]);
        assert_eq!(p.last_ok, Some(T2));
    }

    #[test]
    fn an_alarm_handled_after_a_later_ok_is_already_over() {
        // The OK at T2 was handled before the ALARM of T1: that ALARM's page resolves at once; one of T3 does not.
        let mut p = AlarmPages::new("arn:a");
        assert!(p.recovered(T2).is_empty());
        assert_eq!(p.opened("alarm-1", T1), Some(T2));
        assert!(p.open.is_empty());
        assert_eq!(p.opened("alarm-3", T3), None);
        // A duplicate delivery of the same ALARM keeps one entry; closing forgets it.
        assert_eq!(p.opened("alarm-3", T3), None);
        assert_eq!(p.open.len(), 1);
        p.closed("alarm-3");
        assert!(p.open.is_empty());
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["last_ok"], "2026-12-07T01:05:00Z");
        assert_eq!(serde_json::from_value::<AlarmPages>(json).unwrap(), p);
    }
}
