//! One cluster as steward knows it: its description (the cluster file), what
//! observing it shows, the lock and journal that let one steward at a time
//! change it, the record of the last change, and the availability probe.

pub mod change_state;
pub mod file;
pub mod last_roll;
pub mod lock;
pub mod observe;
pub mod observed;
pub mod probe;
