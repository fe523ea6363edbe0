//! Signing in (spec §2.6 – §2.10): choosing a method per service, the confirmation gate,
//! SASL encodings, PKCE and the OAuth public-client profile's messages. Sans-IO: randomness
//! and time are passed in.

pub mod gate;
pub mod login;
pub mod oauth;
pub mod pkce;
pub mod sasl;
pub mod secret;
pub mod select;

pub use secret::Secret;
