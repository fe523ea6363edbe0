//! The provider the embedding tests share (the Rust examples, the Python binding, the
//! Python and Node.js clients of `pacc rpc`): one verified configuration for IMAP, POP3 and
//! ManageSieve at a real Dovecot, one tampered (its document does not match its digest) and
//! one that stalls (the document never arrives).

use crate::peers::{self, Dovecot};
use crate::{Behaviour, HttpsServer, Reply, Testbed, TestbedError, sha256_record};

/// The configuration published for `example.test` (and served, tampered, for
/// `tampered.test`).
pub const DOCUMENT: &str = r#"{"protocols":{"imap":{"host":"imap.example.test"},"pop3":{"host":"pop.example.test"},"managesieve":{"host":"sieve.example.test"}},"authentication":{"password":true},"info":{"provider":{"name":"Embedded"}}}"#;

/// The three providers, running.
pub struct Provider {
    /// DNS and the CA.
    pub tb: Testbed,
    /// The mail server behind `example.test`.
    pub dovecot: Dovecot,
    _servers: Vec<HttpsServer>,
}

impl Provider {
    /// Start them; `None` (after saying so on stderr) when Dovecot is not installed.
    pub async fn start() -> Result<Option<Self>, TestbedError> {
        if !peers::available("dovecot") {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("SKIPPED: needs dovecot (.ci/run installs it)");
            }
            return Ok(None);
        }
        let tb = Testbed::start().await?;
        let dovecot = Dovecot::start(
            &tb,
            &[
                "imap.example.test",
                "pop.example.test",
                "sieve.example.test",
            ],
        )
        .await?;
        let good = tb.provider("example.test", DOCUMENT.as_bytes()).await?;
        let tampered = tb
            .serve_document("tampered.test", DOCUMENT.as_bytes())
            .await?;
        tb.publish_txt(
            "tampered.test",
            &sha256_record(b"what the provider published"),
        )
        .await?;
        let stall = tb
            .https_host(
                &["ua-auto-config.stall.test"],
                Behaviour::new(Reply::NeverAnswer),
            )
            .await?;
        tb.publish_txt("stall.test", &sha256_record(DOCUMENT.as_bytes()))
            .await?;
        Ok(Some(Provider {
            tb,
            dovecot,
            _servers: vec![good, tampered, stall],
        }))
    }

    /// What a foreign-language test needs to know, as environment variables: `PACC_DNS`,
    /// `PACC_CA`, `PACC_ADDRESS` and `PACC_PASSWORD` (a Dovecot user), `PACC_DOMAIN`,
    /// `PACC_TAMPERED`, `PACC_STALL` (addresses at the other two).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("PACC_DNS", self.tb.dns_addr().to_string()),
            ("PACC_CA", self.tb.ca_file().display().to_string()),
            ("PACC_ADDRESS", peers::USERS[0].0.to_owned()),
            ("PACC_PASSWORD", peers::USERS[0].1.to_owned()),
            ("PACC_DOMAIN", "example.test".to_owned()),
            ("PACC_TAMPERED", "alice@tampered.test".to_owned()),
            ("PACC_STALL", "alice@stall.test".to_owned()),
        ]
    }

    /// Dovecot's log, once it has written what just happened.
    pub fn log(&self) -> String {
        std::thread::sleep(std::time::Duration::from_millis(300));
        std::fs::read_to_string(self.dovecot.dir().join("dovecot.log")).unwrap_or_default()
    }

    /// Whether Dovecot logged a successful login of the test user over `protocol`
    /// (`imap`, `pop3`, `managesieve`).
    pub fn logged_in(&self, protocol: &str) -> bool {
        let user = format!("Login: user=<{}>", peers::USERS[0].0);
        self.log()
            .lines()
            .any(|l| l.contains(&format!("{protocol}-login:")) && l.contains(&user))
    }
}
