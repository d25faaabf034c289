//! What the `lambda` handler's `config` takes, in every build: read by its parser
//! ([`super::lambda`]) and its kind ([`super::lambda_kind`], the schema).

use crate::reader::Whole;

pub const KEYS: &[&str] = &["functions", "cluster", "max_operations"];
/// The most functions one hook may chain.
pub const MAX_FUNCTIONS: usize = 16;
/// The longest function, in bytes of source.
pub const MAX_SOURCE_BYTES: usize = 65_536;
/// Operations one event may spend across the whole chain, by default and at most.
pub const DEFAULT_MAX_OPERATIONS: u64 = 100_000;
pub const MIN_MAX_OPERATIONS: u64 = 1_000;
pub const MAX_MAX_OPERATIONS: u64 = 1_000_000;
pub const MAX_OPERATIONS: Whole =
    Whole::new("max_operations", MIN_MAX_OPERATIONS, MAX_MAX_OPERATIONS);
