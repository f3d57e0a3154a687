//! The engines, between the study and the report: a scoring run from its [`spec::RunSpec`]
//! ([`score`]) and the check of its scores against exact effects ([`check`]). Both write into a
//! run directory (`report::run_dir`) as each unit completes and stop on a cancel token between
//! units; the formats of what they write are `report`'s.

pub mod check;
pub mod score;
pub mod spec;
