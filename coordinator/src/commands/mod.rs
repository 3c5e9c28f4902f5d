//! One module per command group. Each turns parsed arguments into calls
//! and views; connecting, formatting and errors live in their own modules.

pub mod agent;
pub mod certs;
pub mod cluster;
pub mod local;
pub mod roll;
