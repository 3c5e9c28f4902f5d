//! One cluster as steward knows it: its description (the cluster file), what
//! observing it shows, the lock and journal that let one steward at a time
//! change it, and the availability probe.

pub mod file;
pub mod lock;
pub mod observe;
pub mod observed;
pub mod probe;
