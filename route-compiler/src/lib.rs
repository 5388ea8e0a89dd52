//! Sluice's route compiler.
#![forbid(unsafe_code)]

pub mod automaton;
pub mod compile;
pub mod diag;
pub mod format;
pub mod ir;
pub mod lint;
pub mod precedence;
pub mod reference;
pub mod route;
pub mod source;
pub mod table;
pub mod yaml;
