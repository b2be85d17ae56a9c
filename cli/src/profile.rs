//! Configuration: the function's own variables, from the environment or from a profile file per DR
//! environment (`--env prod` reads `prod.env` in `$DR_PROFILE_DIR`, default `~/.config/dr`).
//!
//! A profile file holds the same variables, one `NAME=value` a line (`#` comments, an optional `export `,
//! optional quotes), so that it can also be `source`d by a shell:
//!
//! ```text
//! # ~/.config/dr/prod.env
//! AWS_REGION=us-west-2
//! AWS_PROFILE=prod-breakglass
//! DR_ENVIRONMENT=prod
//! DR_SSM_PREFIX=/dr/prod
//! DR_CONTROL_BUCKET=dr-control-prod-123456789012
//! DR_PAGING_TOPIC_ARN=arn:aws:sns:us-west-2:123456789012:dr-prod-paging
//! ```
//!
//! A variable the file sets overrides the environment's (`--env` is explicit, an old `export` is not); one it
//! does not set is taken from the environment. Credentials never go in the file (use `AWS_PROFILE`), and an
//! unknown name is an error: a typo must not silently fall back to another environment's value.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The names a profile file may set.
pub const KNOWN: &[&str] = &[
    "AWS_REGION",
    "AWS_PROFILE",
    "AWS_ENDPOINT_URL",
    "DR_ENVIRONMENT",
    "DR_SSM_PREFIX",
    "DR_CONTROL_BUCKET",
    "DR_PAGING_TOPIC_ARN",
    "DR_CHAT_TOPIC_ARN",
    "DR_MANUAL_TRIGGER_FUNCTION",
    "DR_LOCK_LEASE_SECONDS",
    "DR_APPROVAL_WINDOW_MINUTES",
    "DR_REPLICATION_QUIET_MINUTES",
    "DR_REQUESTED_BY",
];

/// Names refused in a profile file: secrets belong in the AWS credential chain, not in a file beside it.
const SECRETS: &[&str] = &["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"];

/// The configuration's source: a profile file's variables over the process environment.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// The file's variables (empty without `--env`).
    file: BTreeMap<String, String>,
    /// The file, for messages.
    pub path: Option<PathBuf>,
}

impl Settings {
    /// Loads the profile named by `--env` (a name or a path), or none.
    pub fn load(profile: Option<&str>) -> Result<Settings, String> {
        let Some(profile) = profile else { return Ok(Settings::default()) };
        let path = resolve(profile, std::env::var_os("DR_PROFILE_DIR").map(PathBuf::from), home());
        let text = std::fs::read_to_string(&path).map_err(|e| {
            format!(
                "cannot read the profile file {} ({e}); create it with the function's variables (see `dr --help`)",
                path.display()
            )
        })?;
        let file = parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Settings { file, path: Some(path) })
    }

    /// A variable: the file's value, else the environment's; empty counts as unset.
    pub fn get(&self, name: &str) -> Option<String> {
        self.file.get(name).cloned().or_else(|| std::env::var(name).ok()).filter(|v| !v.trim().is_empty())
    }

    /// The SDK's own variables over the environment's: none unless the file sets one of them (the clients are
    /// then exactly the functions', `aws::AwsClients::from_env`); when it does, all three as [`Settings::get`]
    /// reads them (the file's, else the environment's).
    pub fn sdk_overrides(&self) -> aws::SdkOverrides {
        if !["AWS_REGION", "AWS_PROFILE", "AWS_ENDPOINT_URL"].iter().any(|n| self.file.contains_key(*n)) {
            return aws::SdkOverrides::default();
        }
        aws::SdkOverrides {
            profile: self.get("AWS_PROFILE"),
            region: self.get("AWS_REGION"),
            endpoint_url: self.get("AWS_ENDPOINT_URL"),
        }
    }
}

fn home() -> Option<PathBuf> {
    std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .map(|c| c.join("dr"))
}

/// `--env` as a path: itself when it looks like one (a separator or `.env`), else `NAME.env` in the directory.
fn resolve(profile: &str, dir: Option<PathBuf>, default_dir: Option<PathBuf>) -> PathBuf {
    if profile.contains(std::path::MAIN_SEPARATOR) || profile.contains('/') || profile.ends_with(".env") {
        return Path::new(profile).to_path_buf();
    }
    dir.or(default_dir).unwrap_or_else(|| PathBuf::from(".")).join(format!("{profile}.env"))
}

/// Parses a profile file: `NAME=value` lines.
pub fn parse(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
        let Some((name, value)) = line.split_once('=') else {
            return Err(format!("line {}: expected NAME=value, found {line:?}", n + 1));
        };
        let name = name.trim();
        if SECRETS.contains(&name) {
            return Err(format!(
                "line {}: {name} is a credential; keep credentials out of profile files (set AWS_PROFILE to a profile of ~/.aws/config instead)",
                n + 1
            ));
        }
        if !KNOWN.contains(&name) {
            return Err(format!("line {}: unknown variable {name:?}; expected one of: {}", n + 1, KNOWN.join(", ")));
        }
        let value = value.trim();
        // Quoted: up to the closing quote; unquoted: up to ` #`; what follows may only be a comment, as a shell reads it.
        let (value, rest) = match value.chars().next() {
            Some(q @ ('"' | '\'')) => match value[1..].split_once(q) {
                Some((inside, rest)) => (inside, rest.trim()),
                None => return Err(format!("line {}: {name}: the quote {q} is not closed", n + 1)),
            },
            _ => (value.split_once(" #").map_or(value, |(v, _)| v.trim_end()), ""),
        };
        if !rest.is_empty() && !rest.starts_with('#') {
            return Err(format!("line {}: {name}: unexpected {rest:?} after the value; quote values with spaces", n + 1));
        }
        out.insert(name.to_owned(), value.to_owned());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_variables_comments_exports_and_quotes() {
        let m = parse(
            "# prod\nexport AWS_REGION=us-west-2\nDR_ENVIRONMENT = \"prod\"\n\nDR_SSM_PREFIX='/dr/prod'\n\
             AWS_PROFILE=oncall   # in ~/.aws/config\nDR_REQUESTED_BY=\"me # really\"\n",
        )
        .unwrap();
        assert_eq!(m["AWS_PROFILE"], "oncall");
        assert_eq!(m["DR_REQUESTED_BY"], "me # really");
        assert_eq!(m["AWS_REGION"], "us-west-2");
        assert_eq!(m["DR_ENVIRONMENT"], "prod");
        assert_eq!(m["DR_SSM_PREFIX"], "/dr/prod");
        let m = parse("DR_REQUESTED_BY=\"dr-team@example.com\"   # recorded\n").unwrap();
        assert_eq!(m["DR_REQUESTED_BY"], "dr-team@example.com");
        assert!(parse("DR_REQUESTED_BY=\"open\n").unwrap_err().contains("not closed"));
        assert!(parse("DR_REQUESTED_BY=\"a\" b\n").unwrap_err().contains("unexpected"));
    }

    #[test]
    fn refuses_typos_secrets_and_garbage_naming_the_line() {
        let e = parse("AWS_REGION=us-west-2\nDR_CONTROL_BUCKT=x\n").unwrap_err();
        assert!(e.contains("line 2") && e.contains("DR_CONTROL_BUCKT") && e.contains("DR_CONTROL_BUCKET"), "{e}");
        let e = parse("AWS_SECRET_ACCESS_KEY=abc\n").unwrap_err();
        assert!(e.contains("credential") && e.contains("AWS_PROFILE"), "{e}");
        assert!(parse("just words\n").unwrap_err().contains("NAME=value"));
    }

    #[test]
    fn a_name_is_looked_up_in_the_profile_directory() {
        let dir = Some(PathBuf::from("/etc/dr"));
        assert_eq!(resolve("prod", dir.clone(), None), PathBuf::from("/etc/dr/prod.env"));
        assert_eq!(
            resolve("prod", None, Some(PathBuf::from("/home/me/.config/dr"))),
            PathBuf::from("/home/me/.config/dr/prod.env")
        );
        assert_eq!(resolve("./staging.env", dir.clone(), None), PathBuf::from("./staging.env"));
        assert_eq!(resolve("/tmp/x", dir, None), PathBuf::from("/tmp/x"));
    }
}
