//! The command line: clap's types ([`args`]), how the process's arguments
//! become them ([`invocation`]), the error every command ends in
//! ([`error`]) and the exit codes ([`exit`]).

pub mod args;
pub mod error;
pub mod exit;
pub mod invocation;
pub mod logging;

pub use args::*;
