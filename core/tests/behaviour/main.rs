//! Behaviour tests of the core, one module per capability, all driven by a virtual clock
//! through the `common::Sim` driver. One test binary keeps builds (and mutation runs) fast.

mod common;

mod acks;
mod answers;
mod backpressure;
mod batching;
mod connections;
mod heartbeats;
mod history;
mod inbound;
mod lifecycle;
mod observability;
mod publish;
mod raw;
mod rooms;
mod sequenced;
mod shared;
