//! Pages an incident owes: decided, recorded in its document, not yet known to be published.
//!
//! A page is decided by the merge (or the quiet-close) that changes the incident, and **recorded as owed in the
//! same compare-and-swap write**, rendered, before anyone publishes it. Publishing comes after; a crash, a lost
//! answer or a failed publish leaves it owed, and whoever writes the incident next (a batch of the incident, the
//! redelivery of the batch, the scheduled check) pays it. So a page is never lost; it may at worst be sent twice
//! (a crash after publishing, before settling), which PagerDuty and Opsgenie fold into the same incident by the
//! stable `AlarmName`.
//!
//! - **Claims.** Whoever pays claims first, in the same write that reads the document: a claim is a lease
//!   (`claimed_until`) that keeps concurrent writers from sending the page too. An expired claim (the payer
//!   crashed) is claimed again.
//! - **Order.** Pages are paid in the order they were decided, and a writer claims only from the head of the
//!   queue up to the first page someone else holds: an `OK` of the last occurrence always goes out before the
//!   `ALARM` of the next one.
//! - **Settling.** Once published, a page is removed by id ([`Outbox::settle`]); a publish that failed is released
//!   ([`Outbox::release`]) for the next writer.
//! - **Bounded** by [`OUTBOX_CAPACITY`]: only a paging topic that has failed for many decisions in a row fills it;
//!   then the oldest page is dropped (the newer ones carry the incident's later state).

use domain::notification::OutgoingMessage;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use time::{Duration, OffsetDateTime};

/// The most pages an incident owes at once.
pub const OUTBOX_CAPACITY: usize = 8;

/// Whether (and why) to page after a merge or a quiet-period evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageDecision {
    /// Nothing to send.
    None,
    /// The incident needs a person: send `ALARM`.
    Opened,
    /// It got worse since the last page: send `ALARM` again, saying why.
    Escalated {
        /// E.g. `highest severity rose from warning to critical (replication_broken)`.
        why: String,
    },
    /// Over: send `OK`.
    Recovered,
}

/// Why a page was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PageKind {
    /// `ALARM`: the incident opened.
    Opened,
    /// `ALARM`: it got worse.
    Escalated,
    /// `OK`: it is over.
    Recovered,
}

impl PageDecision {
    /// The kind of page the decision sends, `None` when it sends none.
    pub fn kind(&self) -> Option<PageKind> {
        match self {
            PageDecision::None => None,
            PageDecision::Opened => Some(PageKind::Opened),
            PageDecision::Escalated { .. } => Some(PageKind::Escalated),
            PageDecision::Recovered => Some(PageKind::Recovered),
        }
    }
}

/// A rendered message as the document keeps it ([`OutgoingMessage`], serializable).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMessage {
    /// SNS subject.
    #[serde(default)]
    pub subject: Option<String>,
    /// JSON body.
    pub body: String,
    /// Message attributes.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

impl From<&OutgoingMessage> for StoredMessage {
    fn from(m: &OutgoingMessage) -> StoredMessage {
        StoredMessage { subject: m.subject.clone(), body: m.body.clone(), attributes: m.attributes.clone() }
    }
}

impl From<&StoredMessage> for OutgoingMessage {
    fn from(m: &StoredMessage) -> OutgoingMessage {
        OutgoingMessage { subject: m.subject.clone(), body: m.body.clone(), attributes: m.attributes.clone() }
    }
}

/// A page decided and not yet known to be published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwedPage {
    /// Unique within the document: `{occurrence}.{n}`, n counting the occurrence's pages.
    pub id: String,
    /// Why.
    pub kind: PageKind,
    /// The occurrence it is about (an `OK` may be owed by the previous occurrence).
    pub occurrence: u32,
    /// When it was decided.
    #[serde(with = "time::serde::rfc3339")]
    pub decided_at: OffsetDateTime,
    /// Held by a payer until then; `None` or past: anyone may claim it.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub claimed_until: Option<OffsetDateTime>,
    /// Publishes that failed.
    #[serde(default)]
    pub failed_attempts: u32,
    /// The last publish error.
    #[serde(default)]
    pub last_error: Option<String>,
    /// The page for the paging topic, rendered when decided.
    pub page: StoredMessage,
    /// Its chat note (best effort: a failed chat note is not owed).
    #[serde(default)]
    pub chat: Option<StoredMessage>,
}

impl OwedPage {
    /// Whether someone holds it at `now`.
    pub fn held(&self, now: OffsetDateTime) -> bool {
        self.claimed_until.is_some_and(|until| until > now)
    }
}

/// The pages an incident owes, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Outbox(pub Vec<OwedPage>);

impl Outbox {
    /// Pages owed.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether nothing is owed.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The pages, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &OwedPage> {
        self.0.iter()
    }

    /// Adds a decided page at the tail; returns the page dropped to stay within [`OUTBOX_CAPACITY`], if any.
    pub fn push(&mut self, page: OwedPage) -> Option<OwedPage> {
        self.0.push(page);
        (self.0.len() > OUTBOX_CAPACITY).then(|| self.0.remove(0))
    }

    /// Claims the pages nobody holds, from the head up to the first page held by someone else, until
    /// `now + lease`; returns them in order (to publish in that order).
    pub fn claim(&mut self, now: OffsetDateTime, lease: Duration) -> Vec<OwedPage> {
        let mut claimed = Vec::new();
        for page in &mut self.0 {
            if page.held(now) {
                break;
            }
            page.claimed_until = Some(now + lease);
            claimed.push(page.clone());
        }
        claimed
    }

    /// Removes the published pages; returns how many were still there.
    pub fn settle(&mut self, ids: &[String]) -> usize {
        let before = self.0.len();
        self.0.retain(|p| !ids.contains(&p.id));
        before - self.0.len()
    }

    /// Frees pages whose publish failed (or was not tried), so that the next writer pays them.
    pub fn release(&mut self, ids: &[String], error: &str) -> usize {
        let mut n = 0;
        for page in self.0.iter_mut().filter(|p| ids.contains(&p.id)) {
            page.claimed_until = None;
            page.failed_attempts = page.failed_attempts.saturating_add(1);
            page.last_error = Some(error.chars().take(300).collect());
            n += 1;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2024-09-05 21:10 UTC);

    fn page(id: &str, kind: PageKind) -> OwedPage {
        OwedPage {
            id: id.into(),
            kind,
            occurrence: 1,
            decided_at: NOW,
            claimed_until: None,
            failed_attempts: 0,
            last_error: None,
            page: StoredMessage { subject: Some("ALARM: x".into()), body: "{}".into(), attributes: BTreeMap::new() },
            chat: None,
        }
    }

    #[test]
    fn claims_in_order_up_to_a_page_held_by_someone_else() {
        let lease = Duration::minutes(2);
        let mut outbox = Outbox::default();
        outbox.push(page("1.1", PageKind::Opened));
        let mine = outbox.claim(NOW, lease);
        assert_eq!(mine.len(), 1);
        outbox.push(page("1.2", PageKind::Recovered));
        outbox.push(page("2.1", PageKind::Opened));
        assert!(outbox.claim(NOW + Duration::minutes(1), lease).is_empty(), "the head is held: nothing after it either");

        // The holder crashed: its lease runs out and the next writer pays everything, in order.
        let next = outbox.claim(NOW + Duration::minutes(3), lease);
        assert_eq!(next.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(), ["1.1", "1.2", "2.1"]);
        assert_eq!(outbox.settle(&["1.1".into(), "1.2".into()]), 2);
        assert_eq!(outbox.release(&["2.1".into()], "throttled"), 1);
        assert_eq!((outbox.len(), outbox.0[0].failed_attempts, outbox.0[0].held(NOW + Duration::minutes(3))), (1, 1, false));
        assert_eq!(outbox.claim(NOW + Duration::minutes(3), lease).len(), 1, "released: claimed again at once");
    }

    #[test]
    fn bounded_and_serialized_in_the_document() {
        let mut outbox = Outbox::default();
        for n in 0..OUTBOX_CAPACITY {
            assert!(outbox.push(page(&format!("1.{n}"), PageKind::Escalated)).is_none());
        }
        assert_eq!(outbox.push(page("1.99", PageKind::Escalated)).map(|p| p.id), Some("1.0".to_owned()));
        assert_eq!(outbox.len(), OUTBOX_CAPACITY);
        let json = serde_json::to_value(&outbox).unwrap();
        assert_eq!(json[0]["kind"], "escalated");
        assert_eq!(serde_json::from_value::<Outbox>(json).unwrap(), outbox);
    }
}
