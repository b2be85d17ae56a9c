//! Validated names: each newtype can only hold a value that passed its `parse`, so code below the
//! configuration never re-checks a bucket name or an SSM prefix.

use std::fmt;

/// Short name of the protected environment (`DR_ENVIRONMENT`), e.g. `prod`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvironmentName(String);

/// SSM path prefix of the DR parameters (`DR_SSM_PREFIX`), e.g. `/dr/prod`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsmPrefix(String);

/// Name of the S3 control bucket (`DR_CONTROL_BUCKET`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketName(String);

/// ARN of an SNS topic (`DR_PAGING_TOPIC_ARN`, `DR_CHAT_TOPIC_ARN`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicArn(String);

macro_rules! string_newtype {
    ($t:ty) => {
        impl $t {
            /// The validated value.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl AsRef<str> for $t {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}
string_newtype!(EnvironmentName);
string_newtype!(SsmPrefix);
string_newtype!(BucketName);
string_newtype!(TopicArn);

impl EnvironmentName {
    /// Lowercase letters, digits and `-`, 1 to 32 characters, starting with a letter.
    pub fn parse(s: &str) -> Result<Self, String> {
        let ok_chars = s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if s.is_empty() || s.len() > 32 || !ok_chars || !s.starts_with(|c: char| c.is_ascii_lowercase()) {
            return Err("must be 1-32 characters of a-z, 0-9 and '-', starting with a letter".into());
        }
        Ok(Self(s.to_owned()))
    }
}

impl SsmPrefix {
    /// Starts with `/`, no trailing `/`, only the characters SSM allows in names.
    pub fn parse(s: &str) -> Result<Self, String> {
        if !s.starts_with('/') {
            return Err("must start with '/'".into());
        }
        if s.len() < 2 || s.ends_with('/') {
            return Err("must name a path below '/' without a trailing '/'".into());
        }
        if s.contains("//") {
            return Err("must not contain an empty path segment ('//')".into());
        }
        if let Some(c) = s.chars().find(|c| !(c.is_ascii_alphanumeric() || "/_.-".contains(*c))) {
            return Err(format!("contains {c:?}; SSM names allow a-z, A-Z, 0-9, '_', '.', '-' and '/'"));
        }
        Ok(Self(s.to_owned()))
    }

    /// The full name of a parameter below the prefix, e.g. `child("sites/primary")`.
    pub fn child(&self, relative: &str) -> String {
        format!("{}/{}", self.0, relative)
    }
}

impl BucketName {
    /// S3's bucket naming rules: 3-63 characters of a-z, 0-9, '.', '-', starting and ending alphanumeric.
    pub fn parse(s: &str) -> Result<Self, String> {
        let ok_chars = s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-');
        let ends_ok = s.starts_with(|c: char| c.is_ascii_alphanumeric()) && s.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !(3..=63).contains(&s.len()) || !ok_chars || !ends_ok {
            return Err("must be 3-63 characters of a-z, 0-9, '.' and '-', starting and ending with a letter or digit".into());
        }
        Ok(Self(s.to_owned()))
    }
}

impl TopicArn {
    /// `arn:<partition>:sns:<region>:<12-digit account>:<topic name>`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let valid = parts.len() == 6
            && parts[0] == "arn"
            && parts[1].starts_with("aws")
            && parts[2] == "sns"
            && !parts[3].is_empty()
            && parts[4].len() == 12
            && parts[4].chars().all(|c| c.is_ascii_digit())
            && !parts[5].is_empty();
        if !valid {
            return Err("is not an SNS topic ARN".into());
        }
        Ok(Self(s.to_owned()))
    }

    /// The region part of the ARN.
    pub fn region(&self) -> &str {
        self.0.split(':').nth(3).unwrap_or_default()
    }
}
