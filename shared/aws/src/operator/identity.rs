//! Who is asking: the AWS caller identity (STS `GetCallerIdentity`, which every principal may call: it needs
//! no permission and cannot be denied by a policy), its ARN shortened for people.

use crate::AwsClients;
use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};

/// The principal the operator's credentials belong to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerIdentity {
    /// Its ARN, e.g. `arn:aws:sts::123456789012:assumed-role/DrOperator/alice@example.com`.
    pub arn: String,
    /// Its account.
    pub account: String,
}

impl CallerIdentity {
    /// The ARN shortened for people ([`for_people`]): what `dr` records as `requested_by`.
    pub fn for_people(&self) -> String {
        for_people(&self.arn)
    }
}

/// Why the caller identity is not known.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// STS answered with an error, or could not be reached, or there are no credentials.
    #[error("STS GetCallerIdentity failed: {0}")]
    Failed(String),
    /// STS answered without an ARN.
    #[error("STS GetCallerIdentity answered without an ARN")]
    NoArn,
}

/// Asks STS who the credentials of `clients` belong to (one call, with the clients' timeouts and retries).
pub async fn caller_identity(clients: &AwsClients) -> Result<CallerIdentity, IdentityError> {
    let client = aws_sdk_sts::Client::new(&clients.sdk);
    let out = client.get_caller_identity().send().await.map_err(|e| IdentityError::Failed(describe(&e)))?;
    let arn = out.arn().filter(|a| !a.is_empty()).ok_or(IdentityError::NoArn)?.to_owned();
    Ok(CallerIdentity { arn, account: out.account().unwrap_or_default().to_owned() })
}

/// An SDK error for people: the service's code and message when it answered, else the whole cause chain (no
/// credentials, no region, no connection).
fn describe<E, R>(e: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match (e, e.code(), e.message()) {
        (SdkError::ServiceError(_), Some(code), Some(text)) => format!("{code}: {text}"),
        _ => dr_ports::error::error_chain(e),
    }
}

/// An ARN shortened for people, keeping who and in what capacity:
///
/// | ARN | shortened |
/// |---|---|
/// | `arn:aws:sts::123456789012:assumed-role/DrOperator/alice@example.com` | `alice@example.com (DrOperator)` |
/// | `arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_Admin_0123456789abcdef/alice` | `alice (Admin)` (IAM Identity Center: the permission set) |
/// | `arn:aws:iam::123456789012:user/ops/bob` | `bob (IAM user)` |
/// | `arn:aws:sts::123456789012:federated-user/carol` | `carol (federated user)` |
/// | `arn:aws:iam::123456789012:root` | `root of account 123456789012` |
///
/// Anything else is kept whole. The account is left out (every command of a DR environment runs in its one
/// account); the full ARN is in `dr --verbose`'s log.
pub fn for_people(arn: &str) -> String {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [_, _, service, _, account, resource] = parts[..] else { return arn.to_owned() };
    let segments: Vec<&str> = resource.split('/').collect();
    match (service, &segments[..]) {
        ("sts", ["assumed-role", role, session]) if !session.is_empty() => format!("{session} ({})", role_for_people(role)),
        // moto answers for credentials it did not issue with an `sts` user ARN; AWS's IAM users are `iam`.
        ("iam" | "sts", ["user", .., name]) if !name.is_empty() => format!("{name} (IAM user)"),
        ("sts", ["federated-user", name]) if !name.is_empty() => format!("{name} (federated user)"),
        ("iam", ["root"]) => format!("root of account {account}"),
        _ => arn.to_owned(),
    }
}

/// A role's name for people: IAM Identity Center's `AWSReservedSSO_<permission set>_<16 hex>` is its permission set.
fn role_for_people(role: &str) -> &str {
    let Some(rest) = role.strip_prefix("AWSReservedSSO_") else { return role };
    match rest.rsplit_once('_') {
        Some((set, suffix)) if !set.is_empty() && suffix.len() == 16 && suffix.chars().all(|c| c.is_ascii_hexdigit()) => set,
        _ => role,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns_are_shortened_to_who_and_in_what_capacity() {
        for (arn, expected) in [
            ("arn:aws:sts::123456789012:assumed-role/DrOperator/alice@example.com", "alice@example.com (DrOperator)"),
            (
                "arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_AdministratorAccess_0123456789abcdef/alice@example.com",
                "alice@example.com (AdministratorAccess)",
            ),
            ("arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_odd/alice", "alice (AWSReservedSSO_odd)"),
            ("arn:aws:iam::123456789012:user/bob", "bob (IAM user)"),
            ("arn:aws:iam::123456789012:user/ops/dr/bob", "bob (IAM user)"),
            ("arn:aws-us-gov:sts::123456789012:federated-user/carol", "carol (federated user)"),
            ("arn:aws:iam::123456789012:root", "root of account 123456789012"),
            ("arn:aws:sts::123456789012:user/moto", "moto (IAM user)"),
            ("arn:aws:s3:::bucket/key", "arn:aws:s3:::bucket/key"),
            ("arn:aws:sts::123456789012:assumed-role/Role/", "arn:aws:sts::123456789012:assumed-role/Role/"),
            ("not an arn", "not an arn"),
        ] {
            assert_eq!(for_people(arn), expected, "{arn}");
        }
    }
}
