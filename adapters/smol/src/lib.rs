//! tidings over smol: owns sockets and the clock and feeds [`tidings_core::Hub`].
//!
//! Placeholder: the driver, handle, router and client arrive with issue 3.

pub use tidings_core;
