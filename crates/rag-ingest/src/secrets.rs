//! Files that hold credentials are never indexed: by their name or folder
//! (private keys, `.env`, cloud and package-manager credentials, Terraform
//! state), and by what they hold (private-key blocks and provider tokens).
//!
//! The content rules follow the shapes of gitleaks' default rules for the
//! same providers (private keys, AWS, GitHub, GitLab, Slack, Stripe,
//! OpenAI, Google); they are deliberately few and specific, so that an
//! ordinary note is not skipped for a word that looks random. A value
//! containing `EXAMPLE` (AWS's documentation keys) does not count.

use std::sync::LazyLock;

use regex::bytes::RegexSet;

/// Why a file must not be indexed going by its stored name (`a/b/c`), if it
/// must not: a name or a folder that holds credentials.
///
/// ```
/// use rag_ingest::secret_file_rule;
/// assert!(secret_file_rule("home/.ssh/id_ed25519").is_some());
/// assert!(secret_file_rule("deploy/prod.env").is_some());
/// assert!(secret_file_rule("infra/main.tfstate").is_some());
/// assert!(secret_file_rule(".env.example").is_none());
/// assert!(secret_file_rule("keys/id_ed25519.pub").is_none(), "a public key");
/// assert!(secret_file_rule("notes/keys.md").is_none());
/// ```
pub fn secret_file_rule(path: &str) -> Option<&'static str> {
    let lower = path.to_ascii_lowercase();
    let parts: Vec<&str> = lower.split('/').collect();
    let (name, folders) = parts.split_last()?;
    for folder in folders {
        match *folder {
            ".ssh" => return Some("a file of an SSH folder (.ssh)"),
            ".gnupg" => return Some("a file of a GnuPG folder (.gnupg)"),
            ".aws" => return Some("a file of an AWS credentials folder (.aws)"),
            ".kube" => return Some("a file of a Kubernetes credentials folder (.kube)"),
            ".docker" if *name == "config.json" => return Some("Docker's credentials file"),
            _ => {}
        }
    }
    let name = *name;
    if name.ends_with(".pub") {
        return None;
    }
    let stem_is = |stems: &[&str]| stems.iter().any(|s| name == *s || name.starts_with(&format!("{s}.")));
    if stem_is(&["id_rsa", "id_dsa", "id_ecdsa", "id_ed25519", "id_ecdsa_sk", "id_ed25519_sk", "identity"]) {
        return Some("an SSH private key");
    }
    let extension = name.rsplit_once('.').map(|(_, e)| e);
    match extension {
        Some("pem" | "key" | "p12" | "pfx" | "jks" | "keystore" | "ppk" | "p8" | "der") => {
            return Some("a key or certificate store");
        }
        Some("tfstate" | "tfvars") => return Some("Terraform state or variables"),
        _ => {}
    }
    if name.ends_with(".tfstate.backup") {
        return Some("Terraform state or variables");
    }
    let env_file = name == ".env" || name.ends_with(".env") || name.starts_with(".env.");
    let env_template = ["example", "sample", "template", "dist", "defaults"].iter().any(|t| name.ends_with(t));
    if env_file && !env_template {
        return Some("an environment file (.env)");
    }
    match name {
        "credentials" | "credentials.json" | "credentials.yml" | "credentials.yaml" | "credentials.toml" => {
            Some("a credentials file")
        }
        ".netrc" | "_netrc" | ".npmrc" | ".pypirc" | ".git-credentials" | ".htpasswd" | ".pgpass" | ".my.cnf" => {
            Some("a credentials file")
        }
        "kubeconfig" | "secrets.yml" | "secrets.yaml" | "secrets.json" | "secrets.toml" => Some("a credentials file"),
        _ => None,
    }
}

/// What the content rules look for, in the order of [`CONTENT_RULE_NAMES`].
const CONTENT_RULES: &[&str] = &[
    r"-----BEGIN[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----",
    r"\b(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b",
    r"(?i)aws_secret_access_key\s*[=:]\s*[A-Za-z0-9/+=]{40}\b",
    r"\b(?:ghp|gho|ghu|ghs|ghr)_[0-9A-Za-z]{36}\b",
    r"\bgithub_pat_[0-9A-Za-z_]{82}\b",
    r"\bglpat-[0-9A-Za-z_-]{20}\b",
    r"\bxox[baprs]-[0-9A-Za-z-]{10,}\b",
    r"\b(?:sk|rk)_live_[0-9A-Za-z]{20,}\b",
    r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}T3BlbkFJ[A-Za-z0-9_-]{20,}\b",
    r"\bAIza[0-9A-Za-z_-]{35}\b",
    r#""type"\s*:\s*"service_account""#,
];

/// What each content rule finds, for the report.
const CONTENT_RULE_NAMES: &[&str] = &[
    "a private key",
    "an AWS access key",
    "an AWS secret access key",
    "a GitHub token",
    "a GitHub token",
    "a GitLab token",
    "a Slack token",
    "a Stripe live key",
    "an OpenAI API key",
    "a Google API key",
    "a Google Cloud service-account key",
];

static RULES: LazyLock<Option<RegexSet>> = LazyLock::new(|| RegexSet::new(CONTENT_RULES).ok());

/// What credential `bytes` hold, if they hold one a content rule knows.
///
/// ```
/// use rag_ingest::secret_content_rule;
/// // Split so that this file holds no key itself.
/// let key = format!("key = {}{}\n", "AKIA", "Q3EGRXN5QDEFGHJK");
/// assert_eq!(secret_content_rule(key.as_bytes()), Some("an AWS access key"));
/// assert_eq!(secret_content_rule(b"see AKIAIOSFODNN7EXAMPLE in the docs"), None);
/// assert_eq!(secret_content_rule(b"an ordinary note about keys"), None);
/// ```
pub fn secret_content_rule(bytes: &[u8]) -> Option<&'static str> {
    let rules = RULES.as_ref()?;
    let matched = rules.matches(bytes);
    if !matched.matched_any() {
        return None;
    }
    // AWS's documentation keys end in EXAMPLE; a file that only quotes them is fine.
    let example_only = |rule: usize| {
        regex::bytes::Regex::new(CONTENT_RULES[rule])
            .map(|one| one.find_iter(bytes).all(|m| m.as_bytes().windows(7).any(|w| w == b"EXAMPLE")))
            .unwrap_or(false)
    };
    matched.iter().find(|&rule| !example_only(rule)).map(|rule| CONTENT_RULE_NAMES[rule])
}

/// Stored names the secret rules do not apply to: the narrow, explicit way
/// to index a file that looks like it holds a credential and does not
/// (`rag index --allow-secrets 'docs/examples/*.pem'`). Globs match whole
/// stored names, `*` not crossing `/`.
///
/// ```
/// use rag_ingest::SecretExceptions;
/// let allowed = SecretExceptions::new(&["docs/examples/*.pem"]).unwrap();
/// assert!(allowed.covers("docs/examples/test.pem"));
/// assert!(!allowed.covers("docs/examples/deep/test.pem") && !allowed.covers("keys/server.pem"));
/// assert!(SecretExceptions::new(&["docs/[oops"]).is_err());
/// ```
#[derive(Debug, Clone, Default)]
pub struct SecretExceptions(globset::GlobSet);

impl SecretExceptions {
    /// The names matching any of `patterns`; `Err` names a pattern that is not a glob.
    pub fn new(patterns: &[impl AsRef<str>]) -> Result<Self, globset::Error> {
        let mut set = globset::GlobSetBuilder::new();
        for pattern in patterns {
            set.add(globset::GlobBuilder::new(pattern.as_ref()).literal_separator(true).build()?);
        }
        Ok(Self(set.build()?))
    }

    /// Whether the secret rules are lifted from this stored name.
    pub fn covers(&self, path: &str) -> bool {
        self.0.is_match(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_content_rule_compiles_and_has_a_name() {
        assert_eq!(CONTENT_RULES.len(), CONTENT_RULE_NAMES.len());
        assert!(RULES.is_some(), "the rule set compiles");
    }

    #[test]
    fn credentials_in_ordinary_files_are_found_by_kind() {
        // Each credential is split in two, so that this file holds none itself
        // (and is not skipped when the project indexes its own code).
        let cases: Vec<(String, &str)> = vec![
            (format!("-----BEGIN OPENSSH {}-----\nb3BlbnNzaC1rZXk\n", "PRIVATE KEY"), "a private key"),
            (format!("-----BEGIN RSA {}-----\nMIIE\n", "PRIVATE KEY"), "a private key"),
            (
                format!("[default]\naws_secret_{} = wJalrXUtnFEMI/K7MDENG/bPxRfiCYzzzzzzzzzz\n", "access_key"),
                "an AWS secret access key",
            ),
            (format!("token: gh{}_0123456789abcdefghijABCDEFGHIJ012345", "p"), "a GitHub token"),
            (format!("GITLAB=glp{}-abcdefghij0123456789", "at"), "a GitLab token"),
            (format!("slack xo{}-1234567890-abcdefghij", "xb"), "a Slack token"),
            (format!("stripe.key = \"sk_{}_0123456789abcdefghijklmn\"", "live"), "a Stripe live key"),
            (
                format!("OPENAI_API_KEY=sk-proj-abcdefghijklmnopqrst{}abcdefghijklmnopqrst", "T3BlbkFJ"),
                "an OpenAI API key",
            ),
            (
                format!("{{\"type\": \"service_{}\", \"project_id\": \"p\"}}", "account"),
                "a Google Cloud service-account key",
            ),
        ];
        for (text, rule) in &cases {
            assert_eq!(secret_content_rule(text.as_bytes()), Some(*rule), "{text}");
        }
        for fine in [&b"A note about private keys and tokens."[..], b"-----BEGIN PUBLIC KEY-----", b"sk-short"] {
            assert_eq!(secret_content_rule(fine), None, "{}", String::from_utf8_lossy(fine));
        }
    }

    #[test]
    fn names_and_folders_that_hold_credentials() {
        for path in [
            "id_rsa",
            "backup/id_ecdsa",
            "server.pem",
            "tls/server.KEY",
            "store.p12",
            ".env",
            ".env.production",
            "prod.env",
            "infra/terraform.tfstate",
            "infra/prod.tfvars",
            "home/.aws/config",
            "home/.ssh/known_hosts",
            "home/.gnupg/pubring.kbx",
            "credentials.json",
            ".npmrc",
            ".git-credentials",
            "home/.kube/config",
            "home/.docker/config.json",
        ] {
            assert!(secret_file_rule(path).is_some(), "{path}");
        }
        for path in ["notes/keys.md", "src/key.rs", "id_rsa.pub", ".env.example", "docs/credentials.md", "config.json"]
        {
            assert_eq!(secret_file_rule(path), None, "{path}");
        }
    }
}
