//! Configurations for the clients people use, written from a saved [`Account`]: mbsync
//! (isync), msmtp, vdirsyncer, aerc, neomutt, himalaya, Thunderbird's autoconfig XML, and
//! the verified PACC document itself. Credentials are never written: every file refers to
//! `pacc password ADDR` or `pacc token ADDR` (the command that prints them on demand).
//! Only services the client supports are written; the rest are listed with the reason.

use serde::Serialize;

use crate::account::{Account, SavedService};

/// A client format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// isync's `~/.mbsyncrc` (IMAP to Maildir).
    Mbsync,
    /// `~/.msmtprc` (submission).
    Msmtp,
    /// `~/.config/vdirsyncer/config` (CalDAV, CardDAV).
    Vdirsyncer,
    /// `~/.config/aerc/accounts.conf` (IMAP, submission).
    Aerc,
    /// a NeoMutt `muttrc` (IMAP, submission).
    Neomutt,
    /// `~/.config/himalaya/config.toml` (IMAP, submission).
    Himalaya,
    /// Thunderbird's autoconfig `clientConfig` XML, version 1.1.
    Thunderbird,
    /// The verified PACC document with its source and digest.
    Pacc,
}

impl Format {
    /// Every format, for `--help` and tests.
    pub const ALL: [Format; 8] = [
        Format::Mbsync,
        Format::Msmtp,
        Format::Vdirsyncer,
        Format::Aerc,
        Format::Neomutt,
        Format::Himalaya,
        Format::Thunderbird,
        Format::Pacc,
    ];

    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Format::Mbsync => "mbsync",
            Format::Msmtp => "msmtp",
            Format::Vdirsyncer => "vdirsyncer",
            Format::Aerc => "aerc",
            Format::Neomutt => "neomutt",
            Format::Himalaya => "himalaya",
            Format::Thunderbird => "thunderbird",
            Format::Pacc => "pacc",
        }
    }

    /// By name.
    pub fn parse(name: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.name() == name)
    }
}

/// Paths and commands the files refer to.
#[derive(Debug, Clone)]
pub struct Options {
    /// How to run pacc from the client (`pacc`, or an absolute path).
    pub pacc: String,
    /// mbsync: the Maildir root for this account.
    pub maildir: String,
    /// vdirsyncer: where calendars and contacts are kept locally, and its status.
    pub vdir: String,
}

/// A written configuration and what it left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Export {
    /// The format.
    pub format: Format,
    /// The file's text.
    pub text: String,
    /// The services written.
    pub written: Vec<String>,
    /// Services not written, with the reason.
    pub left_out: Vec<LeftOut>,
}

/// A service a format cannot carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeftOut {
    /// The service.
    pub service: String,
    /// Why.
    pub reason: String,
}

/// Why an account cannot be written in a format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// None of its services is one the client supports.
    #[error("{format} configures {supports}, and this account has none of them that it can use")]
    NothingToWrite {
        /// The format's name.
        format: &'static str,
        /// What the client supports.
        supports: &'static str,
    },
}

/// Single-quote for a POSIX shell: the commands the clients run go through `sh -c`.
fn sh(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Escape for a double-quoted string (mbsync, msmtp, neomutt, TOML, vdirsyncer).
fn dq(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '`' => out.push_str("\\`"),
            '$' => out.push_str("\\$"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// `user@host` for URLs: the `@` of the username percent-encoded.
fn url_user(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// A name made of `[A-Za-z0-9-]`.
fn ident(address: &str) -> String {
    let s: String = address
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("pacc-{s}")
}

struct Ctx<'a> {
    a: &'a Account,
    o: &'a Options,
    written: Vec<String>,
    left_out: Vec<LeftOut>,
}

impl<'a> Ctx<'a> {
    fn service(&mut self, key: &str) -> Option<&'a SavedService> {
        self.a.services.iter().find(|s| s.service == key)
    }
    fn use_(&mut self, s: &SavedService) {
        self.written.push(s.service.clone());
    }
    fn leave(&mut self, service: &str, reason: &str) {
        self.left_out.push(LeftOut {
            service: service.to_owned(),
            reason: reason.to_owned(),
        });
    }
    /// Leave out every service not in `supported`.
    fn others(&mut self, supported: &[&str], client: &str) {
        for s in &self.a.services {
            if !supported.contains(&s.service.as_str()) {
                self.left_out.push(LeftOut {
                    service: s.service.clone(),
                    reason: format!("{client} does not use {}", s.service),
                });
            }
        }
    }
    /// The command that prints the credential for `s`.
    fn cred_cmd(&self, s: &SavedService) -> String {
        if s.uses_oauth() {
            format!(
                "{} token {} --service {}",
                self.o.pacc,
                sh(&self.a.address),
                s.service
            )
        } else {
            format!("{} password {}", self.o.pacc, sh(&self.a.address))
        }
    }
    fn ca(&self) -> Option<&str> {
        self.a.ca_files.first().map(String::as_str)
    }
}

/// Write `account` as `format`.
pub fn export(account: &Account, format: Format, options: &Options) -> Result<Export, ExportError> {
    let mut c = Ctx {
        a: account,
        o: options,
        written: Vec::new(),
        left_out: Vec::new(),
    };
    let text = match format {
        Format::Mbsync => mbsync(&mut c),
        Format::Msmtp => msmtp(&mut c),
        Format::Vdirsyncer => vdirsyncer(&mut c),
        Format::Aerc => aerc(&mut c),
        Format::Neomutt => neomutt(&mut c),
        Format::Himalaya => himalaya(&mut c),
        Format::Thunderbird => Some(thunderbird(&mut c)),
        Format::Pacc => Some(pacc(&mut c)),
    };
    let supports = match format {
        Format::Mbsync => "IMAP",
        Format::Msmtp => "submission",
        Format::Vdirsyncer => "CalDAV and CardDAV with a password",
        Format::Aerc | Format::Neomutt | Format::Himalaya => "IMAP and submission",
        Format::Thunderbird | Format::Pacc => "every service",
    };
    match text {
        Some(text) if !c.written.is_empty() || format == Format::Pacc => Ok(Export {
            format,
            text,
            written: c.written,
            left_out: c.left_out,
        }),
        _ => Err(ExportError::NothingToWrite {
            format: format.name(),
            supports,
        }),
    }
}

fn header(c: &Ctx<'_>, comment: &str) -> String {
    format!(
        "{comment} Written by pacc for {} from the configuration verified at {}\n{comment} (digest record: {}). Credentials come from `{} password|token`, never from this file.\n",
        c.a.address, c.a.source.url, c.a.source.record, c.o.pacc
    )
}

fn mbsync(c: &mut Ctx<'_>) -> Option<String> {
    c.others(&["imap"], "mbsync");
    let imap = c.service("imap")?;
    if imap.uses_oauth() {
        // mbsync's XOAUTH2 needs a Cyrus SASL plugin Debian does not ship.
        c.leave(
            "imap",
            "mbsync needs the Cyrus SASL XOAUTH2 plugin for OAuth; use a password account",
        );
        return None;
    }
    c.use_(imap);
    let name = ident(&c.a.address);
    let mech = if imap.mechanism == "IMAP-LOGIN" {
        "LOGIN"
    } else {
        imap.mechanism.as_str()
    };
    let mut s = header(c, "#");
    s += &format!(
        "\nIMAPAccount {name}\nHost {}\nPort {}\nUser {}\nPassCmd {}\nSSLType IMAPS\nAuthMechs {mech}\n",
        imap.host.as_deref().unwrap_or_default(),
        imap.port.unwrap_or(993),
        dq(&c.a.address),
        dq(&c.cred_cmd(imap)),
    );
    if let Some(ca) = c.ca() {
        s += &format!("CertificateFile {}\n", dq(ca));
    }
    let root = c.o.maildir.trim_end_matches('/');
    s += &format!(
        "\nIMAPStore {name}-remote\nAccount {name}\n\nMaildirStore {name}-local\nPath {}\nInbox {}\nSubFolders Verbatim\n\nChannel {name}\nFar :{name}-remote:\nNear :{name}-local:\nPatterns *\nCreate Near\nSyncState *\n",
        dq(&format!("{root}/")),
        dq(&format!("{root}/INBOX")),
    );
    Some(s)
}

fn msmtp(c: &mut Ctx<'_>) -> Option<String> {
    c.others(&["submit"], "msmtp");
    let smtp = c.service("submit")?;
    c.use_(smtp);
    let name = ident(&c.a.address);
    let auth = match smtp.mechanism.as_str() {
        "OAUTHBEARER" => "oauthbearer",
        "XOAUTH2" => "xoauth2",
        "LOGIN" => "login",
        _ => "plain",
    };
    let mut s = header(c, "#");
    s += &format!(
        "\naccount {name}\nhost {}\nport {}\ntls on\ntls_starttls off\ntls_trust_file {}\nauth {auth}\nuser {}\nfrom {}\npasswordeval {}\n\naccount default : {name}\n",
        smtp.host.as_deref().unwrap_or_default(),
        smtp.port.unwrap_or(465),
        c.ca().unwrap_or("system"),
        c.a.address,
        c.a.address,
        dq(&c.cred_cmd(smtp)),
    );
    Some(s)
}

fn vdirsyncer(c: &mut Ctx<'_>) -> Option<String> {
    c.others(&["caldav", "carddav"], "vdirsyncer");
    let root = c.o.vdir.trim_end_matches('/').to_owned();
    let mut s = header(c, "#");
    s += &format!(
        "\n[general]\nstatus_path = {}\n",
        dq(&format!("{root}/status/"))
    );
    for (key, kind, ext) in [
        ("caldav", "calendars", ".ics"),
        ("carddav", "contacts", ".vcf"),
    ] {
        let Some(svc) = c.service(key) else { continue };
        if svc.uses_oauth() {
            c.leave(
                key,
                "vdirsyncer cannot present a Bearer token to a DAV server; use a password account",
            );
            continue;
        }
        c.use_(svc);
        let argv: Vec<String> = [
            "command".to_owned(),
            c.o.pacc.clone(),
            "password".to_owned(),
            c.a.address.clone(),
        ]
        .iter()
        .map(|a| dq(a))
        .collect();
        s += &format!(
            "\n[pair {kind}]\na = \"{kind}_local\"\nb = \"{kind}_remote\"\ncollections = [\"from b\"]\n\n[storage {kind}_local]\ntype = \"filesystem\"\npath = {}\nfileext = \"{ext}\"\n\n[storage {kind}_remote]\ntype = \"{key}\"\nurl = {}\nusername = {}\npassword.fetch = [{}]\n",
            dq(&format!("{root}/{kind}/")),
            dq(svc.url.as_deref().unwrap_or_default()),
            dq(&c.a.address),
            argv.join(", "),
        );
        if let Some(ca) = c.ca() {
            s += &format!("verify = {}\n", dq(ca));
        }
    }
    Some(s)
}

fn aerc(c: &mut Ctx<'_>) -> Option<String> {
    c.others(&["imap", "submit"], "aerc");
    let imap = c.service("imap")?;
    c.use_(imap);
    let user = url_user(&c.a.address);
    let scheme = |s: &SavedService, base: &str| match s.mechanism.as_str() {
        "OAUTHBEARER" => format!("{base}+oauthbearer"),
        "XOAUTH2" => format!("{base}+xoauth2"),
        _ => base.to_owned(),
    };
    let mut s = header(c, "#");
    s += &format!(
        "\n[{}]\nsource = {}://{user}@{}:{}\nsource-cred-cmd = {}\ndefault = INBOX\nfrom = {}\n",
        c.a.address,
        scheme(imap, "imaps"),
        imap.host.as_deref().unwrap_or_default(),
        imap.port.unwrap_or(993),
        c.cred_cmd(imap),
        c.a.address,
    );
    if let Some(smtp) = c.service("submit") {
        c.use_(smtp);
        s += &format!(
            "outgoing = {}://{user}@{}:{}\noutgoing-cred-cmd = {}\n",
            scheme(smtp, "smtps"),
            smtp.host.as_deref().unwrap_or_default(),
            smtp.port.unwrap_or(465),
            c.cred_cmd(smtp),
        );
    }
    Some(s)
}

fn neomutt(c: &mut Ctx<'_>) -> Option<String> {
    c.others(&["imap", "submit"], "NeoMutt");
    let imap = c.service("imap")?;
    c.use_(imap);
    let user = url_user(&c.a.address);
    let mut s = header(c, "#");
    s += &format!(
        "\nset from = {}\nset realname = {}\nset imap_user = {}\nset folder = {}\nset spoolfile = \"+INBOX\"\nset record = \"+Sent\"\nset postponed = \"+Drafts\"\nset ssl_force_tls = yes\n",
        dq(&c.a.address),
        dq(c.a.provider.as_deref().unwrap_or("")),
        dq(&c.a.address),
        dq(&format!(
            "imaps://{}:{}/",
            imap.host.as_deref().unwrap_or_default(),
            imap.port.unwrap_or(993)
        )),
    );
    let cred = |s: &SavedService, proto: &str, ctx: &Ctx<'_>| -> String {
        if s.uses_oauth() {
            format!(
                "set {proto}_authenticators = \"{}\"\nset {proto}_oauth_refresh_command = {}\n",
                s.mechanism.to_ascii_lowercase(),
                dq(&ctx.cred_cmd(s))
            )
        } else {
            format!(
                "set {proto}_pass = \"`{}`\"\n",
                ctx.cred_cmd(s).replace('"', "\\\"")
            )
        }
    };
    s += &cred(imap, "imap", c);
    if let Some(smtp) = c.service("submit") {
        c.use_(smtp);
        s += &format!(
            "set smtp_url = {}\n",
            dq(&format!(
                "smtps://{user}@{}:{}/",
                smtp.host.as_deref().unwrap_or_default(),
                smtp.port.unwrap_or(465)
            ))
        );
        s += &cred(smtp, "smtp", c);
    }
    if let Some(ca) = c.ca() {
        s += &format!("set ssl_ca_certificates_file = {}\n", dq(ca));
    }
    Some(s)
}

fn himalaya(c: &mut Ctx<'_>) -> Option<String> {
    c.others(&["imap", "submit"], "himalaya");
    let imap = c.service("imap")?;
    c.use_(imap);
    let auth = |s: &SavedService, prefix: &str, ctx: &Ctx<'_>| -> String {
        if s.uses_oauth() {
            format!(
                "{prefix}.auth.type = \"oauth2\"\n{prefix}.auth.method = {}\n{prefix}.auth.access-token.cmd = {}\n",
                dq(&s.mechanism.to_ascii_lowercase()),
                dq(&ctx.cred_cmd(s))
            )
        } else {
            format!(
                "{prefix}.auth.type = \"password\"\n{prefix}.auth.cmd = {}\n",
                dq(&ctx.cred_cmd(s))
            )
        }
    };
    let mut s = header(c, "#");
    s += &format!(
        "\n[accounts.{}]\ndefault = true\nemail = {}\n",
        dq(&c.a.address),
        dq(&c.a.address)
    );
    if let Some(p) = &c.a.provider {
        s += &format!("display-name = {}\n", dq(p));
    }
    s += &format!(
        "backend.type = \"imap\"\nbackend.host = {}\nbackend.port = {}\nbackend.encryption.type = \"tls\"\nbackend.login = {}\n",
        dq(imap.host.as_deref().unwrap_or_default()),
        imap.port.unwrap_or(993),
        dq(&c.a.address)
    );
    s += &auth(imap, "backend", c);
    if let Some(smtp) = c.service("submit") {
        c.use_(smtp);
        s += &format!(
            "message.send.backend.type = \"smtp\"\nmessage.send.backend.host = {}\nmessage.send.backend.port = {}\nmessage.send.backend.encryption.type = \"tls\"\nmessage.send.backend.login = {}\n",
            dq(smtp.host.as_deref().unwrap_or_default()),
            smtp.port.unwrap_or(465),
            dq(&c.a.address)
        );
        s += &auth(smtp, "message.send.backend", c);
    }
    Some(s)
}

fn thunderbird(c: &mut Ctx<'_>) -> String {
    let domain =
        c.a.address
            .rsplit('@')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
    let name = c.a.provider.clone().unwrap_or_else(|| domain.clone());
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    s += &format!(
        "<!-- Written by pacc for {} from the configuration verified at {} -->\n",
        xml(&c.a.address).replace("--", "- -"),
        xml(&c.a.source.url).replace("--", "- -")
    );
    s += "<clientConfig version=\"1.1\">\n";
    s += &format!(
        "  <emailProvider id=\"{}\">\n    <domain>{}</domain>\n    <displayName>{}</displayName>\n",
        xml(&domain),
        xml(&domain),
        xml(&name)
    );
    let auth = |svc: &SavedService| {
        if svc.uses_oauth() {
            "OAuth2"
        } else {
            "password-cleartext"
        }
    };
    let services: Vec<SavedService> = c.a.services.clone();
    for svc in &services {
        let (tag, kind) = match svc.service.as_str() {
            "imap" => ("incomingServer", "imap"),
            "pop3" => ("incomingServer", "pop3"),
            "submit" => ("outgoingServer", "smtp"),
            _ => continue,
        };
        c.use_(svc);
        let socket = if svc.tls.as_deref() == Some("starttls") {
            "STARTTLS"
        } else {
            "SSL"
        };
        s += &format!(
            "    <{tag} type=\"{kind}\">\n      <hostname>{}</hostname>\n      <port>{}</port>\n      <socketType>{socket}</socketType>\n      <authentication>{}</authentication>\n      <username>%EMAILADDRESS%</username>\n    </{tag}>\n",
            xml(svc.host.as_deref().unwrap_or_default()),
            svc.port.unwrap_or(0),
            auth(svc)
        );
    }
    s += "  </emailProvider>\n";
    for svc in &services {
        // Thunderbird's extension of clientConfig for DAV: <calendar> and <addressBook>.
        let (tag, kind) = match svc.service.as_str() {
            "caldav" => ("calendar", "caldav"),
            "carddav" => ("addressBook", "carddav"),
            "jmap" | "webdav" | "managesieve" => {
                c.leave(
                    &svc.service,
                    "Thunderbird's clientConfig has no element for it",
                );
                continue;
            }
            _ => continue,
        };
        c.use_(svc);
        s += &format!(
            "  <{tag} type=\"{kind}\">\n    <username>%EMAILADDRESS%</username>\n    <authentication>{}</authentication>\n    <serverURL>{}</serverURL>\n  </{tag}>\n",
            if svc.uses_oauth() {
                "OAuth2"
            } else {
                "http-basic"
            },
            xml(svc.url.as_deref().unwrap_or_default())
        );
    }
    if let Some(o) = &c.a.oauth {
        s += &format!(
            "  <oAuth2>\n    <issuer>{}</issuer>\n    <scope>{}</scope>\n  </oAuth2>\n",
            xml(&o.issuer),
            xml(&o.scope)
        );
    }
    s += "</clientConfig>\n";
    s
}

fn pacc(c: &mut Ctx<'_>) -> String {
    for s in &c.a.services {
        c.written.push(s.service.clone());
    }
    let document: serde_json::Value =
        serde_json::from_str(&c.a.document).unwrap_or(serde_json::Value::Null);
    let v = serde_json::json!({
        "version": 1,
        "address": c.a.address,
        "source": c.a.source,
        "document": document,
        "document_bytes": c.a.document,
    });
    serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::{SecretsInfo, Source};

    fn account(oauth: bool) -> Account {
        let m = |mech: &str| {
            if oauth {
                "oauth".to_owned()
            } else {
                "password".to_owned()
            }
            .to_owned()
                + "\0"
                + mech
        };
        let svc =
            |k: &str, host: Option<&str>, port: Option<u16>, url: Option<&str>, mech: &str| {
                let mm = m(mech);
                let (method, mechanism) = mm.split_once('\0').unwrap();
                SavedService {
                    service: k.into(),
                    host: host.map(String::from),
                    port,
                    tls: host.map(|_| "implicit".into()),
                    url: url.map(String::from),
                    method: method.into(),
                    mechanism: mechanism.into(),
                }
            };
        Account {
            version: 1,
            address: "o'neil@example.test".into(),
            provider: Some("Ex \"Mail\"".into()),
            saved_at: 0,
            source: Source {
                method: "well-known".into(),
                url:
                    "https://ua-auto-config.example.test/.well-known/user-agent-configuration.json"
                        .into(),
                record: "v=UAAC1; a=sha256; d=x".into(),
                algorithm: "sha256".into(),
            },
            document: r#"{"protocols":{}}"#.into(),
            services: vec![
                svc(
                    "imap",
                    Some("imap.example.test"),
                    Some(993),
                    None,
                    if oauth { "OAUTHBEARER" } else { "PLAIN" },
                ),
                svc(
                    "submit",
                    Some("smtp.example.test"),
                    Some(465),
                    None,
                    if oauth { "OAUTHBEARER" } else { "PLAIN" },
                ),
                svc(
                    "carddav",
                    None,
                    None,
                    Some("https://dav.example.test/c/"),
                    if oauth { "Bearer" } else { "Basic" },
                ),
                svc(
                    "jmap",
                    None,
                    None,
                    Some("https://jmap.example.test/s"),
                    "Basic",
                ),
            ],
            oauth: None,
            confirmed_hosts: vec![],
            ca_files: vec!["/tmp/ca.pem".into()],
            dns: None,
            secrets: SecretsInfo::default(),
        }
    }

    fn opts() -> Options {
        Options {
            pacc: "pacc".into(),
            maildir: "/home/u/Mail/x".into(),
            vdir: "/home/u/.local/share/vdirsyncer".into(),
        }
    }

    #[test]
    fn every_format_references_commands_and_says_what_it_left_out() {
        let a = account(false);
        for f in Format::ALL {
            let e = export(&a, f, &opts()).unwrap();
            assert!(!e.text.contains("secret"), "{f:?}");
            match f {
                Format::Mbsync => {
                    assert!(
                        e.text
                            .contains("PassCmd \"pacc password 'o'\\\\''neil@example.test'\""),
                        "{}",
                        e.text
                    );
                    assert_eq!(e.written, ["imap"]);
                    assert_eq!(e.left_out.len(), 3);
                }
                Format::Msmtp => assert!(
                    e.text.contains("auth plain") && e.text.contains("tls_trust_file /tmp/ca.pem")
                ),
                Format::Vdirsyncer => {
                    assert_eq!(e.written, ["carddav"]);
                    assert!(e.text.contains("password.fetch = [\"command\", \"pacc\", \"password\", \"o'neil@example.test\"]"), "{}", e.text);
                }
                Format::Aerc => assert!(
                    e.text
                        .contains("source = imaps://o%27neil%40example.test@imap.example.test:993")
                ),
                Format::Neomutt => assert!(e.text.contains("set imap_pass = \"`pacc password")),
                Format::Himalaya => {
                    let v: toml::Value = toml::from_str(&e.text).unwrap();
                    let acc = &v["accounts"]["o'neil@example.test"];
                    assert_eq!(acc["backend"]["port"].as_integer(), Some(993));
                    assert_eq!(
                        acc["message"]["send"]["backend"]["auth"]["type"].as_str(),
                        Some("password")
                    );
                }
                Format::Thunderbird => {
                    assert!(e.text.contains("<clientConfig version=\"1.1\">"));
                    assert!(
                        e.text
                            .contains("<displayName>Ex &quot;Mail&quot;</displayName>")
                    );
                    assert!(e.left_out.iter().any(|l| l.service == "jmap"));
                }
                Format::Pacc => {
                    let v: serde_json::Value = serde_json::from_str(&e.text).unwrap();
                    assert_eq!(v["source"]["record"], "v=UAAC1; a=sha256; d=x");
                }
            }
        }
    }

    #[test]
    fn oauth_accounts_use_the_token_command() {
        let a = account(true);
        let e = export(&a, Format::Msmtp, &opts()).unwrap();
        assert!(
            e.text.contains("auth oauthbearer")
                && e.text
                    .contains("token 'o'\\\\''neil@example.test' --service submit"),
            "{}",
            e.text
        );
        assert!(matches!(
            export(&a, Format::Mbsync, &opts()),
            Err(ExportError::NothingToWrite { .. })
        ));
        let e = export(&a, Format::Aerc, &opts()).unwrap();
        assert!(e.text.contains("imaps+oauthbearer://"));
        let e = export(&a, Format::Neomutt, &opts()).unwrap();
        assert!(e.text.contains("imap_oauth_refresh_command"));
    }
}
