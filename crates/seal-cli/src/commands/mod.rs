//! One module per command. Each exposes `Args` (clap) and `run`, does all of its work in memory, and
//! writes only once everything succeeded.

pub mod cert;
pub mod ci;
pub mod convert;
pub mod keygen;
pub mod keys;
pub mod raw;
pub mod reencrypt;
pub mod scan;
pub mod seal;
pub mod unseal;
pub mod verify;
