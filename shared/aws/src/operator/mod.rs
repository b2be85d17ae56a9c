//! The operator's calls: what the break-glass `dr` asks AWS besides the functions' own calls, with the operator's
//! credentials. Behind the `operator` feature, which only `dr` enables: the functions compile none of it, so their
//! roles need nothing for it (`tests/tests/template.rs` leaves this folder out of what the roles must grant).
//!
//! - [`identity`]: who is asking, from the caller identity (STS `GetCallerIdentity`, which needs no permission);
//! - [`invoke`]: `dr --function NAME`, the command sent through the deployed manual-trigger (Lambda `Invoke`; the
//!   operator needs `lambda:InvokeFunction` on it).

pub mod identity;
pub mod invoke;
