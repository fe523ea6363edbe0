//! Provider tooling (spec §2.11, PV-1 … PV-7): the description file, deterministic
//! rendering of the document and its DNS records, and judging a live deployment.

pub mod check;
pub mod description;
pub mod render;

pub use description::{AcmeSpec, Description, DescriptionError, DocumentSpec, EabKey};

#[cfg(test)]
mod tests;
