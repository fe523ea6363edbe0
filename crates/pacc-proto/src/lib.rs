//! # pacc-proto: the sans-IO core of PACC
//!
//! PACC (draft-ietf-mailmaint-pacc) lets a mail, calendar and contacts client set itself up
//! from nothing but the user's email address: the provider publishes a JSON document at
//! `https://ua-auto-config.<domain>/.well-known/user-agent-configuration.json` and its digest
//! in DNS at `_ua-auto-config.<domain>`.
//!
//! This crate holds every protocol decision and no I/O: no sockets, no clock, no runtime.
//! A shell (the `pacc` crate) performs the effects the state machines ask for and feeds the
//! results back. Requirement ids (`RET-3`, `DIG-9`, …) refer to the project's spec digest.
//!
//! - [`name`]: email addresses, discovery domains, registrable domains.
//! - [`digest`]: the `v=UAAC1; a=…; d=…` TXT record.
//! - [`document`]: the configuration document and its validation.
//! - [`fetch`]: what an HTTPS fetch can come back with, as data.
//! - [`mta_sts`]: MTA-STS records and policies (RFC 8461).
//! - [`mx`]: MX host selection and the MX-derived configuration location.
//! - [`discovery`]: the discovery state machine: primary path and MX fallback.
//! - [`probe`]: the probe machines for IMAP, POP3, submission and ManageSieve (what to
//!   write, what each line means) and the HTTP challenge parser for JMAP and DAV.
//! - [`auth`]: choosing a method per service, the confirmation gate (SEC-1), SASL, the
//!   sign-in dialogues, OAuth (RFC 8414, 7591, PKCE, -06 rules).
//! - [`account`], [`export`]: the saved account and the client configurations made from it.
//! - [`provider`]: the provider's side: descriptions rendered to documents and DNS records.
//!
//! An app with its own network stack drives these machines itself; the `pacc` crate's
//! `examples/own_network.rs` shows discovery and the probes answered with hickory-proto,
//! rustls and hand-written HTTP.
//!
//! ```
//! use pacc_proto::discovery::{Discovery, Options, Request, Response, Step};
//! use pacc_proto::fetch::{FetchedBody, FetchResult};
//! use pacc_proto::name::EmailAddress;
//!
//! let body = br#"{"protocols":{"imap":{"host":"imap.example.com"}},"info":{"provider":{"name":"Ex"}}}"#;
//! let record = pacc_proto::digest::DigestRecord::for_bytes(pacc_proto::digest::Algorithm::Sha256, body);
//!
//! let address = EmailAddress::parse("alice@example.com").unwrap();
//! let options = Options { mx_fallback: false, ..Options::default() };
//! let mut d = Discovery::with_options(address.domain().clone(), options);
//! // The machine asks for the TXT lookup and the fetch at once; a shell runs them concurrently.
//! let requests: Vec<_> = std::iter::from_fn(|| d.poll_request()).collect();
//! assert_eq!(requests.len(), 2);
//! for (id, req) in requests {
//!     let resp = match req {
//!         Request::Txt { .. } => Response::Txt(Ok(vec![vec![record.render().into_bytes()]])),
//!         Request::Fetch { .. } => Response::Fetch(FetchResult::Ok(FetchedBody::test_json(body.to_vec()))),
//!         _ => unreachable!("the primary path asks for nothing else"),
//!     };
//!     d.handle(id, resp, std::time::Duration::ZERO);
//! }
//! let Step::Done(report) = d.step() else { panic!() };
//! assert!(report.outcome.is_ok());
//! ```
#![deny(missing_docs)]

pub mod account;
pub mod auth;
pub mod digest;
pub mod discovery;
pub mod document;
pub mod export;
pub mod fetch;
#[doc(hidden)]
pub mod fuzz;
pub mod mta_sts;
pub mod mx;
pub mod name;
pub mod probe;
pub mod provider;
