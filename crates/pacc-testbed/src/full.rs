//! A provider of all eight services, scripted: every server answers the probes and accepts
//! any password or token (IMAP, POP3, submission and ManageSieve as scripted line servers;
//! JMAP, CalDAV, CardDAV and WebDAV as HTTPS hosts that want `Authorization`). For the
//! latency benchmark and `pacc demo`: it shows the whole flow, it does not check secrets.

use crate::{
    Behaviour, CertKind, HttpsServer, Reply, ScriptStep, ScriptedServer, Testbed, TestbedError,
};

/// The servers, running (dropping this stops them).
pub struct Provider {
    _https: Vec<HttpsServer>,
    _scripted: Vec<ScriptedServer>,
}

/// The document for `domain`: the eight services at `<service>.<domain>`, passwords
/// allowed, and `issuer` as the OAuth issuer when given.
pub fn document(domain: &str, name: &str, issuer: Option<&str>) -> String {
    let oauth = issuer
        .map(|i| format!(r#","oauth-public":{{"issuer":"{i}"}}"#))
        .unwrap_or_default();
    format!(
        r#"{{"protocols":{{"jmap":{{"url":"https://jmap.{d}/session"}},"imap":{{"host":"imap.{d}"}},"pop3":{{"host":"pop.{d}"}},"submit":{{"host":"smtp.{d}"}},"caldav":{{"url":"https://dav.{d}/cal/"}},"carddav":{{"url":"https://dav.{d}/card/"}},"webdav":{{"url":"https://files.{d}/files/"}},"managesieve":{{"host":"sieve.{d}"}}}},"authentication":{{"password":true{oauth}}},"info":{{"provider":{{"name":"{name}"}}}}}}"#,
        d = domain
    )
}

impl Provider {
    /// Publish [`document`] for `domain` (verified: served over TLS 1.3 with its digest in
    /// DNS) and start every server.
    pub async fn start(
        tb: &Testbed,
        domain: &str,
        name: &str,
        issuer: Option<&str>,
    ) -> Result<Self, TestbedError> {
        let doc = document(domain, name, issuer);
        let mut https = vec![tb.provider(domain, doc.as_bytes()).await?];
        let bearer = if issuer.is_some() {
            ", Bearer realm=\"pacc\""
        } else {
            ""
        };
        for (host, realm, ok) in [
            ("jmap", "jmap", 200),
            ("dav", "dav", 207),
            ("files", "files", 207),
        ] {
            https.push(
                tb.https_host(
                    &[&format!("{host}.{domain}")],
                    Behaviour::new(Reply::AuthGate {
                        challenge: format!("Basic realm=\"{realm}\"{bearer}"),
                        ok_status: ok,
                    }),
                )
                .await?,
            );
        }
        use ScriptStep::{ReadLine, StartTls};
        let s = ScriptStep::send;
        let mechanisms = if issuer.is_some() {
            "PLAIN OAUTHBEARER"
        } else {
            "PLAIN"
        };
        let imap_caps = mechanisms
            .split(' ')
            .map(|m| format!("AUTH={m}"))
            .collect::<Vec<_>>()
            .join(" ");
        let scripted: [(String, u16, bool, Vec<ScriptStep>); 4] = [
            // Capabilities in the greeting; the next command (LOGOUT, or AUTHENTICATE tagged
            // b1 on the probe's connection or a1 on a new one) gets OK.
            (
                format!("imap.{domain}"),
                993,
                true,
                vec![
                    s(&format!(
                        "* OK [CAPABILITY IMAP4rev1 SASL-IR {imap_caps}] ready\r\n"
                    )),
                    ReadLine,
                    s("b1 OK done\r\na1 OK done\r\n"),
                    ReadLine,
                ],
            ),
            // CAPA's answer doubles as AUTH's +OK on a new connection; on the probe's own
            // connection AUTH comes after CAPA.
            (
                format!("pop.{domain}"),
                995,
                true,
                vec![
                    s("+OK ready\r\n"),
                    ReadLine,
                    s(&format!("+OK\r\nUSER\r\nSASL {mechanisms}\r\n.\r\n")),
                    ReadLine,
                    s("+OK logged in\r\n"),
                    ReadLine,
                ],
            ),
            // After EHLO, QUIT or AUTH gets 235.
            (
                format!("smtp.{domain}"),
                465,
                true,
                vec![
                    s(&format!("220 smtp.{domain} ESMTP\r\n")),
                    ReadLine,
                    s(&format!("250-smtp.{domain}\r\n250 AUTH {mechanisms}\r\n")),
                    ReadLine,
                    s("235 2.7.0 ok\r\n"),
                    ReadLine,
                ],
            ),
            (
                format!("sieve.{domain}"),
                4190,
                false,
                vec![
                    s("\"IMPLEMENTATION\" \"scripted\"\r\n\"STARTTLS\"\r\nOK \"ready\"\r\n"),
                    ReadLine,
                    s("OK \"go\"\r\n"),
                    StartTls,
                    s(&format!("\"SASL\" \"{mechanisms}\"\r\nOK \"tls\"\r\n")),
                    ReadLine,
                    s("OK \"done\"\r\n"),
                    ReadLine,
                ],
            ),
        ];
        let mut servers = Vec::new();
        for (host, port, implicit, script) in scripted {
            let srv = ScriptedServer::start(
                &tb.ca,
                &[host.as_str()],
                port,
                implicit,
                CertKind::Valid,
                script,
            )
            .await?;
            if let std::net::IpAddr::V4(ip) = srv.addr().ip() {
                tb.dns.add_a(&host, ip).await?;
            }
            servers.push(srv);
        }
        Ok(Provider {
            _https: https,
            _scripted: servers,
        })
    }
}
