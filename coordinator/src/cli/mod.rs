//! The command line: clap's types ([`args`]), the error every command ends
//! in ([`error`]) and the exit codes ([`exit`]).

pub mod args;
pub mod error;
pub mod exit;

pub use args::*;
