//! The failover's pure rules: what a trigger decides, how an alarm's state changes are read from every delivery
//! path, which open pages an `OK` resolves, and workload activation's plan. No I/O.

pub mod activation;
pub mod alarm;
pub mod alarm_pages;
pub mod decision;
