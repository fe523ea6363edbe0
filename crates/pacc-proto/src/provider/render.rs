//! Rendering: a [`DocumentSpec`] becomes the exact bytes to serve and the DNS records to
//! publish (PV-1 … PV-4). Same input, same bytes, on every machine: the member order is
//! fixed by the layout, the JSON is compact, UTF-8 is written as is.

use serde::Serialize;
use serde_json::{Map, Value};

use super::description::{DocumentSpec, Layout, SpellingChoice};
use crate::digest::{Algorithm, DigestRecord};
use crate::name::Domain;

/// Build the document in the draft's member order.
fn value(spec: &DocumentSpec) -> Value {
    let mut protocols = Map::new();
    for (key, v) in &spec.services {
        let key = if *key == "submit" && spec.spelling == SpellingChoice::Smtp {
            "smtp"
        } else {
            key
        };
        let entry = if ["jmap", "caldav", "carddav", "webdav"].contains(&key) {
            serde_json::json!({ "url": v })
        } else {
            serde_json::json!({ "host": v })
        };
        protocols.insert(key.to_owned(), entry);
    }
    let mut auth = Map::new();
    if let Some(issuer) = &spec.oauth_issuer {
        auth.insert(
            "oauth-public".into(),
            serde_json::json!({ "issuer": issuer }),
        );
    }
    auth.insert("password".into(), Value::Bool(spec.password));
    let mut provider = Map::new();
    provider.insert("name".into(), Value::String(spec.name.clone()));
    if let Some(s) = &spec.short_name {
        provider.insert("shortName".into(), Value::String(s.clone()));
    }
    if !spec.logos.is_empty() {
        let logos = spec
            .logos
            .iter()
            .map(|(url, ct, w, h)| {
                let mut l = Map::new();
                l.insert("url".into(), Value::String(url.clone()));
                l.insert("content-type".into(), Value::String(ct.clone()));
                if let Some(w) = w {
                    l.insert("width".into(), Value::from(*w));
                }
                if let Some(h) = h {
                    l.insert("height".into(), Value::from(*h));
                }
                Value::Object(l)
            })
            .collect();
        provider.insert("logo".into(), Value::Array(logos));
    }
    let mut info = Map::new();
    info.insert("provider".into(), Value::Object(provider));
    let mut help = Map::new();
    if let Some(d) = &spec.documentation {
        help.insert("documentation".into(), Value::String(d.clone()));
    }
    if let Some(d) = &spec.developer {
        help.insert("developer".into(), Value::String(d.clone()));
    }
    if !spec.contact.is_empty() {
        help.insert("contact".into(), serde_json::json!(spec.contact));
    }
    if !help.is_empty() {
        info.insert("help".into(), Value::Object(help));
    }
    let mut top = Map::new();
    top.insert("protocols".into(), Value::Object(protocols));
    top.insert("authentication".into(), Value::Object(auth));
    top.insert("info".into(), Value::Object(info));
    Value::Object(top)
}

fn sorted(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut entries: Vec<(String, Value)> = m.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// The exact bytes to serve for `spec` (PV-1).
pub fn render(spec: &DocumentSpec) -> Vec<u8> {
    let mut v = value(spec);
    if spec.layout == Layout::Sorted {
        v = sorted(v);
    }
    // Serialising a `Value` cannot fail.
    let mut bytes = serde_json::to_vec(&v).unwrap_or_default();
    if spec.trailing_newline {
        bytes.push(b'\n');
    }
    bytes
}

/// What to publish for one domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Publication {
    /// The domain.
    pub domain: Domain,
    /// Where the bytes are served.
    pub url: String,
    /// The host that must point at the server (A/AAAA or CNAME, PV-2).
    pub host: String,
    /// `_ua-auto-config.<domain>`.
    pub txt_owner: String,
    /// The TXT record values (one character-string each), sha256 first.
    pub txt: Vec<String>,
    /// TTL.
    pub ttl: u32,
    /// MTA-STS records, if the group serves a policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mta_sts: Option<MtaStsPublication>,
}

/// The MTA-STS part of a publication.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MtaStsPublication {
    /// `_mta-sts.<domain>`.
    pub txt_owner: String,
    /// `v=STSv1; id=…;`
    pub txt: String,
    /// `mta-sts.<domain>` (must point at the server).
    pub host: String,
    /// The policy text.
    pub policy: String,
}

/// The records for `domain` served with `bytes`.
pub fn publication(spec: &DocumentSpec, domain: &Domain, bytes: &[u8], ttl: u32) -> Publication {
    Publication {
        domain: domain.clone(),
        url: crate::discovery::config_url(domain),
        host: format!("ua-auto-config.{domain}"),
        txt_owner: crate::discovery::digest_owner(domain),
        txt: spec
            .algorithms
            .iter()
            .map(|a| DigestRecord::for_bytes(*a, bytes).render())
            .collect(),
        ttl,
        mta_sts: spec.mta_sts.as_ref().map(|m| MtaStsPublication {
            txt_owner: format!("_mta-sts.{domain}"),
            txt: format!("v=STSv1; id={};", m.id),
            host: format!("mta-sts.{domain}"),
            policy: m.render(),
        }),
    }
}

impl Publication {
    /// Zone-file lines (RFC 1035 presentation; values contain no `"` or `\`).
    pub fn zone_lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .txt
            .iter()
            .map(|t| format!("{}. {} IN TXT \"{t}\"", self.txt_owner, self.ttl))
            .collect();
        lines.push(format!(
            "; {}. must have A/AAAA records (or a CNAME) for the server of {}",
            self.host, self.url
        ));
        if let Some(m) = &self.mta_sts {
            lines.push(format!(
                "{}. {} IN TXT \"{}\"",
                m.txt_owner, self.ttl, m.txt
            ));
            lines.push(format!(
                "; {}. must point at the server too (MTA-STS policy)",
                m.host
            ));
        }
        lines
    }

    /// The sha256 record.
    pub fn sha256(&self) -> &str {
        self.txt.first().map_or("", String::as_str)
    }
}

/// Whether `a` is one of the algorithms published.
pub fn publishes(spec: &DocumentSpec, a: Algorithm) -> bool {
    spec.algorithms.contains(&a)
}
