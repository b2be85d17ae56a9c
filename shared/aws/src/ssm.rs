//! [`ParameterStore`] over SSM Parameter Store.

use super::classify;
use aws_sdk_ssm::primitives::{DateTime, DateTimeFormat};
use aws_sdk_ssm::types::ParameterType;
use dr_ports::error::StoreError;
use dr_ports::{ApiError, Parameter, ParameterStore, ParameterVersion, SecretStore};
use futures_util::future::BoxFuture;
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

fn rfc3339(d: Option<DateTime>) -> Option<String> {
    d.and_then(|d| d.fmt(DateTimeFormat::DateTime).ok())
}

fn convert(p: aws_sdk_ssm::types::Parameter) -> Option<Parameter> {
    Some(Parameter {
        name: p.name?,
        value: p.value.unwrap_or_default(),
        kind: p.r#type.map(|t| t.as_str().to_owned()).unwrap_or_default(),
        version: p.version,
        last_modified: rfc3339(p.last_modified_date),
    })
}

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
            out.extend(resp.parameters.unwrap_or_default().into_iter().filter_map(convert).map(|p| (p.name.clone(), p)));
        }
        Ok(out)
    }

    async fn get_tree(&self, path: &str) -> Result<Vec<Parameter>, StoreError> {
        let mut out = Vec::new();
        let mut pages =
            self.client.get_parameters_by_path().path(path).recursive(true).with_decryption(false).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| classify("SSM", "GetParametersByPath", e))?;
            out.extend(page.parameters.unwrap_or_default().into_iter().filter_map(convert));
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn get_one(&self, selector: &str) -> Result<Option<Parameter>, StoreError> {
        match self.client.get_parameter().name(selector).with_decryption(false).send().await {
            Ok(resp) => Ok(resp.parameter.and_then(convert)),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_parameter_not_found() || s.is_parameter_version_not_found()) => {
                Ok(None)
            }
            Err(e) => Err(classify("SSM", "GetParameter", e)),
        }
    }

    async fn put(&self, name: &str, value: &str, overwrite: bool) -> Result<i64, StoreError> {
        // Not retried by the SDK: PutParameter is not idempotent (a retry after a lost answer writes a second
        // version). The engine retries it itself, reading back in between.
        let once = aws_sdk_ssm::config::Builder::default().retry_config(aws_config::retry::RetryConfig::disabled());
        let request = self.client.put_parameter().name(name).value(value).r#type(ParameterType::String).overwrite(overwrite);
        match request.customize().config_override(once).send().await {
            Ok(resp) => Ok(resp.version),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_parameter_already_exists()) => {
                Err(StoreError::Conflict { service: "SSM", operation: "PutParameter", target: name.to_owned() })
            }
            Err(e) => Err(classify("SSM", "PutParameter", e)),
        }
    }

    async fn label(&self, name: &str, version: i64, label: &str) -> Result<(), StoreError> {
        let resp = self
            .client
            .label_parameter_version()
            .name(name)
            .parameter_version(version)
            .labels(label)
            .send()
            .await
            .map_err(|e| classify("SSM", "LabelParameterVersion", e))?;
        match resp.invalid_labels {
            Some(bad) if !bad.is_empty() => Err(StoreError::Refused {
                service: "SSM",
                operation: "LabelParameterVersion",
                message: format!("label(s) {bad:?} rejected for {name} version {version}"),
            }),
            _ => Ok(()),
        }
    }

    async fn unlabel(&self, name: &str, version: i64, labels: &[String]) -> Result<(), StoreError> {
        if labels.is_empty() {
            return Ok(());
        }
        self.client
            .unlabel_parameter_version()
            .name(name)
            .parameter_version(version)
            .set_labels(Some(labels.to_vec()))
            .send()
            .await
            .map_err(|e| classify("SSM", "UnlabelParameterVersion", e))?;
        Ok(())
    }

    async fn history(&self, name: &str) -> Result<Vec<ParameterVersion>, StoreError> {
        let mut out = Vec::new();
        let mut pages = self.client.get_parameter_history().name(name).with_decryption(false).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = match page {
                Ok(p) => p,
                Err(e) if e.as_service_error().is_some_and(|s| s.is_parameter_not_found()) => return Ok(Vec::new()),
                Err(e) => return Err(classify("SSM", "GetParameterHistory", e)),
            };
            out.extend(page.parameters.unwrap_or_default().into_iter().map(|h| ParameterVersion {
                version: h.version,
                value: h.value.unwrap_or_default(),
                labels: h.labels.unwrap_or_default(),
                last_modified: rfc3339(h.last_modified_date),
            }));
        }
        out.sort_by_key(|v| v.version);
        Ok(out)
    }

    async fn delete(&self, names: &[String]) -> Result<(), StoreError> {
        // DeleteParameters takes at most 10 names and reports absent ones without failing.
        for chunk in names.chunks(GET_PARAMETERS_MAX) {
            self.client
                .delete_parameters()
                .set_names(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| classify("SSM", "DeleteParameters", e))?;
        }
        Ok(())
    }
}

/// The Databricks connector's secrets: `GetParameter WithDecryption=true` of a SecureString parameter.
#[derive(Clone)]
pub struct SsmSecrets {
    client: aws_sdk_ssm::Client,
}

impl SsmSecrets {
    /// Secrets read with `client` (the role needs `ssm:GetParameter` and `kms:Decrypt` on them).
    pub fn new(client: aws_sdk_ssm::Client) -> Self {
        SsmSecrets { client }
    }
}

impl std::fmt::Debug for SsmSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SSM")
    }
}

impl SecretStore for SsmSecrets {
    fn read_secret<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<String, ApiError>> {
        Box::pin(async move {
            let resp = self.client.get_parameter().name(name).with_decryption(true).send().await.map_err(|e| {
                let why = if e.as_service_error().is_some_and(|s| s.is_parameter_not_found()) {
                    "it does not exist".to_owned()
                } else {
                    use aws_sdk_ssm::error::ProvideErrorMetadata;
                    match e.code() {
                        Some(code) if code.contains("AccessDenied") => {
                            format!("access denied ({code}): the role needs ssm:GetParameter and kms:Decrypt on it")
                        }
                        _ => dr_ports::error::error_chain(&e),
                    }
                };
                ApiError::Auth(format!("cannot read SecureString parameter {name}: {why}"))
            })?;
            let Some(parameter) = resp.parameter else {
                return Err(ApiError::Auth(format!("cannot read SecureString parameter {name}: SSM answered no parameter")));
            };
            if parameter.r#type.as_ref().is_some_and(|t| t.as_str() != "SecureString") {
                tracing::warn!(parameter = name, "the Databricks secret is not stored as a SecureString");
            }
            Ok(parameter.value.unwrap_or_default())
        })
    }
}
