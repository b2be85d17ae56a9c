//! [`ParameterStore`] over SSM Parameter Store.

use super::classify;
use crate::error::StoreError;
use crate::ports::{Parameter, ParameterStore};
use std::collections::BTreeMap;

/// The SSM adapter.
#[derive(Debug, Clone)]
pub struct SsmParameterStore {
    client: aws_sdk_ssm::Client,
}

impl SsmParameterStore {
    /// Wraps a client built at cold start.
    pub fn new(client: aws_sdk_ssm::Client) -> Self {
        Self { client }
    }
}

/// `GetParameters` takes at most 10 names per call.
const GET_PARAMETERS_MAX: usize = 10;

impl ParameterStore for SsmParameterStore {
    async fn get_many(&self, names: &[String]) -> Result<BTreeMap<String, Parameter>, StoreError> {
        let mut out = BTreeMap::new();
        for chunk in names.chunks(GET_PARAMETERS_MAX) {
            // No decryption: SecureString values never leave SSM (CONTRACT.md).
            let resp = self
                .client
                .get_parameters()
                .set_names(Some(chunk.to_vec()))
                .with_decryption(false)
                .send()
                .await
                .map_err(|e| classify("SSM", "GetParameters", e))?;
            for p in resp.parameters.unwrap_or_default() {
                let Some(name) = p.name else { continue };
                out.insert(
                    name.clone(),
                    Parameter {
                        name,
                        value: p.value.unwrap_or_default(),
                        kind: p.r#type.map(|t| t.as_str().to_owned()).unwrap_or_default(),
                        version: p.version,
                        last_modified: p.last_modified_date.and_then(|d| d.fmt(aws_smithy_types_format()).ok()),
                    },
                );
            }
        }
        Ok(out)
    }
}

fn aws_smithy_types_format() -> aws_sdk_ssm::primitives::DateTimeFormat {
    aws_sdk_ssm::primitives::DateTimeFormat::DateTime
}
