//! Load generators run from the host against a ready instance, with identical settings on every
//! backend.

mod conn;
pub mod http;
pub mod idle;
mod pace;
