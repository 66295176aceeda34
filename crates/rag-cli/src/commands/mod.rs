//! One module per subcommand; each asks a [`Session`](crate::session::Session)
//! for what it opens.

pub mod get;
pub mod index;
pub mod query;
pub mod store;
